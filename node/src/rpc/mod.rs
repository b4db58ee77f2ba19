//! The JSON-RPC server: implements `tally_rpc::TallyApiServer` (here) and
//! `tally_rpc::eth::EthApiServer` ([`eth`]) over the store (reads), the
//! mempool actor (submissions) and the stream of committed blocks (waits and
//! subscriptions), on one port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jsonrpsee::core::{SubscriptionError, SubscriptionResult, async_trait};
use jsonrpsee::server::{PendingSubscriptionSink, ServerHandle, SubscriptionSink};
use jsonrpsee::types::ErrorObjectOwned;
use tally_ledger::{
    AddError, Address, Block, Hash, Member, MempoolError, SignedTransaction, Store, TxError,
    VerifiedTransaction,
};
use tally_rpc::{
    AccountInfo, AccountProofInfo, BlockInfo, BlockSummary, ConsensusState, GovernanceInfo,
    NetPeerInfo, PeerInfo, Status, SubmitError, SubmitResult, TallyApiServer, TxInfo, TxStatusInfo,
    TxTrace, ValidatorInfo, ValidatorSetInfo, codes, error, parse_address, parse_hash, parse_hex,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot};
use tracing::error;

use crate::actors::consensus::StateQuery;
use crate::actors::ledger::NewBlock;
use crate::actors::mempool::{MempoolHandle, PoolStatus};
use crate::actors::network::PeerView;
use crate::actors::priority::Priority;
use crate::config::RpcConfig;
use crate::metrics::RpcMetrics;
use crate::par_map;
use crate::trace::TxTraces;
use prometheus_client::metrics::gauge::Gauge;

mod eth;
mod metered;
pub mod server;

/// Most transactions in one `tally_sendRawTransactions` call.
pub const MAX_SUBMIT_BATCH: usize = 20_000;
const DEFAULT_WAIT_MS: u64 = 30_000;
/// How often a wait or subscription looks for a drop between the blocks.
const STATUS_RECHECK: Duration = Duration::from_secs(1);
const MAX_WAIT_MS: u64 = 600_000;

/// What the RPC server serves from.
#[derive(Clone, Debug)]
pub struct RpcContext {
    pub store: Arc<Store>,
    pub mempool: MempoolHandle,
    pub network: tally_p2p::Handle,
    pub blocks: broadcast::Sender<Arc<NewBlock>>,
    pub syncing: Arc<AtomicBool>,
    pub chain_id: u64,
    /// The execution rules (minimum fee, block limits) the `eth_` fee and
    /// gas answers derive from.
    pub exec: tally_ledger::ExecParams,
    pub chain_name: String,
    pub genesis_hash: Hash,
    /// The genesis time (ms since the Unix epoch): block 0's timestamp.
    pub genesis_time_ms: u64,
    pub validator: Option<Address>,
    pub p2p_addrs: Vec<String>,
    pub recovery: Recovery,
    /// One permit per open subscription, over all connections.
    pub subscriptions: Arc<Semaphore>,
    /// Recovery steps aside while consensus works.
    pub priority: Arc<Priority>,
    pub metrics: RpcMetrics,
    /// Asks the consensus driver where it stands.
    pub consensus: mpsc::Sender<StateQuery>,
    /// What the node learnt about its peers.
    pub peer_view: Arc<PeerView>,
    /// Recent transactions' lives.
    pub traces: Arc<TxTraces>,
}

/// Starts the server; it runs until the handle is stopped.
pub async fn start(
    config: &RpcConfig,
    context: RpcContext,
) -> anyhow::Result<(SocketAddr, ServerHandle)> {
    let metrics = context.metrics.clone();
    let mut methods = TallyApiServer::into_rpc(context.clone());
    methods.merge(tally_rpc::eth::EthApiServer::into_rpc(context))?;
    server::start(config, methods, metrics).await
}

/// A set as the RPC shows it.
pub fn set_info(height: u64, since: u64, members: &[Member]) -> ValidatorSetInfo {
    ValidatorSetInfo {
        height,
        since,
        total_power: members.iter().map(|m| m.power).sum(),
        validators_hash: tally_ledger::governance::validators_hash(members),
        validators: members
            .iter()
            .map(|m| ValidatorInfo {
                name: m.name.clone(),
                address: m.address,
                power: m.power,
                public_key: format!("0x{}", hex::encode(m.public_key)),
            })
            .collect(),
    }
}

/// An error of the node's own (a store read failed, an actor stopped): the
/// whole of it goes to the log under an id, and the client gets only the id,
/// so nothing about the node's insides leaks out.
fn internal(e: impl std::fmt::Display) -> ErrorObjectOwned {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static RUN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        let mut bytes = [0u8; 4];
        let _ = getrandom::fill(&mut bytes);
        u32::from_le_bytes(bytes)
    });
    let id = format!("{run:08x}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    error!(error_id = %id, error = %e, "JSON-RPC internal error");
    error(
        codes::INTERNAL,
        format!("internal error; the node's log has the details under error_id={id}"),
    )
}

/// The code of a transaction's rejection.
fn tx_error_code(e: &TxError) -> i32 {
    match e {
        TxError::TooLarge { .. }
        | TxError::Decode(_)
        | TxError::MemoTooLong { .. }
        | TxError::BadSignature(_)
        | TxError::EthTypeNotSupported(_)
        | TxError::EthNotReplayProtected
        | TxError::EthContractCreation
        | TxError::EthHasData
        | TxError::EthHasAccessList
        | TxError::IntrinsicGasTooLow { .. }
        | TxError::TipAboveFeeCap { .. } => codes::INVALID_TX,
        TxError::WrongChainId { .. } => codes::WRONG_CHAIN,
        TxError::NonceTooLow { .. } | TxError::NonceGap { .. } => codes::BAD_NONCE,
        TxError::FeeTooLow { .. }
        | TxError::FeeCapBelowBaseFee { .. }
        | TxError::InsufficientBalance { .. }
        | TxError::CostOverflow
        | TxError::BalanceOverflow => codes::CANNOT_PAY,
        TxError::Governance(_) => codes::GOVERNANCE,
    }
}

fn add_error(e: &AddError) -> ErrorObjectOwned {
    let code = match e {
        AddError::Rejected(MempoolError::Invalid(tx)) => tx_error_code(tx),
        AddError::Rejected(MempoolError::AlreadyKnown(_)) => codes::ALREADY_KNOWN,
        AddError::Rejected(
            MempoolError::QueueFull { .. } | MempoolError::NonceTooFarAhead { .. },
        ) => codes::BAD_NONCE,
        AddError::Rejected(MempoolError::ReplacementUnderpriced { .. }) => {
            codes::REPLACEMENT_UNDERPRICED
        }
        AddError::Rejected(MempoolError::Full { .. }) => codes::MEMPOOL_FULL,
        AddError::Store(store) => return internal(store),
    };
    error(code, e.to_string())
}

fn block_info(block: &Block) -> BlockInfo {
    BlockInfo {
        hash: block.hash(),
        header: block.header.clone(),
        tx_hashes: block.txs.iter().map(SignedTransaction::hash).collect(),
        last_commit: block.last_commit.clone(),
    }
}

fn summary(block: &NewBlock) -> BlockSummary {
    BlockSummary {
        height: block.height,
        hash: block.hash,
        time: block.time,
        tx_count: u32::try_from(block.tx_hashes.len()).unwrap_or(u32::MAX),
        state_root: block.state_root,
    }
}

/// Signature recovery for submissions, off the async workers: at most
/// `running` jobs at once on the blocking pool and [`MAX_WAITING`] waiting
/// for one; beyond that the call is answered "busy" at once, so a flood of
/// submissions cannot queue without bound in front of the node's own work.
#[derive(Clone, Debug)]
pub struct Recovery {
    running: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    /// `waiting`, for the metrics.
    queue: Gauge,
}

/// Submissions that may wait for a recovery job.
const MAX_WAITING: usize = 64;

impl Recovery {
    /// As many jobs as cores (a batch's job spreads over the cores itself,
    /// so a burst of batches can use twice as many threads as cores).
    pub fn new(queue: Gauge) -> Recovery {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Recovery {
            running: Arc::new(Semaphore::new(cores)),
            waiting: Arc::new(AtomicUsize::new(0)),
            queue,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ErrorObjectOwned> {
        let permit = match self.running.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Counted while waiting, also when the caller goes away.
                struct Waiting<'a>(&'a AtomicUsize, &'a Gauge);
                impl Drop for Waiting<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::Relaxed);
                        self.1.dec();
                    }
                }
                self.queue.inc();
                let waiting = Waiting(&self.waiting, &self.queue);
                if self.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
                    return Err(error(
                        codes::BUSY,
                        "busy: the node is checking as many submissions as it queues; retry shortly",
                    ));
                }
                let permit = self
                    .running
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(internal)?;
                drop(waiting);
                permit
            }
        };
        tokio::task::spawn_blocking(move || {
            let out = job();
            drop(permit);
            out
        })
        .await
        .map_err(internal)
    }
}

impl RpcContext {
    /// Decodes and verifies raw transactions on every core.
    async fn verify_all(
        &self,
        raw: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<VerifiedTransaction, TxError>>, ErrorObjectOwned> {
        let priority = self.priority.clone();
        self.recovery
            .run(move || {
                par_map(&raw, |bytes| {
                    priority.step_aside();
                    VerifiedTransaction::from_bytes(bytes)
                })
            })
            .await
    }

    async fn submit(&self, tx: &str) -> Result<Hash, ErrorObjectOwned> {
        let bytes = parse_hex("transaction", tx)?;
        let priority = self.priority.clone();
        let verified = self
            .recovery
            .run(move || {
                priority.step_aside();
                VerifiedTransaction::from_bytes(&bytes)
            })
            .await?
            .map_err(|e| error(tx_error_code(&e), e.to_string()))?;
        let mut results = self
            .mempool
            .submit(vec![verified])
            .await
            .map_err(internal)?;
        match results.pop() {
            Some(Ok(hash)) => Ok(hash),
            Some(Err(e)) => Err(add_error(&e)),
            None => Err(internal("the mempool returned no result")),
        }
    }

    async fn tx_info(&self, hash: Hash) -> Result<TxInfo, ErrorObjectOwned> {
        if let Some(record) = self.store.transaction(&hash).map_err(internal)? {
            let block_hash = self.block_hash(record.location.height)?;
            let sender = Some(record.sender);
            return Ok(TxInfo {
                hash,
                status: TxStatusInfo::Committed {
                    height: record.location.height,
                    index: record.location.index,
                    block_hash,
                    receipt: record.receipt,
                },
                tx: Some(record.tx),
                sender,
            });
        }
        let (status, tx) = match self.mempool.lookup(hash).await.map_err(internal)? {
            PoolStatus::Executable(tx) => (TxStatusInfo::Pending, Some(tx)),
            PoolStatus::Queued(tx) => (TxStatusInfo::Queued, Some(tx)),
            PoolStatus::Dropped(reason) => (
                TxStatusInfo::Dropped {
                    reason: reason.to_string(),
                },
                None,
            ),
            PoolStatus::Unknown => (TxStatusInfo::Unknown, None),
        };
        Ok(TxInfo {
            hash,
            status,
            sender: tx.as_ref().map(|tx| tx.sender()),
            tx: tx.map(|tx| tx.signed().clone()),
        })
    }

    /// The hash of a committed block, from its header alone.
    fn block_hash(&self, height: u64) -> Result<Hash, ErrorObjectOwned> {
        self.store
            .header_by_height(height)
            .map_err(internal)?
            .map(|(header, _)| header.hash())
            .ok_or_else(|| internal(format!("no block at committed height {height}")))
    }

    fn block_by_height(&self, height: u64) -> Result<Option<BlockInfo>, ErrorObjectOwned> {
        let start = self.store.history_start().map_err(internal)?;
        if height > 0 && height < start {
            return Err(error(
                codes::NOT_HELD,
                format!(
                    "block {height} is not held here: this node keeps blocks from height {start} (pruned, or state-synced)"
                ),
            ));
        }
        Ok(self
            .store
            .block_by_height(height)
            .map_err(internal)?
            .as_ref()
            .map(block_info))
    }
}

#[async_trait]
impl TallyApiServer for RpcContext {
    async fn send_raw_transaction(&self, tx: String) -> Result<Hash, ErrorObjectOwned> {
        self.submit(&tx).await
    }

    async fn send_raw_transactions(
        &self,
        txs: Vec<String>,
    ) -> Result<Vec<SubmitResult>, ErrorObjectOwned> {
        if txs.len() > MAX_SUBMIT_BATCH {
            return Err(error(
                codes::INVALID_PARAMS,
                format!(
                    "{} transactions, at most {MAX_SUBMIT_BATCH} per call",
                    txs.len()
                ),
            ));
        }
        // Parse errors stay in place so results line up with the input.
        let mut results: Vec<Option<SubmitError>> = vec![None; txs.len()];
        let mut raw = Vec::with_capacity(txs.len());
        let mut positions = Vec::with_capacity(txs.len());
        for (i, tx) in txs.iter().enumerate() {
            match parse_hex("transaction", tx) {
                Ok(bytes) => {
                    raw.push(bytes);
                    positions.push(i);
                }
                Err(e) => {
                    results[i] = Some(SubmitError {
                        code: e.code(),
                        message: e.message().to_string(),
                    })
                }
            }
        }
        let mut hashes: Vec<Option<Hash>> = vec![None; txs.len()];
        let mut admit = Vec::with_capacity(raw.len());
        let mut admit_positions = Vec::with_capacity(raw.len());
        for (verified, i) in self.verify_all(raw).await?.into_iter().zip(positions) {
            match verified {
                Ok(tx) => {
                    admit.push(tx);
                    admit_positions.push(i);
                }
                Err(e) => {
                    results[i] = Some(SubmitError {
                        code: tx_error_code(&e),
                        message: e.to_string(),
                    })
                }
            }
        }
        let added = self.mempool.submit(admit).await.map_err(internal)?;
        for (result, i) in added.into_iter().zip(admit_positions) {
            match result {
                Ok(hash) => hashes[i] = Some(hash),
                Err(e) => {
                    let e = add_error(&e);
                    results[i] = Some(SubmitError {
                        code: e.code(),
                        message: e.message().to_string(),
                    });
                }
            }
        }
        Ok(hashes
            .into_iter()
            .zip(results)
            .map(|(hash, error)| SubmitResult { hash, error })
            .collect())
    }

    async fn send_transaction_and_wait(
        &self,
        tx: String,
        timeout_ms: Option<u64>,
    ) -> Result<TxInfo, ErrorObjectOwned> {
        let timeout = Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_WAIT_MS).min(MAX_WAIT_MS));
        // Subscribe first: the block may commit before `submit` returns.
        let mut blocks = self.blocks.subscribe();
        let hash = self.submit(&tx).await?;
        let mut checked = Instant::now();
        let wait = async {
            loop {
                match blocks.recv().await {
                    Ok(block) if block.tx_hashes.contains(&hash) => {
                        return self.tx_info(hash).await;
                    }
                    Ok(_) if checked.elapsed() < STATUS_RECHECK => {}
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        checked = Instant::now();
                        let info = self.tx_info(hash).await?;
                        match info.status {
                            TxStatusInfo::Committed { .. } => return Ok(info),
                            TxStatusInfo::Pending | TxStatusInfo::Queued => {}
                            TxStatusInfo::Dropped { reason } => {
                                return Err(error(
                                    codes::DROPPED,
                                    format!("transaction {hash} was dropped: {reason}"),
                                ));
                            }
                            TxStatusInfo::Unknown => {
                                return Err(error(
                                    codes::DROPPED,
                                    format!("transaction {hash} was dropped from the mempool"),
                                ));
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(internal("the node is shutting down"));
                    }
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| {
                Err(error(
                    codes::TIMEOUT,
                    format!(
                        "transaction {hash} not committed within {} ms (it may still be)",
                        timeout.as_millis()
                    ),
                ))
            })
    }

    async fn get_transaction(&self, hash: String) -> Result<TxInfo, ErrorObjectOwned> {
        self.tx_info(parse_hash(&hash)?).await
    }

    async fn get_account(&self, address: String) -> Result<AccountInfo, ErrorObjectOwned> {
        let parsed = parse_address(&address)?;
        let height = self.store.tip().map_err(internal)?.height;
        let account =
            tally_ledger::StateReader::account(self.store.as_ref(), &parsed).map_err(internal)?;
        Ok(AccountInfo {
            address: parsed,
            balance: account.balance,
            nonce: account.nonce,
            height,
        })
    }

    async fn get_account_proof(
        &self,
        address: String,
        height: Option<u64>,
    ) -> Result<AccountProofInfo, ErrorObjectOwned> {
        let address = parse_address(&address)?;
        let store = &self.store;
        let tip = store.tip().map_err(internal)?.height;
        let height = height.unwrap_or(tip);
        if height == 0 || height > tip {
            return Err(error(
                codes::INVALID_PARAMS,
                format!(
                    "no certified header at height {height}: the chain is at {tip}, and height 0 \
                     is genesis (check genesis accounts against the genesis file)"
                ),
            ));
        }
        let not_held = || {
            error(
                codes::NOT_HELD,
                format!("this node holds no header and certificate for height {height}"),
            )
        };
        let header = match store.header_by_height(height).map_err(internal)? {
            Some((header, _)) => header,
            None => store
                .base_header()
                .map_err(internal)?
                .filter(|base| base.height == height)
                .ok_or_else(not_held)?,
        };
        // The certificate this node saw, or the one the next block carries.
        let commit = match store.seen_commit(height).map_err(internal)? {
            Some(commit) => commit,
            None => store
                .block_by_height(height + 1)
                .map_err(internal)?
                .and_then(|block| block.last_commit)
                .ok_or_else(not_held)?,
        };
        if height < store.state_start().map_err(internal)? {
            return Err(not_held());
        }
        let (account, proof) = store
            .account_with_proof(&address, height)
            .map_err(internal)?;
        Ok(AccountProofInfo {
            address,
            account,
            height,
            header,
            commit,
            proof: tally_ledger::ProofParts::of(&proof),
        })
    }

    async fn get_block_by_height(
        &self,
        height: u64,
    ) -> Result<Option<BlockInfo>, ErrorObjectOwned> {
        self.block_by_height(height)
    }

    async fn get_block_by_hash(&self, hash: String) -> Result<Option<BlockInfo>, ErrorObjectOwned> {
        let hash = parse_hash(&hash)?;
        Ok(self
            .store
            .block_by_hash(&hash)
            .map_err(internal)?
            .as_ref()
            .map(block_info))
    }

    async fn get_latest_block(&self) -> Result<Option<BlockInfo>, ErrorObjectOwned> {
        let height = self.store.tip().map_err(internal)?.height;
        self.block_by_height(height)
    }

    async fn status(&self) -> Result<Status, ErrorObjectOwned> {
        let tip = self.store.tip().map_err(internal)?;
        let latest_time = match tip.height {
            0 => 0,
            h => self
                .store
                .block_by_height(h)
                .map_err(internal)?
                .map_or(0, |b| b.header.time),
        };
        let peers = self.network.peers().await.map_err(internal)?;
        let pool = self.mempool.size().await.map_err(internal)?;
        Ok(Status {
            chain_id: self.chain_id,
            chain_name: self.chain_name.clone(),
            genesis_hash: self.genesis_hash,
            peer_id: self.network.local_peer_id().to_string(),
            listen_addrs: self.p2p_addrs.clone(),
            node_version: env!("CARGO_PKG_VERSION").into(),
            latest_height: tip.height,
            latest_hash: tip.hash,
            latest_time,
            state_root: tip.state_root,
            syncing: self.syncing.load(Ordering::Relaxed),
            peer_count: u32::try_from(peers.len()).unwrap_or(u32::MAX),
            validator: self.validator,
            mempool_size: u32::try_from(pool.executable + pool.queued).unwrap_or(u32::MAX),
            mempool_queued: u32::try_from(pool.queued).unwrap_or(u32::MAX),
            mempool_bytes: pool.bytes as u64,
        })
    }

    async fn validators(&self, height: Option<u64>) -> Result<ValidatorSetInfo, ErrorObjectOwned> {
        let tip = self.store.tip().map_err(internal)?.height;
        let height = height.unwrap_or(tip + 1);
        match self.store.validator_set_at(height).map_err(internal)? {
            Some(at) => Ok(set_info(height, at.start, &at.members)),
            None if height > tip => Err(error(
                codes::INVALID_PARAMS,
                format!(
                    "the set of height {height} is not decided yet: the latest block is {tip}, \
                     and sets are known up to {}",
                    tip + tally_ledger::governance::ACTIVATION_DELAY
                ),
            )),
            None => Err(error(
                codes::NOT_HELD,
                format!("this node does not hold the validator set of height {height}"),
            )),
        }
    }

    async fn governance_proposals(&self) -> Result<GovernanceInfo, ErrorObjectOwned> {
        let height = self.store.tip().map_err(internal)?.height;
        let state = self.store.governance_state();
        Ok(GovernanceInfo {
            height,
            upcoming: state
                .epochs
                .iter()
                .filter(|e| e.start > height + 1)
                .map(|e| set_info(e.start, e.start, &e.members))
                .collect(),
            pending: state.pending.clone(),
            finished: state.finished.clone(),
        })
    }

    async fn peers(&self) -> Result<Vec<PeerInfo>, ErrorObjectOwned> {
        Ok(self
            .network
            .peers()
            .await
            .map_err(internal)?
            .into_iter()
            .map(|p| PeerInfo {
                peer_id: p.peer.to_string(),
                addrs: p.addrs.iter().map(ToString::to_string).collect(),
            })
            .collect())
    }

    async fn consensus_state(&self) -> Result<ConsensusState, ErrorObjectOwned> {
        let (reply, answer) = oneshot::channel();
        // A full queue means the driver is behind: say so rather than wait.
        self.consensus.try_send(reply).map_err(|_| {
            error(
                codes::BUSY,
                "busy: the consensus driver has queries waiting; retry shortly",
            )
        })?;
        answer.await.map_err(internal)
    }

    async fn net_info(&self) -> Result<Vec<NetPeerInfo>, ErrorObjectOwned> {
        let peers = self.network.peers().await.map_err(internal)?;
        Ok(peers
            .into_iter()
            .map(|p| NetPeerInfo {
                peer_id: p.peer.to_string(),
                addrs: p.addrs.iter().map(ToString::to_string).collect(),
                direction: if p.inbound { "inbound" } else { "outbound" }.into(),
                connected_since_ms: p.connected_since_ms,
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
                score: p.score,
                validator: self.peer_view.validator(&p.peer),
                reported_height: self.peer_view.height(&p.peer),
            })
            .collect())
    }

    async fn trace_transaction(&self, hash: String) -> Result<Option<TxTrace>, ErrorObjectOwned> {
        Ok(self.traces.get(&parse_hash(&hash)?))
    }

    async fn health(&self) -> Result<String, ErrorObjectOwned> {
        self.store.tip().map_err(internal)?;
        Ok("ok".into())
    }

    async fn subscribe_new_blocks(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        let mut blocks = self.blocks.subscribe();
        let Some((sink, _slot)) = self.accept(pending).await? else {
            return Ok(());
        };
        loop {
            tokio::select! {
                _ = sink.closed() => return Ok(()),
                block = blocks.recv() => match block {
                    Ok(block) => sink.send(serde_json::value::to_raw_value(&summary(&block))?).await?,
                    // A subscriber too slow to keep up misses blocks; it can
                    // fetch them by height.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    async fn subscribe_transaction(
        &self,
        pending: PendingSubscriptionSink,
        hash: String,
    ) -> SubscriptionResult {
        let hash = match parse_hash(&hash) {
            Ok(hash) => hash,
            Err(e) => {
                pending.reject(e).await;
                return Ok(());
            }
        };
        let mut blocks = self.blocks.subscribe();
        let Some((sink, _slot)) = self.accept(pending).await? else {
            return Ok(());
        };
        let mut last = self.tx_info(hash).await?;
        sink.send(serde_json::value::to_raw_value(&last)?).await?;
        // Committed and dropped are final at once; unknown once a block has
        // passed without the pool or the chain learning of it.
        let mut checked = Instant::now();
        while !last.is_committed() && !matches!(last.status, TxStatusInfo::Dropped { .. }) {
            tokio::select! {
                _ = sink.closed() => return Ok(()),
                block = blocks.recv() => match block {
                    // Between blocks that carry it, a look at most once a
                    // second (for a drop), not one per block per subscriber.
                    Ok(block) if !block.tx_hashes.contains(&hash)
                        && last.status != TxStatusInfo::Unknown
                        && checked.elapsed() < STATUS_RECHECK => {}
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        checked = Instant::now();
                        let info = self.tx_info(hash).await?;
                        if info.status != last.status {
                            sink.send(serde_json::value::to_raw_value(&info)?).await?;
                        }
                        let unknown = info.status == TxStatusInfo::Unknown;
                        last = info;
                        if unknown {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
        // The server ends the subscription; jsonrpsee clients see the
        // stream end after the final status.
        let outcome = match last.status {
            TxStatusInfo::Committed { .. } => "committed",
            TxStatusInfo::Dropped { .. } => "dropped",
            _ => "unknown",
        };
        Err(SubscriptionError::from(format!(
            "subscription ended: transaction {hash} is {outcome}"
        )))
    }
}

impl RpcContext {
    /// Accepts a subscription if the node holds fewer than
    /// `rpc.max_subscriptions`; the permit is its slot until it ends.
    async fn accept(
        &self,
        pending: PendingSubscriptionSink,
    ) -> Result<Option<(SubscriptionSink, SubscriptionSlot)>, SubscriptionError> {
        let Ok(slot) = self.subscriptions.clone().try_acquire_owned() else {
            pending
                .reject(error(
                    codes::TOO_MANY_SUBSCRIPTIONS,
                    "the node holds as many subscriptions as it allows (rpc.max_subscriptions); retry later",
                ))
                .await;
            return Ok(None);
        };
        let sink = pending.accept().await?;
        self.metrics.subscriptions.inc();
        Ok(Some((
            sink,
            SubscriptionSlot {
                _permit: slot,
                open: self.metrics.subscriptions.clone(),
            },
        )))
    }
}

/// A subscription's place among `rpc.max_subscriptions`, counted in the
/// metrics until it ends.
struct SubscriptionSlot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_tell_the_client_only_a_log_id() {
        let first = internal("rocksdb: IO error: /var/lib/secret/path: disk full");
        let second = internal("the mempool actor has stopped");
        assert_eq!(first.code(), codes::INTERNAL);
        assert!(!first.message().contains("secret"), "{}", first.message());
        assert!(first.message().contains("error_id="), "{}", first.message());
        assert_ne!(first.message(), second.message(), "each error its own id");
    }
}
