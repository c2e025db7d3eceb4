//! The registry index: trust-checked inserts, immutability, yanking, persistence, reconciliation.

use market_core::index::{FORMAT_VERSION, IndexError, Inserted, Registry};
use market_core::record::{ContentId, Metadata, Unsigned};
use market_core::trust::{Rotation, TrustError};
use market_core::{Release, SigningKey};

fn release(name: &str, version: &str, key: &SigningKey, content: &str) -> Release {
    Unsigned {
        name: name.into(),
        version: version.parse().unwrap(),
        checksum: ContentId::of(content.as_bytes()),
        size: content.len() as u64,
        dependencies: Default::default(),
        meta: Metadata {
            description: format!("{name} package"),
            ..Default::default()
        },
        published_at: 1_700_000_000,
    }
    .sign(key)
}

fn v(s: &str) -> semver::Version {
    s.parse().unwrap()
}

#[test]
fn inserts_are_idempotent_and_versions_immutable() {
    let alice = SigningKey::from_seed([1; 32]);
    let mut reg = Registry::new();
    let r = release("tpl", "1.0.0", &alice, "a");
    assert_eq!(reg.insert(r.clone()).unwrap(), Inserted::New);
    assert_eq!(reg.insert(r.clone()).unwrap(), Inserted::AlreadyPresent);
    let err = reg
        .insert(release("tpl", "1.0.0", &alice, "b"))
        .unwrap_err();
    assert!(matches!(err, IndexError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("tpl@1.0.0"), "{err}");
    assert_eq!(reg.get("tpl").unwrap()[0].release, r);
    assert_eq!(reg.version_count(), 1);
}

#[test]
fn a_new_version_signed_by_another_key_is_refused_until_rotated() {
    let alice = SigningKey::from_seed([1; 32]);
    let mallory = SigningKey::from_seed([2; 32]);
    let mut reg = Registry::new();
    reg.insert(release("tpl", "1.0.0", &alice, "a")).unwrap();
    let err = reg
        .insert(release("tpl", "1.1.0", &mallory, "m"))
        .unwrap_err();
    assert!(
        matches!(err, IndexError::Trust(TrustError::NotOwner { .. })),
        "{err}"
    );
    // The same version with other contents from a stranger is refused as untrusted, not as a conflict.
    let err = reg
        .insert(release("tpl", "1.0.0", &mallory, "m"))
        .unwrap_err();
    assert!(
        matches!(err, IndexError::Trust(TrustError::NotOwner { .. })),
        "{err}"
    );
    assert_eq!(reg.versions("tpl"), [&v("1.0.0")]);

    reg.rotate(Rotation::sign("tpl", &alice, mallory.public()))
        .unwrap();
    reg.insert(release("tpl", "1.1.0", &mallory, "m")).unwrap();
    assert!(reg.insert(release("tpl", "1.2.0", &alice, "a2")).is_err());
}

#[test]
fn a_tampered_release_is_refused() {
    let alice = SigningKey::from_seed([1; 32]);
    let mut r = release("tpl", "1.0.0", &alice, "a");
    r.checksum = ContentId::of(b"other");
    let err = Registry::new().insert(r).unwrap_err();
    assert!(
        matches!(err, IndexError::Trust(TrustError::Invalid(_))),
        "{err}"
    );
}

#[test]
fn versions_stay_sorted_and_yanks_are_tracked() {
    let k = SigningKey::from_seed([1; 32]);
    let mut reg = Registry::new();
    for ver in ["1.10.0", "1.2.0", "0.9.0", "1.2.0-rc.1"] {
        reg.insert(release("tpl", ver, &k, ver)).unwrap();
    }
    assert_eq!(
        reg.versions("tpl"),
        [&v("0.9.0"), &v("1.2.0-rc.1"), &v("1.2.0"), &v("1.10.0")]
    );
    assert_eq!(reg.latest("tpl").unwrap().release.version, v("1.10.0"));
    assert!(reg.yank("tpl", &v("1.10.0")).unwrap());
    assert!(
        !reg.yank("tpl", &v("1.10.0")).unwrap(),
        "second yank changes nothing"
    );
    assert_eq!(reg.latest("tpl").unwrap().release.version, v("1.2.0"));
    assert!(reg.unyank("tpl", &v("1.10.0")).unwrap());
    assert_eq!(reg.latest("tpl").unwrap().release.version, v("1.10.0"));
    assert!(matches!(
        reg.yank("tpl", &v("3.0.0")),
        Err(IndexError::UnknownVersion { .. })
    ));
    assert!(matches!(
        reg.yank("nope", &v("1.0.0")),
        Err(IndexError::UnknownPackage { .. })
    ));
}

#[test]
fn save_and_load_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("registry/index.json");
    let empty = Registry::load(&path).unwrap();
    assert!(empty.is_empty(), "a missing index is an empty registry");

    let k = SigningKey::from_seed([1; 32]);
    let mut reg = Registry::load(&path).unwrap();
    for (name, ver) in [("b-tpl", "1.0.0"), ("a-tpl", "2.0.0"), ("a-tpl", "1.0.0")] {
        reg.insert(release(name, ver, &k, &format!("{name}{ver}")))
            .unwrap();
    }
    reg.yank("a-tpl", &v("1.0.0")).unwrap();
    reg.set_stats("b-tpl", &v("1.0.0"), 1234, 56).unwrap();
    reg.record_download("b-tpl", &v("1.0.0")).unwrap();
    reg.save().unwrap();

    let back = Registry::load(&path).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back.version_count(), 3);
    let names: Vec<&str> = back.packages().map(|(n, _)| n).collect();
    assert_eq!(names, ["a-tpl", "b-tpl"]);
    assert!(back.entry("a-tpl", &v("1.0.0")).unwrap().yanked);
    let b = back.entry("b-tpl", &v("1.0.0")).unwrap();
    assert_eq!((b.downloads, b.stars), (1235, 56));
    assert_eq!(back.trust().owner("a-tpl"), Some(&k.public()));
    back.verify_all().unwrap();
    // Ownership survives a reload: a stranger is still refused.
    let mut back = back;
    let err = back
        .insert(release(
            "a-tpl",
            "3.0.0",
            &SigningKey::from_seed([9; 32]),
            "x",
        ))
        .unwrap_err();
    assert!(matches!(err, IndexError::Trust(_)), "{err}");
}

#[test]
fn malformed_files_are_errors_that_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("index.json");
    std::fs::write(&path, "{ not json").unwrap();
    let err = Registry::load(&path).unwrap_err();
    assert!(matches!(err, IndexError::Malformed { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    std::fs::write(
        &path,
        format!("{{\"format\":{},\"packages\":{{}}}}", FORMAT_VERSION + 1),
    )
    .unwrap();
    assert!(matches!(
        Registry::load(&path),
        Err(IndexError::Format { .. })
    ));

    // The same version listed twice.
    let k = SigningKey::from_seed([1; 32]);
    let mut reg = Registry::new();
    reg.insert(release("real", "1.0.0", &k, "x")).unwrap();
    let text = String::from_utf8(reg.to_vec()).unwrap();
    let start = text.find("[{").unwrap() + 1;
    let end = text.find("}]").unwrap() + 1;
    let entry = &text[start..end];
    let doubled = text.replacen(entry, &format!("{entry},{entry}"), 1);
    std::fs::write(&path, doubled).unwrap();
    let err = Registry::load(&path).unwrap_err();
    assert!(
        err.to_string()
            .contains("package real lists version 1.0.0 twice"),
        "{err}"
    );

    // A publisher key that is not hex.
    let key_hex = k.public().to_string();
    // Only in the package line: the header's trust book holds the same key.
    let (head, body) = text.split_once('\n').unwrap();
    let bad = format!(
        "{head}\n{}",
        body.replace(&key_hex, &format!("zz{}", &key_hex[2..]))
    );
    std::fs::write(&path, bad).unwrap();
    let err = Registry::load(&path).unwrap_err();
    assert!(
        matches!(err, IndexError::Malformed { .. }) && err.to_string().contains("is not hex"),
        "{err}"
    );
}

#[test]
fn verify_all_finds_a_forged_record_in_a_loaded_file() {
    let k = SigningKey::from_seed([1; 32]);
    let mut reg = Registry::new();
    reg.insert(release("tpl", "1.0.0", &k, "a")).unwrap();
    let text = String::from_utf8(reg.to_vec())
        .unwrap()
        .replace("tpl package", "forged text");
    let loaded = Registry::from_slice(text.as_bytes()).unwrap();
    assert!(matches!(loaded.verify_all(), Err(IndexError::Trust(_))));
}

#[test]
fn digests_tell_each_side_what_the_other_lacks() {
    let k = SigningKey::from_seed([1; 32]);
    let mut left = Registry::new();
    let mut right = Registry::new();
    for (name, ver) in [("shared", "1.0.0"), ("both", "1.0.0")] {
        let r = release(name, ver, &k, &format!("{name}{ver}"));
        left.insert(r.clone()).unwrap();
        right.insert(r).unwrap();
    }
    left.insert(release("both", "1.1.0", &k, "l")).unwrap();
    left.insert(release("left-only", "0.1.0", &k, "lo"))
        .unwrap();
    right
        .insert(release("right-only", "2.0.0", &k, "ro"))
        .unwrap();

    let (ld, rd) = (left.digest(), right.digest());
    assert_ne!(ld.root(), rd.root());
    let mut send: Vec<String> = left.missing_from(&rd).iter().map(|r| r.id()).collect();
    send.sort();
    assert_eq!(send, ["both@1.1.0", "left-only@0.1.0"]);
    assert_eq!(
        left.wanted_from(&rd),
        [("right-only".to_string(), v("2.0.0"))]
    );

    for r in left
        .missing_from(&rd)
        .into_iter()
        .cloned()
        .collect::<Vec<_>>()
    {
        right.insert(r).unwrap();
    }
    for r in right
        .missing_from(&left.digest())
        .into_iter()
        .cloned()
        .collect::<Vec<_>>()
    {
        left.insert(r).unwrap();
    }
    assert_eq!(left.digest(), right.digest());
    assert_eq!(left.digest().root(), right.digest().root());
    assert!(left.missing_from(&right.digest()).is_empty());
}

#[test]
fn a_large_index_round_trips_and_duplicate_lines_are_refused() {
    // Enough packages for the load to parse on several threads.
    let k = SigningKey::from_seed([1; 32]);
    let mut reg = Registry::new();
    for i in 0..2100 {
        reg.insert(release(&format!("pkg-{i:05}"), "1.0.0", &k, &i.to_string()))
            .unwrap();
    }
    reg.yank("pkg-01234", &v("1.0.0")).unwrap();
    let bytes = reg.to_vec();
    let back = Registry::from_slice(&bytes).unwrap();
    assert_eq!(back.len(), 2100);
    assert_eq!(back.digest(), reg.digest());
    assert!(back.entry("pkg-01234", &v("1.0.0")).unwrap().yanked);
    assert_eq!(
        back.to_vec(),
        bytes,
        "saving what was loaded gives the same bytes"
    );

    let text = String::from_utf8(bytes).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("{\"name\":\"pkg-00007\""))
        .unwrap();
    let twice = format!("{text}{line}\n");
    let err = Registry::from_slice(twice.as_bytes()).unwrap_err();
    assert!(
        err.to_string()
            .contains("package pkg-00007 is listed twice"),
        "{err}"
    );
    let broken = text.replacen("{\"name\":\"pkg-02000\"", "{\"name\":\"pkg-02000", 1);
    let err = Registry::from_slice(broken.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("line 2002"), "{err}");
}
