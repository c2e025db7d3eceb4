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

/// The command that runs an executable under callgrind: pinned to one CPU with `taskset` when
/// there is one, so that `available_parallelism` is 1 inside and the code runs its single-threaded
/// path. Callgrind collects per thread, and the routine's region is entered on the calling thread
/// only: with two worker threads an index load counted only the calling thread's share, which
/// moved by 8 % between calls (268 M and 290 M instructions); pinned, all its work is counted and
/// two calls differ by 0.14 % (761.8 M, 760.7 M). Valgrind runs threads one at a time anyway, so
/// nothing is lost in speed.
pub fn command(dir: &Path) -> std::process::Command {
    let pinned = std::process::Command::new("taskset")
        .args(["-c", "0", "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut c = if pinned {
        let mut c = std::process::Command::new("taskset");
        c.args(["-c", "0", "valgrind"]);
        c
    } else {
        std::process::Command::new("valgrind")
    };
    c.args(valgrind_args(dir));
    c
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
