//! The mempool actor: owns the pool, admits verified transactions (from RPC
//! and gossip), hands candidates to the block builder, forgets what blocks
//! commit, and gossips every transaction that becomes executable, in batches
//! of its own (a queued one waits until its nonce gap closes). It remembers
//! why recent transactions were dropped, for `tally_getTransaction`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tally_ledger::{
    AddError, Address, DropReason, Hash, Mempool, PoolStats, Store, VerifiedTransaction,
};
use tally_p2p::Topic;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, warn};

use crate::actors::network::SeenTxs;
use crate::config::MempoolSection;
use crate::now_ms;
use crate::wire::{TxBatch, encode};

enum Command {
    Add {
        txs: Vec<VerifiedTransaction>,
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

/// The reasons of the latest [`DROPPED_KEPT`] drops.
#[derive(Default)]
struct DroppedLog {
    reasons: HashMap<Hash, DropReason>,
    order: VecDeque<Hash>,
}

impl DroppedLog {
    fn record(&mut self, hash: Hash, reason: DropReason) {
        if self.reasons.insert(hash, reason).is_none() {
            self.order.push_back(hash);
            if self.order.len() > DROPPED_KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.reasons.remove(&old);
                }
            }
        }
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

    /// Admits transactions (submitted here or received by gossip); every
    /// one admitted is gossiped on in this node's own batches.
    pub async fn add(
        &self,
        txs: Vec<VerifiedTransaction>,
    ) -> Result<Vec<Result<Hash, AddError>>, Stopped> {
        self.call(|reply| Command::Add { txs, reply }).await
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

    /// Transactions (executable and queued) and bytes held.
    pub async fn size(&self) -> Result<PoolStats, Stopped> {
        self.call(|reply| Command::Size { reply }).await
    }
}

pub fn spawn(
    config: &MempoolSection,
    chain_id: u64,
    min_fee: u128,
    store: Arc<Store>,
    network: tally_p2p::Handle,
    committed: mpsc::UnboundedReceiver<(Arc<Vec<Hash>>, Vec<Address>)>,
    tx_arrived: Arc<Notify>,
    seen: Arc<SeenTxs>,
) -> (MempoolHandle, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let (tx, rx) = mpsc::channel(1024);
    let actor = Actor {
        pool: Mempool::new(config.ledger_config(), chain_id, min_fee),
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
    };
    (
        MempoolHandle { commands: tx },
        tokio::spawn(actor.run(rx, committed)),
    )
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
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut committed: mpsc::UnboundedReceiver<(Arc<Vec<Hash>>, Vec<Address>)>,
    ) -> anyhow::Result<()> {
        let mut flush = tokio::time::interval(self.batch_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut evict = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                // Blocks first: a reap must not offer what is committed.
                Some((hashes, senders)) = committed.recv() => {
                    self.seen.insert_all(hashes.iter().copied());
                    let dropped = self.pool.update(&hashes, &senders, self.store.as_ref())?;
                    if dropped > 0 {
                        debug!(dropped, "mempool: transactions made invalid by a block dropped");
                    }
                    self.drain().await;
                }
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await?,
                    None => return Ok(()),
                },
                _ = flush.tick(), if !self.outbox.txs.is_empty() => self.flush().await,
                _ = evict.tick() => {
                    let evicted = self.pool.evict_expired(now_ms());
                    if evicted > 0 {
                        debug!(evicted, "mempool: expired transactions dropped");
                        self.drain().await;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, command: Command) -> anyhow::Result<()> {
        match command {
            Command::Add { txs, reply } => {
                let now = now_ms();
                let results: Vec<_> = txs
                    .into_iter()
                    .map(|tx| self.pool.add(tx, self.store.as_ref(), now))
                    .collect();
                self.seen
                    .insert_all(results.iter().filter_map(|r| r.as_ref().ok().copied()));
                let _ = reply.send(results);
                self.drain().await;
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
                        .reasons
                        .get(&hash)
                        .map_or(PoolStatus::Unknown, |r| PoolStatus::Dropped(*r)),
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
                self.drain().await;
            }
            Command::Size { reply } => {
                let _ = reply.send(self.pool.stats());
            }
        }
        Ok(())
    }

    /// Queues what became executable for gossip (waking the block builder)
    /// and records what was dropped.
    async fn drain(&mut self) {
        let events = self.pool.take_events();
        for (hash, reason) in events.dropped {
            self.dropped.record(hash, reason);
        }
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
            if self.outbox.txs.len() >= self.batch_max {
                self.flush().await;
            }
        }
    }

    /// Gossips the outbox, in batches of at most `batch_max`.
    async fn flush(&mut self) {
        let mut txs = std::mem::take(&mut self.outbox.txs);
        while !txs.is_empty() {
            let rest = txs.split_off(txs.len().min(self.batch_max));
            let count = txs.len();
            match self
                .network
                .publish(Topic::Txs, encode(&TxBatch { txs }))
                .await
            {
                Ok(_) => debug!(count, "gossiped a transaction batch"),
                // Alone (a one-validator dev chain) there is no one to tell.
                Err(tally_p2p::Error::NoPeers) => {}
                Err(e) => warn!(count, error = %e, "could not gossip transactions"),
            }
            txs = rest;
        }
    }
}
