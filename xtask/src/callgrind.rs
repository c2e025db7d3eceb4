//! Instruction counts: a bench executable run under valgrind's callgrind, collecting only inside
//! the benches' `callgrind_region` (market-benches' `count` module has the protocol). Counted work
//! does not move when a neighbour takes the other core, so where time is noise it still sees a
//! change. This VM exposes no hardware counters, and neither do GitHub's hosted runners, so
//! valgrind is the route (`.ci/run` and the workflows install it from Debian's packages).
//!
//! # Files of one counting process (its folder is its `MARKET_PERF_OUT`)
//!
//! ```text
//! counted.tsv            `<id>\t<calls>` per counted bench, in the order the process ran them
//! callgrind.out.<k>      the k-th dump (k from 1): one call of the routine; `totals: <Ir>`
//! callgrind.out          what is left at exit (outside every region: zero)
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{self, Error, Result};

/// The function the benches count in (market-benches' `count::REGION`).
pub const REGION: &str = "market_benches::count::callgrind_region";

/// valgrind's version line, or why it cannot count here.
pub fn available() -> std::result::Result<String, String> {
    match std::process::Command::new("valgrind")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        Ok(out) => Err(format!("`valgrind --version` exited with {}", out.status)),
        Err(e) => Err(format!("valgrind is not installed ({e})")),
    }
}

/// The command that runs an executable under callgrind, pinned to CPU `cpu` with `taskset` when
/// that works, so that `available_parallelism` is 1 inside and the code runs its single-threaded
/// path. Callgrind collects per thread, and the routine's region is entered on the calling thread
/// only: with two worker threads an index load counted only the calling thread's share, which
/// moved by 8 % between calls (268 M and 290 M instructions); pinned, all its work is counted and
/// two calls differ by 0.14 % (761.8 M, 760.7 M). Valgrind runs threads one at a time anyway, so
/// nothing is lost in speed.
pub fn command(dir: &Path, cpu: usize) -> std::process::Command {
    let cpu = cpu.to_string();
    let pinned = std::process::Command::new("taskset")
        .args(["-c", &cpu, "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut c = if pinned {
        let mut c = std::process::Command::new("taskset");
        c.args(["-c", &cpu, "valgrind"]);
        c
    } else {
        std::process::Command::new("valgrind")
    };
    c.args(valgrind_args(dir));
    c
}

/// The CPUs counting processes run on, one process per CPU at once: those this process may use
/// (`Cpus_allowed_list` in /proc/self/status, else 0, 1, …), as many as `available_parallelism`
/// allows (a cgroup quota can allow fewer). A count does not move when another process takes
/// another core (that is why the gate counts), so counting processes, unlike timed ones, may run
/// side by side; each is pinned to a CPU of its own.
pub fn lanes() -> Vec<usize> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let allowed = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let list = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
            cpu_list(list.trim())
        })
        .unwrap_or_else(|| (0..n).collect());
    allowed.into_iter().take(n.max(1)).collect()
}

/// A Linux CPU list (`0-3,8,10-11`), or None when it is not one.
pub fn cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

/// The arguments that put an executable under callgrind, writing into `dir`.
pub fn valgrind_args(dir: &Path) -> Vec<String> {
    vec![
        "--tool=callgrind".to_owned(),
        "--collect-atstart=no".to_owned(),
        format!("--toggle-collect={REGION}"),
        format!("--dump-after={REGION}"),
        format!(
            "--callgrind-out-file={}",
            dir.join("callgrind.out").display()
        ),
    ]
}

/// The `totals:` (or, failing that, `summary:`) instruction count of one callgrind output file.
pub fn totals(text: &str) -> Option<f64> {
    let find = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    find("totals:").or_else(|| find("summary:"))
}

/// Instructions per call of every bench a counting process counted in `dir`.
pub fn read_counts(dir: &Path) -> Result<BTreeMap<String, f64>> {
    let list = dir.join("counted.tsv");
    let text = error::read_to_string(
        &list,
        "the counting process wrote no counted.tsv: did it run under callgrind with MARKET_COUNT_IDS?",
    )?;
    let mut dump = 0usize;
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |detail: String| {
            Error::parse(
                &list,
                format!("line {}: {detail}", n + 1),
                "the file is written by market-benches' count module",
            )
        };
        let (id, calls) = line
            .split_once('\t')
            .ok_or_else(|| bad(format!("`{line}` is not `<id>\\t<calls>`")))?;
        let calls: usize = calls
            .trim()
            .parse()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| bad(format!("`{calls}` is not a positive count of calls")))?;
        let mut sum = 0.0;
        for _ in 0..calls {
            dump += 1;
            let path = dir.join(format!("callgrind.out.{dump}"));
            let text = error::read_to_string(
                &path,
                "callgrind writes one dump per call of the counted routine (--dump-after)",
            )?;
            sum += totals(&text).ok_or_else(|| {
                Error::parse(
                    &path,
                    "no `totals:` or `summary:` line",
                    "this is not a callgrind output file",
                )
            })?;
        }
        out.insert(id.to_owned(), sum / calls as f64);
    }
    Ok(out)
}
