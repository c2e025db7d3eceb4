//! `market.toml`: what a package says about itself (DESIGN §4).
//!
//! ```toml
//! [package]
//! name = "web-framework"
//! version = "1.2.0"
//! description = "A small web framework template"
//! authors = ["Ada <ada@example.org>"]
//! license = "MIT"
//! keywords = ["web", "http"]
//! tags = ["http"]
//! categories = ["web"]
//!
//! [dependencies]
//! http-core = "^1"
//! ```
//!
//! Parsing is strict: unknown keys are refused (a typo such as `lisence` must not silently drop
//! the licence), strings and lists are bounded (the release record must fit a DHT packet), and every
//! error names the file, the field and the reason, because the person reading it has to fix the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::record::{Metadata, validate_name};

/// File name of a manifest inside a package directory.
pub const MANIFEST_FILE: &str = "market.toml";

/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;
/// Longest author, licence, keyword, tag or category, in bytes.
pub const MAX_SHORT_STRING: usize = 128;
/// Most entries in any list (authors, keywords, tags, categories).
pub const MAX_LIST: usize = 16;
/// Most dependencies of one package.
pub const MAX_DEPENDENCIES: usize = 64;
/// Largest manifest file, in bytes; anything bigger is not a manifest.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: is {size} bytes; a manifest may be at most {MAX_MANIFEST_BYTES} bytes")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path}: not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {field}: {reason}")]
    Field {
        path: PathBuf,
        field: String,
        reason: String,
    },
}

impl ManifestError {
    /// The field at fault, for errors about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            ManifestError::Field { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub version: semver::Version,
    pub description: String,
    pub authors: Vec<String>,
    pub license: Option<String>,
    pub keywords: Vec<String>,
    pub tags: Vec<String>,
    pub categories: Vec<String>,
    pub dependencies: BTreeMap<String, semver::VersionReq>,
}

// The raw shape: every value as TOML gives it, so type errors are reported by our code with the
// field name rather than by serde with a line number only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    package: Option<toml::Table>,
    dependencies: Option<toml::Table>,
}

const PACKAGE_KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "authors",
    "license",
    "keywords",
    "tags",
    "categories",
];

impl Manifest {
    /// Reads and parses `path`.
    pub fn from_path(path: &Path) -> Result<Manifest, ManifestError> {
        let read = |source| ManifestError::Read {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                path: path.to_owned(),
                size,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Manifest::parse(&text, path)
    }

    /// Reads `dir/market.toml`.
    pub fn from_dir(dir: &Path) -> Result<Manifest, ManifestError> {
        Manifest::from_path(&dir.join(MANIFEST_FILE))
    }

    /// Parses manifest text; `path` is used in error messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                path: path.to_owned(),
                size: text.len() as u64,
            });
        }
        let field_err = |field: &str, reason: String| ManifestError::Field {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| ManifestError::Syntax {
            path: path.to_owned(),
            message: e.message().trim_end().to_owned()
                + &e.span()
                    .map(|s| {
                        let (line, column) = line_and_column(text, s.start);
                        format!(" (line {line}, column {column})")
                    })
                    .unwrap_or_default(),
        })?;
        let package = raw
            .package
            .ok_or_else(|| field_err("package", "the [package] table is missing".into()))?;
        if let Some(key) = package.keys().find(|k| !PACKAGE_KEYS.contains(&k.as_str())) {
            return Err(field_err(
                &format!("package.{key}"),
                format!("unknown field; expected one of {}", PACKAGE_KEYS.join(", ")),
            ));
        }

        let name = required_string(&package, "name", MAX_SHORT_STRING)
            .map_err(|r| field_err("package.name", r))?;
        validate_name(&name).map_err(|r| field_err("package.name", format!("{name:?} {r}")))?;

        let version_text = required_string(&package, "version", MAX_SHORT_STRING)
            .map_err(|r| field_err("package.version", r))?;
        let version = semver::Version::parse(&version_text).map_err(|e| {
            field_err(
                "package.version",
                format!("{version_text:?} is not a semantic version: {e}"),
            )
        })?;

        let description = optional_string(&package, "description", MAX_DESCRIPTION)
            .map_err(|r| field_err("package.description", r))?
            .unwrap_or_default();
        let license = optional_string(&package, "license", MAX_SHORT_STRING)
            .map_err(|r| field_err("package.license", r))?;
        let list = |key: &str| {
            string_list(&package, key).map_err(|r| field_err(&format!("package.{key}"), r))
        };
        let authors = list("authors")?;
        let keywords = list("keywords")?;
        let tags = list("tags")?;
        let categories = list("categories")?;

        let mut dependencies = BTreeMap::new();
        let deps = raw.dependencies.unwrap_or_default();
        if deps.len() > MAX_DEPENDENCIES {
            return Err(field_err(
                "dependencies",
                format!(
                    "{} entries; at most {MAX_DEPENDENCIES} are allowed",
                    deps.len()
                ),
            ));
        }
        for (dep, value) in deps {
            let field = format!("dependencies.{dep}");
            validate_name(&dep)
                .map_err(|r| field_err(&field, format!("dependency name {dep:?} {r}")))?;
            if dep == name {
                return Err(field_err(
                    &field,
                    "a package cannot depend on itself".into(),
                ));
            }
            let text = value.as_str().ok_or_else(|| {
                field_err(
                    &field,
                    format!(
                        "expected a version requirement string such as \"^1.2\", found {}",
                        kind(&value)
                    ),
                )
            })?;
            if text.len() > MAX_SHORT_STRING {
                return Err(field_err(
                    &field,
                    format!("longer than {MAX_SHORT_STRING} bytes"),
                ));
            }
            let req = semver::VersionReq::parse(text).map_err(|e| {
                field_err(
                    &field,
                    format!("{text:?} is not a semantic version requirement: {e}"),
                )
            })?;
            dependencies.insert(dep, req);
        }

        Ok(Manifest {
            name,
            version,
            description,
            authors,
            license,
            keywords,
            tags,
            categories,
            dependencies,
        })
    }

    /// The descriptive part, as a release carries it.
    pub fn meta(&self) -> Metadata {
        Metadata {
            description: self.description.clone(),
            authors: self.authors.clone(),
            license: self.license.clone(),
            keywords: self.keywords.clone(),
            tags: self.tags.clone(),
            categories: self.categories.clone(),
        }
    }

    /// `name@version`, for messages.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// 1-based line and column (in characters) of a byte offset, as an editor counts them.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

fn kind(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn check_string(s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!(
            "is {} bytes long; at most {max} are allowed",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        return Err(format!("contains the control character {c:?}"));
    }
    Ok(())
}

fn optional_string(table: &toml::Table, key: &str, max: usize) -> Result<Option<String>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => {
            check_string(s, max)?;
            Ok(Some(s.clone()))
        }
        Some(other) => Err(format!("expected a string, found {}", kind(other))),
    }
}

fn required_string(table: &toml::Table, key: &str, max: usize) -> Result<String, String> {
    optional_string(table, key, max)?.ok_or_else(|| "is missing".to_owned())
}

fn string_list(table: &toml::Table, key: &str) -> Result<Vec<String>, String> {
    let Some(value) = table.get(key) else {
        return Ok(Vec::new());
    };
    let toml::Value::Array(items) = value else {
        return Err(format!(
            "expected an array of strings, found {}",
            kind(value)
        ));
    };
    if items.len() > MAX_LIST {
        return Err(format!(
            "{} entries; at most {MAX_LIST} are allowed",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            toml::Value::String(s) if s.trim().is_empty() => Err(format!("entry {i} is empty")),
            toml::Value::String(s) => {
                check_string(s, MAX_SHORT_STRING).map_err(|r| format!("entry {i} {r}"))?;
                Ok(s.clone())
            }
            other => Err(format!(
                "entry {i}: expected a string, found {}",
                kind(other)
            )),
        })
        .collect()
}
