//! The life of recent transactions as this node saw it: when and from where
//! it first arrived, when it was gossiped on, the proposals it was in, and
//! when it was committed or dropped (`tally_traceTransaction`; `tally query
//! trace` puts the records of several nodes on one timeline).
//!
//! Bounded: the last [`TxTraces::CAPACITY`] transactions, the oldest
//! forgotten first. Off the hot paths: the actors hand each batch (a
//! submitted batch, a gossiped batch, a block) to a queue of [`QUEUE`]
//! batches without waiting, and a thread of its own applies them; when it
//! falls behind, batches go untraced (tracing is best effort, and never
//! slows admission or commits).

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use tally_ledger::{Address, Hash};
use tally_rpc::{TraceProposal, TxTrace};

use crate::now_ms;

/// Proposals kept per transaction (an equivocator's or a long height's
/// rounds beyond are not).
const MAX_PROPOSALS: usize = 8;
/// Batches waiting for the tracing thread.
const QUEUE: usize = 4096;

enum Event {
    Admitted(Vec<Hash>, Arc<str>, u64),
    Gossiped(Vec<Hash>, u64),
    Proposed(Vec<Hash>, TraceProposal),
    Committed(Arc<Vec<Hash>>, u64, u64),
    Dropped(Vec<(Hash, &'static str)>, u64),
}

pub struct TxTraces {
    inner: Arc<Mutex<Inner>>,
    queue: SyncSender<Event>,
}

impl std::fmt::Debug for TxTraces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TxTraces")
    }
}

#[derive(Default)]
struct Inner {
    traces: HashMap<Hash, TxTrace>,
    /// Insertion order, for eviction.
    order: VecDeque<Hash>,
}

impl Inner {
    /// The record of `hash`, created (first seen at `now`, from `source`)
    /// if new.
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

    fn apply(&mut self, event: Event) {
        match event {
            Event::Admitted(hashes, source, now) => {
                for hash in hashes {
                    self.entry(hash, &|| source.to_string(), now);
                }
            }
            Event::Gossiped(hashes, now) => {
                for hash in hashes {
                    if let Some(trace) = self.traces.get_mut(&hash) {
                        trace.gossiped_ms.get_or_insert(now);
                    }
                }
            }
            Event::Proposed(hashes, proposal) => {
                let key = (proposal.height, proposal.round, proposal.proposer);
                for hash in hashes {
                    let trace = self.entry(hash, &|| "block".to_string(), proposal.at_ms);
                    let known = trace
                        .proposals
                        .iter()
                        .any(|p| (p.height, p.round, p.proposer) == key);
                    if !known && trace.proposals.len() < MAX_PROPOSALS {
                        trace.proposals.push(proposal.clone());
                    }
                }
            }
            Event::Committed(hashes, height, now) => {
                for hash in hashes.iter() {
                    let trace = self.entry(*hash, &|| "block".to_string(), now);
                    trace.committed_height.get_or_insert(height);
                    trace.committed_ms.get_or_insert(now);
                }
            }
            Event::Dropped(drops, now) => {
                for (hash, reason) in drops {
                    if let Some(trace) = self.traces.get_mut(&hash) {
                        trace
                            .dropped_reason
                            .get_or_insert_with(|| reason.to_string());
                        trace.dropped_ms.get_or_insert(now);
                    }
                }
            }
        }
    }
}

impl Default for TxTraces {
    fn default() -> Self {
        Self::new()
    }
}

impl TxTraces {
    pub const CAPACITY: usize = 100_000;

    /// Starts the tracing thread; it ends when this is dropped.
    pub fn new() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let (queue, events) = sync_channel(QUEUE);
        let worker = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("tx-trace".into())
            .spawn(move || apply_all(&worker, &events));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the transaction tracing thread: no traces");
        }
        TxTraces { inner, queue }
    }

    fn send(&self, event: Event) {
        match self.queue.try_send(event) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                tracing::debug!("transaction tracing is behind: a batch goes untraced");
            }
        }
    }

    /// Admitted to the mempool, from `source` ("rpc", "journal", "peer …").
    pub fn admitted(&self, hashes: Vec<Hash>, source: &str) {
        if !hashes.is_empty() {
            self.send(Event::Admitted(hashes, source.into(), now_ms()));
        }
    }

    /// Gossiped on in one of this node's batches.
    pub fn gossiped(&self, hashes: Vec<Hash>) {
        if !hashes.is_empty() {
            self.send(Event::Gossiped(hashes, now_ms()));
        }
    }

    /// In a block this node built or checked for `height` and `round`.
    pub fn proposed(&self, hashes: Vec<Hash>, height: u64, round: u32, proposer: Address) {
        let proposal = TraceProposal {
            height,
            round,
            proposer,
            at_ms: now_ms(),
        };
        self.send(Event::Proposed(hashes, proposal));
    }

    /// Committed at `height`.
    pub fn committed(&self, hashes: Arc<Vec<Hash>>, height: u64) {
        self.send(Event::Committed(hashes, height, now_ms()));
    }

    /// Left the mempool uncommitted, each for its reason.
    pub fn dropped(&self, drops: Vec<(Hash, &'static str)>) {
        if !drops.is_empty() {
            self.send(Event::Dropped(drops, now_ms()));
        }
    }

    pub fn get(&self, hash: &Hash) -> Option<TxTrace> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.traces.get(hash).cloned()
    }
}

/// The tracing thread: applies events as they come, one per lock (a
/// reader waits for one batch at most), until every sender is gone.
fn apply_all(inner: &Mutex<Inner>, events: &Receiver<Event>) {
    while let Ok(event) = events.recv() {
        let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.apply(event);
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
        let mut inner = Inner::default();
        inner.apply(Event::Admitted(vec![h(1)], "rpc".into(), 1));
        inner.apply(Event::Admitted(vec![h(1)], "peer x".into(), 2));
        inner.apply(Event::Gossiped(vec![h(1)], 3));
        let proposal = TraceProposal {
            height: 5,
            round: 0,
            proposer: Address::ZERO,
            at_ms: 4,
        };
        inner.apply(Event::Proposed(vec![h(1)], proposal.clone()));
        inner.apply(Event::Proposed(vec![h(1)], proposal));
        inner.apply(Event::Committed(Arc::new(vec![h(1)]), 5, 6));
        let t = inner.traces.get(&h(1)).expect("traced");
        assert_eq!(
            (t.source.as_str(), t.first_seen_ms),
            ("rpc", 1),
            "the first stays"
        );
        assert_eq!(t.gossiped_ms, Some(3));
        assert_eq!(t.proposals.len(), 1, "the same proposal once");
        assert_eq!((t.committed_height, t.committed_ms), (Some(5), Some(6)));
        // First seen in a block (never gossiped here).
        inner.apply(Event::Committed(Arc::new(vec![h(2)]), 6, 7));
        assert_eq!(inner.traces.get(&h(2)).expect("traced").source, "block");
        // Gossip and drop events create nothing.
        inner.apply(Event::Gossiped(vec![h(3)], 8));
        inner.apply(Event::Dropped(vec![(h(3), "expired")], 8));
        assert!(!inner.traces.contains_key(&h(3)));
        let hashes: Vec<Hash> = (10..(10 + TxTraces::CAPACITY as u32)).map(h).collect();
        inner.apply(Event::Admitted(hashes, "rpc".into(), 9));
        assert!(!inner.traces.contains_key(&h(1)), "the oldest is forgotten");
        assert!(inner.traces.contains_key(&h(10)));
        assert_eq!(inner.traces.len(), TxTraces::CAPACITY);
        assert_eq!(inner.order.len(), TxTraces::CAPACITY);
    }

    #[test]
    fn the_thread_applies_what_the_actors_hand_it() {
        let traces = TxTraces::new();
        traces.admitted(vec![h(1)], "rpc");
        traces.dropped(vec![(h(1), "expired")]);
        for _ in 0..100 {
            if traces.get(&h(1)).is_some_and(|t| t.dropped_ms.is_some()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the tracing thread never applied the events");
    }
}
