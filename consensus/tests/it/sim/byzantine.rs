//! Byzantine validators as small reusable actors: each runs an honest machine
//! and rewrites what it sends. They sign only with their own key (the
//! simulator's scheme would let them forge, a real one would not).

use tally_consensus::{Message, Proposal, Signed, Signer, Vote, VoteType};

use super::rng::Rng;
use super::scheme::{Addr, TMessage, TProposal, TVote, TestSigner, Val};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Sends nothing at all (and answers no sync request).
    Silent,
    /// As proposer, sends one value to some peers and another to the rest.
    EquivocatingProposer,
    /// Sends each vote to some peers and a conflicting vote to the rest.
    DoubleVoter,
    /// Both of the above.
    Equivocator,
    /// Proposes a value of its own in every round it prevotes in, whether
    /// it is the round's proposer or not.
    OutOfTurnProposer,
    /// With every vote, also signs prevotes and precommits for the next
    /// rounds and for a round far beyond any a node keeps.
    RoundFlooder,
    /// Prevotes every valid proposal whatever it is locked on (its machine
    /// runs without the lock check).
    LockBreaker,
    /// Restarts from an empty signing state: signs again what it signed.
    Amnesiac,
    /// As proposer, proposes a fresh value of its own and votes for it;
    /// in rounds above 0 it claims, half the time, a polka in the previous
    /// round that never happened (the claim that frees the most locks).
    FakePolka,
}

impl Behavior {
    /// Every behaviour, for the scenario families to draw from.
    pub const ALL: [Behavior; 9] = [
        Behavior::Silent,
        Behavior::EquivocatingProposer,
        Behavior::DoubleVoter,
        Behavior::Equivocator,
        Behavior::OutOfTurnProposer,
        Behavior::RoundFlooder,
        Behavior::LockBreaker,
        Behavior::Amnesiac,
        Behavior::FakePolka,
    ];
}

impl Behavior {
    pub fn silent(self) -> bool {
        self == Behavior::Silent
    }

    pub fn equivocates_proposals(self) -> bool {
        matches!(self, Behavior::EquivocatingProposer | Behavior::Equivocator)
    }

    pub fn double_votes(self) -> bool {
        matches!(self, Behavior::DoubleVoter | Behavior::Equivocator)
    }
}

/// Splits `peers` at random into two non-empty halves (when possible).
fn split(peers: &[usize], rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let mut shuffled = peers.to_vec();
    rng.shuffle(&mut shuffled);
    let cut = if shuffled.len() < 2 {
        shuffled.len()
    } else {
        1 + rng.index(shuffled.len() - 1)
    };
    let rest = shuffled.split_off(cut);
    (shuffled, rest)
}

/// `message` signed with `key`.
pub fn sign_proposal(message: Proposal<Addr, Val>, key: Addr, chain_id: u64) -> TProposal {
    let signature = TestSigner(key).sign(&message.sign_bytes(chain_id));
    Signed { message, signature }
}

/// `message` signed with `key`.
pub fn sign_vote(message: Vote<Addr, Val>, key: Addr, chain_id: u64) -> TVote {
    let signature = TestSigner(key).sign(&message.sign_bytes(chain_id));
    Signed { message, signature }
}

/// The honest proposal to some peers, the same proposal of `alternative`
/// (signed anew) to the others.
pub fn equivocate_proposal(
    proposal: &TProposal,
    alternative: Val,
    key: Addr,
    chain_id: u64,
    peers: &[usize],
    rng: &mut Rng,
) -> Vec<(TMessage, Vec<usize>)> {
    let mut other = proposal.message.clone();
    other.value = alternative;
    let other = sign_proposal(other, key, chain_id);
    let (a, b) = split(peers, rng);
    vec![
        (Message::Proposal(proposal.clone()), a),
        (Message::Proposal(other), b),
    ]
}

/// Prevotes and precommits of `vote`'s signer for `rounds`, each for
/// `values(i)` (`None` = nil).
pub fn flood_rounds(
    vote: &TVote,
    rounds: &[u32],
    mut values: impl FnMut() -> Option<Val>,
    key: Addr,
    chain_id: u64,
) -> Vec<TMessage> {
    let mut out = Vec::new();
    for &round in rounds {
        for vote_type in [VoteType::Prevote, VoteType::Precommit] {
            let mut m = vote.message.clone();
            m.round = round;
            m.vote_type = vote_type;
            m.value = values();
            out.push(Message::Vote(sign_vote(m, key, chain_id)));
        }
    }
    out
}

/// The honest vote to some peers, a vote for `alternative` (`None` = nil) to
/// the others.
pub fn double_vote(
    vote: &TVote,
    alternative: Option<Val>,
    key: Addr,
    chain_id: u64,
    peers: &[usize],
    rng: &mut Rng,
) -> Vec<(TMessage, Vec<usize>)> {
    let mut other = vote.message.clone();
    other.value = alternative;
    let other = sign_vote(other, key, chain_id);
    let (a, b) = split(peers, rng);
    vec![(Message::Vote(vote.clone()), a), (Message::Vote(other), b)]
}
