//! Property test of the Criterion reader (issue 17): whatever a bench directory holds, generated
//! or mutated from what Criterion writes, `read_home` never panics, and it either reads benches
//! whose estimates are usable (finite, positive, unique ids) or returns an error naming a path
//! inside the tree. `PROPTEST_CASES` sets the number of cases (256 by default); failing inputs
//! are kept in `xtask/tests/proptest-regressions/criterion_props.txt` (commit it) and replayed
//! first.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use xtask::criterion;

use crate::fixtures;

/// What one of the reader's files becomes.
#[derive(Debug, Clone)]
enum FileMutation {
    Keep,
    Delete,
    /// A directory where the file was.
    Directory,
    /// Arbitrary bytes (not necessarily UTF-8).
    Bytes(Vec<u8>),
    /// Arbitrary JSON.
    Json(Value),
    /// One node of the valid document replaced by arbitrary JSON (or removed from its object).
    Node(Index, Option<Value>),
    /// The valid text with one byte changed.
    Flip(Index, u8),
    /// The valid text cut short.
    Truncate(Index),
}

/// What happens to the `new` directory itself.
#[derive(Debug, Clone)]
enum DirMutation {
    Keep,
    /// `new` is a file.
    File(Vec<u8>),
    /// `new` is empty.
    Empty,
    /// A stray file beside the others.
    Extra(String, Vec<u8>),
}

fn json_value() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|x| Value::from(if x.is_finite() { x } else { 0.0 })),
        // The edges of f64 that JSON can spell: zero, signed zero, subnormal, huge.
        prop::sample::select(vec![
            0.0, -0.0, 5e-324, 1e-300, 1.0, -1.0, 1e300, 1.7e308, -1.7e308
        ])
        .prop_map(Value::from),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number,
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(vec!["Linear", "Flat", "Elements", "Bytes", "g/f"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn file_mutation() -> impl Strategy<Value = FileMutation> {
    prop_oneof![
        4 => Just(FileMutation::Keep),
        1 => Just(FileMutation::Delete),
        1 => Just(FileMutation::Directory),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(FileMutation::Bytes),
        1 => json_value().prop_map(FileMutation::Json),
        4 => (any::<Index>(), prop::option::weighted(0.8, json_value()))
            .prop_map(|(i, v)| FileMutation::Node(i, v)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| FileMutation::Flip(i, b)),
        1 => any::<Index>().prop_map(FileMutation::Truncate),
    ]
}

fn dir_mutation() -> impl Strategy<Value = DirMutation> {
    prop_oneof![
        8 => Just(DirMutation::Keep),
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(DirMutation::File),
        1 => Just(DirMutation::Empty),
        1 => ("[a-z]{1,8}(\\.json)?", prop::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(n, b)| DirMutation::Extra(n, b)),
    ]
}

/// Every node of `v` in preorder, as JSON pointers.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                pointers(x, format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
}

/// Replaces (or, with `None` and a parent object, removes) the node `i` picks.
fn mutate_node(mut doc: Value, i: &Index, with: Option<Value>) -> Value {
    let mut all = Vec::new();
    pointers(&doc, String::new(), &mut all);
    let ptr = &all[i.index(all.len())];
    match (with, ptr.rsplit_once('/')) {
        (Some(v), _) => match doc.pointer_mut(ptr) {
            Some(slot) => *slot = v,
            None => doc = v,
        },
        (None, Some((parent, key))) => {
            if let Some(Value::Object(o)) = doc.pointer_mut(parent) {
                o.remove(key);
            }
        }
        (None, None) => {}
    }
    doc
}

fn apply(path: &Path, m: &FileMutation) {
    let valid: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let text = valid.to_string().into_bytes();
    match m {
        FileMutation::Keep => {}
        FileMutation::Delete => std::fs::remove_file(path).unwrap(),
        FileMutation::Directory => {
            std::fs::remove_file(path).unwrap();
            std::fs::create_dir(path).unwrap();
        }
        FileMutation::Bytes(b) => std::fs::write(path, b).unwrap(),
        FileMutation::Json(v) => std::fs::write(path, v.to_string()).unwrap(),
        FileMutation::Node(i, v) => {
            std::fs::write(path, mutate_node(valid, i, v.clone()).to_string()).unwrap()
        }
        FileMutation::Flip(i, b) => {
            let mut t = text;
            let at = i.index(t.len());
            t[at] = *b;
            std::fs::write(path, t).unwrap();
        }
        FileMutation::Truncate(i) => std::fs::write(path, &text[..i.index(text.len())]).unwrap(),
    }
}

/// A temporary directory on tmpfs where there is one: a case writes and removes a dozen files,
/// which took 42 ms per case on this machine's virtual disk and 1.1 ms on /dev/shm, and cases per
/// minute are what a bounded run buys.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

fn cases() -> ProptestConfig {
    // ProptestConfig::default() reads PROPTEST_CASES.
    ProptestConfig::default()
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn mutated_bench_directories_are_read_or_named(
        files in prop::collection::vec(file_mutation(), 3),
        dir in dir_mutation(),
        per_iter in prop::sample::select(vec![1e-3, 1.0, 1e3, 1e9]),
        samples in 1usize..14,
    ) {
        let tmp = scratch();
        let home = tmp.path();
        // A healthy neighbour: an error must not be blamed on it, nor may it hide one.
        fixtures::write_bench(home, "g/ok", 10.0, 10);
        fixtures::write_bench(home, "g/x/1", per_iter, samples);
        let new = home.join("g/x/1/new");
        for (name, m) in ["benchmark.json", "estimates.json", "sample.json"].iter().zip(&files) {
            apply(&new.join(name), m);
        }
        match &dir {
            DirMutation::Keep => {}
            DirMutation::File(b) => {
                std::fs::remove_dir_all(&new).unwrap();
                std::fs::write(&new, b).unwrap();
            }
            DirMutation::Empty => {
                std::fs::remove_dir_all(&new).unwrap();
                std::fs::create_dir(&new).unwrap();
            }
            DirMutation::Extra(name, b) => {
                let p = new.join(name);
                if !p.exists() {
                    std::fs::write(p, b).unwrap();
                }
            }
        }
        match criterion::read_home(home) {
            Ok(ms) => {
                let mut ids: Vec<&str> = ms.iter().map(|m| m.id.full_id.as_str()).collect();
                let n = ids.len();
                ids.dedup();
                prop_assert_eq!(ids.len(), n, "duplicate ids read");
                for m in &ms {
                    let e = m.sample.per_iteration();
                    prop_assert!(e.is_finite() && e > 0.0, "{}: estimate {e}", m.id.full_id);
                    prop_assert_eq!(m.sample.iters.len(), m.sample.times.len());
                }
                // The healthy bench is always there, and the mutated one unless it was renamed
                // onto another id (a mutated full_id is still a bench).
                prop_assert!(ms.iter().any(|m| m.id.full_id == "g/ok"));
                prop_assert_eq!(ms.len(), 2, "{:?}", ids);
            }
            Err(e) => {
                let msg = e.to_string();
                let bad = home.join("g/x/1");
                prop_assert!(
                    msg.contains(&bad.display().to_string()),
                    "the error must name the damaged bench's path: {msg}"
                );
            }
        }
    }
}

/// A healthy tree read through the same property's helpers: a mutation that keeps everything
/// is read as written, so the property is not passing by erroring on everything.
#[test]
fn an_unmutated_tree_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_bench(tmp.path(), "g/x/1", 7.0, 12);
    let new = tmp.path().join("g/x/1/new");
    apply(&new.join("sample.json"), &FileMutation::Keep);
    let ms = criterion::read_home(tmp.path()).unwrap();
    assert!((ms[0].sample.per_iteration() - 7.0).abs() < 1e-9);
    // The node picker sees every node of a document, so every field can be mutated.
    let doc = json!({"sampling_mode": "Linear", "iters": [1.0], "times": [5.0]});
    let ptrs = {
        let mut v = Vec::new();
        pointers(&doc, String::new(), &mut v);
        v
    };
    assert_eq!(
        ptrs,
        [
            "",
            "/iters",
            "/iters/0",
            "/sampling_mode",
            "/times",
            "/times/0"
        ]
    );
}
