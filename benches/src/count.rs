//! Counted work beside measured time: CPU time for every bench, instruction counts for the ones the
//! xtask runs under valgrind's callgrind.
//!
//! **CPU time.** Around each call Criterion makes of a bench's routine (warm-up and measurement),
//! the process's user + system time is read with `getrusage`, and the routine's calls are counted;
//! after Criterion's measurement the total goes to `<MARKET_PERF_OUT>/<id with / as __>.cpu.json`
//! as `{"cpu_ns_per_iter": …, "iterations": …}`. A neighbour on the other core takes wall time from
//! a bench but not CPU time; a neighbour on the same core shows in both.
//!
//! **Instructions.** With `MARKET_COUNT_IDS` set (comma-separated full ids), the process counts
//! instead of timing: for each listed bench it builds the bench's state, calls the operation once
//! to warm caches, then calls it `MARKET_COUNT_ITERATIONS` times (default 5), each call inside
//! [`callgrind_region`], the one function the xtask tells callgrind to collect in
//! (`--toggle-collect`) and to dump after (`--dump-after`). Setup, warm-up, input preparation and
//! Criterion stay outside it, so a count is the routine's alone (Gungraun and CodSpeed switch
//! collection on around the routine with client requests; a named function does the same without
//! unsafe code). Every call is one dump file, numbered in order; the process appends
//! `<id>\t<calls>` to `<MARKET_PERF_OUT>/counted.tsv` in the order it ran them, which is how the
//! xtask maps dump files to ids. Nothing else runs in such a process: benches it does not count
//! return at once.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

/// The ids to count instructions of.
pub const IDS_VAR: &str = "MARKET_COUNT_IDS";
/// Calls counted per bench.
pub const ITERATIONS_VAR: &str = "MARKET_COUNT_ITERATIONS";
/// The fully qualified name of [`callgrind_region`], as callgrind shows it.
pub const REGION: &str = "market_benches::count::callgrind_region";

/// The ids this process counts, when it counts.
pub fn ids() -> Option<&'static BTreeSet<String>> {
    static IDS: OnceLock<Option<BTreeSet<String>>> = OnceLock::new();
    IDS.get_or_init(|| {
        std::env::var(IDS_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
    })
    .as_ref()
}

fn iterations() -> u64 {
    std::env::var(ITERATIONS_VAR)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(5)
}

/// The only code callgrind collects in. Not inlined, so it keeps its name in the executable.
#[inline(never)]
pub fn callgrind_region(op: &mut dyn FnMut()) {
    op();
}

fn record(id: &str, calls: u64) {
    let Some(dir) = std::env::var_os("MARKET_PERF_OUT") else {
        return;
    };
    let path = std::path::Path::new(&dir).join("counted.tsv");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{id}\t{calls}"));
    if let Err(e) = written {
        eprintln!("market-benches: writing {}: {e}", path.display());
        std::process::exit(2);
    }
}

/// Counts `op` on fresh state when `id` is listed.
pub fn count<S, R>(id: &str, setup: impl FnOnce() -> S, mut op: impl FnMut(&S) -> R) {
    let s = setup();
    std::hint::black_box(op(&s));
    let n = iterations();
    for _ in 0..n {
        callgrind_region(&mut || {
            std::hint::black_box(op(&s));
        });
    }
    record(id, n);
}

/// [`count`] for operations that consume fresh input: `input` runs outside the region, and so
/// does dropping what `op` returns.
pub fn count_batched<S, I, R>(
    id: &str,
    setup: impl FnOnce() -> S,
    mut input: impl FnMut(&S) -> I,
    mut op: impl FnMut(&S, I) -> R,
) {
    let s = setup();
    drop(op(&s, input(&s)));
    let n = iterations();
    for _ in 0..n {
        let mut i = Some(input(&s));
        let mut out = None;
        callgrind_region(&mut || {
            out = i.take().map(|i| op(&s, i));
        });
        drop(out);
    }
    record(id, n);
}

/// This process's user + system CPU time.
#[allow(unsafe_code)]
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given and reads nothing else;
    // the buffer is zero-initialised, so it is a valid `rusage` even if the call fails.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time and calls of one bench's routine, summed over Criterion's calls of it.
#[derive(Debug, Default)]
pub struct CpuTally {
    pub cpu: Duration,
    pub calls: u64,
}

impl CpuTally {
    /// Writes `<id>.cpu.json` under `MARKET_PERF_OUT`, when set and something was measured.
    pub fn write(&self, id: &str) {
        let Some(dir) = std::env::var_os("MARKET_PERF_OUT") else {
            return;
        };
        if self.calls == 0 {
            return;
        }
        let path = std::path::Path::new(&dir).join(format!("{}.cpu.json", id.replace('/', "__")));
        let doc = serde_json::json!({
            "cpu_ns_per_iter": self.cpu.as_nanos() as f64 / self.calls as f64,
            "iterations": self.calls,
        });
        if let Err(e) = std::fs::write(&path, doc.to_string()) {
            eprintln!("market-benches: writing {}: {e}", path.display());
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_work_and_not_waiting() {
        // Work advances it (on a loaded machine more slowly than the clock, so no wall-time
        // bound but a generous deadline); sleeping does not.
        let t0 = cpu_time();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut x = 1u64;
        while cpu_time() - t0 < Duration::from_millis(50) && std::time::Instant::now() < deadline {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        assert!(
            cpu_time() - t0 >= Duration::from_millis(50),
            "CPU time never advanced"
        );
        let t1 = cpu_time();
        std::thread::sleep(Duration::from_millis(200));
        let idle = cpu_time() - t1;
        assert!(
            idle < Duration::from_millis(50),
            "{idle:?} of CPU while asleep"
        );
    }
}
