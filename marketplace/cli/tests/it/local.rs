//! The local marketplace, tried as a new user would.

use crate::{Market, package};

/// keygen, publish three templates that depend on each other, search with a prefix and a typo,
/// install the top one (dependencies pulled, lock written), and install again with --locked.
#[test]
fn new_user_flow() {
    let m = Market::new();
    let src = tempfile::tempdir().unwrap();
    let out = m.ok(&["keygen"]);
    assert!(out.contains("created publisher key"), "{out}");

    let core = package(
        src.path(),
        "http-core",
        "1.0.0",
        "HTTP types for templates",
        &[],
    );
    let fw = package(
        src.path(),
        "web-framework-axum",
        "1.2.0",
        "A web framework template",
        &[("http-core", "^1.0")],
    );
    let app = package(
        src.path(),
        "app-skeleton",
        "0.1.0",
        "An application skeleton",
        &[("web-framework-axum", "^1.2")],
    );
    for dir in [&core, &fw, &app] {
        let out = m.ok(&["publish", dir.to_str().unwrap()]);
        assert!(out.starts_with("published "), "{out}");
    }

    let out = m.ok(&["search", "web fram"]);
    assert!(
        out.lines()
            .nth(1)
            .unwrap_or("")
            .starts_with("web-framework-axum "),
        "{out}"
    );
    let out = m.ok(&["search", "framwork"]);
    assert!(
        out.contains("web-framework-axum"),
        "a one-letter typo must still find it:\n{out}"
    );
    let out = m.ok(&["search", "--json", "temlate", "--tag", "http"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["hits"][0]["package"]["name"], "web-framework-axum",
        "{out}"
    );

    let out = m.ok(&["install", "app-skeleton"]);
    for name in [
        "app-skeleton@0.1.0",
        "web-framework-axum@1.2.0",
        "http-core@1.0.0",
    ] {
        assert!(
            out.contains(&format!("installed {name}")),
            "{name} missing from:\n{out}"
        );
    }
    let packages = m.path().join("packages");
    assert_eq!(
        std::fs::read_to_string(packages.join("http-core/main.tpl")).unwrap(),
        "http-core 1.0.0\n"
    );
    let lock = std::fs::read_to_string(packages.join("market.lock")).unwrap();
    assert!(lock.contains("name = \"web-framework-axum\""), "{lock}");

    // A newer framework appears; the lock keeps the old one, and --locked refuses a change.
    let fw13 = package(
        src.path(),
        "web-framework-axum",
        "1.3.0",
        "A web framework template",
        &[("http-core", "^1.0")],
    );
    m.ok(&["publish", fw13.to_str().unwrap()]);
    let out = m.ok(&["install", "--locked"]);
    assert!(out.contains("unchanged web-framework-axum@1.2.0"), "{out}");
    let err = m.fails(&["install", "--locked", "web-framework-axum@^1.3"]);
    assert!(err.contains("--locked"), "{err}");
    assert_eq!(
        std::fs::read_to_string(packages.join("market.lock")).unwrap(),
        lock,
        "a refused install must not touch the lock"
    );

    let out = m.ok(&["list"]);
    assert!(
        out.contains("app-skeleton") && out.contains("direct"),
        "{out}"
    );
}

#[test]
fn errors_name_what_and_where() {
    let m = Market::new();
    let src = tempfile::tempdir().unwrap();
    // Publishing before keygen says what to do.
    let dir = package(src.path(), "solo", "1.0.0", "x", &[]);
    let err = m.fails(&["publish", dir.to_str().unwrap()]);
    assert!(err.contains("market keygen"), "{err}");
    m.ok(&["keygen"]);
    // A bad manifest names the file and the field.
    std::fs::write(
        dir.join("market.toml"),
        "[package]\nname = \"solo\"\nversion = \"1.x\"\n",
    )
    .unwrap();
    let err = m.fails(&["publish", dir.to_str().unwrap()]);
    assert!(
        err.contains("market.toml") && err.contains("version"),
        "{err}"
    );
    // An unknown package and an unsatisfiable requirement.
    let err = m.fails(&["install", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    let ok = package(src.path(), "solo", "1.0.1", "x", &[]);
    m.ok(&["publish", ok.to_str().unwrap()]);
    let err = m.fails(&["install", "solo@^3"]);
    assert!(err.contains("solo ^3"), "{err}");
    let err = m.fails(&["install", "Bad_Name"]);
    assert!(err.contains("Bad_Name"), "{err}");
    assert!(
        !m.path().join("packages/market.lock").exists(),
        "failed installs must not write a lock"
    );
}

/// Yanked versions are skipped by new resolutions.
#[test]
fn yank_hides_a_version_from_new_installs() {
    let m = Market::new();
    let src = tempfile::tempdir().unwrap();
    m.ok(&["keygen"]);
    for v in ["1.0.0", "1.1.0"] {
        let d = package(src.path(), "tpl", v, "t", &[]);
        m.ok(&["publish", d.to_str().unwrap()]);
    }
    m.ok(&["yank", "tpl@1.1.0"]);
    let out = m.ok(&["install", "tpl"]);
    assert!(out.contains("installed tpl@1.0.0"), "{out}");
    let out = m.ok(&["info", "tpl"]);
    assert!(out.contains("yanked"), "{out}");
}

/// The demo catalogue is searchable and installable, and never overrides a name owned here.
#[test]
fn demo_catalogue_is_installable() {
    let m = Market::new();
    let out = m.ok(&["demo", "--packages", "60"]);
    assert!(out.contains("added"), "{out}");
    let out = m.ok(&["search", "--json", "--limit", "1", "--sort", "downloads"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let name = v["hits"][0]["package"]["name"].as_str().unwrap().to_owned();
    let out = m.ok(&["install", &name]);
    assert!(out.contains(&format!("installed {name}@")), "{out}");
}

/// Issue 17: `market publish` of a package whose dependency is nowhere (`ghost-lib = "^2"`) exited
/// 0; install then named another dependency. Now publish fails naming it, and
/// `--allow-unresolved` publishes for a registry that will receive it later.
#[test]
fn publish_names_unresolved_dependencies_unless_allowed() {
    let m = Market::new();
    let src = tempfile::tempdir().unwrap();
    m.ok(&["keygen"]);
    let core = package(src.path(), "http-core", "1.0.0", "x", &[]);
    m.ok(&["publish", core.to_str().unwrap()]);
    let app = package(
        src.path(),
        "app",
        "1.0.0",
        "x",
        &[("ghost-lib", "^2"), ("http-core", "^1")],
    );
    let err = m.fails(&["publish", app.to_str().unwrap()]);
    assert!(
        err.contains("app@1.0.0")
            && err.contains("ghost-lib ^2: no package ghost-lib in the registry")
            && err.contains("--allow-unresolved"),
        "{err}"
    );
    let err = m.fails(&["info", "app"]);
    assert!(
        err.contains("no package named \"app\""),
        "nothing was published:\n{err}"
    );
    let out = m.ok(&["publish", "--allow-unresolved", app.to_str().unwrap()]);
    assert!(out.starts_with("published app@1.0.0"), "{out}");
}

/// Issue 17: a package install would refuse (5 MiB of zeros, a bomb by the ratio limit) is refused
/// by publish in the same words.
#[test]
fn publish_refuses_a_package_install_would_refuse() {
    let m = Market::new();
    let src = tempfile::tempdir().unwrap();
    m.ok(&["keygen"]);
    let dir = package(src.path(), "zeros", "1.0.0", "x", &[]);
    std::fs::write(dir.join("zeros.bin"), vec![0u8; 5 * 1024 * 1024]).unwrap();
    let err = m.fails(&["publish", dir.to_str().unwrap()]);
    assert!(
        err.contains("archive looks like a decompression bomb"),
        "{err}"
    );
}
