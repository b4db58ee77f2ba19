//! Helpers for the table-driven tests: a 4-validator set, signed messages,
//! expected actions, and the `TestStep` runner.

use tally_consensus::{
    Action, CommitCertificate, Config, Consensus, Event, Proposal, Round, RoundValue, Signed,
    SignedProposalRecord, SignedVoteRecord, Signer, SigningState, Timeout, TimeoutKind, Validator,
    ValidatorSet, Vote, VoteType,
};

use crate::sim::scheme::{
    Addr, Sig, TAction, TEvent, TProposal, TVote, TestScheme, TestSigner, Val,
};

pub const CHAIN: u64 = 7;

pub type Machine = Consensus<TestScheme, Val>;
pub type State = SigningState<Addr, Val, Sig>;

/// One step of a table: the event fed and exactly the actions expected.
pub struct TestStep {
    /// Names the rule of Algorithm 1 the step checks.
    pub desc: &'static str,
    pub event: TEvent,
    pub expected: Vec<TAction>,
}

pub fn run_steps(machine: &mut Machine, steps: Vec<TestStep>) {
    for step in steps {
        let got = machine.handle(step.event);
        assert_eq!(got, step.expected, "step: {}", step.desc);
    }
}

pub fn v(n: u64) -> Val {
    Val::new(n)
}

/// `n` validators with addresses `0..n`, power 1 each. With equal powers the
/// proposer of round `r` at height 1 is validator `r mod n`.
pub fn validators(n: u32) -> ValidatorSet<Addr> {
    ValidatorSet::new(
        (0..n)
            .map(|address| Validator { address, power: 1 })
            .collect(),
    )
    .expect("valid set")
}

pub fn config() -> Config {
    Config::new(CHAIN)
}

pub fn signer(me: Addr) -> Option<Box<dyn Signer<TestScheme> + Send>> {
    Some(Box::new(TestSigner(me)))
}

/// A validator machine that has signed nothing.
pub fn machine(me: Addr) -> Machine {
    Consensus::new(config(), TestScheme, signer(me))
}

pub fn start(height: u64) -> TEvent {
    Event::StartHeight {
        height,
        validators: validators(4),
    }
}

pub fn signed_vote(from: Addr, h: u64, r: Round, t: VoteType, value: Option<Val>) -> TVote {
    let vote = Vote {
        height: h,
        round: r,
        vote_type: t,
        value,
        validator: from,
    };
    let signature = TestSigner(from).sign(&vote.sign_bytes(CHAIN));
    Signed {
        message: vote,
        signature,
    }
}

pub fn prevote(from: Addr, h: u64, r: Round, value: Option<Val>) -> TVote {
    signed_vote(from, h, r, VoteType::Prevote, value)
}

pub fn precommit(from: Addr, h: u64, r: Round, value: Option<Val>) -> TVote {
    signed_vote(from, h, r, VoteType::Precommit, value)
}

pub fn signed_proposal(from: Addr, h: u64, r: Round, value: Val, pol: Option<Round>) -> TProposal {
    let proposal = Proposal {
        height: h,
        round: r,
        value,
        pol_round: pol,
        proposer: from,
    };
    let signature = TestSigner(from).sign(&proposal.sign_bytes(CHAIN));
    Signed {
        message: proposal,
        signature,
    }
}

pub fn ev_vote(vote: TVote) -> TEvent {
    Event::Vote(vote)
}

pub fn ev_proposal(p: TProposal) -> TEvent {
    Event::Proposal(p)
}

pub fn timeout(h: u64, r: Round, kind: TimeoutKind) -> TEvent {
    Event::TimeoutElapsed(Timeout {
        height: h,
        round: r,
        kind,
    })
}

pub fn verified(h: u64, value: Val, valid: bool) -> TEvent {
    Event::BlockVerified {
        height: h,
        value,
        valid,
    }
}

pub fn schedule(h: u64, r: Round, kind: TimeoutKind) -> TAction {
    let t = config().timeouts;
    Action::ScheduleTimeout {
        timeout: Timeout {
            height: h,
            round: r,
            kind,
        },
        duration_ms: t.duration_ms(kind, r),
    }
}

pub fn verify(h: u64, r: Round, value: Val, proposer: Addr) -> TAction {
    Action::VerifyBlock {
        height: h,
        round: r,
        value,
        proposer,
    }
}

pub fn broadcast_vote(vote: TVote) -> TAction {
    Action::BroadcastVote(vote)
}

pub fn broadcast_proposal(p: TProposal) -> TAction {
    Action::BroadcastProposal(p)
}

pub fn persist(state: State) -> TAction {
    Action::PersistSigningState(state)
}

pub fn decide(h: u64, r: Round, value: Val, signers: &[Addr]) -> TAction {
    Action::Decide(certificate(h, r, value, signers))
}

/// The certificate `signers` make by precommitting `value` at (`h`, `r`).
pub fn certificate(
    h: u64,
    r: Round,
    value: Val,
    signers: &[Addr],
) -> CommitCertificate<Addr, Val, Sig> {
    CommitCertificate {
        height: h,
        round: r,
        value,
        signatures: signers
            .iter()
            .map(|a| (*a, precommit(*a, h, r, Some(value)).signature))
            .collect(),
    }
}

/// Builder for expected signing states.
pub fn state(height: u64, round: Round) -> State {
    State {
        height,
        round,
        ..SigningState::empty()
    }
}

pub trait StateExt {
    fn proposal(self, round: Round, value: Val, pol: Option<Round>) -> Self;
    fn prevote(self, round: Round, value: Option<Val>) -> Self;
    fn precommit(self, round: Round, value: Option<Val>) -> Self;
    fn locked(self, round: Round, value: Val) -> Self;
    fn valid(self, round: Round, value: Val, polka: Vec<TVote>) -> Self;
}

impl StateExt for State {
    fn proposal(mut self, round: Round, value: Val, pol_round: Option<Round>) -> Self {
        self.last_proposal = Some(SignedProposalRecord {
            round,
            value,
            pol_round,
        });
        self
    }
    fn prevote(mut self, round: Round, value: Option<Val>) -> Self {
        self.last_prevote = Some(SignedVoteRecord { round, value });
        self
    }
    fn precommit(mut self, round: Round, value: Option<Val>) -> Self {
        self.last_precommit = Some(SignedVoteRecord { round, value });
        self
    }
    fn locked(mut self, round: Round, value: Val) -> Self {
        self.locked = Some(RoundValue { round, value });
        self
    }
    fn valid(mut self, round: Round, value: Val, polka: Vec<TVote>) -> Self {
        self.valid = Some(RoundValue { round, value });
        self.polka = polka;
        self
    }
}
