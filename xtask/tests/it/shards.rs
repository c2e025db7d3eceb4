//! Shards: `bench-all --base-ref REF --shard K/N` on this machine one after the other, pooled by
//! `merge`, judged like one run; and the same when one shard's machine is slower.

use std::path::Path;
use std::process::Output;

use crate::cli::{code, fake_base, fake_workspace, git, stderr, xtask_with_env};

/// A fake workspace on branch `feature`, one commit after `main`, with a prebuilt fake base
/// whose benches take `base_ns` (the head's take 1000 ns).
fn workspace_with_base(base_ns: f64) -> tempfile::TempDir {
    let ws = fake_workspace("otel", true);
    let git = |args: &[&str]| git(ws.path(), args);
    git(&["init", "-q", "-b", "main"]);
    git(&["commit", "-q", "--allow-empty", "-m", "base"]);
    git(&["checkout", "-q", "-b", "feature"]);
    git(&["commit", "-q", "--allow-empty", "-m", "head"]);
    fake_base(ws.path(), base_ns);
    ws
}

/// `bench-all --base-ref main` (one shard of it with `shard`), the slowdown factor applied to
/// every bench of that run as `MARKET_BENCH_SLOWDOWN` does to the real ones.
fn measure(ws: &Path, shard: Option<&str>, slowdown: &str) -> Output {
    let pre = ws.join("prebuilt");
    let mut args = vec![
        "bench-all",
        "--base-ref",
        "main",
        "--profile",
        "standard",
        "--prebuilt",
        pre.to_str().unwrap(),
    ];
    // Four pairs in all: one run measures them, or two shards two each.
    args.extend(["--replicates", "4"]);
    if let Some(s) = shard {
        args.extend(["--shard", s]);
    }
    let slow = Path::new(slowdown);
    let jitter = Path::new("0.03");
    xtask_with_env(
        ws,
        &args,
        &[
            ("MARKET_BENCH_SLOWDOWN", slow),
            ("FAKE_BENCH_JITTER", jitter),
        ],
    )
}

/// The head run file the last measurement wrote (what `latest.json` copies).
fn latest_name(ws: &Path) -> String {
    let run = xtask::run::RunFile::load(&ws.join("target/perf/runs/latest.json")).unwrap();
    run.name
}

/// Two shards measured one after the other (the second `slowdown` slower), merged.
fn two_shards_merged(ws: &Path, slowdown: &str) -> (Output, xtask::run::RunFile) {
    let mut names = Vec::new();
    for (shard, slow) in [("1/2", "0"), ("2/2", slowdown)] {
        let out = measure(ws, Some(shard), slow);
        assert_eq!(code(&out), 0, "shard {shard}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("cargo xtask merge"),
            "{}",
            stderr(&out)
        );
        // The gate line agrees with the exit code: a shard does not decide.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!(
                "Gate: decided by the merge (shard {shard}, exit 0)"
            )),
            "{stdout}"
        );
        names.push(latest_name(ws));
    }
    let mut args = vec!["merge"];
    args.extend(names.iter().map(String::as_str));
    let out = xtask_with_env(ws, &args, &[]);
    let merged = xtask::run::RunFile::load(&ws.join("target/perf/runs/latest.json")).unwrap();
    (out, merged)
}

/// The regression rows of a report: (bench, variant, metric, verdict, test) cells.
fn regression_rows(md: &str) -> Vec<String> {
    md.lines()
        .skip_while(|l| !l.starts_with("## Regression"))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // Keep the id, the verdict words and the test; drop the figures, which move with
            // the jitter of the slowed shard's calibration-free fake.
            cells
                .iter()
                .filter(|c| {
                    c.starts_with('`')
                        || [
                            "fail",
                            "warn",
                            "unchanged",
                            "noisy",
                            "underpowered",
                            "paired",
                        ]
                        .iter()
                        .any(|w| c.contains(w))
                })
                .copied()
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect()
}

fn headings(md: &str) -> Vec<&str> {
    md.lines().filter(|l| l.starts_with('#')).collect()
}

#[test]
fn shards_merged_are_judged_like_one_run_and_pool_pairs_across_machine_speeds() {
    // One unsharded run: the form to match.
    let whole = workspace_with_base(800.0);
    let out = measure(whole.path(), None, "0");
    assert_eq!(code(&out), 1, "+25 % fails: {}", stderr(&out));
    let whole_md = std::fs::read_to_string(whole.path().join("target/perf/report.md")).unwrap();

    let mut verdicts = Vec::new();
    for slowdown in ["0", "0.6"] {
        let ws = workspace_with_base(800.0);
        let (out, merged) = two_shards_merged(ws.path(), slowdown);
        assert_eq!(
            code(&out),
            1,
            "slowdown {slowdown}: the merged +25 % fails: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        // Every pair of both shards, numbered without collisions.
        let reps: Vec<u32> = merged
            .replicates("fake/op", "plain")
            .map(|r| r.replicate)
            .collect();
        assert_eq!(reps, [0, 1, 2, 3], "slowdown {slowdown}");
        assert_eq!(merged.shards.len(), 2);
        assert!(merged.shard.is_none());
        let md = std::fs::read_to_string(ws.path().join("target/perf/report.md")).unwrap();
        assert_eq!(
            headings(&md),
            headings(&whole_md),
            "the same form as one run"
        );
        assert!(md.contains("| paired (4) |"), "{md}");
        for k in ["shard 1/2: run", "shard 2/2: run"] {
            assert!(md.contains(k), "the report names each shard's runner: {md}");
        }
        verdicts.push(regression_rows(&md));
    }
    assert!(!verdicts[0].is_empty());
    assert_eq!(
        verdicts[0], verdicts[1],
        "a shard on a 60 % slower machine changes no verdict"
    );
}

#[test]
fn merge_refuses_what_is_not_one_measurement() {
    let ws = workspace_with_base(1000.0);
    let out = measure(ws.path(), Some("1/2"), "0");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let first = latest_name(ws.path());
    // The same shard twice.
    let out = xtask_with_env(ws.path(), &["merge", &first, &first], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("given twice"), "{}", stderr(&out));
    // A run that is not a shard.
    let out = measure(ws.path(), None, "0");
    assert!(code(&out) <= 1, "{}", stderr(&out));
    let whole = latest_name(ws.path());
    let out = xtask_with_env(ws.path(), &["merge", &first, &whole], &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a shard"), "{}", stderr(&out));
    // A shard is compared when merged, not on its own.
    let out = xtask_with_env(
        ws.path(),
        &["bench-all", "--shard", "1/2", "--against", "x"],
        &[],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    for bad in ["0/2", "3/2", "x"] {
        let out = xtask_with_env(ws.path(), &["ci", "--shard", bad], &[]);
        assert_eq!(code(&out), 2, "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("K/N"), "{bad}: {}", stderr(&out));
    }
}

#[test]
fn shards_without_a_base_pool_the_overhead_check() {
    let ws = fake_workspace("otel", true);
    let pre = ws.path().join("prebuilt");
    let mut names = Vec::new();
    for shard in ["1/2", "2/2"] {
        let args = [
            "bench-all",
            "--profile",
            "standard",
            "--prebuilt",
            pre.to_str().unwrap(),
            "--replicates",
            "4",
            "--shard",
            shard,
        ];
        let out = xtask_with_env(ws.path(), &args, &[]);
        assert_eq!(code(&out), 0, "shard {shard}: {}", stderr(&out));
        names.push(latest_name(ws.path()));
    }
    let mut args = vec!["merge"];
    args.extend(names.iter().map(String::as_str));
    let out = xtask_with_env(ws.path(), &args, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let merged =
        xtask::run::RunFile::load(&ws.path().join("target/perf/runs/latest.json")).unwrap();
    assert!(merged.paired_with.is_none());
    for v in ["plain", "otel"] {
        assert_eq!(merged.estimates("fake/op", v).len(), 4, "{v}");
    }
    let md = std::fs::read_to_string(ws.path().join("target/perf/report.md")).unwrap();
    assert!(
        md.contains("(4 blocks)"),
        "the overhead check pools both shards' blocks: {md}"
    );
}

#[test]
fn a_shard_measures_its_share_of_the_replicates_numbered_to_interleave() {
    use xtask::run::Shard;
    // (shard, total replicates, its share, its replicate numbers)
    let table: [(&str, u32, u32, &[u32]); 6] = [
        ("1/1", 3, 3, &[0, 1, 2]),
        ("1/2", 4, 2, &[0, 2]),
        ("2/2", 4, 2, &[1, 3]),
        ("1/3", 5, 2, &[0, 3]),
        ("3/3", 5, 1, &[2]),
        ("3/3", 2, 0, &[]),
    ];
    for (text, total, share, numbers) in table {
        let s = Shard::parse(text).unwrap();
        assert_eq!(s.share(total), share, "{text} of {total}");
        let got: Vec<u32> = (0..s.share(total)).map(|l| s.replicate(l)).collect();
        assert_eq!(got, numbers, "{text} of {total}");
    }
    for bad in ["0/2", "3/2", "1/0", "x", "1", "1/2/3", ""] {
        assert!(Shard::parse(bad).is_err(), "{bad}");
    }
}
