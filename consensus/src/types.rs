//! Heights, rounds, steps and the signed messages the protocol exchanges.

use std::fmt::Debug;
use std::hash::Hash;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::sign_bytes::{proposal_sign_bytes, vote_sign_bytes};

/// A block height. The first height of a chain is 1 by convention of the node;
/// the machine accepts any height it is told to start.
pub type Height = u64;

/// A round within a height. The paper's `-1` ("no round") is `None` of an
/// `Option<Round>` wherever it can occur (lockedRound, validRound, POL round).
pub type Round = u32;

/// The value consensus agrees on: in the node a 32-byte block hash (`id(v)` of
/// the paper). Its bytes go into the sign bytes of every vote and proposal.
pub trait ValueId: Clone + Eq + Ord + Hash + Debug + AsRef<[u8]> {}

impl<T> ValueId for T where T: Clone + Eq + Ord + Hash + Debug + AsRef<[u8]> {}

/// The two kinds of vote, which are also the two voting steps.
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
pub enum VoteType {
    /// First voting step of a round.
    Prevote,
    /// Second voting step of a round; 2f+1 precommits for a value decide it.
    Precommit,
}

/// The step of the current round (`step_p` of the paper), ordered as in the
/// paper so that `step >= Step::Prevote` reads like line 36.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// Waiting for the proposal of the round.
    Propose,
    /// Prevoted; waiting for 2f+1 prevotes.
    Prevote,
    /// Precommitted; waiting for 2f+1 precommits.
    Precommit,
}

/// A prevote or precommit for `value` (`None` is the paper's `nil`).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Vote<A, V> {
    /// Height voted at.
    pub height: Height,
    /// Round voted in.
    pub round: Round,
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// The value voted for, or `None` for nil.
    pub value: Option<V>,
    /// The validator casting the vote.
    pub validator: A,
}

impl<A, V: AsRef<[u8]>> Vote<A, V> {
    /// The bytes the validator signs; see [`vote_sign_bytes`].
    pub fn sign_bytes(&self, chain_id: u64) -> Vec<u8> {
        vote_sign_bytes(
            chain_id,
            self.height,
            self.round,
            self.vote_type,
            self.value.as_ref().map(AsRef::as_ref),
        )
    }
}

/// `⟨PROPOSAL, h, round, v, validRound⟩` of the paper, with `pol_round` the
/// paper's `validRound` (`None` for `-1`).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Proposal<A, V> {
    /// Height proposed at.
    pub height: Height,
    /// Round proposed in.
    pub round: Round,
    /// The proposed value (block id).
    pub value: V,
    /// The round of the proof-of-lock (2f+1 prevotes) the proposer holds for
    /// `value`, if it re-proposes a value it saw a polka for.
    pub pol_round: Option<Round>,
    /// The proposer; must be `proposer(height, round)`.
    pub proposer: A,
}

impl<A, V: AsRef<[u8]>> Proposal<A, V> {
    /// The bytes the proposer signs; see [`proposal_sign_bytes`].
    pub fn sign_bytes(&self, chain_id: u64) -> Vec<u8> {
        proposal_sign_bytes(
            chain_id,
            self.height,
            self.round,
            self.value.as_ref(),
            self.pol_round,
        )
    }
}

/// A message with its signer's signature over the message's sign bytes.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Signed<M, Sig> {
    /// The signed message.
    pub message: M,
    /// Signature over `message.sign_bytes(chain_id)`.
    pub signature: Sig,
}

/// A vote with its validator's signature.
pub type SignedVote<A, V, Sig> = Signed<Vote<A, V>, Sig>;

/// A proposal with its proposer's signature.
pub type SignedProposal<A, V, Sig> = Signed<Proposal<A, V>, Sig>;

/// Any consensus message, as gossiped between nodes.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub enum Message<A, V, Sig> {
    /// A signed proposal.
    Proposal(SignedProposal<A, V, Sig>),
    /// A signed prevote or precommit.
    Vote(SignedVote<A, V, Sig>),
}

impl<A, V, Sig> Message<A, V, Sig> {
    /// Height the message is for.
    pub fn height(&self) -> Height {
        match self {
            Message::Proposal(p) => p.message.height,
            Message::Vote(v) => v.message.height,
        }
    }

    /// Round the message is for.
    pub fn round(&self) -> Round {
        match self {
            Message::Proposal(p) => p.message.round,
            Message::Vote(v) => v.message.round,
        }
    }

    /// The validator that signed the message.
    pub fn signer(&self) -> &A {
        match self {
            Message::Proposal(p) => &p.message.proposer,
            Message::Vote(v) => &v.message.validator,
        }
    }
}
