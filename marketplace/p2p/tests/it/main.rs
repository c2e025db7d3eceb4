//! Integration tests of market-p2p on in-process networks (memory transport). Synchronisation is
//! by events and conditions with timeouts, never by sleeping.

mod common;
mod dht;
mod faults;
mod fetch;
mod gossip;
mod props;
mod search;
mod spans;
mod tcp;
