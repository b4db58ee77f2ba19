//! The state safety needs across a crash, and the guard that keeps a validator
//! from ever signing two different messages for one height/round/step.
//!
//! A correct process signs at most one proposal, one prevote and one precommit
//! per round, and its rounds only grow. So it is enough to remember, for each
//! of the three steps, the last (height, round, content) signed: anything at a
//! lower (height, round) of that step is refused, anything at the same
//! (height, round) can only be the identical content again, and anything
//! higher is new. The lock (`lockedValue`/`lockedRound`) must survive too, or a
//! restarted validator could prevote against its lock (line 23/29 of the
//! paper). `validValue`/`validRound` only serve liveness but are kept as well.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::types::{Height, Round, SignedVote};

/// A value with the round it was locked or found valid in.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct RoundValue<V> {
    /// The round.
    pub round: Round,
    /// The value.
    pub value: V,
}

/// The last proposal this validator signed.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct SignedProposalRecord<V> {
    /// Round proposed in.
    pub round: Round,
    /// Value proposed.
    pub value: V,
    /// POL round sent with it.
    pub pol_round: Option<Round>,
}

/// The last vote of one kind this validator signed.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct SignedVoteRecord<V> {
    /// Round voted in.
    pub round: Round,
    /// Value voted for (`None` = nil).
    pub value: Option<V>,
}

/// What the node persists (and fsyncs) when the machine emits
/// [`crate::Action::PersistSigningState`], before it sends any of the
/// broadcasts that follow in the same action list; and what
/// [`crate::Consensus::restore`] takes back after a crash.
///
/// All entries belong to `height`. `polka` is not needed for safety but for
/// liveness: after every validator restarted (their message logs gone), a
/// proposal re-proposing `valid` with POL round `valid.round` is only
/// accepted by validators that see those prevotes (L28).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct SigningState<A, V, Sig> {
    /// Height of the entries below (0 = nothing signed yet).
    pub height: Height,
    /// The round the validator was in when this was written; a restart at the
    /// same height resumes there.
    pub round: Round,
    /// Last proposal signed at `height`.
    pub last_proposal: Option<SignedProposalRecord<V>>,
    /// Last prevote signed at `height`.
    pub last_prevote: Option<SignedVoteRecord<V>>,
    /// Last precommit signed at `height`.
    pub last_precommit: Option<SignedVoteRecord<V>>,
    /// `lockedValue`/`lockedRound` at `height`.
    pub locked: Option<RoundValue<V>>,
    /// `validValue`/`validRound` at `height`.
    pub valid: Option<RoundValue<V>>,
    /// The 2f+1 prevotes for `valid.value` in `valid.round` (empty without
    /// `valid`).
    pub polka: Vec<SignedVote<A, V, Sig>>,
}

/// What the guard allows when the algorithm wants to sign something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Permit<T> {
    /// New content: record it (persist), then sign.
    Sign,
    /// Already signed at this height/round/step: sign exactly this recorded
    /// content again (identical sign bytes, so never an equivocation), and
    /// nothing else.
    Repeat(T),
    /// Below something already signed: sign nothing.
    Refuse,
}

impl<A, V: Clone + PartialEq, Sig> SigningState<A, V, Sig> {
    /// A state with nothing signed.
    pub fn empty() -> Self {
        Self {
            height: 0,
            round: 0,
            last_proposal: None,
            last_prevote: None,
            last_precommit: None,
            locked: None,
            valid: None,
            polka: Vec::new(),
        }
    }

    fn permit_at<T: Clone>(
        &self,
        height: Height,
        round: Round,
        last: Option<(Round, T)>,
    ) -> Permit<T> {
        if height < self.height {
            return Permit::Refuse;
        }
        if height > self.height {
            return Permit::Sign;
        }
        match last {
            None => Permit::Sign,
            Some((r, _)) if round > r => Permit::Sign,
            Some((r, content)) if round == r => Permit::Repeat(content),
            Some(_) => Permit::Refuse,
        }
    }

    pub(crate) fn permit_proposal(
        &self,
        height: Height,
        round: Round,
    ) -> Permit<SignedProposalRecord<V>> {
        let last = self.last_proposal.as_ref().map(|p| (p.round, p.clone()));
        self.permit_at(height, round, last)
    }

    pub(crate) fn permit_vote(
        &self,
        height: Height,
        round: Round,
        precommit: bool,
    ) -> Permit<Option<V>> {
        let last = if precommit {
            &self.last_precommit
        } else {
            &self.last_prevote
        };
        let last = last.as_ref().map(|v| (v.round, v.value.clone()));
        self.permit_at(height, round, last)
    }

    /// Moves the entries to `height`, forgetting those of an older height.
    pub(crate) fn enter_height(&mut self, height: Height) {
        if height > self.height {
            *self = Self {
                height,
                ..Self::empty()
            };
        }
    }
}
