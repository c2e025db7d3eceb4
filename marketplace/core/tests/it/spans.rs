//! The spans request-level operations emit, captured by a layer: names, parents and fields
//! (including those recorded after the span opened), as an OpenTelemetry exporter would see them.

use market_core::cache::Cache;
use market_core::install::Installer;
use market_telemetry::capture::Capture;

use crate::install::support::World;

#[test]
fn install_emits_install_resolve_and_fetch_spans_with_their_fields() {
    let world = World::new();
    world.publish("http-core", "1.0.0", &[]);
    world.publish("web-framework", "1.2.0", &[("http-core", "^1")]);
    let registry = world.registry();
    let cache = Cache::new(world.store(), 1 << 20);

    let capture = Capture::default();
    let subscriber = capture.subscriber();
    let report = tracing::subscriber::with_default(subscriber, || {
        Installer::new(&registry, &cache, world.target())
            .install(&[("web-framework".to_owned(), "^1".parse().unwrap())])
            .unwrap()
    });
    assert_eq!(report.installed.len(), 2);

    let install = capture.named("install");
    assert_eq!(install.len(), 1, "one install span: {install:?}");
    let f = &install[0].fields;
    assert_eq!(f["root"], "web-framework@^1");
    assert_eq!(f["packages"], "2");
    assert_eq!(f["status"], "ok");
    assert_eq!(f["bytes"], report.bytes().to_string());

    let resolve = capture.named("resolve");
    assert_eq!(resolve.len(), 1);
    assert_eq!(
        resolve[0].parent,
        Some("install"),
        "resolve runs inside the install"
    );

    let fetch = capture.named("fetch");
    assert_eq!(fetch.len(), 2, "one fetch span per package: {fetch:?}");
    for f in &fetch {
        assert_eq!(f.parent, Some("install"));
        assert_eq!(f.fields["tier"], "warm", "{f:?}");
    }
}

#[test]
fn a_failed_install_is_recorded_as_an_error() {
    let world = World::new();
    world.publish("http-core", "1.0.0", &[]);
    let registry = world.registry();
    let cache = Cache::new(world.store(), 1 << 20);
    let capture = Capture::default();
    let subscriber = capture.subscriber();
    let result = tracing::subscriber::with_default(subscriber, || {
        Installer::new(&registry, &cache, world.target())
            .install(&[("http-core".to_owned(), "^9".parse().unwrap())])
    });
    assert!(result.is_err());
    assert_eq!(capture.named("install")[0].fields["status"], "error");
}
