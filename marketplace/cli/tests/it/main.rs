//! Integration tests of the `market` binary, run as a person would: real processes, real files,
//! `MARKET_HOME` in a temporary directory.

mod local;
mod network;
mod registry;
mod usage;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One user's home and the binary to run in it.
pub struct Market {
    pub home: tempfile::TempDir,
}

impl Default for Market {
    fn default() -> Market {
        Market::new()
    }
}

impl Market {
    pub fn new() -> Market {
        Market {
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_market"));
        c.env("MARKET_HOME", self.home.path())
            .env_remove("MARKET_PEERS")
            .env("RUST_LOG", "warn");
        c
    }

    /// Runs `market ARGS`, expecting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "market {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `market ARGS`, expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "market {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub fn path(&self) -> &Path {
        self.home.path()
    }
}

/// Writes a package directory with a manifest and one template file; returns its path.
pub fn package(
    root: &Path,
    name: &str,
    version: &str,
    description: &str,
    deps: &[(&str, &str)],
) -> PathBuf {
    let dir = root.join(format!("{name}-{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut toml = format!(
        "[package]\nname = \"{name}\"\nversion = \"{version}\"\ndescription = \"{description}\"\nlicense = \"MIT\"\ntags = [\"http\"]\n\n[dependencies]\n"
    );
    for (d, req) in deps {
        toml.push_str(&format!("{d} = \"{req}\"\n"));
    }
    std::fs::write(dir.join("market.toml"), toml).unwrap();
    std::fs::write(dir.join("main.tpl"), format!("{name} {version}\n")).unwrap();
    dir
}
