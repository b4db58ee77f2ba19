//! Bookkeeping of the messages of one height: per round, the proposals and the
//! prevotes and precommits with their tallies by value.
//!
//! Memory stays bounded against a hostile peer: a validator holds at most one
//! prevote and one precommit per round, plus, if it equivocates, one further
//! vote per round, step and value, kept only if that value matters in the
//! round: proposed in it, or named as its POL round, by the proposer of a
//! round up to the current one (see [`VoteSet`]; votes for other values are
//! dropped, the evidence being reported once). Proposals of rounds up to
//! the current one are only kept from the round's proposer. In rounds above
//! the current one each validator may occupy at most `max_future_rounds`
//! rounds. When it sends for a higher round than those it holds, its lowest
//! future round is evicted, so an honest validator running ahead always has
//! its latest rounds counted, and a spamming one only ever displaces itself.
//! Rounds at or below the current round are only reached by timeouts or by
//! the f+1 rule (which needs a correct validator), so they grow no faster
//! than the honest rounds.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{Message, Round, SignedProposal, SignedVote, VoteType};

/// Distinct proposals kept per signer and round. One is all an honest
/// proposer makes; the second is an equivocator's other value, which may be
/// the one a quorum decides. More are dropped (and reported once).
pub const MAX_PROPOSALS_PER_ROUND: usize = 2;

/// The votes of one kind in one round.
///
/// A validator's first vote counts for its value and towards the total. An
/// equivocator's further votes are kept apart, one per value, and each
/// counts for its value only (never twice towards the total), but only for a
/// value that matters in this round: proposed in it, or the value of a
/// proposal that names it as its POL round ([`MessageLog::is_relevant`]).
/// The paper counts messages per value, and a correct validator that saw the
/// equivocator's vote in a polka needs the others to count it too, or the
/// POL round of a later proposal may never be accepted (CometBFT keeps such
/// votes for a block some peer claims a majority for, for the same reason).
/// Keeping just one second vote is not enough: an equivocator that sends each
/// node two junk votes first and the polka's vote last leaves the lockers
/// unable to convince anyone, for good (the simulator found this). The
/// relevant values are bounded by the proposals kept, so the memory is too.
/// Safety is unaffected: 2f+1 signatures for a value still include f+1
/// correct validators.
#[derive(Debug, Clone)]
pub(crate) struct VoteSet<A, V, Sig> {
    votes: BTreeMap<A, SignedVote<A, V, Sig>>,
    /// Further votes per validator, one per value.
    conflicting: BTreeMap<A, Vec<SignedVote<A, V, Sig>>>,
    nil_power: u64,
    value_power: BTreeMap<V, u64>,
    total: u64,
}

impl<A: Ord + Clone, V: Ord + Clone, Sig: Clone> VoteSet<A, V, Sig> {
    fn new() -> Self {
        Self {
            votes: BTreeMap::new(),
            conflicting: BTreeMap::new(),
            nil_power: 0,
            value_power: BTreeMap::new(),
            total: 0,
        }
    }

    pub(crate) fn get(&self, validator: &A) -> Option<&SignedVote<A, V, Sig>> {
        self.votes.get(validator)
    }

    fn insert(&mut self, vote: SignedVote<A, V, Sig>, power: u64) {
        match &vote.message.value {
            None => self.nil_power += power,
            Some(v) => *self.value_power.entry(v.clone()).or_insert(0) += power,
        }
        self.total += power;
        self.votes.insert(vote.message.validator.clone(), vote);
    }

    /// Counts an equivocator's vote for `value` (already checked: signed,
    /// conflicting with its first vote, for a relevant value), unless it
    /// already voted for that value here.
    fn insert_conflicting(&mut self, vote: SignedVote<A, V, Sig>, power: u64) -> bool {
        let Some(value) = vote.message.value.clone() else {
            return false;
        };
        let validator = &vote.message.validator;
        let Some(first) = self.votes.get(validator) else {
            return false;
        };
        let others = self.conflicting.entry(validator.clone()).or_default();
        if first.message.value.as_ref() == Some(&value)
            || others
                .iter()
                .any(|v| v.message.value.as_ref() == Some(&value))
        {
            return false;
        }
        others.push(vote);
        *self.value_power.entry(value).or_insert(0) += power;
        true
    }

    fn remove_value_power(&mut self, value: &V, power: u64) {
        if let Some(p) = self.value_power.get_mut(value) {
            *p = p.saturating_sub(power);
            if *p == 0 {
                self.value_power.remove(value);
            }
        }
    }

    fn remove(&mut self, validator: &A, power: u64) {
        if let Some(vote) = self.votes.remove(validator) {
            match &vote.message.value {
                None => self.nil_power = self.nil_power.saturating_sub(power),
                Some(v) => self.remove_value_power(v, power),
            }
            self.total = self.total.saturating_sub(power);
        }
        for vote in self.conflicting.remove(validator).unwrap_or_default() {
            if let Some(value) = &vote.message.value {
                self.remove_value_power(value, power);
            }
        }
    }

    /// Power of the votes for `value` (`None` = nil).
    pub(crate) fn power_for(&self, value: Option<&V>) -> u64 {
        match value {
            None => self.nil_power,
            Some(v) => self.value_power.get(v).copied().unwrap_or(0),
        }
    }

    /// Power of all votes, whatever their value.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Values with their power (nil excluded).
    pub(crate) fn values(&self) -> impl Iterator<Item = (&V, u64)> {
        self.value_power.iter().map(|(v, p)| (v, *p))
    }

    /// All votes held, first votes and counted conflicting ones.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &SignedVote<A, V, Sig>> {
        self.votes
            .values()
            .chain(self.conflicting.values().flatten())
    }

    /// Whether this exact vote is already held (first or conflicting).
    pub(crate) fn holds(&self, vote: &SignedVote<A, V, Sig>) -> bool {
        let m = &vote.message;
        self.votes
            .get(&m.validator)
            .is_some_and(|v| v.message == *m)
            || self
                .conflicting
                .get(&m.validator)
                .is_some_and(|vs| vs.iter().any(|v| v.message == *m))
    }

    fn is_empty(&self) -> bool {
        self.votes.is_empty()
    }
}

/// Everything received for one round.
#[derive(Debug, Clone)]
pub(crate) struct RoundLog<A, V, Sig> {
    pub(crate) prevotes: VoteSet<A, V, Sig>,
    pub(crate) precommits: VoteSet<A, V, Sig>,
    /// By signer. For rounds up to the current one only the round's proposer
    /// gets in; above it the proposer is not computed yet (that would let a
    /// peer make us run the rotation for any round number), so each claimed
    /// proposer has its own slot, and the others are dropped once the round
    /// is reached ([`MessageLog::set_current_round`]). Up to
    /// [`MAX_PROPOSALS_PER_ROUND`] distinct proposals per signer: an
    /// equivocating proposer's other value may be the one the others decide,
    /// and its proposal is needed to decide it here too.
    proposals: BTreeMap<A, Vec<SignedProposal<A, V, Sig>>>,
    /// Distinct senders of any message in the round, for line 55.
    senders: BTreeMap<A, u64>,
    sender_power: u64,
}

impl<A: Ord + Clone, V: Ord + Clone, Sig: Clone> RoundLog<A, V, Sig> {
    fn new() -> Self {
        Self {
            prevotes: VoteSet::new(),
            precommits: VoteSet::new(),
            proposals: BTreeMap::new(),
            senders: BTreeMap::new(),
            sender_power: 0,
        }
    }

    pub(crate) fn votes(&self, vote_type: VoteType) -> &VoteSet<A, V, Sig> {
        match vote_type {
            VoteType::Prevote => &self.prevotes,
            VoteType::Precommit => &self.precommits,
        }
    }

    fn votes_mut(&mut self, vote_type: VoteType) -> &mut VoteSet<A, V, Sig> {
        match vote_type {
            VoteType::Prevote => &mut self.prevotes,
            VoteType::Precommit => &mut self.precommits,
        }
    }

    /// The first proposal `proposer` made in this round.
    pub(crate) fn proposal_from(&self, proposer: &A) -> Option<&SignedProposal<A, V, Sig>> {
        self.proposals_from(proposer).first()
    }

    /// Every proposal held from `proposer` in this round, first one first.
    pub(crate) fn proposals_from(&self, proposer: &A) -> &[SignedProposal<A, V, Sig>] {
        self.proposals.get(proposer).map_or(&[], Vec::as_slice)
    }

    /// Power of the distinct validators that sent anything in this round.
    pub(crate) fn sender_power(&self) -> u64 {
        self.sender_power
    }

    fn note_sender(&mut self, sender: &A, power: u64) {
        if !self.senders.contains_key(sender) {
            self.senders.insert(sender.clone(), power);
            self.sender_power += power;
        }
    }

    fn remove_sender(&mut self, sender: &A) {
        if let Some(power) = self.senders.remove(sender) {
            self.sender_power -= power;
            self.prevotes.remove(sender, power);
            self.precommits.remove(sender, power);
            self.proposals.remove(sender);
        }
    }

    fn is_empty(&self) -> bool {
        self.senders.is_empty() && self.prevotes.is_empty() && self.precommits.is_empty()
    }

    pub(crate) fn messages(&self) -> impl Iterator<Item = Message<A, V, Sig>> + '_ {
        self.proposals
            .values()
            .flatten()
            .cloned()
            .map(Message::Proposal)
            .chain(self.prevotes.iter().cloned().map(Message::Vote))
            .chain(self.precommits.iter().cloned().map(Message::Vote))
    }
}

/// All rounds of one height.
#[derive(Debug, Clone)]
pub(crate) struct MessageLog<A, V, Sig> {
    rounds: BTreeMap<Round, RoundLog<A, V, Sig>>,
    current: Round,
    /// For each validator, the rounds above `current` it occupies.
    future: BTreeMap<A, BTreeSet<Round>>,
    max_future_rounds: usize,
}

impl<A: Ord + Clone, V: Ord + Clone, Sig: Clone> MessageLog<A, V, Sig> {
    pub(crate) fn new(max_future_rounds: usize) -> Self {
        Self {
            rounds: BTreeMap::new(),
            current: 0,
            future: BTreeMap::new(),
            max_future_rounds: max_future_rounds.max(1),
        }
    }

    /// Moves the current round up to `round`. Rounds at or below it stop
    /// counting against the future limits, and in the rounds it passes (above
    /// the old current round) only the proposal of `proposer_of(r)` is kept.
    /// `proposer_of` is asked only for rounds up to `round`.
    pub(crate) fn set_current_round<'a>(
        &mut self,
        round: Round,
        proposer_of: impl Fn(Round) -> Option<&'a A>,
    ) where
        A: 'a,
    {
        if round > self.current {
            let passed = (
                std::ops::Bound::Excluded(self.current),
                std::ops::Bound::Included(round),
            );
            for (r, log) in self.rounds.range_mut(passed) {
                if log.proposals.is_empty() {
                    continue;
                }
                let proposer = proposer_of(*r);
                log.proposals.retain(|a, _| Some(a) == proposer);
            }
        }
        self.current = self.current.max(round);
        self.future.retain(|_, rounds| {
            rounds.retain(|r| *r > round);
            !rounds.is_empty()
        });
    }

    pub(crate) fn round(&self, round: Round) -> Option<&RoundLog<A, V, Sig>> {
        self.rounds.get(&round)
    }

    /// Rounds strictly above `round`, highest first.
    pub(crate) fn rounds_above(
        &self,
        round: Round,
    ) -> impl Iterator<Item = (&Round, &RoundLog<A, V, Sig>)> {
        self.rounds
            .range((std::ops::Bound::Excluded(round), std::ops::Bound::Unbounded))
            .rev()
    }

    pub(crate) fn rounds(&self) -> impl Iterator<Item = (&Round, &RoundLog<A, V, Sig>)> {
        self.rounds.iter()
    }

    /// The vote `validator` already cast of this kind in this round.
    pub(crate) fn vote(
        &self,
        round: Round,
        vote_type: VoteType,
        validator: &A,
    ) -> Option<&SignedVote<A, V, Sig>> {
        self.rounds.get(&round)?.votes(vote_type).get(validator)
    }

    pub(crate) fn proposal(
        &self,
        round: Round,
        proposer: &A,
    ) -> Option<&SignedProposal<A, V, Sig>> {
        self.rounds.get(&round)?.proposal_from(proposer)
    }

    /// Every proposal held from `proposer` in `round`, first one first.
    pub(crate) fn proposals(&self, round: Round, proposer: &A) -> &[SignedProposal<A, V, Sig>] {
        self.rounds
            .get(&round)
            .map_or(&[], |log| log.proposals_from(proposer))
    }

    /// Makes room for a message of `sender` in `round` (call only after its
    /// signature checked out, or a forger could evict an honest validator).
    /// False means drop it.
    pub(crate) fn admit(&mut self, sender: &A, round: Round) -> bool {
        if round <= self.current {
            return true;
        }
        let held = self.future.entry(sender.clone()).or_default();
        if held.contains(&round) || held.len() < self.max_future_rounds {
            held.insert(round);
            return true;
        }
        let Some(&lowest) = held.iter().next() else {
            return false;
        };
        if round < lowest {
            return false;
        }
        held.remove(&lowest);
        held.insert(round);
        if let Some(log) = self.rounds.get_mut(&lowest) {
            log.remove_sender(sender);
            if log.is_empty() {
                self.rounds.remove(&lowest);
            }
        }
        true
    }

    /// Stores a vote the caller checked (signature, no vote yet of this kind
    /// from this validator in this round, [`MessageLog::admit`]).
    pub(crate) fn add_vote(&mut self, vote: SignedVote<A, V, Sig>, power: u64) {
        let round = self
            .rounds
            .entry(vote.message.round)
            .or_insert_with(RoundLog::new);
        round.note_sender(&vote.message.validator, power);
        let kind = vote.message.vote_type;
        round.votes_mut(kind).insert(vote, power);
    }

    /// Whether this exact vote is already held.
    pub(crate) fn holds_vote(&self, vote: &SignedVote<A, V, Sig>) -> bool {
        self.rounds
            .get(&vote.message.round)
            .is_some_and(|r| r.votes(vote.message.vote_type).holds(vote))
    }

    /// Whether `value` matters in `round`: the proposer of a round up to the
    /// current one proposed it, in `round` itself or naming `round` as its
    /// POL round. An equivocator's further votes count only for such values
    /// (proposals of higher rounds do not count: their proposer is not known
    /// yet, and anyone may claim a slot there).
    pub(crate) fn is_relevant(&self, round: Round, value: &V) -> bool {
        self.rounds
            .range(..=self.current)
            .flat_map(|(r, log)| log.proposals.values().flatten().map(move |p| (*r, p)))
            .any(|(r, p)| {
                p.message.value == *value && (r == round || p.message.pol_round == Some(round))
            })
    }

    /// Counts a checked conflicting vote of an equivocator for a relevant
    /// value (see [`VoteSet`]). False if it adds nothing.
    pub(crate) fn add_conflicting_vote(&mut self, vote: SignedVote<A, V, Sig>, power: u64) -> bool {
        let Some(round) = self.rounds.get_mut(&vote.message.round) else {
            return false;
        };
        let kind = vote.message.vote_type;
        round.votes_mut(kind).insert_conflicting(vote, power)
    }

    /// Stores a proposal the caller checked (signature, not held yet, fewer
    /// than [`MAX_PROPOSALS_PER_ROUND`] from this signer in this round,
    /// [`MessageLog::admit`], and for a round up to the current one: from the
    /// round's proposer).
    pub(crate) fn add_proposal(&mut self, proposal: SignedProposal<A, V, Sig>, power: u64) {
        let round = self
            .rounds
            .entry(proposal.message.round)
            .or_insert_with(RoundLog::new);
        round.note_sender(&proposal.message.proposer, power);
        round
            .proposals
            .entry(proposal.message.proposer.clone())
            .or_default()
            .push(proposal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Proposal, Signed, Vote};

    fn vote(validator: u32, round: Round, value: Option<u8>) -> SignedVote<u32, u8, ()> {
        Signed {
            message: Vote {
                height: 1,
                round,
                vote_type: VoteType::Prevote,
                value,
                validator,
            },
            signature: (),
        }
    }

    #[test]
    fn tallies_by_value_and_in_total() {
        let mut log = MessageLog::new(2);
        log.add_vote(vote(0, 0, Some(1)), 5);
        log.add_vote(vote(1, 0, Some(1)), 3);
        log.add_vote(vote(2, 0, None), 2);
        let r = log.round(0).expect("round 0").votes(VoteType::Prevote);
        assert_eq!(r.power_for(Some(&1)), 8);
        assert_eq!(r.power_for(None), 2);
        assert_eq!(r.total(), 10);
        assert_eq!(log.round(0).expect("round 0").sender_power(), 10);
    }

    #[test]
    fn a_conflicting_vote_counts_for_its_value_only() {
        let mut log = MessageLog::new(2);
        log.add_vote(vote(0, 0, Some(1)), 1);
        assert!(log.add_conflicting_vote(vote(0, 0, Some(2)), 1));
        assert!(
            !log.add_conflicting_vote(vote(0, 0, Some(2)), 1),
            "once per value"
        );
        assert!(
            log.add_conflicting_vote(vote(0, 0, Some(3)), 1),
            "a third value counts too (the caller checks it matters)"
        );
        assert!(
            !log.add_conflicting_vote(vote(0, 0, Some(1)), 1),
            "not its first value"
        );
        assert!(
            !log.add_conflicting_vote(vote(0, 0, None), 1),
            "nil is never extra"
        );
        let r = log.round(0).expect("round 0").votes(VoteType::Prevote);
        assert_eq!(
            (
                r.power_for(Some(&1)),
                r.power_for(Some(&2)),
                r.power_for(Some(&3))
            ),
            (1, 1, 1)
        );
        assert_eq!(r.total(), 1, "one validator counts once in the total");
        assert_eq!(r.iter().count(), 3);
        assert!(log.holds_vote(&vote(0, 0, Some(2))));
        assert!(log.holds_vote(&vote(0, 0, Some(3))));
        assert!(!log.holds_vote(&vote(0, 0, Some(4))));
    }

    fn proposal(proposer: u32, round: Round, value: u8) -> SignedProposal<u32, u8, ()> {
        Signed {
            message: Proposal {
                height: 1,
                round,
                value,
                pol_round: None,
                proposer,
            },
            signature: (),
        }
    }

    #[test]
    fn only_proposals_of_the_proposer_make_a_value_relevant() {
        let mut log = MessageLog::new(4);
        // Round 0 is current: the caller only lets the proposer in.
        log.add_proposal(proposal(0, 0, 1), 1);
        assert!(log.is_relevant(0, &1));
        assert!(!log.is_relevant(1, &1), "proposed in another round");
        // Future rounds keep a slot per claimed proposer, none relevant.
        log.add_proposal(proposal(2, 2, 2), 1);
        log.add_proposal(proposal(3, 2, 3), 1);
        log.add_proposal(proposal(3, 5, 5), 1);
        assert!(!log.is_relevant(2, &2) && !log.is_relevant(2, &3));
        // Reaching round 2 (proposer 2) keeps only its proposal there.
        let proposers = [0u32, 1, 2, 3, 0, 1];
        log.set_current_round(2, |r| proposers.get(r as usize));
        assert!(log.is_relevant(2, &2));
        assert!(!log.is_relevant(2, &3), "a non-proposer's value");
        assert!(log.proposal(2, &3).is_none(), "dropped once its round came");
        assert!(log.proposal(2, &2).is_some());
        assert!(!log.is_relevant(5, &5), "round 5 is still ahead");
        assert!(log.proposal(5, &3).is_some(), "still ahead: kept");
        log.set_current_round(5, |r| proposers.get(r as usize));
        assert!(log.proposal(5, &3).is_none() && !log.is_relevant(5, &5));
    }

    #[test]
    fn a_proposal_makes_its_pol_round_votes_for_its_value_relevant() {
        let mut log = MessageLog::new(4);
        log.set_current_round(3, |_| Some(&0u32));
        let mut p = proposal(0, 3, 7);
        p.message.pol_round = Some(1);
        log.add_proposal(p, 1);
        assert!(log.is_relevant(1, &7), "the POL round of the proposal");
        assert!(log.is_relevant(3, &7), "its own round");
        assert!(!log.is_relevant(2, &7) && !log.is_relevant(1, &8));
    }

    #[test]
    fn future_rounds_are_bounded_per_validator_keeping_the_highest() {
        let mut log = MessageLog::new(2);
        for round in 1..=10 {
            assert!(log.admit(&7, round));
            log.add_vote(vote(7, round, None), 1);
        }
        let held: Vec<Round> = log.rounds().map(|(r, _)| *r).collect();
        assert_eq!(held, vec![9, 10]);
        assert!(!log.admit(&7, 3), "lower than everything it holds");
        // Another validator is not affected, and the current round is free.
        assert!(log.admit(&8, 2));
        log.set_current_round(10, |_| None);
        assert!(log.admit(&7, 5));
    }
}
