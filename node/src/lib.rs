//! The Tally node: the actors that make a validator (consensus driver,
//! ledger, mempool, block sync, network router, JSON-RPC server), wired by
//! channels in [`node::Node::start`], and the CLI's building blocks.

pub mod actors;
pub mod chain;
pub mod cli;
pub mod metrics;
pub mod node;
pub mod rpc;
pub mod signing;
pub mod trace;
pub use tally_config as config;
pub use tally_wire as wire;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `items.iter().map(f)` on one thread per core, in order. For CPU-bound
/// work such as signature recovery.
pub fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(64);
    if items.len() <= chunk {
        return items.iter().map(f).collect();
    }
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}
