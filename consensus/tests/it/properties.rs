//! Property tests: rotation fairness, sign-bytes injectivity, no panic on
//! hostile input, and no conflicting signature across random crashes.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tally_consensus::{
    Action, CommitCertificate, Consensus, Event, Validator, ValidatorSet, VoteType,
    verify_certificate, vote_sign_bytes,
};

use crate::sim::checker::Content;
use crate::sim::scheme::{Addr, TAction, TEvent, TestScheme};
use crate::support::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Over k * total rounds each validator proposes k * power times, give or
    /// take 2 (priorities stay within a window of twice the total power).
    #[test]
    fn rotation_is_proportional_to_power(
        powers in prop::collection::vec(1u64..40, 1..8),
        k in 1u64..4,
    ) {
        let set = ValidatorSet::new(
            powers
                .iter()
                .enumerate()
                .map(|(i, p)| Validator { address: i as Addr, power: *p })
                .collect(),
        )
        .expect("valid set");
        let total: u64 = powers.iter().sum();
        let mut counts = vec![0u64; powers.len()];
        // Height h + 1 starts where round 1 of height h would: walking heights
        // walks the rotation.
        let mut s = set.clone();
        for _ in 0..k * total {
            counts[*s.proposer(0) as usize] += 1;
            s = s.next_height();
        }
        for (i, p) in powers.iter().enumerate() {
            prop_assert!(counts[i].abs_diff(k * p) <= 2, "{counts:?} for {powers:?}");
        }
        prop_assert_eq!(s.proposer(0), set.proposer((k * total) as u32));
    }

    /// Different votes never share sign bytes.
    #[test]
    fn vote_sign_bytes_are_injective(
        a in (any::<u64>(), any::<u64>(), any::<u32>(), any::<bool>(), prop::option::of(prop::collection::vec(any::<u8>(), 0..40))),
        b in (any::<u64>(), any::<u64>(), any::<u32>(), any::<bool>(), prop::option::of(prop::collection::vec(any::<u8>(), 0..40))),
    ) {
        let bytes = |x: &(u64, u64, u32, bool, Option<Vec<u8>>)| {
            let t = if x.3 { VoteType::Precommit } else { VoteType::Prevote };
            vote_sign_bytes(x.0, x.1, x.2, t, x.4.as_deref())
        };
        prop_assert_eq!(a == b, bytes(&a) == bytes(&b));
    }

    /// Junk certificates are rejected, never a panic.
    #[test]
    fn junk_certificates_are_rejected(
        height in 0u64..4,
        round in 0u32..4,
        value in 0u64..3,
        signatures in prop::collection::vec((0u32..6, any::<u64>()), 0..8),
    ) {
        let c = CommitCertificate { height, round, value: v(value), signatures };
        prop_assert!(verify_certificate(&TestScheme, CHAIN, &validators(4), height, &v(value), &c).is_err());
    }

    /// Arbitrary, mostly hostile input: no panic, and memory stays bounded.
    #[test]
    fn hostile_input_never_panics(
        ops in prop::collection::vec((0u8..9, 0u32..6, any::<u32>(), 0u64..4, any::<bool>()), 1..300),
    ) {
        let mut m = machine(1);
        m.handle(start(1));
        for (kind, from, raw_round, value, flag) in ops {
            // Mostly small rounds, sometimes huge ones.
            let round = if raw_round % 16 == 0 { raw_round } else { raw_round % 8 };
            let h = m.height().unwrap_or(1);
            let val = if value == 0 { None } else { Some(v(value)) };
            let event: TEvent = match kind {
                0 => ev_vote(prevote(from, h, round, val)),
                1 => ev_vote(precommit(from, h, round, val)),
                2 => ev_proposal(signed_proposal(from, h, round, v(value), flag.then_some(round / 2))),
                3 => {
                    let mut forged = prevote(from, h, round, val);
                    forged.signature ^= 1;
                    ev_vote(forged)
                }
                4 => timeout(h, round, [tally_consensus::TimeoutKind::Propose, tally_consensus::TimeoutKind::Prevote, tally_consensus::TimeoutKind::Precommit][value as usize % 3]),
                5 => verified(h, v(value), flag),
                6 => Event::BlockBuilt { height: h, round, value: v(value) },
                7 => ev_vote(prevote(from, h + u64::from(flag), round, val)),
                _ => Event::StartHeight { height: h + 1, validators: validators(4) },
            };
            m.handle(event);
        }
        prop_assert!(m.held_message_count() < 10_000);
    }
}

/// What a validator broadcast, by (height, round, step).
type Signed3 = BTreeMap<(u64, u32, u8), Content>;

fn record(actions: &[TAction], persisted: &mut State, signed: &mut Signed3) -> Result<(), String> {
    for a in actions {
        let (key, content) = match a {
            Action::PersistSigningState(s) => {
                *persisted = s.clone();
                continue;
            }
            Action::BroadcastProposal(p) => {
                let m = &p.message;
                (
                    (m.height, m.round, 0),
                    Content::Proposal(m.value, m.pol_round),
                )
            }
            Action::BroadcastVote(v) => {
                let m = &v.message;
                let step = if m.vote_type == VoteType::Prevote {
                    1
                } else {
                    2
                };
                ((m.height, m.round, step), Content::Vote(m.value))
            }
            _ => continue,
        };
        // Persist before broadcast: what goes out is already on disk.
        let covered = persisted.height > key.0
            || (persisted.height == key.0 && {
                let rounds = match &content {
                    Content::Proposal(..) => persisted.last_proposal.as_ref().map(|r| r.round),
                    Content::Vote(_) if key.2 == 1 => {
                        persisted.last_prevote.as_ref().map(|r| r.round)
                    }
                    Content::Vote(_) => persisted.last_precommit.as_ref().map(|r| r.round),
                };
                rounds.is_some_and(|r| r >= key.1)
            });
        if !covered {
            return Err(format!("{a:?} not covered by {persisted:?}"));
        }
        match signed.get(&key) {
            Some(previous) if *previous != content => {
                return Err(format!(
                    "double sign at {key:?}: {previous:?} then {content:?}"
                ));
            }
            _ => {
                signed.insert(key, content);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A validator fed random messages and timeouts, crashing at random
    /// points (also between persisting and broadcasting) and restarting from
    /// what it persisted, never signs two different things for one
    /// height/round/step, and never broadcasts what it has not persisted.
    #[test]
    fn crashes_never_cause_conflicting_signatures(
        me in 0u32..4,
        ops in prop::collection::vec((0u8..10, 0u32..4, 0u64..4, any::<bool>(), 0usize..4), 1..250),
    ) {
        let mut persisted = State::empty();
        let mut signed = Signed3::new();
        let mut m = machine(me);
        let mut height = 1;
        let first = m.handle(start(height));
        record(&first, &mut persisted, &mut signed).map_err(TestCaseError::fail)?;
        let mut crash_after: Option<usize> = None;
        for (kind, from, value, flag, cut) in ops {
            let round = m.round().unwrap_or(0);
            let from = if from == me { (from + 1) % 4 } else { from };
            let val = if value == 0 { None } else { Some(v(value)) };
            let r = if flag { round } else { round.saturating_sub(1) };
            let event: TEvent = match kind {
                0 | 1 => ev_vote(prevote(from, height, r, val)),
                2 => ev_vote(precommit(from, height, r, val)),
                3 => {
                    let proposer = validators(4).proposer(round).to_owned();
                    if proposer == me {
                        continue;
                    }
                    let pol = (flag && round > 0).then(|| round - 1);
                    ev_proposal(signed_proposal(proposer, height, round, v(value.max(1)), pol))
                }
                4 => timeout(height, round, [
                    tally_consensus::TimeoutKind::Propose,
                    tally_consensus::TimeoutKind::Prevote,
                    tally_consensus::TimeoutKind::Precommit,
                ][cut % 3]),
                5 => verified(height, v(value.max(1)), flag),
                6 => Event::BlockBuilt { height, round, value: v(value.max(1)) },
                7 => {
                    // Crash within the next action list, after `cut` actions.
                    crash_after = Some(cut);
                    continue;
                }
                8 if m.decision().is_some() => {
                    height += 1;
                    start(height)
                }
                _ => ev_vote(precommit(from, height, round + 1, val)),
            };
            let actions = m.handle(event);
            match crash_after.take() {
                Some(cut) => {
                    let done = cut.min(actions.len());
                    record(&actions[..done], &mut persisted, &mut signed)
                        .map_err(TestCaseError::fail)?;
                    m = Consensus::restore(config(), TestScheme, signer(me), persisted.clone())
                        .expect("a persisted signing state is sane");
                    let resumed = m.handle(start(height));
                    record(&resumed, &mut persisted, &mut signed).map_err(TestCaseError::fail)?;
                }
                None => record(&actions, &mut persisted, &mut signed).map_err(TestCaseError::fail)?,
            }
        }
    }
}
