//! The reader against generated trees and the committed tree recorded by real Criterion 0.8.2.

use std::path::Path;

use xtask::criterion::{self, SamplingMode, Throughput};

use crate::fixtures;

#[test]
fn reads_ids_from_benchmark_json_and_ignores_base_change_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_bench(tmp.path(), "g/f/10", 50.0, 20);
    fixtures::write_bench(tmp.path(), "g/f/100", 500.0, 20);
    fixtures::write_bench(tmp.path(), "alone", 7.0, 12);
    let ms = criterion::read_home(tmp.path()).unwrap();
    let ids: Vec<&str> = ms.iter().map(|m| m.id.full_id.as_str()).collect();
    assert_eq!(ids, ["alone", "g/f/10", "g/f/100"]);
    let m = &ms[1];
    assert_eq!(m.id.group_id, "g");
    assert_eq!(m.id.function_id.as_deref(), Some("f"));
    assert_eq!(m.id.value_str.as_deref(), Some("10"));
    assert!((m.sample.per_iteration() - 50.0).abs() < 1e-9);
    assert!(m.comparable());
    assert_eq!(ms[0].samples(), 12);
}

#[test]
fn ids_come_from_the_file_not_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_bench(tmp.path(), "a/b", 1.0, 10);
    // Criterion truncates and sanitises directory names; move the directory to prove it.
    std::fs::rename(tmp.path().join("a/b"), tmp.path().join("a/sanitised_name")).unwrap();
    let ms = criterion::read_home(tmp.path()).unwrap();
    assert_eq!(ms[0].id.full_id, "a/b");
}

#[test]
fn a_process_with_few_samples_is_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_bench(tmp.path(), "quick/one", 1.0, 2);
    let ms = criterion::read_home(tmp.path()).unwrap();
    assert!(!ms[0].comparable());
}

#[test]
fn an_empty_tree_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("report")).unwrap();
    let err = criterion::read_home(tmp.path()).unwrap_err().to_string();
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
    assert!(err.contains("no benchmark.json"), "{err}");
}

#[test]
fn a_corrupt_estimates_json_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_bench(tmp.path(), "g/f", 1.0, 10);
    let path = tmp.path().join("g/f/new/estimates.json");
    std::fs::write(&path, "{\"mean\": {\"point_estimate\": ").unwrap();
    let err = criterion::read_home(tmp.path()).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn mismatched_sample_lengths_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_bench(tmp.path(), "g/f", 1.0, 10);
    let path = tmp.path().join("g/f/new/sample.json");
    std::fs::write(
        &path,
        r#"{"sampling_mode":"Flat","iters":[1.0,2.0],"times":[1.0]}"#,
    )
    .unwrap();
    let err = criterion::read_home(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains("sample.json") && err.contains("2 iteration counts but 1 times"),
        "{err}"
    );
}

/// `tests/fixtures/criterion-0.8.2` was written by Criterion 0.8.2 itself (a throwaway crate:
/// group `fixture_group` with `sum/{10,100}` and `Throughput::Elements`, and `fixture_plain`,
/// run twice so that `base/` and `change/` exist), then trimmed of its HTML.
#[test]
fn reads_the_tree_real_criterion_wrote() {
    let home = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/criterion-0.8.2");
    let ms = criterion::read_home(&home).unwrap();
    let ids: Vec<&str> = ms.iter().map(|m| m.id.full_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "fixture_group/sum/10",
            "fixture_group/sum/100",
            "fixture_plain"
        ]
    );
    assert_eq!(ms[0].id.throughput, Some(Throughput::Elements(10)));
    assert_eq!(
        ms[2].id.function_id, None,
        "a bench_function id has only a group"
    );
    for m in &ms {
        assert_eq!(m.sample.sampling_mode, SamplingMode::Linear);
        assert!(m.comparable(), "{}: {} samples", m.id.full_id, m.samples());
        let per_iter = m.sample.per_iteration();
        // Σtimes/Σiters agrees with Criterion's own mean within its spread.
        let mean = m.estimates.mean.point_estimate;
        assert!((per_iter / mean - 1.0).abs() < 0.5, "{per_iter} vs {mean}");
    }
}

#[test]
fn folding_a_process_reads_side_data_and_refuses_the_wrong_variant() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("otel/0/exe");
    fixtures::write_bench(&home, "g/f", 100.0, 20);
    fixtures::write_side(
        &home,
        "g/f",
        &serde_json::json!({"p50": 90.0, "p95": 120.0, "p99": 150.0, "max": 400.0, "count": 1000, "variant": "otel"}),
    );
    let mut run = fixtures::empty_run("r", "standard");
    let ids = run.fold_process("otel", 0, &home, tmp.path()).unwrap();
    assert_eq!(ids, ["g/f"]);
    let rep = run.replicates("g/f", "otel").next().unwrap();
    assert_eq!(rep.side.as_ref().unwrap().p95, Some(120.0));
    assert_eq!(rep.criterion_home, "otel/0/exe");
    assert!((rep.estimate - 100.0).abs() < 1e-9);

    fixtures::write_side(
        &home,
        "g/f",
        &serde_json::json!({"p50": 90.0, "p95": null, "p99": null, "max": 400.0, "count": 100, "variant": "plain"}),
    );
    let err = run
        .fold_process("otel", 1, &home, tmp.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("g__f.json") && err.contains("`plain` variant"),
        "{err}"
    );
}

/// The side-data format market-benches documents (benches/src/side.rs), verbatim.
#[test]
fn reads_the_side_data_the_benches_write() {
    let text = r#"{ "id": "search_basic", "variant": "plain", "unit": "ns", "count": 2000,
      "p50": 27000, "p95": 61000, "p99": 90000, "max": 250000, "mean": 31000.5,
      "memory": { "bytes_per_peer": 1048576, "peak_bytes": 104857600 },
      "kademlia": { "requests_per_lookup": 6.2, "dials_per_lookup": 1.4 } }"#;
    let side: xtask::run::SideData = serde_json::from_str(text).unwrap();
    assert_eq!(side.p99, Some(90000.0));
    assert_eq!(side.mean, Some(31000.5));
    assert_eq!(side.memory.unwrap().bytes_per_peer, 1048576.0);
    assert_eq!(side.variant.as_deref(), Some("plain"));
    // Too few operations for percentiles: the fields are absent.
    let small: xtask::run::SideData =
        serde_json::from_str(r#"{"id": "x", "variant": "otel", "unit": "ns", "count": 50, "p50": 10, "max": 20, "mean": 11.0}"#).unwrap();
    assert_eq!((small.p95, small.p99), (None, None));
}

#[test]
fn callgrind_dumps_are_read_in_order_and_bad_files_are_named() {
    use xtask::callgrind::{read_counts, totals};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("counted.tsv"), "a/x\t2\nb/y\t1\n").unwrap();
    for (k, ir) in [(1, 100), (2, 300), (3, 1000)] {
        std::fs::write(
            d.join(format!("callgrind.out.{k}")),
            format!(
                "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: {ir}\n\ntotals: {ir}\n"
            ),
        )
        .unwrap();
    }
    let counts = read_counts(d).unwrap();
    assert_eq!(counts["a/x"], 200.0, "the mean of its two calls");
    assert_eq!(counts["b/y"], 1000.0);
    assert_eq!(totals("summary: 42\n"), Some(42.0));
    assert_eq!(totals("events: Ir\n"), None);

    std::fs::remove_file(d.join("callgrind.out.3")).unwrap();
    let err = read_counts(d).unwrap_err().to_string();
    assert!(err.contains("callgrind.out.3"), "{err}");
    std::fs::write(d.join("counted.tsv"), "a/x two\n").unwrap();
    let err = read_counts(d).unwrap_err().to_string();
    assert!(
        err.contains("counted.tsv") && err.contains("line 1"),
        "{err}"
    );
}

#[test]
fn cpu_lists_are_read_as_linux_writes_them() {
    use xtask::callgrind::{cpu_list, lanes};
    let cases: &[(&str, Option<&[usize]>)] = &[
        ("0", Some(&[0])),
        ("0-1", Some(&[0, 1])),
        ("0-3,8,10-11", Some(&[0, 1, 2, 3, 8, 10, 11])),
        ("2-3", Some(&[2, 3])),
        ("", None),
        ("3-1", None),
        ("0-x", None),
    ];
    for (text, want) in cases {
        assert_eq!(cpu_list(text).as_deref(), *want, "{text:?}");
    }
    // Counting lanes: at least one, never more than the CPUs this process may use.
    let lanes = lanes();
    let n = std::thread::available_parallelism().unwrap().get();
    assert!(!lanes.is_empty() && lanes.len() <= n, "{lanes:?}");
}

/// Issue 17: a bench directory whose `new/` lacks one of the files the reader needs was skipped,
/// and the run went on without that bench. Now each is an error naming the missing file.
#[test]
fn a_bench_directory_missing_a_file_is_an_error_naming_it() {
    for missing in ["benchmark.json", "estimates.json", "sample.json"] {
        let tmp = tempfile::tempdir().unwrap();
        fixtures::write_bench(tmp.path(), "g/a", 1.0, 10);
        fixtures::write_bench(tmp.path(), "g/b", 1.0, 10);
        let path = tmp.path().join("g/b/new").join(missing);
        std::fs::remove_file(&path).unwrap();
        let err = criterion::read_home(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("missing"),
            "{missing}: {err}"
        );
    }
}

#[test]
fn a_new_that_is_a_file_or_empty_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_bench(tmp.path(), "g/a", 1.0, 10);
    fixtures::write_bench(tmp.path(), "g/b", 1.0, 10);
    let new = tmp.path().join("g/b/new");
    std::fs::remove_dir_all(&new).unwrap();
    std::fs::write(&new, "not a directory").unwrap();
    let err = criterion::read_home(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains(&new.display().to_string()) && err.contains("a file where"),
        "{err}"
    );

    std::fs::remove_file(&new).unwrap();
    std::fs::create_dir(&new).unwrap();
    let err = criterion::read_home(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains(&new.display().to_string()) && err.contains("empty bench results directory"),
        "{err}"
    );
}

/// A group named "new" is a directory of directories, not a malformed results directory.
#[test]
fn a_group_named_new_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_bench(tmp.path(), "new/f", 3.0, 10);
    fixtures::write_bench(tmp.path(), "new", 5.0, 10);
    let ms = criterion::read_home(tmp.path()).unwrap();
    let ids: Vec<&str> = ms.iter().map(|m| m.id.full_id.as_str()).collect();
    assert_eq!(
        ids,
        ["new/f", "new"],
        "sorted by directory: new/f/new before new/new"
    );
}

#[test]
fn ids_asked_for_but_not_written_are_named() {
    let home = std::path::Path::new("/perf/criterion/head/plain/0/suite");
    let asked: std::collections::BTreeSet<String> = ["g/a", "g/b", "g/c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let written = vec!["g/b".to_owned()];
    let err = criterion::check_written(home, &asked, &written)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&home.display().to_string())
            && err.contains("asked for 3 bench(es), wrote no results for 2: `g/a`, `g/c`"),
        "{err}"
    );
    let all: Vec<String> = asked.iter().cloned().collect();
    criterion::check_written(home, &asked, &all).unwrap();
}

/// Finite samples whose totals overflow gave an infinite estimate, which every statistic
/// downstream takes the log of (the property test in `criterion_props` generates such values).
#[test]
fn totals_that_overflow_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_bench(tmp.path(), "g/f", 1.0, 10);
    let path = tmp.path().join("g/f/new/sample.json");
    std::fs::write(
        &path,
        r#"{"sampling_mode":"Flat","iters":[1.0,1.0],"times":[1.7e308,1.7e308]}"#,
    )
    .unwrap();
    let err = criterion::read_home(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("Σtimes / Σiters is inf"),
        "{err}"
    );
}
