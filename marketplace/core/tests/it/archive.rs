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
        Err(ArchiveError::TooManyFiles { limit: 3, .. })
    ));
    let small = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        archive::pack_with(tmp.path(), &small),
        Err(ArchiveError::TooLarge { limit: 10, .. })
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

/// A `.tar.gz` written by the tar crate's builder, which writes GNU long-name records for paths
/// longer than the old header's 100 bytes. Entries ending in '/' are directories.
fn built_tar_gz(paths: &[String], data: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for path in paths {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        if path.ends_with('/') {
            h.set_entry_type(EntryType::Directory);
            h.set_size(0);
            builder.append_data(&mut h, path, std::io::empty()).unwrap();
        } else {
            h.set_entry_type(EntryType::Regular);
            h.set_size(data.len() as u64);
            builder.append_data(&mut h, path, data).unwrap();
        }
    }
    crate::install::support::gzip(&builder.into_inner().unwrap())
}

/// Directories under `root`, counted.
fn dirs_under(root: &Path) -> usize {
    snapshot(root, &[])
        .keys()
        .filter(|k| k.ends_with('/'))
        .count()
}

/// Issue 17: 61 entries, each 1 500 directories deep, a 1.7 KB archive. Before, extraction of
/// this one (1 655 bytes) made 91 500 directories in 13.5 s and reported `files: 61, dirs: 0`; now
/// the first entry is refused and nothing is made.
#[test]
fn the_directory_flood_of_issue_17_is_refused_before_it_floods() {
    let paths: Vec<String> = (0..61)
        .map(|i| format!("t{i}/{}f", "d/".repeat(1499)))
        .collect();
    let flood = built_tar_gz(&paths, b"x");
    assert!(flood.len() < 4096, "{} bytes", flood.len());
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let err = archive::extract(&flood, &dest, &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Refused { reason, .. } if reason.contains("bytes long")),
        "{err}"
    );
    assert_eq!(dirs_under(&dest), 0);
    // Within the path length, the depth limit refuses it, also before making anything.
    let deep = |n: usize| format!("{}f", "d/".repeat(n));
    let err =
        archive::extract(&built_tar_gz(&[deep(400)], b"x"), &dest, &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::TooDeep { limit: 32, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("deeper than 32"), "{err}");
    assert_eq!(dirs_under(&dest), 0);
    // At the limit it extracts: 31 directories and the file.
    let tmp = tempfile::tempdir().unwrap();
    let done = archive::extract(
        &built_tar_gz(&[deep(31)], b"x"),
        tmp.path(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!((done.files, done.dirs), (1, 31));
}

/// Directories made as parents of an entry count against the entry limit and are reported.
#[test]
fn implied_directories_count_against_the_entry_limit() {
    let limits = Limits {
        max_files: 100,
        max_depth: 1000,
        ..Limits::default()
    };
    // Three files, each 60 directories deep under its own top directory: 183 entries made.
    let paths: Vec<String> = (0..3)
        .map(|i| format!("top{i}/{}f", "d/".repeat(59)))
        .collect();
    let bytes = built_tar_gz(&paths, b"x");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let err = archive::extract(&bytes, &dest, &limits).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::TooManyFiles { limit: 100, entry } if entry == &paths[1]),
        "{err}"
    );
    assert!(
        dirs_under(&dest) <= 100,
        "{} directories",
        dirs_under(&dest)
    );
    // The same archive within a larger limit: every directory is reported.
    let tmp = tempfile::tempdir().unwrap();
    let done = archive::extract(
        &bytes,
        tmp.path(),
        &Limits {
            max_files: 183,
            ..limits
        },
    )
    .unwrap();
    assert_eq!((done.files, done.dirs), (3, 180));
    assert_eq!(dirs_under(tmp.path()), 180);
    // Explicit and implied directories are counted once each.
    let tmp = tempfile::tempdir().unwrap();
    let done = archive::extract(
        &built_tar_gz(&["a/".into(), "a/b/c.txt".into(), "a/b/".into()], b"x"),
        tmp.path(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!((done.files, done.dirs), (1, 2));
}

/// A file and a directory of one name, either way round, is refused in both modes.
#[test]
fn a_name_used_as_file_and_directory_is_refused() {
    for paths in [
        vec!["a".to_string(), "a/b".to_string()],
        vec!["a/b".to_string(), "a".to_string()],
        vec!["a".to_string(), "a/".to_string()],
    ] {
        let bytes = built_tar_gz(&paths, b"x");
        let err = refused(&bytes, &Limits::default());
        assert!(
            matches!(err, ArchiveError::Refused { .. }),
            "{paths:?}: {err}"
        );
        let dry = archive::check(&bytes, &Limits::default()).unwrap_err();
        assert_eq!(dry.to_string(), err.to_string());
    }
}

/// Issue 17: `pack` accepted 5 MiB of zeros and a 16 MiB repetitive CSV, which extraction refuses
/// as bombs by the ratio limit; such a package could be published and never installed. Pack now
/// refuses them with extraction's words.
#[test]
fn pack_refuses_what_extraction_refuses_in_the_same_words() {
    let zeros = vec![0u8; 5 * 1024 * 1024];
    let line = b"2026-01-01,widget,blue,42,1.00\n";
    let csv: Vec<u8> = line
        .iter()
        .copied()
        .cycle()
        .take(16 * 1024 * 1024)
        .collect();
    for (name, data) in [("zeros.bin", &zeros), ("data.csv", &csv)] {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write_tree(&src, TREE);
        std::fs::write(src.join(name), data).unwrap();
        let err = archive::pack(&src).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Bomb { limit: 200, .. }),
            "{name}: {err}"
        );
        // The same file in an archive packed by hand (no check): extraction refuses it alike.
        let by_hand = crate::install::support::gzip(&{
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, &data[..]).unwrap();
            b.into_inner().unwrap()
        });
        let refusal = refused(&by_hand, &Limits::default());
        assert!(
            matches!(refusal, ArchiveError::Bomb { limit: 200, .. }),
            "{refusal}"
        );
        let words = |e: &ArchiveError| e.to_string().split(':').next().unwrap().to_owned();
        assert_eq!(words(&err), words(&refusal));
    }
    // Depth: the same entry refused with the same message both ways.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let deep = format!("{}f", "d/".repeat(32));
    write_tree(&src, &[(deep.as_str(), "x")]);
    let packed = archive::pack(&src).unwrap_err();
    let paths: Vec<String> = (1..=32).map(|n| "d/".repeat(n)).chain([deep]).collect();
    let extracted = refused(&built_tar_gz(&paths, b"x"), &Limits::default());
    assert!(matches!(packed, ArchiveError::TooDeep { .. }), "{packed}");
    assert_eq!(packed.to_string(), extracted.to_string());
}
