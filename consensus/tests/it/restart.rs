//! Restart safety: a machine restored from its persisted signing state never
//! signs anything that conflicts with what it signed before the crash.

use tally_consensus::{Action, Consensus, MAX_ROUND, RestoreError, TimeoutKind::*};

use crate::sim::scheme::TestScheme;
use crate::support::*;

fn restored(me: u32, s: State) -> Machine {
    Consensus::restore(config(), TestScheme, signer(me), s).expect("a sane signing state")
}

#[test]
fn restart_repeats_the_recorded_prevote_instead_of_signing_another() {
    let mut m = restored(1, state(1, 0).prevote(0, Some(v(1))));
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "restart: the recorded prevote is sent again (it may have been lost), \
                       then L11, L21",
                event: start(1),
                expected: vec![
                    broadcast_vote(prevote(1, 1, 0, Some(v(1)))),
                    schedule(1, 0, Propose),
                ],
            },
            TestStep {
                desc: "L57-60 wants a nil prevote, but v was signed in this round: repeat v, \
                       no new persist",
                event: timeout(1, 0, Propose),
                expected: vec![broadcast_vote(prevote(1, 1, 0, Some(v(1))))],
            },
        ],
    );
}

#[test]
fn restart_after_a_nil_precommit_never_precommits_a_value_nor_locks_it() {
    let mut m = restored(1, state(1, 0).prevote(0, Some(v(1))).precommit(0, None));
    run_steps(
        &mut m,
        vec![
            TestStep {
                desc: "restart: both recorded votes are sent again",
                event: start(1),
                expected: vec![
                    broadcast_vote(prevote(1, 1, 0, Some(v(1)))),
                    broadcast_vote(precommit(1, 1, 0, None)),
                    schedule(1, 0, Propose),
                ],
            },
            TestStep {
                desc: "L22",
                event: ev_proposal(signed_proposal(0, 1, 0, v(1), None)),
                expected: vec![verify(1, 0, v(1), 0)],
            },
            TestStep {
                desc: "L22-24: the same prevote as before the crash",
                event: verified(1, v(1), true),
                expected: vec![broadcast_vote(prevote(1, 1, 0, Some(v(1))))],
            },
            TestStep {
                desc: "prevote",
                event: ev_vote(prevote(0, 1, 0, Some(v(1)))),
                expected: vec![],
            },
            TestStep {
                desc: "L36-41 wants to precommit v, but nil was precommitted: repeat nil",
                event: ev_vote(prevote(2, 1, 0, Some(v(1)))),
                expected: vec![
                    schedule(1, 0, Prevote),
                    broadcast_vote(precommit(1, 1, 0, None)),
                ],
            },
        ],
    );
    assert_eq!(m.locked(), None, "no lock on a value it did not precommit");
}

#[test]
fn restart_at_a_lower_height_signs_nothing() {
    for me in [0, 1] {
        let mut m = restored(me, state(5, 0).prevote(0, Some(v(1))));
        assert_eq!(
            m.handle(start(4)),
            vec![schedule(4, 0, Propose)],
            "no block is built and nothing re-sent below the persisted height"
        );
        assert_eq!(m.handle(timeout(4, 0, Propose)), vec![]);
        assert_eq!(m.signing_state().height, 5, "the persisted height is kept");
    }
}

#[test]
fn restarted_proposer_repeats_its_proposal_and_builds_nothing() {
    let mut m = restored(
        0,
        state(1, 0).proposal(0, v(7), None).prevote(0, Some(v(7))),
    );
    let actions = m.handle(start(1));
    assert_eq!(
        actions,
        vec![
            broadcast_vote(prevote(0, 1, 0, Some(v(7)))),
            schedule(1, 0, Propose),
            broadcast_proposal(signed_proposal(0, 1, 0, v(7), None)),
            // The block may not have survived the crash: verified again.
            verify(1, 0, v(7), 0),
        ]
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::BuildBlock { .. }))
    );
}

#[test]
fn restart_in_a_later_round_resumes_there_with_the_lock() {
    let mut m = restored(
        3,
        state(1, 2)
            .prevote(2, None)
            .precommit(1, Some(v(1)))
            .locked(1, v(1))
            .valid(1, v(1), vec![]),
    );
    assert_eq!(
        m.handle(start(1)),
        vec![
            broadcast_vote(prevote(3, 1, 2, None)),
            broadcast_vote(precommit(3, 1, 1, Some(v(1)))),
            schedule(1, 2, Propose),
        ]
    );
    assert_eq!(m.round(), Some(2));
    assert_eq!(m.locked().map(|l| (l.round, l.value)), Some((1, v(1))));
    // Round 3 is validator 3's: it re-proposes its valid value (L15-16).
    m.handle(ev_vote(precommit(0, 1, 2, None)));
    m.handle(ev_vote(precommit(1, 1, 2, None)));
    m.handle(ev_vote(precommit(2, 1, 2, None)));
    let actions = m.handle(timeout(1, 2, Precommit));
    assert!(
        actions.contains(&broadcast_proposal(signed_proposal(3, 1, 3, v(1), Some(1)))),
        "{actions:?}"
    );
}

#[test]
fn a_persisted_round_above_the_maximum_is_refused() {
    for round in [MAX_ROUND + 1, u32::MAX] {
        let restored = Consensus::restore(config(), TestScheme, signer(1), state(1, round));
        assert_eq!(
            restored.map(|_| ()),
            Err(RestoreError::RoundTooHigh { round }),
            "round {round}"
        );
    }
    assert!(Consensus::restore(config(), TestScheme, signer(1), state(1, MAX_ROUND)).is_ok());
}

#[test]
fn timeouts_never_move_past_the_maximum_round() {
    // What `restore` accepts is what the machine can reach, and no further.
    let mut m = restored(1, state(1, MAX_ROUND));
    m.handle(start(1));
    assert_eq!(m.round(), Some(MAX_ROUND));
    for from in [0, 2, 3] {
        m.handle(ev_vote(precommit(from, 1, MAX_ROUND, None)));
    }
    assert_eq!(m.handle(timeout(1, MAX_ROUND, Precommit)), vec![]);
    assert_eq!(m.round(), Some(MAX_ROUND));
}
