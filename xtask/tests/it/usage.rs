//! The command line as a new user meets it: `--help` everywhere, every flag described, usage
//! errors (exit 2) caught before any build, and the files and words of the verbs that measure
//! nothing.

use std::path::Path;
use std::process::Output;

use crate::cli::{code, stderr, xtask};
use crate::fixtures::{self, add, empty_run};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The entries of the sections of a clap help text whose heading is in `sections` (for example
/// "Options:"), as (entry, description); the description is empty when clap printed none. Handles
/// both layouts: description beside the entry (`-h`) or on the lines under it (`--help`).
pub fn help_entries(help: &str, sections: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            inside = sections.contains(&line.trim());
            continue;
        }
        if !inside || line.trim().is_empty() {
            continue;
        }
        // Entries start at column 2, or 6 for a long flag without a short one (the short flag's
        // place is left blank); descriptions under an entry start further in.
        let indent = line.len() - line.trim_start().len();
        if indent <= 6 {
            let entry = line.trim();
            match entry.split_once("  ") {
                Some((name, description)) => {
                    out.push((name.trim().to_owned(), description.trim().to_owned()))
                }
                None => out.push((entry.to_owned(), String::new())),
            }
        } else if let Some(last) = out.last_mut() {
            // A continuation: the description under a long entry, or its wrapped lines.
            if !last.1.is_empty() {
                last.1.push(' ');
            }
            last.1.push_str(line.trim());
        }
    }
    out
}

/// The subcommands a help text lists under "Commands:" (without clap's own `help`).
pub fn commands(help: &str) -> Vec<String> {
    help_entries(help, &["Commands:"])
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| n != "help")
        .collect()
}

#[test]
fn help_works_on_the_tool_and_every_verb_and_every_flag_is_described() {
    let ws = fixtures::workspace();
    let ws = ws.path();
    for flag in ["--help", "-h"] {
        let out = xtask(ws, &[flag]);
        assert_eq!(code(&out), 0, "{flag}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("Usage: cargo xtask"),
            "{}",
            stdout(&out)
        );
    }
    let top = stdout(&xtask(ws, &["--help"]));
    let verbs = commands(&top);
    for verb in [
        "bench-all",
        "ci",
        "otel-overhead",
        "compare",
        "baseline",
        "report",
        "simulate",
    ] {
        assert!(verbs.iter().any(|v| v == verb), "{verb} missing: {top}");
    }
    for (verb, description) in help_entries(&top, &["Commands:"]) {
        assert!(!description.is_empty(), "`{verb}` has no description");
    }
    let mut walked = 0;
    let mut paths: Vec<Vec<String>> = verbs.iter().map(|v| vec![v.clone()]).collect();
    while let Some(path) = paths.pop() {
        for flag in ["--help", "-h"] {
            let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
            args.push(flag);
            let out = xtask(ws, &args);
            assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
            let help = stdout(&out);
            let entries = help_entries(&help, &["Options:", "Arguments:"]);
            assert!(
                entries.iter().any(|(e, _)| e.contains("--workspace")),
                "{args:?}: {help}"
            );
            for (entry, description) in entries {
                assert!(
                    !description.is_empty(),
                    "{args:?}: `{entry}` has no description:\n{help}"
                );
            }
            if flag == "--help" {
                for sub in commands(&help) {
                    let mut deeper = path.clone();
                    deeper.push(sub);
                    paths.push(deeper);
                }
            }
            walked += 1;
        }
    }
    // Seven verbs and baseline's three subcommands, each with -h and --help.
    assert_eq!(walked, 20);
}

#[test]
fn profiles_are_listed_from_the_policy_and_a_typo_gets_a_suggestion() {
    let ws = fixtures::workspace();
    let ws = ws.path();
    let policy = xtask::policy::Policy::load(&fixtures::committed_policy()).unwrap();
    let help = stdout(&xtask(ws, &["bench-all", "--help"]));
    for (name, profile) in &policy.profiles {
        let listed = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("- {name}:")))
            .unwrap_or_else(|| panic!("profile {name} missing from:\n{help}"));
        let first_words: String = profile.description.chars().take(20).collect();
        assert!(listed.contains(&first_words), "{listed}");
    }
    let out = xtask(ws, &["bench-all", "--profile", "standrad"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("'standrad'") && err.contains("'standard'") && err.contains("possible values"),
        "{err}"
    );
    assert!(!ws.join("target").exists(), "refused before anything ran");
}

#[test]
fn usage_errors_exit_two_with_clap_messages_before_any_build() {
    let ws = fixtures::workspace();
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &["bench-all", "--bogus-flag"],
            &["unexpected argument '--bogus-flag'"],
        ),
        (
            &["bench-all", "--replicate", "3"],
            &["unexpected argument '--replicate'", "'--replicates'"],
        ),
        (&["bench-al"], &["unrecognized subcommand", "'bench-all'"]),
        (
            &["bench-all", "--replicates", "0"],
            &["'0'", "--replicates"],
        ),
        (
            &["bench-all", "--filter", "("],
            &["--filter", "not a regular expression", "unclosed group"],
        ),
        (&["otel-overhead", "--sample-ratio", "2"], &["[0, 1]"]),
    ];
    for (args, want) in cases {
        let out = xtask(ws.path(), args);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{args:?}: {err}");
        for w in want {
            assert!(err.contains(w), "{args:?}: `{w}` missing from: {err}");
        }
        assert!(
            !ws.path().join("target").exists(),
            "{args:?}: nothing is built or measured"
        );
    }
    // No verb: the help, and the exit code of a usage error.
    let out = xtask(ws.path(), &[]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("Usage: cargo xtask"),
        "{}",
        stderr(&out)
    );
}

/// Two saved runs where `search_basic` is noisy (the CI spans 0 and the warn line) and, when
/// `kernel` is given, the new run comes from a machine with another kernel.
fn noisy_pair(ws: &Path, kernel: Option<&str>) {
    let (mut b, mut h) = (empty_run("old", "standard"), empty_run("new", "standard"));
    add(&mut b, "search_basic", "plain", &[100.0, 101.0, 99.0], None);
    add(&mut h, "search_basic", "plain", &[92.0, 118.0, 104.0], None);
    if let Some(k) = kernel {
        h.environment.kernel = k.to_owned();
    }
    b.save(&ws.join("target/perf/runs/old.json")).unwrap();
    h.save(&ws.join("target/perf/runs/new.json")).unwrap();
}

#[test]
fn compare_writes_its_own_report_and_says_only_what_it_did() {
    let ws = fixtures::workspace();
    noisy_pair(ws.path(), None);
    let last = ws.path().join("target/perf/report.md");
    std::fs::write(&last, "the last run's report\n").unwrap();
    let out = xtask(ws.path(), &["compare", "old", "new"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("1 noisy"), "{text}");
    assert!(
        !text.contains("re-measur"),
        "compare measures nothing: {text}"
    );
    assert!(
        text.contains("target/perf/compare-old-new.md"),
        "it names its report: {text}"
    );
    let md = std::fs::read_to_string(ws.path().join("target/perf/compare-old-new.md")).unwrap();
    assert!(!md.contains("re-measur"), "{md}");
    assert!(ws.path().join("target/perf/compare-old-new.json").is_file());
    assert_eq!(
        std::fs::read_to_string(&last).unwrap(),
        "the last run's report\n",
        "the last run's report is left alone"
    );
    assert!(!ws.path().join("target/perf/pr-comment.md").exists());
}

#[test]
fn information_only_names_the_fingerprint_fields_that_differ() {
    let ws = fixtures::workspace();
    noisy_pair(ws.path(), Some("6.9.9-other"));
    let out = xtask(ws.path(), &["compare", "old", "new"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("another machine (kernel differs): information only"),
        "{}",
        stdout(&out)
    );
    let md = std::fs::read_to_string(ws.path().join("target/perf/compare-old-new.md")).unwrap();
    assert!(
        md.contains("kernel: `6.9.9-other` in this run, `6.0.0-test` in the baseline"),
        "{md}"
    );
    assert!(!md.contains("cpu model:"), "only what differs: {md}");
    let strict = xtask(ws.path(), &["compare", "old", "new", "--strict-env"]);
    assert_eq!(code(&strict), 2);
    assert!(
        stderr(&strict).contains("kernel `6.0.0-test` in the baseline, `6.9.9-other` in this run"),
        "{}",
        stderr(&strict)
    );
}

#[test]
fn report_of_a_saved_run_writes_its_own_file() {
    let ws = fixtures::workspace();
    noisy_pair(ws.path(), None);
    let out = xtask(ws.path(), &["report", "--run", "new"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("target/perf/report-new.md"),
        "{}",
        stdout(&out)
    );
    assert!(ws.path().join("target/perf/report-new.md").is_file());
    assert!(!ws.path().join("target/perf/report.md").exists());
}

#[test]
fn baseline_list_is_a_table() {
    let ws = fixtures::workspace();
    let mut run = empty_run("main", "standard");
    run.git.commit = Some("0123456789abcdef0123".to_owned());
    add(
        &mut run,
        "search_basic",
        "plain",
        &[100.0, 101.0, 99.0],
        None,
    );
    run.save(&ws.path().join("baselines/main.json")).unwrap();
    let out = xtask(ws.path(), &["baseline", "list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row: {text}");
    for (line, words) in lines.iter().zip([
        &["baseline", "created", "profile", "commit", "machine"][..],
        &[
            "main",
            "standard",
            "0123456789ab",
            "Test CPU @ 3.0GHz (2 cores)",
        ][..],
    ]) {
        for w in words {
            assert!(line.contains(w), "`{w}` missing from `{line}`");
        }
    }
    // Not a terminal: plain, without box drawing.
    assert!(!text.contains('│') && !text.contains('─'), "{text}");
}
