//! Side data (DESIGN §7): per-operation percentiles and other figures Criterion does not record.
//!
//! Criterion reports means of batches; an SLA on a p99 needs the distribution of single operations.
//! So after Criterion has measured a bench, a separate pass times `n` single calls and writes
//! `<MARKET_PERF_OUT>/<id with / replaced by __>.json`:
//!
//! ```json
//! { "id": "search_basic", "variant": "plain", "unit": "ns", "count": 2000,
//!   "p50": 27000, "p95": 61000, "p99": 90000, "max": 250000, "mean": 31000.5,
//!   "memory": { "bytes_per_peer": 1048576, "peak_bytes": 104857600 },
//!   "kademlia": { "requests_per_lookup": 6.2, "dials_per_lookup": 1.4 } }
//! ```
//!
//! A percentile is only claimed when the pass is large enough to estimate it: `p95` needs at least
//! [`MIN_FOR_P95`] operations and `p99` at least [`MIN_FOR_P99`]; otherwise the field is absent.
//! `memory` and `kademlia` are present only for benches that measure them. Criterion's own samples
//! are never touched by this pass.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

/// Fewest operations for which a p95 is reported.
pub const MIN_FOR_P95: usize = 200;
/// Fewest operations for which a p99 is reported.
pub const MIN_FOR_P99: usize = 1000;

/// Memory figures of a bench that measures them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Memory {
    pub bytes_per_peer: u64,
    pub peak_bytes: u64,
}

/// Kademlia figures per lookup, from the query statistics and dial counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Kademlia {
    pub requests_per_lookup: f64,
    pub dials_per_lookup: f64,
}

/// One side-data file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub id: String,
    pub variant: &'static str,
    /// Always "ns": every time field is in nanoseconds.
    pub unit: &'static str,
    pub count: usize,
    pub p50: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<u64>,
    pub max: u64,
    pub mean: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kademlia: Option<Kademlia>,
}

impl Record {
    /// Summarises single-operation times in nanoseconds. `None` for an empty pass.
    pub fn from_samples(id: &str, samples: &mut [u64]) -> Option<Record> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let n = samples.len();
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Some(Record {
            id: id.to_owned(),
            variant: crate::variant(),
            unit: "ns",
            count: n,
            p50: nearest_rank(samples, 0.50),
            p95: (n >= MIN_FOR_P95).then(|| nearest_rank(samples, 0.95)),
            p99: (n >= MIN_FOR_P99).then(|| nearest_rank(samples, 0.99)),
            max: samples[n - 1],
            mean: sum as f64 / n as f64,
            memory: None,
            kademlia: None,
        })
    }
}

/// The nearest-rank percentile of sorted samples: the smallest value with at least `q` of the
/// samples at or below it.
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The side-data folder, when the xtask asked for side data.
pub fn out_dir() -> Option<PathBuf> {
    std::env::var_os("MARKET_PERF_OUT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The side-data folder, when the xtask asked for the side pass of `id`: `MARKET_PERF_OUT` is set
/// and `MARKET_SIDE_IDS` (comma-separated full ids) is unset or names `id`. The xtask narrows the
/// side passes to the benches whose percentiles a check reads when a profile's time budget cannot
/// afford one for every bench (a p95 of a 100 ms operation costs 20 s).
pub fn wanted(id: &str) -> Option<PathBuf> {
    let dir = out_dir()?;
    listed(std::env::var("MARKET_SIDE_IDS").ok().as_deref(), id).then_some(dir)
}

/// Whether `id` is in the comma-separated list `ids`; no list selects every id.
fn listed(ids: Option<&str>, id: &str) -> bool {
    ids.is_none_or(|ids| ids.split(',').any(|i| i == id))
}

/// The file a bench id's side data goes to.
pub fn path_for(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{}.json", id.replace('/', "__")))
}

/// Times `n` single calls of `op`, nanoseconds each.
pub fn time_ops<R>(n: usize, mut op: impl FnMut() -> R) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(op());
            u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
        })
        .collect()
}

/// The side pass: when the side data of `id` is [`wanted`], times `n` single calls of `op` and writes their
/// percentiles for `id`. Returns the record written, if any.
pub fn percentiles<R>(id: &str, n: usize, op: impl FnMut() -> R) -> Option<Record> {
    let dir = wanted(id)?;
    let mut samples = time_ops(n, op);
    let record = Record::from_samples(id, &mut samples)?;
    write_or_exit(&dir, &record);
    Some(record)
}

/// [`percentiles`] for operations that need fresh input: `input` runs untimed before each call and
/// `op`'s result is dropped untimed after it.
pub fn percentiles_batched<I, R>(
    id: &str,
    n: usize,
    mut input: impl FnMut() -> I,
    mut op: impl FnMut(I) -> R,
) -> Option<Record> {
    let dir = wanted(id)?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let i = input();
        let start = Instant::now();
        let out = std::hint::black_box(op(i));
        samples.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
        drop(out);
    }
    let record = Record::from_samples(id, &mut samples)?;
    write_or_exit(&dir, &record);
    Some(record)
}

/// Writes a record built by the caller (for example with memory or Kademlia figures), when
/// `MARKET_PERF_OUT` is set.
pub fn write_record(record: &Record) {
    if let Some(dir) = out_dir() {
        write_or_exit(&dir, record);
    }
}

/// Writes `record` into `dir` atomically.
pub fn write(dir: &Path, record: &Record) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = path_for(dir, &record.id);
    let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// A bench that cannot write the side data it was asked for must not pretend to have succeeded:
/// the xtask would read a run with figures missing. Exit code 2 means "could not do its job".
fn write_or_exit(dir: &Path, record: &Record) {
    if let Err(e) = write(dir, record) {
        eprintln!(
            "error: cannot write side data for {} into MARKET_PERF_OUT={}: {e}; point MARKET_PERF_OUT at a writable folder",
            record.id,
            dir.display()
        );
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_claimed_only_with_enough_samples() {
        let mut few: Vec<u64> = (1..=100).collect();
        let r = Record::from_samples("a/b", &mut few).unwrap();
        assert_eq!((r.count, r.p50, r.max), (100, 50, 100));
        assert_eq!((r.p95, r.p99), (None, None));

        let mut some: Vec<u64> = (1..=200).rev().collect();
        let r = Record::from_samples("a", &mut some).unwrap();
        assert_eq!((r.p95, r.p99), (Some(190), None));

        let mut many: Vec<u64> = (1..=1000).collect();
        let r = Record::from_samples("a", &mut many).unwrap();
        assert_eq!(
            (r.p50, r.p95, r.p99, r.max),
            (500, Some(950), Some(990), 1000)
        );
        assert!((r.mean - 500.5).abs() < 1e-9);
        assert!(Record::from_samples("a", &mut []).is_none());
    }

    #[test]
    fn the_side_id_list_selects_exact_ids() {
        assert!(listed(None, "a/b"));
        assert!(listed(Some("x,a/b"), "a/b"));
        assert!(!listed(Some("a/b/1"), "a/b/10"));
        assert!(!listed(Some(""), "a/b"));
    }

    #[test]
    fn records_are_written_under_the_flattened_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = vec![5, 1, 3];
        let r = Record::from_samples("search_performance/keyword_search/100", &mut s).unwrap();
        let path = write(dir.path(), &r).unwrap();
        assert_eq!(
            path.file_name().unwrap(),
            "search_performance__keyword_search__100.json"
        );
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["p50"], 3);
        assert_eq!(v["max"], 5);
        assert_eq!(v["count"], 3);
        assert_eq!(v["unit"], "ns");
        assert!(v.get("p99").is_none() && v.get("memory").is_none());
        assert_eq!(v["variant"], crate::variant());
    }
}
