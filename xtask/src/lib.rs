//! The performance gate behind `cargo xtask`.
//!
//! Layers, top to bottom (each uses only those below it):
//! - verbs (`verbs::*`): bench-all, compare, baseline, report, otel-overhead, simulate;
//! - `report`: renders verdicts, knows no statistics; `table`: the terminal's tables;
//! - `verdict`: applies the policy to statistics;
//! - `run`: the run file; `build`: each side's bench executables, built in its own tree and
//!   target directory;
//! - `criterion` (the reader), `stats` (pure functions), `policy`, and `error`, `layout`.
//!
//! Invariant: the xtask never links the marketplace crates; it knows the benches only through the
//! executables it runs and the files they write.

pub mod build;
pub mod callgrind;
pub mod criterion;
pub mod engine;
pub mod error;
pub mod layout;
pub mod lock;
pub mod policy;
pub mod report;
pub mod run;
pub mod stats;
pub mod table;
pub mod verbs;
pub mod verdict;

pub use error::{Error, Result};
pub use verdict::Outcome;
