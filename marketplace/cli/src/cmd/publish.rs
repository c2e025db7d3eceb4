use std::path::PathBuf;

use anyhow::Context;
use market_core::sign::SigningKey;

use super::HomeArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The package directory (holding market.toml).
    dir: PathBuf,
    #[command(flatten)]
    home: HomeArgs,
    #[command(flatten)]
    net: super::node::NetArgs,
    /// Print the published release as JSON.
    #[arg(long)]
    json: bool,
    /// Publish even if dependencies do not resolve against this registry (one that will receive
    /// them later); by default publish refuses, naming each unresolved dependency.
    #[arg(long)]
    allow_unresolved: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let home = args.home.home();
    let key_path = home.publisher_key_path();
    let key = SigningKey::load(&key_path).with_context(|| {
        format!(
            "no publisher key; run `market keygen` first ({})",
            key_path.display()
        )
    })?;
    let options = market_core::publish::PublishOptions {
        allow_unresolved: args.allow_unresolved,
        ..Default::default()
    };
    let release =
        market_core::publish::publish_with(&home, &args.dir, &key, super::now(), &options)?;
    let announced = args.net.announce(&home, &release)?;
    if args.json {
        return crate::output::json(&serde_json::json!({
            "release": release,
            "network": announced,
        }));
    }
    println!(
        "published {} ({} bytes, content id {})",
        release.id(),
        release.size,
        release.checksum
    );
    if let Some(how) = announced {
        println!("{how}");
    }
    Ok(())
}
