//! Dependency resolution with the PubGrub algorithm (the `pubgrub` crate) over the registry.
//!
//! PubGrub works on version *sets*, semver on *requirements*. A requirement such as `^1.2` is not a
//! simple interval once pre-releases are involved, so each requirement is converted to the set of
//! the package's available versions it matches, expressed as intervals between consecutive
//! available versions (`[1.2.0, 2.0.0)` if 2.0.0 is the next published version). The solver only
//! ever picks versions from the available list, so this is exact, and the intervals keep the sets
//! small.
//!
//! Available means: published and not yanked, plus the version the lock names even if it was
//! yanked since (a lock must keep working). Among the versions a set allows, the locked one is
//! preferred, then the newest.
//!
//! When there is no solution, PubGrub's derivation tree is rendered in the user's terms: the root
//! is "your project", sets are shown as the requirement that produced them (`http-core ^2`) or as
//! the concrete versions they contain (`web-framework 1.2.0`), and missing or yanked packages are
//! named as such, with close-name suggestions for typos.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::rc::Rc;

use pubgrub::{
    DefaultStringReporter, Dependencies, DependencyProvider, DerivationTree, Derived, External,
    Map, PackageResolutionStatistics, PubGrubError, Ranges, ReportFormatter, Reporter, Term,
};
use semver::{Version, VersionReq};

use crate::index::Registry;
use crate::lockfile::Lockfile;
use crate::record::Release;

type Set = Ranges<Version>;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("package {name} is not in the registry{}", suggest(.suggestions))]
    UnknownPackage {
        name: String,
        suggestions: Vec<String>,
    },
    #[error("cannot resolve dependencies:\n{report}")]
    NoSolution { report: String },
    #[error("registry entry {name}@{version} disappeared during resolution")]
    Inconsistent { name: String, version: Version },
}

fn suggest(s: &[String]) -> String {
    match s {
        [] => String::new(),
        [one] => format!("; did you mean {one}?"),
        many => format!("; did you mean one of {}?", many.join(", ")),
    }
}

/// The packages a resolution chose, one version per name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    /// Chosen releases by name.
    pub packages: BTreeMap<String, Release>,
}

impl Resolution {
    pub fn get(&self, name: &str) -> Option<&Release> {
        self.packages.get(name)
    }
    pub fn len(&self) -> usize {
        self.packages.len()
    }
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Release> {
        self.packages.values()
    }
}

/// A package in the solver: the user's project (the root) or a registry package.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Pkg {
    Root,
    Named(String),
}

impl fmt::Display for Pkg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkg::Root => f.write_str("your project"),
            Pkg::Named(n) => f.write_str(n),
        }
    }
}

/// Resolves `roots` against `registry`, preferring the versions in `lock`.
pub fn resolve(
    registry: &Registry,
    roots: &[(String, VersionReq)],
    lock: Option<&Lockfile>,
) -> Result<Resolution, ResolveError> {
    let span = tracing::info_span!(
        "resolve",
        roots = roots.len(),
        packages = tracing::field::Empty,
        status = tracing::field::Empty
    );
    let _enter = span.enter();
    let result = resolve_inner(registry, roots, lock);
    match &result {
        Ok(r) => {
            span.record("packages", r.len());
            span.record("status", "ok");
        }
        Err(_) => {
            span.record("status", "error");
        }
    }
    result
}

fn resolve_inner(
    registry: &Registry,
    roots: &[(String, VersionReq)],
    lock: Option<&Lockfile>,
) -> Result<Resolution, ResolveError> {
    for (name, _) in roots {
        if registry.get(name).is_none() {
            return Err(ResolveError::UnknownPackage {
                name: name.clone(),
                suggestions: close_names(registry, name),
            });
        }
    }
    let provider = Provider {
        registry,
        lock,
        roots,
        candidates: RefCell::new(HashMap::new()),
        labels: RefCell::new(HashMap::new()),
    };
    match pubgrub::resolve(&provider, Pkg::Root, Version::new(0, 0, 0)) {
        Ok(solution) => {
            let mut packages = BTreeMap::new();
            for (pkg, version) in solution {
                let Pkg::Named(name) = pkg else { continue };
                let entry =
                    registry
                        .entry(&name, &version)
                        .ok_or_else(|| ResolveError::Inconsistent {
                            name: name.clone(),
                            version: version.clone(),
                        })?;
                packages.insert(name, entry.release.clone());
            }
            Ok(Resolution { packages })
        }
        Err(PubGrubError::NoSolution(mut tree)) => {
            // Every version the solver can see is a candidate, so "no versions in this set" facts
            // can be folded into the dependency that asked for them: one sentence instead of two.
            tree.collapse_no_versions();
            let formatter = Words {
                provider: &provider,
            };
            let report = match &tree {
                DerivationTree::External(e) => formatter.format_external(e),
                DerivationTree::Derived(_) => {
                    DefaultStringReporter::report_with_formatter(&tree, &formatter)
                }
            };
            Err(ResolveError::NoSolution { report })
        }
        // The provider's error type is Infallible, so only NoSolution can occur; these arms exist
        // for exhaustiveness.
        Err(PubGrubError::ErrorRetrievingDependencies { source, .. }) => match source {},
        Err(PubGrubError::ErrorChoosingVersion { source, .. }) => match source {},
        Err(PubGrubError::ErrorInShouldCancel(source)) => match source {},
    }
}

/// Registry names close to `name` (edit distance ≤ 2, or containing it), at most five.
pub fn close_names(registry: &Registry, name: &str) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = registry
        .names()
        .filter_map(|n| {
            let d = edit_distance(n, name);
            if d <= 2 {
                Some((d, n))
            } else if name.len() >= 3 && n.contains(name) {
                Some((3, n))
            } else {
                None
            }
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(5)
        .map(|(_, n)| n.to_owned())
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 2 {
        return usize::MAX;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

struct Provider<'a> {
    registry: &'a Registry,
    lock: Option<&'a Lockfile>,
    roots: &'a [(String, VersionReq)],
    /// Available versions per package, ascending.
    candidates: RefCell<HashMap<String, Rc<Vec<Version>>>>,
    /// How each set entered the solver (the requirement text), for the error report.
    labels: RefCell<HashMap<(String, Set), String>>,
}

impl Provider<'_> {
    fn locked(&self, name: &str) -> Option<&Version> {
        self.lock.and_then(|l| l.get(name)).map(|p| &p.version)
    }

    fn candidates(&self, name: &str) -> Rc<Vec<Version>> {
        if let Some(c) = self.candidates.borrow().get(name) {
            return c.clone();
        }
        let locked = self.locked(name);
        let list: Vec<Version> = self
            .registry
            .get(name)
            .unwrap_or_default()
            .iter()
            .filter(|e| !e.yanked || Some(&e.release.version) == locked)
            .map(|e| e.release.version.clone())
            .collect();
        let list = Rc::new(list);
        self.candidates
            .borrow_mut()
            .insert(name.to_owned(), list.clone());
        list
    }

    /// The set of available versions of `name` that `req` matches, as intervals between
    /// consecutive available versions; remembers `req` as the set's label.
    fn to_set(&self, name: &str, req: &VersionReq) -> Set {
        let cands = self.candidates(name);
        let mut set = Set::empty();
        let mut i = 0;
        while i < cands.len() {
            if !req.matches(&cands[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i + 1 < cands.len() && req.matches(&cands[i + 1]) {
                i += 1;
            }
            let piece = match cands.get(i + 1) {
                Some(next) => Set::between(cands[start].clone(), next.clone()),
                None => Set::higher_than(cands[start].clone()),
            };
            set = set.union(&piece);
            i += 1;
        }
        let label = req.to_string();
        self.labels
            .borrow_mut()
            .entry((name.to_owned(), set.clone()))
            .or_insert(label);
        set
    }
}

impl DependencyProvider for Provider<'_> {
    type P = Pkg;
    type V = Version;
    type VS = Set;
    type Priority = (u32, Reverse<usize>);
    type M = String;
    type Err = Infallible;

    fn prioritize(
        &self,
        package: &Pkg,
        range: &Set,
        stats: &PackageResolutionStatistics,
    ) -> Self::Priority {
        match package {
            Pkg::Root => (u32::MAX, Reverse(0)),
            // Decide contested packages first, then those with the fewest choices left: both make
            // conflicts surface early, which keeps backtracking short.
            Pkg::Named(name) => {
                let n = self
                    .candidates(name)
                    .iter()
                    .filter(|v| range.contains(v))
                    .count();
                (stats.conflict_count(), Reverse(n))
            }
        }
    }

    fn choose_version(&self, package: &Pkg, range: &Set) -> Result<Option<Version>, Infallible> {
        let name = match package {
            Pkg::Root => {
                let root = Version::new(0, 0, 0);
                return Ok(range.contains(&root).then_some(root));
            }
            Pkg::Named(n) => n,
        };
        let cands = self.candidates(name);
        if let Some(locked) = self.locked(name)
            && range.contains(locked)
            && cands.binary_search(locked).is_ok()
        {
            return Ok(Some(locked.clone()));
        }
        Ok(cands.iter().rev().find(|v| range.contains(v)).cloned())
    }

    fn get_dependencies(
        &self,
        package: &Pkg,
        version: &Version,
    ) -> Result<Dependencies<Pkg, Set, String>, Infallible> {
        let deps: Vec<(Pkg, Set)> = match package {
            Pkg::Root => self
                .roots
                .iter()
                .map(|(name, req)| (Pkg::Named(name.clone()), self.to_set(name, req)))
                .collect(),
            Pkg::Named(name) => match self.registry.entry(name, version) {
                Some(e) => e
                    .release
                    .dependencies
                    .iter()
                    .map(|(dep, req)| (Pkg::Named(dep.clone()), self.to_set(dep, req)))
                    .collect(),
                None => return Ok(Dependencies::Unavailable("(not in the registry)".into())),
            },
        };
        Ok(Dependencies::Available(deps.into_iter().collect()))
    }
}

/// Renders derivation trees in the user's terms.
struct Words<'a, 'p> {
    provider: &'p Provider<'a>,
}

/// Which side of a dependency a set is on: the package that depends (shown as its concrete
/// versions when there are few) or the package depended on (shown as the requirement).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Depender,
    Dependency,
}

impl Words<'_, '_> {
    /// `pkg` and its `set` in words, with a note when the set holds no usable version.
    fn named(&self, pkg: &Pkg, set: &Set, side: Side) -> String {
        let Pkg::Named(name) = pkg else {
            return pkg.to_string();
        };
        let cands = self.provider.candidates(name);
        let inside: Vec<&Version> = cands.iter().filter(|v| set.contains(v)).collect();
        let label = self
            .provider
            .labels
            .borrow()
            .get(&(name.clone(), set.clone()))
            .cloned();
        let label_req = label.as_deref().and_then(|l| VersionReq::parse(l).ok());
        let listed = |max: usize| -> Option<String> {
            match inside.as_slice() {
                [] => None,
                [one] => Some(one.to_string()),
                [init @ .., last] if init.len() < max => {
                    let init: Vec<String> = init.iter().map(|v| v.to_string()).collect();
                    Some(format!("{} or {last}", init.join(", ")))
                }
                _ => None,
            }
        };
        let everything = *set == Set::full() || (inside.len() > 1 && inside.len() == cands.len());
        let text = match side {
            Side::Depender => listed(3)
                .or(label)
                .or_else(|| (!everything).then(|| set.to_string())),
            Side::Dependency => label
                .or_else(|| (!everything).then(|| listed(4).unwrap_or_else(|| set.to_string()))),
        };
        let mut out = match text {
            Some(t) if !t.is_empty() => format!("{name} {t}"),
            _ => name.clone(),
        };
        if inside.is_empty() {
            out.push_str(&self.why_empty(name, set, label_req.as_ref()));
        }
        out
    }

    /// Why a set of `name` holds no candidate: unknown name, yanked versions, or no match. An
    /// empty set has lost its bounds, so the requirement it came from (if known) decides which
    /// yanked versions it would have matched.
    fn why_empty(&self, name: &str, set: &Set, req: Option<&VersionReq>) -> String {
        let matches = |v: &Version| match req {
            Some(r) => r.matches(v),
            None => set.contains(v),
        };
        match self.provider.registry.get(name) {
            None => format!(
                " (not in the registry{})",
                suggest(&close_names(self.provider.registry, name))
            ),
            Some(entries)
                if entries
                    .iter()
                    .any(|e| e.yanked && matches(&e.release.version)) =>
            {
                " (every matching version is yanked)".into()
            }
            Some(_) => " (no published version matches)".into(),
        }
    }

    fn term(&self, pkg: &Pkg, term: &Term<Set>) -> String {
        match term {
            Term::Positive(set) => self.named(pkg, set, Side::Depender),
            Term::Negative(set) => {
                let n = self.named(pkg, set, Side::Dependency);
                format!(
                    "a version of {pkg} other than {}",
                    n.strip_prefix(&pkg.to_string()).unwrap_or(&n).trim()
                )
            }
        }
    }

    fn depends(&self, p: &Pkg, set_p: &Set, dep: &Pkg, set_dep: &Set) -> String {
        let dep = self.named(dep, set_dep, Side::Dependency);
        if *p == Pkg::Root {
            format!("your project requires {dep}")
        } else {
            format!("{} depends on {dep}", self.named(p, set_p, Side::Depender))
        }
    }
}

impl ReportFormatter<Pkg, Set, String> for Words<'_, '_> {
    type Output = String;

    fn format_external(&self, external: &External<Pkg, Set, String>) -> String {
        match external {
            External::NotRoot(_, _) => "your project is being resolved".into(),
            External::NoVersions(pkg, set) => {
                format!(
                    "no usable version of {} exists",
                    self.named(pkg, set, Side::Dependency)
                )
            }
            External::FromDependencyOf(p, set_p, dep, set_dep) => {
                self.depends(p, set_p, dep, set_dep)
            }
            External::Custom(p, set, why) => {
                format!(
                    "{} is unavailable {why}",
                    self.named(p, set, Side::Depender)
                )
            }
        }
    }

    fn format_terms(&self, terms: &Map<Pkg, Term<Set>>) -> String {
        let terms: Vec<(&Pkg, &Term<Set>)> = terms.iter().collect();
        match terms.as_slice() {
            [] => "no set of versions satisfies every requirement".into(),
            [(Pkg::Root, Term::Positive(_))] => {
                "no set of versions satisfies every requirement".into()
            }
            [(p, Term::Positive(set))] => {
                format!("{} cannot be used", self.named(p, set, Side::Depender))
            }
            [(p, Term::Negative(set))] => {
                format!("{} is required", self.named(p, set, Side::Dependency))
            }
            [(p1, Term::Positive(r1)), (p2, Term::Negative(r2))]
            | [(p2, Term::Negative(r2)), (p1, Term::Positive(r1))] => self.depends(p1, r1, p2, r2),
            many => {
                let parts: Vec<String> = many.iter().map(|(p, t)| self.term(p, t)).collect();
                format!("{} cannot be used together", parts.join(", "))
            }
        }
    }

    fn explain_both_external(
        &self,
        e1: &External<Pkg, Set, String>,
        e2: &External<Pkg, Set, String>,
        current: &Map<Pkg, Term<Set>>,
    ) -> String {
        format!(
            "Because {} and {}, {}.",
            self.format_external(e1),
            self.format_external(e2),
            self.format_terms(current)
        )
    }

    fn explain_both_ref(
        &self,
        ref1: usize,
        d1: &Derived<Pkg, Set, String>,
        ref2: usize,
        d2: &Derived<Pkg, Set, String>,
        current: &Map<Pkg, Term<Set>>,
    ) -> String {
        format!(
            "Because {} ({ref1}) and {} ({ref2}), {}.",
            self.format_terms(&d1.terms),
            self.format_terms(&d2.terms),
            self.format_terms(current)
        )
    }

    fn explain_ref_and_external(
        &self,
        ref_id: usize,
        derived: &Derived<Pkg, Set, String>,
        external: &External<Pkg, Set, String>,
        current: &Map<Pkg, Term<Set>>,
    ) -> String {
        format!(
            "Because {} ({ref_id}) and {}, {}.",
            self.format_terms(&derived.terms),
            self.format_external(external),
            self.format_terms(current)
        )
    }

    fn and_explain_external(
        &self,
        external: &External<Pkg, Set, String>,
        current: &Map<Pkg, Term<Set>>,
    ) -> String {
        format!(
            "And because {}, {}.",
            self.format_external(external),
            self.format_terms(current)
        )
    }

    fn and_explain_ref(
        &self,
        ref_id: usize,
        derived: &Derived<Pkg, Set, String>,
        current: &Map<Pkg, Term<Set>>,
    ) -> String {
        format!(
            "And because {} ({ref_id}), {}.",
            self.format_terms(&derived.terms),
            self.format_terms(current)
        )
    }

    fn and_explain_prior_and_external(
        &self,
        prior: &External<Pkg, Set, String>,
        external: &External<Pkg, Set, String>,
        current: &Map<Pkg, Term<Set>>,
    ) -> String {
        format!(
            "And because {} and {}, {}.",
            self.format_external(prior),
            self.format_external(external),
            self.format_terms(current)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("http-core", "http-core"), 0);
        assert_eq!(edit_distance("http-core", "http-cor"), 1);
        assert_eq!(edit_distance("http-core", "htpt-core"), 2);
        assert_eq!(edit_distance("a", "abcdef"), usize::MAX);
    }
}
