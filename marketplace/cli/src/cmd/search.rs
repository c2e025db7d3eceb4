use market_core::search::{Query, SearchIndex, Sort};
use market_telemetry::metrics::Operation;

use super::HomeArgs;
use crate::output;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Words to look for; the last one may be a prefix, typos are forgiven.
    #[arg(default_value = "")]
    query: String,
    /// Only packages with this tag (repeatable: all must match).
    #[arg(long)]
    tag: Vec<String>,
    #[arg(long)]
    category: Option<String>,
    #[arg(long)]
    author: Option<String>,
    #[arg(long)]
    license: Option<String>,
    #[arg(long, default_value_t = 0)]
    min_downloads: u64,
    #[arg(long, default_value_t = 0)]
    min_stars: u64,
    /// relevance, downloads, stars, recent or name.
    #[arg(long, default_value = "relevance")]
    sort: Sort,
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[arg(long, default_value_t = 0)]
    offset: usize,
    #[command(flatten)]
    home: HomeArgs,
    #[command(flatten)]
    net: super::node::NetArgs,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // The request-level span covers the index load: that is what a person waits for.
    let span = tracing::info_span!(
        "cli_search",
        query = %args.query,
        results = tracing::field::Empty,
        total = tracing::field::Empty,
        network = args.net.network,
    );
    let _enter = span.enter();
    static SEARCHES: Operation = Operation::new("cli_search");
    let timer = SEARCHES.start();
    let result = search(&args, &span);
    timer.finish_result(&result);
    result
}

fn search(args: &Args, span: &tracing::Span) -> anyhow::Result<()> {
    let home = args.home.home();
    let registry = super::load_registry(&home)?;
    let mut index = SearchIndex::from_registry(&registry);
    let note =
        args.net
            .merge_remote_search(&home, &args.query, args.limit + args.offset, &mut index)?;
    let mut query = Query::new(args.query.clone())
        .sort(args.sort)
        .limit(args.limit)
        .offset(args.offset)
        .min_downloads(args.min_downloads)
        .min_stars(args.min_stars);
    for t in &args.tag {
        query = query.tag(t.clone());
    }
    if let Some(c) = &args.category {
        query = query.category(c.clone());
    }
    if let Some(a) = &args.author {
        query = query.author(a.clone());
    }
    if let Some(l) = &args.license {
        query = query.license(l.clone());
    }
    let results = index.search(&query);
    span.record("results", results.hits.len());
    span.record("total", results.total);

    if args.json {
        let hits: Vec<_> = results
            .hits
            .iter()
            .map(|h| serde_json::json!({ "score": h.score, "package": &*h.doc }))
            .collect();
        return output::json(&serde_json::json!({
            "total": results.total,
            "exhaustive": results.exhaustive,
            "hits": hits,
            "network": note,
        }));
    }
    if let Some(note) = note {
        eprintln!("{note}");
    }
    if results.hits.is_empty() {
        println!("no package matches {:?}", args.query);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = results
        .hits
        .iter()
        .map(|h| {
            let d = &h.doc;
            vec![
                d.name.clone(),
                d.version.to_string(),
                output::count(d.downloads),
                output::count(d.stars),
                output::clip(&d.tags.join(","), 24),
                output::clip(&d.description, 60),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME",
            "VERSION",
            "DOWNLOADS",
            "STARS",
            "TAGS",
            "DESCRIPTION",
        ],
        &rows,
        &[false, false, true, true, false, false],
    );
    let shown = args.offset + results.hits.len();
    if results.total > shown {
        println!(
            "({} of {} shown; --offset {shown} for more)",
            results.hits.len(),
            results.total
        );
    }
    Ok(())
}
