//! The built binary on fixture workspaces: exit codes 0/1/2 and messages naming the input. Bench
//! executables are fakes (shell scripts) that speak the bench protocol and write Criterion trees.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fixtures::{self, add, empty_run};

pub(crate) fn xtask(ws: &Path, args: &[&str]) -> Output {
    xtask_with_env(ws, args, &[])
}

pub(crate) fn xtask_with_env(ws: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .envs(env.iter().copied())
        .args(args)
        .arg("--workspace")
        .arg(ws)
        // A lock of the test's own: tests run in parallel, and a real measurement may be running.
        .env("MARKET_PERF_LOCK", ws.join("perf.lock"))
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("MARKET_PERF_PROFILE")
        .env_remove("MARKET_OTEL_SAMPLE_RATIO")
        .env_remove("OTEL_TRACES_SAMPLER_ARG")
        .output()
        .unwrap()
}

pub(crate) fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) const SMALL_POLICY: &str = r#"
[thresholds]
regression_warn = 0.10
regression_fail = 0.15
throughput_fail = 0.10
alpha = 0.05

[overhead]
critical_fail = 0.10
critical_warn = 0.08
any_bench_fail = 0.15
average_fail = 0.08
average_target = 0.05
production_sample_ratio = 0.1
ci_half_width = 0.02
time_cap_minutes = 1
critical_paths = ["fake/op"]

[[sla]]
name = "fake op"
bench = "fake/op"
statistic = "mean"
target = "1 ms"
critical = true
profiles = ["standard"]

[profiles.standard]
description = "test"
replicates = 2
max_replicates = 2
criterion_args = ["--sample-size", "20"]
include = ["*"]
gated = true

[profiles.quick]
description = "smoke"
replicates = 1
max_replicates = 1
criterion_args = []
include = ["*"]
gated = false
"#;

/// A fake bench executable: answers the variant check with `reported`, lists `ids`, and on
/// `--bench` writes a Criterion 0.8 tree for the ids matching its filter (ns per iteration `ns`,
/// scaled like the real benches by `1 + $MARKET_BENCH_SLOWDOWN`, and with `$FAKE_BENCH_JITTER`
/// set, moved by up to ± that fraction by the replicate's seed and the executable's path, so
/// that base and head processes of one pair differ as real ones do).
pub(crate) fn fake_bench(path: &Path, reported: &str, ids: &[&str], ns: f64, write: bool) {
    let ids = ids.join(" ");
    let body = if write {
        format!(
            r#"echo "$TMPDIR" > "$CRITERION_HOME/tmpdir.txt"
echo "$MARKET_BENCH_SEED" > "$CRITERION_HOME/seed.txt"
if [ -n "$TMPDIR" ]; then touch "$TMPDIR/left-behind"; fi
for id in {ids}; do
  echo "$id" | grep -Eq "$(echo "$filter" | sed 's/(?:/(/')" || continue
  d="$CRITERION_HOME/$id/new"; mkdir -p "$d"
  printf '{{"group_id":"%s","function_id":"%s","value_str":null,"throughput":null,"full_id":"%s"}}' "${{id%%/*}}" "${{id#*/}}" "$id" > "$d/benchmark.json"
  e='{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":'$ns',"upper_bound":'$ns'}},"point_estimate":'$ns',"standard_error":1.0}}'
  printf '{{"mean":%s,"median":%s,"median_abs_dev":%s,"slope":null,"std_dev":%s}}' "$e" "$e" "$e" "$e" > "$d/estimates.json"
  iters=""; times=""
  for i in 1 2 3 4 5 6 7 8 9 10 11 12; do iters="$iters${{iters:+,}}$i"; times="$times${{times:+,}}$(($i * ns))"; done
  printf '{{"sampling_mode":"Flat","iters":[%s],"times":[%s]}}' "$iters" "$times" > "$d/sample.json"
done"#
        )
    } else {
        String::new()
    };
    let script = format!(
        r#"#!/bin/sh
if [ -n "$MARKET_BENCH_VARIANT_CHECK" ]; then echo "market-bench-variant: {reported}"; exit 0; fi
if [ "$1" = "--list" ]; then for id in {ids}; do echo "$id" | grep -Eq "${{2:-.}}" && echo "$id: benchmark"; done; exit 0; fi
for a in "$@"; do filter="$a"; done
ns=$(awk -v n={ns} -v s="${{MARKET_BENCH_SLOWDOWN:-0}}" -v seed="${{MARKET_BENCH_SEED:-0}}" -v salt="${{#0}}" -v j="${{FAKE_BENCH_JITTER:-0}}" 'BEGIN {{ printf "%.0f", n * (1 + s) * (1 + j * ((seed + 1) * salt % 13 - 6) / 6) }}')
{body}
exit 0
"#
    );
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A workspace with the small policy and prebuilt fakes for both variants and the receiver.
pub(crate) fn fake_workspace(otel_reports: &str, write: bool) -> tempfile::TempDir {
    fake_workspace_with(otel_reports, write, 1030.0)
}

fn fake_workspace_with(otel_reports: &str, write: bool, otel_ns: f64) -> tempfile::TempDir {
    let ws = fixtures::workspace();
    std::fs::write(ws.path().join("baselines/policy.toml"), SMALL_POLICY).unwrap();
    let pre = ws.path().join("prebuilt");
    for v in ["plain", "otel"] {
        std::fs::create_dir_all(pre.join(v)).unwrap();
    }
    let ids = ["fake/op", "fake/other"];
    fake_bench(&pre.join("plain/fake_bench"), "plain", &ids, 1000.0, write);
    fake_bench(
        &pre.join("otel/fake_bench"),
        otel_reports,
        &ids,
        otel_ns,
        write,
    );
    let recv = pre.join("otlp-receiver");
    std::fs::write(
        &recv,
        "#!/bin/sh\necho 'listening on http://127.0.0.1:4318'\nexec sleep 120\n",
    )
    .unwrap();
    std::fs::set_permissions(&recv, std::fs::Permissions::from_mode(0o755)).unwrap();
    ws
}

/// Runs git in `ws`; returns its trimmed stdout.
pub(crate) fn git(ws: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(ws)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The one run file in `runs` whose name ends with `suffix` (for example `-overhead.json`).
fn run_file(runs: &Path, suffix: &str) -> PathBuf {
    std::fs::read_dir(runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no run file *{suffix} in {}", runs.display()))
}

/// `otel-overhead` with the fakes and the test policy's `standard` profile.
fn otel_overhead(ws: &Path, extra: &[&str]) -> Output {
    let pre = ws.join("prebuilt");
    let mut args = vec![
        "otel-overhead",
        "--profile",
        "standard",
        "--prebuilt",
        pre.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    xtask(ws, &args)
}

fn bench_all(ws: &Path, extra: &[&str]) -> Output {
    let pre = ws.join("prebuilt");
    let mut args = vec!["bench-all", "--prebuilt", pre.to_str().unwrap()];
    args.extend_from_slice(extra);
    xtask(ws, &args)
}

#[test]
fn bench_all_measures_both_variants_interleaved_and_reports() {
    let ws = fake_workspace("otel", true);
    let out = bench_all(ws.path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let run = xtask::run::RunFile::load(&ws.path().join("target/perf/runs/latest.json")).unwrap();
    assert_eq!(run.profile, "standard");
    for v in ["plain", "otel"] {
        assert_eq!(run.estimates("fake/op", v).len(), 2, "{v}");
    }
    let md = std::fs::read_to_string(ws.path().join("target/perf/report.md")).unwrap();
    assert!(
        md.contains("## OTEL overhead") && md.contains("+3.0 %"),
        "{md}"
    );
    assert!(md.contains("minutes (build excluded)"), "{md}");
    assert!(ws.path().join("target/perf/report.json").is_file());
    assert!(
        ws.path()
            .join("target/perf/criterion/head/otel/1/fake_bench/fake/op/new/sample.json")
            .is_file()
    );
    assert!(
        stderr(&out).contains("[4/4] fake_bench"),
        "progress on stderr: {}",
        stderr(&out)
    );

    // The run becomes a baseline once, and only with --force again.
    assert_eq!(code(&xtask(ws.path(), &["baseline", "save", "main"])), 0);
    let again = xtask(ws.path(), &["baseline", "save", "main"]);
    assert_eq!(code(&again), 2);
    assert!(
        stderr(&again).contains("baselines/main.json") && stderr(&again).contains("--force"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        code(&xtask(ws.path(), &["baseline", "save", "main", "--force"])),
        0
    );

    // A commit compared with itself does not fail.
    let same = xtask(ws.path(), &["compare", "main", "latest"]);
    assert_eq!(code(&same), 0, "{}", String::from_utf8_lossy(&same.stdout));
    assert_eq!(code(&xtask(ws.path(), &["report"])), 0);
}

#[test]
fn every_bench_process_gets_its_own_scratch_tmpdir_removed_when_it_ends_and_its_replicates_seed() {
    let ws = fake_workspace("otel", true);
    let scratch = ws.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let pre = ws.path().join("prebuilt");
    let out = xtask_with_env(
        ws.path(),
        &["bench-all", "--prebuilt", pre.to_str().unwrap()],
        &[("MARKET_BENCH_TMPDIR", &scratch)],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut seen = std::collections::BTreeSet::new();
    for v in ["plain", "otel"] {
        for r in ["0", "1"] {
            let dir = ws
                .path()
                .join(format!("target/perf/criterion/head/{v}/{r}/fake_bench"));
            let tmp = std::fs::read_to_string(dir.join("tmpdir.txt")).unwrap();
            let tmp = Path::new(tmp.trim());
            assert!(
                tmp.starts_with(&scratch),
                "{v}/{r}: TMPDIR {}",
                tmp.display()
            );
            seen.insert(tmp.to_owned());
            // Both variants of a replicate build networks from the same seed.
            let seed = std::fs::read_to_string(dir.join("seed.txt")).unwrap();
            assert_eq!(seed.trim(), r, "{v}/{r}: MARKET_BENCH_SEED");
        }
    }
    assert_eq!(seen.len(), 4, "one directory per process: {seen:?}");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "what the processes left behind is removed"
    );
    // The provenance gives the processes' environment on their command line, and lists only
    // commands as commands.
    let run = xtask::run::RunFile::load(&ws.path().join("target/perf/runs/latest.json")).unwrap();
    let exe = run
        .commands
        .iter()
        .find(|c| c.contains("EXE --bench"))
        .unwrap_or_else(|| panic!("{:?}", run.commands));
    assert!(
        exe.starts_with(
            "CRITERION_HOME=DIR MARKET_PERF_OUT=DIR MARKET_BENCH_SEED=REPLICATE TMPDIR="
        ) && exe.contains(&format!("{}/market-bench-", scratch.display())),
        "{exe}"
    );
    for c in &run.commands {
        assert!(
            !c.starts_with("TMPDIR") && !c.contains("CRITERION_HOME=MARKET_PERF_OUT="),
            "{c}"
        );
    }
}

#[test]
fn a_report_of_a_saved_run_keeps_the_rows_of_benches_its_profile_left_out() {
    let ws = fake_workspace("otel", true);
    let policy = format!(
        "{SMALL_POLICY}\n[profiles.op]\ndescription = \"the op alone\"\nreplicates = 2\nmax_replicates = 2\ncriterion_args = []\ninclude = [\"fake/op\"]\ngated = true\n"
    );
    std::fs::write(ws.path().join("baselines/policy.toml"), policy).unwrap();
    let out = bench_all(ws.path(), &["--profile", "op"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let row = "| `fake/other` | not in profile `op` |";
    let md = std::fs::read_to_string(ws.path().join("target/perf/report.md")).unwrap();
    assert!(md.contains(row), "{md}");
    let out = xtask(ws.path(), &["report", "--run", "latest"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let again = std::fs::read_to_string(ws.path().join("target/perf/report-latest.md")).unwrap();
    assert!(again.contains(row), "{again}");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("target/perf/report.md")).unwrap(),
        md,
        "the last run's report is left alone"
    );
}

#[test]
fn a_bench_built_as_the_wrong_variant_is_refused() {
    let ws = fake_workspace("plain", true);
    let out = bench_all(ws.path(), &[]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("otel/fake_bench") && err.contains("`plain` variant"),
        "{err}"
    );
}

#[test]
fn an_off_executable_that_carries_opentelemetry_is_refused_by_the_overhead_instrument() {
    let ws = fake_workspace("otel", true);
    let pre = ws.path().join("prebuilt");
    // The "off" side built with the otel feature (features unified into the wrong build).
    fake_bench(
        &pre.join("plain/fake_bench"),
        "otel",
        &["fake/op", "fake/other"],
        1000.0,
        true,
    );
    let out = otel_overhead(ws.path(), &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("plain/fake_bench") && err.contains("`otel` variant"),
        "{err}"
    );
}

#[test]
fn a_policy_id_no_bench_lists_is_refused() {
    let ws = fake_workspace("otel", true);
    let policy = SMALL_POLICY.replace(
        "critical_paths = [\"fake/op\"]",
        "critical_paths = [\"fake/op\", \"fake/typo\"]",
    );
    std::fs::write(ws.path().join("baselines/policy.toml"), policy).unwrap();
    let out = bench_all(ws.path(), &[]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("policy.toml")
            && err.contains("fake/typo")
            && err.contains("critical_paths[1]"),
        "{err}"
    );
}

#[test]
fn no_criterion_output_is_an_error_naming_the_directory() {
    let ws = fake_workspace("otel", false);
    let out = bench_all(ws.path(), &[]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("target/perf/criterion/head/plain/0/fake_bench")
            && err.contains("no benchmark.json"),
        "{err}"
    );
}

#[test]
fn a_filtered_out_policy_id_is_a_not_measured_row() {
    let ws = fake_workspace("otel", true);
    let out = bench_all(ws.path(), &["--filter", "other"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let md = std::fs::read_to_string(ws.path().join("target/perf/report.md")).unwrap();
    assert!(
        md.contains("## Not measured") && md.contains("| `fake/op` |"),
        "{md}"
    );
}

#[test]
fn a_missing_baseline_is_named() {
    let ws = fixtures::workspace();
    let out = xtask(ws.path(), &["compare", "nope", "latest"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("run `nope`") && stderr(&out).contains("baseline list"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_quick_run_cannot_become_a_baseline() {
    let ws = fixtures::workspace();
    let mut run = empty_run("q", "quick");
    add(&mut run, "g/x", "plain", &[1.0], None);
    run.save(&ws.path().join("target/perf/runs/q.json"))
        .unwrap();
    let out = xtask(ws.path(), &["baseline", "save", "b", "--from", "q"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("q.json") && stderr(&out).contains("quick"),
        "{}",
        stderr(&out)
    );
    assert!(!ws.path().join("baselines/b.json").exists());
}

#[test]
fn compare_exits_one_on_a_regression() {
    let ws = fixtures::workspace();
    let (mut b, mut h) = (empty_run("old", "standard"), empty_run("new", "standard"));
    add(&mut b, "search_basic", "plain", &[100.0, 101.0, 99.0], None);
    add(
        &mut h,
        "search_basic",
        "plain",
        &[130.0, 131.0, 129.5],
        None,
    );
    b.save(&ws.path().join("target/perf/runs/old.json"))
        .unwrap();
    h.save(&ws.path().join("target/perf/runs/new.json"))
        .unwrap();
    let out = xtask(ws.path(), &["compare", "old", "new"]);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("search_basic"));
    // Another machine: information only.
    h.environment = fixtures::environment("Elsewhere");
    h.save(&ws.path().join("target/perf/runs/new.json"))
        .unwrap();
    assert_eq!(code(&xtask(ws.path(), &["compare", "old", "new"])), 0);
    assert_eq!(
        code(&xtask(
            ws.path(),
            &["compare", "old", "new", "--strict-env"]
        )),
        2
    );
}

#[test]
fn a_malformed_policy_is_named() {
    let ws = fixtures::workspace();
    std::fs::write(
        ws.path().join("baselines/policy.toml"),
        "[thresholds]\nregression_warn = oops\n",
    )
    .unwrap();
    let run = empty_run("r", "standard");
    run.save(&ws.path().join("target/perf/runs/r.json"))
        .unwrap();
    let out = xtask(ws.path(), &["compare", "r", "r"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("baselines/policy.toml: key `line 2"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_corrupt_run_file_is_named() {
    let ws = fixtures::workspace();
    std::fs::create_dir_all(ws.path().join("target/perf/runs")).unwrap();
    std::fs::write(
        ws.path().join("target/perf/runs/bad.json"),
        "{\"schema_version\": 1",
    )
    .unwrap();
    let out = xtask(ws.path(), &["compare", "bad", "bad"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("bad.json"), "{}", stderr(&out));
}

#[test]
fn unknown_flags_and_verbs_exit_two() {
    let ws = fixtures::workspace();
    assert_eq!(
        code(&xtask(
            ws.path(),
            &["compare", "a", "b", "--frobnicate", "x"]
        )),
        2
    );
    assert_eq!(code(&xtask(ws.path(), &["bench-everything"])), 2);
}

#[test]
fn otel_overhead_runs_abba_blocks_until_the_ci_is_tight() {
    let ws = fake_workspace("otel", true);
    // A component bench: built only with OpenTelemetry, so it has no plain side.
    fake_bench(
        &ws.path().join("prebuilt/otel/fake_components"),
        "otel",
        &["fake_components/span_create"],
        905.0,
        true,
    );
    let out = otel_overhead(ws.path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("fake/op") && stdout.contains("+3.0 %"),
        "{stdout}"
    );
    // Identical processes: the CI is tight after the minimum of two blocks (8 processes).
    assert!(
        stderr(&out).contains("block 2 (") && !stderr(&out).contains("block 3 ("),
        "{}",
        stderr(&out)
    );
    let md = std::fs::read_to_string(ws.path().join("target/perf/otel-overhead.md")).unwrap();
    assert!(md.contains("| `fake/op` | +3.0 %"), "{md}");
    assert!(
        md.contains("Measured in "),
        "the report says how long: {md}"
    );
    // The components run before the blocks, the profile's two replicates, into a run of their own,
    // and the report has their table; they take no part in the blocks.
    assert!(
        md.contains(
            "| `fake_components/span_create` | 905.000 ns | [905.000 ns, 905.000 ns] | 2 |"
        ),
        "{md}"
    );
    let runs = ws.path().join("target/perf/runs");
    let err = stderr(&out);
    let (first_component, first_block) = (
        err.find("fake_components (otel) replicate 1").unwrap(),
        err.find("block 1 (").unwrap(),
    );
    assert!(first_component < first_block, "inside the cap: {err}");
    let components = xtask::run::RunFile::load(&run_file(&runs, "-components.json")).unwrap();
    assert_eq!(
        components
            .estimates("fake_components/span_create", "otel")
            .len(),
        2
    );
    assert_eq!(
        components.benches.keys().collect::<Vec<_>>(),
        ["fake_components/span_create"]
    );
    let overhead = xtask::run::RunFile::load(&run_file(&runs, "-overhead.json")).unwrap();
    assert!(!overhead.benches.contains_key("fake_components/span_create"));

    // The worst case (every span sampled) is measured after, and reported beside the budgets.
    let out = otel_overhead(ws.path(), &["--worst-case"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sampler ratio 1)"),
        "{}",
        stderr(&out)
    );
    let md = std::fs::read_to_string(ws.path().join("target/perf/otel-overhead.md")).unwrap();
    assert!(md.contains("## Worst case: sampler ratio 1.0"), "{md}");

    // The same +3 % against a tiny budget in the policy fails.
    let policy = ws.path().join("baselines/policy.toml");
    let tiny = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("critical_fail = 0.10", "critical_fail = 0.02")
        .replace("critical_warn = 0.08", "critical_warn = 0.01");
    std::fs::write(&policy, tiny).unwrap();
    let out = otel_overhead(ws.path(), &[]);
    assert_eq!(
        code(&out),
        1,
        "+3 % over a 2 % budget fails: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let ws = fake_workspace_with("otel", true, 1200.0);
    let out = otel_overhead(ws.path(), &[]);
    assert_eq!(
        code(&out),
        1,
        "+20 % on a critical path fails: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A prebuilt fake base (`prebuilt/base/plain/fake_bench`) whose benches take `base_ns`.
pub(crate) fn fake_base(ws: &Path, base_ns: f64) {
    let dir = ws.join("prebuilt/base/plain");
    std::fs::create_dir_all(&dir).unwrap();
    fake_bench(
        &dir.join("fake_bench"),
        "plain",
        &["fake/op", "fake/other"],
        base_ns,
        true,
    );
}

/// `ci --base-ref main` with a prebuilt fake base whose benches take `base_ns`.
fn ci_against_fake_base(ws: &Path, base_ns: f64) -> Output {
    let pre = ws.join("prebuilt");
    fake_base(ws, base_ns);
    xtask(
        ws,
        &[
            "ci",
            "--base-ref",
            "main",
            "--profile",
            "standard",
            "--prebuilt",
            pre.to_str().unwrap(),
        ],
    )
}

#[test]
fn ci_measures_the_base_ref_interleaved_and_gates_on_it() {
    for (base_ns, want) in [(1000.0, 0), (700.0, 1)] {
        let ws = fake_workspace("otel", true);
        // History: `main` one commit behind the checked-out branch.
        let git = |args: &[&str]| git(ws.path(), args);
        git(&["init", "-q", "-b", "main"]);
        git(&["commit", "-q", "--allow-empty", "-m", "base"]);
        let base_commit = git(&["rev-parse", "HEAD"]);
        git(&["checkout", "-q", "-b", "feature"]);
        git(&["commit", "-q", "--allow-empty", "-m", "head"]);
        let head_commit = git(&["rev-parse", "HEAD"]);
        let out = ci_against_fake_base(ws.path(), base_ns);
        assert_eq!(
            code(&out),
            want,
            "base at {base_ns} ns: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        // Base and head processes of the suite run in pairs, B H H B, the head's otel process
        // beside its plain one.
        let err = stderr(&out);
        let order: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with('['))
            .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
            .map(|rest| rest.split(':').next().unwrap())
            .collect();
        assert_eq!(
            &order[..6],
            [
                "fake_bench (base plain) replicate 1",
                "fake_bench (plain) replicate 1",
                "fake_bench (otel) replicate 1",
                "fake_bench (otel) replicate 2",
                "fake_bench (plain) replicate 2",
                "fake_bench (base plain) replicate 2",
            ],
            "{err}"
        );
        assert!(
            ws.path()
                .join("target/perf/criterion/base/plain/1/fake_bench/fake/op/new/sample.json")
                .is_file(),
            "{err}"
        );
        let run =
            xtask::run::RunFile::load(&ws.path().join("target/perf/runs/latest.json")).unwrap();
        let base_name = run.against.clone().unwrap();
        let base = xtask::run::RunFile::load(
            &ws.path().join(format!("target/perf/runs/{base_name}.json")),
        )
        .unwrap();
        assert_eq!(base.estimates("fake/op", "plain").len(), 2);
        assert_eq!(run.paired_with.as_deref(), Some(base.name.as_str()));
        assert_eq!(base.paired_with.as_deref(), Some(run.name.as_str()));
        let md = std::fs::read_to_string(ws.path().join("target/perf/report.md")).unwrap();
        assert!(
            md.contains(&format!(
                "commit `{head_commit}` against commit `{base_commit}`"
            )),
            "the report names both commits: {}",
            md.lines().take(4).collect::<Vec<_>>().join("\n")
        );
        assert!(
            ws.path().join("target/perf/otel-overhead.md").is_file(),
            "ci also runs the overhead instrument"
        );
    }
}

#[test]
fn otel_overhead_resumes_a_run_of_the_same_build_and_refuses_any_other() {
    let ws = fake_workspace("otel", true);
    let policy = SMALL_POLICY.replace(
        r#"critical_paths = ["fake/op"]"#,
        r#"critical_paths = ["fake/op", "fake/other"]"#,
    );
    std::fs::write(ws.path().join("baselines/policy.toml"), policy).unwrap();
    git(ws.path(), &["init", "-q", "-b", "main"]);
    git(ws.path(), &["commit", "-q", "--allow-empty", "-m", "one"]);
    let out = otel_overhead(ws.path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let runs = ws.path().join("target/perf/runs");
    let name = run_file(&runs, "-overhead.json")
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();

    // Identical processes: one more block is tight, and the blocks carry on the numbering.
    let out = otel_overhead(ws.path(), &["--resume", &name]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("resuming") && err.contains("2 blocks"),
        "{err}"
    );
    assert!(
        err.contains("block 3 (") && !err.contains("block 1 ("),
        "{err}"
    );
    let run = xtask::run::RunFile::load(&runs.join(format!("{name}.json"))).unwrap();
    assert_eq!(run.estimates("fake/op", "plain").len(), 6);
    assert_eq!(run.estimates("fake/op", "otel").len(), 6);
    assert_eq!(
        run.commands
            .iter()
            .filter(|c| c.starts_with("cargo xtask otel-overhead"))
            .count(),
        2,
        "both invocations are in the provenance: {:?}",
        run.commands
    );
    let seed = std::fs::read_to_string(
        ws.path()
            .join("target/perf/criterion/overhead/plain/5/fake_bench/seed.txt"),
    )
    .unwrap();
    assert_eq!(seed.trim(), "5", "a resumed block gets its own seeds");

    // Other settings, or another commit, are refused and the run is named.
    let out = otel_overhead(ws.path(), &["--resume", &name, "--sample-ratio", "0.5"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("sampler ratio") && err.contains(&name),
        "{err}"
    );
    let out = otel_overhead(ws.path(), &["--resume", &name, "--filter", "fake/op"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("set of benches"), "{}", stderr(&out));
    git(ws.path(), &["commit", "-q", "--allow-empty", "-m", "two"]);
    let out = otel_overhead(ws.path(), &["--resume", &name]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("its commit is"), "{}", stderr(&out));
    let out = otel_overhead(ws.path(), &["--resume", "no-such-run"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-run"), "{}", stderr(&out));
    let after = xtask::run::RunFile::load(&runs.join(format!("{name}.json"))).unwrap();
    assert_eq!(
        after.estimates("fake/op", "plain").len(),
        6,
        "a refused resume leaves the run as it was"
    );
}

#[test]
fn ci_gives_the_overhead_instrument_what_the_ab_run_left_of_its_budget() {
    let ws = fake_workspace("otel", true);
    let policy = SMALL_POLICY.replace(
        "time_cap_minutes = 1",
        "time_cap_minutes = 1\nci_budget_minutes = 0.0001",
    );
    std::fs::write(ws.path().join("baselines/policy.toml"), policy).unwrap();
    let out = ci_against_fake_base(ws.path(), 1000.0);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the overhead instrument gets its minimum of 2 minutes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_hung_bench_process_is_killed_after_the_profile_timeout() {
    let ws = fake_workspace("otel", true);
    let policy = SMALL_POLICY.replace(
        "gated = true",
        "gated = true\nprocess_timeout_minutes = 0.01",
    );
    std::fs::write(ws.path().join("baselines/policy.toml"), policy).unwrap();
    let hung = ws.path().join("prebuilt/plain/fake_bench");
    std::fs::write(
        &hung,
        "#!/bin/sh\nif [ -n \"$MARKET_BENCH_VARIANT_CHECK\" ]; then echo 'market-bench-variant: plain'; exit 0; fi\n\
         if [ \"$1\" = \"--list\" ]; then echo 'fake/op: benchmark'; echo 'fake/other: benchmark'; exit 0; fi\nexec sleep 60\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = bench_all(ws.path(), &[]);
    assert_eq!(code(&out), 2);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "killed at the deadline, not after the sleep"
    );
    let err = stderr(&out);
    assert!(
        err.contains("plain/fake_bench") && err.contains("killed"),
        "{err}"
    );
}

/// Lines cargo 1.95 printed for `cargo bench --no-run --message-format=json` of a crate with a
/// library and a `harness = false` bench (trimmed): the library's test harness is an executable
/// too, and must not be taken for a bench.
#[test]
fn bench_executables_are_read_from_cargo_messages() {
    let stdout = r#"{"reason":"compiler-artifact","package_id":"path+file:///tmp/critfix#0.1.0","manifest_path":"/tmp/critfix/Cargo.toml","target":{"kind":["bench"],"crate_types":["bin"],"name":"fix","src_path":"/tmp/critfix/benches/fix.rs","edition":"2024","doc":false,"doctest":false,"test":false},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":true},"features":[],"filenames":["/tmp/critfix/target/release/deps/fix-6e74c3f52980ecde"],"executable":"/tmp/critfix/target/release/deps/fix-6e74c3f52980ecde","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///tmp/critfix#0.1.0","manifest_path":"/tmp/critfix/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"critfix","src_path":"/tmp/critfix/src/lib.rs","edition":"2024","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":true},"features":[],"filenames":["/tmp/critfix/target/release/deps/critfix-b71335d5be5ab7ed"],"executable":"/tmp/critfix/target/release/deps/critfix-b71335d5be5ab7ed","fresh":true}
{"reason":"build-finished","success":true}"#;
    let exes = xtask::build::parse_artifacts(stdout, "bench");
    assert_eq!(
        exes,
        [(
            "fix".to_owned(),
            std::path::PathBuf::from("/tmp/critfix/target/release/deps/fix-6e74c3f52980ecde")
        )]
    );
    assert!(xtask::build::build_succeeded(stdout));
    assert!(!xtask::build::build_succeeded(
        &stdout.replace("\"success\":true", "\"success\":false")
    ));
}

#[test]
fn a_second_xtask_waits_for_the_machine_or_refuses_naming_the_holder() {
    use std::io::Write as _;
    let ws = fake_workspace("otel", true);
    let lock_path = ws.path().join("perf.lock");
    let mut held = std::fs::File::create(&lock_path).unwrap();
    held.lock().unwrap();
    write!(
        held,
        "pid 4242 (bench-all, cargo xtask bench-all), since 2026-12-07T06:00:00Z"
    )
    .unwrap();
    let pre = ws.path().join("prebuilt");
    let args = [
        "bench-all",
        "--profile",
        "quick",
        "--prebuilt",
        pre.to_str().unwrap(),
    ];

    let mut refused = args.to_vec();
    refused.push("--no-wait");
    let out = xtask(ws.path(), &refused);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another xtask is measuring on this machine: pid 4242 (bench-all"),
        "{}",
        stderr(&out)
    );
    assert!(
        !ws.path().join("target/perf/report.md").exists(),
        "nothing measured"
    );

    // Without --no-wait it queues, says for whom, and runs once the machine is free.
    let log = ws.path().join("waiter.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .arg("--workspace")
        .arg(ws.path())
        .env("MARKET_PERF_LOCK", &lock_path)
        .env_remove("MARKET_PERF_PROFILE")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let waiting = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("waiting for the machine"))
    });
    let early = child.try_wait().unwrap();
    drop(held);
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(waiting && early.is_none(), "it waited for pid 4242: {text}");
    assert!(text.contains("pid 4242"), "{text}");
    assert!(
        status.success() && text.contains("the machine is free"),
        "{text}"
    );
    assert!(ws.path().join("target/perf/report.md").is_file());
}

/// A fake calibration executable for the environment guard: probe n (its Criterion home is
/// `…/guard/<n>`) reports `base_ns × (1 + step × n)`, so `step` sets how far the machine drifts.
fn fake_calibration(path: &Path, base_ns: u64, step: f64) {
    let id = "calibration/spin/100us";
    let script = format!(
        r#"#!/bin/sh
if [ -n "$MARKET_BENCH_VARIANT_CHECK" ]; then echo "market-bench-variant: plain"; exit 0; fi
if [ "$1" = "--list" ]; then echo "{id}: benchmark"; exit 0; fi
n=$(basename "$CRITERION_HOME")
case "$n" in *[!0-9]*) n=0;; esac
ns=$(awk "BEGIN {{ printf \"%d\", {base_ns} * (1 + {step} * $n) }}")
d="$CRITERION_HOME/{id}/new"; mkdir -p "$d"
printf '{{"group_id":"calibration","function_id":"spin","value_str":"100us","throughput":null,"full_id":"{id}"}}' > "$d/benchmark.json"
e="{{\"confidence_interval\":{{\"confidence_level\":0.95,\"lower_bound\":$ns,\"upper_bound\":$ns}},\"point_estimate\":$ns,\"standard_error\":1.0}}"
printf '{{"mean":%s,"median":%s,"median_abs_dev":%s,"slope":null,"std_dev":%s}}' "$e" "$e" "$e" "$e" > "$d/estimates.json"
iters=""; times=""
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do iters="$iters${{iters:+,}}$i"; times="$times${{times:+,}}$(($i * $ns))"; done
printf '{{"sampling_mode":"Flat","iters":[%s],"times":[%s]}}' "$iters" "$times" > "$d/sample.json"
exit 0
"#
    );
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const GUARD_POLICY: &str = r#"
[guard]
bench = "calibration/spin/100us"
criterion_args = ["--sample-size", "10"]
max_spread = 0.05
max_drift = 0.05
"#;

/// `ci` against a fake base 30 % faster than the head, with a calibration drifting by `step` per
/// probe.
fn ci_with_guard(step: f64) -> (tempfile::TempDir, Output) {
    let ws = fake_workspace("otel", true);
    std::fs::write(
        ws.path().join("baselines/policy.toml"),
        format!("{SMALL_POLICY}{GUARD_POLICY}"),
    )
    .unwrap();
    let pre = ws.path().join("prebuilt");
    fake_calibration(&pre.join("plain/fake_calibration"), 100_000, step);
    let git = |args: &[&str]| git(ws.path(), args);
    git(&["init", "-q", "-b", "main"]);
    git(&["commit", "-q", "--allow-empty", "-m", "base"]);
    git(&["checkout", "-q", "-b", "feature"]);
    git(&["commit", "-q", "--allow-empty", "-m", "head"]);
    let out = ci_against_fake_base(ws.path(), 700.0);
    (ws, out)
}

#[test]
fn the_environment_guard_withdraws_wall_time_verdicts_on_an_unstable_machine() {
    // A steady machine: the regression fails, and the guard says the machine held still.
    let (ws, out) = ci_with_guard(0.0);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let md = std::fs::read_to_string(ws.path().join("target/perf/report.md")).unwrap();
    assert!(
        md.contains("| Environment guard | ✅ pass | `calibration/spin/100us` probed "),
        "{md}"
    );
    let run = xtask::run::RunFile::load(&ws.path().join("target/perf/runs/latest.json")).unwrap();
    // A probe after every pair of every suite: two suites, two replicates.
    assert_eq!(run.guard.len(), 4, "{:?}", run.guard);

    // The same code on a machine slowing down 10 % per probe: nothing may pass or fail on wall
    // time, and the exit code (3) cannot be read as a pass.
    let (ws, out) = ci_with_guard(0.10);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let md = std::fs::read_to_string(ws.path().join("target/perf/report.md")).unwrap();
    assert!(
        md.contains("**Gate: INCONCLUSIVE** (exit 3): the machine was too unstable"),
        "{md}"
    );
    assert!(
        md.contains("machine unstable, wall-time verdicts withdrawn"),
        "{md}"
    );
    assert!(
        md.contains("| Regression check | ❔ inconclusive |"),
        "{md}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ws.path().join("target/perf/report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["outcome"], "inconclusive");
    let rows = json["judgement"]["regression"]["rows"].as_array().unwrap();
    let op = rows
        .iter()
        .find(|r| r["id"] == "fake/op" && r["variant"] == "plain")
        .unwrap();
    assert_eq!(op["verdict"], "inconclusive");
    assert_eq!(op["guarded_from"], "fail");
}

#[test]
fn bench_all_compares_with_the_last_run_on_this_machine_else_the_committed_baseline() {
    let ws = fake_workspace("otel", true);
    let run_at = |ws: &Path| {
        let out = bench_all(ws, &[]);
        assert!(code(&out) <= 1, "{}", stderr(&out));
        let run = xtask::run::RunFile::load(&ws.join("target/perf/runs/latest.json")).unwrap();
        (out, run)
    };
    // Nothing to compare with: skipped, and said.
    let (out, first) = run_at(ws.path());
    assert!(first.against.is_none());
    // With no earlier run, no time left is guessed until every suite has run once; then this
    // run's own durations give it.
    let err = stderr(&out);
    let progress: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with('[') && !l.starts_with("[count]"))
        .collect();
    assert!(
        progress[0].contains("time left known once every suite has run"),
        "{progress:?}"
    );
    assert!(
        progress
            .last()
            .is_some_and(|l| l.contains("left (by this run's durations)")),
        "{progress:?}"
    );
    assert!(
        stderr(&out).contains("the regression check is skipped"),
        "{}",
        stderr(&out)
    );
    // A committed baseline recorded elsewhere: compared for information, naming the field.
    let mut elsewhere = first.clone();
    elsewhere.name = "ci-runner".to_owned();
    elsewhere.created = "2020-01-01T00:00:00Z".to_owned();
    elsewhere.environment.kernel = "4.0.0-other".to_owned();
    elsewhere
        .save(&ws.path().join("baselines/ci-runner.json"))
        .unwrap();
    std::fs::remove_dir_all(ws.path().join("target/perf/runs")).unwrap();
    let (out, second) = run_at(ws.path());
    assert_eq!(
        second.against.as_deref(),
        Some("ci-runner"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("for information only: recorded on another machine (kernel differ)"),
        "{}",
        stderr(&out)
    );
    // An earlier run on this machine wins over the baseline.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (out, third) = run_at(ws.path());
    assert_eq!(
        third.against.as_deref(),
        Some(second.name.as_str()),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("the latest earlier run on this machine"),
        "{}",
        stderr(&out)
    );
    let md = std::fs::read_to_string(ws.path().join("target/perf/report.md")).unwrap();
    assert!(md.contains(&format!("Against `{}`", second.name)), "{md}");
    // The time left starts from the previous run's per-suite durations, which each run keeps.
    assert!(
        second.process_seconds.contains_key("head plain/fake_bench")
            && second.process_seconds.contains_key("head otel/fake_bench"),
        "{:?}",
        second.process_seconds
    );
    let first_line = stderr(&out)
        .lines()
        .find(|l| l.starts_with("[1/"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        first_line.contains("(by the previous run's durations)"),
        "{first_line}"
    );
    assert!(md.contains("- built in "), "{md}");
}

/// Rewrites a fake bench so that, after writing its Criterion tree, it runs `damage` (a shell
/// line; `$CRITERION_HOME` is the process's home) and still exits 0.
fn damage_fake(ws: &Path, variant: &str, damage: &str) {
    let path = ws.join("prebuilt").join(variant).join("fake_bench");
    let script = std::fs::read_to_string(&path).unwrap();
    let body = script.strip_suffix("exit 0\n").unwrap();
    std::fs::write(&path, format!("{body}{damage}\nexit 0\n")).unwrap();
}

/// Issue 17: a process that exits 0 but wrote no results for one of the benches it was asked
/// for stops the run with exit 2 naming the bench and the process's directory. Before, the run
/// went on without it.
#[test]
fn a_bench_a_process_was_asked_for_and_did_not_write_is_named() {
    let ws = fake_workspace("otel", true);
    damage_fake(ws.path(), "plain", r#"rm -rf "$CRITERION_HOME/fake/other""#);
    let out = bench_all(ws.path(), &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("target/perf/criterion/head/plain/0/fake_bench")
            && err.contains("wrote no results for 1: `fake/other`"),
        "{err}"
    );
}

/// Issue 17: a damaged bench directory (here `new/benchmark.json` gone) is exit 2 naming the file.
#[test]
fn a_damaged_bench_directory_stops_the_run_naming_it() {
    let ws = fake_workspace("otel", true);
    damage_fake(
        ws.path(),
        "otel",
        r#"rm -f "$CRITERION_HOME/fake/other/new/benchmark.json""#,
    );
    let out = bench_all(ws.path(), &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("otel/0/fake_bench/fake/other/new/benchmark.json") && err.contains("missing"),
        "{err}"
    );
}

/// Issue 16: re-measuring keeps the profile's time budget. With time to spare, the noisy overhead
/// rows of jittery processes get rounds up to the cap; with a budget the next round would overrun,
/// none starts, and the run says how long it would have taken.
#[test]
fn re_measuring_runs_only_the_rounds_that_fit_the_budget() {
    for (until, rounds) in [("60", true), ("0.0001", false)] {
        let ws = fake_workspace("otel", true);
        let policy = SMALL_POLICY.replacen(
            "max_replicates = 2\n",
            &format!("max_replicates = 4\nremeasure_until_minutes = {until}\n"),
            1,
        );
        std::fs::write(ws.path().join("baselines/policy.toml"), policy).unwrap();
        let pre = ws.path().join("prebuilt");
        let out = xtask_with_env(
            ws.path(),
            &["bench-all", "--prebuilt", pre.to_str().unwrap()],
            &[("FAKE_BENCH_JITTER", Path::new("0.3"))],
        );
        assert!(code(&out) != 2, "{}", stderr(&out));
        let err = stderr(&out);
        let run =
            xtask::run::RunFile::load(&ws.path().join("target/perf/runs/latest.json")).unwrap();
        let replicates = run.estimates("fake/op", "plain").len();
        if rounds {
            assert!(err.contains("re-measuring"), "{err}");
            assert!(replicates > 2, "{replicates} replicates: {err}");
        } else {
            assert!(
                err.contains("a re-measuring round would take about")
                    && err.contains("and end after 0.0001 minutes of measuring"),
                "{err}"
            );
            assert_eq!(replicates, 2, "{err}");
        }
    }
}
