//! Manifests: a complete one parses; each bad field is an error naming file, field and reason.

use std::path::Path;

use market_core::manifest::{Manifest, ManifestError};

const GOOD: &str = r#"
[package]
name = "web-framework"
version = "1.2.0-beta.1"
description = "A small web framework template"
authors = ["Ada <ada@example.org>", "Grace"]
license = "MIT OR Apache-2.0"
keywords = ["web", "http"]
tags = ["http", "server"]
categories = ["web"]

[dependencies]
http-core = "^1.2"
router = ">=0.3, <0.5"
"#;

#[test]
fn a_complete_manifest_parses() {
    let m = Manifest::parse(GOOD, Path::new("market.toml")).unwrap();
    assert_eq!(m.name, "web-framework");
    assert_eq!(m.version, semver::Version::parse("1.2.0-beta.1").unwrap());
    assert_eq!(
        m.dependencies["http-core"],
        semver::VersionReq::parse("^1.2").unwrap()
    );
    assert_eq!(m.dependencies.len(), 2);
    let meta = m.meta();
    assert_eq!(meta.description, "A small web framework template");
    assert_eq!(meta.authors, ["Ada <ada@example.org>", "Grace"]);
    assert_eq!(meta.license.as_deref(), Some("MIT OR Apache-2.0"));
    assert_eq!(meta.keywords, ["web", "http"]);
    assert_eq!(meta.tags, ["http", "server"]);
    assert_eq!(meta.categories, ["web"]);
}

#[test]
fn only_name_and_version_are_required() {
    let m = Manifest::parse(
        "[package]\nname = \"x\"\nversion = \"0.1.0\"\n",
        Path::new("m.toml"),
    )
    .unwrap();
    assert!(m.dependencies.is_empty() && m.authors.is_empty() && m.license.is_none());
}

/// Replaces the line starting with `key =` in the `[package]` part of GOOD, or appends `line`.
fn with_package_line(key: &str, line: &str) -> String {
    let mut out = Vec::new();
    let mut replaced = false;
    for l in GOOD.lines() {
        if !replaced && l.starts_with(&format!("{key} =")) {
            out.push(line.to_owned());
            replaced = true;
        } else {
            out.push(l.to_owned());
            if l == "[package]" && !GOOD.contains(&format!("\n{key} =")) {
                out.push(line.to_owned());
                replaced = true;
            }
        }
    }
    out.join("\n")
}

fn without_line(key: &str) -> String {
    GOOD.lines()
        .filter(|l| !l.starts_with(&format!("{key} =")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn each_bad_field_is_named_with_its_reason() {
    let long = "x".repeat(2000);
    let many = format!(
        "tags = [{}]",
        (0..17)
            .map(|i| format!("\"t{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let cases: Vec<(String, &str, &str)> = vec![
        (without_line("name"), "package.name", "is missing"),
        (
            with_package_line("name", "name = \"Web\""),
            "package.name",
            "only lowercase",
        ),
        (
            with_package_line("name", "name = \"web_framework\""),
            "package.name",
            "'_'",
        ),
        (
            with_package_line("name", &format!("name = \"{}\"", "a".repeat(65))),
            "package.name",
            "at most 64",
        ),
        (
            with_package_line("name", "name = 7"),
            "package.name",
            "expected a string, found an integer",
        ),
        (without_line("version"), "package.version", "is missing"),
        (
            with_package_line("version", "version = \"1.x\""),
            "package.version",
            "\"1.x\" is not a semantic version",
        ),
        (
            with_package_line("version", "version = 1.2"),
            "package.version",
            "found a float",
        ),
        (
            with_package_line("description", &format!("description = \"{long}\"")),
            "package.description",
            "at most 1024",
        ),
        (
            with_package_line("license", "license = true"),
            "package.license",
            "found a boolean",
        ),
        (
            with_package_line("authors", "authors = \"Ada\""),
            "package.authors",
            "expected an array",
        ),
        (
            with_package_line("keywords", "keywords = [\"ok\", 3]"),
            "package.keywords",
            "entry 1",
        ),
        (
            with_package_line("tags", &many),
            "package.tags",
            "at most 16",
        ),
        (
            with_package_line("categories", "categories = [\"\"]"),
            "package.categories",
            "entry 0 is empty",
        ),
        (
            with_package_line("categories", "categories = [\"bell\\u0007\"]"),
            "package.categories",
            "control character",
        ),
        (
            with_package_line("lisence", "lisence = \"MIT\""),
            "package.lisence",
            "unknown field",
        ),
        (
            format!("{GOOD}\nHttp = \"1\"\n"),
            "dependencies.Http",
            "dependency name",
        ),
        (
            format!("{GOOD}\nbad-req = \"not a requirement\"\n"),
            "dependencies.bad-req",
            "not a semantic version requirement",
        ),
        (
            format!("{GOOD}\nnum = 1\n"),
            "dependencies.num",
            "found an integer",
        ),
        (
            format!("{GOOD}\nweb-framework = \"1\"\n"),
            "dependencies.web-framework",
            "itself",
        ),
        (
            "[dependencies]\nx = \"1\"\n".to_owned(),
            "package",
            "[package] table is missing",
        ),
    ];
    for (text, field, reason) in cases {
        let err = Manifest::parse(&text, Path::new("market.toml")).unwrap_err();
        let msg = err.to_string();
        assert_eq!(
            err.field(),
            Some(field),
            "wrong field for {msg}\n--- input ---\n{text}"
        );
        assert!(
            msg.starts_with(&format!("market.toml: {field}: ")),
            "message must name file and field: {msg}"
        );
        assert!(
            msg.contains(reason),
            "message {msg:?} should contain {reason:?}"
        );
    }
}

#[test]
fn syntax_errors_and_unknown_tables_name_the_file() {
    for text in [
        "[package\nname = \"x\"",
        "[package]\nname = \"x\"\nversion = \"1.0.0\"\n[extra]\nk = 1\n",
    ] {
        let err = Manifest::parse(text, Path::new("dir/market.toml")).unwrap_err();
        assert!(matches!(err, ManifestError::Syntax { .. }), "{err}");
        assert!(err.to_string().starts_with("dir/market.toml: "), "{err}");
    }
}

#[test]
fn from_path_reads_files_and_names_missing_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("market.toml");
    let err = Manifest::from_path(&path).unwrap_err();
    assert!(matches!(err, ManifestError::Read { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    std::fs::write(&path, GOOD).unwrap();
    assert_eq!(
        Manifest::from_dir(tmp.path()).unwrap().name,
        "web-framework"
    );
    std::fs::write(&path, "x".repeat(70 * 1024)).unwrap();
    assert!(matches!(
        Manifest::from_path(&path),
        Err(ManifestError::TooLarge { .. })
    ));
}
