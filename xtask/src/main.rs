//! `cargo xtask`: parses flags and dispatches to a verb. Exit codes: 0 passed (warnings allowed),
//! 1 a gate failed, 2 the tool could not do its job (the message names the file or input).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use xtask::layout::Layout;
use xtask::verbs::{baseline, bench_all, ci, compare, otel_overhead, report, simulate};
use xtask::{Error, Outcome, Result};

const USAGE: &str = "\
usage: cargo xtask <verb> [flags]

verbs:
  bench-all [--profile P] [--filter REGEX] [--against NAME] [--replicates N]
            [--sample-ratio R] [--strict-env] [--base-ref REF] [--prebuilt DIR] [--no-wait]
                                 measure both variants (OTEL off and on), check, report
  ci [--base-ref REF] [--profile P] [--filter REGEX] [--sample-ratio R] [--prebuilt DIR] [--no-wait]
                                 the PR gate: bench-all --base-ref REF (profile pr), then otel-overhead
  otel-overhead [--profile P] [--filter REGEX] [--sample-ratio R] [--max-minutes M] [--max-blocks N] [--worst-case]
                [--prebuilt DIR] [--resume RUN] [--no-wait]
                                 critical paths, OTEL off vs on, ABBA blocks until the CI is tight;
                                 --resume adds blocks to an overhead run of the same build
                                 (--max-minutes and --max-blocks count this invocation)
  compare OLD NEW [--strict-env] judge two saved runs (names or paths)
  baseline save NAME [--from RUN] [--force] | baseline list | baseline show NAME
  report [--run NAME]            re-render the report from a saved run (default: the last)
  simulate [--families N] [--run NAME]
                                 detection and false-failure rates of the verdicts; with --run,
                                 per bench at +10/+15/+25 % from that run's measured spreads

global: --workspace DIR (default: the workspace this xtask was built in)
one xtask measures at a time on a machine: a second waits (--no-wait: refuses), naming the first
exit codes: 0 passed, 1 a gate failed, 2 the tool could not do its job,
            3 inconclusive (the machine was too unstable for wall-time verdicts)";

/// A tiny flag parser: `--name value`, `--name=value`, boolean switches, positionals.
struct Args {
    verb: String,
    positional: Vec<String>,
    flags: BTreeMap<String, String>,
}

const SWITCHES: &[&str] = &["force", "strict-env", "worst-case", "help", "no-wait"];

fn parse(raw: Vec<String>) -> Result<Args> {
    let mut it = raw.into_iter();
    let verb = it.next().unwrap_or_else(|| "help".to_owned());
    let mut positional = Vec::new();
    let mut flags = BTreeMap::new();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None if SWITCHES.contains(&name) => (name.to_owned(), "true".to_owned()),
                None => {
                    let v = it.next().ok_or_else(|| {
                        Error::input(format!("flag --{name}"), "needs a value", USAGE)
                    })?;
                    (name.to_owned(), v)
                }
            };
            flags.insert(name, value);
        } else {
            positional.push(a);
        }
    }
    Ok(Args {
        verb,
        positional,
        flags,
    })
}

impl Args {
    /// Refuses flags the verb does not know, so a typo is not silently ignored.
    fn allow(&self, known: &[&str]) -> Result<()> {
        for f in self.flags.keys() {
            if f != "workspace" && !known.contains(&f.as_str()) {
                return Err(Error::input(
                    format!("flag --{f}"),
                    format!("not a flag of `{}`", self.verb),
                    USAGE,
                ));
            }
        }
        Ok(())
    }
    fn get(&self, name: &str) -> Option<String> {
        self.flags.get(name).cloned()
    }
    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.flags
            .get(name)
            .map(|v| {
                v.parse::<T>().map_err(|_| {
                    Error::input(
                        format!("flag --{name}"),
                        format!("`{v}` is not a number"),
                        USAGE,
                    )
                })
            })
            .transpose()
    }
    fn positional(&self, i: usize, what: &str) -> Result<&str> {
        self.positional.get(i).map(String::as_str).ok_or_else(|| {
            Error::input(format!("`{}`", self.verb), format!("missing {what}"), USAGE)
        })
    }
}

/// `--sample-ratio`, checked to be a ratio.
fn ratio(args: &Args) -> Result<Option<f64>> {
    let r: Option<f64> = args.number("sample-ratio")?;
    match r {
        Some(r) if !(0.0..=1.0).contains(&r) => Err(Error::input(
            "flag --sample-ratio",
            format!("{r} is not in [0, 1]"),
            USAGE,
        )),
        _ => Ok(r),
    }
}

fn run(args: Args) -> Result<Outcome> {
    let root = args.get("workspace").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default()
    });
    let layout = Layout::new(root);
    match args.verb.as_str() {
        "bench-all" => {
            args.allow(&[
                "profile",
                "filter",
                "against",
                "replicates",
                "sample-ratio",
                "strict-env",
                "base-ref",
                "prebuilt",
                "no-wait",
            ])?;
            let sample_ratio = ratio(&args)?;
            let opts = bench_all::Options {
                profile: args.get("profile"),
                filter: args.get("filter"),
                against: args.get("against"),
                replicates: args.number("replicates")?,
                sample_ratio,
                strict_env: args.flags.contains_key("strict-env"),
                base_ref: args.get("base-ref"),
                prebuilt: args.get("prebuilt").map(PathBuf::from),
                no_wait: args.flags.contains_key("no-wait"),
            };
            bench_all::run(&layout, &opts)
        }
        "ci" => {
            args.allow(&[
                "base-ref",
                "profile",
                "filter",
                "sample-ratio",
                "worst-case",
                "prebuilt",
                "no-wait",
            ])?;
            ci::run(
                &layout,
                &ci::Options {
                    base_ref: args.get("base-ref"),
                    profile: args.get("profile"),
                    filter: args.get("filter"),
                    sample_ratio: ratio(&args)?,
                    worst_case: args.flags.contains_key("worst-case"),
                    prebuilt: args.get("prebuilt").map(PathBuf::from),
                    no_wait: args.flags.contains_key("no-wait"),
                },
            )
        }
        "otel-overhead" => {
            args.allow(&[
                "profile",
                "filter",
                "sample-ratio",
                "max-blocks",
                "max-minutes",
                "worst-case",
                "prebuilt",
                "resume",
                "no-wait",
            ])?;
            let opts = otel_overhead::Options {
                profile: args.get("profile"),
                filter: args.get("filter"),
                sample_ratio: ratio(&args)?,
                max_blocks: args.number("max-blocks")?,
                max_minutes: args.number("max-minutes")?,
                worst_case: args.flags.contains_key("worst-case"),
                prebuilt: args.get("prebuilt").map(PathBuf::from),
                resume: args.get("resume"),
                no_wait: args.flags.contains_key("no-wait"),
            };
            otel_overhead::run(&layout, &opts)
        }
        "compare" => {
            args.allow(&["strict-env"])?;
            compare::run(
                &layout,
                args.positional(0, "OLD")?,
                args.positional(1, "NEW")?,
                args.flags.contains_key("strict-env"),
            )
        }
        "baseline" => {
            match args.positional(0, "a subcommand (save, list, show)")? {
                "save" => {
                    args.allow(&["from", "force"])?;
                    baseline::save(
                        &layout,
                        args.positional(1, "NAME")?,
                        args.get("from").as_deref(),
                        args.flags.contains_key("force"),
                    )?
                }
                "list" => {
                    args.allow(&[])?;
                    baseline::list(&layout)?
                }
                "show" => {
                    args.allow(&[])?;
                    baseline::show(&layout, args.positional(1, "NAME")?)?
                }
                other => {
                    return Err(Error::input(
                        format!("`baseline {other}`"),
                        "unknown subcommand",
                        USAGE,
                    ));
                }
            }
            Ok(Outcome::Pass)
        }
        "report" => {
            args.allow(&["run"])?;
            report::run(&layout, args.get("run").as_deref())
        }
        "simulate" => {
            args.allow(&["families", "run"])?;
            match args.get("run") {
                Some(name) => simulate::run_from(&layout, &name, args.number("families")?)?,
                None => simulate::run(&layout, args.number("families")?)?,
            }
            Ok(Outcome::Pass)
        }
        "help" | "-h" => {
            println!("{USAGE}");
            Ok(Outcome::Pass)
        }
        other => Err(Error::input(format!("verb `{other}`"), "unknown", USAGE)),
    }
}

fn main() -> ExitCode {
    // Cargo runs this binary as the rustc wrapper of the bench builds (see xtask::build).
    if let Some(tree) = std::env::var_os(xtask::build::REMAP_ENV) {
        let code = xtask::build::rustc_wrapper(&tree, std::env::args_os());
        return ExitCode::from(u8::try_from(code).unwrap_or(101));
    }
    let result = parse(std::env::args().skip(1).collect()).and_then(run);
    match result {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("help: {}", e.help());
            ExitCode::from(2)
        }
    }
}
