//! The reader of Criterion's files: serde mirrors of what Criterion 0.8.x writes, and a tree walk.
//!
//! On-disk layout (criterion-0.8.2 `src/analysis/mod.rs`, `src/fs.rs`, `src/report.rs`):
//!
//! ```text
//! <CRITERION_HOME>/<group>/<function>/<value>/new/benchmark.json  BenchmarkId: group_id, function_id,
//!                                                                  value_str, throughput, full_id, ...
//!                                             new/estimates.json   mean, median, median_abs_dev,
//!                                                                  slope (null in flat sampling), std_dev
//!                                             new/sample.json      sampling_mode, iters, times
//!                                             new/tukey.json       four fences
//!                                             base/...             the previous run, copied by Criterion
//!                                             change/...           relative to base; can be stale
//! <CRITERION_HOME>/report/...                                      HTML
//! ```
//!
//! Directory names are made filename-safe and truncated by Criterion, and `function`/`value` are
//! absent when the id has no such part, so ids are taken from `benchmark.json`, never from paths.
//! Only `new/` is read: `base/` and `change/` describe an earlier process, and the gate runs every
//! process in a fresh home. Every parse error carries the file's path; that happens in one place,
//! [`read_json`].
//!
//! A malformed bench directory is an error naming it, never skipped: a `new` that is a file, or a
//! `new/` holding some of Criterion's files but not `benchmark.json`, `estimates.json` and
//! `sample.json`. Skipping one once let a run go on with 5 of its 6 benches unnoticed; and
//! [`check_written`] compares what a process wrote with the ids it was asked for.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{self, Error, Result};

/// Below this many samples a process is never a comparison input (Criterion's `--quick` gives 2).
pub const MIN_SAMPLES: usize = 10;

/// `benchmark.json`: Criterion's `BenchmarkId` as serialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkId {
    pub group_id: String,
    pub function_id: Option<String>,
    pub value_str: Option<String>,
    pub throughput: Option<Throughput>,
    pub full_id: String,
}

/// Criterion's `Throughput`, externally tagged as serde does by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Throughput {
    Bits(u64),
    Bytes(u64),
    BytesDecimal(u64),
    Elements(u64),
    ElementsAndBytes { elements: u64, bytes: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    pub confidence_level: f64,
    pub lower_bound: f64,
    pub upper_bound: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub confidence_interval: ConfidenceInterval,
    pub point_estimate: f64,
    pub standard_error: f64,
}

/// `estimates.json`, in nanoseconds per iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimates {
    pub mean: Estimate,
    pub median: Estimate,
    pub median_abs_dev: Estimate,
    pub slope: Option<Estimate>,
    pub std_dev: Estimate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SamplingMode {
    Linear,
    Flat,
}

/// `sample.json`: `times[i]` is the total time in ns of `iters[i]` iterations (both floats).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub sampling_mode: SamplingMode,
    pub iters: Vec<f64>,
    pub times: Vec<f64>,
}

impl Sample {
    /// The process's estimate: Σtimes / Σiters, ns per iteration. Unlike a mean of per-sample
    /// means it weights every iteration equally, whatever the sampling mode.
    pub fn per_iteration(&self) -> f64 {
        let iters: f64 = self.iters.iter().sum();
        let times: f64 = self.times.iter().sum();
        times / iters
    }
}

/// One benchmark as measured by one process.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub id: BenchmarkId,
    pub estimates: Estimates,
    pub sample: Sample,
    /// The `new/` directory the files came from.
    pub dir: PathBuf,
}

impl Measurement {
    pub fn samples(&self) -> usize {
        self.sample.times.len()
    }
    /// Whether this measurement may be an input to a comparison (enough samples).
    pub fn comparable(&self) -> bool {
        self.samples() >= MIN_SAMPLES
    }
}

const CORRUPT_HELP: &str =
    "the file is not what Criterion 0.8 writes; delete the directory and re-run the bench";

/// Reads and parses one JSON file; the single place where a path is attached to parse errors.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = error::read_to_string(path, CORRUPT_HELP)?;
    error::parse_json(path, &text, CORRUPT_HELP)
}

/// Reads every benchmark under a Criterion home. An empty tree is an error: the caller ran a
/// process to measure something.
pub fn read_home(home: &Path) -> Result<Vec<Measurement>> {
    let mut found = Vec::new();
    walk(home, &mut found)?;
    found.sort();
    let mut out: Vec<Measurement> = Vec::with_capacity(found.len());
    for new_dir in found {
        let m = read_measurement(&new_dir)?;
        if let Some(prev) = out.iter().find(|p| p.id.full_id == m.id.full_id) {
            return Err(Error::parse(
                new_dir.join("benchmark.json"),
                format!(
                    "bench id `{}` also measured in {}",
                    m.id.full_id,
                    prev.dir.display()
                ),
                "two benches share an id; rename one (ids are an interface)",
            ));
        }
        out.push(m);
    }
    if out.is_empty() {
        return Err(Error::input(
            format!("Criterion output {}", home.display()),
            "no benchmark.json found",
            "the bench process wrote nothing: check that it ran with CRITERION_HOME set and did not filter every bench out",
        ));
    }
    Ok(out)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
        help: "the Criterion output directory is missing; did the bench process run?".to_owned(),
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
            help: "check the directory's permissions".to_owned(),
        })?;
        let path = entry.path();
        let is_dir = path.is_dir();
        let name = entry.file_name();
        match name.to_str() {
            // HTML, and comparisons against a possibly stale `base/`.
            Some("report" | "change" | "base") if is_dir => continue,
            Some("new") if !is_dir => {
                return Err(Error::parse(
                    &path,
                    "a file where Criterion writes a bench's results directory (`new/`)",
                    MALFORMED_HELP,
                ));
            }
            Some("new") if holds_results(&path)? => found.push(path),
            // A `new/` with directories only is a group or function named "new".
            _ if is_dir => walk(&path, found)?,
            // Side data, logs and anything else the process left beside Criterion's tree.
            _ => {}
        }
    }
    Ok(())
}

const MALFORMED_HELP: &str = "the bench directory is incomplete or damaged (an interrupted process, or another writer); delete it and re-run the bench";

/// Whether a `new/` directory is a bench's results: Criterion writes only files there
/// (`benchmark.json`, `estimates.json`, `sample.json`, `tukey.json`), while a group or function
/// named "new" holds only directories. One with results must have all three files the reader
/// needs; an empty one is a bench whose process stopped before writing anything. Either is an
/// error naming the path.
fn holds_results(new_dir: &Path) -> Result<bool> {
    let entries = std::fs::read_dir(new_dir).map_err(|source| Error::Read {
        path: new_dir.to_owned(),
        source,
        help: "check the directory's permissions".to_owned(),
    })?;
    let (mut files, mut dirs) = (0usize, 0usize);
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: new_dir.to_owned(),
            source,
            help: "check the directory's permissions".to_owned(),
        })?;
        if entry.path().is_dir() {
            dirs += 1;
        } else {
            files += 1;
        }
    }
    if files == 0 && dirs == 0 {
        return Err(Error::parse(
            new_dir,
            "an empty bench results directory: Criterion wrote nothing into it",
            MALFORMED_HELP,
        ));
    }
    if files == 0 {
        return Ok(false);
    }
    for name in ["benchmark.json", "estimates.json", "sample.json"] {
        let path = new_dir.join(name);
        if !path.is_file() {
            return Err(Error::parse(
                &path,
                format!(
                    "missing from a bench results directory that holds {files} other file(s); Criterion writes benchmark.json, estimates.json and sample.json together"
                ),
                MALFORMED_HELP,
            ));
        }
    }
    Ok(true)
}

/// Checks that a bench process wrote results for every id it was asked to measure (`asked`,
/// the ids its filter selected) among the ids read from its Criterion home (`written`). A bench
/// that ran and wrote nothing (it panicked inside Criterion's loop but the process exited 0,
/// or its directory was damaged) is named, rather than the run going on without it.
pub fn check_written(home: &Path, asked: &BTreeSet<String>, written: &[String]) -> Result<()> {
    let written: BTreeSet<&str> = written.iter().map(String::as_str).collect();
    let missing: Vec<&str> = asked
        .iter()
        .map(String::as_str)
        .filter(|id| !written.contains(id))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::input(
        format!("bench process output {}", home.display()),
        format!(
            "asked for {} bench(es), wrote no results for {}: {}",
            asked.len(),
            missing.len(),
            missing
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "the process's output (process.log in that directory) says why; run the bench executable with that id to reproduce",
    ))
}

fn read_measurement(new_dir: &Path) -> Result<Measurement> {
    let id: BenchmarkId = read_json(&new_dir.join("benchmark.json"))?;
    let estimates: Estimates = read_json(&new_dir.join("estimates.json"))?;
    let sample_path = new_dir.join("sample.json");
    let sample: Sample = read_json(&sample_path)?;
    if sample.iters.len() != sample.times.len() || sample.iters.is_empty() {
        return Err(Error::parse(
            &sample_path,
            format!(
                "{} iteration counts but {} times",
                sample.iters.len(),
                sample.times.len()
            ),
            CORRUPT_HELP,
        ));
    }
    let bad = |v: &f64| !v.is_finite() || *v <= 0.0;
    if sample.iters.iter().any(bad) || sample.times.iter().any(|t| !t.is_finite() || *t < 0.0) {
        return Err(Error::parse(
            &sample_path,
            "non-finite or non-positive values",
            CORRUPT_HELP,
        ));
    }
    // Finite values can still sum to infinity (or a total time of zero): the estimate must be
    // usable, since every statistic downstream takes its log.
    let estimate = sample.per_iteration();
    if !(estimate.is_finite() && estimate > 0.0) {
        return Err(Error::parse(
            &sample_path,
            format!("Σtimes / Σiters is {estimate}: the totals are zero or overflow"),
            CORRUPT_HELP,
        ));
    }
    Ok(Measurement {
        id,
        estimates,
        sample,
        dir: new_dir.to_owned(),
    })
}
