//! The live network dashboard (`GET /dashboard` on the metrics listener):
//! one page, embedded in the binary (no build step, no CDN), that polls
//! `/dashboard/state.json` of every node it is given (`?nodes=` their
//! metrics addresses; `tally localnet` and `tally dev` print the URL) once a
//! second and draws the nodes, their links, heights, rounds, missing votes,
//! throughput, block interval, recent blocks with their signers, and a
//! transaction's timeline across the nodes.
//!
//! The JSON endpoints answer any origin (`Access-Control-Allow-Origin: *`)
//! so that one node's page can read the others: they are read-only and
//! carry what `tally_status`, `tally_consensusState`, `tally_netInfo` and
//! `tally_traceTransaction` already tell whoever reaches the RPC; the
//! listener stays on loopback unless the operator moves it.

use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use tally_rpc::TallyApiServer;

use crate::rpc::RpcContext;

/// The page.
pub const PAGE: &str = include_str!("assets/dashboard.html");

/// Blocks listed on the page.
const RECENT_BLOCKS: u64 = 10;

/// What the dashboard reads: the RPC's view of the node, and its counter of
/// committed transactions (the page turns it into a rate).
#[derive(Clone, Debug)]
pub struct Dashboard {
    pub context: RpcContext,
    pub moniker: String,
    pub txs_committed: Counter,
}

impl Dashboard {
    /// One snapshot of this node for the page.
    pub async fn state(&self) -> Value {
        let c = &self.context;
        let status = c.status().await.ok();
        let consensus = c.consensus_state().await.ok();
        let peers = c.net_info().await.unwrap_or_default();
        let validators = c
            .validators(None)
            .await
            .map(|set| set.validators)
            .unwrap_or_default();
        let tip = status.as_ref().map_or(0, |s| s.latest_height);
        let from = tip.saturating_sub(RECENT_BLOCKS - 1).max(1);
        let mut found = Vec::new();
        // One more than shown: a block's signers are in the next one.
        for height in from..=tip {
            if let Ok(Some(block)) = c.get_block_by_height(height).await {
                found.push(block);
            }
        }
        let blocks: Vec<Value> = found
            .iter()
            .enumerate()
            .rev()
            .map(|(i, b)| {
                let signers = found.get(i + 1).and_then(|next| {
                    next.last_commit
                        .as_ref()
                        .map(|c| c.signatures.iter().map(|s| s.validator).collect::<Vec<_>>())
                });
                json!({
                    "height": b.header.height,
                    "hash": b.hash,
                    "txs": b.tx_hashes.len(),
                    "proposer": b.header.proposer,
                    "signers": signers,
                })
            })
            .collect();
        json!({
            "moniker": self.moniker,
            "status": status,
            "consensus": consensus,
            "peers": peers,
            "validators": validators,
            "txs_committed": self.txs_committed.get(),
            "blocks": blocks,
        })
    }

    /// This node's record of one transaction (`null` if none or a bad hash).
    pub async fn trace(&self, hash: &str) -> Value {
        match self.context.trace_transaction(hash.to_string()).await {
            Ok(trace) => json!(trace),
            Err(_) => Value::Null,
        }
    }
}
