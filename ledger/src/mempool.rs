//! The pool of verified transactions waiting for a block. No IO and no clock:
//! the caller passes the state to check against and the current time.
//!
//! Admission takes a [`VerifiedTransaction`], so the signature has already
//! been recovered (once, by the caller, possibly on another thread) and the
//! sender is cached from then on. Transactions queue per sender by nonce; a
//! nonce ahead of the account's is held up to a bounded gap. The pool is
//! bounded in count and bytes, and every refusal says why.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use crate::crypto::{Address, Hash};
use crate::error::{MempoolError, StoreError, TxError};
use crate::state::StateReader;
use crate::tx::VerifiedTransaction;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Most transactions held at once.
    pub max_txs: usize,
    /// Most encoded bytes held at once.
    pub max_bytes: usize,
    /// How far ahead of the account's nonce a transaction may be held.
    pub max_nonce_gap: u64,
    /// Transactions older than this (milliseconds) are evicted.
    pub ttl_ms: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 100_000,
            max_bytes: 64 * 1024 * 1024,
            max_nonce_gap: 64,
            ttl_ms: 10 * 60 * 1000,
        }
    }
}

#[derive(Debug)]
struct PoolTx {
    tx: Arc<VerifiedTransaction>,
    /// Arrival order, to interleave senders fairly in `reap`.
    seq: u64,
    added_ms: u64,
}

#[derive(Debug, Default)]
struct SenderQueue {
    /// The account's next nonce as last read from the state.
    next_nonce: u64,
    by_nonce: BTreeMap<u64, Hash>,
    /// Sum of the costs (amount + fee) of `by_nonce`, kept up to date so
    /// admission does not sum the queue again.
    pending_cost: u128,
}

#[derive(Debug)]
pub struct Mempool {
    config: MempoolConfig,
    chain_id: u64,
    min_fee: u128,
    txs: HashMap<Hash, PoolTx>,
    senders: HashMap<Address, SenderQueue>,
    bytes: usize,
    next_seq: u64,
}

impl Mempool {
    pub fn new(config: MempoolConfig, chain_id: u64, min_fee: u128) -> Mempool {
        Mempool {
            config,
            chain_id,
            min_fee,
            txs: HashMap::new(),
            senders: HashMap::new(),
            bytes: 0,
            next_seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Encoded bytes of all held transactions.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.txs.contains_key(hash)
    }

    pub fn get(&self, hash: &Hash) -> Option<Arc<VerifiedTransaction>> {
        self.txs.get(hash).map(|p| p.tx.clone())
    }

    /// Admits a verified transaction after checking it against `state`.
    pub fn add(
        &mut self,
        tx: VerifiedTransaction,
        state: &impl StateReader,
        now_ms: u64,
    ) -> Result<Hash, AddError> {
        let hash = tx.hash();
        if self.txs.contains_key(&hash) {
            return Err(MempoolError::AlreadyKnown(hash).into());
        }
        let body = tx.tx();
        if body.chain_id != self.chain_id {
            return Err(TxError::WrongChainId {
                expected: self.chain_id,
                got: body.chain_id,
            }
            .into());
        }
        if body.fee < self.min_fee {
            return Err(TxError::FeeTooLow {
                min: self.min_fee,
                got: body.fee,
            }
            .into());
        }
        let cost = body.cost().ok_or(TxError::CostOverflow)?;
        let sender = tx.sender();
        let account = state.account(&sender)?;
        if body.nonce < account.nonce {
            return Err(TxError::NonceTooLow {
                sender,
                expected: account.nonce,
                got: body.nonce,
            }
            .into());
        }
        if body.nonce - account.nonce > self.config.max_nonce_gap {
            return Err(MempoolError::NonceTooFarAhead {
                sender,
                expected: account.nonce,
                got: body.nonce,
                max_gap: self.config.max_nonce_gap,
            }
            .into());
        }
        let queue = self.senders.get(&sender);
        if queue.is_some_and(|q| q.by_nonce.contains_key(&body.nonce)) {
            return Err(MempoolError::NonceTaken {
                sender,
                nonce: body.nonce,
            }
            .into());
        }
        // Everything this sender already has pending must stay payable too.
        let pending = queue.map_or(0, |q| q.pending_cost);
        let needed = pending.checked_add(cost).ok_or(TxError::CostOverflow)?;
        if needed > account.balance {
            return Err(TxError::InsufficientBalance {
                sender,
                available: account.balance,
                needed,
            }
            .into());
        }
        if self.txs.len() >= self.config.max_txs {
            return Err(MempoolError::Full {
                reason: format!(
                    "it holds the maximum of {} transactions",
                    self.config.max_txs
                ),
            }
            .into());
        }
        if self.bytes + tx.encoded_len() > self.config.max_bytes {
            return Err(MempoolError::Full {
                reason: format!("it holds the maximum of {} bytes", self.config.max_bytes),
            }
            .into());
        }

        let queue = self.senders.entry(sender).or_default();
        queue.next_nonce = account.nonce;
        queue.by_nonce.insert(body.nonce, hash);
        queue.pending_cost = needed;
        self.bytes += tx.encoded_len();
        self.txs.insert(
            hash,
            PoolTx {
                tx: Arc::new(tx),
                seq: self.next_seq,
                added_ms: now_ms,
            },
        );
        self.next_seq += 1;
        Ok(hash)
    }

    /// Executable transactions, at most `max_txs` and `max_bytes` of them: for
    /// each sender the run of consecutive nonces from its next nonce, senders
    /// interleaved by arrival order. Nothing is removed.
    pub fn reap(&self, max_txs: usize, max_bytes: usize) -> Vec<Arc<VerifiedTransaction>> {
        // Heap of (arrival of the sender's next executable tx, sender, nonce).
        let mut heads = BinaryHeap::new();
        for (sender, queue) in &self.senders {
            if let Some(hash) = queue.by_nonce.get(&queue.next_nonce) {
                heads.push(Reverse((self.txs[hash].seq, *sender, queue.next_nonce)));
            }
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(Reverse((_, sender, nonce))) = heads.pop() {
            if out.len() == max_txs {
                break;
            }
            let queue = &self.senders[&sender];
            let pooled = &self.txs[&queue.by_nonce[&nonce]];
            if bytes + pooled.tx.encoded_len() > max_bytes {
                // This sender's later nonces cannot go without this one.
                continue;
            }
            bytes += pooled.tx.encoded_len();
            out.push(pooled.tx.clone());
            if let Some(next) = queue.by_nonce.get(&(nonce + 1)) {
                heads.push(Reverse((self.txs[next].seq, sender, nonce + 1)));
            }
        }
        out
    }

    /// Removes one transaction (e.g. one that block building skipped as invalid).
    pub fn remove(&mut self, hash: &Hash) -> Option<Arc<VerifiedTransaction>> {
        let pooled = self.txs.remove(hash)?;
        self.bytes -= pooled.tx.encoded_len();
        let sender = pooled.tx.sender();
        if let Some(queue) = self.senders.get_mut(&sender) {
            queue.by_nonce.remove(&pooled.tx.tx().nonce);
            let cost = pooled.tx.tx().cost().unwrap_or(0);
            queue.pending_cost = queue.pending_cost.saturating_sub(cost);
            if queue.by_nonce.is_empty() {
                self.senders.remove(&sender);
            }
        }
        Some(pooled.tx)
    }

    /// After a block is committed: drops its transactions, then rechecks only
    /// the senders it touched (their nonces moved and balances fell), dropping
    /// what is now stale or unpayable. Returns how many were dropped as invalid.
    pub fn update(
        &mut self,
        committed: &[Hash],
        senders: &[Address],
        state: &impl StateReader,
    ) -> Result<usize, StoreError> {
        for hash in committed {
            self.remove(hash);
        }
        let mut dropped = 0;
        let mut touched: Vec<Address> = senders.to_vec();
        touched.sort_unstable();
        touched.dedup();
        for sender in touched {
            let Some(queue) = self.senders.get_mut(&sender) else {
                continue;
            };
            let account = state.account(&sender)?;
            queue.next_nonce = account.nonce;
            let mut stale = Vec::new();
            let mut pending: u128 = 0;
            for (nonce, hash) in &queue.by_nonce {
                let cost = self.txs[hash].tx.tx().cost().unwrap_or(u128::MAX);
                if *nonce < account.nonce {
                    stale.push(*hash);
                } else {
                    pending = pending.saturating_add(cost);
                    if pending > account.balance {
                        stale.push(*hash);
                    }
                }
            }
            for hash in stale {
                self.remove(&hash);
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Evicts transactions older than the TTL. Returns how many were evicted.
    pub fn evict_expired(&mut self, now_ms: u64) -> usize {
        let ttl = self.config.ttl_ms;
        let expired: Vec<Hash> = self
            .txs
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.added_ms) > ttl)
            .map(|(h, _)| *h)
            .collect();
        for hash in &expired {
            self.remove(hash);
        }
        expired.len()
    }
}

/// Why [`Mempool::add`] refused a transaction: the transaction's fault, or the
/// store failed while checking it.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error(transparent)]
    Rejected(#[from] MempoolError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError> for AddError {
    fn from(e: TxError) -> Self {
        AddError::Rejected(MempoolError::Invalid(e))
    }
}
