//! Atomic file writes: a crash or a full disk never leaves a half-written index, lock or key.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` by writing a temporary file in the same directory, syncing it, and
/// renaming it over the target. Readers see either the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
