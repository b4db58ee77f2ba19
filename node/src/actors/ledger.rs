//! The ledger actor: the only writer of the store. It builds blocks from
//! mempool candidates, verifies proposed blocks (keeping their execution so
//! that committing a decided block costs one write), commits decided blocks,
//! and applies certified blocks fetched by sync. It runs on its own OS
//! thread: execution and RocksDB writes are blocking work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tally_consensus::{ValidatorSet, verify_certificate};
use tally_ledger::{
    Address, Block, BlockError, ChainTip, Commit, ExecParams, ExecutedBlock, Hash, Proposal,
    SignedTransaction, Store, StoreError, TxError, VerifiedTransaction, build_block, verify_block,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{info, warn};

use crate::actors::priority::Priority;
use crate::chain::{Secp256k1, commit_to_certificate, consensus_set};
use crate::metrics::LedgerMetrics;
use crate::trace::TxTraces;
use crate::{now_ms, par_map};

/// How far ahead of our clock a proposed block's time may be: the bound on
/// clock skew between correct validators that the chain assumes. A block
/// further ahead is refused for now (not marked invalid for the height): the
/// machine asks again in the next round, when our clock may have caught up.
pub const MAX_CLOCK_DRIFT_MS: u64 = 10_000;

/// A block just committed, for everyone who follows the chain.
#[derive(Clone, Debug)]
pub struct NewBlock {
    pub height: u64,
    pub hash: Hash,
    pub time: u64,
    pub state_root: Hash,
    pub tx_hashes: Arc<Vec<Hash>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("{0}")]
    Invalid(String),
    #[error("block {0} was never built or verified here")]
    UnknownBlock(Hash),
    #[error("block time {time} is more than {MAX_CLOCK_DRIFT_MS} ms ahead of our clock ({now})")]
    AheadOfClock { time: u64, now: u64 },
    #[error("asked to build block {asked}, but the next block is {next}")]
    WrongHeight { asked: u64, next: u64 },
    #[error("the validator set of height {0} is not known here yet")]
    UnknownSet(u64),
    #[error("the ledger actor has stopped")]
    Stopped,
}

impl LedgerError {
    /// Errors that mean the data was bad (a peer's fault), not the node's.
    /// A store failure met while executing a block is ours, never the peer's.
    pub fn is_invalid_data(&self) -> bool {
        match self {
            LedgerError::Block(BlockError::Store(_)) => false,
            LedgerError::Block(_) | LedgerError::Invalid(_) => true,
            _ => false,
        }
    }

    /// A failure of our own store: the node must stop rather than limp on.
    fn is_store_failure(&self) -> bool {
        matches!(
            self,
            LedgerError::Store(_) | LedgerError::Block(BlockError::Store(_))
        )
    }
}

enum Command {
    Build {
        proposer: Address,
        height: u64,
        /// For the transaction traces only.
        round: u32,
        candidates: Vec<Arc<VerifiedTransaction>>,
        reply: oneshot::Sender<Result<(Block, Vec<Hash>), LedgerError>>,
    },
    Verify {
        block: Block,
        /// For the transaction traces only.
        round: u32,
        /// For each transaction of the block, in order, the mempool's
        /// verified copy if it holds one.
        known: Vec<Option<Arc<VerifiedTransaction>>>,
        reply: oneshot::Sender<Result<(), LedgerError>>,
    },
    CommitDecided {
        hash: Hash,
        commit: Commit,
        reply: oneshot::Sender<Result<ChainTip, LedgerError>>,
    },
    ApplySynced {
        block: Block,
        commit: Commit,
        known: Vec<Option<Arc<VerifiedTransaction>>>,
        reply: oneshot::Sender<Result<ChainTip, LedgerError>>,
    },
}

/// Talks to the ledger actor.
#[derive(Clone, Debug)]
pub struct LedgerHandle {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ledger::Command")
    }
}

impl LedgerHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, LedgerError>>) -> Command,
    ) -> Result<T, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| LedgerError::Stopped)?;
        rx.await.map_err(|_| LedgerError::Stopped)?
    }

    /// Builds block `height` from `candidates` (in order); returns it and
    /// the candidates it left out as invalid. `WrongHeight` if the chain
    /// is no longer (or not yet) at `height - 1`.
    pub async fn build(
        &self,
        proposer: Address,
        height: u64,
        round: u32,
        candidates: Vec<Arc<VerifiedTransaction>>,
    ) -> Result<(Block, Vec<Hash>), LedgerError> {
        self.call(|reply| Command::Build {
            proposer,
            height,
            round,
            candidates,
            reply,
        })
        .await
    }

    /// Checks a proposed block for the next height.
    pub async fn verify(
        &self,
        block: Block,
        round: u32,
        known: Vec<Option<Arc<VerifiedTransaction>>>,
    ) -> Result<(), LedgerError> {
        self.call(|reply| Command::Verify {
            block,
            round,
            known,
            reply,
        })
        .await
    }

    /// Commits a block consensus decided (built or verified here before).
    pub async fn commit_decided(
        &self,
        hash: Hash,
        commit: Commit,
    ) -> Result<ChainTip, LedgerError> {
        self.call(|reply| Command::CommitDecided {
            hash,
            commit,
            reply,
        })
        .await
    }

    /// Checks a fetched block's certificate and contents, and commits it.
    /// `known[i]`, when present, is transaction `i` already recovered.
    pub async fn apply_synced(
        &self,
        block: Block,
        commit: Commit,
        known: Vec<Option<Arc<VerifiedTransaction>>>,
    ) -> Result<ChainTip, LedgerError> {
        self.call(|reply| Command::ApplySynced {
            block,
            commit,
            known,
            reply,
        })
        .await
    }
}

/// The set that must certify block `height`, as the store records it
/// (membership and power; no proposer rotation), or why it is not known.
pub fn certifying_set(store: &Store, height: u64) -> Result<ValidatorSet<Address>, LedgerError> {
    let at = store
        .validator_set_at(height)?
        .ok_or(LedgerError::UnknownSet(height))?;
    consensus_set(&at.members).map_err(|e| {
        LedgerError::Store(StoreError::Corrupt {
            what: "validator set",
            detail: e.to_string(),
        })
    })
}

/// Checks that `commit` is a certificate of block `hash` at `height` by
/// `set`, the validators of that height.
pub fn check_certificate(
    chain_id: u64,
    set: &ValidatorSet<Address>,
    commit: &Commit,
    height: u64,
    hash: &Hash,
) -> Result<(), LedgerError> {
    verify_certificate(
        &Secp256k1,
        chain_id,
        set,
        height,
        hash,
        &commit_to_certificate(commit),
    )
    .map(|_| ())
    .map_err(|e| LedgerError::Invalid(format!("certificate of block {height}: {e}")))
}

/// What a fetched block must pass before any work on its transactions'
/// signatures, cheapest first: the certificate is for this block, the block
/// holds no more transactions than a block may, the certificate is signed
/// by validators with more than 2/3 of the power, and the body is the one
/// the header commits to (one keccak256 per transaction). Block sync runs
/// it before recovering the transactions; the ledger again before applying.
pub fn check_synced_block(
    params: &ChainParams,
    store: &Store,
    block: &Block,
    commit: &Commit,
) -> Result<(), LedgerError> {
    let (hash, height) = (block.hash(), block.height());
    if commit.block_hash != hash {
        return Err(LedgerError::Invalid(format!(
            "certificate is for block {}, not {hash}",
            commit.block_hash
        )));
    }
    if block.txs.len() > params.exec.max_block_txs {
        return Err(LedgerError::Invalid(format!(
            "block {height} holds {} transactions, more than {}",
            block.txs.len(),
            params.exec.max_block_txs
        )));
    }
    let set = certifying_set(store, height)?;
    check_certificate(params.exec.chain_id, &set, commit, height, &hash)?;
    block
        .check_body()
        .map_err(|e| LedgerError::Invalid(format!("block {height}: {e}")))?;
    Ok(())
}

/// Everything the ledger actor needs to know about the chain.
#[derive(Clone, Debug)]
pub struct ChainParams {
    pub exec: ExecParams,
    pub genesis_time_ms: u64,
}

pub fn spawn(
    store: Arc<Store>,
    params: ChainParams,
    blocks: broadcast::Sender<Arc<NewBlock>>,
    mempool_committed: mpsc::UnboundedSender<(Arc<Vec<Hash>>, Vec<Address>)>,
    priority: Arc<Priority>,
    metrics: LedgerMetrics,
    traces: Arc<TxTraces>,
) -> anyhow::Result<(
    LedgerHandle,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    std::thread::JoinHandle<()>,
)> {
    let (tx, rx) = mpsc::channel(64);
    let last_time = match store.tip()?.height {
        0 => params.genesis_time_ms,
        height => match store.block_by_height(height)? {
            Some(block) => block.header.time,
            // A state-synced store starts at its snapshot's header.
            None => store
                .base_header()?
                .filter(|header| header.height == height)
                .map_or(params.genesis_time_ms, |header| header.time),
        },
    };
    let actor = Actor {
        store,
        params,
        executed: HashMap::new(),
        last_time,
        blocks,
        mempool_committed,
        priority,
        metrics,
        traces,
    };
    let (done_tx, done_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("ledger".into())
        .spawn(move || {
            let _ = done_tx.send(actor.run(rx));
        })?;
    let join = tokio::spawn(async move {
        done_rx
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the ledger thread panicked")))
    });
    Ok((LedgerHandle { commands: tx }, join, thread))
}

struct Actor {
    store: Arc<Store>,
    params: ChainParams,
    /// Blocks for the next height built or verified here, by hash.
    executed: HashMap<Hash, ExecutedBlock>,
    /// Time of the latest committed block (genesis time before block 1).
    last_time: u64,
    blocks: broadcast::Sender<Arc<NewBlock>>,
    mempool_committed: mpsc::UnboundedSender<(Arc<Vec<Hash>>, Vec<Address>)>,
    /// Building, verifying and committing blocks come before admission.
    priority: Arc<Priority>,
    metrics: LedgerMetrics,
    traces: Arc<TxTraces>,
}

impl Actor {
    fn run(mut self, mut commands: mpsc::Receiver<Command>) -> anyhow::Result<()> {
        while let Some(command) = commands.blocking_recv() {
            let _busy = self.priority.busy();
            match command {
                Command::Build {
                    proposer,
                    height,
                    round,
                    candidates,
                    reply,
                } => {
                    let _ = reply.send(self.build(proposer, height, round, &candidates));
                }
                Command::Verify {
                    block,
                    round,
                    known,
                    reply,
                } => {
                    let _ = reply.send(self.verify(block, round, known));
                }
                Command::CommitDecided {
                    hash,
                    commit,
                    reply,
                } => {
                    let result = self.commit_decided(hash, commit);
                    if let Some(e) = result.as_ref().err().filter(|e| e.is_store_failure()) {
                        // The store failed under us: stop rather than limp on.
                        let message = format!("committing block {hash}: {e}");
                        let _ = reply.send(result);
                        anyhow::bail!(message);
                    }
                    let _ = reply.send(result);
                }
                Command::ApplySynced {
                    block,
                    commit,
                    known,
                    reply,
                } => {
                    let result = self.apply_synced(block, commit, known);
                    if let Some(e) = result.as_ref().err().filter(|e| e.is_store_failure()) {
                        let message = format!("applying a synced block: {e}");
                        let _ = reply.send(result);
                        anyhow::bail!(message);
                    }
                    let _ = reply.send(result);
                }
            }
        }
        Ok(())
    }

    fn build(
        &mut self,
        proposer: Address,
        height: u64,
        round: u32,
        candidates: &[Arc<VerifiedTransaction>],
    ) -> Result<(Block, Vec<Hash>), LedgerError> {
        let tip = self.store.tip()?;
        // This actor is the store's only writer: the tip cannot move between
        // this check and the build.
        if height != tip.height + 1 {
            return Err(LedgerError::WrongHeight {
                asked: height,
                next: tip.height + 1,
            });
        }
        let last_commit = match tip.height {
            0 => None,
            h => Some(self.store.seen_commit(h)?.ok_or_else(|| {
                LedgerError::Invalid(format!("no certificate stored for block {h}"))
            })?),
        };
        let proposal = Proposal {
            time: now_ms().max(self.last_time + 1),
            proposer,
            last_commit,
        };
        let started = Instant::now();
        let (executed, skipped) = build_block(
            &self.store,
            &self.params.exec,
            proposal,
            candidates.iter().map(|tx| tx.as_ref()),
        )?;
        self.metrics
            .execution
            .observe(started.elapsed().as_secs_f64());
        self.traces
            .proposed(executed.tx_hashes.clone(), height, round, proposer);
        let block = executed.block.clone();
        self.executed.insert(block.hash(), executed);
        Ok((block, skipped.into_iter().map(|(hash, _)| hash).collect()))
    }

    /// The checks of a proposed block that are the node's, not the ledger's:
    /// proposer, time, and the previous block's certificate (the validator
    /// sets the header names are the ledger's, in `verify_block`).
    fn check_header(&self, block: &Block, tip: &ChainTip) -> Result<(), LedgerError> {
        let header = &block.header;
        if !certifying_set(&self.store, header.height)?.contains(&header.proposer) {
            return Err(LedgerError::Invalid(format!(
                "proposer {} is not a validator at height {}",
                header.proposer, header.height
            )));
        }
        if header.time <= self.last_time {
            return Err(LedgerError::Invalid(format!(
                "block time {} is not after the previous block's {}",
                header.time, self.last_time
            )));
        }
        let now = now_ms();
        if header.time > now.saturating_add(MAX_CLOCK_DRIFT_MS) {
            return Err(LedgerError::AheadOfClock {
                time: header.time,
                now,
            });
        }
        match (&block.last_commit, tip.height) {
            (None, 0) => Ok(()),
            (Some(_), 0) => Err(LedgerError::Invalid(
                "block 1 carries a previous-block certificate".into(),
            )),
            (None, _) => Err(LedgerError::Invalid(
                "block carries no certificate of the previous block".into(),
            )),
            (Some(commit), height) => {
                let set = certifying_set(&self.store, height)?;
                check_certificate(self.params.exec.chain_id, &set, commit, height, &tip.hash)
            }
        }
    }

    fn verify(
        &mut self,
        block: Block,
        round: u32,
        known: Vec<Option<Arc<VerifiedTransaction>>>,
    ) -> Result<(), LedgerError> {
        let hash = block.hash();
        if self.executed.contains_key(&hash) {
            return Ok(());
        }
        let tip = self.store.tip()?;
        self.check_header(&block, &tip)?;
        let (height, proposer) = (block.height(), block.header.proposer);
        let executed = self.execute(block, known)?;
        self.traces
            .proposed(executed.tx_hashes.clone(), height, round, proposer);
        self.executed.insert(hash, executed);
        Ok(())
    }

    /// Re-executes `block`. `known[i]`, when present, is transaction `i`
    /// already verified (by the mempool); the others are recovered on every
    /// core first, so execution itself only takes each one in turn.
    fn execute(
        &self,
        block: Block,
        mut known: Vec<Option<Arc<VerifiedTransaction>>>,
    ) -> Result<ExecutedBlock, LedgerError> {
        known.resize(block.txs.len(), None);
        let unseen: Vec<usize> = (0..block.txs.len())
            .filter(|&i| {
                known[i]
                    .as_ref()
                    .is_none_or(|k| k.signed() != &block.txs[i])
            })
            .collect();
        let started = Instant::now();
        let recovered = par_map(&unseen, |&i| block.txs[i].clone().verify().ok());
        if !unseen.is_empty() {
            self.metrics
                .recovery
                .observe(started.elapsed().as_secs_f64());
        }
        for (i, tx) in unseen.into_iter().zip(recovered) {
            known[i] = tx.map(Arc::new);
        }
        let mut prepared = known.into_iter();
        let take = |signed: &SignedTransaction| -> Result<Arc<VerifiedTransaction>, TxError> {
            match prepared.next().flatten() {
                Some(tx) if tx.signed() == signed => Ok(tx),
                // Failed to recover above: verify again for the error.
                _ => signed.clone().verify().map(Arc::new),
            }
        };
        let started = Instant::now();
        let executed = verify_block(&self.store, &self.params.exec, block, take)?;
        self.metrics
            .execution
            .observe(started.elapsed().as_secs_f64());
        Ok(executed)
    }

    fn commit_decided(&mut self, hash: Hash, commit: Commit) -> Result<ChainTip, LedgerError> {
        let tip = self.store.tip()?;
        if let Some(done) = self.already_committed(commit.height, &hash, &tip)? {
            return Ok(done);
        }
        let executed = self
            .executed
            .remove(&hash)
            .ok_or(LedgerError::UnknownBlock(hash))?;
        self.commit(executed, &commit)
    }

    /// `Some(tip)` if the block at `height` is committed already (by the
    /// other path: sync and consensus may race), an error if a different
    /// block is, `None` if it is not committed yet.
    fn already_committed(
        &self,
        height: u64,
        hash: &Hash,
        tip: &ChainTip,
    ) -> Result<Option<ChainTip>, LedgerError> {
        if height > tip.height {
            return Ok(None);
        }
        let stored = self.store.block_by_height(height)?.map(|b| b.hash());
        if stored.as_ref() == Some(hash) {
            Ok(Some(*tip))
        } else {
            Err(LedgerError::Invalid(format!(
                "block {hash} conflicts with committed block {stored:?} at height {height}"
            )))
        }
    }

    fn apply_synced(
        &mut self,
        block: Block,
        commit: Commit,
        known: Vec<Option<Arc<VerifiedTransaction>>>,
    ) -> Result<ChainTip, LedgerError> {
        let hash = block.hash();
        let height = block.height();
        if commit.block_hash != hash {
            return Err(LedgerError::Invalid(format!(
                "certificate is for block {}, not {hash}",
                commit.block_hash
            )));
        }
        // Cheap checks first: a block we have, or one that does not follow
        // our tip, costs no signature work.
        let tip = self.store.tip()?;
        if let Some(done) = self.already_committed(height, &hash, &tip)? {
            return Ok(done);
        }
        if height != tip.height + 1 {
            return Err(LedgerError::Invalid(format!(
                "synced block {height} does not follow our tip {}",
                tip.height
            )));
        }
        let started = Instant::now();
        check_synced_block(&self.params, &self.store, &block, &commit)?;
        self.metrics
            .certificate
            .observe(started.elapsed().as_secs_f64());
        let executed = match self.executed.remove(&hash) {
            Some(executed) => executed,
            None => self.execute(block, known)?,
        };
        self.commit(executed, &commit)
    }

    fn commit(
        &mut self,
        executed: ExecutedBlock,
        commit: &Commit,
    ) -> Result<ChainTip, LedgerError> {
        let time = executed.block.header.time;
        // The store indexes both; the mempool needs them too.
        let tx_hashes = Arc::new(executed.tx_hashes.clone());
        let senders = executed.senders.clone();
        let bytes = borsh::object_length(&executed.block).unwrap_or(0);
        let started = Instant::now();
        let tip = self.store.commit_with(executed, Some(commit))?;
        let m = &self.metrics;
        m.commit.observe(started.elapsed().as_secs_f64());
        m.blocks_committed.inc();
        m.txs_committed.inc_by(tx_hashes.len() as u64);
        m.block_txs.observe(tx_hashes.len() as f64);
        m.block_bytes.observe(bytes as f64);
        self.traces.committed(tx_hashes.clone(), tip.height);
        self.executed.clear();
        self.last_time = time;
        info!(
            height = tip.height,
            hash = %tip.hash,
            txs = tx_hashes.len(),
            round = commit.round,
            "committed block"
        );
        if self
            .mempool_committed
            .send((tx_hashes.clone(), senders))
            .is_err()
        {
            warn!("the mempool has stopped; committed transactions stay in it");
        }
        let _ = self.blocks.send(Arc::new(NewBlock {
            height: tip.height,
            hash: tip.hash,
            time,
            state_root: tip.state_root,
            tx_hashes,
        }));
        Ok(tip)
    }
}
