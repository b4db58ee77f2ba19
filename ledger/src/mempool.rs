//! The pool of verified transactions waiting for a block. No IO and no clock:
//! the caller passes the state to check against and the current time.
//!
//! Admission takes a [`VerifiedTransaction`], so the signature has already
//! been recovered (once, by the caller, possibly on another thread) and the
//! sender is cached from then on.
//!
//! Each sender's transactions are kept by nonce in two parts, as Ethereum's
//! pools do: the *executable* run of consecutive nonces from the account's
//! next nonce, which a block can include now, and the *queued* rest behind a
//! nonce gap, which cannot execute until the gap is filled and pays no fee
//! while it waits. Queued transactions have their own small limits (per
//! sender and in total), are evicted first when the pool is full, and are
//! reported as executable (for gossip) only once the gap closes.
//!
//! When the pool is full, a newcomer may displace one transaction: always a
//! sender's last one (so no run is broken): a queued one first, else an
//! executable one paying a lower fee than the newcomer, and a sender's only
//! (next-nonce) transaction only for another sender's next nonce. Otherwise
//! the newcomer is refused at once. A transaction with the nonce of a
//! pending one replaces it when it pays at least `price_bump_percent` more.
//!
//! Blocks take the executable runs highest fee first, each sender's nonces
//! in order. Every transaction that leaves the pool without being committed
//! is reported with a [`DropReason`] through [`Mempool::take_events`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;

use crate::crypto::{Address, Hash};
use crate::error::{MempoolError, StoreError, TxError};
use crate::governance::GovernanceParams;
use crate::state::{Account, StateReader};
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
    /// Most queued (behind a nonce gap) transactions held at once.
    pub max_queued: usize,
    /// Most queued transactions of one sender.
    pub max_queued_per_sender: usize,
    /// How much more (in percent) a replacement must pay than the
    /// transaction it replaces.
    pub price_bump_percent: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 100_000,
            max_bytes: 64 * 1024 * 1024,
            max_nonce_gap: 64,
            ttl_ms: 10 * 60 * 1000,
            max_queued: 25_000,
            max_queued_per_sender: 16,
            price_bump_percent: 10,
        }
    }
}

/// Why a transaction left the pool without being committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Another with the same sender and nonce and a higher fee took its place.
    Replaced,
    /// The pool was full and another transaction took its place (one
    /// paying more, or an executable one in place of a queued one).
    Evicted,
    /// It waited longer than the pool's time to live.
    Expired,
    /// Another transaction with its nonce was committed.
    NonceUsed,
    /// The sender can no longer pay for it.
    Unpayable,
    /// Block building found it invalid.
    Invalid,
    /// An earlier nonce of its sender left the pool, and the sender had more
    /// transactions behind the gap than the queued limit allows.
    Orphaned,
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DropReason::Replaced => {
                "replaced by a transaction with the same nonce and a higher fee"
            }
            DropReason::Evicted => "evicted from the full mempool to make room for another",
            DropReason::Expired => "expired: it waited in the mempool longer than its time to live",
            DropReason::NonceUsed => "another transaction with its nonce was committed",
            DropReason::Unpayable => "the sender's balance no longer covers it",
            DropReason::Invalid => "found invalid when building a block",
            DropReason::Orphaned => {
                "an earlier nonce of its sender was dropped, leaving too many behind the gap"
            }
        })
    }
}

impl DropReason {
    const ALL: [DropReason; 7] = [
        DropReason::Replaced,
        DropReason::Evicted,
        DropReason::Expired,
        DropReason::NonceUsed,
        DropReason::Unpayable,
        DropReason::Invalid,
        DropReason::Orphaned,
    ];

    /// A stable one-byte code (the journal stores it).
    pub fn code(self) -> u8 {
        match self {
            DropReason::Replaced => 1,
            DropReason::Evicted => 2,
            DropReason::Expired => 3,
            DropReason::NonceUsed => 4,
            DropReason::Unpayable => 5,
            DropReason::Invalid => 6,
            DropReason::Orphaned => 7,
        }
    }

    pub fn from_code(code: u8) -> Option<DropReason> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The reason a transaction that could not be admitted again (after a
    /// restart) is reported dropped with.
    pub fn of_refusal(error: &MempoolError) -> DropReason {
        match error {
            MempoolError::Invalid(TxError::NonceTooLow { .. }) => DropReason::NonceUsed,
            MempoolError::Invalid(
                TxError::InsufficientBalance { .. }
                | TxError::CostOverflow
                | TxError::BalanceOverflow,
            ) => DropReason::Unpayable,
            MempoolError::ReplacementUnderpriced { .. } => DropReason::Replaced,
            MempoolError::Full { .. } => DropReason::Evicted,
            MempoolError::QueueFull { .. } | MempoolError::NonceTooFarAhead { .. } => {
                DropReason::Orphaned
            }
            MempoolError::Invalid(_) | MempoolError::AlreadyKnown(_) => DropReason::Invalid,
        }
    }
}

/// What changed in the pool since the last [`Mempool::take_events`].
#[derive(Debug, Default)]
pub struct PoolEvents {
    /// Transactions that became executable (admitted into a run, promoted
    /// when a gap closed, or a replacement in a run), in order: the ones to
    /// gossip.
    pub executable: Vec<Arc<VerifiedTransaction>>,
    /// Transactions that left without being committed, and why.
    pub dropped: Vec<(Hash, DropReason)>,
}

/// Counts of what the pool holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub executable: usize,
    pub queued: usize,
    pub bytes: usize,
}

#[derive(Debug)]
struct PoolTx {
    tx: Arc<VerifiedTransaction>,
    /// The fee it pays and amount + fee, worked out once at admission.
    fee: u128,
    cost: u128,
    /// Arrival order: the tie-break between equal fees.
    seq: u64,
    added_ms: u64,
}

/// Where a sender's last transaction stands. Queued ones go first; a Tail
/// or a Head goes for a newcomer paying more (a Head only for another
/// sender's Head), the lowest fee first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// Behind a nonce gap.
    Queued,
    /// The last of an executable run of two or more.
    Tail,
    /// The sender's only transaction, at its next nonce.
    Head,
}

/// A sender's last transaction in the eviction index: class, then the
/// sender's lowest fee, then newest first.
type TailKey = (Class, u128, Reverse<u64>, Address);

#[derive(Debug, Default)]
struct SenderQueue {
    /// The account's next nonce as last read from the state.
    next_nonce: u64,
    /// The first nonce after the executable run (`next_nonce` if none).
    run_end: u64,
    by_nonce: BTreeMap<u64, Hash>,
    /// Sum of the costs (amount + fee) of `by_nonce`, kept up to date so
    /// admission does not sum the queue again.
    pending_cost: u128,
    /// How many of `by_nonce` are at or after `run_end`.
    queued: usize,
    /// The lowest fee among `by_nonce`: what a block builder gets for
    /// taking this sender's transactions, so what its last one is evicted
    /// by (a high fee behind a cheap next nonce protects nothing).
    min_fee: u128,
    /// This sender's entry in [`Mempool::tails`].
    tail: Option<TailKey>,
}

#[derive(Debug)]
pub struct Mempool {
    config: MempoolConfig,
    chain_id: u64,
    min_fee: u128,
    /// Governance transactions are checked against these rules on entry.
    governance: GovernanceParams,
    txs: HashMap<Hash, PoolTx>,
    senders: HashMap<Address, SenderQueue>,
    /// Every sender's last transaction, in eviction order.
    tails: BTreeSet<TailKey>,
    bytes: usize,
    queued: usize,
    next_seq: u64,
    events: PoolEvents,
}

impl Mempool {
    pub fn new(config: MempoolConfig, chain_id: u64, min_fee: u128) -> Mempool {
        Mempool {
            config,
            chain_id,
            min_fee,
            governance: GovernanceParams::for_genesis(1, None),
            txs: HashMap::new(),
            senders: HashMap::new(),
            tails: BTreeSet::new(),
            bytes: 0,
            queued: 0,
            next_seq: 0,
            events: PoolEvents::default(),
        }
    }

    /// The chain's governance rules, for the entry check of governance
    /// transactions (by default: no admin, so only validators pass it).
    pub fn with_governance(mut self, params: GovernanceParams) -> Mempool {
        self.governance = params;
        self
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

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            executable: self.txs.len() - self.queued,
            queued: self.queued,
            bytes: self.bytes,
        }
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.txs.contains_key(hash)
    }

    pub fn get(&self, hash: &Hash) -> Option<Arc<VerifiedTransaction>> {
        self.txs.get(hash).map(|p| p.tx.clone())
    }

    /// Whether a held transaction is executable now (false: queued or absent).
    pub fn is_executable(&self, hash: &Hash) -> bool {
        self.txs.get(hash).is_some_and(|p| {
            self.senders
                .get(&p.tx.sender())
                .is_some_and(|q| p.tx.nonce() < q.run_end)
        })
    }

    /// The first nonce after `sender`'s executable run here (its next nonce
    /// counting what it has pending), if it has any transaction here. May
    /// lag a block just committed: take the larger of it and the state's.
    pub fn pending_nonce(&self, sender: &Address) -> Option<u64> {
        self.senders.get(sender).map(|q| q.run_end)
    }

    /// What became executable or was dropped since the last call.
    pub fn take_events(&mut self) -> PoolEvents {
        std::mem::take(&mut self.events)
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
        let signed = tx.signed();
        if signed.chain_id() != self.chain_id {
            return Err(TxError::WrongChainId {
                expected: self.chain_id,
                got: signed.chain_id(),
            }
            .into());
        }
        let fee = signed.fee(self.min_fee)?;
        let cost = signed
            .amount()
            .checked_add(fee)
            .ok_or(TxError::CostOverflow)?;
        let nonce = signed.nonce();
        let sender = tx.sender();
        let account = state.account(&sender)?;
        if nonce < account.nonce {
            return Err(TxError::NonceTooLow {
                sender,
                expected: account.nonce,
                got: nonce,
            }
            .into());
        }
        if nonce - account.nonce > self.config.max_nonce_gap {
            return Err(MempoolError::NonceTooFarAhead {
                sender,
                expected: account.nonce,
                got: nonce,
                max_gap: self.config.max_nonce_gap,
            }
            .into());
        }
        if let Some(gov) = signed.as_governance() {
            // Against the committed state: one bound to fail (a stranger's,
            // a duplicate approval, a change past the limits) is refused
            // here rather than taking block space.
            state
                .governance()?
                .check(&self.governance, None, sender, &gov.tx.action)
                .map_err(TxError::Governance)?;
        }
        // The state may be ahead of the last update (a block committed
        // since): settle this sender against it first.
        if self
            .senders
            .get(&sender)
            .is_some_and(|q| q.next_nonce != account.nonce)
        {
            self.resync(sender, &account);
        }
        let existing = self
            .senders
            .get(&sender)
            .and_then(|q| q.by_nonce.get(&nonce).copied());
        if let Some(old) = existing {
            return self.replace(old, tx, fee, cost, &account, now_ms);
        }

        let (next_nonce, run_end, pending, sender_queued) = self
            .senders
            .get(&sender)
            .map_or((account.nonce, account.nonce, 0, 0), |q| {
                (q.next_nonce, q.run_end, q.pending_cost, q.queued)
            });
        // Everything this sender already has pending must stay payable too.
        let needed = pending.checked_add(cost).ok_or(TxError::CostOverflow)?;
        payable(sender, &account, needed)?;
        let class = if nonce > run_end {
            Class::Queued
        } else if nonce == next_nonce {
            Class::Head
        } else {
            Class::Tail
        };
        if class == Class::Queued && sender_queued >= self.config.max_queued_per_sender {
            return Err(MempoolError::QueueFull {
                sender,
                max: self.config.max_queued_per_sender,
                next: run_end,
            }
            .into());
        }
        self.make_room(class, fee, sender, tx.encoded_len())?;

        let queue = self.senders.entry(sender).or_default();
        if queue.by_nonce.is_empty() {
            queue.next_nonce = account.nonce;
            queue.run_end = account.nonce;
            queue.min_fee = fee;
        }
        queue.min_fee = queue.min_fee.min(fee);
        queue.by_nonce.insert(nonce, hash);
        queue.pending_cost = needed;
        self.bytes += tx.encoded_len();
        let tx = Arc::new(tx);
        self.txs.insert(
            hash,
            PoolTx {
                tx: tx.clone(),
                fee,
                cost,
                seq: self.next_seq,
                added_ms: now_ms,
            },
        );
        self.next_seq += 1;
        if class == Class::Queued {
            queue.queued += 1;
            self.queued += 1;
        } else {
            queue.run_end += 1;
            self.events.executable.push(tx);
            // The gap it filled may free queued ones behind it.
            while let Some(next) = queue.by_nonce.get(&queue.run_end) {
                self.events.executable.push(self.txs[next].tx.clone());
                queue.run_end += 1;
                queue.queued -= 1;
                self.queued -= 1;
            }
        }
        self.retail(sender);
        Ok(hash)
    }

    /// Replaces the pending `old` (same sender and nonce) with `tx` if it
    /// pays enough more and everything stays payable.
    fn replace(
        &mut self,
        old: Hash,
        tx: VerifiedTransaction,
        fee: u128,
        cost: u128,
        account: &Account,
        now_ms: u64,
    ) -> Result<Hash, AddError> {
        let sender = tx.sender();
        let nonce = tx.nonce();
        let (old_fee, old_cost, old_len) = {
            let old = &self.txs[&old];
            (old.fee, old.cost, old.tx.encoded_len())
        };
        // The bump rounded up, and at least 1.
        let bump = old_fee
            .saturating_mul(u128::from(self.config.price_bump_percent))
            .div_ceil(100);
        let min_fee = old_fee.saturating_add(bump.max(1));
        if fee < min_fee {
            return Err(MempoolError::ReplacementUnderpriced {
                sender,
                nonce,
                min_fee,
            }
            .into());
        }
        let queue = &self.senders[&sender];
        let needed = (queue.pending_cost - old_cost)
            .checked_add(cost)
            .ok_or(TxError::CostOverflow)?;
        payable(sender, account, needed)?;
        if self.bytes - old_len + tx.encoded_len() > self.config.max_bytes {
            return Err(self.full_bytes().into());
        }
        let hash = tx.hash();
        let executable = nonce < queue.run_end;
        let pooled = self.txs.remove(&old).expect("indexed");
        self.bytes = self.bytes - old_len + tx.encoded_len();
        let tx = Arc::new(tx);
        self.txs.insert(
            hash,
            PoolTx {
                tx: tx.clone(),
                fee,
                cost,
                seq: pooled.seq,
                added_ms: now_ms,
            },
        );
        let queue = self.senders.get_mut(&sender).expect("has the old one");
        queue.by_nonce.insert(nonce, hash);
        queue.pending_cost = needed;
        queue.min_fee = lowest_fee(&self.txs, queue);
        self.events.dropped.push((old, DropReason::Replaced));
        if executable {
            self.events.executable.push(tx);
        }
        self.retail(sender);
        Ok(hash)
    }

    /// Makes room for a newcomer of `class` paying `fee` and taking `len`
    /// bytes, evicting one other sender's last transaction if it must.
    fn make_room(
        &mut self,
        class: Class,
        fee: u128,
        sender: Address,
        len: usize,
    ) -> Result<(), MempoolError> {
        let queue_full = class == Class::Queued && self.queued >= self.config.max_queued;
        let count_full = self.txs.len() >= self.config.max_txs;
        let bytes_full = self.bytes + len > self.config.max_bytes;
        if !(queue_full || count_full || bytes_full) {
            return Ok(());
        }
        let victim = self.victim(class, fee, sender);
        let fits = victim.is_some_and(|hash| {
            self.bytes - self.txs[&hash].tx.encoded_len() + len <= self.config.max_bytes
        });
        match victim {
            Some(hash) if fits => {
                self.drop_tx(hash, DropReason::Evicted);
                Ok(())
            }
            _ if queue_full => Err(MempoolError::Full {
                reason: format!(
                    "it holds the maximum of {} transactions behind nonce gaps",
                    self.config.max_queued
                ),
            }),
            _ if count_full => Err(MempoolError::Full {
                reason: format!(
                    "it holds the maximum of {} transactions",
                    self.config.max_txs
                ),
            }),
            _ => Err(self.full_bytes()),
        }
    }

    fn full_bytes(&self) -> MempoolError {
        MempoolError::Full {
            reason: format!("it holds the maximum of {} bytes", self.config.max_bytes),
        }
    }

    /// The transaction a newcomer may displace (see the module doc), never
    /// one of its own sender's.
    fn victim(&self, class: Class, fee: u128, sender: Address) -> Option<Hash> {
        let first = |of: Class| {
            self.tails
                .range((of, 0, Reverse(u64::MAX), Address::default())..)
                .take_while(|key| key.0 == of)
                .find(|key| key.3 != sender)
                .copied()
        };
        let chosen = match first(Class::Queued) {
            Some(queued) if class != Class::Queued || queued.1 < fee => Some(queued),
            _ if class == Class::Queued => None,
            _ => {
                let tail = first(Class::Tail);
                let head = if class == Class::Head {
                    first(Class::Head)
                } else {
                    None
                };
                [tail, head]
                    .into_iter()
                    .flatten()
                    .filter(|key| key.1 < fee)
                    .min_by_key(|key| key.1)
            }
        }?;
        let queue = &self.senders[&chosen.3];
        queue.by_nonce.last_key_value().map(|(_, hash)| *hash)
    }

    /// Executable transactions, at most `max_txs` and `max_bytes` of them:
    /// each sender's run in nonce order, the sender whose next transaction
    /// pays the highest fee first. Among equal fees senders take turns (the
    /// one with fewer transactions taken so far first, then the earliest
    /// arrival), so a backlog of a few busy senders does not hold back a
    /// newcomer's first transfer: it goes into the next block that has room
    /// for one transaction per sender. Nothing is removed.
    pub fn reap(&self, max_txs: usize, max_bytes: usize) -> Vec<Arc<VerifiedTransaction>> {
        // Heap of (fee, fewest taken, earliest arrival, sender, nonce) of
        // each sender's next executable transaction.
        let mut heads = BinaryHeap::new();
        let entry = |sender: Address, queue: &SenderQueue, nonce: u64| {
            let pooled = &self.txs[&queue.by_nonce[&nonce]];
            (
                pooled.fee,
                Reverse(nonce - queue.next_nonce),
                Reverse(pooled.seq),
                sender,
                nonce,
            )
        };
        for (sender, queue) in &self.senders {
            if queue.next_nonce < queue.run_end {
                heads.push(entry(*sender, queue, queue.next_nonce));
            }
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some((_, _, _, sender, nonce)) = heads.pop() {
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
            if nonce + 1 < queue.run_end {
                heads.push(entry(sender, queue, nonce + 1));
            }
        }
        out
    }

    /// Drops one transaction that block building found invalid.
    pub fn remove(&mut self, hash: &Hash) -> Option<Arc<VerifiedTransaction>> {
        let tx = self.get(hash)?;
        self.drop_tx(*hash, DropReason::Invalid);
        Some(tx)
    }

    /// After a block is committed: drops its transactions, then rechecks only
    /// the senders it touched (their nonces moved and balances fell), dropping
    /// what is now stale or unpayable and promoting what the new nonce made
    /// executable. Returns how many were dropped.
    pub fn update(
        &mut self,
        committed: &[Hash],
        senders: &[Address],
        state: &impl StateReader,
    ) -> Result<usize, StoreError> {
        // Their senders' nonces moved: each is settled once its account is
        // read again below (settling against the old nonce would demote the
        // rest of its run).
        let mut touched: Vec<Address> = senders.to_vec();
        for hash in committed {
            if let Some(pooled) = self.take(hash) {
                touched.push(pooled.tx.sender());
            }
        }
        let before = self.events.dropped.len();
        touched.sort_unstable();
        touched.dedup();
        for sender in touched {
            if self.senders.contains_key(&sender) {
                let account = state.account(&sender)?;
                self.resync(sender, &account);
            }
        }
        Ok(self.events.dropped.len() - before)
    }

    /// Brings one sender in line with its account: drops the nonces it has
    /// used and what it can no longer pay, and settles the rest.
    fn resync(&mut self, sender: Address, account: &Account) {
        let Some(queue) = self.senders.get_mut(&sender) else {
            return;
        };
        queue.next_nonce = account.nonce;
        let mut drops = Vec::new();
        let mut pending: u128 = 0;
        for (nonce, hash) in &queue.by_nonce {
            let cost = self.txs[hash].cost;
            if *nonce < account.nonce {
                drops.push((*hash, DropReason::NonceUsed));
            } else {
                pending = pending.saturating_add(cost);
                if pending > account.balance {
                    drops.push((*hash, DropReason::Unpayable));
                }
            }
        }
        for (hash, reason) in drops {
            self.take(&hash);
            self.events.dropped.push((hash, reason));
        }
        self.settle(sender);
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
        // All out first, then each sender settled once (settling after each
        // one would orphan later nonces that expire in this pass anyway).
        let mut senders = Vec::new();
        for hash in &expired {
            if let Some(pooled) = self.take(hash) {
                self.events.dropped.push((*hash, DropReason::Expired));
                senders.push(pooled.tx.sender());
            }
        }
        senders.sort_unstable();
        senders.dedup();
        for sender in senders {
            self.settle(sender);
        }
        expired.len()
    }

    /// Drops one transaction for `reason` and settles its sender.
    fn drop_tx(&mut self, hash: Hash, reason: DropReason) {
        if let Some(pooled) = self.take(&hash) {
            self.events.dropped.push((hash, reason));
            self.settle(pooled.tx.sender());
        }
    }

    /// Takes a transaction out of the indexes, leaving its sender's run (and
    /// so what it demotes) to [`Self::settle`].
    fn take(&mut self, hash: &Hash) -> Option<PoolTx> {
        let pooled = self.txs.remove(hash)?;
        self.bytes -= pooled.tx.encoded_len();
        let queue = self
            .senders
            .get_mut(&pooled.tx.sender())
            .expect("every pooled tx has a sender queue");
        let nonce = pooled.tx.nonce();
        queue.by_nonce.remove(&nonce);
        if nonce >= queue.run_end {
            queue.queued -= 1;
            self.queued -= 1;
        }
        queue.pending_cost = queue.pending_cost.saturating_sub(pooled.cost);
        Some(pooled)
    }

    /// Recomputes a sender's run and queued count after removals (promoting
    /// what now follows its next nonce, demoting what lost an earlier nonce)
    /// and its lowest fee. What a demotion puts beyond the queued limits is
    /// dropped from the sender's own highest nonces, never from other
    /// senders.
    fn settle(&mut self, sender: Address) {
        let Some(queue) = self.senders.get_mut(&sender) else {
            return;
        };
        let old_end = queue.run_end;
        let mut end = queue.next_nonce;
        while queue.by_nonce.contains_key(&end) {
            end += 1;
        }
        let promoted_from = old_end.max(queue.next_nonce);
        if promoted_from < end {
            for (_, hash) in queue.by_nonce.range(promoted_from..end) {
                self.events.executable.push(self.txs[hash].tx.clone());
            }
        }
        let others = self.queued - queue.queued;
        let queued = queue.by_nonce.range(end..).count();
        let keep = queued
            .min(self.config.max_queued_per_sender)
            .min(self.config.max_queued.saturating_sub(others));
        let orphans: Vec<Hash> = queue
            .by_nonce
            .values()
            .rev()
            .take(queued - keep)
            .copied()
            .collect();
        for hash in &orphans {
            self.take(hash);
            self.events.dropped.push((*hash, DropReason::Orphaned));
        }
        let queue = self.senders.get_mut(&sender).expect("still there");
        queue.run_end = end;
        queue.queued = keep;
        self.queued = others + keep;
        queue.min_fee = lowest_fee(&self.txs, queue);
        self.retail(sender);
    }

    /// Re-indexes a sender's last transaction (or forgets an empty sender).
    fn retail(&mut self, sender: Address) {
        let Some(queue) = self.senders.get_mut(&sender) else {
            return;
        };
        if let Some(old) = queue.tail.take() {
            self.tails.remove(&old);
        }
        let Some((&nonce, hash)) = queue.by_nonce.last_key_value() else {
            self.senders.remove(&sender);
            return;
        };
        let class = if nonce >= queue.run_end {
            Class::Queued
        } else if nonce == queue.next_nonce {
            Class::Head
        } else {
            Class::Tail
        };
        let key = (class, queue.min_fee, Reverse(self.txs[hash].seq), sender);
        queue.tail = Some(key);
        self.tails.insert(key);
    }

    /// Recomputes every count and index from scratch and compares them with
    /// the ones kept up to date; describes the first difference. For tests
    /// and debugging: it costs a pass over the whole pool.
    pub fn audit(&self) -> Result<(), String> {
        let mut queued = 0;
        let mut bytes = 0;
        let mut tails = BTreeSet::new();
        for (sender, queue) in &self.senders {
            if queue.by_nonce.is_empty() {
                return Err(format!("{sender} has an empty queue"));
            }
            let mut end = queue.next_nonce;
            while queue.by_nonce.contains_key(&end) {
                end += 1;
            }
            if end != queue.run_end {
                return Err(format!(
                    "{sender}: run ends at {end}, kept {}",
                    queue.run_end
                ));
            }
            let q = queue.by_nonce.range(end..).count();
            if q != queue.queued || q > self.config.max_queued_per_sender {
                return Err(format!("{sender}: {q} queued, kept {}", queue.queued));
            }
            queued += q;
            let mut cost: u128 = 0;
            for (nonce, hash) in &queue.by_nonce {
                let pooled = self
                    .txs
                    .get(hash)
                    .ok_or(format!("{hash} not in the pool"))?;
                if pooled.tx.nonce() != *nonce
                    || pooled.tx.sender() != *sender
                    || *nonce < queue.next_nonce
                {
                    return Err(format!("{hash} indexed at {sender}/{nonce}"));
                }
                cost = cost.saturating_add(pooled.cost);
            }
            if lowest_fee(&self.txs, queue) != queue.min_fee {
                return Err(format!("{sender}: lowest fee kept {}", queue.min_fee));
            }
            if cost != queue.pending_cost {
                return Err(format!(
                    "{sender}: cost {cost}, kept {}",
                    queue.pending_cost
                ));
            }
            tails.insert(queue.tail.ok_or(format!("{sender} has no tail"))?);
        }
        for pooled in self.txs.values() {
            bytes += pooled.tx.encoded_len();
        }
        let indexed: usize = self.senders.values().map(|q| q.by_nonce.len()).sum();
        if indexed != self.txs.len() {
            return Err(format!("{indexed} indexed, {} held", self.txs.len()));
        }
        if queued != self.queued || queued > self.config.max_queued {
            return Err(format!("{queued} queued, kept {}", self.queued));
        }
        if bytes != self.bytes || bytes > self.config.max_bytes {
            return Err(format!("{bytes} bytes, kept {}", self.bytes));
        }
        if self.txs.len() > self.config.max_txs {
            return Err(format!(
                "{} held, limit {}",
                self.txs.len(),
                self.config.max_txs
            ));
        }
        if tails != self.tails {
            return Err("the eviction index differs".into());
        }
        Ok(())
    }
}

/// Whether `account` covers `needed` (everything its sender has pending).
fn payable(sender: Address, account: &Account, needed: u128) -> Result<(), TxError> {
    if needed > account.balance {
        return Err(TxError::InsufficientBalance {
            sender,
            available: account.balance,
            needed,
        });
    }
    Ok(())
}

/// The lowest fee of a sender's transactions.
fn lowest_fee(txs: &HashMap<Hash, PoolTx>, queue: &SenderQueue) -> u128 {
    queue
        .by_nonce
        .values()
        .map(|hash| txs[hash].fee)
        .min()
        .unwrap_or(0)
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
