//! Byzantine validators as small reusable actors: each runs an honest machine
//! and rewrites what it sends. They sign only with their own key (the
//! simulator's scheme would let them forge, a real one would not).

use tally_consensus::{Message, Signed, Signer};

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
    let signature = TestSigner(key).sign(&other.sign_bytes(chain_id));
    let other = Signed {
        message: other,
        signature,
    };
    let (a, b) = split(peers, rng);
    vec![
        (Message::Proposal(proposal.clone()), a),
        (Message::Proposal(other), b),
    ]
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
    let signature = TestSigner(key).sign(&other.sign_bytes(chain_id));
    let other = Signed {
        message: other,
        signature,
    };
    let (a, b) = split(peers, rng);
    vec![(Message::Vote(vote.clone()), a), (Message::Vote(other), b)]
}
