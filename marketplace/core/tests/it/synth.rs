//! The synthetic catalogue generator: determinism and the shape of what it produces.

use std::collections::{HashMap, HashSet};

use market_core::manifest::Manifest;
use market_core::record::{ContentId, validate_name};
use market_core::synth::{self, Catalogue, SynthConfig};

#[test]
fn same_seed_same_catalogue_other_seed_other_catalogue() {
    let a = Catalogue::generate(&SynthConfig::new(300).seed(5));
    let b = Catalogue::generate(&SynthConfig::new(300).seed(5));
    let c = Catalogue::generate(&SynthConfig::new(300).seed(6));
    assert_eq!(a.entries, b.entries);
    assert_ne!(a.entries, c.entries);
    // The unsigned shortcut describes the same packages.
    assert_eq!(
        Catalogue::generate_docs(&SynthConfig::new(300).seed(5)),
        a.docs()
    );
}

#[test]
fn releases_are_signed_valid_and_grouped_by_package() {
    let cat = Catalogue::generate(&SynthConfig::new(500));
    assert_eq!(cat.package_count(), 500);
    assert!(cat.entries.len() > 500, "several versions per package");
    let mut names = HashSet::new();
    let mut prev: Option<&market_core::Release> = None;
    for e in &cat.entries {
        let r = &e.release;
        r.verify().unwrap_or_else(|err| panic!("{}: {err}", r.id()));
        validate_name(&r.name).unwrap();
        assert_eq!(
            r.checksum,
            ContentId::of(&synth::payload(&r.name, &r.version))
        );
        assert!(cat.key_of(r).is_some(), "signed by a catalogue publisher");
        match prev {
            Some(p) if p.name == r.name => {
                assert!(p.version < r.version, "{} after {}", r.id(), p.id());
                assert!(p.published_at < r.published_at);
                assert_eq!(p.publisher, r.publisher, "one owner per name");
            }
            _ => assert!(names.insert(r.name.clone()), "{} generated twice", r.name),
        }
        prev = Some(r);
    }
    let publishers: HashSet<_> = cat.entries.iter().map(|e| e.release.publisher).collect();
    assert!(publishers.len() > 1 && publishers.len() <= 8);
}

#[test]
fn dependencies_point_backwards_and_can_be_satisfied() {
    let cat = Catalogue::generate(&SynthConfig::new(3000).seed(11));
    let mut order: HashMap<&str, usize> = HashMap::new();
    let mut versions: HashMap<&str, Vec<&semver::Version>> = HashMap::new();
    for e in &cat.entries {
        let n = order.len();
        order.entry(&e.release.name).or_insert(n);
        versions
            .entry(&e.release.name)
            .or_default()
            .push(&e.release.version);
    }
    let mut depth: HashMap<&str, usize> = HashMap::new();
    let mut with_deps = 0;
    for e in cat.latest() {
        let r = &e.release;
        let me = order[r.name.as_str()];
        let mut d = 0;
        for (dep, req) in &r.dependencies {
            let at = *order
                .get(dep.as_str())
                .unwrap_or_else(|| panic!("{} depends on unknown {dep}", r.name));
            assert!(
                at < me,
                "{} depends on later package {dep}: the graph could have cycles",
                r.name
            );
            assert!(
                versions[dep.as_str()].iter().any(|v| req.matches(v)),
                "{} needs {dep} {req}",
                r.name
            );
            d = d.max(depth[dep.as_str()] + 1);
        }
        with_deps += usize::from(!r.dependencies.is_empty());
        depth.insert(&r.name, d);
    }
    let deepest = depth.values().copied().max().unwrap();
    assert!(deepest >= 15, "deep chains exist (deepest {deepest})");
    assert!(
        with_deps > 1500 && with_deps < 2900,
        "most but not all packages have dependencies ({with_deps})"
    );
}

#[test]
fn tags_and_downloads_are_skewed() {
    let cat = Catalogue::generate(&SynthConfig::new(5000).seed(3));
    let docs = cat.docs();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for d in &docs {
        for t in &d.tags {
            *counts.entry(t).or_default() += 1;
        }
    }
    let mut ranked: Vec<usize> = counts.values().copied().collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    assert!(
        ranked.len() >= 30,
        "a long tail of tags ({} tags)",
        ranked.len()
    );
    assert!(
        ranked[0] >= 4 * ranked[19],
        "top tag {} vs 20th {}",
        ranked[0],
        ranked[19]
    );

    let mut downloads: Vec<u64> = docs.iter().map(|d| d.downloads).collect();
    downloads.sort_unstable();
    let median = downloads[downloads.len() / 2];
    let max = *downloads.last().unwrap();
    assert!(
        max > 1000 * median.max(1),
        "heavy tail: max {max}, median {median}"
    );
    // Stars follow downloads, loosely.
    let top = docs.iter().max_by_key(|d| d.downloads).unwrap();
    let stars_median = {
        let mut s: Vec<u64> = docs.iter().map(|d| d.stars).collect();
        s.sort_unstable();
        s[s.len() / 2]
    };
    assert!(top.stars > stars_median);
}

#[test]
fn names_and_descriptions_read_like_packages() {
    let cat = Catalogue::generate(&SynthConfig::new(200));
    for d in cat.docs() {
        assert!(d.name.split('-').count() >= 2, "{}", d.name);
        assert!(
            d.description.len() > 20 && d.description.ends_with('.'),
            "{:?}",
            d.description
        );
        assert!(!d.tags.is_empty() && !d.keywords.is_empty() && !d.categories.is_empty());
        assert!(d.authors[0].contains("@example.org"));
        assert!(d.license.is_some());
    }
    assert!(
        cat.docs()
            .iter()
            .any(|d| d.name.starts_with("web-framework"))
    );
}

#[test]
fn package_directories_carry_a_valid_manifest() {
    let cat = Catalogue::generate(&SynthConfig::new(50));
    let dir = tempfile::tempdir().unwrap();
    let with_deps = cat
        .latest()
        .find(|e| !e.release.dependencies.is_empty())
        .expect("some package has dependencies");
    for e in [cat.entries.first().unwrap(), with_deps] {
        let r = &e.release;
        let at = dir.path().join(&r.name);
        synth::write_package_dir(&at, r).unwrap();
        let m = Manifest::from_dir(&at).unwrap();
        assert_eq!(m.name, r.name);
        assert_eq!(m.version, r.version);
        assert_eq!(m.dependencies, r.dependencies);
        assert_eq!(m.meta(), r.meta);
        assert!(at.join("template").is_dir());
    }
}
