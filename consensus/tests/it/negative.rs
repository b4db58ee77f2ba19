//! Negative controls: runs and traces that break the invariants, which the
//! checker must catch. A checker that cannot fail proves nothing.

use std::collections::BTreeSet;

use tally_consensus::{Evidence, Mutation};

use crate::scenarios::{scenario_for, seeds};
use crate::sim::Sim;
use crate::sim::checker::{Content, DecisionRecord, Trace, Violation, check};
use crate::sim::scenario::{self, NodeSpec, Partition, Scenario};
use crate::sim::scheme::{Addr, Val};
use crate::support::*;

/// Validators 0..4 (f = 1). Nodes in `side_a` and `side_b` never hear each
/// other; each key in `shared` is held by one node on each side.
fn split_brain(shared: &[usize]) -> Scenario {
    let mut s = Scenario::base("split_brain", 4);
    let mut nodes = Vec::new();
    let mut side_a = Vec::new();
    let mut side_b = Vec::new();
    for key in 0..4 {
        let on_a = key % 2 == 0 || shared.contains(&key);
        let on_b = key % 2 == 1 || shared.contains(&key);
        if on_a {
            side_a.push(nodes.len());
            nodes.push(NodeSpec {
                key: Some(key),
                behavior: None,
            });
        }
        if on_b {
            side_b.push(nodes.len());
            nodes.push(NodeSpec {
                key: Some(key),
                behavior: None,
            });
        }
    }
    s.nodes = nodes;
    s.net.partitions.push(Partition {
        groups: vec![side_a, side_b],
        from_ms: 0,
        until_ms: u64::MAX,
    });
    s.net.gst_ms = u64::MAX;
    s.check_liveness = false;
    s.max_time_ms = 20_000;
    s
}

#[test]
fn two_validators_sharing_keys_break_agreement_and_the_checker_sees_it() {
    // Keys 0 and 1 each run on both sides: 2 > f Byzantine validators. Each
    // side holds 3 of 4 keys, a quorum, and decides on its own.
    for seed in seeds(10) {
        let trace = Sim::new(split_brain(&[0, 1]), seed).run();
        let violations = check(&trace, 5, 0, false);
        assert!(
            violations
                .iter()
                .any(|v| matches!(v, Violation::Agreement { .. })),
            "seed {seed}: the checker missed the split brain: {violations:?}, heights {:?}",
            trace.final_heights
        );
    }
}

#[test]
fn one_shared_key_is_within_f_and_agreement_holds() {
    // The control's control: with one shared key (f = 1) only the side with
    // keys {0, 1, 3} has a quorum; it decides, the other side cannot, and
    // nothing is violated.
    for seed in seeds(10) {
        let trace = Sim::new(split_brain(&[0]), seed).run();
        assert!(!trace.decisions.is_empty(), "seed {seed}");
        assert_eq!(check(&trace, 5, 0, false), vec![], "seed {seed}");
    }
}

#[test]
fn restarting_without_the_signing_state_double_signs_and_the_checker_sees_it() {
    // Whole-cluster restarts that forget what was signed: some seed makes a
    // validator sign a different vote for a round it already voted in.
    let mut found = None;
    for seed in 0..200 {
        let (mut s, sim_seed) =
            scenario_for("negative::amnesia", scenario::cluster_restart, 4, seed);
        s.amnesia = true;
        s.check_liveness = false;
        s.max_time_ms = 10_000;
        let trace = Sim::new(s, sim_seed).run();
        let violations = check(&trace, 5, 0, false);
        if violations
            .iter()
            .any(|v| matches!(v, Violation::DoubleSign { .. }))
        {
            found = Some(seed);
            break;
        }
    }
    assert!(
        found.is_some(),
        "no amnesia run double-signed: the checker is blind"
    );
    if std::env::var_os("TALLY_SIM_STATS").is_some() {
        eprintln!("amnesia: first double-signing seed {found:?}");
    }
}

fn decision(node: usize, height: u64, value: Val, signers: &[Addr]) -> DecisionRecord {
    let TAction::Decide(certificate) = decide(height, 0, value, signers) else {
        unreachable!("decide builds a Decide action")
    };
    DecisionRecord {
        time: 1,
        node,
        height,
        round: 0,
        value,
        certificate,
        via_sync: false,
    }
}

use crate::sim::scheme::TAction;

fn good_trace() -> Trace {
    let mut t = Trace {
        chain_id: CHAIN,
        validator_sets: vec![validators(4)],
        ..Trace::default()
    };
    t.proposed.insert(v(1));
    t.valid.insert(v(1));
    t.verified_by_correct.insert(v(1));
    for node in 0..4 {
        t.decisions.push(decision(node, 1, v(1), &[0, 1, 2]));
        t.must_finish.insert(node);
        t.reached_target_at.insert(node, 10);
    }
    t
}

#[test]
fn checker_accepts_a_good_trace() {
    assert_eq!(check(&good_trace(), 1, 100, true), vec![]);
}

#[test]
fn checker_catches_forged_traces() {
    let mut t = good_trace();
    t.proposed.insert(v(2));
    t.valid.insert(v(2));
    t.verified_by_correct.insert(v(2));
    t.decisions.push(decision(3, 1, v(2), &[1, 2, 3]));
    assert!(matches!(
        check(&t, 1, 100, true).as_slice(),
        [Violation::Agreement { height: 1, .. }]
    ));

    let mut t = good_trace();
    t.byzantine_nodes = BTreeSet::from([3]);
    t.decisions.push(decision(3, 1, v(2), &[1, 2, 3]));
    assert_eq!(
        check(&t, 1, 100, true).len(),
        0,
        "a Byzantine node's own log does not count"
    );

    let mut t = good_trace();
    t.verified_by_correct.clear();
    assert!(
        check(&t, 1, 100, true)
            .iter()
            .all(|v| matches!(v, Violation::Validity { .. }))
    );
    assert_eq!(check(&t, 1, 100, true).len(), 4);

    let mut t = good_trace();
    t.decisions[0].certificate.signatures.pop();
    assert!(matches!(
        check(&t, 1, 100, true).as_slice(),
        [Violation::Certificate { node: 0, .. }]
    ));

    let mut t = good_trace();
    t.decisions[1].round = 3;
    assert!(matches!(
        check(&t, 1, 100, true).as_slice(),
        [Violation::Certificate { node: 1, .. }]
    ));

    let mut t = good_trace();
    t.signed.insert(
        (2, 1, 0, 1),
        vec![(Content::Vote(Some(v(1))), 2), (Content::Vote(None), 2)],
    );
    assert!(matches!(
        check(&t, 1, 100, true).as_slice(),
        [Violation::DoubleSign { key: 2, .. }]
    ));

    let mut t = good_trace();
    t.reached_target_at.remove(&2);
    assert!(matches!(
        check(&t, 1, 100, true).as_slice(),
        [Violation::Liveness { node: 2, .. }]
    ));
    let mut t = good_trace();
    t.reached_target_at.insert(2, 1_000);
    assert!(matches!(
        check(&t, 1, 100, true).as_slice(),
        [Violation::Liveness { node: 2, .. }]
    ));

    let mut t = good_trace();
    t.evidence.push((
        0,
        Evidence::DuplicateVote {
            first: prevote(1, 1, 0, Some(v(1))),
            second: prevote(1, 1, 0, Some(v(1))),
        },
    ));
    let found = check(&t, 1, 100, true);
    assert!(found.contains(&Violation::BadEvidence { reporter: 0 }));
    assert!(found.contains(&Violation::CorrectValidatorAccused {
        reporter: 0,
        key: 1
    }));

    let mut t = good_trace();
    t.persist_violations.push("broadcast before persist".into());
    assert!(matches!(
        check(&t, 1, 100, true).as_slice(),
        [Violation::PersistOrder(_)]
    ));
}

/// Mutation tests: the machine built with a deliberate bug (a test-only
/// switch, `Config::mutation`), or the simulated node with one, must be
/// caught by the simulator's checker within a stated number of seeds of the
/// ordinary scenario families at n = 4. Returns the family and seed that
/// caught it, and the first line of the report.
fn caught(
    bug: impl Fn(&mut Scenario),
    families: &[(&str, Family)],
    max_seeds: u64,
) -> Option<(String, u64, String)> {
    for seed in 0..max_seeds {
        for (name, build) in families {
            let test = format!("mutation::{name}");
            let (mut s, sim_seed) = scenario_for(&test, *build, 4, seed);
            bug(&mut s);
            if let Err(report) = crate::sim::run_and_check(s, sim_seed) {
                let first = report.lines().next().unwrap_or_default().to_string();
                return Some((name.to_string(), seed, first));
            }
        }
    }
    None
}

type Family = fn(usize, &mut crate::sim::rng::Rng) -> Scenario;

fn assert_caught(
    what: &str,
    bug: impl Fn(&mut Scenario),
    families: &[(&str, Family)],
    max_seeds: u64,
) {
    match caught(bug, families, max_seeds) {
        Some((family, seed, report)) => {
            eprintln!("{what} caught by {family} at seed {seed}: {report}")
        }
        None => panic!("{what} survived {max_seeds} seeds of every family"),
    }
}

fn mutate(mutation: Mutation) -> impl Fn(&mut Scenario) {
    move |s| s.mutation = Some(mutation)
}

const BYZANTINE: [(&str, Family); 2] = [
    ("byzantine_proposers", scenario::byzantine_proposers),
    ("chaos", scenario::chaos),
];

#[test]
fn the_simulator_catches_a_machine_that_sends_before_it_persists() {
    assert_caught(
        "persist after sending",
        mutate(Mutation::PersistAfterSending),
        &[("cluster_restart", scenario::cluster_restart)],
        20,
    );
}

#[test]
fn the_simulator_catches_a_machine_that_ignores_its_lock() {
    assert_caught(
        "no lock check",
        mutate(Mutation::IgnoreLock),
        &BYZANTINE,
        5000,
    );
}

#[test]
fn the_simulator_catches_a_valid_round_accepted_without_its_polka() {
    assert_caught(
        "valid round without polka",
        mutate(Mutation::ValidRoundWithoutPolka),
        &BYZANTINE,
        5000,
    );
}

#[test]
fn the_simulator_catches_votes_counted_by_head() {
    assert_caught(
        "votes by head",
        mutate(Mutation::CountByHead),
        &BYZANTINE,
        300,
    );
}

/// The liveness bug of a lost lock (issue 17, item 1): nodes that keep their
/// signing state but not the bodies it refers to halt after a whole-cluster
/// restart with a value locked and undecided.
#[test]
fn the_simulator_catches_nodes_that_forget_locked_bodies() {
    assert_caught(
        "bodies not persisted",
        |s| s.forget_bodies = true,
        &[("cluster_restart", scenario::cluster_restart)],
        300,
    );
}
