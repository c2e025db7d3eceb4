//! The run file: everything one `bench-all` measured, normalised, with keys sorted (BTreeMap) so
//! that two runs diff cleanly. Saved as `target/perf/runs/NAME.json`; a baseline is a run file
//! promoted to `baselines/NAME.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::criterion::{self, Estimates, Measurement, Throughput};
use crate::error::{self, Error, Result};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFile {
    pub schema_version: u32,
    pub name: String,
    /// UTC, RFC 3339.
    pub created: String,
    pub git: Git,
    pub environment: Environment,
    pub profile: String,
    /// Variant name → the cargo features it was built with.
    pub variants: BTreeMap<String, Vec<String>>,
    /// `MARKET_OTEL_SAMPLE_RATIO` given to the otel variant.
    pub sample_ratio: f64,
    /// The commands that produced the run, for provenance.
    pub commands: Vec<String>,
    /// Full id → bench.
    pub benches: BTreeMap<String, Bench>,
    /// The run this one was compared with when it was recorded, if any.
    #[serde(default)]
    pub against: Option<String>,
    /// Wall-clock time of the measurement processes, build excluded.
    #[serde(default)]
    pub measurement_seconds: Option<f64>,
    /// Wall-clock time of the builds this run waited for (both variants, the base, the receiver);
    /// near zero when cargo found everything fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_seconds: Option<f64>,
    /// Mean wall-clock seconds of one process of each suite (`<side> <variant>/<executable>`):
    /// the next run's time-left estimate starts from these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub process_seconds: BTreeMap<String, f64>,
    /// `<variant>/<executable>` → hex sha256 of the bench executable the processes ran: two runs
    /// whose hashes agree measured the same code, and two that differ did not.
    #[serde(default)]
    pub executables: BTreeMap<String, String>,
    /// The run measured in pairs with this one: replicate i of each ran side by side (same suite,
    /// variant and seed, one process right after the other), so comparisons between the two use
    /// per-pair ratios.
    #[serde(default)]
    pub paired_with: Option<String>,
    /// The environment guard's probes, in the order they ran.
    #[serde(default)]
    pub guard: Vec<Probe>,
    /// How instructions were counted (valgrind's version, processes per side), or why not.
    #[serde(default)]
    pub counting: Option<String>,
    /// Ids the bench executables listed that this run did not measure and the policy does not
    /// name, with the reason ("not in profile `pr`"): the report lists them, and a report
    /// re-rendered from the saved run must too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unmeasured: BTreeMap<String, String>,
    /// Set on a partial run measured as one shard of several (`--shard K/N`): it holds the
    /// replicates `K-1, K-1+N, K-1+2N, …`, so the shards' replicate numbers never collide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The host name of the machine that measured the run (a shard's runner), when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Set on a run merged from shards (`cargo xtask merge`): one record per shard, with its
    /// runner and its environment guard's probes (the guard judges each shard's machine apart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRecord>,
}

/// Shard `index` of `count` (1-based, as on the command line: `--shard 2/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `K/N` with 1 <= K <= N.
    pub fn parse(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("`{s}` is not a shard: K/N with 1 <= K <= N, like 2/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            k.trim().parse::<u32>().map_err(|_| bad())?,
            n.trim().parse::<u32>().map_err(|_| bad())?,
        );
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// How many of a measurement's `total` replicates (numbers `0..total`) are this shard's.
    pub fn share(self, total: u32) -> u32 {
        (total + self.count - self.index) / self.count
    }

    /// The run-wide replicate number of this shard's `local`-th process of a bench: shards
    /// interleave, so every shard measures every bench and their numbers never collide.
    pub fn replicate(self, local: u32) -> u32 {
        local * self.count + (self.index - 1)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One shard of a merged run: which runner measured it, how long, and what its guard saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub shard: Shard,
    /// The shard's own run file name.
    pub run: String,
    /// The runner's host name, when it could be read.
    pub host: Option<String>,
    pub environment: Environment,
    pub measurement_seconds: Option<f64>,
    pub guard: Vec<Probe>,
    /// The shard's executables' hashes, when they differ from the merged run's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub executables: BTreeMap<String, String>,
}

/// One run of the guard's calibration bench beside the measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// When it ran, seconds after the measurement began.
    pub seconds: f64,
    /// Its estimate, ns per iteration.
    pub estimate: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Git {
    pub commit: Option<String>,
    pub dirty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub cpu_model: String,
    pub cores: usize,
    pub os: String,
    pub kernel: String,
    pub rustc: String,
    pub criterion: String,
}

impl Environment {
    /// The machine fingerprint: absolute times travel only between runs on which these agree.
    /// rustc and Criterion are not part of it: a compiler upgrade on the same machine is a change
    /// the gate should see, not a reason to stop comparing.
    pub fn same_machine(&self, other: &Environment) -> bool {
        self.differences(other).is_empty()
    }

    /// The fingerprint's fields on which the two differ: (field, this value, the other's), so a
    /// message can say which, not only that they differ.
    pub fn differences(&self, other: &Environment) -> Vec<(&'static str, String, String)> {
        [
            ("cpu model", self.cpu_model.clone(), other.cpu_model.clone()),
            ("cores", self.cores.to_string(), other.cores.to_string()),
            ("os", self.os.clone(), other.os.clone()),
            ("kernel", self.kernel.clone(), other.kernel.clone()),
        ]
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bench {
    pub group_id: String,
    pub function_id: Option<String>,
    pub value_str: Option<String>,
    /// Unit of `estimate`: always "ns" (per iteration).
    pub unit: String,
    pub throughput: Option<Throughput>,
    /// Variant → replicates in the order they were measured.
    pub variants: BTreeMap<String, Vec<Replicate>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replicate {
    /// Index of the process among its variant's processes (0-based).
    pub replicate: u32,
    /// Σtimes / Σiters, ns per iteration.
    pub estimate: f64,
    /// False when the process had fewer than 10 samples (never a comparison input).
    pub comparable: bool,
    pub estimates: Estimates,
    pub samples: Samples,
    pub side: Option<SideData>,
    /// The process's Criterion home, relative to the workspace root (HTML reports live there).
    pub criterion_home: String,
    /// User + system CPU time per iteration around Criterion's calls of the routine, ns.
    #[serde(default)]
    pub cpu_ns: Option<f64>,
    /// Instructions per iteration, counted by callgrind in a process of the same replicate number.
    #[serde(default)]
    pub instructions: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    pub iters: Vec<f64>,
    pub times: Vec<f64>,
}

/// What a bench writes to `<MARKET_PERF_OUT>/<id with / as __>.json`: percentiles of single
/// operations timed in a separate fixed-count pass, in ns. A percentile the pass had too few
/// operations for is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideData {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    /// Mean of the single operations, ns.
    #[serde(default)]
    pub mean: Option<f64>,
    pub count: u64,
    #[serde(default)]
    pub memory: Option<Memory>,
    #[serde(default)]
    pub kademlia: Option<Kademlia>,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub bytes_per_peer: f64,
    pub peak_bytes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kademlia {
    pub requests_per_lookup: f64,
    pub dials_per_lookup: f64,
}

/// What a bench writes to `<MARKET_PERF_OUT>/<id with / as __>.cpu.json`.
#[derive(Debug, Clone, Deserialize)]
struct CpuData {
    cpu_ns_per_iter: f64,
}

/// `<id with / as __>.cpu.json`.
pub fn cpu_data_file(id: &str) -> String {
    format!("{}.cpu.json", id.replace('/', "__"))
}

/// `<id with / as __>.json`.
pub fn side_data_file(id: &str) -> String {
    format!("{}.json", id.replace('/', "__"))
}

impl RunFile {
    /// A run with nothing measured yet: what it is (name, time, commit, machine, profile, variants
    /// with their features, sampler ratio, commands); everything else empty.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        created: String,
        git: Git,
        environment: Environment,
        profile: String,
        variants: BTreeMap<String, Vec<String>>,
        sample_ratio: f64,
        commands: Vec<String>,
    ) -> RunFile {
        RunFile {
            schema_version: SCHEMA_VERSION,
            name,
            created,
            git,
            environment,
            profile,
            variants,
            sample_ratio,
            commands,
            benches: BTreeMap::new(),
            against: None,
            measurement_seconds: None,
            executables: BTreeMap::new(),
            paired_with: None,
            guard: Vec::new(),
            counting: None,
            unmeasured: Default::default(),
            shard: None,
            host: None,
            build_seconds: None,
            process_seconds: BTreeMap::new(),
            shards: Vec::new(),
        }
    }

    pub fn load(path: &Path) -> Result<RunFile> {
        let help = "a run file is written by `cargo xtask bench-all`; re-record it";
        let text = error::read_to_string(path, help)?;
        let run: RunFile = error::parse_json(path, &text, help)?;
        if run.schema_version != SCHEMA_VERSION {
            return Err(Error::parse(
                path,
                format!(
                    "schema_version {} (this xtask reads {SCHEMA_VERSION})",
                    run.schema_version
                ),
                "re-record the run with this version of the xtask",
            ));
        }
        Ok(run)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::parse(path, e.to_string(), "report this as a bug"))?;
        text.push('\n');
        error::write_atomic(path, text.as_bytes())
    }

    /// Folds one finished process into the run: its Criterion tree under `home` and the side data
    /// beside it. Returns the ids it measured.
    pub fn fold_process(
        &mut self,
        variant: &str,
        replicate: u32,
        home: &Path,
        root: &Path,
    ) -> Result<Vec<String>> {
        let measurements = criterion::read_home(home)?;
        let rel = home
            .strip_prefix(root)
            .unwrap_or(home)
            .display()
            .to_string();
        let mut ids = Vec::new();
        for m in measurements {
            let side_path = home.join(side_data_file(&m.id.full_id));
            let side: Option<SideData> = if side_path.is_file() {
                Some(criterion::read_json(&side_path)?)
            } else {
                None
            };
            if let Some(v) = side.as_ref().and_then(|s| s.variant.as_deref())
                && v != variant
            {
                return Err(Error::parse(
                    &side_path,
                    format!(
                        "written by the `{v}` variant, but this process was the `{variant}` variant"
                    ),
                    "cargo unified the features of the two builds; rebuild with separate target directories",
                ));
            }
            let cpu_path = home.join(cpu_data_file(&m.id.full_id));
            let cpu_ns = if cpu_path.is_file() {
                let c: CpuData = criterion::read_json(&cpu_path)?;
                Some(c.cpu_ns_per_iter).filter(|x| x.is_finite() && *x > 0.0)
            } else {
                None
            };
            ids.push(m.id.full_id.clone());
            let id = m.id.full_id.clone();
            self.add(variant, replicate, m, side, rel.clone());
            if let Some(r) = self.replicate_mut(&id, variant, replicate) {
                r.cpu_ns = cpu_ns;
            }
        }
        Ok(ids)
    }

    pub fn add(
        &mut self,
        variant: &str,
        replicate: u32,
        m: Measurement,
        side: Option<SideData>,
        criterion_home: String,
    ) {
        let comparable = m.comparable();
        let estimate = m.sample.per_iteration();
        let bench = self
            .benches
            .entry(m.id.full_id.clone())
            .or_insert_with(|| Bench {
                group_id: m.id.group_id.clone(),
                function_id: m.id.function_id.clone(),
                value_str: m.id.value_str.clone(),
                unit: "ns".to_owned(),
                throughput: m.id.throughput.clone(),
                variants: BTreeMap::new(),
            });
        bench
            .variants
            .entry(variant.to_owned())
            .or_default()
            .push(Replicate {
                replicate,
                estimate,
                comparable,
                estimates: m.estimates,
                samples: Samples {
                    iters: m.sample.iters,
                    times: m.sample.times,
                },
                side,
                criterion_home,
                cpu_ns: None,
                instructions: None,
            });
    }

    /// Replicate number `replicate` of `id` in `variant`.
    pub fn replicate_mut(
        &mut self,
        id: &str,
        variant: &str,
        replicate: u32,
    ) -> Option<&mut Replicate> {
        self.benches
            .get_mut(id)?
            .variants
            .get_mut(variant)?
            .iter_mut()
            .find(|r| r.replicate == replicate)
    }

    /// `id`'s per-iteration values of `metric` in `variant`, by replicate number (comparable
    /// processes only).
    pub fn metric_values(
        &self,
        id: &str,
        variant: &str,
        metric: crate::policy::Metric,
    ) -> Vec<(u32, f64)> {
        use crate::policy::Metric;
        self.replicates(id, variant)
            .filter(|r| r.comparable)
            .filter_map(|r| {
                let v = match metric {
                    Metric::WallTime => Some(r.estimate),
                    Metric::CpuTime => r.cpu_ns,
                    Metric::Instructions => r.instructions,
                };
                v.map(|v| (r.replicate, v))
            })
            .collect()
    }

    /// The comparable replicate estimates of `id` in `variant`.
    pub fn estimates(&self, id: &str, variant: &str) -> Vec<f64> {
        self.replicates(id, variant)
            .filter(|r| r.comparable)
            .map(|r| r.estimate)
            .collect()
    }

    pub fn replicates<'a>(
        &'a self,
        id: &str,
        variant: &str,
    ) -> impl Iterator<Item = &'a Replicate> + 'a {
        self.benches
            .get(id)
            .and_then(|b| b.variants.get(variant))
            .into_iter()
            .flatten()
    }

    /// `(base, head)` estimates of the replicates of `id` in `variant` that `base` and `head`
    /// measured side by side: only runs recorded as each other's pair, and only replicate numbers
    /// comparable on both sides.
    pub fn pairs(base: &RunFile, head: &RunFile, id: &str, variant: &str) -> Vec<(f64, f64)> {
        let paired = head.paired_with.as_deref() == Some(base.name.as_str())
            || base.paired_with.as_deref() == Some(head.name.as_str());
        if !paired {
            return Vec::new();
        }
        base.replicates(id, variant)
            .filter(|b| b.comparable)
            .filter_map(|b| {
                head.replicates(id, variant)
                    .find(|h| h.replicate == b.replicate && h.comparable)
                    .map(|h| (b.estimate, h.estimate))
            })
            .collect()
    }

    /// Replicates per variant (the most any bench has).
    pub fn replicate_count(&self, variant: &str) -> usize {
        self.benches
            .values()
            .filter_map(|b| b.variants.get(variant))
            .map(Vec::len)
            .max()
            .unwrap_or(0)
    }

    /// Whether some process of this run is not a valid comparison input.
    pub fn has_incomparable(&self) -> bool {
        self.benches
            .values()
            .flat_map(|b| b.variants.values().flatten())
            .any(|r| !r.comparable)
    }
}
