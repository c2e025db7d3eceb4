//! The registry store under concurrent writers, killed writers, and an old home (issue 19).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use market_core::cache::Cache;
use market_core::db::RegistryDb;
use market_core::home::Home;
use market_core::install::Installer;
use market_core::store::Store;

use crate::{Market, package};

/// Copies a directory tree (the committed fixture home into a temporary one).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/home-index-v2")
}

/// 8 processes publish 50 versions each into one home at the same time: all 400 are there
/// afterwards, and each one resolves and installs (archive present, checksum and signature valid).
#[test]
fn eight_concurrent_publishers_lose_nothing() {
    const WRITERS: usize = 8;
    const VERSIONS: usize = 50;
    let m = Market::new();
    m.ok(&["keygen"]);
    let src = tempfile::tempdir().unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let dirs: Vec<_> = (0..VERSIONS)
                .map(|v| {
                    package(
                        &src.path().join(format!("w{w}")),
                        &format!("writer-{w}"),
                        &format!("1.0.{v}"),
                        "a template published concurrently",
                        &[],
                    )
                })
                .collect();
            let home = m.path().to_owned();
            std::thread::spawn(move || {
                // Each publish is its own `market` process, run back to back as a script would,
                // so eight writers are in flight at any time.
                for d in dirs {
                    let out = Command::new(env!("CARGO_BIN_EXE_market"))
                        .env("MARKET_HOME", &home)
                        .env_remove("MARKET_PEERS")
                        .env("RUST_LOG", "warn")
                        .args(["publish", d.to_str().unwrap()])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "publish {} failed: {}",
                        d.display(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }

    let home = Home::at(m.path());
    let db = RegistryDb::open(&home).unwrap();
    assert_eq!(db.version_count().unwrap(), WRITERS * VERSIONS);
    let cache = Cache::new(Store::of(&home), 1 << 20);
    let target = tempfile::tempdir().unwrap();
    for w in 0..WRITERS {
        let name = format!("writer-{w}");
        let reg = db.closure([name.as_str()]).unwrap();
        assert_eq!(reg.get(&name).unwrap().len(), VERSIONS, "{name}");
        for v in 0..VERSIONS {
            let req = format!("=1.0.{v}").parse().unwrap();
            let report = Installer::new(&reg, &cache, target.path().join(format!("{w}-{v}")))
                .install(&[(name.clone(), req)])
                .unwrap_or_else(|e| panic!("{name}@1.0.{v} does not install: {e}"));
            assert_eq!(report.installed.len(), 1);
        }
    }
    // The search index saw every writer's package, at its newest version.
    let out = m.ok(&["search", "--json", "writer", "--limit", "20"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total"], WRITERS, "{out}");
    assert!(
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["package"]["version"] == format!("1.0.{}", VERSIONS - 1)),
        "{out}"
    );
}

/// A publish killed at arbitrary points of its run (SIGKILL, no chance to clean up) leaves a
/// registry that opens, holds every version published before, and takes the next publish.
#[test]
fn a_killed_publish_leaves_the_registry_whole() {
    let m = Market::new();
    m.ok(&["keygen"]);
    let src = tempfile::tempdir().unwrap();
    let mut published = Vec::new();
    let mut killed = 0;
    for i in 0..24u64 {
        let version = format!("0.1.{i}");
        let dir = package(
            src.path(),
            "crashy",
            &version,
            "killed while publishing",
            &[],
        );
        let mut child = m
            .cmd()
            .args(["publish", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Every third publish runs to the end; the others are killed after 0 to 14 ms, which
        // spreads the kills over start-up, packing, and the transaction.
        if i % 3 != 0 {
            std::thread::sleep(Duration::from_millis(i % 15));
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        if status.success() {
            published.push(version);
        } else {
            killed += 1;
        }
        // After every attempt the registry opens and still has everything published so far.
        let db = RegistryDb::open(&Home::at(m.path())).unwrap();
        let have: Vec<String> = db
            .get("crashy")
            .unwrap()
            .unwrap_or_default()
            .iter()
            .map(|e| e.release.version.to_string())
            .collect();
        for v in &published {
            assert!(have.contains(v), "{v} lost after attempt {i}: {have:?}");
        }
    }
    assert!(killed > 0, "no publish was killed: the test proved nothing");
    assert!(published.len() >= 8);
    let dir = package(src.path(), "crashy", "9.9.9", "after the crashes", &[]);
    m.ok(&["publish", dir.to_str().unwrap()]);
    let out = m.ok(&["install", "crashy@=9.9.9"]);
    assert!(out.contains("installed crashy@9.9.9"), "{out}");
}

/// A home from before the store (the committed fixture: `registry/index.json` and its archives)
/// is converted on first use, once, and says so; then it searches, shows and installs as before.
#[test]
fn an_old_home_is_converted_once_on_first_use() {
    let m = Market::new();
    copy_tree(&fixture(), m.path());
    let old = m.path().join("registry/index.json");
    let before = market_core::index::Registry::load(&old).unwrap();

    let out = m.run(&["info", "web-starter-htmx"]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("converted the registry index") && err.contains("8 packages, 18 versions"),
        "{err}"
    );
    assert!(!old.exists(), "the old index must be moved aside");
    assert!(m.path().join("registry/index.json.migrated").exists());

    let again = m.run(&["search", "web"]);
    assert!(again.status.success());
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("converted"),
        "converted twice"
    );
    let after = RegistryDb::open(&Home::at(m.path()))
        .unwrap()
        .load_all()
        .unwrap();
    assert_eq!(
        after.to_vec(),
        before.to_vec(),
        "the conversion changed the registry"
    );
    let out = m.ok(&["install", "cli-parser-crossterm"]);
    assert!(out.contains("installed cli-parser-crossterm@"), "{out}");
}

/// Several commands starting at once on an old home: exactly one converts it.
#[test]
fn concurrent_first_uses_convert_once() {
    let m = Market::new();
    copy_tree(&fixture(), m.path());
    let children: Vec<_> = (0..4)
        .map(|_| {
            m.cmd()
                .args(["search", "web"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut conversions = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        if String::from_utf8_lossy(&out.stderr).contains("converted the registry index") {
            conversions += 1;
        }
    }
    assert_eq!(conversions, 1);
    let db = RegistryDb::open(&Home::at(m.path())).unwrap();
    assert_eq!(db.version_count().unwrap(), 18);
}
