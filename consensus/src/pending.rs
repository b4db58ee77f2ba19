//! Messages held for a height that has not started yet: the next height, or,
//! before the first height starts, any height.
//!
//! The machine stores a message here only after its signature checked out, so
//! a peer without a validator's key cannot take that validator's space. Each
//! signer has one slot per (height, round, proposal/prevote/precommit): an
//! exact duplicate (ordinary gossip) or a second, different message for a
//! taken slot (equivocation, which the height reports once it runs) is
//! dropped, and at most `per_signer` slots are held per signer. When a signer
//! is at its limit a message of a lower round (or of a higher height) replaces
//! its highest one, so the round-0 proposal and votes of a validator running
//! ahead are never crowded out by its own later rounds.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::types::{Height, Message, Round, VoteType};

/// Which slot a message takes for its signer; slots order by preference
/// (kept first): highest height, then lowest round, then step.
type Slot = (Reverse<Height>, Round, u8);

fn slot<A, V, Sig>(message: &Message<A, V, Sig>) -> Slot {
    let step = match message {
        Message::Proposal(_) => 0,
        Message::Vote(v) => match v.message.vote_type {
            VoteType::Prevote => 1,
            VoteType::Precommit => 2,
        },
    };
    (Reverse(message.height()), message.round(), step)
}

/// Signed messages waiting for their height, bounded per signer and in total.
#[derive(Debug, Clone)]
pub(crate) struct Pending<A, V, Sig> {
    by_signer: BTreeMap<A, BTreeMap<Slot, Message<A, V, Sig>>>,
    len: usize,
}

impl<A: Ord + Clone, V, Sig> Pending<A, V, Sig> {
    pub(crate) fn new() -> Self {
        Self {
            by_signer: BTreeMap::new(),
            len: 0,
        }
    }

    /// Number of messages held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether [`Pending::insert`] would store `message`: its slot is free and
    /// its signer is under `per_signer` with the buffer under `total`, or its
    /// signer holds a less preferred slot to give up. Checked before the
    /// signature, so that duplicates and overflow cost no verification.
    pub(crate) fn has_room(
        &self,
        message: &Message<A, V, Sig>,
        per_signer: usize,
        total: usize,
    ) -> bool {
        let slot = slot(message);
        let Some(held) = self.by_signer.get(message.signer()) else {
            return per_signer > 0 && self.len < total;
        };
        if held.contains_key(&slot) {
            return false;
        }
        if held.len() < per_signer {
            return self.len < total;
        }
        held.keys().next_back().is_some_and(|last| slot < *last)
    }

    /// Stores a message that [`Pending::has_room`] admitted and whose
    /// signature checked out, giving up its signer's least preferred slot if
    /// the signer is at `per_signer`.
    pub(crate) fn insert(&mut self, message: Message<A, V, Sig>, per_signer: usize) {
        let held = self.by_signer.entry(message.signer().clone()).or_default();
        if held.len() >= per_signer && held.pop_last().is_some() {
            self.len -= 1;
        }
        if held.insert(slot(&message), message).is_none() {
            self.len += 1;
        }
    }

    /// Empties the buffer, returning its messages (by signer, then slot).
    pub(crate) fn take(&mut self) -> impl Iterator<Item = Message<A, V, Sig>> + use<A, V, Sig> {
        self.len = 0;
        std::mem::take(&mut self.by_signer)
            .into_values()
            .flat_map(BTreeMap::into_values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Proposal, Signed, Vote};

    type M = Message<u32, u8, u8>;

    fn prevote(from: u32, height: Height, round: Round, sig: u8) -> M {
        Message::Vote(Signed {
            message: Vote {
                height,
                round,
                vote_type: VoteType::Prevote,
                value: None,
                validator: from,
            },
            signature: sig,
        })
    }

    fn proposal(from: u32, round: Round) -> M {
        Message::Proposal(Signed {
            message: Proposal {
                height: 2,
                round,
                value: 1,
                pol_round: None,
                proposer: from,
            },
            signature: 0,
        })
    }

    fn add(p: &mut Pending<u32, u8, u8>, m: M, per_signer: usize, total: usize) -> bool {
        let room = p.has_room(&m, per_signer, total);
        if room {
            p.insert(m, per_signer);
        }
        room
    }

    #[test]
    fn one_slot_per_signer_round_and_step() {
        let mut p = Pending::new();
        assert!(add(&mut p, prevote(1, 2, 0, 0), 4, 100));
        assert!(!add(&mut p, prevote(1, 2, 0, 0), 4, 100), "duplicate");
        assert!(!add(&mut p, prevote(1, 2, 0, 9), 4, 100), "slot taken");
        assert!(add(&mut p, proposal(1, 0), 4, 100), "another step");
        assert!(add(&mut p, prevote(2, 2, 0, 0), 4, 100), "another signer");
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn a_full_signer_keeps_its_lowest_rounds() {
        let mut p = Pending::new();
        for round in (1..=5).rev() {
            add(&mut p, prevote(1, 2, round, 0), 3, 100);
        }
        assert!(!add(&mut p, prevote(1, 2, 9, 0), 3, 100), "above all held");
        assert!(add(&mut p, prevote(1, 2, 0, 0), 3, 100));
        assert_eq!(p.len(), 3);
        let rounds: Vec<Round> = p.take().map(|m| m.round()).collect();
        assert_eq!(rounds, vec![0, 1, 2]);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn the_total_bounds_new_signers_only() {
        let mut p = Pending::new();
        assert!(add(&mut p, prevote(1, 2, 0, 0), 2, 2));
        assert!(add(&mut p, prevote(2, 2, 0, 0), 2, 2));
        assert!(!add(&mut p, prevote(3, 2, 0, 0), 2, 2), "full");
        assert!(!add(&mut p, prevote(1, 2, 1, 0), 2, 2), "full");
        // Higher heights are preferred (before the first height starts).
        assert!(add(&mut p, prevote(1, 3, 5, 0), 1, 2));
        assert_eq!(p.len(), 2);
    }
}
