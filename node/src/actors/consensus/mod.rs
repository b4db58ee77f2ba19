//! The consensus driver: feeds the Tendermint machine with peers' messages,
//! timeouts and the ledger's answers, and carries out its actions: the
//! signing state is written durably before any vote or proposal it guards
//! is sent, blocks are built and verified by the ledger actor, and a decided
//! block is committed before the next height starts.

mod blocks;
mod gate;
mod progress;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::FutureExt;
use tally_consensus::{Action, Event, Timeout, ValidatorSet};
use tally_ledger::{Address, Block, ChainTip, Hash, Store};
use tally_p2p::{MessageId, PeerId, Topic, Verdict};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tracing::{debug, error, info, warn};

use self::blocks::{BlockCache, Position};
use self::gate::{Gate, Window};
use self::progress::Progress;
use crate::actors::ledger::{LedgerError, LedgerHandle, NewBlock};
use crate::actors::mempool::MempoolHandle;
use crate::actors::network::PeerView;
use crate::actors::priority::Priority;
use crate::chain::{
    Certificate, Consensus, Secp256k1, certificate_to_commit, consensus_set, validator_set_at,
};
use crate::metrics::{KindLabel, OutcomeLabel, ValidatorLabel};
use crate::now_ms;
use crate::signing;
use crate::wire::{ConsensusEnvelope, ConsensusMessage, encode};
use tally_rpc::{ConsensusState, VoteInfo};

/// Most proposed blocks held for the current and next height: every round
/// the machine keeps messages for (current, up to `max_future_rounds` ahead,
/// and as many of the next height), two values each, and the locked and
/// valid blocks of earlier rounds.
fn max_cached_blocks(max_future_rounds: usize) -> usize {
    blocks::PER_ROUND * (2 * max_future_rounds + 1) + 2
}

/// How long after a failed commit of a decided block it is tried again.
const COMMIT_RETRY: Duration = Duration::from_millis(500);

/// A consensus message from the network with what is needed to report on it.
#[derive(Debug)]
pub struct Inbound {
    pub envelope: ConsensusEnvelope,
    pub id: MessageId,
    pub source: PeerId,
    /// The gossip author (signed by its node key), if the message says.
    pub author: Option<PeerId>,
    /// Its size on the wire, counted against the queue's byte bound.
    pub bytes: usize,
}

/// Results of work done off the actor, fed back to it.
enum Internal {
    Timeout(Timeout),
    Built {
        height: u64,
        round: u32,
        result: Result<(Block, Vec<Hash>), LedgerError>,
    },
    Verified {
        height: u64,
        value: Hash,
        result: Result<(), LedgerError>,
    },
    Committed {
        height: u64,
        result: Result<ChainTip, LedgerError>,
    },
    /// Try again to commit the block decided at this height.
    RetryCommit(u64),
    /// The block interval after a commit passed: start the height now if
    /// there is anything to put in it, else wait (see `waiting`).
    IntervalPassed(u64),
    /// Start the height whatever the mempool holds.
    Start(u64),
}

#[derive(Debug)]
pub struct Settings {
    pub chain_id: u64,
    pub block_interval: Duration,
    pub max_block_txs: usize,
    pub max_block_bytes: usize,
    /// Where the signing state lives (validators only).
    pub signing_state: Option<PathBuf>,
    /// Where the bodies of the blocks it refers to live (validators only).
    pub signed_blocks: Option<PathBuf>,
    /// Re-gossip the current round's messages after this long without a
    /// new height.
    pub stall_after: Duration,
    /// With an empty mempool, wait this long (from the last height's start)
    /// for a transaction before starting a height; zero: never wait.
    pub empty_block_interval: Duration,
    /// Fault injection for tests ([`crate::node::WITHHOLD_PRECOMMITS_VAR`]):
    /// our precommits for a value are signed and recorded, never sent (nil
    /// ones are, so rounds still move on).
    pub withhold_precommits: bool,
}

#[derive(Debug)]
pub struct Parts {
    pub machine: Consensus,
    pub me: Option<Address>,
    /// The validator sets of the chain's heights are read here.
    pub store: Arc<Store>,
    pub network: tally_p2p::Handle,
    pub ledger: LedgerHandle,
    pub mempool: MempoolHandle,
    pub inbox: mpsc::Receiver<Inbound>,
    /// Bytes queued in `inbox` (the router adds, the driver subtracts).
    pub inbox_bytes: Arc<AtomicUsize>,
    pub new_blocks: broadcast::Receiver<Arc<NewBlock>>,
    /// Signalled by the mempool whenever it admits a transaction.
    pub tx_arrived: Arc<Notify>,
    pub tip: ChainTip,
    /// Marked busy while the driver works, so admission steps aside.
    pub priority: Arc<Priority>,
    pub metrics: crate::metrics::Metrics,
    /// Peers' validators, as their votes show (for `tally_netInfo`).
    pub peers: Arc<PeerView>,
    /// `tally_consensusState` asks here.
    pub queries: mpsc::Receiver<StateQuery>,
}

/// A request for [`ConsensusState`], answered by the driver.
pub type StateQuery = oneshot::Sender<ConsensusState>;

pub fn spawn(
    settings: Settings,
    parts: Parts,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let first = parts.tip.height + 1;
    let known = |height: u64| {
        validator_set_at(&parts.store, height)?
            .with_context(|| format!("the store holds no validator set of height {height}"))
    };
    let ((set, set_start), (next_set, _)) = (known(first)?, known(first + 1)?);
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let max_blocks = max_cached_blocks(parts.machine.config().max_future_rounds);
    let actor = Actor {
        progress: Progress::default(),
        set,
        set_start,
        next_set,
        in_set: None,
        store: parts.store,
        settings,
        machine: parts.machine,
        me: parts.me,
        network: parts.network,
        ledger: parts.ledger,
        mempool: parts.mempool,
        blocks: BlockCache::new(max_blocks),
        gate: Gate::default(),
        internal: internal_tx,
        last_progress: Instant::now(),
        height_started: Instant::now(),
        saved_blocks: Vec::new(),
        tx_arrived: parts.tx_arrived,
        inbox_bytes: parts.inbox_bytes,
        priority: parts.priority,
        metrics: parts.metrics,
        last_decided: None,
        peers: parts.peers,
        missed_in_a_row: std::collections::HashMap::new(),
    };
    Ok(tokio::spawn(actor.run(
        parts.tip,
        parts.inbox,
        internal_rx,
        parts.new_blocks,
        parts.queries,
    )))
}

struct Actor {
    settings: Settings,
    machine: Consensus,
    me: Option<Address>,
    network: tally_p2p::Handle,
    ledger: LedgerHandle,
    mempool: MempoolHandle,
    /// The height being decided (and the one waiting to start), its
    /// validator set and the next height's.
    progress: Progress,
    set: ValidatorSet<Address>,
    next_set: ValidatorSet<Address>,
    /// The first height `set` signs (its rotation restarted there).
    set_start: u64,
    /// Whether our key is in `set` (`None` before the first height).
    in_set: Option<bool>,
    store: Arc<Store>,
    /// Proposed blocks of the current and next height.
    blocks: BlockCache,
    /// Judges peers' messages before they are fed or forwarded.
    gate: Gate,
    internal: mpsc::UnboundedSender<Internal>,
    last_progress: Instant,
    /// When the current height started: the block interval is a minimum
    /// period from one height's start to the next, so time spent deciding
    /// and committing a big block counts toward it (no idle gap under load).
    height_started: Instant,
    /// The values whose bodies the signed-blocks file holds now.
    saved_blocks: Vec<Hash>,
    tx_arrived: Arc<Notify>,
    inbox_bytes: Arc<AtomicUsize>,
    priority: Arc<Priority>,
    metrics: crate::metrics::Metrics,
    /// When this node last decided a height (for the block interval).
    last_decided: Option<Instant>,
    peers: Arc<PeerView>,
    /// Validators missing from the certificates this node decided with, and
    /// for how many heights in a row (only validators of the set).
    missed_in_a_row: std::collections::HashMap<Address, u64>,
}

/// Heights in a row a validator may be missing before the node warns. A
/// certificate holds the precommits that made the quorum, so a healthy but
/// slowest validator is often missing from one; ten in a row is not chance.
const MISSED_HEIGHTS_WARNING: u64 = 10;

impl Actor {
    async fn run(
        mut self,
        tip: ChainTip,
        mut inbox: mpsc::Receiver<Inbound>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
        mut new_blocks: broadcast::Receiver<Arc<NewBlock>>,
        mut queries: mpsc::Receiver<StateQuery>,
    ) -> anyhow::Result<()> {
        self.restore_blocks(tip.height + 1);
        self.start_height(tip.height + 1).await?;
        let mut stall_check = tokio::time::interval(self.settings.stall_after / 2);
        stall_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(event) = internal.recv() => {
                    let _busy = self.priority.busy();
                    self.on_internal(event).await?;
                }
                Some(inbound) = inbox.recv() => {
                    self.inbox_bytes.fetch_sub(inbound.bytes, Ordering::Relaxed);
                    let _busy = self.priority.busy();
                    self.on_inbound(inbound).await?;
                }
                block = new_blocks.recv() => match block {
                    Ok(block) => self.on_new_block(&block).await?,
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                _ = stall_check.tick() => self.on_stall_check().await,
                Some(reply) = queries.recv() => {
                    let _ = reply.send(self.state());
                }
                () = self.tx_arrived.notified(), if self.progress.waiting().is_some() => {
                    if let Some(height) = self.progress.take_waiting() {
                        self.start_height(height).await?;
                    }
                }
                else => return Ok(()),
            }
        }
    }

    /// Puts back the bodies saved beside the signing state of `height`, so a
    /// restarted validator can re-propose its valid value and verify (and
    /// commit) its lock. They are verified again before any vote.
    fn restore_blocks(&mut self, height: u64) {
        let Some(path) = &self.settings.signed_blocks else {
            return;
        };
        let Some((saved, blocks)) = signing::load_blocks(path) else {
            return;
        };
        if saved != height {
            return;
        }
        let keep: Vec<Hash> = blocks.iter().map(|(_, b)| b.hash()).collect();
        for (round, block) in blocks {
            // A damaged body under an intact header would stay cached and
            // keep the honest copy out.
            if block.height() != height || block.check_body().is_err() {
                continue;
            }
            let value = block.hash();
            let at = Position {
                height,
                round,
                keep: &keep,
            };
            if self.blocks.insert(round, value, block, at) {
                info!(height, round, block = %value, "restored a signed block's body");
            }
        }
        self.saved_blocks = keep;
    }

    /// Before a signing state is written: the bodies of the blocks it refers
    /// to (if they changed since the last write; one write per height as a
    /// rule, at the proposal or the lock).
    fn save_blocks(&mut self, state: &signing::SigningState) -> anyhow::Result<()> {
        let Some(path) = &self.settings.signed_blocks else {
            return Ok(());
        };
        let mut referred: Vec<(u32, Hash)> = Vec::new();
        let proposal = state.last_proposal.as_ref().map(|p| (p.round, p.value));
        let lock = state.locked.as_ref().map(|l| (l.round, l.value));
        let valid = state.valid.as_ref().map(|v| (v.round, v.value));
        for (round, value) in [proposal, lock, valid].into_iter().flatten() {
            if !referred.iter().any(|(_, v)| *v == value) {
                referred.push((round, value));
            }
        }
        let values: Vec<Hash> = referred.iter().map(|(_, v)| *v).collect();
        if values.is_empty() || values == self.saved_blocks {
            return Ok(());
        }
        let mut blocks = Vec::with_capacity(referred.len());
        let mut written = Vec::with_capacity(referred.len());
        for (round, value) in referred {
            match self.blocks.get(&value) {
                Some(block) => {
                    blocks.push((round, block));
                    written.push(value);
                }
                None => warn!(block = %value, "the signing state refers to a block we do not hold"),
            }
        }
        tokio::task::block_in_place(|| signing::save_blocks(path, state.height, &blocks))?;
        // What is missing is written next time, once we hold it.
        self.saved_blocks = written;
        Ok(())
    }

    async fn start_height(&mut self, height: u64) -> anyhow::Result<()> {
        let from = self.progress.height();
        if height <= from {
            // Not a new height; this ends a wait for one no longer ahead.
            self.progress.start(height);
            return Ok(());
        }
        // Known once the block two below is committed, which is what
        // starts a height: a missing set is a store fault.
        let (Some(at), Some(next)) = (
            self.store.validator_set_at(height)?,
            self.store.validator_set_at(height + 1)?,
        ) else {
            error!(
                height,
                "the store holds no validator set for this height: not starting it"
            );
            return Ok(());
        };
        self.progress.start(height);
        if at.start == self.set_start && from >= at.start {
            self.set.advance(height - from);
        } else {
            self.set = consensus_set(&at.members)?;
            self.set.advance(height - at.start);
            self.set_start = at.start;
        }
        self.next_set = if next.start == at.start {
            self.set.next_height()
        } else {
            // A new set signs from the next height: its rotation starts there.
            consensus_set(&next.members)?
        };
        self.note_membership(height);
        self.last_progress = Instant::now();
        self.height_started = Instant::now();
        self.blocks.retain_from(height);
        self.gate.start_height(height);
        self.observe_set();
        debug!(height, "starting height");
        let actions = self.machine.handle(Event::StartHeight {
            height,
            validators: self.set.clone(),
        });
        self.apply(actions).await
    }

    async fn on_internal(&mut self, event: Internal) -> anyhow::Result<()> {
        match event {
            Internal::Timeout(timeout) => {
                let kind = match timeout.kind {
                    tally_consensus::TimeoutKind::Propose => "propose",
                    tally_consensus::TimeoutKind::Prevote => "prevote",
                    tally_consensus::TimeoutKind::Precommit => "precommit",
                };
                // Counted when it drives the machine: its height and round,
                // undecided, and (but for precommit's) its step.
                let step = self.machine.step();
                let live = match timeout.kind {
                    tally_consensus::TimeoutKind::Propose => {
                        step == Some(tally_consensus::Step::Propose)
                    }
                    tally_consensus::TimeoutKind::Prevote => {
                        step == Some(tally_consensus::Step::Prevote)
                    }
                    tally_consensus::TimeoutKind::Precommit => true,
                };
                let current = Some(timeout.height) == self.machine.height()
                    && Some(timeout.round) == self.machine.round()
                    && self.machine.decision().is_none();
                if current && live {
                    self.metrics
                        .consensus
                        .timeouts
                        .get_or_create(&KindLabel { kind })
                        .inc();
                }
                let actions = self.machine.handle(Event::TimeoutElapsed(timeout));
                self.apply(actions).await?;
            }
            Internal::Built {
                height,
                round,
                result,
            } => match result {
                // Built for a height the node has left (sync moved it on).
                Ok(_) if height != self.progress.height() => {}
                Ok((block, skipped)) => {
                    if !skipped.is_empty() {
                        self.mempool.remove(skipped).await?;
                    }
                    let value = block.hash();
                    debug!(height, round, %value, txs = block.txs.len(), "built a block");
                    self.cache_block(round, value, block);
                    let actions = self.machine.handle(Event::BlockBuilt {
                        height,
                        round,
                        value,
                    });
                    self.apply(actions).await?;
                }
                Err(e @ LedgerError::WrongHeight { .. }) => {
                    debug!(height, round, error = %e, "no block built: the chain moved on");
                }
                // Without a block this validator's round times out, and
                // the next proposer takes over.
                Err(e) => error!(height, round, error = %e, "could not build a block"),
            },
            Internal::Verified {
                height,
                value,
                result,
            } => {
                if let Err(e) = &result {
                    warn!(height, block = %value, error = %e, "proposed block is invalid");
                }
                let actions = self.machine.handle(Event::BlockVerified {
                    height,
                    value,
                    valid: result.is_ok(),
                });
                self.apply(actions).await?;
            }
            Internal::Committed { height, result } => match result {
                Ok(_) => self.schedule_next(height),
                Err(LedgerError::Stopped) => anyhow::bail!("the ledger actor stopped"),
                // Try again (with the block's body, if we hold it) until it
                // is in the store, by us or by sync.
                Err(e) => {
                    warn!(height, error = %e, "could not commit the decided block; retrying");
                    let internal = self.internal.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(COMMIT_RETRY).await;
                        let _ = internal.send(Internal::RetryCommit(height));
                    });
                }
            },
            Internal::RetryCommit(height) => self.retry_commit(height),
            Internal::IntervalPassed(height) => self.interval_passed(height).await?,
            Internal::Start(height) => self.start_height(height).await?,
        }
        Ok(())
    }

    /// Block `height` is in the store: start the next height once the
    /// block interval (from this height's start) has passed. Said by our
    /// commit and by the store's broadcast; only the first one counts.
    fn schedule_next(&mut self, height: u64) {
        let Some(next) = self.progress.committed(height) else {
            return;
        };
        let start = self.internal.clone();
        let wait = self
            .settings
            .block_interval
            .saturating_sub(self.height_started.elapsed());
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = start.send(Internal::IntervalPassed(next));
        });
    }

    /// Commits the decision of `height` again, unless the chain has moved
    /// on. With the block's body at hand it goes through the synced-block
    /// path (the certificate is checked and the block executed afresh), so
    /// a missing executed copy in the ledger cannot keep it out.
    fn retry_commit(&mut self, height: u64) {
        let Some(certificate) = self
            .machine
            .decision()
            .filter(|c| c.height == height && self.progress.height() == height)
        else {
            return;
        };
        let commit = certificate_to_commit(certificate);
        let block = self.blocks.get(&commit.block_hash).cloned();
        let (ledger, internal) = (self.ledger.clone(), self.internal.clone());
        tokio::spawn(async move {
            let result = match block {
                Some(block) => ledger.apply_synced(block, commit, Vec::new()).await,
                None => ledger.commit_decided(commit.block_hash, commit).await,
            };
            let _ = internal.send(Internal::Committed { height, result });
        });
    }

    async fn interval_passed(&mut self, height: u64) -> anyhow::Result<()> {
        if height <= self.progress.height() {
            // Sync has taken the node past it meanwhile.
            return Ok(());
        }
        let idle_for = self.settings.empty_block_interval;
        let pending = self.mempool.size().await.map_or(1, |s| s.executable);
        let remaining = idle_for.saturating_sub(self.height_started.elapsed());
        if pending > 0 || remaining.is_zero() {
            return self.start_height(height).await;
        }
        // Drop a wake-up left by a transaction that is committed by now.
        let _ = self.tx_arrived.notified().now_or_never();
        self.progress.wait(height);
        let internal = self.internal.clone();
        tokio::spawn(async move {
            tokio::time::sleep(remaining).await;
            let _ = internal.send(Internal::Start(height));
        });
        Ok(())
    }

    /// A block committed by sync (or our own commit, seen early): move on
    /// without waiting when it is not the one this machine decided; when it
    /// is, the next height follows the block interval as after our commit
    /// (which may have failed: then this is what moves the node on).
    async fn on_new_block(&mut self, block: &NewBlock) -> anyhow::Result<()> {
        if block.height < self.progress.height() {
            return Ok(());
        }
        let decided_here = self
            .machine
            .decision()
            .is_some_and(|c| c.height == block.height);
        if decided_here {
            self.schedule_next(block.height);
            Ok(())
        } else {
            self.start_height(block.height + 1).await
        }
    }

    /// The gate's verdict on a peer's message (see [`gate`]). The machine
    /// checks the signature again (it trusts no caller): one extra recovery
    /// per new vote, about nine per height with four validators, never per
    /// transaction, and never for a copy already seen.
    fn verdict(&mut self, message: &ConsensusMessage) -> Verdict {
        let window = Window {
            chain_id: self.settings.chain_id,
            height: self.progress.height(),
            round: self.machine.round().unwrap_or(0),
            max_future_rounds: u32::try_from(self.machine.config().max_future_rounds)
                .unwrap_or(u32::MAX),
            set: &self.set,
            next_set: &self.next_set,
        };
        self.gate.judge(message, &window, &self.blocks)
    }

    /// Holds a proposed block (ours or a peer's, checked by the gate).
    fn cache_block(&mut self, round: u32, value: Hash, block: Block) -> bool {
        let keep: Vec<Hash> = [self.machine.locked(), self.machine.valid()]
            .into_iter()
            .flatten()
            .map(|rv| rv.value)
            .collect();
        let at = Position {
            height: self.progress.height(),
            round: self.machine.round().unwrap_or(0),
            keep: &keep,
        };
        self.blocks.insert(round, value, block, at)
    }

    async fn on_inbound(&mut self, inbound: Inbound) -> anyhow::Result<()> {
        let verdict = self.verdict(&inbound.envelope.message);
        self.observe_inbound(&inbound.envelope.message, verdict);
        if let (Verdict::Accept, Some(author), ConsensusMessage::Vote(vote)) =
            (verdict, inbound.author, &inbound.envelope.message)
        {
            self.peers.saw_vote(author, vote.message.validator);
        }
        // The network stops only when the node does.
        let _ = self
            .network
            .report(inbound.id, inbound.source, verdict)
            .await;
        if verdict != Verdict::Accept {
            if verdict == Verdict::Reject {
                debug!(peer = %inbound.source, "rejected a consensus message");
            }
            return Ok(());
        }
        // A peer already works on the height we hold back: join it.
        if let Some(waiting) = self.progress.waiting() {
            if message_height(&inbound.envelope.message) >= waiting {
                self.start_height(waiting).await?;
            }
        }
        let event = match inbound.envelope.message {
            ConsensusMessage::Proposal { proposal, block } => {
                let (round, value) = (proposal.message.round, proposal.message.value);
                if !self.cache_block(round, value, block) {
                    // Evicted at once: the machine would wait for a body
                    // it cannot have.
                    return Ok(());
                }
                Event::Proposal(proposal)
            }
            ConsensusMessage::Vote(vote) => Event::Vote(vote),
        };
        let actions = self.machine.handle(event);
        self.apply(actions).await
    }

    /// No new height for a while: peers may have missed our messages (or we
    /// theirs), so send this round's again.
    async fn on_stall_check(&mut self) {
        if self.progress.waiting().is_some()
            || self.last_progress.elapsed() < self.settings.stall_after
        {
            return;
        }
        self.last_progress = Instant::now();
        let messages = self.machine.catch_up_messages();
        debug!(
            height = self.progress.height(),
            count = messages.len(),
            "height stalled: re-gossiping its messages"
        );
        for message in messages {
            let message = match message {
                tally_consensus::Message::Proposal(proposal) => {
                    match self.blocks.get(&proposal.message.value) {
                        Some(block) => ConsensusMessage::Proposal {
                            proposal,
                            block: block.clone(),
                        },
                        None => continue,
                    }
                }
                tally_consensus::Message::Vote(vote) => ConsensusMessage::Vote(vote),
            };
            self.publish(message).await;
        }
    }

    async fn publish(&mut self, message: ConsensusMessage) {
        if self.settings.withhold_precommits
            && matches!(&message, ConsensusMessage::Vote(vote)
                if vote.message.vote_type == tally_consensus::VoteType::Precommit
                    && vote.message.value.is_some()
                    && Some(vote.message.validator) == self.me)
        {
            return;
        }
        let envelope = ConsensusEnvelope {
            sent_ms: now_ms(),
            message,
        };
        match self
            .network
            .publish(Topic::Consensus, encode(&envelope))
            .await
        {
            Ok(_) | Err(tally_p2p::Error::NoPeers) => {}
            Err(e) => warn!(error = %e, "could not gossip a consensus message"),
        }
    }

    async fn apply(
        &mut self,
        actions: Vec<tally_consensus::ActionOf<Secp256k1, Hash>>,
    ) -> anyhow::Result<()> {
        for action in actions {
            match action {
                Action::PersistSigningState(state) => {
                    self.save_blocks(&state)?;
                    if let Some(path) = &self.settings.signing_state {
                        // Blocking on purpose: nothing it guards may leave first.
                        tokio::task::block_in_place(|| signing::save(path, &state))?;
                    }
                }
                Action::BroadcastProposal(proposal) => {
                    match self.blocks.get(&proposal.message.value) {
                        Some(block) => {
                            let block = block.clone();
                            self.publish(ConsensusMessage::Proposal { proposal, block })
                                .await;
                        }
                        None => {
                            error!(value = %proposal.message.value, "proposing a block we do not hold")
                        }
                    }
                }
                Action::BroadcastVote(vote) => self.publish(ConsensusMessage::Vote(vote)).await,
                Action::ScheduleTimeout {
                    timeout,
                    duration_ms,
                } => {
                    let internal = self.internal.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(duration_ms)).await;
                        let _ = internal.send(Internal::Timeout(timeout));
                    });
                }
                Action::BuildBlock { height, round } => self.build(height, round),
                Action::VerifyBlock {
                    height,
                    round,
                    value,
                    proposer,
                } => self.verify(height, round, value, proposer),
                Action::Decide(certificate) => {
                    let height = certificate.height;
                    info!(height, round = certificate.round, block = %certificate.value, "decided");
                    self.observe_decision(&certificate);
                    self.last_progress = Instant::now();
                    let ledger = self.ledger.clone();
                    let internal = self.internal.clone();
                    let commit = certificate_to_commit(&certificate);
                    tokio::spawn(async move {
                        let result = ledger.commit_decided(commit.block_hash, commit).await;
                        let _ = internal.send(Internal::Committed { height, result });
                    });
                }
                Action::ReportEvidence(evidence) => {
                    let kind = match &evidence {
                        tally_consensus::Evidence::DuplicateVote { .. } => "two votes",
                        tally_consensus::Evidence::DuplicateProposal { .. } => "two proposals",
                    };
                    let label = KindLabel {
                        kind: if kind == "two votes" {
                            "vote"
                        } else {
                            "proposal"
                        },
                    };
                    self.metrics
                        .consensus
                        .equivocations
                        .get_or_create(&label)
                        .inc();
                    warn!(
                        offender = %evidence.offender(),
                        kind,
                        ?evidence,
                        "a validator signed conflicting messages"
                    );
                }
            }
        }
        self.observe_state();
        Ok(())
    }

    /// What `tally_consensusState` shows.
    fn state(&self) -> ConsensusState {
        let m = &self.machine;
        let round = m.round().unwrap_or(0);
        let proposer = self.set.proposer(round);
        let (mut prevotes, mut precommits, mut proposal) = (Vec::new(), Vec::new(), None);
        for message in m.round_messages(round) {
            match message {
                tally_consensus::Message::Proposal(p) if p.message.proposer == *proposer => {
                    proposal.get_or_insert(p.message.value);
                }
                tally_consensus::Message::Proposal(_) => {}
                tally_consensus::Message::Vote(v) => {
                    let info = VoteInfo {
                        validator: v.message.validator,
                        block: v.message.value,
                    };
                    match v.message.vote_type {
                        tally_consensus::VoteType::Prevote => prevotes.push(info),
                        tally_consensus::VoteType::Precommit => precommits.push(info),
                    }
                }
            }
        }
        let missing = |votes: &[VoteInfo]| -> Vec<Address> {
            self.set
                .validators()
                .iter()
                .map(|v| v.address)
                .filter(|a| !votes.iter().any(|vote| vote.validator == *a))
                .collect()
        };
        ConsensusState {
            height: self.progress.height(),
            round,
            step: match m.step() {
                Some(tally_consensus::Step::Prevote) => "prevote",
                Some(tally_consensus::Step::Precommit) => "precommit",
                _ => "propose",
            }
            .into(),
            proposer: Some(*proposer),
            proposal,
            locked_round: m.locked().map(|l| l.round),
            locked_block: m.locked().map(|l| l.value),
            valid_round: m.valid().map(|v| v.round),
            valid_block: m.valid().map(|v| v.value),
            decided: m.decision().is_some(),
            missing_prevotes: missing(&prevotes),
            missing_precommits: missing(&precommits),
            prevotes,
            precommits,
        }
    }

    /// Height, round and step as the machine has them now.
    fn observe_state(&self) {
        let c = &self.metrics.consensus;
        c.height.set(self.progress.height() as i64);
        c.round.set(i64::from(self.machine.round().unwrap_or(0)));
        c.step.set(match self.machine.step() {
            Some(tally_consensus::Step::Prevote) => 1,
            Some(tally_consensus::Step::Precommit) => 2,
            _ => 0,
        });
    }

    /// Says so when our key joins or leaves the set (a set change).
    fn note_membership(&mut self, height: u64) {
        let Some(me) = self.me else {
            return;
        };
        let member = self.set.contains(&me);
        match (self.in_set.replace(member), member) {
            (Some(false), true) => {
                info!(height, address = %me, "this node's key is in the validator set from this height: signing");
            }
            (Some(true), false) => {
                warn!(height, address = %me, "this node's key left the validator set at this height: running as a full node");
            }
            _ => {}
        }
    }

    /// The validator set of the height just started.
    fn observe_set(&self) {
        let c = &self.metrics.consensus;
        c.validators.set(self.set.len() as i64);
        c.total_power
            .set(i64::try_from(self.set.total_power()).unwrap_or(i64::MAX));
        c.validator_power.clear();
        for v in self.set.validators() {
            let label = ValidatorLabel {
                validator: v.address.to_string(),
            };
            c.validator_power
                .get_or_create(&label)
                .set(i64::try_from(v.power).unwrap_or(i64::MAX));
        }
    }

    fn observe_inbound(&self, message: &ConsensusMessage, verdict: Verdict) {
        self.metrics.network.verdict("consensus", verdict);
        let c = &self.metrics.consensus;
        match message {
            ConsensusMessage::Proposal { .. } => {
                let outcome = match verdict {
                    Verdict::Accept => "accepted",
                    Verdict::Reject => "rejected",
                    Verdict::Ignore => "ignored",
                };
                c.proposals.get_or_create(&OutcomeLabel { outcome }).inc();
            }
            ConsensusMessage::Vote(vote) if verdict == Verdict::Accept => {
                let kind = match vote.message.vote_type {
                    tally_consensus::VoteType::Prevote => "prevote",
                    tally_consensus::VoteType::Precommit => "precommit",
                };
                c.votes.get_or_create(&KindLabel { kind }).inc();
            }
            ConsensusMessage::Vote(_) => {}
        }
    }

    fn observe_decision(&mut self, certificate: &Certificate) {
        let c = &self.metrics.consensus;
        c.rounds_per_height
            .observe(f64::from(certificate.round) + 1.0);
        c.height_duration
            .observe(self.height_started.elapsed().as_secs_f64());
        let now = Instant::now();
        if let Some(last) = self.last_decided.replace(now) {
            c.block_interval.observe((now - last).as_secs_f64());
        }
        let signed: std::collections::BTreeSet<&Address> =
            certificate.signatures.iter().map(|(a, _)| a).collect();
        let missing: Vec<_> = self
            .set
            .validators()
            .iter()
            .filter(|v| !signed.contains(&v.address))
            .collect();
        c.missing_in_last_commit.set(missing.len() as i64);
        c.missing_power_in_last_commit
            .set(missing.iter().map(|v| v.power as i64).sum());
        // A validator missing from several certificates in a row is down or
        // cut off: say so once when it crosses the mark, then every 100.
        let height = certificate.height;
        let missed: Vec<Address> = missing.iter().map(|v| v.address).collect();
        self.missed_in_a_row.retain(|a, _| missed.contains(a));
        for address in missed {
            let count = self.missed_in_a_row.entry(address).or_insert(0);
            *count += 1;
            if *count == MISSED_HEIGHTS_WARNING || *count % 100 == 0 {
                warn!(
                    height,
                    validator = %address,
                    heights = *count,
                    "a validator's precommit is missing from the last heights' certificates"
                );
            }
        }
    }

    fn build(&self, height: u64, round: u32) {
        let Some(me) = self.me else {
            return;
        };
        let (ledger, mempool, internal) = (
            self.ledger.clone(),
            self.mempool.clone(),
            self.internal.clone(),
        );
        let (max_txs, max_bytes) = (self.settings.max_block_txs, self.settings.max_block_bytes);
        tokio::spawn(async move {
            let result = match mempool.reap(max_txs, max_bytes).await {
                Ok(candidates) => ledger.build(me, height, round, candidates).await,
                Err(_) => Err(LedgerError::Invalid("the mempool has stopped".into())),
            };
            let _ = internal.send(Internal::Built {
                height,
                round,
                result,
            });
        });
    }

    fn verify(&mut self, height: u64, round: u32, value: Hash, proposer: Address) {
        let internal = self.internal.clone();
        let Some(block) = self.blocks.get(&value).cloned() else {
            // Proposals are fed only with their block, but the cache may
            // have evicted it since. Validity must not stay pending (the
            // machine would wait for ever): not holding it, we cannot vote
            // for it; a decision by the others reaches us by block sync.
            warn!(height, %value, %proposer, "asked to verify a block we no longer hold");
            let _ = internal.send(Internal::Verified {
                height,
                value,
                result: Err(LedgerError::UnknownBlock(value)),
            });
            return;
        };
        let (ledger, mempool) = (self.ledger.clone(), self.mempool.clone());
        // A peer's block was hashed by the gate's body check already.
        let ids = self.gate.take_tx_ids(&value);
        tokio::spawn(async move {
            let hashes = ids.unwrap_or_else(|| block.txs.iter().map(|tx| tx.hash()).collect());
            // A stopped mempool only means every sender is recovered again.
            let known = mempool.get_many(hashes).await.unwrap_or_default();
            let result = ledger.verify(block, round, known).await;
            let _ = internal.send(Internal::Verified {
                height,
                value,
                result,
            });
        });
    }
}

fn message_height(message: &ConsensusMessage) -> u64 {
    match message {
        ConsensusMessage::Proposal { proposal, .. } => proposal.message.height,
        ConsensusMessage::Vote(vote) => vote.message.height,
    }
}
