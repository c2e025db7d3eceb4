//! Publish refuses what install would refuse: unresolvable dependencies and archives beyond the
//! extraction limits (issue 17).

use market_core::archive::ArchiveError;
use market_core::index::Registry;
use market_core::install::Installer;
use market_core::publish::{PublishError, PublishOptions, Unresolved, publish, publish_with};

use crate::install::support::{World, req};

fn cache(world: &World) -> market_core::cache::Cache {
    market_core::cache::Cache::new(world.store(), 1 << 20)
}

/// Issue 17: `ghost-lib = "^2"` published with exit 0, and install then named another dependency.
/// Now publish refuses, naming each dependency that does not resolve and why, and changes nothing.
#[test]
fn dependencies_that_do_not_resolve_are_named_and_refused() {
    let world = World::new();
    world.publish("http-core", "1.0.0", &[]);
    world.publish("old-lib", "1.0.0", &[]);
    world.publish("gone-lib", "2.0.0", &[]);
    world
        .db()
        .yank("gone-lib", &"2.0.0".parse().unwrap())
        .unwrap();
    let registry_before = world.registry_bytes();
    let store_before = world.store().list().unwrap();

    let dir = world.package_dir(
        "app",
        "1.0.0",
        &[
            ("ghost-lib", "^2"),
            ("http-core", "^1"),
            ("http-cor", "^1"),
            ("old-lib", "^3"),
            ("gone-lib", "^2"),
        ],
    );
    let err = publish(&world.home, &dir, &world.key, 1_700_000_100).unwrap_err();
    let PublishError::Unresolved { id, unresolved, .. } = &err else {
        panic!("expected unresolved dependencies, got {err}");
    };
    assert_eq!(id, "app@1.0.0");
    let names: Vec<&str> = unresolved
        .iter()
        .map(|u| match u {
            Unresolved::Missing { name, .. }
            | Unresolved::NoMatch { name, .. }
            | Unresolved::OnlyYanked { name, .. } => name.as_str(),
            Unresolved::Together(_) => "(together)",
        })
        .collect();
    assert_eq!(names, ["ghost-lib", "gone-lib", "http-cor", "old-lib"]);
    let text = err.to_string();
    for words in [
        "ghost-lib ^2: no package ghost-lib in the registry",
        "gone-lib ^2: only yanked versions match (2.0.0)",
        "http-cor ^1: no package http-cor in the registry (did you mean http-core?)",
        "old-lib ^3: no version matches; it has 1.0.0",
        "--allow-unresolved",
        &world.db().path().display().to_string(),
    ] {
        assert!(text.contains(words), "{words:?} missing from:\n{text}");
    }
    assert!(
        !text.contains("http-core ^1"),
        "a resolvable one is not named:\n{text}"
    );
    assert_eq!(
        world.registry_bytes(),
        registry_before,
        "the registry is unchanged"
    );
    assert_eq!(
        world.store().list().unwrap(),
        store_before,
        "nothing stored"
    );

    // For a registry that will receive them later.
    let options = PublishOptions {
        allow_unresolved: true,
        ..Default::default()
    };
    let release = publish_with(&world.home, &dir, &world.key, 1_700_000_100, &options).unwrap();
    assert_eq!(release.id(), "app@1.0.0");
    assert!(world.registry().entry("app", &release.version).is_some());
}

/// Each dependency has a match, but not together: the resolver's explanation is the reason.
#[test]
fn dependencies_that_conflict_together_are_refused_with_the_resolvers_words() {
    let world = World::new();
    world.publish("http-core", "1.0.0", &[]);
    world.publish("http-core", "2.0.0", &[]);
    world.publish("web-framework", "1.0.0", &[("http-core", "^1")]);
    let dir = world.package_dir(
        "app",
        "1.0.0",
        &[("web-framework", "^1"), ("http-core", "^2")],
    );
    let err = publish(&world.home, &dir, &world.key, 1_700_000_100).unwrap_err();
    assert!(
        matches!(&err, PublishError::Unresolved { unresolved, .. }
            if matches!(unresolved.as_slice(), [Unresolved::Together(_)])),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("http-core") && text.contains("web-framework"),
        "{text}"
    );
}

/// What publish accepts, install installs: the dependency check is the resolver install runs.
#[test]
fn a_published_package_with_dependencies_installs() {
    let world = World::new();
    world.publish("http-core", "1.0.0", &[]);
    world.publish("web-framework", "1.2.0", &[("http-core", "^1")]);
    world.publish("app", "0.1.0", &[("web-framework", "^1.2")]);
    let reg: Registry = world.registry();
    let c = cache(&world);
    let report = Installer::new(&reg, &c, world.target())
        .install(&[req("app", "*")])
        .unwrap();
    assert_eq!(report.installed.len(), 3);
}

/// Issue 17: a package of 5 MiB of zeros published and could never be installed (refused as a
/// bomb). Publish now refuses it with extraction's words, and stores and indexes nothing.
#[test]
fn a_package_install_would_refuse_as_a_bomb_is_refused_at_publish() {
    let world = World::new();
    let dir = world.package_dir("zeros", "1.0.0", &[]);
    std::fs::write(dir.join("zeros.bin"), vec![0u8; 5 * 1024 * 1024]).unwrap();
    let err = publish(&world.home, &dir, &world.key, 1_700_000_100).unwrap_err();
    assert!(
        matches!(
            &err,
            PublishError::Archive {
                source: ArchiveError::Bomb { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("decompression bomb"), "{err}");
    assert!(world.store().list().unwrap().is_empty());
    assert_eq!(world.registry().version_count(), 0);
}
