//! Property tests (proptest) of the parsers that take hostile input: the manifest parser and archive
//! extraction. Thousands of generated and mutated inputs; none may panic, write outside its target,
//! or get past a limit, and the dry run ([`archive::check`]) must judge every archive exactly as
//! extraction does.
//!
//! Cases per property: `PROPTEST_CASES` if set, else a modest default so that `cargo test` stays
//! fast; a long run is `PROPTEST_CASES=100000000 timeout 600 cargo test -p market-core --test it
//! props::`. A failing case is shrunk and its seed kept in `tests/it/proptest-regressions/`, which
//! is committed and replayed first on every run.

use std::collections::BTreeMap;
use std::path::Path;

use market_core::archive::{self, ArchiveError, Extracted, Limits};
use market_core::manifest::{
    MAX_DEPENDENCIES, MAX_DESCRIPTION, MAX_LIST, MAX_SHORT_STRING, Manifest, ManifestError,
};
use market_core::record::validate_name;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use crate::install::support::{gzip, snapshot};

/// The configuration of every property here: `PROPTEST_CASES` wins, else `cases`; failures are
/// persisted in `file`.
fn config(cases: u32, file: &'static str) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(file)));
    config
}

const MANIFEST_REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/proptest-regressions/manifest.txt"
);
const ARCHIVE_REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/proptest-regressions/archive.txt"
);

// ---------------------------------------------------------------------------------------------
// The manifest parser
// ---------------------------------------------------------------------------------------------

/// A string that is often valid for `valid` and otherwise anything.
fn sometimes(valid: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        3 => proptest::string::string_regex(valid).unwrap(),
        1 => any::<String>(),
        1 => "[ -~]{0,200}",
    ]
    .boxed()
}

/// Valid four times in five.
fn often(valid: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        8 => proptest::string::string_regex(valid).unwrap(),
        1 => any::<String>(),
        1 => "[ -~]{0,200}",
    ]
    .boxed()
}

/// Like [`sometimes`], but valid far more often: for the many items of a list, where one invalid
/// item spoils the whole manifest.
fn mostly(valid: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        40 => proptest::string::string_regex(valid).unwrap(),
        1 => any::<String>(),
        1 => "[ -~]{0,200}",
    ]
    .boxed()
}

fn toml_value() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        4 => sometimes("[ -~]{0,140}").prop_map(toml::Value::String),
        1 => any::<i64>().prop_map(toml::Value::Integer),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
        1 => proptest::collection::vec("[ -~]{0,140}", 0..20)
            .prop_map(|v| toml::Value::Array(v.into_iter().map(toml::Value::String).collect())),
    ]
}

/// A manifest as a TOML table, with fields valid, invalid, missing or unknown.
#[derive(Debug, Clone)]
struct ManifestParts {
    name: Option<String>,
    version: Option<String>,
    description: Option<String>,
    lists: Vec<(&'static str, Vec<String>)>,
    extra: Vec<(String, toml::Value)>,
    dependencies: Vec<(String, toml::Value)>,
}

fn manifest_parts() -> impl Strategy<Value = ManifestParts> {
    let list_key = prop_oneof![
        Just("authors"),
        Just("keywords"),
        Just("tags"),
        Just("categories")
    ];
    (
        proptest::option::weighted(0.95, often("[a-z0-9][a-z0-9-]{0,70}")),
        proptest::option::weighted(
            0.95,
            often(
                "(0|[1-9][0-9]{0,3})\\.(0|[1-9][0-9]{0,3})\\.(0|[1-9][0-9]{0,3})(-[a-z0-9]{1,8})?",
            ),
        ),
        proptest::option::of(sometimes("[ -~]{0,1100}")),
        proptest::collection::vec(
            (
                list_key,
                prop_oneof![
                    4 => proptest::collection::vec(mostly("[ -~]{0,20}"), 0..4),
                    1 => proptest::collection::vec(sometimes("[ -~]{0,140}"), 0..20),
                ],
            ),
            0..4,
        ),
        proptest::option::weighted(0.2, ("[a-z]{1,10}", toml_value()))
            .prop_map(|extra| extra.into_iter().collect::<Vec<_>>()),
        prop_oneof![4 => Just(0usize..6), 1 => Just(60usize..70)].prop_flat_map(|count| {
            proptest::collection::vec(
                (
                    mostly("[a-z0-9][a-z0-9-]{0,20}"),
                    prop_oneof![
                        40 => mostly("(\\^|~|=|>=|<)?[0-9]{1,2}(\\.[0-9]{1,2}){0,2}")
                            .prop_map(toml::Value::String),
                        1 => toml_value(),
                    ],
                ),
                count,
            )
        }),
    )
        .prop_map(
            |(name, version, description, lists, extra, dependencies)| ManifestParts {
                name,
                version,
                description,
                lists,
                extra,
                dependencies,
            },
        )
}

impl ManifestParts {
    fn to_toml(&self) -> String {
        let mut package = toml::Table::new();
        if let Some(n) = &self.name {
            package.insert("name".into(), toml::Value::String(n.clone()));
        }
        if let Some(v) = &self.version {
            package.insert("version".into(), toml::Value::String(v.clone()));
        }
        if let Some(d) = &self.description {
            package.insert("description".into(), toml::Value::String(d.clone()));
        }
        for (key, items) in &self.lists {
            package.insert(
                (*key).into(),
                toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect()),
            );
        }
        for (key, value) in &self.extra {
            package.insert(key.clone(), value.clone());
        }
        let mut deps = toml::Table::new();
        for (name, req) in &self.dependencies {
            deps.insert(name.clone(), req.clone());
        }
        let mut file = toml::Table::new();
        file.insert("package".into(), toml::Value::Table(package));
        file.insert("dependencies".into(), toml::Value::Table(deps));
        toml::to_string(&file).unwrap()
    }
}

/// What must hold of any parse: no panic (the caller), an error naming the file and a known
/// field, or a manifest within every bound.
fn check_parse(text: &str) -> Result<Option<Manifest>, TestCaseError> {
    let path = Path::new("/pkg/market.toml");
    match Manifest::parse(text, path) {
        Ok(m) => {
            prop_assert!(validate_name(&m.name).is_ok(), "name {:?}", m.name);
            prop_assert!(m.description.len() <= MAX_DESCRIPTION);
            for list in [&m.authors, &m.keywords, &m.tags, &m.categories] {
                prop_assert!(list.len() <= MAX_LIST, "{} entries", list.len());
                prop_assert!(list.iter().all(|s| s.len() <= MAX_SHORT_STRING));
            }
            prop_assert!(
                m.license
                    .as_ref()
                    .is_none_or(|l| l.len() <= MAX_SHORT_STRING)
            );
            prop_assert!(m.dependencies.len() <= MAX_DEPENDENCIES);
            for dep in m.dependencies.keys() {
                prop_assert!(
                    validate_name(dep).is_ok() && dep != &m.name,
                    "dependency {dep:?}"
                );
            }
            Ok(Some(m))
        }
        Err(e) => {
            prop_assert!(
                e.to_string().starts_with("/pkg/market.toml: "),
                "the error does not name the file: {e}"
            );
            if let ManifestError::Field { field, reason, .. } = &e {
                prop_assert!(!reason.is_empty());
                prop_assert!(
                    field == "package"
                        || field == "dependencies"
                        || field.starts_with("package.")
                        || field.starts_with("dependencies."),
                    "unexpected field {field:?}"
                );
            }
            Ok(None)
        }
    }
}

proptest! {
    #![proptest_config(config(256, MANIFEST_REGRESSIONS))]

    /// Any text at all.
    #[test]
    fn manifest_parser_takes_any_text(text in any::<String>()) {
        check_parse(&text)?;
    }

    /// Well-formed TOML with fields valid or not; what parses is what was written.
    #[test]
    fn manifest_parser_takes_any_fields(parts in manifest_parts()) {
        let text = parts.to_toml();
        if let Some(m) = check_parse(&text)? {
            prop_assert_eq!(Some(&m.name), parts.name.as_ref());
            let version: semver::Version = parts.version.as_ref().unwrap().parse().unwrap();
            prop_assert_eq!(&m.version, &version);
            prop_assert_eq!(&m.description, &parts.description.clone().unwrap_or_default());
            let deps: BTreeMap<&str, String> = parts
                .dependencies
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str().unwrap().to_owned()))
                .collect();
            prop_assert_eq!(m.dependencies.len(), deps.len());
            for (name, req) in &m.dependencies {
                let written: semver::VersionReq = deps[name.as_str()].parse().unwrap();
                prop_assert_eq!(req, &written);
            }
        }
    }

    /// A valid manifest with bytes replaced, inserted or removed.
    #[test]
    fn manifest_parser_takes_mutated_manifests(
        parts in manifest_parts(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = parts.to_toml().into_bytes();
        for (at, byte, how) in edits {
            let i = at.index(bytes.len() + 1);
            match how {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        check_parse(&String::from_utf8_lossy(&bytes))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Archive extraction
// ---------------------------------------------------------------------------------------------

/// One hand-made tar entry: raw path bytes (anything), a type flag, contents.
#[derive(Debug, Clone)]
struct Raw {
    path: Vec<u8>,
    kind: u8,
    data: Vec<u8>,
    link: Vec<u8>,
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z]{1,3}",
        1 => Just("..".to_owned()),
        1 => Just(".".to_owned()),
        1 => Just(String::new()),
        1 => Just("C:".to_owned()),
        1 => "[a-z]{250,260}",
        1 => any::<String>(),
    ]
}

fn raw_path() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => (
            proptest::option::weighted(0.1, prop_oneof![Just("/"), Just("\\"), Just("./")]),
            proptest::collection::vec(component(), 1..12),
            prop_oneof![Just("/"), Just("\\")],
            proptest::option::weighted(0.2, Just("/")),
        )
            .prop_map(|(lead, parts, sep, trail)| {
                format!("{}{}{}", lead.unwrap_or(""), parts.join(sep), trail.unwrap_or(""))
                    .into_bytes()
            }),
        // Deep: the flood's shape, and past the depth and length limits.
        1 => (1usize..600, "[a-z]{1,2}").prop_map(|(n, d)| format!("{}f", format!("{d}/").repeat(n)).into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..120),
    ]
}

fn raw_kind() -> impl Strategy<Value = u8> {
    prop_oneof![
        10 => Just(b'0'),
        4 => Just(b'5'),
        1 => Just(b'\0'),
        1 => Just(b'1'),
        1 => Just(b'2'),
        1 => Just(b'3'),
        1 => Just(b'4'),
        1 => Just(b'6'),
        1 => Just(b'7'),
        1 => Just(b'g'),
        1 => Just(b'x'),
        1 => Just(b'S'),
        1 => any::<u8>(),
    ]
}

fn raw_data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..600),
        // Compressible runs, to exercise the ratio guard.
        1 => (any::<u8>(), 0usize..200_000).prop_map(|(b, n)| vec![b; n]),
    ]
}

fn raw_entries() -> impl Strategy<Value = Vec<Raw>> {
    proptest::collection::vec(
        (raw_path(), raw_kind(), raw_data(), raw_path()).prop_map(|(path, kind, data, link)| Raw {
            path,
            kind,
            data,
            link,
        }),
        0..24,
    )
}

/// A tar stream built byte by byte (GNU long-name records for long paths), so that anything the
/// tar crate's safe setters would refuse can be expressed.
fn raw_tar(entries: &[Raw]) -> Vec<u8> {
    fn header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        let n = name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(100);
        h.as_old_mut().linkname[..l].copy_from_slice(&link[..l]);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(0);
        h.set_cksum();
        h
    }
    fn push(out: &mut Vec<u8>, h: &tar::Header, data: &[u8]) {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
    }
    let mut out = Vec::new();
    for e in entries {
        if e.path.len() >= 100 {
            let mut long = e.path.clone();
            long.push(0);
            push(
                &mut out,
                &header(b"././@LongLink", b'L', long.len() as u64, b""),
                &long,
            );
        }
        push(
            &mut out,
            &header(&e.path, e.kind, e.data.len() as u64, &e.link),
            &e.data,
        );
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        1 => Just(Limits::default()),
        3 => (1u64..60, 0u64..300_000, 1u64..40, 2u64..300, 0u64..100_000).prop_map(
            |(max_files, max_bytes, max_depth, max_ratio, ratio_floor)| Limits {
                max_files,
                max_bytes,
                max_depth,
                max_ratio,
                ratio_floor,
            },
        ),
    ]
}

/// Extracts `bytes` into `<tmp>/sandbox/dest` and checks what must hold whatever the archive:
/// nothing outside the destination; the dry run agrees with the extraction; and what was extracted
/// is within the limits, has no links or special files, and is what the result says.
fn extract_and_check(
    bytes: &[u8],
    limits: &Limits,
) -> Result<Result<Extracted, ArchiveError>, TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("sandbox/dest");
    let result = archive::extract(bytes, &dest, limits);
    let outside: Vec<String> = snapshot(tmp.path(), &["sandbox/dest"])
        .into_keys()
        .filter(|k| k != "sandbox/" && k != "sandbox/dest/")
        .collect();
    prop_assert!(
        outside.is_empty(),
        "wrote outside the destination: {:?}",
        outside
    );

    let dry = archive::check(bytes, limits);
    match (&result, &dry) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
        (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
        _ => prop_assert!(false, "extract gave {:?}, check gave {:?}", result, dry),
    }

    if let Ok(done) = &result {
        prop_assert!(
            done.files + done.dirs <= limits.max_files,
            "{:?} over {:?}",
            done,
            limits
        );
        prop_assert!(done.bytes <= limits.max_bytes);
        let mut files = 0;
        let mut dirs = 0;
        let mut bytes_on_disk = 0;
        walk(&dest, &dest, &mut |rel, meta| {
            let depth = rel.components().count() as u64;
            prop_assert!(
                depth <= limits.max_depth,
                "{} is {depth} deep",
                rel.display()
            );
            let ft = meta.file_type();
            if ft.is_dir() {
                dirs += 1;
            } else if ft.is_file() {
                files += 1;
                bytes_on_disk += meta.len();
            } else {
                prop_assert!(false, "{} is neither file nor directory", rel.display());
            }
            Ok(())
        })?;
        prop_assert_eq!(
            (files, dirs, bytes_on_disk),
            (done.files, done.dirs, done.bytes)
        );
    }
    Ok(result)
}

fn walk(
    root: &Path,
    dir: &Path,
    f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        f(path.strip_prefix(root).unwrap(), &meta)?;
        if meta.is_dir() {
            walk(root, &path, f)?;
        }
    }
    Ok(())
}

/// A small package tree: relative file paths (up to 5 deep) with contents.
fn tree() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
    proptest::collection::btree_map(
        proptest::collection::vec("[a-z]{1,4}", 1..6).prop_map(|p| p.join("/")),
        prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..300),
            1 => (any::<u8>(), 0usize..50_000).prop_map(|(b, n)| vec![b; n]),
        ],
        0..12,
    )
}

/// Writes `tree` under `root`; `None` when two paths clash (a file where a directory must be).
fn write_tree(root: &Path, tree: &BTreeMap<String, Vec<u8>>) -> Option<()> {
    std::fs::create_dir_all(root).unwrap();
    for (path, data) in tree {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).ok()?;
        if p.is_dir() {
            return None;
        }
        std::fs::write(p, data).ok()?;
    }
    Some(())
}

#[derive(Debug, Clone)]
enum Edit {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Remove(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(
        prop_oneof![
            4 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
            1 => (any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..600))
                .prop_map(|(i, b)| Edit::Insert(i, b)),
            1 => (any::<prop::sample::Index>(), 1usize..600).prop_map(|(i, n)| Edit::Remove(i, n)),
            1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
        ],
        1..6,
    )
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for edit in edits {
        let len = bytes.len();
        match edit {
            Edit::Set(i, b) if len > 0 => {
                let i = i.index(len);
                bytes[i] = *b;
            }
            Edit::Insert(i, b) => {
                let i = i.index(len + 1);
                bytes.splice(i..i, b.iter().copied());
            }
            Edit::Remove(i, n) if len > 0 => {
                let i = i.index(len);
                bytes.drain(i..(i + n).min(len));
            }
            Edit::Truncate(i) => bytes.truncate(i.index(len + 1)),
            _ => {}
        }
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
    out
}

proptest! {
    #![proptest_config(config(64, ARCHIVE_REGRESSIONS))]

    /// Arbitrary bytes, and arbitrary bytes behind a valid gzip layer.
    #[test]
    fn extraction_takes_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096), zipped in any::<bool>(), limits in limits()) {
        let bytes = if zipped { gzip(&bytes) } else { bytes };
        // Refused or not, the checks inside are the property.
        let _outcome = extract_and_check(&bytes, &limits)?;
    }

    /// Hand-made tars: any path, any type flag, any size, links, long names, deep nests.
    #[test]
    fn extraction_takes_hostile_entries(entries in raw_entries(), limits in limits()) {
        // Refused or not, the checks inside are the property.
        let _outcome = extract_and_check(&gzip(&raw_tar(&entries)), &limits)?;
    }

    /// Packed packages, mutated in the tar stream or in the gzip stream.
    #[test]
    fn extraction_takes_mutated_packages(tree in tree(), edits in edits(), in_tar in any::<bool>(), limits in limits()) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        prop_assume!(write_tree(&src, &tree).is_some());
        let Ok(packed) = archive::pack(&src) else {
            return Ok(());
        };
        let mutated = if in_tar {
            let mut tar = gunzip(&packed);
            apply(&mut tar, &edits);
            gzip(&tar)
        } else {
            let mut gz = packed;
            apply(&mut gz, &edits);
            gz
        };
        // Refused or not, the checks inside are the property.
        let _outcome = extract_and_check(&mutated, &limits)?;
    }

    /// Whatever pack accepts under some limits, extraction accepts under the same limits, and
    /// restores exactly; whatever pack refuses for a limit, it refuses with extraction's words.
    #[test]
    fn what_pack_accepts_extraction_accepts(tree in tree(), limits in limits()) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        prop_assume!(write_tree(&src, &tree).is_some());
        match archive::pack_with(&src, &limits) {
            Ok(bytes) => {
                let done = extract_and_check(&bytes, &limits)?;
                prop_assert!(done.is_ok(), "packed, then refused: {:?}", done);
                let dest = tmp.path().join("sandbox/dest");
                archive::extract(&bytes, &dest, &limits).unwrap();
                prop_assert_eq!(snapshot(&src, &[]), snapshot(&dest, &[]));
            }
            Err(e) => prop_assert!(
                matches!(
                    e,
                    ArchiveError::TooManyFiles { .. }
                        | ArchiveError::TooLarge { .. }
                        | ArchiveError::TooDeep { .. }
                        | ArchiveError::Bomb { .. }
                ),
                "pack refused for another reason: {}", e
            ),
        }
    }
}

/// The field generator is not vacuous: a good share of what it makes is a valid manifest, so the
/// round-trip half of `manifest_parser_takes_any_fields` is exercised.
#[test]
fn the_manifest_generator_makes_valid_manifests_too() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = manifest_parts();
    let ok = (0..400)
        .filter(|_| {
            let parts = strategy.new_tree(&mut runner).unwrap().current();
            Manifest::parse(&parts.to_toml(), Path::new("m")).is_ok()
        })
        .count();
    assert!(ok >= 40, "only {ok} of 400 generated manifests are valid");
}
