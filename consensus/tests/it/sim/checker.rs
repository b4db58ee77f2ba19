//! What every run must satisfy, checked on the run's trace. Kept apart from
//! the engine so that it can be fed forged traces: a checker that cannot fail
//! proves nothing.

use std::collections::{BTreeMap, BTreeSet};

use sha3::{Digest, Keccak256};
use tally_consensus::{ValidatorSet, verify_certificate};

use super::scheme::{Addr, TCert, TEvidence, TestScheme, Val};

/// Content of a signed message, for the double-signing check.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Content {
    Proposal(Val, Option<u32>),
    Vote(Option<Val>),
}

/// (key, height, round, step 0/1/2).
pub type SignKey = (usize, u64, u32, u8);

#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub time: u64,
    pub node: usize,
    pub height: u64,
    pub round: u32,
    pub value: Val,
    pub certificate: TCert,
    pub via_sync: bool,
}

/// Everything a run did that the invariants talk about.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub chain_id: u64,
    /// `validator_sets[h - 1]` is the set of height `h`.
    pub validator_sets: Vec<ValidatorSet<Addr>>,
    pub decisions: Vec<DecisionRecord>,
    /// (key, height, round, step 0/1/2) -> distinct contents signed by
    /// correct nodes, with a node that signed each.
    pub signed: BTreeMap<SignKey, Vec<(Content, usize)>>,
    /// Broadcasts not covered by the persisted signing state at the time.
    pub persist_violations: Vec<String>,
    pub evidence: Vec<(usize, TEvidence)>,
    /// Values that appeared in any proposal.
    pub proposed: BTreeSet<Val>,
    /// The validity oracle: valid values.
    pub valid: BTreeSet<Val>,
    /// Values a correct node built or was told are valid.
    pub verified_by_correct: BTreeSet<Val>,
    /// Nodes whose behaviour is Byzantine (excluded from agreement).
    pub byzantine_nodes: BTreeSet<usize>,
    /// Keys that a Byzantine node (or more than one node) holds.
    pub faulty_keys: BTreeSet<usize>,
    /// Nodes that must reach the target height (correct, not crash-stopped).
    pub must_finish: BTreeSet<usize>,
    /// The height every node in `must_finish` had to reach, and when each
    /// did.
    pub goal_height: u64,
    pub reached_target_at: BTreeMap<usize, u64>,
    pub final_heights: Vec<u64>,
    pub final_states: Vec<String>,
    pub stable_from: u64,
    pub end_time: u64,
    pub events: u64,
    pub event_limit_hit: bool,
    pub sync_failures: Vec<String>,
    /// Verify requests that had to fetch the body, and those answered
    /// "invalid" because no peer sent it in time.
    pub bodies_fetched: u64,
    pub bodies_missing: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Agreement {
        height: u64,
        first: (usize, Val),
        second: (usize, Val),
    },
    Validity {
        node: usize,
        height: u64,
        value: Val,
    },
    Certificate {
        node: usize,
        height: u64,
        error: String,
    },
    DoubleSign {
        key: usize,
        height: u64,
        round: u32,
        step: u8,
        contents: Vec<(Content, usize)>,
    },
    PersistOrder(String),
    BadEvidence {
        reporter: usize,
    },
    CorrectValidatorAccused {
        reporter: usize,
        key: usize,
    },
    Liveness {
        node: usize,
        height: u64,
        deadline: u64,
    },
    SyncFailure(String),
    EventLimit,
}

impl Trace {
    /// Hash of the decision log: the same seed must give the same hash.
    pub fn decision_log_hash(&self) -> String {
        let mut h = Keccak256::new();
        for d in &self.decisions {
            h.update(d.time.to_be_bytes());
            h.update((d.node as u64).to_be_bytes());
            h.update(d.height.to_be_bytes());
            h.update(d.round.to_be_bytes());
            h.update(d.value.0);
            h.update([u8::from(d.via_sync)]);
        }
        hex::encode(h.finalize())
    }
}

/// Checks the invariants of a finished run.
pub fn check(
    trace: &Trace,
    target_height: u64,
    liveness_bound_ms: u64,
    check_liveness: bool,
) -> Vec<Violation> {
    let mut out = Vec::new();

    // Agreement: no two correct nodes decide differently at one height.
    let mut by_height: BTreeMap<u64, (usize, Val)> = BTreeMap::new();
    for d in &trace.decisions {
        if trace.byzantine_nodes.contains(&d.node) {
            continue;
        }
        match by_height.get(&d.height) {
            None => {
                by_height.insert(d.height, (d.node, d.value));
            }
            Some(&(node, value)) if value != d.value => out.push(Violation::Agreement {
                height: d.height,
                first: (node, value),
                second: (d.node, d.value),
            }),
            Some(_) => {}
        }
    }

    for d in &trace.decisions {
        if trace.byzantine_nodes.contains(&d.node) {
            continue;
        }
        // Validity: proposed, valid, and checked valid by a correct node.
        if !trace.proposed.contains(&d.value)
            || !trace.valid.contains(&d.value)
            || !trace.verified_by_correct.contains(&d.value)
        {
            out.push(Violation::Validity {
                node: d.node,
                height: d.height,
                value: d.value,
            });
        }
        // Every decision carries a certificate anyone can check.
        let Some(set) = usize::try_from(d.height)
            .ok()
            .and_then(|h| h.checked_sub(1))
            .and_then(|i| trace.validator_sets.get(i))
        else {
            out.push(Violation::Certificate {
                node: d.node,
                height: d.height,
                error: "no validator set for the height".into(),
            });
            continue;
        };
        let result = verify_certificate(
            &TestScheme,
            trace.chain_id,
            set,
            d.height,
            &d.value,
            &d.certificate,
        );
        if let Err(e) = result {
            out.push(Violation::Certificate {
                node: d.node,
                height: d.height,
                error: e.to_string(),
            });
        } else if d.certificate.round != d.round {
            out.push(Violation::Certificate {
                node: d.node,
                height: d.height,
                error: "certificate round differs from the decision's".into(),
            });
        }
    }

    // No correct key signs two different things for one height/round/step.
    for (&(key, height, round, step), contents) in &trace.signed {
        if contents.len() > 1 && !trace.faulty_keys.contains(&key) {
            out.push(Violation::DoubleSign {
                key,
                height,
                round,
                step,
                contents: contents.clone(),
            });
        }
    }
    // (Also for the keys the negative controls share: reported separately so
    // that a test can ask for them.)
    for (&(key, height, round, step), contents) in &trace.signed {
        if contents.len() > 1 && trace.faulty_keys.contains(&key) {
            let nodes: BTreeSet<usize> = contents.iter().map(|(_, n)| *n).collect();
            if nodes.len() == 1 {
                // One node signing twice is always a bug, whatever its key.
                out.push(Violation::DoubleSign {
                    key,
                    height,
                    round,
                    step,
                    contents: contents.clone(),
                });
            }
        }
    }

    for p in &trace.persist_violations {
        out.push(Violation::PersistOrder(p.clone()));
    }
    for s in &trace.sync_failures {
        out.push(Violation::SyncFailure(s.clone()));
    }

    // Evidence is genuine and never names a correct validator.
    for (reporter, evidence) in &trace.evidence {
        if !evidence.verify(&TestScheme, trace.chain_id) {
            out.push(Violation::BadEvidence {
                reporter: *reporter,
            });
        }
        let key = *evidence.offender() as usize;
        if !trace.faulty_keys.contains(&key) {
            out.push(Violation::CorrectValidatorAccused {
                reporter: *reporter,
                key,
            });
        }
    }

    if trace.event_limit_hit {
        out.push(Violation::EventLimit);
    }

    // Liveness: every correct live node reaches the target height within
    // the bound after the network is stable.
    if check_liveness {
        let deadline = trace.stable_from + liveness_bound_ms;
        for &node in &trace.must_finish {
            let ok = trace
                .reached_target_at
                .get(&node)
                .is_some_and(|t| *t <= deadline);
            if !ok {
                out.push(Violation::Liveness {
                    node,
                    height: trace.final_heights.get(node).copied().unwrap_or(0),
                    deadline,
                });
            }
        }
        let _ = target_height;
    }
    out
}
