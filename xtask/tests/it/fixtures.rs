//! Programmatic fixtures: Criterion trees as Criterion 0.8.2 writes them, run files, a workspace
//! with the committed policy, and fake bench executables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use xtask::criterion::Measurement;
use xtask::run::{Environment, Git, RunFile};

pub fn committed_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../baselines/policy.toml")
}

/// A temporary workspace: baselines/policy.toml copied from the committed one.
pub fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("baselines")).unwrap();
    std::fs::copy(committed_policy(), dir.path().join("baselines/policy.toml")).unwrap();
    dir
}

fn estimate(v: f64) -> serde_json::Value {
    json!({"confidence_interval": {"confidence_level": 0.95, "lower_bound": v * 0.99, "upper_bound": v * 1.01}, "point_estimate": v, "standard_error": v * 0.005})
}

/// Writes one benchmark into a Criterion home the way Criterion 0.8.2 lays it out, with a stale
/// `base/` and `change/` beside `new/` that the reader must ignore. `per_iter` is ns per
/// iteration; `samples` linear samples are written.
pub fn write_bench(home: &Path, id: &str, per_iter: f64, samples: usize) {
    let parts: Vec<&str> = id.split('/').collect();
    let (group, function, value) = match parts.as_slice() {
        [g] => (*g, None, None),
        [g, f] => (*g, Some(*f), None),
        [g, f, v] => (*g, Some(*f), Some(*v)),
        _ => panic!("bad id {id}"),
    };
    let dir = home.join(id);
    let new = dir.join("new");
    std::fs::create_dir_all(&new).unwrap();
    let bid = json!({"group_id": group, "function_id": function, "value_str": value, "throughput": null,
        "full_id": id, "directory_name": id, "title": id});
    std::fs::write(new.join("benchmark.json"), bid.to_string()).unwrap();
    let est = json!({"mean": estimate(per_iter), "median": estimate(per_iter), "median_abs_dev": estimate(per_iter * 0.01),
        "slope": estimate(per_iter), "std_dev": estimate(per_iter * 0.02)});
    std::fs::write(new.join("estimates.json"), est.to_string()).unwrap();
    let iters: Vec<f64> = (1..=samples).map(|i| i as f64 * 10.0).collect();
    let times: Vec<f64> = iters.iter().map(|n| n * per_iter).collect();
    std::fs::write(
        new.join("sample.json"),
        json!({"sampling_mode": "Linear", "iters": iters, "times": times}).to_string(),
    )
    .unwrap();
    std::fs::write(
        new.join("tukey.json"),
        json!([1.0, 2.0, 3.0, 4.0]).to_string(),
    )
    .unwrap();
    // A previous run's files: a different id and time, so reading them would be visible.
    for stale in ["base", "change"] {
        let d = dir.join(stale);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("benchmark.json"), json!({"group_id": "stale", "function_id": null, "value_str": null, "throughput": null, "full_id": "stale"}).to_string()).unwrap();
        std::fs::write(d.join("estimates.json"), "{}").unwrap();
    }
    std::fs::create_dir_all(home.join("report")).unwrap();
}

pub fn write_side(home: &Path, id: &str, side: &serde_json::Value) {
    std::fs::write(home.join(xtask::run::side_data_file(id)), side.to_string()).unwrap();
}

pub fn environment(cpu: &str) -> Environment {
    Environment {
        cpu_model: cpu.to_owned(),
        cores: 2,
        os: "Test Linux".to_owned(),
        kernel: "6.0.0-test".to_owned(),
        rustc: "rustc 1.95.0 (test)".to_owned(),
        criterion: "0.8.2".to_owned(),
    }
}

pub fn empty_run(name: &str, profile: &str) -> RunFile {
    RunFile::new(
        name.to_owned(),
        "2026-11-20T12:00:00Z".to_owned(),
        Git {
            commit: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
            dirty: false,
        },
        environment("Test CPU @ 3.0GHz"),
        profile.to_owned(),
        BTreeMap::from([
            ("otel".to_owned(), vec!["otel".to_owned()]),
            ("plain".to_owned(), vec![]),
        ]),
        0.1,
        vec!["cargo xtask bench-all".to_owned()],
    )
}

/// Adds replicates of `id` in `variant` with the given per-iteration estimates: each replicate is
/// built from the same JSON a Criterion tree holds (see `write_bench`) and added through
/// `RunFile::add`, in memory, so that large families stay fast (the reader has its own tests).
pub fn add(
    run: &mut RunFile,
    id: &str,
    variant: &str,
    estimates: &[f64],
    side: Option<serde_json::Value>,
) {
    for e in estimates {
        let parts: Vec<&str> = id.split('/').collect();
        let bid = json!({"group_id": parts[0], "function_id": parts.get(1), "value_str": parts.get(2),
            "throughput": null, "full_id": id});
        let est = json!({"mean": estimate(*e), "median": estimate(*e), "median_abs_dev": estimate(e * 0.01),
            "slope": estimate(*e), "std_dev": estimate(e * 0.02)});
        let iters: Vec<f64> = (1..=20).map(|i| i as f64 * 10.0).collect();
        let times: Vec<f64> = iters.iter().map(|n| n * e).collect();
        let m = Measurement {
            id: serde_json::from_value(bid).unwrap(),
            estimates: serde_json::from_value(est).unwrap(),
            sample: serde_json::from_value(
                json!({"sampling_mode": "Linear", "iters": iters, "times": times}),
            )
            .unwrap(),
            dir: PathBuf::from(format!("{variant}/{id}/new")),
        };
        let replicate = run.replicates(id, variant).count() as u32;
        let side = side.clone().map(|s| serde_json::from_value(s).unwrap());
        run.add(
            variant,
            replicate,
            m,
            side,
            format!("target/perf/criterion/head/{variant}/{replicate}"),
        );
    }
}

pub fn side(p95: f64, p99: f64) -> serde_json::Value {
    json!({"p50": p95 / 2.0, "p95": p95, "p99": p99, "max": p99 * 1.5, "count": 1000})
}

pub fn side_with(p95: f64, p99: f64, extra: serde_json::Value) -> serde_json::Value {
    let mut s = side(p95, p99);
    if let (Some(obj), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        obj.extend(extra.clone());
    }
    s
}
