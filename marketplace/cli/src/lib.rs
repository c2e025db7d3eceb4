//! `market`: the marketplace's command line.
//!
//! The binary's `main` is [`main`] here, in a library so that the CLI benches can run the very same
//! command in a process of their own (see `benches/benches/marketplace_cli.rs`). `main` parses
//! flags and dispatches; each verb lives in its own module under `cmd/`. Errors go to
//! stderr with exit code 1 for a failed operation and 2 for bad usage (clap's own convention).

mod cmd;
mod net;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "market",
    version,
    about = "A peer-to-peer marketplace for code-generation templates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create this user's ed25519 publisher key under $MARKET_HOME/keys.
    Keygen(cmd::keygen::Args),
    /// Pack, sign and publish the package in DIR to the local registry (and the network with --network).
    Publish(cmd::publish::Args),
    /// Search the registry: ranked, prefix and typo-tolerant.
    Search(cmd::search::Args),
    /// Show every version of a package.
    Info(cmd::info::Args),
    /// Resolve, fetch, verify and install a package and its dependencies.
    Install(cmd::install::Args),
    /// List installed packages.
    List(cmd::list::Args),
    /// Mark a version as yanked (or restore it with --undo).
    Yank(cmd::yank::Args),
    /// Fill the local registry with a synthetic demo catalogue.
    Demo(cmd::demo::Args),
    /// Run a network node over TCP and QUIC.
    Node(cmd::node::Args),
}

/// The `market` command: parses the process's arguments, runs the verb, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Telemetry failing to start (a bad OTEL_* variable, say) must not stop the command: say so and
    // go on without it.
    let mut config = market_telemetry::Config::new("market");
    if std::env::var_os("RUST_LOG").is_none() {
        config = config.with_log_filter(market_telemetry::QUIET_NETWORK_LOG);
    }
    let _telemetry = match market_telemetry::init(&config) {
        Ok(guard) => Some(guard),
        Err(e) => {
            eprintln!("warning: telemetry is off: {e}");
            None
        }
    };
    let result = match cli.command {
        Command::Keygen(a) => cmd::keygen::run(a),
        Command::Publish(a) => cmd::publish::run(a),
        Command::Search(a) => cmd::search::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Install(a) => cmd::install::run(a),
        Command::List(a) => cmd::list::run(a),
        Command::Yank(a) => cmd::yank::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Node(a) => cmd::node::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", message(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once. Library errors often carry their source in their own
/// message ("{path}: cannot read: {source}") and return it from `source()` as well, so anyhow's
/// `{:#}` would print the OS error twice.
fn message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Where a command keeps its state: `--home` beats `MARKET_HOME`, which beats `~/.market`.
fn home(flag: Option<PathBuf>) -> market_core::home::Home {
    match flag {
        Some(p) => market_core::home::Home::at(p),
        None => market_core::home::Home::from_env(),
    }
}
