//! The mempool actor: owns the pool, admits verified transactions (from RPC
//! and gossip), hands candidates to the block builder, forgets what blocks
//! commit, and gossips every transaction that becomes executable, in batches
//! of its own (a queued one waits until its nonce gap closes). It remembers
//! why recent transactions were dropped, for `tally_getTransaction`, and
//! journals what this node's own clients submitted (and why any of it was
//! dropped), so that a restart loses none of it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tally_ledger::{
    AddError, Address, DropReason, Hash, Journal, Mempool, MempoolError, PoolStats,
    SignedTransaction, Store, TxError, VerifiedTransaction,
};
use tally_p2p::{PeerId, Topic};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::actors::network::SeenTxs;
use crate::config::MempoolSection;
use crate::metrics::{KindLabel, MempoolMetrics, ReasonLabel};
use crate::now_ms;
use crate::trace::TxTraces;
use crate::wire::{TxBatch, encode};

enum Command {
    Add {
        txs: Vec<VerifiedTransaction>,
        /// Submitted by this node's clients (journaled), not gossiped.
        local: bool,
        /// The peer that passed gossiped ones on.
        from: Option<PeerId>,
        reply: oneshot::Sender<Vec<Result<Hash, AddError>>>,
    },
    Reap {
        max_txs: usize,
        max_bytes: usize,
        reply: oneshot::Sender<Vec<Arc<VerifiedTransaction>>>,
    },
    Lookup {
        hash: Hash,
        reply: oneshot::Sender<PoolStatus>,
    },
    GetMany {
        hashes: Vec<Hash>,
        reply: oneshot::Sender<Vec<Option<Arc<VerifiedTransaction>>>>,
    },
    Remove {
        hashes: Vec<Hash>,
    },
    Size {
        reply: oneshot::Sender<PoolStats>,
    },
    PendingNonce {
        sender: Address,
        reply: oneshot::Sender<Option<u64>>,
    },
}

/// Where the pool has a transaction.
#[derive(Clone, Debug)]
pub enum PoolStatus {
    /// Can go into the next block.
    Executable(Arc<VerifiedTransaction>),
    /// Waits behind a nonce gap of its sender.
    Queued(Arc<VerifiedTransaction>),
    /// Left the pool without being committed (recently, here).
    Dropped(DropReason),
    Unknown,
}

/// How many dropped transactions are remembered.
const DROPPED_KEPT: usize = 65_536;

/// The reasons of the latest [`DROPPED_KEPT`] drops, and whether each was
/// submitted here (journaled).
#[derive(Default)]
struct DroppedLog {
    reasons: HashMap<Hash, (DropReason, bool)>,
    order: VecDeque<Hash>,
}

impl DroppedLog {
    /// Records a drop; a transaction once submitted here stays local.
    fn record(&mut self, hash: Hash, reason: DropReason, local: bool) {
        if let Some(entry) = self.reasons.get_mut(&hash) {
            *entry = (reason, entry.1 || local);
            return;
        }
        self.reasons.insert(hash, (reason, local));
        self.order.push_back(hash);
        if self.order.len() > DROPPED_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.reasons.remove(&old);
            }
        }
    }

    fn reason(&self, hash: &Hash) -> Option<DropReason> {
        self.reasons.get(hash).map(|(reason, _)| *reason)
    }

    /// The local drops still remembered, oldest first.
    fn local(&self) -> Vec<(Hash, DropReason)> {
        self.order
            .iter()
            .filter_map(|hash| match self.reasons.get(hash) {
                Some((reason, true)) => Some((*hash, *reason)),
                _ => None,
            })
            .collect()
    }
}

/// Talks to the mempool actor.
#[derive(Clone, Debug)]
pub struct MempoolHandle {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mempool::Command")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the mempool actor has stopped")]
pub struct Stopped;

impl MempoolHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Admits transactions received by gossip; every one that is executable
    /// is gossiped on in this node's own batches.
    pub async fn add(
        &self,
        txs: Vec<VerifiedTransaction>,
        from: PeerId,
    ) -> Result<Vec<Result<Hash, AddError>>, Stopped> {
        self.call(|reply| Command::Add {
            txs,
            local: false,
            from: Some(from),
            reply,
        })
        .await
    }

    /// Admits transactions this node's clients submitted: as [`Self::add`],
    /// and each one admitted is in the journal before this returns.
    pub async fn submit(
        &self,
        txs: Vec<VerifiedTransaction>,
    ) -> Result<Vec<Result<Hash, AddError>>, Stopped> {
        self.call(|reply| Command::Add {
            txs,
            local: true,
            from: None,
            reply,
        })
        .await
    }

    pub async fn reap(
        &self,
        max_txs: usize,
        max_bytes: usize,
    ) -> Result<Vec<Arc<VerifiedTransaction>>, Stopped> {
        self.call(|reply| Command::Reap {
            max_txs,
            max_bytes,
            reply,
        })
        .await
    }

    pub async fn lookup(&self, hash: Hash) -> Result<PoolStatus, Stopped> {
        self.call(|reply| Command::Lookup { hash, reply }).await
    }

    /// For each of `hashes`, the transaction if held here (verified).
    pub async fn get_many(
        &self,
        hashes: Vec<Hash>,
    ) -> Result<Vec<Option<Arc<VerifiedTransaction>>>, Stopped> {
        self.call(|reply| Command::GetMany { hashes, reply }).await
    }

    /// Drops transactions (found invalid when building a block).
    pub async fn remove(&self, hashes: Vec<Hash>) -> Result<(), Stopped> {
        self.commands
            .send(Command::Remove { hashes })
            .await
            .map_err(|_| Stopped)
    }

    /// `sender`'s next nonce counting its executable transactions here
    /// (see [`tally_ledger::Mempool::pending_nonce`]).
    pub async fn pending_nonce(&self, sender: Address) -> Result<Option<u64>, Stopped> {
        self.call(|reply| Command::PendingNonce { sender, reply })
            .await
    }

    /// Transactions (executable and queued) and bytes held.
    pub async fn size(&self) -> Result<PoolStats, Stopped> {
        self.call(|reply| Command::Size { reply }).await
    }
}

// Each argument is one of the actor's links, passed once at start.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    config: &MempoolSection,
    journal: Option<PathBuf>,
    chain_id: u64,
    min_fee: u128,
    governance: tally_ledger::GovernanceParams,
    store: Arc<Store>,
    network: tally_p2p::Handle,
    committed: mpsc::UnboundedReceiver<(Arc<Vec<Hash>>, Vec<Address>)>,
    tx_arrived: Arc<Notify>,
    seen: Arc<SeenTxs>,
    metrics: MempoolMetrics,
    traces: Arc<TxTraces>,
) -> (MempoolHandle, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let (tx, rx) = mpsc::channel(1024);
    let actor = Actor {
        pool: Mempool::new(config.ledger_config(), chain_id, min_fee).with_governance(governance),
        store,
        network,
        outbox: TxBatch::default(),
        // Peers reject bigger batches.
        batch_max: config
            .gossip_batch_max
            .clamp(1, crate::actors::network::MAX_GOSSIP_BATCH),
        batch_interval: Duration::from_millis(config.gossip_batch_interval_ms.max(1)),
        tx_arrived,
        seen,
        dropped: DroppedLog::default(),
        journal: None,
        local: HashSet::new(),
        regossip: Vec::new(),
        compact_after: None,
        metrics,
        traces,
        outbox_hashes: Vec::new(),
    };
    let task = tokio::spawn(async move {
        let mut actor = actor;
        if let Some(path) = journal {
            actor.replay(path).await?;
        }
        actor.run(rx, committed).await
    });
    (MempoolHandle { commands: tx }, task)
}

struct Actor {
    pool: Mempool,
    store: Arc<Store>,
    network: tally_p2p::Handle,
    /// Admitted transactions not gossiped yet.
    outbox: TxBatch,
    batch_max: usize,
    batch_interval: Duration,
    tx_arrived: Arc<Notify>,
    /// Every hash admitted or committed, so gossip of it is not recovered
    /// again.
    seen: Arc<SeenTxs>,
    dropped: DroppedLog,
    journal: Option<Journal>,
    /// Transactions this node's clients submitted that are in the pool.
    local: HashSet<Hash>,
    /// Replayed from the journal, to gossip once there are peers.
    regossip: Vec<Hash>,
    /// After a failed compaction, not before this.
    compact_after: Option<Instant>,
    metrics: MempoolMetrics,
    traces: Arc<TxTraces>,
    /// The hashes of `outbox`, for the traces.
    outbox_hashes: Vec<Hash>,
}

/// The journal is compacted when it holds this many more entries than it
/// would after a compaction.
const JOURNAL_SLACK: usize = 65_536;

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut committed: mpsc::UnboundedReceiver<(Arc<Vec<Hash>>, Vec<Address>)>,
    ) -> anyhow::Result<()> {
        // The periodic work runs after whatever woke the loop, so a steady
        // flood of commands never starves it.
        let mut next_flush = Instant::now() + self.batch_interval;
        let mut next_second = Instant::now() + Duration::from_secs(1);
        loop {
            let wake = if self.outbox.txs.is_empty() {
                next_second
            } else {
                next_flush.min(next_second)
            };
            tokio::select! {
                biased;
                // Blocks first: a reap must not offer what is committed.
                Some((hashes, senders)) = committed.recv() => {
                    self.seen.insert_all(hashes.iter().copied());
                    for hash in hashes.iter() {
                        self.local.remove(hash);
                    }
                    let dropped = self.pool.update(&hashes, &senders, self.store.as_ref())?;
                    if dropped > 0 {
                        debug!(dropped, "mempool: transactions made invalid by a block dropped");
                    }
                    self.drain().await?;
                }
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await?,
                    None => return Ok(()),
                },
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            if now >= next_flush {
                if !self.outbox.txs.is_empty() {
                    self.flush().await;
                }
                next_flush = now + self.batch_interval;
            }
            if now >= next_second {
                let evicted = self.pool.evict_expired(now_ms());
                if evicted > 0 {
                    debug!(evicted, "mempool: expired transactions dropped");
                    self.drain().await?;
                }
                self.regossip_replayed().await;
                next_second = now + Duration::from_secs(1);
            }
            self.compact_journal();
        }
    }

    async fn handle(&mut self, command: Command) -> anyhow::Result<()> {
        match command {
            Command::Add {
                txs,
                local,
                from,
                reply,
            } => {
                let now = now_ms();
                let results: Vec<_> = txs
                    .into_iter()
                    .map(|tx| self.pool.add(tx, self.store.as_ref(), now))
                    .collect();
                self.observe_admission(&results, local);
                let admitted = results.iter().filter_map(|r| r.as_ref().ok().copied());
                let traced: Vec<Hash> = admitted.clone().collect();
                match from {
                    Some(peer) => self.traces.admitted(traced, &format!("peer {peer}")),
                    None => self.traces.admitted(traced, "rpc"),
                }
                self.seen.insert_all(admitted.clone());
                if local {
                    let admitted: Vec<Hash> = admitted.collect();
                    self.journal_accepted(&admitted)?;
                }
                // Drops this admission caused (evictions, replacements) are
                // journaled before the answer too. A journal that cannot be
                // written stops the node before any hash goes back.
                self.drain().await?;
                let _ = reply.send(results);
            }
            Command::Reap {
                max_txs,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(self.pool.reap(max_txs, max_bytes));
            }
            Command::Lookup { hash, reply } => {
                let status = match self.pool.get(&hash) {
                    Some(tx) if self.pool.is_executable(&hash) => PoolStatus::Executable(tx),
                    Some(tx) => PoolStatus::Queued(tx),
                    None => self
                        .dropped
                        .reason(&hash)
                        .map_or(PoolStatus::Unknown, PoolStatus::Dropped),
                };
                let _ = reply.send(status);
            }
            Command::GetMany { hashes, reply } => {
                let found = hashes.iter().map(|hash| self.pool.get(hash)).collect();
                let _ = reply.send(found);
            }
            Command::Remove { hashes } => {
                for hash in &hashes {
                    self.pool.remove(hash);
                }
                self.drain().await?;
            }
            Command::Size { reply } => {
                let _ = reply.send(self.pool.stats());
            }
            Command::PendingNonce { sender, reply } => {
                let _ = reply.send(self.pool.pending_nonce(&sender));
            }
        }
        Ok(())
    }

    fn observe_admission(&self, results: &[Result<Hash, AddError>], local: bool) {
        let kind = if local { "local" } else { "gossip" };
        for result in results {
            match result {
                Ok(_) => self
                    .metrics
                    .admitted
                    .get_or_create(&KindLabel { kind })
                    .inc(),
                Err(e) => self
                    .metrics
                    .refused
                    .get_or_create(&ReasonLabel {
                        reason: refusal_label(e),
                    })
                    .inc(),
            };
        }
    }

    /// Queues what became executable for gossip (waking the block builder)
    /// and records what was dropped (in the journal too, for local ones).
    async fn drain(&mut self) -> anyhow::Result<()> {
        let events = self.pool.take_events();
        let mut journaled = false;
        let mut traced_drops = Vec::new();
        for (hash, reason) in events.dropped {
            self.metrics
                .dropped
                .get_or_create(&ReasonLabel {
                    reason: drop_reason_label(reason),
                })
                .inc();
            traced_drops.push((hash, drop_reason_label(reason)));
            let local = self.local.remove(&hash);
            self.dropped.record(hash, reason, local);
            if let (true, Some(journal)) = (local, &mut self.journal) {
                journaled = true;
                journal
                    .dropped(&hash, reason)
                    .with_context(|| format!("writing {}", journal.path().display()))?;
            }
        }
        if journaled {
            self.flush_journal()?;
        }
        self.traces.dropped(traced_drops);
        let stats = self.pool.stats();
        self.metrics.executable.set(stats.executable as i64);
        self.metrics.queued.set(stats.queued as i64);
        self.metrics.bytes.set(stats.bytes as i64);
        // Not what left again in the same step (evicted, replaced), and
        // each once.
        let mut announced = HashSet::new();
        let executable: Vec<_> = events
            .executable
            .iter()
            .filter(|tx| self.pool.contains(&tx.hash()) && announced.insert(tx.hash()))
            .collect();
        if !executable.is_empty() {
            self.tx_arrived.notify_one();
            self.outbox
                .txs
                .extend(executable.iter().map(|tx| tx.signed().encode()));
            self.outbox_hashes
                .extend(executable.iter().map(|tx| tx.hash()));
            if self.outbox.txs.len() >= self.batch_max {
                self.flush().await;
            }
        }
        Ok(())
    }

    /// Gossips the outbox, in batches of at most `batch_max`.
    async fn flush(&mut self) {
        let mut hashes = std::mem::take(&mut self.outbox_hashes);
        let mut txs = std::mem::take(&mut self.outbox.txs);
        while !txs.is_empty() {
            let rest = txs.split_off(txs.len().min(self.batch_max));
            let rest_hashes = hashes.split_off(hashes.len().min(self.batch_max));
            let count = txs.len();
            match self
                .network
                .publish(Topic::Txs, encode(&TxBatch { txs }))
                .await
            {
                Ok(_) => {
                    self.traces.gossiped(std::mem::take(&mut hashes));
                    debug!(count, "gossiped a transaction batch");
                }
                // Alone (a one-validator dev chain) there is no one to tell.
                Err(tally_p2p::Error::NoPeers) => {}
                Err(e) => warn!(count, error = %e, "could not gossip transactions"),
            }
            txs = rest;
            hashes = rest_hashes;
        }
    }
}

impl Actor {
    /// Journals transactions this node's clients submitted and the pool
    /// admitted, before the answer goes back.
    fn journal_accepted(&mut self, admitted: &[Hash]) -> anyhow::Result<()> {
        self.local.extend(admitted.iter().copied());
        let Some(journal) = &mut self.journal else {
            return Ok(());
        };
        for hash in admitted {
            if let Some(tx) = self.pool.get(hash) {
                journal
                    .accepted(tx.signed())
                    .with_context(|| format!("writing {}", journal.path().display()))?;
            }
        }
        self.flush_journal()
    }

    fn flush_journal(&mut self) -> anyhow::Result<()> {
        if let Some(journal) = &mut self.journal {
            journal
                .flush()
                .with_context(|| format!("writing {}", journal.path().display()))?;
        }
        Ok(())
    }

    /// Reads the journal, admits again what the store does not show
    /// committed, records as dropped what can no longer apply, and starts a
    /// fresh journal holding what was read (so a torn tail is gone before
    /// anything is appended).
    async fn replay(&mut self, path: PathBuf) -> anyhow::Result<()> {
        let read_path = path.clone();
        let replay = tokio::task::spawn_blocking(move || Journal::read(&read_path))
            .await?
            .with_context(|| format!("reading the mempool journal {}", path.display()))?;
        if let Some(why) = &replay.stopped {
            warn!(
                path = %path.display(),
                entries = replay.entries,
                ignored_bytes = replay.ignored_bytes,
                "mempool journal: read up to its last whole entry; the rest is ignored: {why}"
            );
        }
        for (hash, reason) in &replay.dropped {
            self.dropped.record(*hash, *reason, true);
        }
        let hashes: Vec<Hash> = replay.txs.iter().map(SignedTransaction::hash).collect();
        let known = self.store.senders(&hashes)?;
        let mut pending: Vec<SignedTransaction> = Vec::with_capacity(replay.txs.len());
        let mut committed = 0usize;
        for (tx, known) in replay.txs.into_iter().zip(known) {
            match known {
                Some(_) => committed += 1,
                None => pending.push(tx),
            }
        }
        let verified = tokio::task::spawn_blocking(move || {
            crate::par_map(&pending, |tx| (tx.hash(), tx.clone().verify()))
        })
        .await?;
        let mut txs = Vec::with_capacity(verified.len());
        for (hash, result) in verified {
            match result {
                Ok(tx) => txs.push(tx),
                // It was checked when submitted: the journal is damaged.
                Err(e) => {
                    warn!(%hash, error = %e, "mempool journal: a transaction does not verify");
                    self.dropped.record(hash, DropReason::Invalid, true);
                }
            }
        }
        // Each sender's nonces in order, so none waits behind a gap the
        // replay itself made.
        txs.sort_by_key(|tx| (tx.sender(), tx.nonce()));
        let now = now_ms();
        let (mut admitted, mut refused) = (0usize, 0usize);
        for tx in txs {
            let hash = tx.hash();
            match self.pool.add(tx, self.store.as_ref(), now) {
                Ok(_) | Err(AddError::Rejected(MempoolError::AlreadyKnown(_))) => {
                    admitted += 1;
                    self.local.insert(hash);
                    self.regossip.push(hash);
                }
                Err(AddError::Rejected(e)) => {
                    refused += 1;
                    debug!(%hash, error = %e, "mempool journal: a transaction no longer applies");
                    self.dropped.record(hash, DropReason::of_refusal(&e), true);
                }
                Err(AddError::Store(e)) => return Err(e.into()),
            }
        }
        self.traces.admitted(self.regossip.clone(), "journal");
        // Nothing to gossip to yet: the replayed ones go out once the
        // network takes them.
        self.seen.insert_all(self.regossip.iter().copied());
        if admitted > 0 {
            self.tx_arrived.notify_one();
        }
        for (hash, reason) in self.pool.take_events().dropped {
            let local = self.local.remove(&hash);
            self.dropped.record(hash, reason, local);
        }
        let (txs, dropped) = self.journal_contents();
        let create_path = path.clone();
        let journal =
            tokio::task::spawn_blocking(move || Journal::create(&create_path, &txs, &dropped))
                .await?
                .with_context(|| format!("rewriting the mempool journal {}", path.display()))?;
        self.journal = Some(journal);
        if admitted + refused + committed > 0 {
            info!(
                admitted,
                committed, refused, "mempool journal: transactions submitted before the restart"
            );
        }
        Ok(())
    }

    /// What a compacted journal holds: the local transactions in the pool
    /// (each sender's in nonce order) and the local drops remembered.
    fn journal_contents(&self) -> (Vec<SignedTransaction>, Vec<(Hash, DropReason)>) {
        let mut txs: Vec<Arc<VerifiedTransaction>> =
            self.local.iter().filter_map(|h| self.pool.get(h)).collect();
        txs.sort_by_key(|tx| (tx.sender(), tx.nonce()));
        (
            txs.iter().map(|tx| tx.signed().clone()).collect(),
            self.dropped.local(),
        )
    }

    /// Rewrites the journal when it has grown well past what it must hold.
    fn compact_journal(&mut self) {
        let Some(journal) = &self.journal else {
            return;
        };
        if self.compact_after.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let live = self.local.len() + self.dropped.order.len().min(DROPPED_KEPT);
        if journal.entries() <= 2 * live + JOURNAL_SLACK {
            return;
        }
        let (txs, dropped) = self.journal_contents();
        let started = Instant::now();
        let Some(journal) = &mut self.journal else {
            return;
        };
        self.compact_after = None;
        match journal.rewrite(&txs, &dropped) {
            Ok(()) => debug!(
                txs = txs.len(),
                dropped = dropped.len(),
                ms = started.elapsed().as_millis() as u64,
                "mempool journal compacted"
            ),
            Err(e) => {
                // The journal is as it was and still appends; try again later.
                warn!(error = %e, "mempool: cannot compact the journal; retrying in 10 s");
                self.compact_after = Some(Instant::now() + Duration::from_secs(10));
            }
        }
    }

    /// Gossips the transactions replayed at start, once the network takes
    /// them (at start there is no one to tell yet): the list is kept until
    /// a publish succeeds.
    async fn regossip_replayed(&mut self) {
        if self.regossip.is_empty() {
            return;
        }
        let txs: Vec<Vec<u8>> = self
            .regossip
            .iter()
            .filter(|hash| self.pool.is_executable(hash))
            .filter_map(|hash| self.pool.get(hash))
            .map(|tx| tx.signed().encode())
            .collect();
        for chunk in txs.chunks(self.batch_max) {
            let batch = TxBatch {
                txs: chunk.to_vec(),
            };
            match self.network.publish(Topic::Txs, encode(&batch)).await {
                Ok(_) => {}
                Err(tally_p2p::Error::NoPeers) => return,
                Err(e) => {
                    warn!(error = %e, "could not gossip replayed transactions");
                    return;
                }
            }
        }
        debug!(
            count = txs.len(),
            "gossiped the transactions replayed from the journal"
        );
        self.regossip.clear();
    }
}

/// A short, stable name for why a transaction was refused (a metric label).
fn refusal_label(e: &AddError) -> &'static str {
    match e {
        AddError::Rejected(MempoolError::Invalid(tx)) => match tx {
            TxError::NonceTooLow { .. } => "nonce_too_low",
            TxError::NonceGap { .. } => "nonce_gap",
            TxError::FeeTooLow { .. } => "fee_too_low",
            TxError::InsufficientBalance { .. } => "insufficient_balance",
            TxError::BadSignature(_) => "bad_signature",
            TxError::WrongChainId { .. } => "wrong_chain",
            _ => "malformed",
        },
        AddError::Rejected(MempoolError::AlreadyKnown(_)) => "already_known",
        AddError::Rejected(MempoolError::ReplacementUnderpriced { .. }) => "underpriced",
        AddError::Rejected(MempoolError::QueueFull { .. }) => "queue_full",
        AddError::Rejected(MempoolError::NonceTooFarAhead { .. }) => "nonce_too_far",
        AddError::Rejected(MempoolError::Full { .. }) => "full",
        AddError::Store(_) => "store_error",
    }
}

fn drop_reason_label(reason: DropReason) -> &'static str {
    match reason {
        DropReason::Replaced => "replaced",
        DropReason::Evicted => "evicted",
        DropReason::Expired => "expired",
        DropReason::NonceUsed => "nonce_used",
        DropReason::Unpayable => "unpayable",
        DropReason::Invalid => "invalid",
        DropReason::Orphaned => "orphaned",
    }
}
