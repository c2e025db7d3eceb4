//! Install: publish and install real packages in temporary homes; every refusal leaves the previous
//! install untouched and writes nothing outside the target.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use market_core::archive::ArchiveError;
use market_core::cache::{Cache, CacheError, FetchError, Fetcher, Tier};
use market_core::index::{IndexError, Registry};
use market_core::install::{InstallError, Installer};
use market_core::publish::{PublishError, publish};
use market_core::trust::TrustError;
use market_core::{Release, SigningKey};

use support::*;

/// Fixtures shared by the test modules of this binary.
pub mod support {
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::path::{Path, PathBuf};

    use market_core::home::Home;
    use market_core::index::Registry;
    use market_core::record::{ContentId, Metadata, Unsigned};
    use market_core::store::Store;
    use market_core::{Release, SigningKey};

    /// A temporary world: `MARKET_HOME` at `<tmp>/home`, a project with its install target at
    /// `<tmp>/project/packages`, package sources under `<tmp>/src`.
    pub struct World {
        pub tmp: tempfile::TempDir,
        pub home: Home,
        pub key: SigningKey,
    }

    impl World {
        pub fn new() -> World {
            let tmp = tempfile::tempdir().unwrap();
            let home = Home::at(tmp.path().join("home"));
            std::fs::create_dir_all(tmp.path().join("project")).unwrap();
            World {
                tmp,
                home,
                key: SigningKey::from_seed([42; 32]),
            }
        }

        pub fn target(&self) -> PathBuf {
            self.tmp.path().join("project/packages")
        }

        pub fn registry(&self) -> Registry {
            self.db().load_all().unwrap()
        }

        pub fn db(&self) -> market_core::db::RegistryDb {
            market_core::db::RegistryDb::open(&self.home).unwrap()
        }

        /// Everything the registry holds, serialised: equal bytes mean an unchanged registry.
        pub fn registry_bytes(&self) -> Vec<u8> {
            self.registry().to_vec()
        }

        pub fn store(&self) -> Store {
            Store::of(&self.home)
        }

        /// Writes a package source directory with a manifest and a couple of files.
        pub fn package_dir(&self, name: &str, version: &str, deps: &[(&str, &str)]) -> PathBuf {
            let dir = self
                .tmp
                .path()
                .join("src")
                .join(format!("{name}-{version}"));
            std::fs::create_dir_all(dir.join("template")).unwrap();
            let mut manifest = format!(
                "[package]\nname = \"{name}\"\nversion = \"{version}\"\n\
                 description = \"{name} template\"\nlicense = \"MIT\"\ntags = [\"test\"]\n\n[dependencies]\n"
            );
            for (d, r) in deps {
                manifest.push_str(&format!("{d} = \"{r}\"\n"));
            }
            std::fs::write(dir.join("market.toml"), manifest).unwrap();
            std::fs::write(
                dir.join("template/main.rs.tpl"),
                format!("// {name} {version}\n"),
            )
            .unwrap();
            std::fs::write(dir.join("README.md"), format!("# {name}\n")).unwrap();
            dir
        }

        /// Publishes a package with the world's key.
        pub fn publish(&self, name: &str, version: &str, deps: &[(&str, &str)]) -> Release {
            let dir = self.package_dir(name, version, deps);
            market_core::publish::publish(&self.home, &dir, &self.key, 1_700_000_000).unwrap()
        }

        /// Publishes arbitrary archive bytes as `name@version` (a hostile publisher's archive).
        pub fn publish_bytes(&self, name: &str, version: &str, bytes: &[u8]) -> Release {
            let release = Unsigned {
                name: name.into(),
                version: version.parse().unwrap(),
                checksum: ContentId::of(bytes),
                size: bytes.len() as u64,
                dependencies: BTreeMap::new(),
                meta: Metadata::default(),
                published_at: 1_700_000_000,
            }
            .sign(&self.key);
            self.store().put(bytes).unwrap();
            self.db().insert(release.clone()).unwrap();
            release
        }
    }

    /// Every path under `root` (relative) with its contents (files) or a marker (directories,
    /// links), skipping `skip` (relative paths).
    pub fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<String, Vec<u8>>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries {
                let e = e.unwrap();
                let path = e.path();
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if skip.contains(&rel.as_str()) {
                    continue;
                }
                let ft = std::fs::symlink_metadata(&path).unwrap().file_type();
                if ft.is_dir() {
                    out.insert(format!("{rel}/"), Vec::new());
                    walk(root, &path, skip, out);
                } else if ft.is_file() {
                    out.insert(rel, std::fs::read(&path).unwrap());
                } else {
                    out.insert(format!("{rel} (special)"), Vec::new());
                }
            }
        }
        walk(root, root, skip, &mut out);
        out
    }

    /// One entry of a hand-built tar.
    pub struct RawEntry<'a> {
        pub path: &'a [u8],
        pub kind: tar::EntryType,
        pub data: &'a [u8],
        pub link: Option<&'a [u8]>,
    }

    impl<'a> RawEntry<'a> {
        pub fn file(path: &'a str, data: &'a [u8]) -> RawEntry<'a> {
            RawEntry {
                path: path.as_bytes(),
                kind: tar::EntryType::Regular,
                data,
                link: None,
            }
        }
        pub fn special(path: &'a str, kind: tar::EntryType) -> RawEntry<'a> {
            RawEntry {
                path: path.as_bytes(),
                kind,
                data: b"",
                link: None,
            }
        }
        pub fn link(path: &'a str, kind: tar::EntryType, target: &'a str) -> RawEntry<'a> {
            RawEntry {
                path: path.as_bytes(),
                kind,
                data: b"",
                link: Some(target.as_bytes()),
            }
        }
    }

    /// A `.tar.gz` built header by header, writing names into the raw header fields so that paths
    /// the tar crate's safe setters would refuse (`..`, absolute) can be expressed.
    pub fn raw_tar_gz(entries: &[RawEntry<'_>]) -> Vec<u8> {
        let mut tar_bytes = Vec::new();
        for e in entries {
            let mut h = tar::Header::new_old();
            let name = &mut h.as_old_mut().name;
            assert!(
                e.path.len() < name.len(),
                "test paths must fit the old header"
            );
            name[..e.path.len()].copy_from_slice(e.path);
            if let Some(link) = e.link {
                let ln = &mut h.as_old_mut().linkname;
                ln[..link.len()].copy_from_slice(link);
            }
            h.set_entry_type(e.kind);
            h.set_mode(0o644);
            h.set_size(e.data.len() as u64);
            h.set_mtime(0);
            h.set_cksum();
            tar_bytes.extend_from_slice(h.as_bytes());
            tar_bytes.extend_from_slice(e.data);
            let pad = (512 - e.data.len() % 512) % 512;
            tar_bytes.extend(std::iter::repeat_n(0u8, pad));
        }
        tar_bytes.extend(std::iter::repeat_n(0u8, 1024));
        gzip(&tar_bytes)
    }

    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    pub fn req(name: &str, r: &str) -> (String, semver::VersionReq) {
        (name.to_owned(), r.parse().unwrap())
    }
}

/// An in-memory cold tier: serves archives by checksum, optionally tampering with them.
struct MemoryFetcher {
    archives: BTreeMap<String, Vec<u8>>,
    tamper: bool,
}

impl Fetcher for MemoryFetcher {
    fn fetch(&self, release: &Release) -> Result<Vec<u8>, FetchError> {
        let mut bytes = self
            .archives
            .get(release.checksum.as_str())
            .cloned()
            .ok_or_else(|| FetchError::NotFound {
                release: release.id(),
            })?;
        if self.tamper {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
        }
        Ok(bytes)
    }
}

fn cache(world: &World) -> Cache {
    Cache::new(world.store(), 1 << 20)
}

/// The three-package world most tests start from: app -> web-framework -> http-core.
fn three(world: &World) {
    world.publish("http-core", "1.0.0", &[]);
    world.publish("web-framework", "1.2.0", &[("http-core", "^1")]);
    world.publish("app", "0.1.0", &[("web-framework", "^1.2")]);
}

/// The installed state that refusal tests compare against, and the check that it is unchanged.
struct Baseline {
    before: BTreeMap<String, Vec<u8>>,
}

/// Publishes the three packages and installs `app`: the state refusals must preserve.
fn install_app(world: &World) {
    three(world);
    let reg = world.registry();
    let c = cache(world);
    Installer::new(&reg, &c, world.target())
        .install(&[req("app", "^0.1")])
        .unwrap();
}

impl Baseline {
    /// Records everything under the temporary root except the archive store.
    fn now(world: &World) -> Baseline {
        Baseline {
            before: snapshot(world.tmp.path(), &["home/store"]),
        }
    }

    fn assert_untouched(&self, world: &World) {
        let after = snapshot(world.tmp.path(), &["home/store"]);
        let added: Vec<&String> = after
            .keys()
            .filter(|k| !self.before.contains_key(*k))
            .collect();
        let lost: Vec<&String> = self
            .before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .collect();
        assert!(added.is_empty(), "a refused install wrote {added:?}");
        assert!(lost.is_empty(), "a refused install removed {lost:?}");
        assert_eq!(
            after, self.before,
            "a refused install changed file contents"
        );
    }
}

#[test]
fn installs_dependencies_writes_the_lock_and_honours_it() {
    let world = World::new();
    three(&world);
    let reg = world.registry();
    let c = cache(&world);
    let installer = Installer::new(&reg, &c, world.target());
    let report = installer.install(&[req("app", "^0.1")]).unwrap();

    let names: Vec<&str> = report.installed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["app", "http-core", "web-framework"]);
    assert!(
        report.installed.iter().all(|p| p.tier == Tier::Warm),
        "{:?}",
        report.installed
    );
    for name in ["app", "http-core", "web-framework"] {
        assert!(
            world.target().join(name).join("market.toml").is_file(),
            "{name} not installed"
        );
    }
    let main =
        std::fs::read_to_string(world.target().join("http-core/template/main.rs.tpl")).unwrap();
    assert_eq!(main, "// http-core 1.0.0\n");
    let lock = std::fs::read_to_string(world.target().join("market.lock")).unwrap();
    assert!(
        lock.contains("name = \"http-core\"") && lock.contains("version = \"1.0.0\""),
        "{lock}"
    );
    assert!(!has_staging(&world.target()));

    // A newer http-core appears; the lock keeps 1.0.0 and nothing is rewritten.
    world.publish("http-core", "1.1.0", &[]);
    let reg = world.registry();
    let again = Installer::new(&reg, &c, world.target())
        .install(&[])
        .unwrap();
    assert!(again.installed.is_empty(), "{:?}", again.installed);
    assert_eq!(again.unchanged.len(), 3);
    assert_eq!(
        again.lock.get("http-core").unwrap().version,
        semver::Version::new(1, 0, 0)
    );

    // --locked refuses a change and names it; without changes it succeeds.
    let err = Installer::new(&reg, &c, world.target())
        .locked(true)
        .install(&[req("http-core", "^1.1")])
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, InstallError::LockedChange { .. }), "{msg}");
    assert!(msg.contains("http-core 1.0.0 -> 1.1.0"), "{msg}");
    Installer::new(&reg, &c, world.target())
        .locked(true)
        .install(&[])
        .unwrap();

    // Without --locked the same request upgrades http-core, and only it is rewritten.
    let up = Installer::new(&reg, &c, world.target())
        .install(&[req("http-core", "^1.1")])
        .unwrap();
    let names: Vec<&str> = up.installed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["http-core"]);
    assert_eq!(up.installed[0].version, semver::Version::new(1, 1, 0));
    let main =
        std::fs::read_to_string(world.target().join("http-core/template/main.rs.tpl")).unwrap();
    assert_eq!(main, "// http-core 1.1.0\n");
    assert!(!has_staging(&world.target()));
}

#[test]
fn locked_install_without_a_lock_is_refused() {
    let world = World::new();
    three(&world);
    let reg = world.registry();
    let c = cache(&world);
    let err = Installer::new(&reg, &c, world.target())
        .locked(true)
        .install(&[req("app", "*")])
        .unwrap_err();
    assert!(matches!(err, InstallError::LockMissing { .. }), "{err}");
    assert!(!world.target().exists());
}

#[test]
fn yanked_versions_are_skipped_unless_locked() {
    let world = World::new();
    three(&world);
    let reg = world.registry();
    let c = cache(&world);
    Installer::new(&reg, &c, world.target())
        .install(&[req("app", "^0.1")])
        .unwrap();

    world.publish("http-core", "1.0.1", &[]);
    let mut db = world.db();
    db.yank("http-core", &"1.0.0".parse().unwrap()).unwrap();
    db.yank("http-core", &"1.0.1".parse().unwrap()).unwrap();
    drop(db);
    let reg = world.registry();

    // The lock names 1.0.0: it keeps working although 1.0.0 is yanked.
    let kept = Installer::new(&reg, &c, world.target())
        .locked(true)
        .install(&[])
        .unwrap();
    assert_eq!(
        kept.lock.get("http-core").unwrap().version,
        semver::Version::new(1, 0, 0)
    );

    // A fresh project cannot pick a yanked version, and says so.
    let fresh = world.tmp.path().join("fresh");
    let err = Installer::new(&reg, &c, &fresh)
        .install(&[req("app", "^0.1")])
        .unwrap_err();
    assert!(err.to_string().contains("yanked"), "{err}");
    assert!(!fresh.exists());

    // With 1.0.1 unyanked, a fresh project gets 1.0.1, never the yanked 1.0.0.
    let mut reg = world.registry();
    reg.unyank("http-core", &"1.0.1".parse().unwrap()).unwrap();
    let r = Installer::new(&reg, &c, &fresh)
        .install(&[req("app", "^0.1")])
        .unwrap();
    assert_eq!(
        r.lock.get("http-core").unwrap().version,
        semver::Version::new(1, 0, 1)
    );
}

#[test]
fn packages_no_longer_required_are_removed() {
    let world = World::new();
    three(&world);
    world.publish("web-framework", "1.3.0", &[]);
    let reg = world.registry();
    let c = cache(&world);
    let installer = Installer::new(&reg, &c, world.target());
    installer
        .install(&[req("web-framework", "=1.2.0")])
        .unwrap();
    assert!(world.target().join("http-core").is_dir());
    let r = installer.install(&[req("web-framework", "^1.3")]).unwrap();
    assert_eq!(r.removed, ["http-core"]);
    assert!(!world.target().join("http-core").exists());
    assert!(r.lock.get("http-core").is_none());
}

#[test]
fn a_directory_not_installed_by_market_is_not_overwritten() {
    let world = World::new();
    three(&world);
    std::fs::create_dir_all(world.target().join("http-core")).unwrap();
    std::fs::write(world.target().join("http-core/mine.txt"), "keep").unwrap();
    let reg = world.registry();
    let c = cache(&world);
    let err = Installer::new(&reg, &c, world.target())
        .install(&[req("app", "*")])
        .unwrap_err();
    assert!(matches!(err, InstallError::Occupied { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(world.target().join("http-core/mine.txt")).unwrap(),
        "keep"
    );
}

#[test]
fn archives_come_from_the_network_when_the_store_lacks_them() {
    let world = World::new();
    three(&world);
    let reg = world.registry();
    let store = world.store();
    let archives: BTreeMap<String, Vec<u8>> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|a| (a.id.to_string(), store.get(&a.id).unwrap().unwrap()))
        .collect();
    for a in store.list().unwrap() {
        store.remove(&a.id).unwrap();
    }
    let c = cache(&world).with_fetcher(Arc::new(MemoryFetcher {
        archives,
        tamper: false,
    }));
    let r = Installer::new(&reg, &c, world.target())
        .install(&[req("app", "*")])
        .unwrap();
    assert!(r.installed.iter().all(|p| p.tier == Tier::Cold));
    assert_eq!(c.stats().cold_fetches, 3);
    assert_eq!(
        store.list().unwrap().len(),
        3,
        "fetched archives are kept in the store"
    );
}

#[test]
fn a_tampered_archive_from_the_network_is_refused() {
    let world = World::new();
    install_app(&world);
    let release = world.publish("http-core", "1.1.0", &[]);
    let bytes = world.store().get(&release.checksum).unwrap().unwrap();
    world.store().remove(&release.checksum).unwrap();
    let base = Baseline::now(&world);

    let reg = world.registry();
    let fetcher = MemoryFetcher {
        archives: [(release.checksum.to_string(), bytes)].into(),
        tamper: true,
    };
    let c = cache(&world).with_fetcher(Arc::new(fetcher));
    let err = Installer::new(&reg, &c, world.target())
        .install(&[req("http-core", "^1.1")])
        .unwrap_err();
    assert!(
        matches!(
            err,
            InstallError::Fetch {
                source: CacheError::ChecksumMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        !world.store().contains(&release.checksum),
        "tampered bytes must not be stored"
    );
    base.assert_untouched(&world);
}

/// Issue 17: a store file whose contents are not its name was refused as "archive not in the cache
/// or store, and no network fetcher is configured", and deleted; "tampered" was only in a log
/// line. Now the error says tampered, with the path and both hashes, and the file is kept in the
/// home's quarantine folder.
#[test]
fn a_tampered_store_file_is_reported_and_quarantined() {
    let world = World::new();
    install_app(&world);
    let release = world.publish("http-core", "1.1.0", &[]);
    let path = world.store().path_of(&release.checksum);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let found = market_core::ContentId::of(&bytes);
    // Everything but the store and the quarantine stays as it was.
    let outside = || snapshot(world.tmp.path(), &["home/store", "home/quarantine"]);
    let before = outside();

    let reg = world.registry();
    let c = cache(&world);
    let err = Installer::new(&reg, &c, world.target())
        .install(&[req("http-core", "^1.1")])
        .unwrap_err();
    let quarantined = world
        .home
        .quarantine_dir()
        .join(format!("{}.found-{found}", release.checksum));
    match &err {
        InstallError::Fetch {
            source: CacheError::Tampered { file, .. },
            ..
        } => {
            assert_eq!(
                (&file.path, &file.expected, &file.found, &file.quarantined),
                (&path, &release.checksum, &found, &quarantined)
            );
        }
        other => panic!("expected a tampered store file, got {other}"),
    }
    let text = err.to_string();
    for words in [
        "tampered",
        &path.display().to_string(),
        release.checksum.as_str(),
        found.as_str(),
        &quarantined.display().to_string(),
        "no network fetcher",
    ] {
        assert!(text.contains(words), "{words:?} missing from: {text}");
    }
    assert!(!path.exists(), "the tampered file is out of the store");
    assert_eq!(
        std::fs::read(&quarantined).unwrap(),
        bytes,
        "and kept, as it was, for inspection"
    );
    assert_eq!(c.stats().quarantined, 1);
    assert_eq!(outside(), before, "a refused install changed something");
}

/// With the network there, a tampered store file is quarantined and the archive fetched again.
#[test]
fn a_tampered_store_file_is_fetched_again_from_the_network() {
    let world = World::new();
    install_app(&world);
    let release = world.publish("http-core", "1.1.0", &[]);
    let path = world.store().path_of(&release.checksum);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 1;
    std::fs::write(&path, &bad).unwrap();

    let reg = world.registry();
    let fetcher = MemoryFetcher {
        archives: [(release.checksum.to_string(), good.clone())].into(),
        tamper: false,
    };
    let c = cache(&world).with_fetcher(Arc::new(fetcher));
    let report = Installer::new(&reg, &c, world.target())
        .install(&[req("http-core", "^1.1")])
        .unwrap();
    let http = report
        .installed
        .iter()
        .find(|p| p.name == "http-core")
        .unwrap();
    assert_eq!(
        (http.version.to_string(), http.tier),
        ("1.1.0".into(), Tier::Cold)
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        good,
        "the store holds the real archive again"
    );
    let found = market_core::ContentId::of(&bad);
    let quarantined = world
        .home
        .quarantine_dir()
        .join(format!("{}.found-{found}", release.checksum));
    assert_eq!(std::fs::read(quarantined).unwrap(), bad);
    assert_eq!((c.stats().quarantined, c.stats().cold_fetches), (1, 1));

    // When the network cannot deliver either, the error tells both stories.
    world.store().remove(&release.checksum).unwrap();
    std::fs::write(&path, &bad).unwrap();
    let c = cache(&world).with_fetcher(Arc::new(MemoryFetcher {
        archives: BTreeMap::new(),
        tamper: false,
    }));
    let err = c.get(&release).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("tampered") && text.contains("fetching it again failed: no source provides"),
        "{text}"
    );
}

#[test]
fn a_release_with_a_broken_signature_is_refused() {
    let world = World::new();
    install_app(&world);
    world.publish("http-core", "1.1.0", &[]);
    // Someone edits the registry on disk: the 1.1.0 record now claims a different description,
    // which its signature does not cover.
    let db = world.db();
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let changed = conn
        .execute(
            "UPDATE versions SET body = replace(body, '\"http-core template\"', '\"http-core (rewritten)\"') \
             WHERE version = '1.1.0'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop((conn, db));
    let base = Baseline::now(&world);

    let reg = world.registry();
    let c = cache(&world);
    let err = Installer::new(&reg, &c, world.target())
        .install(&[req("http-core", "^1.1")])
        .unwrap_err();
    assert!(matches!(err, InstallError::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("http-core@1.1.0"), "{err}");
    base.assert_untouched(&world);
}

#[test]
fn a_new_version_signed_by_another_key_is_refused() {
    let world = World::new();
    three(&world);
    let before = world.registry_bytes();
    let mallory = SigningKey::from_seed([66; 32]);
    let dir = world.package_dir("http-core", "1.5.0", &[]);
    let err = publish(&world.home, &dir, &mallory, 1_700_000_001).unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::Index(IndexError::Trust(TrustError::NotOwner { .. }))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("owned by key"), "{err}");
    assert_eq!(
        world.registry_bytes(),
        before,
        "the registry must not change"
    );
}

/// Publishes a hostile archive as `evil@1.0.0`, installs it over the baseline, and checks the
/// refusal and that nothing changed.
fn refuse_hostile(bytes: Vec<u8>, check: impl Fn(&ArchiveError) -> bool) {
    let world = World::new();
    install_app(&world);
    world.publish_bytes("evil", "1.0.0", &bytes);
    let base = Baseline::now(&world);
    let reg = world.registry();
    let c = cache(&world);
    let limits = market_core::archive::Limits {
        max_files: 50,
        max_bytes: 64 * 1024,
        ..Default::default()
    };
    let err = Installer::new(&reg, &c, world.target())
        .limits(limits)
        .install(&[req("evil", "*")])
        .unwrap_err();
    match &err {
        InstallError::Archive { source, .. } => assert!(check(source), "unexpected refusal: {err}"),
        other => panic!("expected an archive refusal, got {other}"),
    }
    assert!(err.to_string().contains("evil@1.0.0"), "{err}");
    base.assert_untouched(&world);
    assert!(!world.tmp.path().join("escaped.txt").exists());
}

fn refused_because(e: &ArchiveError, words: &str) -> bool {
    matches!(e, ArchiveError::Refused { reason, .. } if reason.contains(words))
}

#[test]
fn hostile_archives_are_refused_without_side_effects() {
    use tar::EntryType;
    let deep = "../../../../escaped.txt";
    refuse_hostile(raw_tar_gz(&[RawEntry::file(deep, b"x")]), |e| {
        refused_because(e, "'..'")
    });
    let abs = format!("{}/escaped.txt", std::env::temp_dir().display());
    refuse_hostile(raw_tar_gz(&[RawEntry::file(&abs, b"x")]), |e| {
        refused_because(e, "absolute")
    });
    refuse_hostile(
        raw_tar_gz(&[
            RawEntry::link("out", EntryType::Symlink, "../../../.."),
            RawEntry::file("out/escaped.txt", b"x"),
        ]),
        |e| refused_because(e, "symbolic link"),
    );
    refuse_hostile(
        raw_tar_gz(&[
            RawEntry::file("a.txt", b"x"),
            RawEntry::link("b.txt", EntryType::Link, "/etc/passwd"),
        ]),
        |e| refused_because(e, "hard link"),
    );
    refuse_hostile(
        raw_tar_gz(&[RawEntry::special("tty", EntryType::Char)]),
        |e| refused_because(e, "device"),
    );
    let many: Vec<String> = (0..60).map(|i| format!("f{i}.txt")).collect();
    let entries: Vec<RawEntry<'_>> = many.iter().map(|n| RawEntry::file(n, b"x")).collect();
    refuse_hostile(raw_tar_gz(&entries), |e| {
        matches!(e, ArchiveError::TooManyFiles { .. })
    });
    let big = vec![7u8; 100 * 1024];
    refuse_hostile(raw_tar_gz(&[RawEntry::file("big.bin", &big)]), |e| {
        matches!(e, ArchiveError::TooLarge { .. })
    });
}

fn has_staging(target: &Path) -> bool {
    std::fs::read_dir(target)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".staging"))
        })
        .unwrap_or(false)
}

#[test]
fn publishing_twice_is_reported_and_changes_nothing() {
    let world = World::new();
    world.publish("http-core", "1.0.0", &[]);
    let before = world.registry_bytes();
    let dir = world.tmp.path().join("src/http-core-1.0.0");
    let err = publish(&world.home, &dir, &world.key, 1_700_000_500).unwrap_err();
    assert!(
        matches!(err, PublishError::AlreadyPublished { .. }),
        "{err}"
    );
    // Same version, different contents: a conflict, never a silent replacement.
    std::fs::write(dir.join("README.md"), "changed").unwrap();
    let err = publish(&world.home, &dir, &world.key, 1_700_000_500).unwrap_err();
    assert!(
        matches!(err, PublishError::Index(IndexError::Conflict { .. })),
        "{err}"
    );
    assert_eq!(world.registry_bytes(), before);
    let reg: Registry = world.registry();
    assert_eq!(reg.version_count(), 1);
}
