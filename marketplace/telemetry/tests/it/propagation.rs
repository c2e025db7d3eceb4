//! W3C traceparent handling that holds in both builds.

use std::collections::HashMap;

use market_telemetry::propagation::{self, TraceParent};

const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn carrier(value: &str) -> HashMap<String, String> {
    HashMap::from([("traceparent".to_owned(), value.to_owned())])
}

#[test]
fn traceparent_parses_and_round_trips() {
    let parent = TraceParent::parse(SAMPLED).unwrap();
    assert_eq!(parent.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
    assert_eq!(parent.span_id, 0x00f067aa0ba902b7);
    assert!(parent.sampled);
    assert_eq!(parent.to_header(), SAMPLED);
    let unsampled = TraceParent::parse(&SAMPLED.replace("-01", "-00")).unwrap();
    assert!(!unsampled.sampled);
}

#[test]
fn malformed_traceparents_are_ignored() {
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
    ] {
        assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        assert!(!propagation::extract(&carrier(bad)).is_valid(), "{bad:?}");
    }
}

#[test]
fn extract_reads_header_names_case_insensitively() {
    let context = propagation::extract(&HashMap::from([(
        "TraceParent".to_owned(),
        SAMPLED.to_owned(),
    )]));
    assert!(context.is_valid());
    assert!(context.is_sampled());
}

#[test]
fn with_nothing_current_inject_is_empty() {
    assert!(propagation::inject().is_empty());
}

#[test]
fn an_attached_remote_context_is_carried_through() {
    let context = propagation::extract(&carrier(SAMPLED));
    {
        let _guard = context.attach();
        let headers = propagation::inject();
        assert_eq!(
            headers.get("traceparent").map(String::as_str),
            Some(SAMPLED)
        );
    }
    assert!(propagation::inject().is_empty(), "the guard detaches");
}
