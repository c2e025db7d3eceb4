//! The default build must not contain any OpenTelemetry crate (DESIGN §6): checked on the resolved
//! dependency graph, not on this test binary's features.

use std::process::Command;

fn tree(features: &[&str]) -> String {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let mut command = Command::new(env!("CARGO"));
    command.args([
        "tree",
        "--offline",
        "--manifest-path",
        manifest,
        "-p",
        "market-telemetry",
        "-e",
        "normal",
        "--prefix",
        "none",
    ]);
    command.args(features);
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("cargo tree prints UTF-8")
}

fn packages(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

#[test]
fn default_build_has_no_opentelemetry_crate() {
    let default = tree(&[]);
    let otel: Vec<&str> = packages(&default)
        .into_iter()
        .filter(|p| p.contains("opentelemetry"))
        .collect();
    assert!(otel.is_empty(), "the default build pulls in {otel:?}");
    // The check itself must be able to see such crates: with the feature on they are there.
    let with_otel = tree(&["--features", "otel"]);
    assert!(
        packages(&with_otel).contains(&"opentelemetry_sdk"),
        "cargo tree with --features otel lists no opentelemetry_sdk:\n{with_otel}"
    );
}

#[test]
fn no_default_features_is_tracing_alone() {
    let minimal = tree(&["--no-default-features"]);
    let names = packages(&minimal);
    assert!(names.contains(&"tracing"), "{minimal}");
    assert!(
        !names.contains(&"tracing-subscriber"),
        "the metrics-only build pulls in tracing-subscriber:\n{minimal}"
    );
}
