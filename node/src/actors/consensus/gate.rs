//! What a peer's consensus message must pass before it is fed to the
//! machine and forwarded by gossip, cheapest checks first, so that a peer
//! without a key can make us do little work and nothing it sends is
//! forwarded unless it is new, well formed and signed by the right
//! validator:
//!
//! 1. height is the current or the next one (else Ignore);
//! 2. the round is one the machine would keep: a proposal at most
//!    `max_future_rounds` above the current round (a proposal is only used
//!    in the round the node is in, and is re-gossiped there); a vote in any
//!    round up to the machine's maximum, but of the rounds above the
//!    current one only the highest `max_future_rounds` per signer, as the
//!    machine keeps them. Votes from far ahead must pass: f+1 of them are
//!    how a node that fell behind in rounds catches up (L55);
//! 3. the signed content was not seen before (else Ignore): the envelope's
//!    `sent_ms` is not signed, so a re-wrapped copy is new bytes to gossip
//!    but the same message to us;
//! 4. at most [`MAX_PER_SLOT`] distinct messages per signer, round and step
//!    (the machine keeps one and one conflicting, for evidence);
//! 5. the signer is a validator, and for a proposal the round's proposer
//!    with a POL round below the round; the block's hash and height are the
//!    proposal's (else Reject);
//! 6. the signature recovers to the signer (else Reject);
//! 7. a proposal's body matches its header (else Reject): one keccak256
//!    per transaction, after the signature so a forged proposal costs one
//!    recovery, not a hash of its whole block.
//!
//! Reject verdicts depend only on the message and the validator set of its
//! height, so an honest relay is never penalised for a state difference.
//! Memory is bounded per signer: the rounds up to the current one, plus
//! its highest `max_future_rounds` above it, each with at most
//! [`MAX_PER_SLOT`] digests per step.

use std::collections::{BTreeSet, HashMap};

use tally_consensus::{MAX_ROUND, SigningScheme, ValidatorSet};
use tally_ledger::{Address, Hash, keccak256};
use tally_p2p::Verdict;

use crate::actors::consensus::blocks::BlockCache;
use crate::chain::Secp256k1;
use crate::wire::ConsensusMessage;

/// Distinct messages accepted per (height, round, step, signer): as many as
/// the machine keeps proposals (an equivocator's two values; two votes are
/// enough to prove equivocation).
pub const MAX_PER_SLOT: usize = tally_consensus::MAX_PROPOSALS_PER_ROUND;

const STEP_PROPOSAL: u8 = 0;

/// The gate's memory of the current and the next height.
#[derive(Debug, Default)]
pub struct Gate {
    /// Digests of the signed content accepted per (height, round, step,
    /// signer).
    slots: HashMap<(u64, u32, u8, Address), Vec<Hash>>,
    /// Rounds above the current one accepted per (height, signer).
    future: HashMap<(u64, Address), BTreeSet<u32>>,
    /// Proposers of (height, round), computed once.
    proposers: HashMap<(u64, u32), Address>,
    /// Transaction ids of accepted proposals' blocks, by block hash: hashed
    /// once for the body check, reused to look them up in the mempool.
    tx_ids: HashMap<Hash, (u64, Vec<Hash>)>,
}

/// The machine's position, against which a message is judged.
#[derive(Debug)]
pub struct Window<'a> {
    pub chain_id: u64,
    pub height: u64,
    pub round: u32,
    pub max_future_rounds: u32,
    /// Validator sets (with their proposer rotation) of the current and the
    /// next height.
    pub set: &'a ValidatorSet<Address>,
    pub next_set: &'a ValidatorSet<Address>,
}

impl Gate {
    /// Forgets everything below `height`.
    pub fn start_height(&mut self, height: u64) {
        self.slots.retain(|(h, ..), _| *h >= height);
        self.future.retain(|(h, _), _| *h >= height);
        self.proposers.retain(|(h, _), _| *h >= height);
        self.tx_ids.retain(|_, (h, _)| *h >= height);
    }

    /// The transaction ids of an accepted proposal's block, once.
    pub fn take_tx_ids(&mut self, value: &Hash) -> Option<Vec<Hash>> {
        self.tx_ids.remove(value).map(|(_, ids)| ids)
    }

    /// Judges `message`; an Accept is remembered, so the same signed content
    /// is Ignored from then on. `blocks` tells whether a proposal's slot has
    /// room.
    pub fn judge(
        &mut self,
        message: &ConsensusMessage,
        at: &Window<'_>,
        blocks: &BlockCache,
    ) -> Verdict {
        let (height, round, step, signer, sign_bytes, signature) = match message {
            ConsensusMessage::Proposal { proposal, .. } => {
                let m = &proposal.message;
                (
                    m.height,
                    m.round,
                    STEP_PROPOSAL,
                    m.proposer,
                    m.sign_bytes(at.chain_id),
                    proposal.signature,
                )
            }
            ConsensusMessage::Vote(vote) => {
                let m = &vote.message;
                (
                    m.height,
                    m.round,
                    1 + m.vote_type as u8,
                    m.validator,
                    m.sign_bytes(at.chain_id),
                    vote.signature,
                )
            }
        };
        // 1. The height.
        let (base, set) = if height == at.height {
            (at.round, at.set)
        } else if height == at.height + 1 {
            (0, at.next_set)
        } else {
            return Verdict::Ignore;
        };
        // 2. The round.
        let is_proposal = step == STEP_PROPOSAL;
        if round > MAX_ROUND || (is_proposal && round > base.saturating_add(at.max_future_rounds)) {
            return Verdict::Ignore;
        }
        let future_key = (height, signer);
        let evict = if round > base {
            match self.room_for_future(future_key, base, round, at.max_future_rounds) {
                Some(evict) => evict,
                None => return Verdict::Ignore,
            }
        } else {
            None
        };
        // 3. and 4. Seen before, or too many from this signer here.
        let digest = keccak256(&[sign_bytes.as_slice(), &signature.0[..]].concat());
        let slot = (height, round, step, signer);
        if let Some(held) = self.slots.get(&slot) {
            if held.contains(&digest) {
                // A copy of an accepted proposal with another body under
                // the same signed header is provably forged: compared with
                // the body we hold (no hashing), it is Rejected.
                if let ConsensusMessage::Proposal { proposal, block } = message {
                    if blocks
                        .get(&proposal.message.value)
                        .is_some_and(|held| held != block)
                    {
                        return Verdict::Reject;
                    }
                }
                return Verdict::Ignore;
            }
            if held.len() >= MAX_PER_SLOT {
                return Verdict::Ignore;
            }
        }
        // 5. The signer's role, and the proposal's block.
        if !set.contains(&signer) {
            return Verdict::Reject;
        }
        if let ConsensusMessage::Proposal { proposal, block } = message {
            let proposer = *self
                .proposers
                .entry((height, round))
                .or_insert_with(|| *set.proposer(round));
            let value = proposal.message.value;
            if signer != proposer
                || proposal.message.pol_round.is_some_and(|pol| pol >= round)
                || block.hash() != value
                || block.height() != height
            {
                return Verdict::Reject;
            }
            if !blocks.has_room(height, round, &value) {
                return Verdict::Ignore;
            }
        }
        // 6. The signature.
        if !Secp256k1.verify(&signer, &sign_bytes, &signature) {
            return Verdict::Reject;
        }
        // 7. The body.
        if let ConsensusMessage::Proposal { proposal, block } = message {
            match block.check_body() {
                Ok(ids) => {
                    self.tx_ids.insert(proposal.message.value, (height, ids));
                }
                Err(_) => return Verdict::Reject,
            }
        }
        if round > base {
            let rounds = self.future.entry(future_key).or_default();
            if let Some(lowest) = evict {
                rounds.remove(&lowest);
                self.slots
                    .retain(|(h, r, _, a), _| !(*h == height && *r == lowest && *a == signer));
            }
            rounds.insert(round);
        }
        self.slots.entry(slot).or_default().push(digest);
        Verdict::Accept
    }

    /// Whether `signer` (of `key`) may have a message in future `round`:
    /// `None` if not, `Some(None)` if there is room, `Some(Some(r))` if its
    /// lowest future round `r` must make way (as the machine keeps the
    /// highest ones).
    fn room_for_future(
        &mut self,
        key: (u64, Address),
        base: u32,
        round: u32,
        max: u32,
    ) -> Option<Option<u32>> {
        let rounds = self.future.entry(key).or_default();
        // Rounds the machine has reached since are not "future" any more.
        rounds.retain(|r| *r > base);
        if rounds.contains(&round) || rounds.len() < max as usize {
            return Some(None);
        }
        let lowest = *rounds.iter().next()?;
        (round > lowest).then_some(Some(lowest))
    }

    /// Messages remembered (to check that memory stays bounded).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use tally_consensus::{Proposal, Signed, Signer, Validator, Vote, VoteType};
    use tally_ledger::{Block, Header, SecretKey, SignedTransaction, Transaction, merkle_root};

    use super::*;
    use crate::chain::ValidatorSigner;

    const CHAIN: u64 = 9;

    struct Fixture {
        keys: Vec<SecretKey>,
        set: ValidatorSet<Address>,
        next: ValidatorSet<Address>,
    }

    fn fixture() -> Fixture {
        let keys: Vec<SecretKey> = (0..4)
            .map(|i| SecretKey::from_seed(&format!("gate-{i}")))
            .collect();
        let set = ValidatorSet::new(
            keys.iter()
                .map(|k| Validator {
                    address: k.address(),
                    power: 1,
                })
                .collect(),
        )
        .expect("set");
        let next = set.next_height();
        Fixture { keys, set, next }
    }

    impl Fixture {
        fn window(&self) -> Window<'_> {
            Window {
                chain_id: CHAIN,
                height: 5,
                round: 0,
                max_future_rounds: 4,
                set: &self.set,
                next_set: &self.next,
            }
        }

        fn key_of(&self, address: &Address) -> &SecretKey {
            self.keys
                .iter()
                .find(|k| &k.address() == address)
                .expect("a validator's key")
        }

        /// A proposal by the right proposer of (`height`, `round`) with a
        /// body of one transaction.
        fn proposal(&self, height: u64, round: u32) -> ConsensusMessage {
            let set = if height == 5 { &self.set } else { &self.next };
            let proposer = *set.proposer(round);
            self.proposal_by(proposer, height, round)
        }

        fn proposal_by(&self, proposer: Address, height: u64, round: u32) -> ConsensusMessage {
            let tx: SignedTransaction = Transaction {
                chain_id: CHAIN,
                nonce: 0,
                to: Address([1; 20]),
                amount: 1,
                fee: 1,
                memo: Vec::new(),
            }
            .sign(&self.keys[0]);
            let block = Block {
                header: Header {
                    chain_id: CHAIN,
                    height,
                    time: 1,
                    prev_hash: Hash::ZERO,
                    tx_root: merkle_root(&[tx.hash()]),
                    state_root: Hash::ZERO,
                    proposer,
                    validators_hash: Hash::ZERO,
                    next_validators_hash: Hash::ZERO,
                    last_commit_hash: Hash::ZERO,
                },
                txs: vec![tx],
                last_commit: None,
            };
            let message = Proposal {
                height,
                round,
                value: block.hash(),
                pol_round: None,
                proposer,
            };
            let signer = ValidatorSigner::new(self.key_of(&proposer).clone());
            let signature = signer.sign(&message.sign_bytes(CHAIN));
            ConsensusMessage::Proposal {
                proposal: Signed { message, signature },
                block,
            }
        }

        fn vote(&self, who: usize, round: u32, value: Hash) -> ConsensusMessage {
            let message = Vote {
                height: 5,
                round,
                vote_type: VoteType::Prevote,
                value: Some(value),
                validator: self.keys[who].address(),
            };
            let signer = ValidatorSigner::new(self.keys[who].clone());
            let signature = signer.sign(&message.sign_bytes(CHAIN));
            ConsensusMessage::Vote(Signed { message, signature })
        }
    }

    #[test]
    fn a_body_swapped_under_a_signed_header_is_rejected_and_the_honest_copy_accepted() {
        let f = fixture();
        let mut gate = Gate::default();
        let mut cache = BlockCache::new(8);
        let honest = f.proposal(5, 0);
        let ConsensusMessage::Proposal { proposal, block } = honest.clone() else {
            unreachable!()
        };
        let mut emptied = block.clone();
        emptied.txs.clear();
        let swapped = ConsensusMessage::Proposal {
            proposal: proposal.clone(),
            block: emptied,
        };
        assert_eq!(gate.judge(&swapped, &f.window(), &cache), Verdict::Reject);
        let mut recertified = block.clone();
        recertified.last_commit = Some(tally_ledger::Commit {
            height: 4,
            round: 0,
            block_hash: Hash::ZERO,
            signatures: Vec::new(),
        });
        let swapped = ConsensusMessage::Proposal {
            proposal: proposal.clone(),
            block: recertified,
        };
        assert_eq!(gate.judge(&swapped, &f.window(), &cache), Verdict::Reject);
        // The tampered copies did not poison anything.
        assert_eq!(gate.judge(&honest, &f.window(), &cache), Verdict::Accept);
        // A tampered copy after the honest one (same signed content) is
        // still told apart from the body held, and Rejected.
        let at = super::super::blocks::Position {
            height: 5,
            round: 0,
            keep: &[],
        };
        assert!(cache.insert(0, proposal.message.value, block.clone(), at));
        assert_eq!(gate.judge(&swapped, &f.window(), &cache), Verdict::Reject);
        assert_eq!(gate.judge(&honest, &f.window(), &cache), Verdict::Ignore);
    }

    #[test]
    fn only_the_rounds_proposer_within_the_window_may_propose() {
        let f = fixture();
        let mut gate = Gate::default();
        let cache = BlockCache::new(8);
        let proposer = *f.set.proposer(1);
        let other = f
            .keys
            .iter()
            .map(SecretKey::address)
            .find(|a| a != &proposer)
            .expect("another validator");
        let w = f.window();
        assert_eq!(
            gate.judge(&f.proposal_by(other, 5, 1), &w, &cache),
            Verdict::Reject
        );
        assert_eq!(gate.judge(&f.proposal(5, 1), &w, &cache), Verdict::Accept);
        // Beyond the rounds the machine keeps, at this height and the next.
        assert_eq!(gate.judge(&f.proposal(5, 5), &w, &cache), Verdict::Ignore);
        assert_eq!(gate.judge(&f.proposal(6, 4), &w, &cache), Verdict::Accept);
        assert_eq!(gate.judge(&f.proposal(6, 5), &w, &cache), Verdict::Ignore);
        // Other heights.
        assert_eq!(gate.judge(&f.proposal(7, 0), &w, &cache), Verdict::Ignore);
        assert_eq!(gate.judge(&f.proposal(4, 0), &w, &cache), Verdict::Ignore);
    }

    #[test]
    fn a_rewrapped_copy_is_ignored_and_an_equivocator_gets_two_slots() {
        let f = fixture();
        let mut gate = Gate::default();
        let cache = BlockCache::new(8);
        let w = f.window();
        let vote = f.vote(1, 0, Hash([1; 32]));
        assert_eq!(gate.judge(&vote, &w, &cache), Verdict::Accept);
        // The same signed vote again (a re-wrap): no signature work, Ignore.
        assert_eq!(gate.judge(&vote, &w, &cache), Verdict::Ignore);
        // One conflicting vote passes (it is evidence); a third does not.
        assert_eq!(
            gate.judge(&f.vote(1, 0, Hash([2; 32])), &w, &cache),
            Verdict::Accept
        );
        assert_eq!(
            gate.judge(&f.vote(1, 0, Hash([3; 32])), &w, &cache),
            Verdict::Ignore
        );
        // Forged: signed by one validator, claimed by another.
        let ConsensusMessage::Vote(mut forged) = f.vote(2, 0, Hash([4; 32])) else {
            unreachable!()
        };
        forged.message.validator = f.keys[3].address();
        assert_eq!(
            gate.judge(&ConsensusMessage::Vote(forged), &w, &cache),
            Verdict::Reject
        );
        // A new height forgets the old one's messages.
        gate.start_height(6);
        assert_eq!(gate.len(), 0);
    }

    #[test]
    fn votes_from_far_rounds_pass_so_a_node_behind_in_rounds_catches_up() {
        let f = fixture();
        let mut gate = Gate::default();
        let cache = BlockCache::new(8);
        let w = f.window();
        // Far above our round 0: what a node that fell behind must see.
        for round in [100, 101, 102, 103] {
            assert_eq!(
                gate.judge(&f.vote(1, round, Hash([1; 32])), &w, &cache),
                Verdict::Accept
            );
        }
        // As the machine, the highest four future rounds per signer.
        assert_eq!(
            gate.judge(&f.vote(1, 99, Hash([1; 32])), &w, &cache),
            Verdict::Ignore
        );
        assert_eq!(
            gate.judge(&f.vote(1, 104, Hash([1; 32])), &w, &cache),
            Verdict::Accept
        );
        assert_eq!(gate.len(), 4, "round 100 made way");
        assert_eq!(
            gate.judge(&f.vote(1, 100, Hash([1; 32])), &w, &cache),
            Verdict::Ignore
        );
        // Other signers have their own rounds.
        assert_eq!(
            gate.judge(&f.vote(2, 100, Hash([1; 32])), &w, &cache),
            Verdict::Accept
        );
        assert_eq!(
            gate.judge(
                &f.vote(2, tally_consensus::MAX_ROUND + 1, Hash([1; 32])),
                &w,
                &cache
            ),
            Verdict::Ignore
        );
    }
}
