//! The pruner: keeps the store to the latest `retain_blocks` heights in the
//! background, never deleting what an offered snapshot needs.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tally_ledger::Store;
use tracing::{debug, info};

/// How often the pruner looks, and how much one store batch deletes.
const EVERY: Duration = Duration::from_secs(2);
const BATCH: usize = 20_000;

/// What to keep.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Heights kept below the tip.
    pub retain_blocks: u64,
    /// The snapshots offered (`[sync]`): the oldest of them is kept too.
    pub snapshot_interval: u64,
    pub snapshot_keep: u64,
}

impl Retention {
    /// Everything below this height may go, at tip `tip`.
    pub fn prune_below(&self, tip: u64) -> u64 {
        let mut below = tip.saturating_sub(self.retain_blocks);
        if self.snapshot_keep > 0 {
            let interval = self.snapshot_interval.max(1);
            let latest = tip - tip % interval;
            let oldest = latest.saturating_sub((self.snapshot_keep - 1).saturating_mul(interval));
            below = below.min(oldest);
        }
        below
    }
}

pub fn spawn(
    store: Arc<Store>,
    retention: Retention,
    history_start: Gauge,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let below = retention.prune_below(store.tip()?.height);
            if below <= store.history_start()? {
                continue;
            }
            let (mut blocks, mut nodes) = (0, 0);
            loop {
                let store = store.clone();
                let pruned =
                    tokio::task::spawn_blocking(move || store.prune(below, BATCH)).await??;
                blocks += pruned.blocks;
                nodes += pruned.tree_nodes;
                if pruned.done {
                    break;
                }
            }
            history_start.set(i64::try_from(store.history_start()?).unwrap_or(i64::MAX));
            if blocks >= 1000 {
                info!(below, blocks, tree_nodes = nodes, "pruned");
            } else {
                debug!(below, blocks, tree_nodes = nodes, "pruned");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_offered_snapshot_is_kept() {
        let r = Retention {
            retain_blocks: 100,
            snapshot_interval: 1000,
            snapshot_keep: 2,
        };
        assert_eq!(r.prune_below(50), 0);
        assert_eq!(r.prune_below(2500), 1000);
        let r = Retention {
            snapshot_keep: 0,
            ..r
        };
        assert_eq!(r.prune_below(2500), 2400);
        let r = Retention {
            retain_blocks: 10,
            snapshot_interval: 20,
            snapshot_keep: 1,
        };
        assert_eq!(r.prune_below(75), 60);
        assert_eq!(r.prune_below(65), 55);
    }
}
