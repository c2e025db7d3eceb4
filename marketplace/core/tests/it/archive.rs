//! Archives: deterministic packing, faithful extraction, and every refusal of a hostile archive.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use market_core::ContentId;
use market_core::archive::{self, ArchiveError, Limits};
use tar::EntryType;

use crate::install::support::{RawEntry, raw_tar_gz, snapshot};

fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

const TREE: &[(&str, &str)] = &[
    (
        "market.toml",
        "[package]\nname = \"t\"\nversion = \"1.0.0\"\n",
    ),
    ("template/src/main.rs.tpl", "fn main() {}\n"),
    ("template/README.md", "# readme\n"),
    ("b.txt", "b"),
    ("a.txt", "a"),
];

fn set_mtime_everywhere(root: &Path, when: SystemTime) {
    for entry in std::fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            set_mtime_everywhere(&entry.path(), when);
        } else {
            std::fs::File::options()
                .write(true)
                .open(entry.path())
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
    }
}

#[test]
fn the_same_tree_gives_the_same_content_id() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let two = tmp.path().join("two");
    write_tree(&one, TREE);
    // Same files, written in the opposite order, with other timestamps.
    let reversed: Vec<_> = TREE.iter().rev().copied().collect();
    write_tree(&two, &reversed);
    set_mtime_everywhere(
        &one,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    );
    set_mtime_everywhere(
        &two,
        SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000),
    );

    let a = archive::pack(&one).unwrap();
    let b = archive::pack(&two).unwrap();
    assert_eq!(ContentId::of(&a), ContentId::of(&b));
    assert_eq!(
        ContentId::of(&a),
        ContentId::of(&archive::pack(&one).unwrap()),
        "packing twice"
    );

    std::fs::write(two.join("a.txt"), "changed").unwrap();
    assert_ne!(
        ContentId::of(&a),
        ContentId::of(&archive::pack(&two).unwrap())
    );
}

#[test]
fn git_and_target_directories_are_not_packed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src, TREE);
    let plain = ContentId::of(&archive::pack(&src).unwrap());
    write_tree(
        &src,
        &[
            (".git/HEAD", "ref"),
            ("target/debug/x", "bin"),
            ("template/.git/config", "x"),
        ],
    );
    assert_eq!(ContentId::of(&archive::pack(&src).unwrap()), plain);
}

#[test]
fn extraction_restores_files_and_executable_bits() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src, TREE);
    std::fs::create_dir_all(src.join("empty-dir")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(src.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
    }
    let bytes = archive::pack(&src).unwrap();
    let dest = tmp.path().join("dest");
    let done = archive::extract(&bytes, &dest, &Limits::default()).unwrap();
    assert_eq!(snapshot(&src, &[]), snapshot(&dest, &[]));
    assert_eq!(
        done.files as usize,
        snapshot(&src, &[])
            .keys()
            .filter(|k| !k.ends_with('/'))
            .count()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(dest.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("run.sh"), 0o755);
        assert_eq!(mode("a.txt"), 0o644);
    }
}

#[cfg(unix)]
#[test]
fn packing_refuses_links_in_the_package() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src, TREE);
    std::os::unix::fs::symlink("/etc/passwd", src.join("passwd")).unwrap();
    let err = archive::pack(&src).unwrap_err();
    assert!(matches!(err, ArchiveError::SourceLink { .. }), "{err}");
}

#[test]
fn packing_refuses_trees_beyond_the_limits() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(tmp.path(), TREE);
    let few = Limits {
        max_files: 3,
        ..Limits::default()
    };
    assert!(matches!(
        archive::pack_with(tmp.path(), &few),
        Err(ArchiveError::SourceTooManyFiles { .. })
    ));
    let small = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        archive::pack_with(tmp.path(), &small),
        Err(ArchiveError::SourceTooLarge { .. })
    ));
}

/// Extracts `bytes` into `<tmp>/sandbox/dest` and returns the error, after checking that nothing
/// appeared anywhere in the temporary root except inside `dest`.
fn refused(bytes: &[u8], limits: &Limits) -> ArchiveError {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("sandbox/dest");
    let err = archive::extract(bytes, &dest, limits).unwrap_err();
    let outside: Vec<String> = snapshot(tmp.path(), &["sandbox/dest"])
        .into_keys()
        .filter(|k| k != "sandbox/" && k != "sandbox/dest/")
        .collect();
    assert!(
        outside.is_empty(),
        "extraction wrote outside its destination: {outside:?}"
    );
    err
}

fn assert_refused(err: &ArchiveError, entry: &str, words: &str) {
    match err {
        ArchiveError::Refused { entry: e, reason } => {
            assert_eq!(e, entry);
            assert!(
                reason.contains(words),
                "reason {reason:?} should mention {words:?}"
            );
            assert!(err.to_string().contains(entry), "{err}");
        }
        other => panic!("expected a refusal of {entry}, got {other}"),
    }
}

#[test]
fn parent_and_absolute_paths_are_refused() {
    let l = Limits::default();
    for path in [
        "../escaped.txt",
        "a/../../escaped.txt",
        "./a/../../../escaped.txt",
    ] {
        assert_refused(
            &refused(&raw_tar_gz(&[RawEntry::file(path, b"x")]), &l),
            path,
            "'..'",
        );
    }
    for path in ["/tmp/escaped.txt", "/escaped.txt"] {
        assert_refused(
            &refused(&raw_tar_gz(&[RawEntry::file(path, b"x")]), &l),
            path,
            "absolute",
        );
    }
}

#[test]
fn links_are_refused() {
    let l = Limits::default();
    // A symlink pointing out of the target, then a file written through it.
    let bytes = raw_tar_gz(&[
        RawEntry::link("out", EntryType::Symlink, "../../.."),
        RawEntry::file("out/escaped.txt", b"x"),
    ]);
    assert_refused(&refused(&bytes, &l), "out", "symbolic link");
    // Even a symlink that stays inside is refused: packages never need links.
    let bytes = raw_tar_gz(&[
        RawEntry::file("a", b"x"),
        RawEntry::link("b", EntryType::Symlink, "a"),
    ]);
    assert_refused(&refused(&bytes, &l), "b", "symbolic link");
    let bytes = raw_tar_gz(&[RawEntry::link("passwd", EntryType::Link, "/etc/passwd")]);
    assert_refused(&refused(&bytes, &l), "passwd", "hard link");
}

#[test]
fn device_files_and_fifos_are_refused() {
    let l = Limits::default();
    assert_refused(
        &refused(
            &raw_tar_gz(&[RawEntry::special("tty", EntryType::Char)]),
            &l,
        ),
        "tty",
        "character device",
    );
    assert_refused(
        &refused(
            &raw_tar_gz(&[RawEntry::special("sda", EntryType::Block)]),
            &l,
        ),
        "sda",
        "block device",
    );
    assert_refused(
        &refused(
            &raw_tar_gz(&[RawEntry::special("pipe", EntryType::Fifo)]),
            &l,
        ),
        "pipe",
        "fifo",
    );
}

#[test]
fn too_many_files_are_refused() {
    let names: Vec<String> = (0..11).map(|i| format!("f{i:02}")).collect();
    let entries: Vec<RawEntry<'_>> = names.iter().map(|n| RawEntry::file(n, b"x")).collect();
    let limits = Limits {
        max_files: 10,
        ..Limits::default()
    };
    let err = refused(&raw_tar_gz(&entries), &limits);
    assert!(
        matches!(&err, ArchiveError::TooManyFiles { entry, limit: 10 } if entry == "f10"),
        "{err}"
    );
    // Exactly at the limit is fine.
    let tmp = tempfile::tempdir().unwrap();
    archive::extract(&raw_tar_gz(&entries[..10]), tmp.path(), &limits).unwrap();
}

#[test]
fn too_many_bytes_are_refused() {
    let limits = Limits {
        max_bytes: 1000,
        ..Limits::default()
    };
    let err = refused(
        &raw_tar_gz(&[
            RawEntry::file("a", &[1; 600]),
            RawEntry::file("b", &[2; 600]),
        ]),
        &limits,
    );
    assert!(
        matches!(&err, ArchiveError::TooLarge { entry, limit: 1000 } if entry == "b"),
        "{err}"
    );
}

#[test]
fn a_gzip_bomb_is_stopped_while_streaming() {
    // 200 MB of zeros in one entry compress to about 200 KB. Its header is honest, so only the
    // streaming guard can stop it; the default limits allow 256 MiB, so the ratio limit must.
    const SIZE: u64 = 200 * 1000 * 1000;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros.bin").unwrap();
    h.set_size(SIZE);
    h.set_mode(0o644);
    h.set_entry_type(EntryType::Regular);
    h.set_cksum();
    gz.write_all(h.as_bytes()).unwrap();
    std::io::copy(&mut std::io::Read::take(std::io::repeat(0), SIZE), &mut gz).unwrap();
    gz.write_all(&[0; 1024]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(
        (bomb.len() as u64) < SIZE / 100,
        "the test archive should be a bomb"
    );

    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let err = archive::extract(&bomb, &dest, &Limits::default()).unwrap_err();
    assert!(matches!(err, ArchiveError::Bomb { .. }), "{err}");
    let written = std::fs::metadata(dest.join("zeros.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        written < 64 * 1024 * 1024,
        "{written} bytes were written before the bomb was stopped"
    );
}

#[test]
fn garbage_and_a_used_destination_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = archive::extract(
        b"not a gzip stream",
        &tmp.path().join("d"),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ArchiveError::Corrupt(_)), "{err}");
    std::fs::write(tmp.path().join("occupied"), "x").unwrap();
    let bytes = raw_tar_gz(&[RawEntry::file("a", b"x")]);
    let err = archive::extract(&bytes, tmp.path(), &Limits::default()).unwrap_err();
    assert!(
        matches!(err, ArchiveError::DestinationNotEmpty { .. }),
        "{err}"
    );
    let dup = raw_tar_gz(&[RawEntry::file("a", b"x"), RawEntry::file("a", b"y")]);
    assert_refused(&refused(&dup, &Limits::default()), "a", "twice");
}
