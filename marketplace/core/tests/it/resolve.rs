//! Resolution: newest compatible versions, backtracking, locks, yanks, and conflicts in words.

use std::collections::BTreeMap;

use market_core::SigningKey;
use market_core::index::Registry;
use market_core::lockfile::{LockedPackage, Lockfile};
use market_core::record::{ContentId, Metadata, Unsigned};
use market_core::resolve::{ResolveError, resolve};

/// One registry row: name, version, and (dependency, requirement) pairs.
type Row<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A registry from rows.
fn registry(rows: &[Row<'_>]) -> Registry {
    let key = SigningKey::from_seed([5; 32]);
    let mut reg = Registry::new();
    for (name, version, deps) in rows {
        let release = Unsigned {
            name: (*name).into(),
            version: version.parse().unwrap(),
            checksum: ContentId::of(format!("{name}@{version}").as_bytes()),
            size: 1,
            dependencies: deps
                .iter()
                .map(|(d, r)| ((*d).to_owned(), r.parse().unwrap()))
                .collect(),
            meta: Metadata::default(),
            published_at: 0,
        }
        .sign(&key);
        reg.insert(release).unwrap();
    }
    reg
}

fn roots(list: &[(&str, &str)]) -> Vec<(String, semver::VersionReq)> {
    list.iter()
        .map(|(n, r)| ((*n).to_owned(), r.parse().unwrap()))
        .collect()
}

fn chosen(
    reg: &Registry,
    list: &[(&str, &str)],
    lock: Option<&Lockfile>,
) -> BTreeMap<String, String> {
    resolve(reg, &roots(list), lock)
        .unwrap()
        .iter()
        .map(|r| (r.name.clone(), r.version.to_string()))
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn lock_of(reg: &Registry, pairs: &[(&str, &str)]) -> Lockfile {
    Lockfile::new(
        BTreeMap::new(),
        pairs
            .iter()
            .map(|(n, v)| {
                let e = reg.entry(n, &v.parse().unwrap()).unwrap();
                LockedPackage {
                    name: (*n).into(),
                    version: e.release.version.clone(),
                    checksum: e.release.checksum.clone(),
                    dependencies: vec![],
                }
            })
            .collect(),
    )
}

#[test]
fn picks_the_newest_compatible_versions() {
    let reg = registry(&[
        ("http-core", "1.0.0", &[]),
        ("http-core", "1.4.2", &[]),
        ("http-core", "2.0.0", &[]),
        ("http-core", "1.5.0-beta.1", &[]),
        ("web-framework", "1.2.0", &[("http-core", "^1.1")]),
        ("web-framework", "1.3.0", &[("http-core", "^1.4")]),
    ]);
    assert_eq!(
        chosen(&reg, &[("web-framework", "^1.2")], None),
        map(&[("web-framework", "1.3.0"), ("http-core", "1.4.2")])
    );
}

#[test]
fn backtracks_to_an_older_version_when_the_newest_conflicts() {
    let reg = registry(&[
        ("c", "1.0.0", &[]),
        ("c", "2.0.0", &[]),
        ("a", "1.0.0", &[("c", "^1")]),
        ("a", "1.1.0", &[("c", "^2")]),
    ]);
    assert_eq!(
        chosen(&reg, &[("a", "^1"), ("c", "^1")], None),
        map(&[("a", "1.0.0"), ("c", "1.0.0")])
    );
}

#[test]
fn a_deep_chain_resolves() {
    let names: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    let mut rows: Vec<Row<'_>> = Vec::new();
    let deps: Vec<[(&str, &str); 1]> = names.iter().skip(1).map(|n| [(n.as_str(), "^1")]).collect();
    for (i, n) in names.iter().enumerate() {
        let d: &[(&str, &str)] = if i + 1 < names.len() { &deps[i] } else { &[] };
        rows.push((n, "1.0.0", d));
        rows.push((n, "1.1.0", d));
    }
    let reg = registry(&rows);
    let got = chosen(&reg, &[("p0", "*")], None);
    assert_eq!(got.len(), 30);
    assert!(got.values().all(|v| v == "1.1.0"));
}

#[test]
fn a_conflict_is_explained_in_words() {
    let reg = registry(&[
        ("http-core", "1.0.0", &[]),
        ("http-core", "2.0.0", &[]),
        ("web-framework", "1.2.0", &[("http-core", "^2")]),
    ]);
    let err = resolve(
        &reg,
        &roots(&[("web-framework", "^1.2"), ("http-core", "^1")]),
        None,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ResolveError::NoSolution { .. }), "{msg}");
    assert!(
        msg.contains("web-framework 1.2.0 depends on http-core ^2"),
        "{msg}"
    );
    assert!(msg.contains("your project requires http-core ^1"), "{msg}");
    assert!(
        !msg.contains("Not ("),
        "pubgrub's raw notation must not leak: {msg}"
    );
}

#[test]
fn a_requirement_nothing_satisfies_says_so() {
    let reg = registry(&[
        ("http-core", "1.0.0", &[]),
        ("web-framework", "1.0.0", &[("http-core", "^3")]),
    ]);
    let msg = resolve(&reg, &roots(&[("web-framework", "*")]), None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("http-core ^3 (no published version matches)"),
        "{msg}"
    );
}

#[test]
fn unknown_packages_are_named_with_suggestions() {
    let reg = registry(&[
        ("http-core", "1.0.0", &[]),
        ("web-framework", "1.0.0", &[("http-kore", "^1")]),
    ]);
    let err = resolve(&reg, &roots(&[("htpp-core", "^1")]), None).unwrap_err();
    assert!(
        matches!(&err, ResolveError::UnknownPackage { name, suggestions } if name == "htpp-core" && suggestions == &["http-core"]),
        "{err}"
    );
    assert!(err.to_string().contains("did you mean http-core?"), "{err}");
    // A missing transitive dependency is named too.
    let msg = resolve(&reg, &roots(&[("web-framework", "*")]), None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("http-kore ^1 (not in the registry; did you mean http-core?)"),
        "{msg}"
    );
}

#[test]
fn the_lock_is_preferred_and_yanked_versions_are_skipped_unless_locked() {
    let mut reg = registry(&[
        ("a", "1.0.0", &[]),
        ("a", "1.1.0", &[]),
        ("a", "1.2.0", &[]),
    ]);
    let lock = lock_of(&reg, &[("a", "1.1.0")]);
    assert_eq!(
        chosen(&reg, &[("a", "^1")], Some(&lock)),
        map(&[("a", "1.1.0")])
    );
    // A lock outside the requirement is not forced.
    assert_eq!(
        chosen(&reg, &[("a", "^1.2")], Some(&lock)),
        map(&[("a", "1.2.0")])
    );

    reg.yank("a", &"1.2.0".parse().unwrap()).unwrap();
    reg.yank("a", &"1.1.0".parse().unwrap()).unwrap();
    assert_eq!(chosen(&reg, &[("a", "^1")], None), map(&[("a", "1.0.0")]));
    assert_eq!(
        chosen(&reg, &[("a", "^1")], Some(&lock)),
        map(&[("a", "1.1.0")])
    );
    let msg = resolve(&reg, &roots(&[("a", "^1.1")]), None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("yanked"), "{msg}");
}
