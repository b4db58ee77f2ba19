//! The Tally node: the actors that make a validator (consensus driver,
//! ledger, mempool, block sync, network router, JSON-RPC server), wired by
//! channels in [`node::Node::start`], and the CLI's building blocks.

pub mod bench;
pub mod chain;
pub mod config;
pub mod consensus;
pub mod homes;
pub mod ledger;
pub mod localnet;
pub mod mempool;
pub mod network;
pub mod node;
pub mod rpc;
pub mod signing;
pub mod sync;
pub mod wire;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
