//! Integration tests of market-core, one module per area.

mod archive;
mod cache;
mod db;
mod index;
mod install;
mod manifest;
mod props;
mod publish;
mod resolve;
mod search;
mod spans;
mod synth;
