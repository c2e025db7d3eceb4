//! What a run records of where it ran: the machine's fingerprint, the commit, the sampler ratio.

use std::path::Path;
use std::process::Command;

use xshell::cmd;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::policy::Policy;
use crate::run::{Environment, Git};

use crate::build::{git_answer, shell};

/// This machine's fingerprint.
pub fn environment(layout: &Layout) -> Environment {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    Environment {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os,
        kernel,
        rustc,
        criterion: criterion_version(&layout.root.join("Cargo.lock"))
            .unwrap_or_else(|| "unknown".to_owned()),
    }
}

/// Criterion's version from the workspace lock file.
pub fn criterion_version(lock: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"criterion\"" {
            return lines
                .next()?
                .trim()
                .strip_prefix("version = ")?
                .trim_matches('"')
                .to_owned()
                .into();
        }
    }
    None
}

pub fn git(layout: &Layout) -> Git {
    let Ok(sh) = shell(layout) else {
        return Git {
            commit: None,
            dirty: false,
        };
    };
    let commit = git_answer(cmd!(sh, "git rev-parse HEAD"));
    let dirty = cmd!(sh, "git status --porcelain --untracked-files=no")
        .quiet()
        .ignore_stderr()
        .read()
        .is_ok_and(|s| !s.trim().is_empty());
    Git { commit, dirty }
}

/// The sampler ratio: flag, then MARKET_OTEL_SAMPLE_RATIO, then OTEL_TRACES_SAMPLER_ARG, then the
/// policy's production ratio.
pub fn sample_ratio(flag: Option<f64>, policy: &Policy) -> Result<f64> {
    let from_env = |name: &str| -> Result<Option<f64>> {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => v
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .map(Some)
                .ok_or_else(|| {
                    Error::input(
                        format!("environment variable {name}"),
                        format!("`{v}` is not a ratio in [0, 1]"),
                        "set it to a number like 0.1, or unset it",
                    )
                }),
            _ => Ok(None),
        }
    };
    Ok(match flag {
        Some(r) => r,
        None => match from_env("MARKET_OTEL_SAMPLE_RATIO")? {
            Some(r) => r,
            None => from_env("OTEL_TRACES_SAMPLER_ARG")?
                .unwrap_or(policy.overhead.production_sample_ratio),
        },
    })
}

/// This machine's host name, naming a shard's runner in a merged report.
pub fn host() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}
