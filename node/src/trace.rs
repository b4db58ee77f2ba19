//! The life of recent transactions as this node saw it: when and from where
//! it first arrived, when it was gossiped on, the proposals it was in, and
//! when it was committed or dropped (`tally_traceTransaction`; `tally query
//! trace` puts the records of several nodes on one timeline).
//!
//! Bounded: the last [`TxTraces::CAPACITY`] transactions, the oldest
//! forgotten first. Every update takes the lock once per batch (a submitted
//! batch, a gossiped batch, a block), never once per transaction.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tally_ledger::{Address, Hash};
use tally_rpc::{TraceProposal, TxTrace};

use crate::now_ms;

/// Proposals kept per transaction (an equivocator's or a long height's
/// rounds beyond are not).
const MAX_PROPOSALS: usize = 8;

#[derive(Debug, Default)]
pub struct TxTraces {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<Hash, TxTrace>,
    /// Insertion order, for eviction.
    order: VecDeque<Hash>,
}

impl Inner {
    /// The record of `hash`, created (first seen now, from `source`) if new.
    fn entry(&mut self, hash: Hash, source: &dyn Fn() -> String, now: u64) -> &mut TxTrace {
        if !self.traces.contains_key(&hash) {
            while self.order.len() >= TxTraces::CAPACITY {
                match self.order.pop_front() {
                    Some(old) => {
                        self.traces.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(hash);
        }
        self.traces.entry(hash).or_insert_with(|| TxTrace {
            hash,
            first_seen_ms: now,
            source: source(),
            gossiped_ms: None,
            proposals: Vec::new(),
            committed_height: None,
            committed_ms: None,
            dropped_reason: None,
            dropped_ms: None,
        })
    }
}

impl TxTraces {
    pub const CAPACITY: usize = 100_000;

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner)
    }

    /// Admitted to the mempool, from `source` ("rpc", "journal", "peer …").
    pub fn admitted(&self, hashes: &[Hash], source: &str) {
        let now = now_ms();
        self.with(|inner| {
            for hash in hashes {
                inner.entry(*hash, &|| source.to_string(), now);
            }
        });
    }

    /// Gossiped on in one of this node's batches.
    pub fn gossiped(&self, hashes: &[Hash]) {
        let now = now_ms();
        self.with(|inner| {
            for hash in hashes {
                if let Some(trace) = inner.traces.get_mut(hash) {
                    trace.gossiped_ms.get_or_insert(now);
                }
            }
        });
    }

    /// In a block this node built or checked for `height` and `round`.
    pub fn proposed(&self, hashes: &[Hash], height: u64, round: u32, proposer: Address) {
        let now = now_ms();
        let proposal = TraceProposal {
            height,
            round,
            proposer,
            at_ms: now,
        };
        self.with(|inner| {
            for hash in hashes {
                let trace = inner.entry(*hash, &|| "block".to_string(), now);
                let known = trace
                    .proposals
                    .iter()
                    .any(|p| (p.height, p.round, p.proposer) == (height, round, proposer));
                if !known && trace.proposals.len() < MAX_PROPOSALS {
                    trace.proposals.push(proposal.clone());
                }
            }
        });
    }

    /// Committed at `height`.
    pub fn committed(&self, hashes: &[Hash], height: u64) {
        let now = now_ms();
        self.with(|inner| {
            for hash in hashes {
                let trace = inner.entry(*hash, &|| "block".to_string(), now);
                trace.committed_height.get_or_insert(height);
                trace.committed_ms.get_or_insert(now);
            }
        });
    }

    /// Left the mempool uncommitted.
    pub fn dropped(&self, hash: Hash, reason: &str) {
        let now = now_ms();
        self.with(|inner| {
            if let Some(trace) = inner.traces.get_mut(&hash) {
                trace
                    .dropped_reason
                    .get_or_insert_with(|| reason.to_string());
                trace.dropped_ms.get_or_insert(now);
            }
        });
    }

    pub fn get(&self, hash: &Hash) -> Option<TxTrace> {
        self.with(|inner| inner.traces.get(hash).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u32) -> Hash {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        Hash(bytes)
    }

    #[test]
    fn a_trace_follows_a_transaction_and_the_window_is_bounded() {
        let traces = TxTraces::default();
        traces.admitted(&[h(1)], "rpc");
        traces.admitted(&[h(1)], "peer x");
        traces.gossiped(&[h(1)]);
        traces.proposed(&[h(1)], 5, 0, Address::ZERO);
        traces.proposed(&[h(1)], 5, 0, Address::ZERO);
        traces.committed(&[h(1)], 5);
        let t = traces.get(&h(1)).expect("traced");
        assert_eq!(t.source, "rpc", "the first source stays");
        assert!(t.gossiped_ms.is_some());
        assert_eq!(t.proposals.len(), 1, "the same proposal once");
        assert_eq!(t.committed_height, Some(5));
        // First seen in a block (never gossiped here).
        traces.committed(&[h(2)], 6);
        assert_eq!(traces.get(&h(2)).expect("traced").source, "block");
        // Unknown ones are not created by gossip or drop events.
        traces.gossiped(&[h(3)]);
        traces.dropped(h(3), "expired");
        assert!(traces.get(&h(3)).is_none());
        for i in 10..(10 + TxTraces::CAPACITY as u32) {
            traces.admitted(&[h(i)], "rpc");
        }
        assert!(traces.get(&h(1)).is_none(), "the oldest is forgotten");
        assert!(traces.get(&h(10)).is_some());
        let held = traces.with(|inner| (inner.traces.len(), inner.order.len()));
        assert_eq!(held, (TxTraces::CAPACITY, TxTraces::CAPACITY));
    }
}
