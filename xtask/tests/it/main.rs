//! The xtask's integration tests: one binary, one module per area.

mod cli;
mod criterion;
mod criterion_props;
mod fixtures;
mod policy;
mod report;
mod shards;
mod sides;
mod simulation;
mod stats;
mod usage;
mod verdict;
