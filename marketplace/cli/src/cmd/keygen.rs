use anyhow::Context;
use market_core::sign::SigningKey;

use super::HomeArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    home: HomeArgs,
    /// Print the key as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let home = args.home.home();
    let path = home.publisher_key_path();
    let key = SigningKey::generate();
    key.save(&path).with_context(
        || "a publisher key owns every name it published; delete it by hand only if you mean to",
    )?;
    if args.json {
        crate::output::json(&serde_json::json!({
            "public_key": key.public().to_string(),
            "path": path.display().to_string(),
        }))
    } else {
        println!("created publisher key {}", key.public());
        println!("saved to {}", path.display());
        Ok(())
    }
}
