//! The marketplace's local half.
//!
//! Everything here works without a network: a package directory becomes a signed, content-addressed
//! archive; releases go into the registry index; the search index, the resolver and the installer read
//! from it. The network crate (`market-p2p`) moves the same [`Release`] records and archives between
//! peers and hands them back to this crate for verification, so every trust decision is made here, once.
//!
//! Library code emits `tracing` spans on request-level operations only; binaries choose the subscriber.

pub mod archive;
pub mod cache;
pub mod db;
pub mod fsutil;
pub mod home;
pub mod index;
pub mod install;
pub mod lockfile;
pub mod manifest;
pub mod publish;
pub mod record;
pub mod resolve;
pub mod search;
pub mod sign;
pub mod store;
pub mod synth;
pub mod trust;

pub use record::{ContentId, Release};
pub use sign::{PublicKey, Signature, SigningKey};
