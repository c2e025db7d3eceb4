//! The command line's words: every flag described in `--help`, errors said once and located,
//! a search that finds nothing says why, install output in plain words.

use crate::{Market, package};

/// The entries of the "Options:", "Arguments:" or "Commands:" sections of a clap help text, as
/// (entry, description), the description empty when clap printed none. Handles both layouts:
/// the description beside the entry, or on the lines under it.
fn help_entries(help: &str, sections: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            inside = sections.contains(&line.trim());
        } else if inside && !line.trim().is_empty() {
            // Entries start at column 2, or 6 for a long flag without a short one.
            if line.len() - line.trim_start().len() <= 6 {
                let (name, description) = line.trim().split_once("  ").unwrap_or((line.trim(), ""));
                out.push((name.trim().to_owned(), description.trim().to_owned()));
            } else if let Some(last) = out.last_mut() {
                last.1.push_str(line.trim());
            }
        }
    }
    out
}

#[test]
fn every_subcommand_has_help_and_every_flag_a_description() {
    let m = Market::new();
    let top = m.ok(&["--help"]);
    let commands: Vec<String> = help_entries(&top, &["Commands:"])
        .into_iter()
        .map(|(name, description)| {
            assert!(!description.is_empty(), "`{name}` has no description");
            name
        })
        .filter(|n| n != "help")
        .collect();
    assert!(commands.len() >= 9, "{top}");
    for command in &commands {
        for flag in ["--help", "-h"] {
            let help = m.ok(&[command, flag]);
            let entries = help_entries(&help, &["Options:", "Arguments:"]);
            assert!(
                entries.iter().any(|(e, _)| e.starts_with("-h, --help")),
                "{command}: {help}"
            );
            for (entry, description) in entries {
                assert!(
                    !description.is_empty(),
                    "market {command}: `{entry}` has no description:\n{help}"
                );
            }
        }
    }
    // The words of the install output are plain; --json's tiers are explained.
    // Wrapped to the terminal's width or not (clap's `wrap_help`, when built with the xtask).
    let help = m.ok(&["install", "--help"]);
    let words = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("`warm` (the local store"), "{help}");
}

#[test]
fn an_os_error_is_said_once() {
    let m = Market::new();
    m.ok(&["keygen"]);
    let missing = m.path().join("no-such-dir");
    let err = m.fails(&["publish", missing.to_str().unwrap()]);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    assert!(err.contains("no-such-dir/market.toml"), "{err}");
}

#[test]
fn a_toml_error_has_a_line_and_a_column() {
    let m = Market::new();
    m.ok(&["keygen"]);
    let src = tempfile::tempdir().unwrap();
    let dir = package(src.path(), "bad", "1.0.0", "x", &[]);
    std::fs::write(
        dir.join("market.toml"),
        "[package]\nname = \"bad\"\nversion = 1.0.0\n",
    )
    .unwrap();
    let err = m.fails(&["publish", dir.to_str().unwrap()]);
    // `1.0` parses as a float; the second `.`, column 14 of line 3, is where it goes wrong.
    assert!(
        err.contains("market.toml: not valid TOML") && err.contains("(line 3, column 14)"),
        "{err}"
    );
    assert!(!err.contains("byte"), "{err}");
}

#[test]
fn a_search_that_filters_everything_out_says_which_filter() {
    let m = Market::new();
    m.ok(&["keygen"]);
    let src = tempfile::tempdir().unwrap();
    let dir = package(src.path(), "web-framework", "1.0.0", "A web framework", &[]);
    m.ok(&["publish", dir.to_str().unwrap()]);

    let out = m.ok(&["search", "framwork", "--tag", "nosuchtag"]);
    assert!(
        out.contains(r#"no package matches "framwork" with tag "nosuchtag""#),
        "{out}"
    );
    assert!(
        out.contains(r#""framwork" alone matches 1 package; tag "nosuchtag" excludes it"#),
        "{out}"
    );
    // The tag exists (the fixture's packages carry `http`), the licence does not.
    let out = m.ok(&[
        "search",
        "framwork",
        "--tag",
        "http",
        "--license",
        "GPL-3.0",
    ]);
    assert!(
        out.contains(r#"with tag "http" and license "GPL-3.0""#)
            && out.contains(r#"license "GPL-3.0" excludes it"#)
            && !out.contains(r#"tag "http" excludes"#),
        "{out}"
    );
    let out = m.ok(&["search", "zzzqqq", "--tag", "http"]);
    assert!(
        out.contains(r#""zzzqqq" alone matches no package either"#),
        "{out}"
    );
    let out = m.ok(&["search", "zzzqqq"]);
    assert_eq!(out.trim(), r#"no package matches "zzzqqq""#);
}

#[test]
fn install_says_where_an_archive_came_from_in_plain_words() {
    let m = Market::new();
    m.ok(&["keygen"]);
    let src = tempfile::tempdir().unwrap();
    let dir = package(src.path(), "solo", "1.0.0", "x", &[]);
    m.ok(&["publish", dir.to_str().unwrap()]);
    let out = m.ok(&["install", "solo"]);
    assert!(out.contains("from the local store)"), "{out}");
    for word in ["warm", "hot", "cold"] {
        assert!(!out.contains(&format!("from {word}")), "{out}");
    }
}
