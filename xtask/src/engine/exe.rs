//! The bench executables' protocol: the variant check and the id list.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

use crate::build::tail;

/// Refuses an executable that was not built as `expected` (see the protocol above).
pub fn check_variant(exe: &Path, expected: &str) -> Result<()> {
    // `--list` as well: an executable that predates the protocol then lists its ids quickly and
    // fails the check, instead of running every bench once as Criterion's test mode would.
    let out = Command::new(exe)
        .arg("--list")
        .env("MARKET_BENCH_VARIANT_CHECK", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::input(
                format!("bench executable {}", exe.display()),
                format!("cannot run: {e}"),
                "rebuild the benches",
            )
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reported: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("market-bench-variant:"))
        .map(str::trim)
        .collect();
    match reported.as_slice() {
        [v] if *v == expected && out.status.success() => Ok(()),
        [v] => Err(Error::input(
            format!("bench executable {}", exe.display()),
            format!("was built as the `{v}` variant, but the `{expected}` build produced it"),
            "the executable cargo reported for this variant was built with the other feature set; delete target/perf/build and re-run",
        )),
        _ => Err(Error::input(
            format!("bench executable {}", exe.display()),
            "did not print exactly one `market-bench-variant: <plain|otel>` line when run with MARKET_BENCH_VARIANT_CHECK=1",
            "every bench main must answer the variant check (see market-benches' lib)",
        )),
    }
}

/// The ids an executable lists (optionally matching Criterion's regex filter).
pub fn list(exe: &Path, filter: Option<&str>) -> Result<Vec<String>> {
    let mut c = Command::new(exe);
    c.arg("--list");
    if let Some(f) = filter {
        c.arg(f);
    }
    let out = c.stdin(Stdio::null()).output().map_err(|e| {
        Error::input(
            format!("bench executable {}", exe.display()),
            format!("cannot run --list: {e}"),
            "rebuild the benches",
        )
    })?;
    if !out.status.success() {
        return Err(Error::input(
            format!("`{} --list`", exe.display()),
            format!(
                "exited with {}: {}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 10)
            ),
            "an invalid --filter regex is the usual cause",
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": benchmark"))
        .map(str::to_owned)
        .collect())
}

/// A regex matching exactly the given ids (Criterion's filter is a regex on the full id).
pub fn exact_regex(ids: &BTreeSet<String>) -> String {
    let escaped: Vec<String> = ids
        .iter()
        .map(|id| {
            id.chars()
                .flat_map(|c| {
                    if "\\.+*?()|[]{}^$#&-~".contains(c) {
                        vec!['\\', c]
                    } else {
                        vec![c]
                    }
                })
                .collect()
        })
        .collect();
    format!("^(?:{})$", escaped.join("|"))
}
