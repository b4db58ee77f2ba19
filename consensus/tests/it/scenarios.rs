//! The simulation scenarios of the issue at n = 4, 7 and 10.
//!
//! Each test runs its scenario for a number of seeds (the CI default below,
//! or `TALLY_SIM_SEEDS=<n>`), or only `TALLY_SIM_SEED=<s>`. A failure prints
//! the seed and the command that replays it.

use crate::sim::rng::{Rng, fnv};
use crate::sim::run_and_check;
use crate::sim::scenario::{self, Scenario};

/// The seeds to run: `TALLY_SIM_SEED` alone, else `TALLY_SIM_SEEDS` (or
/// `default`) seeds from 0.
pub fn seeds(default: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("TALLY_SIM_SEED") {
        return vec![seed.trim().parse().expect("TALLY_SIM_SEED is a u64")];
    }
    let count = std::env::var("TALLY_SIM_SEEDS")
        .map(|s| s.trim().parse().expect("TALLY_SIM_SEEDS is a u64"))
        .unwrap_or(default);
    (0..count).collect()
}

/// Builds the scenario of `seed` and the simulator's own seed, both derived
/// from the test's name so that scenarios explore different randomness.
pub fn scenario_for(
    test: &str,
    build: fn(usize, &mut Rng) -> Scenario,
    n: usize,
    seed: u64,
) -> (Scenario, u64) {
    let mut rng = Rng::new(seed ^ fnv(test));
    let scenario = build(n, &mut rng);
    (scenario, rng.next_u64())
}

fn run_seeds(test: &str, build: fn(usize, &mut Rng) -> Scenario, n: usize, default: u64) {
    let seeds = seeds(default);
    // Slowest catch-up after the network became stable, and the most rounds.
    let mut worst_catch_up = 0;
    let mut worst_seed = 0;
    let mut events = 0;
    let (mut fetched, mut missing) = (0, 0);
    // Runs with an equivocating validator, and how many of them reported it.
    let (mut equivocating, mut reported) = (0, 0);
    for &seed in &seeds {
        let (scenario, sim_seed) = scenario_for(test, build, n, seed);
        let equivocates = scenario.nodes.iter().any(|node| {
            node.behavior
                .is_some_and(|b| b.equivocates_proposals() || b.double_votes())
        });
        match run_and_check(scenario, sim_seed) {
            Ok(trace) => {
                if equivocates {
                    equivocating += 1;
                    reported += usize::from(!trace.evidence.is_empty());
                }
                let finished = trace.reached_target_at.values().max().copied().unwrap_or(0);
                let catch_up = finished.saturating_sub(trace.stable_from);
                if catch_up >= worst_catch_up {
                    worst_catch_up = catch_up;
                    worst_seed = seed;
                }
                events += trace.events;
                fetched += trace.bodies_fetched;
                missing += trace.bodies_missing;
            }
            Err(report) => panic!(
                "{report}\nreplay: TALLY_SIM_SEED={seed} cargo test -p tally-consensus \
                 --test it -- --exact {test}"
            ),
        }
    }
    if std::env::var_os("TALLY_SIM_STATS").is_some() {
        eprintln!(
            "{test}: {} seeds, {events} events, slowest catch-up after stability \
             {worst_catch_up} ms (seed {worst_seed}), evidence in {reported} of \
             {equivocating} runs with equivocators, {fetched} bodies fetched \
             ({missing} not found in time)",
            seeds.len()
        );
    }
    // Equivocation that is never reported would mean detection is broken.
    if equivocating >= 10 {
        assert!(
            reported > 0,
            "{test}: no evidence in {equivocating} runs with equivocators"
        );
    }
}

macro_rules! scenario_tests {
    ($($name:ident => $build:path, $n:expr, $seeds:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run_seeds(concat!("scenarios::", stringify!($name)), $build, $n, $seeds);
            }
        )*
    };
}

// Seeds per test in CI; the totals are listed in the crate's report.
scenario_tests! {
    no_faults_n4 => scenario::no_faults, 4, 100;
    no_faults_n7 => scenario::no_faults, 7, 60;
    no_faults_n10 => scenario::no_faults, 10, 40;
    f_crashed_n4 => scenario::f_crashed, 4, 100;
    f_crashed_n7 => scenario::f_crashed, 7, 60;
    f_crashed_n10 => scenario::f_crashed, 10, 40;
    partition_even_n4 => scenario::partition_even, 4, 100;
    partition_even_n7 => scenario::partition_even, 7, 60;
    partition_even_n10 => scenario::partition_even, 10, 40;
    partition_minority_n4 => scenario::partition_minority, 4, 100;
    partition_minority_n7 => scenario::partition_minority, 7, 60;
    partition_minority_n10 => scenario::partition_minority, 10, 40;
    lossy_links_n4 => scenario::lossy_links, 4, 100;
    lossy_links_n7 => scenario::lossy_links, 7, 60;
    lossy_links_n10 => scenario::lossy_links, 10, 40;
    f_byzantine_n4 => scenario::f_byzantine, 4, 100;
    f_byzantine_n7 => scenario::f_byzantine, 7, 60;
    f_byzantine_n10 => scenario::f_byzantine, 10, 40;
    byzantine_proposers_n4 => scenario::byzantine_proposers, 4, 100;
    byzantine_proposers_n7 => scenario::byzantine_proposers, 7, 60;
    byzantine_proposers_n10 => scenario::byzantine_proposers, 10, 40;
    cluster_restart_n4 => scenario::cluster_restart, 4, 100;
    cluster_restart_n7 => scenario::cluster_restart, 7, 60;
    cluster_restart_n10 => scenario::cluster_restart, 10, 40;
    chaos_n4 => scenario::chaos, 4, 100;
    chaos_n7 => scenario::chaos, 7, 60;
    chaos_n10 => scenario::chaos, 10, 40;
    set_changes_n4 => scenario::set_changes, 4, 100;
    set_changes_n7 => scenario::set_changes, 7, 60;
    set_changes_n10 => scenario::set_changes, 10, 40;
}

/// The set-change scenario does what it says: in its runs, validators that
/// joined sign certificates of the heights after they joined and never
/// before, and removed ones stop signing (every certificate is checked
/// against its height's set by the checker; this checks that the sets do
/// change under it).
#[test]
fn set_changes_move_the_signers() {
    let (mut joined_signed, mut changes) = (0, 0);
    for seed in 0..40 {
        let (scenario, sim_seed) =
            scenario_for("scenarios::set_changes_n4", scenario::set_changes, 4, seed);
        changes += scenario.set_changes.len();
        let sets = scenario.set_changes.clone();
        let trace = run_and_check(scenario, sim_seed).unwrap_or_else(|e| panic!("{e}"));
        for d in &trace.decisions {
            let members: Vec<usize> = sets
                .iter()
                .rev()
                .find(|(from, _)| *from <= d.height)
                .map_or_else(
                    || (0..4).collect(),
                    |(_, m)| m.iter().map(|(k, _)| *k).collect(),
                );
            for (signer, _) in &d.certificate.signatures {
                let key = *signer as usize;
                assert!(
                    members.contains(&key),
                    "seed {seed}: key {key} signed height {} outside its set",
                    d.height
                );
                joined_signed += usize::from(key >= 4);
            }
        }
    }
    assert!(changes >= 40, "only {changes} set changes in 40 runs");
    assert!(joined_signed > 0, "no joiner ever signed a certificate");
}

/// Twins: each validator's key in turn runs on two honest nodes, and the
/// network goes through every sequence of two splits of the five nodes
/// (15 x 15), one per phase of about a round, then heals. Agreement must
/// hold and every node must reach the goal after the heal. Three phases
/// would be 3,375 runs per key: `TALLY_SIM_TWINS_PHASES=3` runs them.
#[test]
fn twins_n4() {
    let phases: usize = std::env::var("TALLY_SIM_TWINS_PHASES")
        .map(|s| {
            s.trim()
                .parse()
                .expect("TALLY_SIM_TWINS_PHASES is a number")
        })
        .unwrap_or(2);
    let splits = scenario::two_way_splits(5);
    let (mut runs, mut equivocated) = (0, 0);
    for twin in 0..4 {
        let mut schedule = vec![0usize; phases];
        loop {
            let sides: Vec<Vec<usize>> = schedule.iter().map(|&i| splits[i].clone()).collect();
            let s = scenario::twins(4, twin, &sides, 250);
            let seed = fnv(&format!("twins {twin} {schedule:?}"));
            match run_and_check(s, seed) {
                Ok(trace) => equivocated += usize::from(!trace.evidence.is_empty()),
                Err(report) => panic!("twin {twin}, splits {sides:?}:\n{report}"),
            }
            runs += 1;
            // Next schedule, as a counter in base 15.
            let Some(i) = schedule.iter().position(|&x| x + 1 < splits.len()) else {
                break;
            };
            schedule[i] += 1;
            schedule[..i].iter_mut().for_each(|x| *x = 0);
        }
    }
    assert_eq!(runs, 4 * splits.len().pow(phases as u32));
    // The twins must have signed conflicting messages that a node caught,
    // or the splits never put them on different sides.
    eprintln!("twins: {runs} runs, equivocation reported in {equivocated}");
    assert!(
        equivocated * 10 > runs,
        "twins equivocated in only {equivocated} of {runs} runs"
    );
}
