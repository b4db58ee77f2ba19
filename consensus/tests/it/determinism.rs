//! The same seed gives the same run: the decision log hash (and the number
//! of events) repeat exactly, for every scenario.

use crate::scenarios::{scenario_for, seeds};
use crate::sim::Sim;
use crate::sim::rng::Rng;
use crate::sim::scenario::{self, Scenario};

type Builder = fn(usize, &mut Rng) -> Scenario;

#[test]
fn same_seed_same_decision_log() {
    let builders: [(&str, Builder); 8] = [
        ("no_faults", scenario::no_faults),
        ("f_crashed", scenario::f_crashed),
        ("partition_even", scenario::partition_even),
        ("partition_minority", scenario::partition_minority),
        ("lossy_links", scenario::lossy_links),
        ("f_byzantine", scenario::f_byzantine),
        ("cluster_restart", scenario::cluster_restart),
        ("chaos", scenario::chaos),
    ];
    let mut hashes = std::collections::BTreeSet::new();
    for (name, build) in builders {
        for seed in seeds(3) {
            let test = format!("determinism::{name}");
            let (a, sim_seed) = scenario_for(&test, build, 7, seed);
            let (b, _) = scenario_for(&test, build, 7, seed);
            let first = Sim::new(a, sim_seed).run();
            let second = Sim::new(b, sim_seed).run();
            assert!(
                !first.decisions.is_empty(),
                "{name} seed {seed} decided nothing"
            );
            assert_eq!(
                (first.decision_log_hash(), first.events),
                (second.decision_log_hash(), second.events),
                "{name} seed {seed} is not deterministic"
            );
            hashes.insert(first.decision_log_hash());
        }
    }
    assert!(
        hashes.len() > 1,
        "every run gave the same log: the hash sees nothing"
    );
}
