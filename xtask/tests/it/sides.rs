//! Each side of an A/B run measures its own code: a real cargo workspace in a real two-commit git
//! repository, built by the xtask as it builds the marketplace, whose bench reports a different
//! value in each commit. The value lives in a library crate (as `market-core` does), because that
//! is where a shared target directory once linked the other commit's code into a fresh build.

use std::path::Path;

use xtask::run::RunFile;

use crate::cli::{SMALL_POLICY, code, git, stderr, xtask};

/// The fixture workspace: `market-core` (the value), `market-benches` (a bench that speaks the
/// gate's protocol and writes Criterion 0.8's files), `market-telemetry` (an OTLP receiver that
/// listens on loopback). No dependencies, so it builds offline in seconds.
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        r#"[workspace]
resolver = "2"
members = ["core", "benches", "telemetry"]

[profile.bench]
debug = "line-tables-only"
"#,
    ),
    (
        "core/Cargo.toml",
        r#"[package]
name = "market-core"
version = "0.1.0"
edition = "2021"
"#,
    ),
    (
        "benches/Cargo.toml",
        r#"[package]
name = "market-benches"
version = "0.1.0"
edition = "2021"

[features]
otel = []

[dependencies]
market-core = { path = "../core" }

[[bench]]
name = "fake"
harness = false
"#,
    ),
    (
        "benches/src/lib.rs",
        r#"/// As in the real market-benches: the one function callgrind collects in.
pub mod count {
    #[inline(never)]
    pub fn callgrind_region(op: &mut dyn FnMut()) {
        op();
    }
}
"#,
    ),
    (
        "benches/benches/fake.rs",
        r##"use std::path::PathBuf;

fn estimate(v: f64) -> String {
    format!(r#"{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{v},"upper_bound":{v}}},"point_estimate":{v},"standard_error":1.0}}"#)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let variant = if cfg!(feature = "otel") { "otel" } else { "plain" };
    if std::env::var_os("MARKET_BENCH_VARIANT_CHECK").is_some() {
        println!("market-bench-variant: {variant}");
        return;
    }
    if args.first().map(String::as_str) == Some("--list") {
        println!("fake/op: benchmark");
        return;
    }
    // Counting mode (the xtask runs this under callgrind): real work, as many rounds as the
    // commit's value, inside the region, five calls, listed in counted.tsv.
    if std::env::var("MARKET_COUNT_IDS").is_ok_and(|ids| ids.split(',').any(|i| i == "fake/op")) {
        let rounds = market_core::per_iteration_ns();
        let mut x = 1u64;
        for _ in 0..5 {
            market_benches::count::callgrind_region(&mut || {
                for i in 0..rounds {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                }
            });
        }
        let out = PathBuf::from(std::env::var("MARKET_PERF_OUT").unwrap());
        std::fs::write(out.join("counted.tsv"), "fake/op\t5\n").unwrap();
        return;
    }
    // The seed spreads the replicates a little, as a real machine would.
    let seed: f64 = std::env::var("MARKET_BENCH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let ns = market_core::per_iteration_ns() as f64 + seed;
    let dir = PathBuf::from(std::env::var("CRITERION_HOME").unwrap()).join("fake/op/new");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("benchmark.json"), r#"{"group_id":"fake","function_id":"op","value_str":null,"throughput":null,"full_id":"fake/op"}"#).unwrap();
    let e = estimate(ns);
    std::fs::write(dir.join("estimates.json"), format!(r#"{{"mean":{e},"median":{e},"median_abs_dev":{e},"slope":null,"std_dev":{e}}}"#)).unwrap();
    let iters: Vec<String> = (1..=12).map(|i| i.to_string()).collect();
    let times: Vec<String> = (1..=12).map(|i| (i as f64 * ns).to_string()).collect();
    std::fs::write(dir.join("sample.json"), format!(r#"{{"sampling_mode":"Flat","iters":[{}],"times":[{}]}}"#, iters.join(","), times.join(","))).unwrap();
}
"##,
    ),
    (
        "telemetry/Cargo.toml",
        r#"[package]
name = "market-telemetry"
version = "0.1.0"
edition = "2021"

[features]
receiver = []

[[bin]]
name = "otlp-receiver"
required-features = ["receiver"]
"#,
    ),
    ("telemetry/src/lib.rs", ""),
    (
        "telemetry/src/bin/otlp-receiver.rs",
        r#"use std::io::{BufRead, Write};

fn main() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("listening on http://{}", listener.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    // Lives until the xtask closes stdin.
    for _ in std::io::stdin().lock().lines() {}
}
"#,
    ),
    (".gitignore", "/target\n"),
];

fn core_source(ns: u64) -> String {
    format!(
        "/// What the fixture bench reports, ns per iteration.\npub fn per_iteration_ns() -> u64 {{\n    {ns}\n}}\n"
    )
}

/// A repository whose first commit reports 1000 ns and whose second reports 2000 ns.
fn two_commit_repo() -> (tempfile::TempDir, String, String) {
    let ws = tempfile::tempdir().unwrap();
    for (path, text) in FILES {
        let p = ws.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    std::fs::create_dir_all(ws.path().join("baselines")).unwrap();
    std::fs::write(ws.path().join("baselines/policy.toml"), SMALL_POLICY).unwrap();
    std::fs::create_dir_all(ws.path().join("core/src")).unwrap();
    std::fs::write(ws.path().join("core/src/lib.rs"), core_source(1000)).unwrap();
    let git = |args: &[&str]| git(ws.path(), args);
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "one: 1000 ns"]);
    let one = git(&["rev-parse", "HEAD"]);
    std::fs::write(ws.path().join("core/src/lib.rs"), core_source(2000)).unwrap();
    git(&["commit", "-q", "-am", "two: 2000 ns"]);
    let two = git(&["rev-parse", "HEAD"]);
    (ws, one, two)
}

/// `bench-all --base-ref REF`; returns the head and base run files.
fn ab(ws: &Path, base_ref: &str) -> (RunFile, RunFile) {
    let out = xtask(
        ws,
        &["bench-all", "--base-ref", base_ref, "--profile", "standard"],
    );
    assert!(
        [0, 1].contains(&code(&out)),
        "bench-all --base-ref {base_ref}: {}",
        stderr(&out)
    );
    // Progress through the builds says which of how many: both head variants, the receiver, the
    // base.
    for n in 1..=4 {
        assert!(
            stderr(&out).contains(&format!("build {n} of 4: building ")),
            "{}",
            stderr(&out)
        );
    }
    let head = RunFile::load(&ws.join("target/perf/runs/latest.json")).unwrap();
    let base_name = head.against.clone().unwrap();
    let base = RunFile::load(&ws.join(format!("target/perf/runs/{base_name}.json"))).unwrap();
    (head, base)
}

/// Every plain estimate of `fake/op` in the run lies within a few ns of `ns`.
fn assert_measured(run: &RunFile, ns: f64, side: &str) {
    let e = run.estimates("fake/op", "plain");
    assert!(!e.is_empty(), "{side}: no estimates");
    assert!(
        e.iter().all(|v| (v - ns).abs() < 10.0),
        "{side} should measure its own code ({ns} ns), got {e:?}"
    );
}

#[test]
fn each_side_measures_its_own_commit_whichever_was_built_first() {
    let (ws, one, two) = two_commit_repo();
    let ws = ws.path();
    let git = |args: &[&str]| git(ws, args);

    // Head (two) is built first, then the base (one); twice, because the second time is when a
    // shared target directory betrayed itself: the head's sources, older than the base's
    // artifact, looked unchanged, and cargo linked the base's `market-core` into the head.
    for _ in 0..2 {
        let (head, base) = ab(ws, &one);
        assert_eq!(head.git.commit.as_deref(), Some(two.as_str()));
        assert_eq!(base.git.commit.as_deref(), Some(one.as_str()));
        assert_measured(&head, 2000.0, "head (two)");
        assert_measured(&base, 1000.0, "base (one)");
        assert_ne!(
            head.executables["plain/fake"], base.executables["plain/fake"],
            "the sides ran different executables"
        );
        assert!(head.executables.contains_key("otel/fake"));
        let md = std::fs::read_to_string(ws.join("target/perf/report.md")).unwrap();
        assert!(
            md.contains("- base and head executables: all different"),
            "{md}"
        );
    }

    // Now each target directory holds the other commit's build: the working tree goes back to
    // one, and two becomes the base. Each side must rebuild from its own sources.
    git(&["checkout", "-q", "--detach", &one]);
    let (head, base) = ab(ws, &two);
    assert_eq!(head.git.commit.as_deref(), Some(one.as_str()));
    assert_measured(&head, 1000.0, "head (one)");
    assert_measured(&base, 2000.0, "base (two)");

    // The executables measured are kept apart from cargo's directories, per side and variant.
    for kept in [
        "head/plain/fake",
        "head/otel/fake",
        "head/otlp-receiver",
        "base/plain/fake",
    ] {
        assert!(ws.join("target/perf/exe").join(kept).is_file(), "{kept}");
    }
    assert_eq!(
        xtask::build::sha256_file(&ws.join("target/perf/exe/base/plain/fake")).unwrap(),
        base.executables["plain/fake"]
    );
}

#[test]
fn an_a_a_comparison_runs_byte_identical_executables() {
    let (ws, _, two) = two_commit_repo();
    let ws = ws.path();
    // The two trees sit at different paths; the executables must not differ by them.
    let (head, base) = ab(ws, "HEAD");
    assert_eq!(base.git.commit.as_deref(), Some(two.as_str()));
    assert_eq!(
        head.executables["plain/fake"],
        base.executables["plain/fake"]
    );
    assert_measured(&head, 2000.0, "head");
    assert_measured(&base, 2000.0, "base");
    let md = std::fs::read_to_string(ws.join("target/perf/report.md")).unwrap();
    assert!(
        md.contains("- base and head executables: identical"),
        "{md}"
    );
}

#[test]
fn a_workspace_unit_is_told_from_a_dependency_by_its_name() {
    let packages = ["market-core".to_owned(), "xtask".to_owned()].into();
    for (entry, is_unit) in [
        ("market-core-0a1b2c3d4e5f6789", true),
        ("xtask-00ff", true),
        ("market-core-extra-0a1b", false),
        ("serde-0a1b2c3d", false),
        ("market-core", false),
        ("market-core-notahash", false),
    ] {
        assert_eq!(
            xtask::build::is_unit_of(entry, &packages),
            is_unit,
            "{entry}"
        );
    }
}

#[test]
fn instruction_counts_gate_the_benches_the_policy_names() {
    let (ws, one, _) = two_commit_repo();
    let ws = ws.path();
    let policy = format!("{SMALL_POLICY}\n[metrics]\ninstructions = [\"fake/op\"]\n");
    std::fs::write(ws.join("baselines/policy.toml"), policy).unwrap();
    let (head, base) = ab(ws, &one);
    let counted = |run: &RunFile| -> Vec<f64> {
        run.replicates("fake/op", "plain")
            .filter_map(|r| r.instructions)
            .collect()
    };
    let md = std::fs::read_to_string(ws.join("target/perf/report.md")).unwrap();
    match xtask::callgrind::available() {
        Ok(_) => {
            let (h, b) = (counted(&head), counted(&base));
            assert_eq!((h.len(), b.len()), (2, 2), "two counting processes a side");
            // Twice the rounds, about twice the instructions, and the same in every process.
            let ratio = h[0] / b[0];
            assert!((1.9..2.1).contains(&ratio), "{h:?} vs {b:?}");
            assert!((h[0] - h[1]).abs() / h[0] < 0.01, "{h:?}");
            assert!(
                md.contains("| `fake/op` | plain | instructions | +"),
                "an instructions row: {md}"
            );
            assert!(md.contains("instructions counted with valgrind"), "{md}");
        }
        Err(_) => {
            assert!(counted(&head).is_empty());
            assert!(md.contains("instructions not counted"), "{md}");
        }
    }
    // Wall time is still measured and shown, for information.
    assert!(
        md.contains("| `fake/op` | plain | wall time (info) |"),
        "{md}"
    );
}
