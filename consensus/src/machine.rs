//! The Tendermint state machine: `Consensus::handle(event) -> Vec<Action>`.
//!
//! Comments `L<n>` cite the lines of Algorithm 1 of "The latest gossip on BFT
//! consensus" (arXiv:1807.04938). The paper's `upon` rules are evaluated after
//! every event, in a fixed order, until none fires ([`Consensus::run_rules`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use tracing::{debug, trace};

use crate::certificate::CommitCertificate;
use crate::evidence::Evidence;
use crate::pending::Pending;
use crate::scheme::{Signer, SigningScheme};
use crate::signing_state::{
    Permit, RoundValue, SignedProposalRecord, SignedVoteRecord, SigningState,
};
use crate::types::{
    Height, Message, Proposal, Round, Signed, SignedProposal, SignedVote, Step, ValueId, Vote,
    VoteType,
};
use crate::validators::ValidatorSet;
use crate::votes::{MAX_PROPOSALS_PER_ROUND, MessageLog};

/// Messages for rounds above this are dropped. At CometBFT's default timeouts
/// a height would need thousands of years of failed rounds to get there; the
/// cap keeps peers (even more than f of them) from making us compute the
/// proposer rotation of an arbitrary round number.
pub const MAX_ROUND: Round = 1 << 20;

/// Timeouts in milliseconds: `timeout(r) = base + r * delta` for each step, so
/// that after GST some round lasts long enough for every correct validator.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct TimeoutConfig {
    /// `timeoutPropose(0)`.
    pub propose_ms: u64,
    /// Added to `timeoutPropose` per round.
    pub propose_delta_ms: u64,
    /// `timeoutPrevote(0)`.
    pub prevote_ms: u64,
    /// Added to `timeoutPrevote` per round.
    pub prevote_delta_ms: u64,
    /// `timeoutPrecommit(0)`.
    pub precommit_ms: u64,
    /// Added to `timeoutPrecommit` per round.
    pub precommit_delta_ms: u64,
}

impl Default for TimeoutConfig {
    /// CometBFT's defaults: propose 3 s, prevote and precommit 1 s, each
    /// growing by 0.5 s per round.
    fn default() -> Self {
        Self {
            propose_ms: 3000,
            propose_delta_ms: 500,
            prevote_ms: 1000,
            prevote_delta_ms: 500,
            precommit_ms: 1000,
            precommit_delta_ms: 500,
        }
    }
}

impl TimeoutConfig {
    /// The timeout of `kind` in `round`, saturating.
    pub fn duration_ms(&self, kind: TimeoutKind, round: Round) -> u64 {
        let (base, delta) = match kind {
            TimeoutKind::Propose => (self.propose_ms, self.propose_delta_ms),
            TimeoutKind::Prevote => (self.prevote_ms, self.prevote_delta_ms),
            TimeoutKind::Precommit => (self.precommit_ms, self.precommit_delta_ms),
        };
        base.saturating_add(delta.saturating_mul(u64::from(round)))
    }
}

/// Configuration of a [`Consensus`] instance.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Config {
    /// Chain id, part of every sign bytes.
    pub chain_id: u64,
    /// Step timeouts.
    pub timeouts: TimeoutConfig,
    /// Rounds above the current one that a single validator's messages may
    /// occupy (at least 1). See the `votes` module for the eviction rule.
    pub max_future_rounds: usize,
    /// Messages for the next height kept per validator until that height
    /// starts: signed by it, one per round and step, its lowest rounds
    /// first. Before the first height starts, as many per signer and 32 times
    /// this in total, of any height. Messages for any other height are
    /// dropped.
    pub max_next_height_messages: usize,
    /// A deliberate bug, for the mutation tests only (the simulator must
    /// find each). `None` everywhere else.
    /// Never serialised: a config read from a file or the wire has none.
    #[doc(hidden)]
    #[borsh(skip)]
    #[serde(skip)]
    pub mutation: Option<Mutation>,
}

/// Deliberate protocol bugs the simulator's mutation tests switch on, to
/// show that it finds them: a simulator that never fails is no evidence.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// L23 and L29 without the lock: prevote a valid proposal whatever we
    /// are locked on.
    IgnoreLock,
    /// L28 without its 2f+1 prevotes in the valid round.
    ValidRoundWithoutPolka,
    /// Every vote weighs the same (the average power): quorums by head.
    CountByHead,
    /// The signing state written after the messages it guards are sent,
    /// not before.
    PersistAfterSending,
}

impl Config {
    /// Default timeouts and limits for `chain_id`.
    pub fn new(chain_id: u64) -> Self {
        Self {
            chain_id,
            timeouts: TimeoutConfig::default(),
            max_future_rounds: 4,
            max_next_height_messages: 16,
            mutation: None,
        }
    }
}

/// Which step a timeout guards.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub enum TimeoutKind {
    /// `OnTimeoutPropose` (L57).
    Propose,
    /// `OnTimeoutPrevote` (L61).
    Prevote,
    /// `OnTimeoutPrecommit` (L65).
    Precommit,
}

/// A timeout to schedule and, when it elapses, to feed back as
/// [`Event::TimeoutElapsed`].
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Timeout {
    /// Height it was scheduled at.
    pub height: Height,
    /// Round it was scheduled in.
    pub round: Round,
    /// Step it guards.
    pub kind: TimeoutKind,
}

/// Inputs of the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<A, V, Sig> {
    /// Start `height` with its validator set (L10, and L52-54 after a
    /// decision: moving on is the node's call, made once the decided block is
    /// committed and any minimum block interval has passed). Ignored unless
    /// `height` is above the current height.
    StartHeight {
        /// The height to start.
        height: Height,
        /// The validator set of that height.
        validators: ValidatorSet<A>,
    },
    /// A proposal from a peer.
    Proposal(SignedProposal<A, V, Sig>),
    /// A prevote or precommit from a peer.
    Vote(SignedVote<A, V, Sig>),
    /// A timeout from [`Action::ScheduleTimeout`] elapsed.
    TimeoutElapsed(Timeout),
    /// Answer to [`Action::BuildBlock`]: `getValue()` of L18.
    BlockBuilt {
        /// Height of the request.
        height: Height,
        /// Round of the request.
        round: Round,
        /// Id of the block built.
        value: V,
    },
    /// Answer to [`Action::VerifyBlock`]: `valid(v)` of the paper.
    BlockVerified {
        /// Height of the request.
        height: Height,
        /// The block id verified.
        value: V,
        /// Whether the block is valid.
        valid: bool,
    },
}

impl<A, V, Sig> From<Message<A, V, Sig>> for Event<A, V, Sig> {
    fn from(message: Message<A, V, Sig>) -> Self {
        match message {
            Message::Proposal(p) => Event::Proposal(p),
            Message::Vote(v) => Event::Vote(v),
        }
    }
}

/// Outputs of the machine, to execute in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<A, V, Sig> {
    /// Durably record this state (write and fsync) before executing any later
    /// action of the same list: it always precedes the broadcasts it guards.
    PersistSigningState(SigningState<A, V, Sig>),
    /// Send our proposal to all peers.
    BroadcastProposal(SignedProposal<A, V, Sig>),
    /// Send our vote to all peers.
    BroadcastVote(SignedVote<A, V, Sig>),
    /// Feed back [`Event::TimeoutElapsed`] after `duration_ms`.
    ScheduleTimeout {
        /// The timeout to feed back.
        timeout: Timeout,
        /// How long to wait, in milliseconds.
        duration_ms: u64,
    },
    /// We propose in this round: build a block and answer with
    /// [`Event::BlockBuilt`].
    BuildBlock {
        /// Height to build at.
        height: Height,
        /// Round to build for.
        round: Round,
    },
    /// Check the block with this id (carried next to the proposal) and answer
    /// with [`Event::BlockVerified`]. Asked once per value and height, and
    /// again in a later round if the answer was invalid.
    VerifyBlock {
        /// Height of the block.
        height: Height,
        /// Round of the proposal that carried it first.
        round: Round,
        /// The block id.
        value: V,
        /// The proposer of that proposal.
        proposer: A,
    },
    /// `decision[h] = v` (L51) with the precommits that decided it. The machine
    /// stays on this height until the next [`Event::StartHeight`].
    Decide(CommitCertificate<A, V, Sig>),
    /// A validator signed two different messages for one height/round/step.
    ReportEvidence(Evidence<A, V, Sig>),
}

/// `valid(v)` as known so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Validity {
    Pending,
    Valid,
    Invalid,
}

/// Per-height state (`h_p` and everything reset at L53).
#[derive(Clone)]
struct HeightState<A, V, Sig> {
    height: Height,
    validators: ValidatorSet<A>,
    /// Rotation state after `proposers.len()` steps, and the index (in
    /// `validators`) of the proposer of every round up to the highest one
    /// asked for, so that a past round costs a lookup.
    rotation: ValidatorSet<A>,
    proposers: Vec<usize>,
    round: Round,
    step: Step,
    locked: Option<RoundValue<V>>,
    valid: Option<RoundValue<V>>,
    log: MessageLog<A, V, Sig>,
    validity: BTreeMap<V, Validity>,
    /// Our address and power if we are a validator of this height.
    me: Option<(A, u64)>,
    awaiting_block: bool,
    /// "for the first time" of L34, L36 and L47, for the current round.
    prevote_timeout_scheduled: bool,
    precommit_timeout_scheduled: bool,
    polka_for_value_seen: bool,
    decision: Option<CommitCertificate<A, V, Sig>>,
    /// (offender, round, step byte) already reported.
    reported: BTreeSet<(A, Round, u8)>,
}

impl<A: Ord + Clone, V: ValueId, Sig: Clone> HeightState<A, V, Sig> {
    /// `proposer(h_p, round)`. Only called for rounds up to the current one
    /// or holding a precommit quorum (both reached by correct validators), and
    /// never above [`MAX_ROUND`], so a peer cannot make us compute a huge
    /// rotation. The proposer of every round passed on the way is kept: one
    /// index per round, so a round up to the current one is a lookup.
    fn proposer_of(&mut self, round: Round) -> A {
        // The proposer of round r is chosen by rotation step r + 1.
        let round = round as usize;
        while self.proposers.len() <= round {
            let index = self.rotation.rotate();
            self.proposers.push(index);
        }
        self.validators.validators()[self.proposers[round]]
            .address
            .clone()
    }

    /// `proposer(h_p, round)` if already computed.
    fn cached_proposer(&self, round: Round) -> Option<&A> {
        cached_proposer(&self.validators, &self.proposers, round)
    }

    /// The proposal of `round` from `proposer(h_p, round)`: (proposer, value,
    /// POL round). The first one, if the proposer equivocated.
    fn proposal_of_round(&mut self, round: Round) -> Option<(A, V, Option<Round>)> {
        let proposer = self.proposer_of(round);
        let p = self.log.proposal(round, &proposer)?;
        let (value, pol_round) = (p.message.value.clone(), p.message.pol_round);
        Some((proposer, value, pol_round))
    }

    /// The values `proposer(h_p, round)` proposed in `round` (two if it
    /// equivocated), with the proposer.
    fn proposed_values(&mut self, round: Round) -> (A, Vec<V>) {
        let proposer = self.proposer_of(round);
        let values = self
            .log
            .proposals(round, &proposer)
            .iter()
            .map(|p| p.message.value.clone())
            .collect();
        (proposer, values)
    }

    /// `valid(v)`, asking the node to verify the first time it is needed.
    /// `None` while the answer is pending.
    fn valid_value(
        &mut self,
        value: &V,
        round: Round,
        proposer: &A,
        out: &mut Out<A, V, Sig>,
    ) -> Option<bool> {
        match self.validity.get(value) {
            Some(Validity::Valid) => Some(true),
            Some(Validity::Invalid) => Some(false),
            Some(Validity::Pending) => None,
            None => {
                self.validity.insert(value.clone(), Validity::Pending);
                out.push(Action::VerifyBlock {
                    height: self.height,
                    round,
                    value: value.clone(),
                    proposer: proposer.clone(),
                });
                None
            }
        }
    }

    fn is_quorum(&self, power: u64) -> bool {
        self.validators.is_quorum(power)
    }

    fn prevotes_for(&self, round: Round, value: Option<&V>) -> u64 {
        self.log
            .round(round)
            .map_or(0, |r| r.prevotes.power_for(value))
    }
}

/// The power a validator's messages count with: its own, unless a mutation
/// test says otherwise.
fn counted_power<A: Ord + Clone>(
    mutation: Option<Mutation>,
    validators: &ValidatorSet<A>,
    address: &A,
) -> Option<u64> {
    let power = validators.power_of(address)?;
    Some(match mutation {
        Some(Mutation::CountByHead) => validators
            .total_power()
            .div_ceil(validators.len().max(1) as u64),
        _ => power,
    })
}

fn cached_proposer<'a, A: Ord + Clone>(
    validators: &'a ValidatorSet<A>,
    proposers: &[usize],
    round: Round,
) -> Option<&'a A> {
    let index = *proposers.get(usize::try_from(round).ok()?)?;
    validators.validators().get(index).map(|v| &v.address)
}

/// Why a persisted [`SigningState`] was refused by [`Consensus::restore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The persisted round is above [`MAX_ROUND`], which the machine never
    /// reaches: the state is corrupt (resuming there would compute the
    /// proposer rotation of an arbitrary round).
    #[error("persisted round {round} is above the maximum round {MAX_ROUND}")]
    RoundTooHigh {
        /// The persisted round.
        round: Round,
    },
}

/// Actions collected during one `handle` call.
struct Out<A, V, Sig> {
    actions: Vec<Action<A, V, Sig>>,
    first_broadcast: Option<usize>,
    persist: bool,
}

impl<A, V, Sig> Out<A, V, Sig> {
    fn new() -> Self {
        Self {
            actions: Vec::new(),
            first_broadcast: None,
            persist: false,
        }
    }

    fn push(&mut self, action: Action<A, V, Sig>) {
        self.actions.push(action);
    }

    fn broadcast(&mut self, action: Action<A, V, Sig>) {
        if self.first_broadcast.is_none() {
            self.first_broadcast = Some(self.actions.len());
        }
        self.actions.push(action);
    }
}

/// Before the first height starts the validator set is unknown, so the
/// buffer is bounded in total: this many times the per-validator limit.
/// Signatures are checked, but anyone can make keys, so signers that turn out
/// not to be validators can still take this space until the first height
/// starts; what is lost then is re-gossiped ([`Consensus::catch_up_messages`]).
const PRE_START_FACTOR: usize = 32;

/// Shorthands for the machine's event and action types.
pub type EventOf<S, V> = Event<<S as SigningScheme>::Address, V, <S as SigningScheme>::Signature>;
/// See [`EventOf`].
pub type ActionOf<S, V> = Action<<S as SigningScheme>::Address, V, <S as SigningScheme>::Signature>;
/// See [`EventOf`].
pub type MessageOf<S, V> =
    Message<<S as SigningScheme>::Address, V, <S as SigningScheme>::Signature>;

/// The signing state of a machine over scheme `S` and value `V`.
pub type SigningStateOf<S, V> =
    SigningState<<S as SigningScheme>::Address, V, <S as SigningScheme>::Signature>;

type Hs<S, V> = HeightState<<S as SigningScheme>::Address, V, <S as SigningScheme>::Signature>;
type OutOf<S, V> = Out<<S as SigningScheme>::Address, V, <S as SigningScheme>::Signature>;

/// One validator's (or observer's) Tendermint instance. Pure: no clock, no
/// randomness, no IO; see the crate documentation for how a node drives it.
pub struct Consensus<S: SigningScheme, V: ValueId> {
    config: Config,
    scheme: S,
    signer: Option<Box<dyn Signer<S> + Send>>,
    signing: SigningStateOf<S, V>,
    hs: Option<Hs<S, V>>,
    /// Signed messages for a height not started yet.
    pending: Pending<S::Address, V, S::Signature>,
}

impl<S: SigningScheme, V: ValueId> fmt::Debug for Consensus<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Consensus");
        d.field("chain_id", &self.config.chain_id)
            .field("address", &self.signer.as_ref().map(|s| s.address()));
        if let Some(hs) = &self.hs {
            d.field("height", &hs.height)
                .field("round", &hs.round)
                .field("step", &hs.step)
                .field("locked", &hs.locked)
                .field("valid", &hs.valid)
                .field("decided", &hs.decision.is_some());
        }
        d.finish_non_exhaustive()
    }
}

impl<S: SigningScheme, V: ValueId> Consensus<S, V> {
    /// A fresh instance that has signed nothing. `signer: None` runs it as an
    /// observer (a full node): it counts votes and decides, never signs.
    pub fn new(config: Config, scheme: S, signer: Option<Box<dyn Signer<S> + Send>>) -> Self {
        Self::with_state(config, scheme, signer, SigningState::empty())
    }

    /// An instance restarted from the last persisted [`SigningState`]. Started
    /// at the same height, it resumes in the persisted round with the lock and
    /// valid value restored, and for any height/round/step it already signed
    /// it only ever re-signs the identical content; below that it signs
    /// nothing. Started at a lower height it signs nothing at all.
    ///
    /// The disk is not trusted: a round above [`MAX_ROUND`] (which the
    /// machine never reaches) is refused. The persisted polka is checked like
    /// any message when the height starts.
    pub fn restore(
        config: Config,
        scheme: S,
        signer: Option<Box<dyn Signer<S> + Send>>,
        signing_state: SigningStateOf<S, V>,
    ) -> Result<Self, RestoreError> {
        if signing_state.round > MAX_ROUND {
            return Err(RestoreError::RoundTooHigh {
                round: signing_state.round,
            });
        }
        Ok(Self::with_state(config, scheme, signer, signing_state))
    }

    fn with_state(
        config: Config,
        scheme: S,
        signer: Option<Box<dyn Signer<S> + Send>>,
        signing_state: SigningStateOf<S, V>,
    ) -> Self {
        Self {
            config,
            scheme,
            signer,
            signing: signing_state,
            hs: None,
            pending: Pending::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The signing state in memory: what the last
    /// [`Action::PersistSigningState`] carried, except that starting a height
    /// above its height moves it there (clearing the records of the older
    /// height) before anything is persisted at the new height; it is
    /// persisted with the first signature there. Persist only what
    /// [`Action::PersistSigningState`] carries.
    pub fn signing_state(&self) -> &SigningStateOf<S, V> {
        &self.signing
    }

    /// Current height, once started.
    pub fn height(&self) -> Option<Height> {
        self.hs.as_ref().map(|hs| hs.height)
    }

    /// Current round, once started.
    pub fn round(&self) -> Option<Round> {
        self.hs.as_ref().map(|hs| hs.round)
    }

    /// Current step, once started.
    pub fn step(&self) -> Option<Step> {
        self.hs.as_ref().map(|hs| hs.step)
    }

    /// `lockedValue`/`lockedRound` of the current height.
    pub fn locked(&self) -> Option<&RoundValue<V>> {
        self.hs.as_ref().and_then(|hs| hs.locked.as_ref())
    }

    /// `validValue`/`validRound` of the current height.
    pub fn valid(&self) -> Option<&RoundValue<V>> {
        self.hs.as_ref().and_then(|hs| hs.valid.as_ref())
    }

    /// The decision of the current height, if any.
    pub fn decision(&self) -> Option<&CommitCertificate<S::Address, V, S::Signature>> {
        self.hs.as_ref().and_then(|hs| hs.decision.as_ref())
    }

    /// The validator set of the current height.
    pub fn validators(&self) -> Option<&ValidatorSet<S::Address>> {
        self.hs.as_ref().map(|hs| &hs.validators)
    }

    /// Whether we sign at the current height (have a key in its set).
    pub fn is_validator(&self) -> bool {
        self.hs.as_ref().is_some_and(|hs| hs.me.is_some())
    }

    /// Number of proposals and votes held for the current height (for
    /// metrics, and to check that memory stays bounded).
    pub fn held_message_count(&self) -> usize {
        self.hs.as_ref().map_or(0, |hs| {
            hs.log.rounds().map(|(_, r)| r.messages().count()).sum()
        }) + self.pending.len()
    }

    /// Every message held for `round` of the current height (ours included).
    pub fn round_messages(&self, round: Round) -> Vec<MessageOf<S, V>> {
        self.hs
            .as_ref()
            .and_then(|hs| hs.log.round(round))
            .map(|r| r.messages().collect())
            .unwrap_or_default()
    }

    /// What a node re-gossips when the height makes no progress (the paper
    /// assumes every message a correct validator received eventually reaches
    /// all; a lossy network needs this help): every message of the current
    /// and of the previous round (a validator one round behind may lack just
    /// those to time out and follow), plus the prevotes of `validRound`,
    /// `lockedRound` and the current proposal's POL round, which a proposal
    /// with that POL round needs at the other validators (L28).
    pub fn catch_up_messages(&self) -> Vec<MessageOf<S, V>> {
        let Some(hs) = &self.hs else {
            return Vec::new();
        };
        let mut out = self.round_messages(hs.round);
        if let Some(previous) = hs.round.checked_sub(1) {
            out.extend(self.round_messages(previous));
        }
        let mut pol_rounds: BTreeSet<Round> = [&hs.valid, &hs.locked]
            .into_iter()
            .flatten()
            .map(|rv| rv.round)
            .collect();
        // The POL round of the current proposal, if we hold its polka.
        pol_rounds.extend(
            hs.cached_proposer(hs.round)
                .and_then(|p| hs.log.proposal(hs.round, p))
                .and_then(|p| p.message.pol_round),
        );
        pol_rounds.retain(|r| r.saturating_add(1) < hs.round);
        for r in pol_rounds {
            if let Some(log) = hs.log.round(r) {
                out.extend(log.prevotes.iter().cloned().map(Message::Vote));
            }
        }
        out
    }

    /// Feeds one event and returns the actions to execute, in order.
    pub fn handle(&mut self, event: EventOf<S, V>) -> Vec<ActionOf<S, V>> {
        let mut out = Out::new();
        match event {
            Event::StartHeight { height, validators } => {
                self.start_height(height, validators, &mut out);
            }
            Event::Proposal(p) => self.on_message(Message::Proposal(p), &mut out),
            Event::Vote(v) => self.on_message(Message::Vote(v), &mut out),
            Event::TimeoutElapsed(t) => self.on_timeout(t, &mut out),
            Event::BlockBuilt {
                height,
                round,
                value,
            } => self.on_block_built(height, round, value, &mut out),
            Event::BlockVerified {
                height,
                value,
                valid,
            } => self.on_block_verified(height, value, valid, &mut out),
        }
        self.run_rules(&mut out);
        self.finish(out)
    }

    fn finish(&mut self, mut out: OutOf<S, V>) -> Vec<ActionOf<S, V>> {
        if out.persist {
            if let Some(hs) = &self.hs
                && hs.height == self.signing.height
            {
                self.signing.round = hs.round;
                self.signing.locked = hs.locked.clone();
                if self.signing.valid != hs.valid {
                    self.signing.polka = hs.valid.as_ref().map_or_else(Vec::new, |valid| {
                        hs.log
                            .round(valid.round)
                            .map(|r| {
                                r.prevotes
                                    .iter()
                                    .filter(|v| v.message.value.as_ref() == Some(&valid.value))
                                    .cloned()
                                    .collect()
                            })
                            .unwrap_or_default()
                    });
                    self.signing.valid = hs.valid.clone();
                }
            }
            let at = match self.config.mutation {
                Some(Mutation::PersistAfterSending) => out.actions.len(),
                _ => out.first_broadcast.unwrap_or(out.actions.len()),
            };
            out.actions
                .insert(at, Action::PersistSigningState(self.signing.clone()));
        }
        out.actions
    }

    // ---------------------------------------------------------------------
    // Heights and rounds
    // ---------------------------------------------------------------------

    fn start_height(
        &mut self,
        height: Height,
        validators: ValidatorSet<S::Address>,
        out: &mut OutOf<S, V>,
    ) {
        if let Some(hs) = &self.hs
            && height <= hs.height
        {
            debug!(
                height,
                current = hs.height,
                "ignoring start of a past height"
            );
            return;
        }
        let me = self.signer.as_ref().and_then(|s| {
            counted_power(self.config.mutation, &validators, s.address())
                .map(|p| (s.address().clone(), p))
        });
        // A restart at the height of the persisted state resumes its round,
        // lock and valid value; a new height starts clean (L53).
        let restored = height == self.signing.height;
        let (round, locked, valid) = if restored {
            (
                self.signing.round,
                self.signing.locked.clone(),
                self.signing.valid.clone(),
            )
        } else {
            self.signing.enter_height(height);
            (0, None, None)
        };
        self.hs = Some(HeightState {
            height,
            rotation: validators.clone(),
            validators,
            proposers: Vec::new(),
            round,
            step: Step::Propose,
            locked,
            valid,
            log: MessageLog::new(self.config.max_future_rounds),
            validity: BTreeMap::new(),
            me,
            awaiting_block: false,
            prevote_timeout_scheduled: false,
            precommit_timeout_scheduled: false,
            polka_for_value_seen: false,
            decision: None,
            reported: BTreeSet::new(),
        });
        if restored {
            self.resend_signed_records(out);
        }
        self.start_round(round, out);
        let buffered: Vec<_> = self.pending.take().collect();
        for message in buffered {
            if message.height() == height {
                self.on_message(message, out);
            }
        }
    }

    /// After a restart at the height of the persisted state: our last
    /// proposal and votes went out before the crash, but the network may have
    /// lost them and we lost our log. Re-sign exactly the recorded content
    /// (identical sign bytes, so nothing conflicting), count it again, and
    /// send it again; otherwise validators still in those rounds may wait
    /// forever for messages only we could give them.
    fn resend_signed_records(&mut self, out: &mut OutOf<S, V>) {
        let Some(hs) = self.hs.as_mut() else {
            return;
        };
        // The persisted polka of validRound goes back into the log (checked
        // like any message: the disk is not trusted to be intact).
        for vote in &self.signing.polka {
            let m = &vote.message;
            let Some(power) = counted_power(self.config.mutation, &hs.validators, &m.validator)
            else {
                continue;
            };
            if m.height != hs.height
                || m.vote_type != VoteType::Prevote
                || m.round > hs.round
                || hs
                    .log
                    .vote(m.round, VoteType::Prevote, &m.validator)
                    .is_some()
                || !self.scheme.verify(
                    &m.validator,
                    &m.sign_bytes(self.config.chain_id),
                    &vote.signature,
                )
            {
                continue;
            }
            hs.log.add_vote(vote.clone(), power);
        }
        let (Some((me, power)), Some(signer)) = (hs.me.clone(), self.signer.as_ref()) else {
            return;
        };
        let chain_id = self.config.chain_id;
        let height = hs.height;
        if let Some(record) = &self.signing.last_proposal
            && record.round < hs.round
        {
            let proposal = Proposal {
                height,
                round: record.round,
                value: record.value.clone(),
                pol_round: record.pol_round,
                proposer: me.clone(),
            };
            let signature = signer.sign(&proposal.sign_bytes(chain_id));
            let signed = Signed {
                message: proposal,
                signature,
            };
            hs.log.add_proposal(signed.clone(), power);
            out.broadcast(Action::BroadcastProposal(signed));
        }
        let records = [
            (VoteType::Prevote, &self.signing.last_prevote),
            (VoteType::Precommit, &self.signing.last_precommit),
        ];
        for (vote_type, record) in records {
            let Some(record) = record else {
                continue;
            };
            let vote = Vote {
                height,
                round: record.round,
                vote_type,
                value: record.value.clone(),
                validator: me.clone(),
            };
            let signature = signer.sign(&vote.sign_bytes(chain_id));
            let signed = Signed {
                message: vote,
                signature,
            };
            if hs.log.vote(record.round, vote_type, &me).is_none() {
                hs.log.add_vote(signed.clone(), power);
            }
            out.broadcast(Action::BroadcastVote(signed));
        }
    }

    /// StartRound (L11-21).
    fn start_round(&mut self, round: Round, out: &mut OutOf<S, V>) {
        let Some(hs) = self.hs.as_mut() else {
            return;
        };
        // L12-13
        hs.round = round;
        hs.step = Step::Propose;
        hs.awaiting_block = false;
        hs.prevote_timeout_scheduled = false;
        hs.precommit_timeout_scheduled = false;
        hs.polka_for_value_seen = false;
        // A value found invalid is asked about again in a new round: the
        // answer may have been "not now" (a block ahead of our clock, a body
        // we did not hold yet). At most one check per value per round.
        hs.validity.retain(|_, v| *v != Validity::Invalid);
        let height = hs.height;
        let proposer = hs.proposer_of(round);
        // Every round up to `round` has its proposer computed now: the
        // rounds passed keep only their proposer's proposal.
        let (validators, proposers) = (&hs.validators, &hs.proposers);
        hs.log
            .set_current_round(round, |r| cached_proposer(validators, proposers, r));
        trace!(height, round, "start round");
        // L21. The proposer schedules it as well: if building the block never
        // answers it prevotes nil instead of waiting for the f+1 rule.
        out.push(Action::ScheduleTimeout {
            timeout: Timeout {
                height,
                round,
                kind: TimeoutKind::Propose,
            },
            duration_ms: self
                .config
                .timeouts
                .duration_ms(TimeoutKind::Propose, round),
        });
        // L14
        if hs.me.as_ref().is_some_and(|(me, _)| *me == proposer) {
            match self.signing.permit_proposal(height, round) {
                // Signed before a crash: the same proposal again, nothing
                // else. Neither it nor a valid value restored from the
                // signing state is taken as valid here: only what the node
                // executed in this run is (`validity`), the rest is verified
                // like a peer's proposal, so nothing unexecuted is decided.
                Permit::Repeat(record) => {
                    self.cast_proposal(record.value, record.pol_round, false, out);
                }
                Permit::Refuse => {}
                Permit::Sign => match hs.valid.clone() {
                    // L15-16, L19
                    Some(valid) => self.cast_proposal(valid.value, Some(valid.round), false, out),
                    // L18: getValue() is asynchronous, answered by BlockBuilt.
                    None => {
                        hs.awaiting_block = true;
                        out.push(Action::BuildBlock { height, round });
                    }
                },
            }
        }
    }

    fn on_block_built(&mut self, height: Height, round: Round, value: V, out: &mut OutOf<S, V>) {
        let Some(hs) = self.hs.as_mut() else {
            return;
        };
        if hs.height != height
            || hs.round != round
            || hs.step != Step::Propose
            || !hs.awaiting_block
            || hs.decision.is_some()
        {
            return;
        }
        hs.awaiting_block = false;
        // L18-19: proposal <- getValue(); validRound is -1 here, or we would
        // have re-proposed validValue instead of building.
        self.cast_proposal(value, None, true, out);
    }

    fn on_block_verified(&mut self, height: Height, value: V, valid: bool, _out: &mut OutOf<S, V>) {
        let Some(hs) = self.hs.as_mut() else {
            return;
        };
        if hs.height != height {
            return;
        }
        let validity = if valid {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        hs.validity.insert(value, validity);
    }

    /// OnTimeoutPropose, OnTimeoutPrevote, OnTimeoutPrecommit (L57-67).
    fn on_timeout(&mut self, timeout: Timeout, out: &mut OutOf<S, V>) {
        let Some(hs) = self.hs.as_mut() else {
            return;
        };
        if hs.decision.is_some() || timeout.height != hs.height || timeout.round != hs.round {
            return;
        }
        match timeout.kind {
            // L57-60
            TimeoutKind::Propose if hs.step == Step::Propose => {
                self.cast_vote(VoteType::Prevote, None, out);
                self.set_step(Step::Prevote);
            }
            // L61-64
            TimeoutKind::Prevote if hs.step == Step::Prevote => {
                self.cast_vote(VoteType::Precommit, None, out);
                self.set_step(Step::Precommit);
            }
            // L65-67. Never above MAX_ROUND, where messages are dropped
            // anyway (and which `restore` refuses).
            TimeoutKind::Precommit => {
                if let Some(next) = hs.round.checked_add(1).filter(|r| *r <= MAX_ROUND) {
                    self.start_round(next, out);
                }
            }
            _ => {}
        }
    }

    fn set_step(&mut self, step: Step) {
        if let Some(hs) = self.hs.as_mut() {
            hs.step = step;
        }
    }

    // ---------------------------------------------------------------------
    // Messages from peers
    // ---------------------------------------------------------------------

    fn on_message(&mut self, message: MessageOf<S, V>, out: &mut OutOf<S, V>) {
        let Some(hs) = self.hs.as_mut() else {
            // Gossip can arrive before the node starts the first height: keep
            // a bounded number, replayed if they are for that height.
            let total = self
                .config
                .max_next_height_messages
                .saturating_mul(PRE_START_FACTOR);
            self.buffer_message(message, total);
            return;
        };
        let height = message.height();
        if height == hs.height.saturating_add(1) {
            // Only validators of the current set get space (the next set is
            // not known yet; it is checked again when the height starts).
            if hs.validators.contains(message.signer()) {
                self.buffer_message(message, usize::MAX);
            }
            return;
        }
        if height != hs.height || hs.decision.is_some() {
            return;
        }
        let signer = message.signer().clone();
        let Some(power) = counted_power(self.config.mutation, &hs.validators, &signer) else {
            debug!(height, ?signer, "message from a non-validator: dropped");
            return;
        };
        let round = message.round();
        if round > MAX_ROUND {
            debug!(height, round, "message for an impossible round: dropped");
            return;
        }
        match message {
            Message::Proposal(proposal) => {
                let p = &proposal.message;
                // A POL round must lie before the proposal's round (L28).
                if p.pol_round.is_some_and(|vr| vr >= p.round) {
                    debug!(
                        height,
                        round, "proposal with an impossible POL round: dropped"
                    );
                    return;
                }
                if round <= hs.round && hs.proposer_of(round) != signer {
                    debug!(
                        height,
                        round,
                        ?signer,
                        "proposal from a non-proposer: dropped"
                    );
                    return;
                }
                let held = hs.log.proposals(round, &signer);
                if held.iter().any(|p| p.message == proposal.message) {
                    return;
                }
                let full = held.len() >= MAX_PROPOSALS_PER_ROUND;
                let first = held.first().cloned();
                let sign_bytes = p.sign_bytes(self.config.chain_id);
                if !self
                    .scheme
                    .verify(&signer, &sign_bytes, &proposal.signature)
                {
                    debug!(
                        height,
                        round,
                        ?signer,
                        "proposal with a bad signature: dropped"
                    );
                    return;
                }
                if let Some(first) = first {
                    if hs.reported.insert((signer.clone(), round, 0)) {
                        out.push(Action::ReportEvidence(Evidence::DuplicateProposal {
                            first,
                            second: proposal.clone(),
                        }));
                    }
                }
                // An equivocator's second value is kept (the others may
                // decide it); beyond that nothing is.
                if full || !hs.log.admit(&signer, round) {
                    return;
                }
                hs.log.add_proposal(proposal, power);
            }
            Message::Vote(vote) => {
                let v = &vote.message;
                let kind = v.vote_type;
                if hs.log.holds_vote(&vote) {
                    return;
                }
                let existing = hs.log.vote(round, kind, &signer).cloned();
                let sign_bytes = v.sign_bytes(self.config.chain_id);
                if let Some(first) = existing {
                    let step = match kind {
                        VoteType::Prevote => 1,
                        VoteType::Precommit => 2,
                    };
                    // Reported already and for a value that does not count:
                    // nothing to gain from checking its signature (a replay
                    // of junk costs no recovery).
                    let relevant = v
                        .value
                        .as_ref()
                        .is_some_and(|value| hs.log.is_relevant(round, value));
                    if !relevant && hs.reported.contains(&(signer.clone(), round, step)) {
                        return;
                    }
                    if !self.scheme.verify(&signer, &sign_bytes, &vote.signature) {
                        return;
                    }
                    if hs.reported.insert((signer, round, step)) {
                        out.push(Action::ReportEvidence(Evidence::DuplicateVote {
                            first,
                            second: vote.clone(),
                        }));
                    }
                    // Counted for its value only if that value matters in
                    // this round, so an equivocator cannot make us store junk
                    // values.
                    if relevant {
                        hs.log.add_conflicting_vote(vote, power);
                    }
                    return;
                }
                if !self.scheme.verify(&signer, &sign_bytes, &vote.signature) {
                    debug!(height, round, ?signer, "vote with a bad signature: dropped");
                    return;
                }
                if !hs.log.admit(&signer, round) {
                    return;
                }
                hs.log.add_vote(vote, power);
            }
        }
    }

    /// Keeps a message for a height not started yet (see [`Pending`]): well
    /// formed, with a free slot, and signed by its signer (checked before it
    /// takes space, so nobody can use another validator's quota). Replayed
    /// through [`Consensus::on_message`] when its height starts.
    fn buffer_message(&mut self, message: MessageOf<S, V>, total: usize) {
        if message.round() > MAX_ROUND {
            return;
        }
        if let Message::Proposal(p) = &message
            && p.message.pol_round.is_some_and(|vr| vr >= p.message.round)
        {
            return;
        }
        let per_signer = self.config.max_next_height_messages;
        if !self.pending.has_room(&message, per_signer, total) {
            return;
        }
        let chain_id = self.config.chain_id;
        let verified = match &message {
            Message::Proposal(p) => self.scheme.verify(
                &p.message.proposer,
                &p.message.sign_bytes(chain_id),
                &p.signature,
            ),
            Message::Vote(v) => self.scheme.verify(
                &v.message.validator,
                &v.message.sign_bytes(chain_id),
                &v.signature,
            ),
        };
        if !verified {
            debug!(
                height = message.height(),
                signer = ?message.signer(),
                "message for a later height with a bad signature: dropped"
            );
            return;
        }
        self.pending.insert(message, per_signer);
    }

    // ---------------------------------------------------------------------
    // Signing (always through the guard of the signing state)
    // ---------------------------------------------------------------------

    /// Broadcasts our vote of `vote_type` for `value` in the current round.
    /// Returns the value actually voted: after a restart the guard may force
    /// the value signed before the crash. `None` if nothing was signed
    /// (observer, or refused by the guard).
    fn cast_vote(
        &mut self,
        vote_type: VoteType,
        value: Option<V>,
        out: &mut OutOf<S, V>,
    ) -> Option<Option<V>> {
        let hs = self.hs.as_mut()?;
        let (me, power) = hs.me.clone()?;
        let signer = self.signer.as_ref()?;
        let precommit = vote_type == VoteType::Precommit;
        let value = match self.signing.permit_vote(hs.height, hs.round, precommit) {
            Permit::Sign => {
                self.signing.enter_height(hs.height);
                let record = Some(SignedVoteRecord {
                    round: hs.round,
                    value: value.clone(),
                });
                if precommit {
                    self.signing.last_precommit = record;
                } else {
                    self.signing.last_prevote = record;
                }
                out.persist = true;
                value
            }
            Permit::Repeat(previous) => previous,
            Permit::Refuse => return None,
        };
        let vote = Vote {
            height: hs.height,
            round: hs.round,
            vote_type,
            value: value.clone(),
            validator: me.clone(),
        };
        let signature = signer.sign(&vote.sign_bytes(self.config.chain_id));
        let signed = Signed {
            message: vote,
            signature,
        };
        if hs.log.vote(hs.round, vote_type, &me).is_none() {
            hs.log.add_vote(signed.clone(), power);
        }
        out.broadcast(Action::BroadcastVote(signed));
        Some(value)
    }

    /// Broadcasts our proposal for the current round (L19).
    fn cast_proposal(
        &mut self,
        value: V,
        pol_round: Option<Round>,
        known_valid: bool,
        out: &mut OutOf<S, V>,
    ) {
        let Some(hs) = self.hs.as_mut() else {
            return;
        };
        let Some((me, power)) = hs.me.clone() else {
            return;
        };
        let Some(signer) = self.signer.as_ref() else {
            return;
        };
        let (value, pol_round, known_valid) =
            match self.signing.permit_proposal(hs.height, hs.round) {
                Permit::Sign => {
                    self.signing.enter_height(hs.height);
                    self.signing.last_proposal = Some(SignedProposalRecord {
                        round: hs.round,
                        value: value.clone(),
                        pol_round,
                    });
                    out.persist = true;
                    (value, pol_round, known_valid)
                }
                Permit::Repeat(record) => {
                    let same = record.value == value;
                    (record.value, record.pol_round, known_valid && same)
                }
                Permit::Refuse => return,
            };
        if known_valid {
            hs.validity.insert(value.clone(), Validity::Valid);
        }
        let proposal = Proposal {
            height: hs.height,
            round: hs.round,
            value,
            pol_round,
            proposer: me.clone(),
        };
        let signature = signer.sign(&proposal.sign_bytes(self.config.chain_id));
        let signed = Signed {
            message: proposal,
            signature,
        };
        if hs.log.proposal(hs.round, &me).is_none() {
            hs.log.add_proposal(signed.clone(), power);
        }
        out.broadcast(Action::BroadcastProposal(signed));
    }

    fn schedule(&self, height: Height, round: Round, kind: TimeoutKind, out: &mut OutOf<S, V>) {
        out.push(Action::ScheduleTimeout {
            timeout: Timeout {
                height,
                round,
                kind,
            },
            duration_ms: self.config.timeouts.duration_ms(kind, round),
        });
    }

    // ---------------------------------------------------------------------
    // The upon rules
    // ---------------------------------------------------------------------

    /// Fires the paper's `upon` rules until none applies. Terminates: every
    /// firing decides, raises the round, advances the step, or sets a
    /// once-per-round flag.
    fn run_rules(&mut self, out: &mut OutOf<S, V>) {
        loop {
            let Some(hs) = self.hs.as_ref() else {
                return;
            };
            if hs.decision.is_some() {
                return;
            }
            let step = hs.step;
            if self.upon_decide(out) {
                return;
            }
            if self.upon_higher_round(out) {
                continue;
            }
            if step == Step::Propose && self.upon_proposal(out) {
                continue;
            }
            if self.upon_polka_any(out) {
                continue;
            }
            if self.upon_polka_value(out) {
                continue;
            }
            if self.upon_polka_nil(out) {
                continue;
            }
            if self.upon_precommit_any(out) {
                continue;
            }
            return;
        }
    }

    /// L49-54: a proposal from proposer(h, r) and 2f+1 precommits for its
    /// value in round r, any r, and valid(v): decide.
    fn upon_decide(&mut self, out: &mut OutOf<S, V>) -> bool {
        let Some(hs) = self.hs.as_mut() else {
            return false;
        };
        let candidates: Vec<(Round, V)> = hs
            .log
            .rounds()
            .flat_map(|(round, log)| {
                log.precommits
                    .values()
                    .filter(|(_, power)| hs.validators.is_quorum(*power))
                    .map(|(value, _)| (*round, value.clone()))
            })
            .collect();
        for (round, value) in candidates {
            // Any of the round proposer's proposals: a decision for its
            // second value is as final as one for its first.
            let (proposer, proposed) = hs.proposed_values(round);
            if !proposed.contains(&value) {
                continue;
            }
            // L50
            if hs.valid_value(&value, round, &proposer, out) != Some(true) {
                continue;
            }
            // Sorted by address, one per signer (as `verify_certificate`
            // requires): first votes and counted second votes interleave.
            let mut signatures: Vec<(S::Address, S::Signature)> = hs
                .log
                .round(round)
                .map(|log| {
                    log.precommits
                        .iter()
                        .filter(|v| v.message.value.as_ref() == Some(&value))
                        .map(|v| (v.message.validator.clone(), v.signature.clone()))
                        .collect()
                })
                .unwrap_or_default();
            signatures.sort_by(|a, b| a.0.cmp(&b.0));
            signatures.dedup_by(|a, b| a.0 == b.0);
            let certificate = CommitCertificate {
                height: hs.height,
                round,
                value,
                signatures,
            };
            debug!(height = hs.height, round, "decided");
            // L51. L52-54 (next height) is the node's StartHeight.
            hs.decision = Some(certificate.clone());
            out.push(Action::Decide(certificate));
            return true;
        }
        false
    }

    /// L55-56: f+1 (more than 1/3 of the power) sent messages in a higher
    /// round: StartRound there (the highest such round).
    fn upon_higher_round(&mut self, out: &mut OutOf<S, V>) -> bool {
        let Some(hs) = self.hs.as_ref() else {
            return false;
        };
        let target = hs
            .log
            .rounds_above(hs.round)
            .find(|(_, log)| hs.validators.is_one_third_plus(log.sender_power()))
            .map(|(round, _)| *round);
        match target {
            Some(round) => {
                self.start_round(round, out);
                true
            }
            None => false,
        }
    }

    /// L22-27 (proposal without POL round) and L28-33 (with a POL round and
    /// 2f+1 prevotes for the value in it), while step = propose.
    fn upon_proposal(&mut self, out: &mut OutOf<S, V>) -> bool {
        let Some(hs) = self.hs.as_mut() else {
            return false;
        };
        let round = hs.round;
        let Some((proposer, value, pol_round)) = hs.proposal_of_round(round) else {
            return false;
        };
        let mutation = self.config.mutation;
        let vote = match pol_round {
            // L22
            None => {
                let Some(valid) = hs.valid_value(&value, round, &proposer, out) else {
                    return false;
                };
                // L23-26: valid(v) ∧ (lockedRound = −1 ∨ lockedValue = v)
                let free = hs.locked.as_ref().is_none_or(|l| l.value == value)
                    || mutation == Some(Mutation::IgnoreLock);
                (valid && free).then_some(value)
            }
            // L28
            Some(vr) if vr < round => {
                if !hs.is_quorum(hs.prevotes_for(vr, Some(&value)))
                    && mutation != Some(Mutation::ValidRoundWithoutPolka)
                {
                    return false;
                }
                let Some(valid) = hs.valid_value(&value, round, &proposer, out) else {
                    return false;
                };
                // L29-32: valid(v) ∧ (lockedRound ≤ vr ∨ lockedValue = v)
                let free = hs
                    .locked
                    .as_ref()
                    .is_none_or(|l| l.round <= vr || l.value == value)
                    || mutation == Some(Mutation::IgnoreLock);
                (valid && free).then_some(value)
            }
            Some(_) => return false,
        };
        self.cast_vote(VoteType::Prevote, vote, out);
        // L27, L33
        self.set_step(Step::Prevote);
        true
    }

    /// L34-35: 2f+1 prevotes of any value, step = prevote, first time.
    fn upon_polka_any(&mut self, out: &mut OutOf<S, V>) -> bool {
        let Some(hs) = self.hs.as_mut() else {
            return false;
        };
        if hs.step != Step::Prevote || hs.prevote_timeout_scheduled {
            return false;
        }
        let total = hs.log.round(hs.round).map_or(0, |r| r.prevotes.total());
        if !hs.is_quorum(total) {
            return false;
        }
        hs.prevote_timeout_scheduled = true;
        let (height, round) = (hs.height, hs.round);
        self.schedule(height, round, TimeoutKind::Prevote, out);
        true
    }

    /// L36-43: the proposal of this round and 2f+1 prevotes for its value,
    /// valid(v), step >= prevote, first time: lock and precommit if still in
    /// prevote, and in any case remember the value as valid.
    fn upon_polka_value(&mut self, out: &mut OutOf<S, V>) -> bool {
        let Some(hs) = self.hs.as_mut() else {
            return false;
        };
        if hs.step < Step::Prevote || hs.polka_for_value_seen {
            return false;
        }
        let round = hs.round;
        // The proposer's value with 2f+1 prevotes (if it equivocated, at
        // most one of its two can have them).
        let (proposer, proposed) = hs.proposed_values(round);
        let Some(value) = proposed
            .into_iter()
            .find(|value| hs.is_quorum(hs.prevotes_for(round, Some(value))))
        else {
            return false;
        };
        if hs.valid_value(&value, round, &proposer, out) != Some(true) {
            return false;
        }
        hs.polka_for_value_seen = true;
        if hs.step == Step::Prevote {
            // L37-41
            let voted = self.cast_vote(VoteType::Precommit, Some(value.clone()), out);
            let Some(hs) = self.hs.as_mut() else {
                return true;
            };
            // After a restart the guard may have re-sent an earlier precommit
            // instead; then the lock must not claim a precommit we never sent.
            if voted.as_ref().is_none_or(|v| v.as_ref() == Some(&value)) {
                hs.locked = Some(RoundValue {
                    round,
                    value: value.clone(),
                });
            }
            hs.step = Step::Precommit;
        }
        // L42-43
        if let Some(hs) = self.hs.as_mut() {
            hs.valid = Some(RoundValue { round, value });
        }
        true
    }

    /// L44-46: 2f+1 prevotes for nil, step = prevote: precommit nil.
    fn upon_polka_nil(&mut self, out: &mut OutOf<S, V>) -> bool {
        let Some(hs) = self.hs.as_ref() else {
            return false;
        };
        if hs.step != Step::Prevote || !hs.is_quorum(hs.prevotes_for(hs.round, None)) {
            return false;
        }
        self.cast_vote(VoteType::Precommit, None, out);
        self.set_step(Step::Precommit);
        true
    }

    /// L47-48: 2f+1 precommits of any value, first time: schedule
    /// timeoutPrecommit.
    fn upon_precommit_any(&mut self, out: &mut OutOf<S, V>) -> bool {
        let Some(hs) = self.hs.as_mut() else {
            return false;
        };
        if hs.precommit_timeout_scheduled {
            return false;
        }
        let total = hs.log.round(hs.round).map_or(0, |r| r.precommits.total());
        if !hs.is_quorum(total) {
            return false;
        }
        hs.precommit_timeout_scheduled = true;
        let (height, round) = (hs.height, hs.round);
        self.schedule(height, round, TimeoutKind::Precommit, out);
        true
    }
}
