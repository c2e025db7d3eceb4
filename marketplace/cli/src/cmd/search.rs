use market_core::search::{Query, Sort};
use market_telemetry::metrics::Operation;

use super::HomeArgs;
use crate::output;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Words to look for; the last one may be a prefix, typos are forgiven.
    #[arg(default_value = "")]
    query: String,
    /// Only packages with this tag (repeatable: all must match).
    #[arg(long, value_name = "TAG")]
    tag: Vec<String>,
    /// Only packages in this category.
    #[arg(long, value_name = "CATEGORY")]
    category: Option<String>,
    /// Only packages with this author (as written in the manifest's `authors`).
    #[arg(long, value_name = "AUTHOR")]
    author: Option<String>,
    /// Only packages under this licence (an SPDX expression as written, e.g. MIT).
    #[arg(long, value_name = "LICENSE")]
    license: Option<String>,
    /// Only packages downloaded at least N times.
    #[arg(long, value_name = "N", default_value_t = 0)]
    min_downloads: u64,
    /// Only packages with at least N stars.
    #[arg(long, value_name = "N", default_value_t = 0)]
    min_stars: u64,
    /// Order of the results: relevance, downloads, stars, recent or name.
    #[arg(long, default_value = "relevance")]
    sort: Sort,
    /// Show at most N packages.
    #[arg(long, value_name = "N", default_value_t = 20)]
    limit: usize,
    /// Skip the first N results (the next page).
    #[arg(long, value_name = "N", default_value_t = 0)]
    offset: usize,
    #[command(flatten)]
    home: HomeArgs,
    #[command(flatten)]
    net: super::node::NetArgs,
    /// Print the results as JSON (score and package of each hit, the total, the network note).
    #[arg(long)]
    json: bool,
}

/// One filter of the command line.
#[derive(Debug)]
enum Filter<'a> {
    Tag(&'a str),
    Category(&'a str),
    Author(&'a str),
    License(&'a str),
    MinDownloads(u64),
    MinStars(u64),
}

impl Filter<'_> {
    fn apply(&self, q: Query) -> Query {
        match *self {
            Filter::Tag(t) => q.tag(t),
            Filter::Category(c) => q.category(c),
            Filter::Author(a) => q.author(a),
            Filter::License(l) => q.license(l),
            Filter::MinDownloads(n) => q.min_downloads(n),
            Filter::MinStars(n) => q.min_stars(n),
        }
    }
}

/// In the words of the explanation: `tag "http"`, `at least 10 stars`.
impl std::fmt::Display for Filter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::Tag(t) => write!(f, "tag {t:?}"),
            Filter::Category(c) => write!(f, "category {c:?}"),
            Filter::Author(a) => write!(f, "author {a:?}"),
            Filter::License(l) => write!(f, "license {l:?}"),
            Filter::MinDownloads(n) => write!(f, "at least {n} downloads"),
            Filter::MinStars(n) => write!(f, "at least {n} stars"),
        }
    }
}

impl Args {
    /// The filters given (a minimum of 0 is no filter).
    fn filters(&self) -> Vec<Filter<'_>> {
        let mut out: Vec<Filter<'_>> = self.tag.iter().map(|t| Filter::Tag(t)).collect();
        out.extend(self.category.as_deref().map(Filter::Category));
        out.extend(self.author.as_deref().map(Filter::Author));
        out.extend(self.license.as_deref().map(Filter::License));
        out.extend((self.min_downloads > 0).then_some(Filter::MinDownloads(self.min_downloads)));
        out.extend((self.min_stars > 0).then_some(Filter::MinStars(self.min_stars)));
        out
    }
}

/// Why nothing matched: the query and filters in words, and, when there were filters, whether the
/// query alone matches and which filters leave nothing of it.
fn explain_empty(
    args: &Args,
    total: &dyn Fn(Query) -> anyhow::Result<usize>,
) -> anyhow::Result<String> {
    let filters = args.filters();
    let names: Vec<String> = filters.iter().map(Filter::to_string).collect();
    let mut out = if args.query.is_empty() {
        "no package".to_owned()
    } else {
        format!("no package matches {:?}", args.query)
    };
    if !names.is_empty() {
        out.push_str(" with ");
        out.push_str(&names.join(" and "));
    }
    if filters.is_empty() {
        return Ok(out);
    }
    let count = |q: Query| total(q.limit(1));
    let alone = count(Query::new(args.query.clone()))?;
    let subject = if args.query.is_empty() {
        "the registry".to_owned()
    } else {
        format!("{:?} alone", args.query)
    };
    if alone == 0 {
        out.push_str(&format!("\n{subject} matches no package either"));
        return Ok(out);
    }
    let mut culprits: Vec<String> = Vec::new();
    for f in &filters {
        if count(f.apply(Query::new(args.query.clone())))? == 0 {
            culprits.push(f.to_string());
        }
    }
    let holds = if args.query.is_empty() {
        "holds"
    } else {
        "matches"
    };
    out.push_str(&format!(
        "\n{subject} {holds} {alone} package{}; ",
        if alone == 1 { "" } else { "s" }
    ));
    let them = if alone == 1 { "it" } else { "them all" };
    match culprits.as_slice() {
        [] => out.push_str("each filter keeps some of them, but not all the filters together"),
        [one] => out.push_str(&format!("{one} excludes {them}")),
        many => out.push_str(&format!("{} each exclude {them}", many.join(" and "))),
    }
    Ok(out)
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
    let mut registry = super::open_registry(&home)?;
    let note = args.net.merge_remote_search(
        &home,
        &args.query,
        args.limit + args.offset,
        &mut registry,
    )?;
    let mut query = Query::new(args.query.clone())
        .sort(args.sort)
        .limit(args.limit)
        .offset(args.offset);
    for f in args.filters() {
        query = f.apply(query);
    }
    let results = registry.search(&query)?;
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
        let total = |q: Query| -> anyhow::Result<usize> { Ok(registry.search(&q)?.total) };
        println!("{}", explain_empty(args, &total)?);
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
