//! Package archives: deterministic `.tar.gz` packing and defensive extraction (DESIGN §4).
//!
//! **Packing** is deterministic so that a package's content id (the SHA-256 of its archive) depends
//! on its files and nothing else: entries are sorted by path, every header has mtime, uid and gid
//! zero and no user or group names, modes are normalised to 0644 (0755 for directories and
//! executables), and the gzip header carries no timestamp, no file name and a fixed OS byte.
//! `.git` directories (anywhere) and a top-level `target/` are skipped. A symlink or special file in
//! the package directory is an error rather than something silently dropped: extraction refuses
//! them, so publishing one would produce a package nobody can install.
//!
//! **Extraction** treats the archive as hostile. It refuses, naming the entry: absolute paths and
//! `..` components; symlinks and hard links (all of them, not only those that leave the target: a
//! template needs neither, and refusing every link removes a whole class of escapes); device files,
//! fifos and other special entries; paths deeper than [`Limits::max_depth`] or longer than
//! [`MAX_PATH_BYTES`]; more than [`Limits::max_files`] entries, where every directory the
//! extraction creates counts, explicit or implied as the parent of an entry (61 entries each 1 500
//! directories deep once made 90 060 directories from 1.7 KB); more than [`Limits::max_bytes`] of
//! unpacked data; and decompression bombs. The byte and ratio limits are
//! enforced on the decompressed stream *while it is read*, so a bomb is stopped after at most a few
//! buffers, not after it filled the disk. Files are created with `create_new` inside a fresh
//! destination directory, so no entry can overwrite another or follow something already on disk.
//!
//! **One set of limits for both directions.** [`pack_with`] checks the archive it built with the
//! same code extraction runs ([`check`]: extraction without writing), so a package that install
//! would refuse is refused at publish, in the same words, instead of being published and never
//! installable (a package of 5 MiB of zeros packed fine and was then refused as a bomb).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::Compression;

/// Limits applied when packing and extracting: one value, so that pack refuses what extract would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries: files and directories, counting every directory extraction creates, whether
    /// the archive lists it or only implies it as the parent of another entry.
    pub max_files: u64,
    /// Most path components of one entry (`a/b/c.txt` has 3). Real templates nest a dozen deep;
    /// without a bound, one 1.7 KB archive nested 1 500 deep.
    pub max_depth: u64,
    /// Most bytes of file contents, in total.
    pub max_bytes: u64,
    /// Largest decompressed/compressed ratio tolerated once [`Limits::ratio_floor`] bytes have
    /// been decompressed. Source trees compress 3–10×; zeros compress about 1000×.
    pub max_ratio: u64,
    /// Decompressed bytes below which the ratio is not judged (small archives of tar padding have
    /// high ratios without being bombs).
    pub ratio_floor: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_files: 10_000,
            max_depth: 32,
            max_bytes: 256 * 1024 * 1024,
            max_ratio: 200,
            ratio_floor: 4 * 1024 * 1024,
        }
    }
}

/// Longest entry path, in bytes. An install extracts under a staging directory inside the target,
/// so a path near the system's 4 096-byte limit would pack fine from its own directory and then fail
/// to install; refusing long paths in both directions keeps pack and extract in agreement.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest path component, in bytes (the common file-system limit).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Tar framing allowance per entry on top of file contents: a header block, padding to 512 bytes,
/// and room for a long-name or PAX record.
const FRAMING_PER_ENTRY: u64 = 4 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read {path}: {source}")]
    ReadSource { path: PathBuf, source: io::Error },
    #[error("{path} is a symbolic link; packages may not contain links (extraction refuses them)")]
    SourceLink { path: PathBuf },
    #[error("{path} is not a regular file or directory; packages may contain only those")]
    SourceSpecial { path: PathBuf },
    #[error("{path}: file name is not valid UTF-8")]
    SourceName { path: PathBuf },
    #[error("cannot build archive: {0}")]
    Pack(io::Error),

    #[error("archive entry {entry:?}: {reason}")]
    Refused { entry: String, reason: String },
    #[error("archive has more than {limit} entries (refused at entry {entry:?})")]
    TooManyFiles { entry: String, limit: u64 },
    #[error("archive nests deeper than {limit} directories (refused at entry {entry:?})")]
    TooDeep { entry: String, limit: u64 },
    #[error("archive unpacks to more than {limit} bytes (refused at entry {entry:?})")]
    TooLarge { entry: String, limit: u64 },
    #[error(
        "archive looks like a decompression bomb: {decompressed} bytes from {compressed} compressed \
         (ratio limit {limit})"
    )]
    Bomb {
        decompressed: u64,
        compressed: u64,
        limit: u64,
    },
    #[error("archive is not a valid .tar.gz: {0}")]
    Corrupt(String),
    #[error("destination {path} must be a new or empty directory")]
    DestinationNotEmpty { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// One file to pack: its archive path (with `/`) and where it is on disk (`None` for directories).
struct Item {
    name: String,
    source: Option<PathBuf>,
    executable: bool,
}

/// Packs `dir` into a deterministic `.tar.gz`, within [`Limits::default`].
pub fn pack(dir: &Path) -> Result<Vec<u8>, ArchiveError> {
    pack_with(dir, &Limits::default())
}

/// Packs `dir` into a deterministic `.tar.gz`, refusing trees beyond `limits`.
///
/// The walk refuses a tree past the entry, byte and depth limits before reading it all (with the
/// errors extraction gives); the finished archive is then run through [`check`], the extraction
/// code without the writes, so anything extraction would refuse (a bomb by the ratio limit, a name
/// it would not accept) is refused here, in the same words.
pub fn pack_with(dir: &Path, limits: &Limits) -> Result<Vec<u8>, ArchiveError> {
    let mut items = Vec::new();
    let mut bytes = 0u64;
    collect(dir, "", 1, &mut items, &mut bytes, limits)?;
    items.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));

    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::best());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for item in &items {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match &item.source {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, format!("{}/", item.name), io::empty())
                    .map_err(ArchiveError::Pack)?;
            }
            Some(path) => {
                let mut file =
                    std::fs::File::open(path).map_err(|source| ArchiveError::ReadSource {
                        path: path.clone(),
                        source,
                    })?;
                let len = file
                    .metadata()
                    .map_err(|source| ArchiveError::ReadSource {
                        path: path.clone(),
                        source,
                    })?
                    .len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if item.executable { 0o755 } else { 0o644 });
                header.set_size(len);
                // A file that changes size while being packed would corrupt the tar framing;
                // `take` keeps the stream consistent and the checksum then simply covers what was read.
                tar.append_data(&mut header, &item.name, (&mut file).take(len))
                    .map_err(|e| ArchiveError::ReadSource {
                        path: path.clone(),
                        source: e,
                    })?;
            }
        }
    }
    let gz = tar.into_inner().map_err(ArchiveError::Pack)?;
    let archive = gz.finish().map_err(ArchiveError::Pack)?;
    check(&archive, limits)?;
    Ok(archive)
}

/// Walks the package directory, refusing it as soon as it passes a limit. The counts are the ones
/// extraction keeps (every directory and file is an entry; depth is the number of path components),
/// and so are the errors; [`check`] on the finished archive is the final word.
fn collect(
    dir: &Path,
    prefix: &str,
    depth: u64,
    items: &mut Vec<Item>,
    bytes: &mut u64,
    limits: &Limits,
) -> Result<(), ArchiveError> {
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ArchiveError::ReadSource { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let entry = entry.map_err(read_err(dir))?;
        let path = entry.path();
        let file_name = entry.file_name();
        let name = file_name
            .to_str()
            .ok_or_else(|| ArchiveError::SourceName { path: path.clone() })?;
        if name == ".git" || (prefix.is_empty() && name == "target") {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::symlink_metadata(&path).map_err(read_err(&path))?;
        let ft = meta.file_type();
        // The entry as the archive will name it (directories end in '/').
        let shown = || {
            if ft.is_dir() {
                format!("{rel}/")
            } else {
                rel.clone()
            }
        };
        if items.len() as u64 >= limits.max_files {
            return Err(ArchiveError::TooManyFiles {
                entry: shown(),
                limit: limits.max_files,
            });
        }
        if depth > limits.max_depth {
            return Err(ArchiveError::TooDeep {
                entry: shown(),
                limit: limits.max_depth,
            });
        }
        if ft.is_symlink() {
            return Err(ArchiveError::SourceLink { path });
        } else if ft.is_dir() {
            items.push(Item {
                name: rel.clone(),
                source: None,
                executable: false,
            });
            collect(&path, &rel, depth + 1, items, bytes, limits)?;
        } else if ft.is_file() {
            *bytes = bytes.saturating_add(meta.len());
            if *bytes > limits.max_bytes {
                return Err(ArchiveError::TooLarge {
                    entry: rel,
                    limit: limits.max_bytes,
                });
            }
            items.push(Item {
                name: rel,
                source: Some(path),
                executable: is_executable(&meta),
            });
        } else {
            return Err(ArchiveError::SourceSpecial { path });
        }
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}
#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

/// What [`extract`] unpacked (or [`check`] would).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extracted {
    /// Regular files written.
    pub files: u64,
    /// Directories made: listed in the archive or implied by a path, each once.
    pub dirs: u64,
    /// Bytes of file contents.
    pub bytes: u64,
}

/// Counts the compressed bytes the decoder pulls from the archive.
struct CountingReader<'a> {
    inner: &'a [u8],
    read: u64,
}
impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Enforces the stream cap and the ratio limit on decompressed bytes as they are produced. The
/// error is carried out through `io::Error` and recovered by [`extract`] from `bomb`.
struct BombGuard<'a> {
    inner: flate2::read::GzDecoder<CountingReader<'a>>,
    out: u64,
    cap: u64,
    limits: Limits,
    tripped: Option<ArchiveError>,
}

impl Read for BombGuard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tripped.is_some() {
            return Err(io::Error::other("archive limit exceeded"));
        }
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let compressed = self.inner.get_ref().read.max(1);
        if self.out > self.cap {
            self.tripped = Some(ArchiveError::TooLarge {
                entry: String::new(),
                limit: self.limits.max_bytes,
            });
        } else if self.out > self.limits.ratio_floor
            && self.out / compressed > self.limits.max_ratio
        {
            self.tripped = Some(ArchiveError::Bomb {
                decompressed: self.out,
                compressed,
                limit: self.limits.max_ratio,
            });
        }
        if self.tripped.is_some() {
            return Err(io::Error::other("archive limit exceeded"));
        }
        Ok(n)
    }
}

/// Extracts a `.tar.gz` into `dest` (created if missing; must be empty), within `limits`.
///
/// On error, whatever was written stays inside `dest`; the caller extracts into a staging directory
/// and removes it on failure, so a refused archive leaves nothing behind.
pub fn extract(bytes: &[u8], dest: &Path, limits: &Limits) -> Result<Extracted, ArchiveError> {
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ArchiveError::Write { path, source }
    };
    std::fs::create_dir_all(dest).map_err(write_err(dest))?;
    if std::fs::read_dir(dest)
        .map_err(write_err(dest))?
        .next()
        .is_some()
    {
        return Err(ArchiveError::DestinationNotEmpty {
            path: dest.to_owned(),
        });
    }
    run(bytes, Some(dest), limits)
}

/// Everything [`extract`] checks, without writing anything: `Ok` exactly when extraction into an
/// empty directory would succeed (short of the disk failing), and otherwise the error it would give.
/// [`pack_with`] runs it on every archive it builds.
pub fn check(bytes: &[u8], limits: &Limits) -> Result<Extracted, ArchiveError> {
    run(bytes, None, limits)
}

/// Extraction (`dest` set) or its dry run (`None`): one code path, so the two cannot disagree.
fn run(bytes: &[u8], dest: Option<&Path>, limits: &Limits) -> Result<Extracted, ArchiveError> {
    let cap = limits.max_bytes.saturating_add(
        limits
            .max_files
            .saturating_add(2)
            .saturating_mul(FRAMING_PER_ENTRY),
    );
    let mut guard = BombGuard {
        inner: flate2::read::GzDecoder::new(CountingReader {
            inner: bytes,
            read: 0,
        }),
        out: 0,
        cap,
        limits: *limits,
        tripped: None,
    };
    let result = extract_entries(&mut guard, dest, limits);
    // A limit tripped inside the stream surfaces as an io error from tar; report the real reason.
    match guard.tripped.take() {
        Some(ArchiveError::TooLarge { limit, .. }) => Err(ArchiveError::TooLarge {
            entry: "(decompressed stream)".into(),
            limit,
        }),
        Some(tripped) => Err(tripped),
        None => result,
    }
}

/// What a path in the archive is, as far as this extraction has made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    Dir,
    File,
}

/// Copy buffer size. Both modes read the stream in the same steps, so the ratio guard samples the
/// same points and judges a dry run exactly as it judges the extraction.
const COPY_BUFFER: usize = 8 * 1024;

fn extract_entries(
    guard: &mut BombGuard<'_>,
    dest: Option<&Path>,
    limits: &Limits,
) -> Result<Extracted, ArchiveError> {
    let mut archive = tar::Archive::new(guard);
    let mut done = Extracted::default();
    // Every path this extraction made, so that implied parents are counted once each and a name
    // used twice (or as a file and then a directory) is refused the same way with or without a disk.
    // Bounded: each path in it counted against `max_files`.
    let mut made: HashMap<PathBuf, Made> = HashMap::new();
    let mut entries = 0u64;
    let mut buffer = vec![0u8; COPY_BUFFER];
    let corrupt = |e: io::Error| ArchiveError::Corrupt(e.to_string());
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |reason: &str| ArchiveError::Refused {
            entry: shown.clone(),
            reason: reason.to_owned(),
        };
        let too_many = |entry: &str| ArchiveError::TooManyFiles {
            entry: entry.to_owned(),
            limit: limits.max_files,
        };

        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory => {}
            // A pax global header carries archive-wide metadata (git archive writes one), no file.
            tar::EntryType::XGlobalHeader => continue,
            tar::EntryType::Symlink => {
                return Err(refuse(
                    "is a symbolic link; links are not allowed in packages",
                ));
            }
            tar::EntryType::Link => {
                return Err(refuse("is a hard link; links are not allowed in packages"));
            }
            tar::EntryType::Char => {
                return Err(refuse(
                    "is a character device; device files are not allowed",
                ));
            }
            tar::EntryType::Block => {
                return Err(refuse("is a block device; device files are not allowed"));
            }
            tar::EntryType::Fifo => return Err(refuse("is a fifo; special files are not allowed")),
            other => return Err(refuse(&format!("has unsupported entry type {other:?}"))),
        }
        // Every entry counts, a repeated directory entry too: the limit bounds the work, not only
        // what ends up on disk.
        if entries >= limits.max_files {
            return Err(too_many(&shown));
        }
        entries += 1;
        let rel = safe_relative(&entry.path_bytes()).map_err(|r| refuse(&r))?;
        let Some(rel) = rel else {
            // "./" itself: the destination, already there.
            continue;
        };
        let depth = rel.components().count() as u64;
        if depth > limits.max_depth {
            return Err(ArchiveError::TooDeep {
                entry: shown,
                limit: limits.max_depth,
            });
        }

        // The parents this entry implies, outermost first: each one not yet made is a directory
        // this extraction creates, and counts like any entry.
        let mut parent = PathBuf::new();
        let parents = rel.parent().map(|p| p.components().count()).unwrap_or(0);
        for component in rel.components().take(parents) {
            parent.push(component);
            match made.get(&parent) {
                Some(Made::Dir) => continue,
                Some(Made::File) => {
                    return Err(refuse(&format!(
                        "lies under {}, which the archive made a file",
                        parent.display()
                    )));
                }
                None => {}
            }
            if entries >= limits.max_files {
                return Err(too_many(&shown));
            }
            entries += 1;
            make_dir(dest, parent.clone(), &mut made, &mut done)?;
        }

        if kind == tar::EntryType::Directory {
            match made.get(&rel) {
                Some(Made::Dir) => {}
                Some(Made::File) => return Err(refuse("appears twice in the archive")),
                None => make_dir(dest, rel, &mut made, &mut done)?,
            }
            continue;
        }

        let size = entry.size();
        if done.bytes.saturating_add(size) > limits.max_bytes {
            return Err(ArchiveError::TooLarge {
                entry: shown,
                limit: limits.max_bytes,
            });
        }
        if made.contains_key(&rel) {
            return Err(refuse("appears twice in the archive"));
        }
        made.insert(rel.clone(), Made::File);
        let mode = entry.header().mode().unwrap_or(0o644);
        let mut file = match dest {
            Some(dest) => {
                let target = dest.join(&rel);
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(|source| ArchiveError::Write {
                        path: target.clone(),
                        source,
                    })?;
                Some((target, file))
            }
            None => None,
        };
        // Copy at most the declared size; the stream guard stops a lying header or a bomb.
        let mut data = (&mut entry).take(size);
        let mut copied = 0u64;
        loop {
            let n = match data.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(corrupt(e)),
            };
            if let Some((target, file)) = &mut file {
                file.write_all(&buffer[..n])
                    .map_err(|source| ArchiveError::Write {
                        path: target.clone(),
                        source,
                    })?;
            }
            copied += n as u64;
        }
        if copied != size {
            return Err(refuse(&format!("is truncated: {copied} of {size} bytes")));
        }
        if let Some((target, mut file)) = file {
            file.flush().map_err(|source| ArchiveError::Write {
                path: target.clone(),
                source,
            })?;
            set_mode(&target, if mode & 0o111 != 0 { 0o755 } else { 0o644 }).map_err(|source| {
                ArchiveError::Write {
                    path: target.clone(),
                    source,
                }
            })?;
        }
        done.files += 1;
        done.bytes += size;
    }
    Ok(done)
}

/// Makes the directory `rel` (on disk too, unless this is a dry run) and records it: an implied
/// parent and an explicit directory entry are one kind of thing to the limits and to `made`.
fn make_dir(
    dest: Option<&Path>,
    rel: PathBuf,
    made: &mut HashMap<PathBuf, Made>,
    done: &mut Extracted,
) -> Result<(), ArchiveError> {
    if let Some(dest) = dest {
        let target = dest.join(&rel);
        std::fs::create_dir(&target).map_err(|source| ArchiveError::Write {
            path: target,
            source,
        })?;
    }
    made.insert(rel, Made::Dir);
    done.dirs += 1;
    Ok(())
}

/// The entry's path as a relative path of normal components only, or a reason to refuse it.
/// `Ok(None)` is the archive root (`.` or `./`).
fn safe_relative(raw: &[u8]) -> Result<Option<PathBuf>, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "path is not valid UTF-8".to_owned())?;
    if text.is_empty() {
        return Err("path is empty".into());
    }
    if text.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    if text.len() > MAX_PATH_BYTES {
        return Err(format!(
            "path is {} bytes long; at most {MAX_PATH_BYTES} are allowed",
            text.len()
        ));
    }
    if text.starts_with('/') || text.starts_with('\\') || text.get(1..2) == Some(":") {
        return Err("path is absolute".into());
    }
    let mut out = PathBuf::new();
    // Split on both separators so a Windows-style `..\x` is caught on Unix too.
    for part in text.split(['/', '\\']) {
        match part {
            "" | "." => continue,
            ".." => return Err("path contains a '..' component".into()),
            p if p.len() > MAX_COMPONENT_BYTES => {
                return Err(format!(
                    "path component of {} bytes; at most {MAX_COMPONENT_BYTES} are allowed",
                    p.len()
                ));
            }
            p => match Path::new(p).components().next() {
                Some(Component::Normal(_)) => out.push(p),
                _ => return Err(format!("path component {p:?} is not allowed")),
            },
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::safe_relative;

    #[test]
    fn relative_paths_are_checked() {
        assert_eq!(
            safe_relative(b"a/b.txt").unwrap().unwrap(),
            std::path::PathBuf::from("a/b.txt")
        );
        assert_eq!(safe_relative(b"./").unwrap(), None);
        for bad in [
            &b"/etc/passwd"[..],
            b"../x",
            b"a/../../x",
            b"a\\..\\x",
            b"C:x",
            b"",
        ] {
            assert!(
                safe_relative(bad).is_err(),
                "{:?} should be refused",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
