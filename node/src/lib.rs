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
/// work such as signature recovery. The threads take small chunks in turn
/// rather than a fixed share each, so one delayed by other work on its core
/// (the ledger's thread, say) does not leave the others idle at the end.
pub fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    const CHUNK: usize = 32;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    if threads < 2 || items.len() <= 2 * CHUNK {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (f, next) = (&f, &next);
    let mut parts: Vec<(usize, Vec<U>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(items.len().div_ceil(CHUNK)))
            .map(|_| {
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let start = next.fetch_add(CHUNK, std::sync::atomic::Ordering::Relaxed);
                        let Some(part) = items.get(start..(start + CHUNK).min(items.len())) else {
                            break;
                        };
                        if part.is_empty() {
                            break;
                        }
                        done.push((start, part.iter().map(f).collect::<Vec<_>>()));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    parts.sort_unstable_by_key(|(start, _)| *start);
    parts.into_iter().flat_map(|(_, part)| part).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn par_map_keeps_the_order_at_every_size() {
        for n in [0, 1, 63, 64, 65, 100, 1_000, 10_001] {
            let items: Vec<u64> = (0..n).collect();
            let mapped = super::par_map(&items, |i| i * 3);
            assert_eq!(
                mapped,
                items.iter().map(|i| i * 3).collect::<Vec<_>>(),
                "{n} items"
            );
        }
    }
}
