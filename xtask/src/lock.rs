//! The machine-wide measurement lock: one xtask measures at a time on a machine. Two `bench-all`
//! invocations once ran their bench processes at the same time, each measuring the other; the
//! invariant "one bench process at a time" held only inside one xtask.
//!
//! The lock is an advisory lock (`File::lock`, flock on Linux) on one file per machine,
//! `/tmp/market-xtask-measure.lock` unless `MARKET_PERF_LOCK` names another. The kernel drops it
//! when the holder exits, however it exits, so a crashed xtask never leaves the machine locked.
//! The holder writes who it is into the file, so a waiter can say for whom it waits.
//!
//! `bench-all` and `otel-overhead` take it after their builds, so a second xtask can compile while
//! the first measures (pairing and the environment guard are what keep a measurement honest
//! beside a compile). `ci` takes it for its whole run, so that nothing measures between its A/B
//! run and its overhead instrument.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Held by this process: `ci` measures twice (A/B, then overhead) under one lock.
static HELD: Mutex<usize> = Mutex::new(0);

/// The lock file of this machine.
pub fn path() -> PathBuf {
    std::env::var_os("MARKET_PERF_LOCK")
        .filter(|p| !p.is_empty())
        .map_or_else(
            || PathBuf::from("/tmp/market-xtask-measure.lock"),
            PathBuf::from,
        )
}

/// Holds the machine until dropped.
#[derive(Debug)]
pub struct MachineLock {
    // Dropping the file releases the kernel lock.
    file: Option<File>,
}

impl Drop for MachineLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        *held = held.saturating_sub(1);
        if *held == 0
            && let Some(mut f) = self.file.take()
        {
            // Leave no stale holder text behind; the lock itself goes with the file handle.
            let _ = f.set_len(0);
            let _ = f.flush();
        }
    }
}

/// Takes the machine for measuring. Another xtask holding it: waits, saying for whom, or with
/// `no_wait` refuses (exit 2) naming the holder.
pub fn acquire(what: &str, no_wait: bool) -> Result<MachineLock> {
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if *held > 0 {
        *held += 1;
        return Ok(MachineLock { file: None });
    }
    let path = path();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = holder(&mut file);
            if no_wait {
                return Err(Error::input(
                    format!("the machine lock {}", path.display()),
                    format!("another xtask is measuring on this machine: {holder}"),
                    "wait for it to finish (drop --no-wait to queue behind it); two measurements at once measure each other",
                ));
            }
            eprintln!(
                "waiting for the machine: another xtask is measuring ({holder}; lock {})",
                path.display()
            );
            let started = std::time::Instant::now();
            file.lock().map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
            eprintln!(
                "the machine is free after {:.0}s",
                started.elapsed().as_secs_f64()
            );
        }
        Err(TryLockError::Error(source)) => {
            return Err(Error::Write { path, source });
        }
    }
    let me = format!(
        "pid {} ({what}, cargo xtask {}), since {}",
        std::process::id(),
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        crate::verbs::now_utc().1
    );
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = file.write_all(me.as_bytes());
    let _ = file.flush();
    *held = 1;
    Ok(MachineLock { file: Some(file) })
}

fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "holder unknown".to_owned()
    } else {
        text.to_owned()
    }
}
