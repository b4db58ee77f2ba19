//! What a hostile or merely noisy network can make a machine store or compute:
//! forged and duplicated messages for the next height, junk proposals and
//! equivocating votes, late proposals of past rounds.

use tally_consensus::{
    Action, Consensus, Event, Evidence, Message, RoundValue, TimeoutKind::*, Validator,
    ValidatorSet,
};

use crate::sim::scheme::TestScheme;
use crate::support::*;

fn limit() -> u32 {
    u32::try_from(config().max_next_height_messages).expect("a small limit")
}

#[test]
fn forged_and_duplicated_next_height_messages_do_not_crowd_out_the_real_ones() {
    let mut m = machine(3);
    m.handle(start(1));
    // A peer without validator 0's key sends twice its quota "from" it.
    for round in 0..2 * limit() {
        let mut forged = signed_proposal(0, 2, round, v(66), None);
        forged.signature ^= 1;
        assert_eq!(m.handle(ev_proposal(forged)), vec![]);
        let mut forged = prevote(0, 2, round, Some(v(66)));
        forged.signature ^= 1;
        assert_eq!(m.handle(ev_vote(forged)), vec![]);
    }
    assert_eq!(m.held_message_count(), 0, "nothing forged is kept");
    // Gossip delivers validator 1's prevote over and over.
    for _ in 0..2 * limit() {
        m.handle(ev_vote(prevote(1, 2, 0, Some(v(1)))));
    }
    assert_eq!(m.held_message_count(), 1, "duplicates are kept once");
    // The real round-0 proposal and prevote of validator 0 still get in.
    m.handle(ev_proposal(signed_proposal(0, 2, 0, v(1), None)));
    m.handle(ev_vote(prevote(0, 2, 0, Some(v(1)))));
    assert_eq!(m.held_message_count(), 3);
    assert_eq!(
        m.handle(start(2)),
        vec![schedule(2, 0, Propose), verify(2, 0, v(1), 0)],
        "L22 on the replayed proposal"
    );
    // L22-27, L36-41: our prevote and the two replayed ones make a polka.
    m.handle(verified(2, v(1), true));
    assert_eq!(
        m.locked(),
        Some(&RoundValue {
            round: 0,
            value: v(1)
        })
    );
}

#[test]
fn a_validator_running_ahead_keeps_its_lowest_next_height_rounds() {
    let mut m = machine(3);
    m.handle(start(1));
    for round in (0..3 * limit()).rev() {
        m.handle(ev_vote(prevote(2, 2, round, None)));
        m.handle(ev_vote(precommit(2, 2, round, None)));
    }
    assert_eq!(m.held_message_count(), config().max_next_height_messages);
    m.handle(start(2));
    let round0 = m.round_messages(0);
    assert!(
        round0.contains(&Message::Vote(prevote(2, 2, 0, None)))
            && round0.contains(&Message::Vote(precommit(2, 2, 0, None))),
        "round 0 was crowded out: {round0:?}"
    );
}

#[test]
fn before_the_first_height_one_signer_cannot_fill_the_buffer() {
    let mut m = machine(3);
    // Validator 9 is in no set; it signs many distinct messages.
    for round in 0..1000 {
        m.handle(ev_vote(prevote(9, 1, round, None)));
    }
    // And someone forges many "from" validator 0.
    for round in 0..1000 {
        let mut forged = prevote(0, 1, round, None);
        forged.signature ^= 1;
        m.handle(ev_vote(forged));
    }
    assert_eq!(m.held_message_count(), config().max_next_height_messages);
    m.handle(ev_proposal(signed_proposal(0, 1, 0, v(1), None)));
    assert_eq!(
        m.handle(start(1)),
        vec![schedule(1, 0, Propose), verify(1, 0, v(1), 0)],
        "L22 on the proposal buffered before the height started"
    );
}

#[test]
fn a_non_proposers_proposal_never_makes_a_value_proposed() {
    let mut m = machine(1);
    m.handle(start(1));
    // Validator 3 is not the proposer of round 2 (validator 2 is), but
    // round 2 is ahead, so its proposal is held for now.
    m.handle(ev_proposal(signed_proposal(3, 1, 2, v(7), None)));
    m.handle(ev_vote(prevote(0, 1, 0, None)));
    let held = m.held_message_count();
    // Validator 0 equivocates for the junk value: reported, not stored.
    let second = prevote(0, 1, 0, Some(v(7)));
    assert_eq!(
        m.handle(ev_vote(second.clone())),
        vec![Action::ReportEvidence(Evidence::DuplicateVote {
            first: prevote(0, 1, 0, None),
            second,
        })]
    );
    assert_eq!(m.held_message_count(), held);
    // Once round 2 is reached, the non-proposer's proposal is dropped.
    m.handle(ev_vote(prevote(2, 1, 2, None)));
    assert_eq!(m.round(), Some(2));
    assert!(
        !m.round_messages(2)
            .iter()
            .any(|message| matches!(message, Message::Proposal(_))),
        "a proposal of a non-proposer stayed in a reached round"
    );
}

#[test]
fn an_equivocator_keeps_at_most_one_second_vote_per_round_and_step() {
    let mut m = machine(3);
    m.handle(start(1));
    m.handle(ev_proposal(signed_proposal(0, 1, 0, v(1), None)));
    m.handle(ev_vote(prevote(0, 1, 0, None)));
    // f+1 in round 1 (proposer 1), which proposes v2.
    m.handle(ev_vote(prevote(1, 1, 1, None)));
    m.handle(ev_vote(prevote(2, 1, 1, None)));
    assert_eq!(m.round(), Some(1));
    m.handle(ev_proposal(signed_proposal(1, 1, 1, v(2), None)));
    let held = m.held_message_count();
    // Validator 0 prevoted nil in round 0; it now also prevotes v1 and v2.
    m.handle(ev_vote(prevote(0, 1, 0, Some(v(1)))));
    assert_eq!(m.held_message_count(), held + 1, "one second vote counts");
    m.handle(ev_vote(prevote(0, 1, 0, Some(v(2)))));
    m.handle(ev_vote(precommit(0, 1, 0, None)));
    m.handle(ev_vote(precommit(0, 1, 0, Some(v(1)))));
    m.handle(ev_vote(precommit(0, 1, 0, Some(v(2)))));
    assert_eq!(
        m.held_message_count(),
        held + 3,
        "a third vote is not stored"
    );
}

#[test]
fn late_proposals_of_past_rounds_are_checked_against_the_rotation() {
    let set = ValidatorSet::new(
        [5, 3, 1, 1]
            .into_iter()
            .zip(0..)
            .map(|(power, address)| Validator { address, power })
            .collect(),
    )
    .expect("valid set");
    let mut m =
        Consensus::restore(config(), TestScheme, None, state(1, 40)).expect("a sane signing state");
    m.handle(Event::StartHeight {
        height: 1,
        validators: set.clone(),
    });
    assert_eq!(m.round(), Some(40));
    for round in (0..40).rev() {
        for from in 0..4 {
            let p = signed_proposal(from, 1, round, v(u64::from(round)), None);
            m.handle(ev_proposal(p));
        }
        let proposers: Vec<u32> = m
            .round_messages(round)
            .iter()
            .filter_map(|message| match message {
                Message::Proposal(p) => Some(p.message.proposer),
                Message::Vote(_) => None,
            })
            .collect();
        assert_eq!(proposers, vec![*set.proposer(round)], "round {round}");
    }
}
