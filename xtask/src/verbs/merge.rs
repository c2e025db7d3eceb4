//! `cargo xtask merge RUN…`: pools the shards of one measurement into one run and judges it once.
//! Each shard (`bench-all --shard K/N`, or `ci --shard K/N`) ran on its own runner and wrote a
//! partial head run and, with `--base-ref`, the base run measured in pairs with it; their replicate
//! numbers interleave (`K-1, K-1+N, …`), so pooling renumbers nothing and every pair stays a pair
//! (base with head, and plain with otel in the overhead check). A pair's ratio does not depend on
//! the speed of the runner that measured it, so shards from machines of different speed pool
//! soundly: the family is judged on all the pairs (Benjamini–Hochberg across it), SLAs on the
//! pooled processes, and the environment guard per shard. A missing shard costs power, not
//! coverage: every shard measured every bench.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::policy::Policy;
use crate::report::Provenance;
use crate::run::{RunFile, ShardRecord};
use crate::verdict::Outcome;

pub fn run(layout: &Layout, names: &[String]) -> Result<Outcome> {
    let policy = Policy::load(&layout.policy())?;
    let mut shards = Vec::new();
    for name in names {
        shards.push(load_shard(layout, name)?);
    }
    check_consistent(&shards)?;
    shards.sort_by_key(|s| s.head.shard.map(|s| s.index));
    let count = shards[0].head.shard.map_or(0, |s| s.count);
    let present: BTreeSet<u32> = shards
        .iter()
        .filter_map(|s| s.head.shard.map(|s| s.index))
        .collect();
    let missing: Vec<String> = (1..=count)
        .filter(|k| !present.contains(k))
        .map(|k| format!("{k}/{count}"))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "merging {} of {count} shards: shard {} missing, so the verdicts rest on fewer pairs \
             (every bench is still covered)",
            shards.len(),
            missing.join(", ")
        );
    }

    let heads: Vec<&RunFile> = shards.iter().map(|s| &s.head).collect();
    let bases: Vec<&RunFile> = shards
        .iter()
        .filter_map(|s| s.base.as_ref().map(|b| &b.0))
        .collect();
    let (_, stamp) = super::now_utc();
    let mut head = pool(&heads, &shards[0].head_path)?;
    let mut base = match bases.is_empty() {
        true => None,
        false => Some(pool(&bases, &shards[0].head_path)?),
    };
    let commit = head.git.commit.as_deref().unwrap_or("nogit");
    head.name = format!(
        "{}-{}-merged{}of{count}",
        stamp.replace([':', '-'], ""),
        &commit[..commit.len().min(10)],
        shards.len()
    );
    head.created = stamp;
    head.shards = heads
        .iter()
        .map(|r| record(r, &heads[0].executables))
        .collect();
    if let Some(base) = base.as_mut() {
        base.name = format!("{}-base", head.name);
        head.paired_with = Some(base.name.clone());
        head.against = Some(base.name.clone());
        base.paired_with = Some(head.name.clone());
        base.shards = bases
            .iter()
            .map(|r| record(r, &bases[0].executables))
            .collect();
    }
    // The shards ran side by side: the wait for a verdict is the slowest shard's.
    head.measurement_seconds = heads
        .iter()
        .filter_map(|r| r.measurement_seconds)
        .reduce(f64::max);
    head.commands = std::iter::once(format!("cargo xtask merge {}", names.join(" ")))
        .chain(heads[0].commands.iter().cloned())
        .collect();

    let head_path = layout.runs().join(format!("{}.json", head.name));
    let base = match base {
        Some(b) => {
            let path = layout.runs().join(format!("{}.json", b.name));
            b.save(&path)?;
            Some((b, path))
        }
        None => None,
    };
    head.save(&head_path)?;
    head.save(&layout.latest_run())?;
    eprintln!(
        "merged {} shards into {}",
        shards.len(),
        head_path.display()
    );
    let j = super::judge_saved(&policy, &head, base.as_ref().map(|b| &b.0))?;
    let p = Provenance::new(
        &head,
        head_path.display().to_string(),
        base.as_ref()
            .map(|(b, path)| (b, path.display().to_string())),
    );
    super::finish(layout, &j, &p)
}

/// A shard's head run and the base run measured in pairs with it, if any.
struct Loaded {
    head: RunFile,
    head_path: PathBuf,
    base: Option<(RunFile, PathBuf)>,
}

fn load_shard(layout: &Layout, name: &str) -> Result<Loaded> {
    let head_path = layout.resolve_run(name)?;
    let head = RunFile::load(&head_path)?;
    let what = || format!("run file {}", head_path.display());
    if head.shard.is_none() {
        return Err(Error::input(
            what(),
            "is not a shard (it was not measured with --shard K/N)",
            "merge the head run files that `bench-all --base-ref REF --shard K/N` or `ci --shard K/N` wrote",
        ));
    }
    let Some(base_name) = head.paired_with.clone() else {
        return Ok(Loaded {
            head,
            head_path,
            base: None,
        });
    };
    // The base run lies beside its head: that is where the shard wrote both, and where a CI job
    // downloads a shard's artifact.
    let base_path = head_path.with_file_name(format!("{base_name}.json"));
    if !base_path.is_file() {
        return Err(Error::input(
            what(),
            format!("its paired base run {} is missing", base_path.display()),
            "keep each shard's two run files together",
        ));
    }
    let base = RunFile::load(&base_path)?;
    if base.paired_with.as_deref() != Some(head.name.as_str()) {
        return Err(Error::input(
            format!("run file {}", base_path.display()),
            format!("is not paired with `{}`", head.name),
            "merge the head runs (not the `-base` ones); each names its base",
        ));
    }
    Ok(Loaded {
        head,
        head_path,
        base: Some((base, base_path)),
    })
}

/// The shards must be one measurement: the same commits, profile, sampler ratio and shard count,
/// each shard once.
fn check_consistent(shards: &[Loaded]) -> Result<()> {
    let Some(first) = shards.first() else {
        return Err(Error::input(
            "merge",
            "no run files given",
            "name the head run file of every shard",
        ));
    };
    let mut seen = BTreeMap::new();
    for s in shards {
        let what = || format!("run file {}", s.head_path.display());
        let differs = |field: &str, a: String, b: String| -> Result<()> {
            if a == b {
                return Ok(());
            }
            Err(Error::input(
                what(),
                format!(
                    "{field} `{b}` differs from `{a}` in {}: not shards of one measurement",
                    first.head_path.display()
                ),
                "merge only the shards of one `--shard K/N` measurement",
            ))
        };
        let shard = s.head.shard.expect("checked when loaded");
        let first_shard = first.head.shard.expect("checked when loaded");
        differs(
            "shard count",
            first_shard.count.to_string(),
            shard.count.to_string(),
        )?;
        differs(
            "head commit",
            format!("{:?}", first.head.git),
            format!("{:?}", s.head.git),
        )?;
        differs(
            "base commit",
            format!("{:?}", first.base.as_ref().map(|b| &b.0.git)),
            format!("{:?}", s.base.as_ref().map(|b| &b.0.git)),
        )?;
        differs(
            "profile",
            first.head.profile.clone(),
            s.head.profile.clone(),
        )?;
        differs(
            "sampler ratio",
            first.head.sample_ratio.to_string(),
            s.head.sample_ratio.to_string(),
        )?;
        if let Some(other) = seen.insert(shard.index, s.head_path.clone()) {
            return Err(Error::input(
                what(),
                format!("shard {shard} was given twice (also {})", other.display()),
                "give each shard's head run once",
            ));
        }
    }
    Ok(())
}

/// One run holding every shard's processes.
fn pool(runs: &[&RunFile], first_path: &Path) -> Result<RunFile> {
    let mut merged = runs[0].clone();
    merged.shard = None;
    merged.guard = Vec::new();
    for r in &runs[1..] {
        for (id, bench) in &r.benches {
            let into = merged.benches.entry(id.clone()).or_insert_with(|| {
                let mut b = bench.clone();
                b.variants.clear();
                b
            });
            for (variant, reps) in &bench.variants {
                let to = into.variants.entry(variant.clone()).or_default();
                for rep in reps {
                    if to.iter().any(|x| x.replicate == rep.replicate) {
                        return Err(Error::input(
                            format!("run file {}", first_path.display()),
                            format!(
                                "`{id}` ({variant}) replicate {} is in two shards",
                                rep.replicate
                            ),
                            "each shard must be measured with its own --shard K/N",
                        ));
                    }
                    to.push(rep.clone());
                }
                to.sort_by_key(|x| x.replicate);
            }
        }
        for (id, reason) in &r.unmeasured {
            merged
                .unmeasured
                .entry(id.clone())
                .or_insert_with(|| reason.clone());
        }
        if merged.counting.is_none() {
            merged.counting = r.counting.clone();
        }
    }
    Ok(merged)
}

fn record(run: &RunFile, first: &BTreeMap<String, String>) -> ShardRecord {
    ShardRecord {
        shard: run.shard.expect("checked when loaded"),
        run: run.name.clone(),
        host: run.host.clone(),
        environment: run.environment.clone(),
        measurement_seconds: run.measurement_seconds,
        guard: run.guard.clone(),
        executables: if &run.executables == first {
            BTreeMap::new()
        } else {
            run.executables.clone()
        },
    }
}
