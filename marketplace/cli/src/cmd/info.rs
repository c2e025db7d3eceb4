use super::HomeArgs;
use crate::output;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The package's name.
    name: String,
    #[command(flatten)]
    home: HomeArgs,
    /// Print every version as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let home = args.home.home();
    let registry = super::open_registry(&home)?;
    let owner = registry.owner(&args.name)?;
    let Some(entries) = registry.get(&args.name)? else {
        let close = registry.close_names(&args.name)?;
        if close.is_empty() {
            anyhow::bail!(
                "no package named {:?} in {}",
                args.name,
                registry.path().display()
            );
        }
        anyhow::bail!(
            "no package named {:?}; did you mean {}?",
            args.name,
            close.join(", ")
        );
    };
    if args.json {
        return output::json(&serde_json::json!({
            "name": args.name,
            "owner": owner.map(|k| k.to_string()),
            "versions": entries,
        }));
    }
    let latest = entries.last().map(|e| &e.release);
    if let Some(r) = latest {
        println!("{} — {}", r.name, r.meta.description);
        if !r.meta.authors.is_empty() {
            println!("authors:    {}", r.meta.authors.join(", "));
        }
        if let Some(l) = &r.meta.license {
            println!("license:    {l}");
        }
        println!("keywords:   {}", r.meta.keywords.join(", "));
        println!("tags:       {}", r.meta.tags.join(", "));
        println!("categories: {}", r.meta.categories.join(", "));
    }
    if let Some(owner) = &owner {
        println!("owner key:  {owner}");
    }
    println!();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .rev()
        .map(|e| {
            let deps = e
                .release
                .dependencies
                .iter()
                .map(|(n, r)| format!("{n} {r}"))
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                e.release.version.to_string(),
                if e.yanked {
                    "yanked".into()
                } else {
                    String::new()
                },
                e.release.size.to_string(),
                output::count(e.downloads),
                e.release.checksum.as_str()[..12].to_owned(),
                output::clip(&deps, 60),
            ]
        })
        .collect();
    output::table(
        &[
            "VERSION",
            "",
            "BYTES",
            "DOWNLOADS",
            "CHECKSUM",
            "DEPENDENCIES",
        ],
        &rows,
        &[false, false, true, true, false, false],
    );
    Ok(())
}
