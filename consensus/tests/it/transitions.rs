//! Table-driven tests of the transitions of Algorithm 1. Each step names the
//! rule (line numbers of the paper) it checks and lists exactly the actions
//! expected. Validators 0..4 of power 1; at height 1 the proposer of round
//! `r` is validator `r mod 4`.

use tally_consensus::{Action, Consensus, Event, Evidence, RoundValue, TimeoutKind::*};

use crate::sim::scheme::TestScheme;
use crate::support::*;

fn built(h: u64, r: u32, value: crate::sim::scheme::Val) -> crate::sim::scheme::TEvent {
    Event::BlockBuilt {
        height: h,
        round: r,
        value,
    }
}

fn build(h: u64, r: u32) -> crate::sim::scheme::TAction {
    Action::BuildBlock {
        height: h,
        round: r,
    }
}

#[test]
fn non_proposer_decides_in_round_zero() {
    let mut m = machine(1);
    let p = signed_proposal(0, 1, 0, v(1), None);
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "L10-11, L20-21: start height 1, not the proposer: schedule timeoutPropose(0)",
                event: start(1),
                expected: vec![schedule(1, 0, Propose)],
            },
            TestStep {
                desc: "L22: proposal from proposer(1, 0) with validRound -1: ask for valid(v)",
                event: ev_proposal(p),
                expected: vec![verify(1, 0, v(1), 0)],
            },
            TestStep {
                desc: "L22-24, L27: valid(v), not locked: prevote v, persisted first",
                event: verified(1, v(1), true),
                expected: vec![
                    persist(state(1, 0).prevote(0, Some(v(1)))),
                    broadcast_vote(prevote(1, 1, 0, Some(v(1)))),
                ],
            },
            TestStep {
                desc: "L34/L36 need 2f+1 prevotes: two are not enough",
                event: ev_vote(prevote(0, 1, 0, Some(v(1)))),
                expected: vec![],
            },
            TestStep {
                desc: "L34-35 then L36-43: 2f+1 prevotes for v: timeoutPrevote, lock, precommit v",
                event: ev_vote(prevote(2, 1, 0, Some(v(1)))),
                expected: vec![
                    schedule(1, 0, Prevote),
                    persist(
                        state(1, 0)
                            .prevote(0, Some(v(1)))
                            .precommit(0, Some(v(1)))
                            .locked(0, v(1))
                            .valid(
                                0,
                                v(1),
                                vec![
                                    prevote(0, 1, 0, Some(v(1))),
                                    prevote(1, 1, 0, Some(v(1))),
                                    prevote(2, 1, 0, Some(v(1))),
                                ],
                            ),
                    ),
                    broadcast_vote(precommit(1, 1, 0, Some(v(1)))),
                ],
            },
            TestStep {
                desc: "L47 needs 2f+1 precommits of any value",
                event: ev_vote(precommit(0, 1, 0, Some(v(1)))),
                expected: vec![],
            },
            TestStep {
                desc: "L47-48: 2f+1 precommits (mixed values): schedule timeoutPrecommit",
                event: ev_vote(precommit(2, 1, 0, None)),
                expected: vec![schedule(1, 0, Precommit)],
            },
            TestStep {
                desc: "L49-51: proposal and 2f+1 precommits for v: decide, with the certificate",
                event: ev_vote(precommit(3, 1, 0, Some(v(1)))),
                expected: vec![decide(1, 0, v(1), &[0, 1, 3])],
            },
            TestStep {
                desc: "L49 'while decision = nil': after deciding, the height's messages are ignored",
                event: ev_vote(prevote(3, 1, 0, None)),
                expected: vec![],
            },
        ],
    );
    assert_eq!(
        m.locked(),
        Some(&RoundValue {
            round: 0,
            value: v(1)
        })
    );
    assert_eq!(m.decision().map(|c| c.value), Some(v(1)));
}

#[test]
fn proposer_builds_proposes_and_prevotes() {
    let mut m = machine(0);
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "L11, L14, L18: proposer without validValue asks for a block (getValue)",
                event: start(1),
                expected: vec![schedule(1, 0, Propose), build(1, 0)],
            },
            TestStep {
                desc: "L18: a block built for another round is stale",
                event: built(1, 1, v(9)),
                expected: vec![],
            },
            TestStep {
                desc: "L19 then L22-24: broadcast the proposal and prevote it, persisted first",
                event: built(1, 0, v(1)),
                expected: vec![
                    persist(state(1, 0).proposal(0, v(1), None).prevote(0, Some(v(1)))),
                    broadcast_proposal(signed_proposal(0, 1, 0, v(1), None)),
                    broadcast_vote(prevote(0, 1, 0, Some(v(1)))),
                ],
            },
            TestStep {
                desc: "L18: getValue is answered once; a second block is ignored",
                event: built(1, 0, v(2)),
                expected: vec![],
            },
        ],
    );
}

#[test]
fn invalid_proposal_gets_a_nil_prevote() {
    let mut m = machine(1);
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "L11, L21",
                event: start(1),
                expected: vec![schedule(1, 0, Propose)],
            },
            TestStep {
                desc: "L22: ask for valid(v)",
                event: ev_proposal(signed_proposal(0, 1, 0, v(1), None)),
                expected: vec![verify(1, 0, v(1), 0)],
            },
            TestStep {
                desc: "L22, L25-27: not valid(v): prevote nil",
                event: verified(1, v(1), false),
                expected: vec![
                    persist(state(1, 0).prevote(0, None)),
                    broadcast_vote(prevote(1, 1, 0, None)),
                ],
            },
        ],
    );
}

#[test]
fn timeouts_move_the_round_on() {
    let mut m = machine(1);
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "L11, L21",
                event: start(1),
                expected: vec![schedule(1, 0, Propose)],
            },
            TestStep {
                desc: "L58: a timeout of another round is stale",
                event: timeout(1, 1, Propose),
                expected: vec![],
            },
            TestStep {
                desc: "L57-60: timeoutPropose in step propose: prevote nil",
                event: timeout(1, 0, Propose),
                expected: vec![
                    persist(state(1, 0).prevote(0, None)),
                    broadcast_vote(prevote(1, 1, 0, None)),
                ],
            },
            TestStep {
                desc: "L58: step is no longer propose; timeoutPropose does nothing",
                event: timeout(1, 0, Propose),
                expected: vec![],
            },
            TestStep {
                desc: "L34 needs 2f+1 prevotes",
                event: ev_vote(prevote(0, 1, 0, Some(v(9)))),
                expected: vec![],
            },
            TestStep {
                desc: "L34-35: 2f+1 prevotes of mixed values: schedule timeoutPrevote (no L44)",
                event: ev_vote(prevote(2, 1, 0, None)),
                expected: vec![schedule(1, 0, Prevote)],
            },
            TestStep {
                desc: "L34 'for the first time': more prevotes schedule nothing",
                event: ev_vote(prevote(3, 1, 0, Some(v(8)))),
                expected: vec![],
            },
            TestStep {
                desc: "L61-64: timeoutPrevote in step prevote: precommit nil",
                event: timeout(1, 0, Prevote),
                expected: vec![
                    persist(state(1, 0).prevote(0, None).precommit(0, None)),
                    broadcast_vote(precommit(1, 1, 0, None)),
                ],
            },
            TestStep {
                desc: "L47 needs 2f+1 precommits",
                event: ev_vote(precommit(0, 1, 0, None)),
                expected: vec![],
            },
            TestStep {
                desc: "L47-48: 2f+1 precommits: schedule timeoutPrecommit",
                event: ev_vote(precommit(3, 1, 0, None)),
                expected: vec![schedule(1, 0, Precommit)],
            },
            TestStep {
                desc: "L65-67 then L11, L14, L18: timeoutPrecommit starts round 1, ours to propose",
                event: timeout(1, 0, Precommit),
                expected: vec![schedule(1, 1, Propose), build(1, 1)],
            },
        ],
    );
    assert_eq!(m.round(), Some(1));
}

#[test]
fn polka_for_nil_precommits_nil() {
    let mut m = machine(1);
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "L11, L21",
                event: start(1),
                expected: vec![schedule(1, 0, Propose)],
            },
            TestStep {
                desc: "L57-60",
                event: timeout(1, 0, Propose),
                expected: vec![
                    persist(state(1, 0).prevote(0, None)),
                    broadcast_vote(prevote(1, 1, 0, None)),
                ],
            },
            TestStep {
                desc: "L44 needs 2f+1 nil prevotes",
                event: ev_vote(prevote(0, 1, 0, None)),
                expected: vec![],
            },
            TestStep {
                desc: "L34-35 and L44-46: 2f+1 prevotes for nil: precommit nil",
                event: ev_vote(prevote(2, 1, 0, None)),
                expected: vec![
                    schedule(1, 0, Prevote),
                    persist(state(1, 0).prevote(0, None).precommit(0, None)),
                    broadcast_vote(precommit(1, 1, 0, None)),
                ],
            },
        ],
    );
}

#[test]
fn late_polka_sets_valid_value_and_is_reproposed_with_its_round() {
    let mut m = machine(1);
    let polka = vec![
        prevote(0, 1, 0, Some(v(1))),
        prevote(2, 1, 0, Some(v(1))),
        prevote(3, 1, 0, Some(v(1))),
    ];
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "L11, L21",
                event: start(1),
                expected: vec![schedule(1, 0, Propose)],
            },
            TestStep {
                desc: "L57-60: no proposal in time: prevote nil",
                event: timeout(1, 0, Propose),
                expected: vec![
                    persist(state(1, 0).prevote(0, None)),
                    broadcast_vote(prevote(1, 1, 0, None)),
                ],
            },
            TestStep {
                desc: "prevote for v",
                event: ev_vote(polka[0].clone()),
                expected: vec![],
            },
            TestStep {
                desc: "L34-35",
                event: ev_vote(polka[1].clone()),
                expected: vec![schedule(1, 0, Prevote)],
            },
            TestStep {
                desc: "L61-64",
                event: timeout(1, 0, Prevote),
                expected: vec![
                    persist(state(1, 0).prevote(0, None).precommit(0, None)),
                    broadcast_vote(precommit(1, 1, 0, None)),
                ],
            },
            TestStep {
                desc: "L22 does not apply in step precommit; L36 wants valid(v)",
                event: ev_proposal(signed_proposal(0, 1, 0, v(1), None)),
                expected: vec![],
            },
            TestStep {
                desc: "the third prevote for v completes the polka: L36 asks for valid(v)",
                event: ev_vote(polka[2].clone()),
                expected: vec![verify(1, 0, v(1), 0)],
            },
            TestStep {
                desc: "L36, L42-43 in step precommit: validValue/validRound only, no lock, no vote",
                event: verified(1, v(1), true),
                expected: vec![],
            },
            TestStep {
                desc: "L47",
                event: ev_vote(precommit(0, 1, 0, None)),
                expected: vec![],
            },
            TestStep {
                desc: "L47-48",
                event: ev_vote(precommit(2, 1, 0, None)),
                expected: vec![schedule(1, 0, Precommit)],
            },
            TestStep {
                desc: "L65, L11, L14-16, L19: our round: propose validValue with validRound 0; \
                       then L28-30 on our own proposal: prevote it",
                event: timeout(1, 0, Precommit),
                expected: vec![
                    schedule(1, 1, Propose),
                    persist(
                        state(1, 1)
                            .proposal(1, v(1), Some(0))
                            .prevote(1, Some(v(1)))
                            .precommit(0, None)
                            .valid(0, v(1), polka.clone()),
                    ),
                    broadcast_proposal(signed_proposal(1, 1, 1, v(1), Some(0))),
                    broadcast_vote(prevote(1, 1, 1, Some(v(1)))),
                ],
            },
        ],
    );
    assert_eq!(m.locked(), None);
    assert_eq!(
        m.valid(),
        Some(&RoundValue {
            round: 0,
            value: v(1)
        })
    );
}

/// A validator (3) resumed in round 2 of height 1 with the given lock.
fn locked_machine(round: u32, locked_round: u32, value: u64) -> Machine {
    let s = state(1, round)
        .locked(locked_round, v(value))
        .valid(locked_round, v(value), vec![]);
    Consensus::restore(config(), TestScheme, signer(3), s).expect("a sane signing state")
}

#[test]
fn pol_round_unlocks_a_lock_from_an_older_round() {
    let mut m = locked_machine(2, 0, 1);
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "L11, L21: resumed in round 2 (proposer 2)",
                event: start(1),
                expected: vec![schedule(1, 2, Propose)],
            },
            TestStep {
                desc: "L28: proposal with POL round 1 but no polka for it yet: wait",
                event: ev_proposal(signed_proposal(2, 1, 2, v(2), Some(1))),
                expected: vec![],
            },
            TestStep {
                desc: "prevote of round 1 for v2",
                event: ev_vote(prevote(0, 1, 1, Some(v(2)))),
                expected: vec![],
            },
            TestStep {
                desc: "prevote of round 1 for v2",
                event: ev_vote(prevote(1, 1, 1, Some(v(2)))),
                expected: vec![],
            },
            TestStep {
                desc: "L28: 2f+1 prevotes for v in round vr: ask for valid(v)",
                event: ev_vote(prevote(2, 1, 1, Some(v(2)))),
                expected: vec![verify(1, 2, v(2), 2)],
            },
            TestStep {
                desc: "L29-30: lockedRound 0 <= vr 1: prevote v even though locked on another",
                event: verified(1, v(2), true),
                expected: vec![
                    persist(state(1, 2).prevote(2, Some(v(2))).locked(0, v(1)).valid(
                        0,
                        v(1),
                        vec![],
                    )),
                    broadcast_vote(prevote(3, 1, 2, Some(v(2)))),
                ],
            },
        ],
    );
}

#[test]
fn lock_from_a_later_round_than_the_pol_round_holds() {
    let mut m = locked_machine(2, 1, 1);
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "L11, L21",
                event: start(1),
                expected: vec![schedule(1, 2, Propose)],
            },
            TestStep {
                desc: "polka of round 0 for v2",
                event: ev_vote(prevote(0, 1, 0, Some(v(2)))),
                expected: vec![],
            },
            TestStep {
                desc: "polka of round 0 for v2",
                event: ev_vote(prevote(1, 1, 0, Some(v(2)))),
                expected: vec![],
            },
            TestStep {
                desc: "polka of round 0 for v2",
                event: ev_vote(prevote(2, 1, 0, Some(v(2)))),
                expected: vec![],
            },
            TestStep {
                desc: "L28: proposal v2 with POL round 0 and its polka: ask for valid(v)",
                event: ev_proposal(signed_proposal(2, 1, 2, v(2), Some(0))),
                expected: vec![verify(1, 2, v(2), 2)],
            },
            TestStep {
                desc: "L31-32: locked on v1 in round 1 > vr 0: prevote nil",
                event: verified(1, v(2), true),
                expected: vec![
                    persist(
                        state(1, 2)
                            .prevote(2, None)
                            .locked(1, v(1))
                            .valid(1, v(1), vec![]),
                    ),
                    broadcast_vote(prevote(3, 1, 2, None)),
                ],
            },
        ],
    );

    // L29-30 with lockedValue = v: the locked value with an older POL round.
    let mut m = locked_machine(2, 1, 1);
    m.handle(start(1));
    for from in 0..3 {
        m.handle(ev_vote(prevote(from, 1, 0, Some(v(1)))));
    }
    assert_eq!(
        m.handle(ev_proposal(signed_proposal(2, 1, 2, v(1), Some(0)))),
        vec![verify(1, 2, v(1), 2)],
        "L28: proposal of the locked value with POL round 0"
    );
    assert_eq!(
        m.handle(verified(1, v(1), true)),
        vec![
            persist(
                state(1, 2)
                    .prevote(2, Some(v(1)))
                    .locked(1, v(1))
                    .valid(1, v(1), vec![])
            ),
            broadcast_vote(prevote(3, 1, 2, Some(v(1)))),
        ],
        "L29-30: lockedValue = v: prevote v"
    );
}

#[test]
fn lock_decides_the_prevote_on_a_fresh_proposal() {
    // L22-24: locked on v and v proposed without POL round: prevote v.
    let mut m = locked_machine(1, 0, 1);
    assert_eq!(m.handle(start(1)), vec![schedule(1, 1, Propose)]);
    assert_eq!(
        m.handle(ev_proposal(signed_proposal(1, 1, 1, v(1), None))),
        vec![verify(1, 1, v(1), 1)]
    );
    assert_eq!(
        m.handle(verified(1, v(1), true)),
        vec![
            persist(
                state(1, 1)
                    .prevote(1, Some(v(1)))
                    .locked(0, v(1))
                    .valid(0, v(1), vec![])
            ),
            broadcast_vote(prevote(3, 1, 1, Some(v(1)))),
        ],
        "L23-24: lockedValue = v"
    );

    // L22, L25-26: locked on v1, v2 proposed without POL round: prevote nil.
    let mut m = locked_machine(1, 0, 1);
    m.handle(start(1));
    m.handle(ev_proposal(signed_proposal(1, 1, 1, v(2), None)));
    assert_eq!(
        m.handle(verified(1, v(2), true)),
        vec![
            persist(
                state(1, 1)
                    .prevote(1, None)
                    .locked(0, v(1))
                    .valid(0, v(1), vec![])
            ),
            broadcast_vote(prevote(3, 1, 1, None)),
        ],
        "L25-26: locked on another value"
    );
}

#[test]
fn f_plus_one_messages_of_a_higher_round_skip_to_it() {
    let mut m = machine(1);
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "L11, L21",
                event: start(1),
                expected: vec![schedule(1, 0, Propose)],
            },
            TestStep {
                desc: "L55 needs f+1 (more than 1/3 of the power): one validator is not enough",
                event: ev_vote(prevote(2, 1, 5, None)),
                expected: vec![],
            },
            TestStep {
                desc: "L55-56 then L11, L14, L18: f+1 in round 5: StartRound(5), ours to propose",
                event: ev_vote(precommit(3, 1, 5, None)),
                expected: vec![schedule(1, 5, Propose), build(1, 5)],
            },
        ],
    );
    assert_eq!(m.round(), Some(5));
}

#[test]
fn decides_on_precommits_of_a_past_round() {
    let mut m = machine(1);
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "L11, L21",
                event: start(1),
                expected: vec![schedule(1, 0, Propose)],
            },
            TestStep {
                desc: "round 2 message",
                event: ev_vote(prevote(2, 1, 2, None)),
                expected: vec![],
            },
            TestStep {
                desc: "L55-56: f+1 in round 2: StartRound(2) (proposer 2)",
                event: ev_vote(prevote(3, 1, 2, None)),
                expected: vec![schedule(1, 2, Propose)],
            },
            TestStep {
                desc: "a proposal of past round 0 is kept (L49 looks at any round)",
                event: ev_proposal(signed_proposal(0, 1, 0, v(1), None)),
                expected: vec![],
            },
            TestStep {
                desc: "precommit of round 0",
                event: ev_vote(precommit(0, 1, 0, Some(v(1)))),
                expected: vec![],
            },
            TestStep {
                desc: "precommit of round 0",
                event: ev_vote(precommit(2, 1, 0, Some(v(1)))),
                expected: vec![],
            },
            TestStep {
                desc: "L49-50: proposal and 2f+1 precommits of round 0: decide once valid(v)",
                event: ev_vote(precommit(3, 1, 0, Some(v(1)))),
                expected: vec![verify(1, 0, v(1), 0)],
            },
            TestStep {
                desc: "L50-51: valid(v): decide in round 0 while in round 2",
                event: verified(1, v(1), true),
                expected: vec![decide(1, 0, v(1), &[0, 2, 3])],
            },
        ],
    );
}

#[test]
fn hostile_and_malformed_messages_are_dropped_or_reported() {
    let mut m = machine(1);
    let first = prevote(0, 1, 0, Some(v(1)));
    let second = prevote(0, 1, 0, None);
    let mut forged = prevote(2, 1, 0, Some(v(1)));
    forged.signature ^= 1;
    let mut forged_proposal = signed_proposal(0, 1, 0, v(1), None);
    forged_proposal.signature ^= 1;
    let proposal = signed_proposal(0, 1, 0, v(1), None);
    let other_proposal = signed_proposal(0, 1, 0, v(2), None);
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "L11, L21",
                event: start(1),
                expected: vec![schedule(1, 0, Propose)],
            },
            TestStep {
                desc: "a prevote counts",
                event: ev_vote(first.clone()),
                expected: vec![],
            },
            TestStep {
                desc: "the same vote again is a duplicate: ignored",
                event: ev_vote(first.clone()),
                expected: vec![],
            },
            TestStep {
                desc: "a different vote, same validator/round/step: evidence with both votes",
                event: ev_vote(second.clone()),
                expected: vec![Action::ReportEvidence(Evidence::DuplicateVote {
                    first: first.clone(),
                    second,
                })],
            },
            TestStep {
                desc: "evidence against a validator is reported once per round and step",
                event: ev_vote(prevote(0, 1, 0, Some(v(5)))),
                expected: vec![],
            },
            TestStep {
                desc: "a bad signature never counts",
                event: ev_vote(forged),
                expected: vec![],
            },
            TestStep {
                desc: "a signer outside the validator set never counts",
                event: ev_vote(prevote(9, 1, 0, Some(v(1)))),
                expected: vec![],
            },
            TestStep {
                desc: "a vote for another height (not the next one) is dropped",
                event: ev_vote(prevote(2, 7, 0, Some(v(1)))),
                expected: vec![],
            },
            TestStep {
                desc: "L22: a proposal from a validator that is not proposer(h, r) is dropped",
                event: ev_proposal(signed_proposal(2, 1, 0, v(1), None)),
                expected: vec![],
            },
            TestStep {
                desc: "L28: a POL round not below the round is malformed: dropped",
                event: ev_proposal(signed_proposal(0, 1, 0, v(1), Some(0))),
                expected: vec![],
            },
            TestStep {
                desc: "a proposal with a bad signature is dropped",
                event: ev_proposal(forged_proposal),
                expected: vec![],
            },
            TestStep {
                desc: "L22: the proposal counts; ask for valid(v)",
                event: ev_proposal(proposal.clone()),
                expected: vec![verify(1, 0, v(1), 0)],
            },
            TestStep {
                desc: "a second, different proposal of the proposer: evidence",
                event: ev_proposal(other_proposal.clone()),
                expected: vec![Action::ReportEvidence(Evidence::DuplicateProposal {
                    first: proposal,
                    second: other_proposal,
                })],
            },
            TestStep {
                desc: "a verification answer for another height is ignored",
                event: verified(2, v(1), true),
                expected: vec![],
            },
        ],
    );
}

#[test]
fn observer_counts_votes_and_decides_without_signing() {
    for mut m in [
        Consensus::new(config(), TestScheme, None),
        // A key outside the validator set makes an observer too.
        machine(9),
    ] {
        run_steps(
            &mut m,
            vec![
                TestStep {
                    desc: "L11, L21",
                    event: start(1),
                    expected: vec![schedule(1, 0, Propose)],
                },
                TestStep {
                    desc: "L22: ask for valid(v) (L49-50 needs it to decide)",
                    event: ev_proposal(signed_proposal(0, 1, 0, v(1), None)),
                    expected: vec![verify(1, 0, v(1), 0)],
                },
                TestStep {
                    desc: "L22-27: an observer moves to prevote without signing",
                    event: verified(1, v(1), true),
                    expected: vec![],
                },
                TestStep {
                    desc: "prevote",
                    event: ev_vote(prevote(0, 1, 0, Some(v(1)))),
                    expected: vec![],
                },
                TestStep {
                    desc: "prevote",
                    event: ev_vote(prevote(1, 1, 0, Some(v(1)))),
                    expected: vec![],
                },
                TestStep {
                    desc: "L34-35, L36-41: timeoutPrevote; no precommit is signed",
                    event: ev_vote(prevote(2, 1, 0, Some(v(1)))),
                    expected: vec![schedule(1, 0, Prevote)],
                },
                TestStep {
                    desc: "precommit",
                    event: ev_vote(precommit(0, 1, 0, Some(v(1)))),
                    expected: vec![],
                },
                TestStep {
                    desc: "precommit",
                    event: ev_vote(precommit(2, 1, 0, Some(v(1)))),
                    expected: vec![],
                },
                TestStep {
                    desc: "L49-51: the observer decides",
                    event: ev_vote(precommit(3, 1, 0, Some(v(1)))),
                    expected: vec![decide(1, 0, v(1), &[0, 2, 3])],
                },
            ],
        );
        assert!(!m.is_validator());
        let signed = m.signing_state();
        assert!(
            signed.last_proposal.is_none()
                && signed.last_prevote.is_none()
                && signed.last_precommit.is_none()
        );
    }
}

#[test]
fn next_height_messages_are_buffered_and_replayed() {
    let mut m = machine(1);
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "L11, L21",
                event: start(1),
                expected: vec![schedule(1, 0, Propose)],
            },
            TestStep {
                desc: "a message for height 2 is buffered",
                event: ev_vote(prevote(2, 2, 3, None)),
                expected: vec![],
            },
            TestStep {
                desc: "a message for height 2 is buffered",
                event: ev_vote(prevote(3, 2, 3, None)),
                expected: vec![],
            },
            TestStep {
                desc: "a message for height 3 is dropped",
                event: ev_vote(prevote(0, 3, 3, None)),
                expected: vec![],
            },
            TestStep {
                desc: "L52-54 (the node's call) then the replayed buffer: L55 to round 3",
                event: start(2),
                expected: vec![schedule(2, 0, Propose), schedule(2, 3, Propose)],
            },
            TestStep {
                desc: "starting a height at or below the current one is ignored",
                event: start(1),
                expected: vec![],
            },
        ],
    );
    assert_eq!((m.height(), m.round()), (Some(2), Some(3)));
}

#[test]
fn memory_stays_bounded_against_votes_for_many_rounds() {
    let mut m = machine(1);
    m.handle(start(1));
    // A hostile validator votes in rounds 1..=1000 (more than 1/3 would be
    // needed to move us, so it never does).
    for round in 1..=1000 {
        assert_eq!(m.handle(ev_vote(prevote(2, 1, round, None))), vec![]);
        assert_eq!(m.handle(ev_vote(precommit(2, 1, round, None))), vec![]);
    }
    let max = config().max_future_rounds;
    assert!(
        m.held_message_count() <= 2 * max,
        "held {} messages",
        m.held_message_count()
    );
    assert_eq!(m.round(), Some(0));
    // Its highest rounds are kept: a second validator there makes f+1.
    assert_eq!(
        m.handle(ev_vote(prevote(3, 1, 999, None))),
        vec![schedule(1, 999, Propose)],
        "L55 to a round the hostile validator still occupies"
    );

    // And forged messages cannot evict an honest validator's future rounds.
    let mut m = machine(1);
    m.handle(start(1));
    m.handle(ev_vote(prevote(2, 1, 7, None)));
    for round in 8..100 {
        let mut forged = prevote(2, 1, round, None);
        forged.signature ^= 1;
        m.handle(ev_vote(forged));
    }
    assert_eq!(
        m.handle(ev_vote(prevote(3, 1, 7, None))),
        vec![schedule(1, 7, Propose)]
    );
}

#[test]
fn equivocating_votes_for_a_proposed_value_count_for_that_value() {
    // Validator 0 prevotes v1 to us first, then (equivocating) v2. Others
    // may have counted its v2 prevote in a polka; so must we, or a later
    // proposal with that POL round could never be accepted here.
    let mut m = locked_machine(2, 0, 9);
    m.handle(start(1));
    m.handle(ev_vote(prevote(0, 1, 1, Some(v(1)))));
    m.handle(ev_proposal(signed_proposal(2, 1, 2, v(2), Some(1))));
    let evidence = m.handle(ev_vote(prevote(0, 1, 1, Some(v(2)))));
    assert!(matches!(
        evidence.as_slice(),
        [Action::ReportEvidence(Evidence::DuplicateVote { .. })]
    ));
    m.handle(ev_vote(prevote(1, 1, 1, Some(v(2)))));
    assert_eq!(
        m.handle(ev_vote(prevote(2, 1, 1, Some(v(2))))),
        vec![verify(1, 2, v(2), 2)],
        "L28: the polka for v2 in round 1 counts the equivocator's v2 prevote"
    );
}

#[test]
fn the_machine_can_live_in_a_tokio_task() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Machine>();
}

#[test]
fn catch_up_messages_carry_the_round_and_the_polka_of_the_valid_round() {
    let mut m = machine(1);
    m.handle(start(1));
    m.handle(ev_proposal(signed_proposal(0, 1, 0, v(1), None)));
    m.handle(verified(1, v(1), true));
    m.handle(ev_vote(prevote(0, 1, 0, Some(v(1)))));
    m.handle(ev_vote(prevote(2, 1, 0, Some(v(1)))));
    assert_eq!(m.valid().map(|r| r.round), Some(0));
    // Move to round 2 (f+1 there), so round 0 is neither current nor previous.
    m.handle(ev_vote(prevote(2, 1, 2, None)));
    m.handle(ev_vote(prevote(3, 1, 2, None)));
    assert_eq!(m.round(), Some(2));
    let messages = m.catch_up_messages();
    for from in [0, 1, 2] {
        let polka_vote = tally_consensus::Message::Vote(prevote(from, 1, 0, Some(v(1))));
        assert!(messages.contains(&polka_vote), "missing {polka_vote:?}");
    }
    assert!(messages.contains(&tally_consensus::Message::Vote(prevote(3, 1, 2, None))));
}

/// An "invalid" answer holds for its round only: a block refused for now
/// (ahead of our clock, say) is asked about again in the next round, so the
/// value the others decided can still be decided here.
#[test]
fn an_invalid_answer_is_asked_again_in_the_next_round() {
    let mut m = machine(1);
    let p = signed_proposal(0, 1, 0, v(1), None);
    m.handle(start(1));
    assert_eq!(m.handle(ev_proposal(p)), vec![verify(1, 0, v(1), 0)]);
    m.handle(verified(1, v(1), false));
    // The others precommit v in round 0: a quorum, but not valid here.
    for from in [0, 2, 3] {
        let actions = m.handle(ev_vote(precommit(from, 1, 0, Some(v(1)))));
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Decide(_))),
            "decided a value it found invalid: {actions:?}"
        );
    }
    let actions = m.handle(timeout(1, 0, Precommit));
    assert!(
        actions.contains(&verify(1, 0, v(1), 0)),
        "round 1 asks about v again: {actions:?}"
    );
    let actions = m.handle(verified(1, v(1), true));
    assert!(
        actions.contains(&decide(1, 0, v(1), &[0, 2, 3])),
        "decides once v is valid: {actions:?}"
    );
}

/// An equivocating proposer's second value is kept: when the others decide
/// it, this node can decide it too instead of waiting for block sync. A
/// third distinct proposal is dropped.
#[test]
fn the_value_decided_may_be_an_equivocators_second_proposal() {
    let mut m = machine(3);
    m.handle(start(1));
    assert_eq!(
        m.handle(ev_proposal(signed_proposal(0, 1, 0, v(1), None))),
        vec![verify(1, 0, v(1), 0)]
    );
    let actions = m.handle(ev_proposal(signed_proposal(0, 1, 0, v(2), None)));
    assert!(
        matches!(
            actions.as_slice(),
            [Action::ReportEvidence(Evidence::DuplicateProposal { .. })]
        ),
        "the second proposal is evidence: {actions:?}"
    );
    assert!(
        m.handle(ev_proposal(signed_proposal(0, 1, 0, v(3), None)))
            .iter()
            .all(|a| !matches!(a, Action::ReportEvidence(_))),
        "reported once"
    );
    m.handle(verified(1, v(1), true));
    let mut asked = Vec::new();
    for from in [0, 1, 2] {
        asked.extend(m.handle(ev_vote(precommit(from, 1, 0, Some(v(2))))));
    }
    assert!(
        asked.contains(&verify(1, 0, v(2), 0)),
        "the decided value is checked: {asked:?}"
    );
    assert!(
        !asked.contains(&verify(1, 0, v(3), 0)),
        "a third proposal was not kept: {asked:?}"
    );
    let actions = m.handle(verified(1, v(2), true));
    assert!(
        actions.contains(&decide(1, 0, v(2), &[0, 1, 2])),
        "decides the second value: {actions:?}"
    );

    // Precommits for the third value decide nothing: it was never kept.
    let mut m = machine(3);
    m.handle(start(1));
    for value in [1, 2, 3] {
        m.handle(ev_proposal(signed_proposal(0, 1, 0, v(value), None)));
    }
    let mut actions = Vec::new();
    for from in [0, 1, 2] {
        actions.extend(m.handle(ev_vote(precommit(from, 1, 0, Some(v(3))))));
    }
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Decide(_) | Action::VerifyBlock { .. })),
        "{actions:?}"
    );
}
