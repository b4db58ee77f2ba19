//! One Byzantine validator (a quarter of the power, within the f the
//! protocol tolerates) against three honest ones: it equivocates (two
//! prevotes and two precommits in every round it sees, two proposals when
//! it is the proposer) and signs proposals for every round of the next
//! height to fill the honest nodes' block caches.

use std::time::Duration;

use tally_consensus::{Proposal, Signed, Signer, Vote, VoteType};
use tally_ledger::{Address, Block, Hash, Header, SecretKey, merkle_root};
use tally_node::chain::{ValidatorSigner, validator_set};
use tally_node::wire::{ConsensusEnvelope, ConsensusMessage, encode};
use tally_p2p::{Event, Topic};

use super::{Attacker, Behaviour, Net, Target, junk_hash, with_identities};

struct Equivocator {
    chain_id: u64,
    signer: ValidatorSigner,
    me: Address,
    set: tally_consensus::ValidatorSet<Address>,
    /// The highest (height, round) seen in honest votes.
    at: Option<(u64, u32)>,
    n: u64,
}

impl Equivocator {
    fn new(target: &Target, key: SecretKey) -> Equivocator {
        Equivocator {
            chain_id: target.chain_id,
            me: key.address(),
            signer: ValidatorSigner::new(key),
            set: validator_set(&target.genesis).expect("validator set"),
            at: None,
            n: 0,
        }
    }

    fn block(&self, height: u64, tag: u64) -> Block {
        Block {
            header: Header {
                chain_id: self.chain_id,
                height,
                time: tag,
                prev_hash: junk_hash(tag),
                tx_root: merkle_root(&[]),
                state_root: junk_hash(tag + 1),
                proposer: self.me,
                validators_hash: junk_hash(tag + 2),
                next_validators_hash: junk_hash(tag + 2),
                last_commit_hash: Hash::ZERO,
            },
            txs: Vec::new(),
            last_commit: None,
        }
    }

    fn proposal(&self, height: u64, round: u32, tag: u64) -> ConsensusMessage {
        let block = self.block(height, tag);
        let message = Proposal {
            height,
            round,
            value: block.hash(),
            pol_round: None,
            proposer: self.me,
        };
        let signature = self.signer.sign(&message.sign_bytes(self.chain_id));
        ConsensusMessage::Proposal {
            proposal: Signed { message, signature },
            block,
        }
    }

    fn vote(&self, height: u64, round: u32, vote_type: VoteType, value: Hash) -> ConsensusMessage {
        let message = Vote {
            height,
            round,
            vote_type,
            value: Some(value),
            validator: self.me,
        };
        let signature = self.signer.sign(&message.sign_bytes(self.chain_id));
        ConsensusMessage::Vote(Signed { message, signature })
    }
}

async fn send(a: &Attacker, n: u64, message: ConsensusMessage) -> u64 {
    let envelope = ConsensusEnvelope {
        sent_ms: n,
        message,
    };
    u64::from(
        a.handle
            .publish(Topic::Consensus, encode(&envelope))
            .await
            .is_ok(),
    )
}

impl Behaviour for Equivocator {
    fn every(&self) -> Duration {
        Duration::from_millis(200)
    }

    async fn on_event(&mut self, a: &Attacker, e: Event) -> u64 {
        if let Event::Message {
            source, id, data, ..
        } = e
        {
            let _ = a
                .handle
                .report(id, source, tally_p2p::Verdict::Ignore)
                .await;
            if let Ok(envelope) = tally_node::wire::decode::<ConsensusEnvelope>(&data) {
                if let ConsensusMessage::Vote(vote) = envelope.message {
                    let seen = (vote.message.height, vote.message.round);
                    if self.at.is_none_or(|at| seen > at) {
                        self.at = Some(seen);
                    }
                }
            }
        }
        0
    }

    async fn on_tick(&mut self, a: &Attacker) -> u64 {
        let Some((height, round)) = self.at else {
            return 0;
        };
        self.n += 1;
        let mut sent = 0;
        // Two votes of each kind for this round.
        for vote_type in [VoteType::Prevote, VoteType::Precommit] {
            for side in 0..2 {
                let value = junk_hash(height * 1_000 + u64::from(round) * 10 + side);
                let vote = self.vote(height, round, vote_type, value);
                sent += send(a, self.n * 10 + side, vote).await;
            }
        }
        // Two proposals when it is this round's proposer.
        // The genesis set throughout (the attacked chain never changes it),
        // its rotation advanced once per height.
        let mut set = self.set.clone();
        set.advance(height.saturating_sub(1));
        if set.proposer(round) == &self.me {
            for side in 0..2 {
                let proposal = self.proposal(height, round, self.n * 10 + side);
                sent += send(a, self.n * 10 + side, proposal).await;
            }
        }
        // A signed proposal for each of 64 rounds of the next height.
        for r in 0..64 {
            let proposal = self.proposal(height + 1, r, self.n * 100 + u64::from(r));
            sent += send(a, self.n * 100 + u64::from(r), proposal).await;
        }
        sent
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_byzantine_validator_cannot_stop_three_honest_ones() {
    let _heavy = crate::harness::heavy().await;
    let net = Net::start(4, 3).await;
    let key = net.validator_key(3);
    let byzantine = key.address();
    let report = net
        .survive("equivocation and proposal flood", |t, stop| {
            let equivocator = Equivocator::new(&t, key);
            with_identities(t, stop, equivocator)
        })
        .await;
    net.expect(report.sent > 0, || {
        "the Byzantine validator sent nothing".into()
    });
    net.expect(report.lives > 1, || {
        "proposals signed out of turn never got the sender dropped".into()
    });
    // Every honest node saw the equivocation and reported it.
    for node in &net.nodes {
        let log = node.log_text();
        let reported = log.lines().any(|l| {
            l.contains("signed conflicting messages") && l.contains(&byzantine.to_string())
        });
        net.expect(reported, || {
            format!("{} reported no evidence against {byzantine}", node.name)
        });
    }
    net.finish().await;
}
