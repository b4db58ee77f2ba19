//! Validator sets with voting power, thresholds, and weighted proposer
//! rotation by proposer priority (as CometBFT does it).
//!
//! Rotation: every validator holds a priority. One step adds each validator's
//! power to its priority, picks the highest priority (ties go to the smaller
//! address) as proposer, and subtracts the total power from the winner. Over
//! any window of `k * total_power` steps a validator proposes within ±2 of
//! `k * power` times. The proposer of round `r` of a height is the winner of
//! step `r + 1` from that height's set, and the set of height `h + 1` is the
//! set of height `h` advanced by one step ([`ValidatorSet::next_height`]), so
//! the rotation moves across heights and rounds and every node computes the
//! same proposer from the same set.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Upper bound on the total voting power, so that priorities never overflow
/// (the same bound CometBFT uses).
pub const MAX_TOTAL_VOTING_POWER: u64 = (i64::MAX / 8) as u64;

/// Priorities are rescaled when their spread exceeds this many times the total
/// power, which keeps a new or long-absent validator from waiting forever.
const PRIORITY_WINDOW_FACTOR: i128 = 2;

/// A validator and its voting power.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Validator<A> {
    /// The validator's address.
    pub address: A,
    /// Its voting power; never zero in a set.
    pub power: u64,
}

/// Why a validator set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorSetError {
    /// No validators.
    #[error("validator set is empty")]
    Empty,
    /// A validator with zero power.
    #[error("validator at index {index} has zero voting power")]
    ZeroPower {
        /// Position in the list as given.
        index: usize,
    },
    /// The same address twice.
    #[error("validator at index {index} repeats an address")]
    DuplicateAddress {
        /// Position in the list as given.
        index: usize,
    },
    /// Total power past [`MAX_TOTAL_VOTING_POWER`].
    #[error("total voting power exceeds {MAX_TOTAL_VOTING_POWER}")]
    TooMuchPower,
    /// A given priority is out of range.
    #[error("validator at index {index} has a priority out of range")]
    PriorityOutOfRange {
        /// Position in the list as given.
        index: usize,
    },
    /// A decoded set that [`ValidatorSet::with_priorities`] would not have
    /// built: priorities not one per validator, validators not sorted by
    /// address, or a total power that is not their sum.
    #[error("encoded validator set is not canonical: {reason}")]
    NotCanonical {
        /// What is wrong.
        reason: &'static str,
    },
}

/// A validator set: sorted by address, with proposer priorities.
///
/// Decoding (serde or borsh) goes through the checks of
/// [`ValidatorSet::with_priorities`] and rejects any encoding it would not
/// have produced, so a set read from disk or the network cannot carry a wrong
/// total power (a wrong quorum), an unsorted list or mismatched priorities.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, Serialize, Deserialize)]
#[serde(
    try_from = "RawValidatorSet<A>",
    bound(deserialize = "A: Deserialize<'de> + Ord + Clone")
)]
pub struct ValidatorSet<A> {
    validators: Vec<Validator<A>>,
    priorities: Vec<i64>,
    total_power: u64,
}

/// The fields of a [`ValidatorSet`] as encoded, before they are checked. Same
/// field order as `ValidatorSet`, so the encodings are identical.
#[derive(BorshDeserialize, Deserialize)]
struct RawValidatorSet<A> {
    validators: Vec<Validator<A>>,
    priorities: Vec<i64>,
    total_power: u64,
}

impl<A: Ord + Clone> TryFrom<RawValidatorSet<A>> for ValidatorSet<A> {
    type Error = ValidatorSetError;

    fn try_from(raw: RawValidatorSet<A>) -> Result<Self, Self::Error> {
        if raw.priorities.len() != raw.validators.len() {
            return Err(ValidatorSetError::NotCanonical {
                reason: "not one priority per validator",
            });
        }
        let pairs = raw
            .validators
            .iter()
            .cloned()
            .zip(raw.priorities.iter().copied())
            .collect();
        let set = Self::with_priorities(pairs)?;
        if set.validators != raw.validators {
            return Err(ValidatorSetError::NotCanonical {
                reason: "validators not sorted by address",
            });
        }
        if set.total_power != raw.total_power {
            return Err(ValidatorSetError::NotCanonical {
                reason: "total power is not the sum of the powers",
            });
        }
        Ok(set)
    }
}

impl<A: BorshDeserialize + Ord + Clone> BorshDeserialize for ValidatorSet<A> {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let raw = RawValidatorSet::deserialize_reader(reader)?;
        Self::try_from(raw)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    }
}

impl<A: Ord + Clone> ValidatorSet<A> {
    /// A set with all priorities zero (a genesis set, or a changed set whose
    /// rotation restarts).
    pub fn new(validators: Vec<Validator<A>>) -> Result<Self, ValidatorSetError> {
        let with_zero = validators.into_iter().map(|v| (v, 0)).collect();
        Self::with_priorities(with_zero)
    }

    /// A set with the given priorities (as persisted by the node from a
    /// previous [`ValidatorSet::priorities`]). Priorities must lie within
    /// `±2 * MAX_TOTAL_VOTING_POWER`.
    pub fn with_priorities(
        validators: Vec<(Validator<A>, i64)>,
    ) -> Result<Self, ValidatorSetError> {
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        let limit = (2 * MAX_TOTAL_VOTING_POWER) as i64;
        let mut total: u64 = 0;
        for (index, (v, p)) in validators.iter().enumerate() {
            if v.power == 0 {
                return Err(ValidatorSetError::ZeroPower { index });
            }
            if p.unsigned_abs() > limit.unsigned_abs() {
                return Err(ValidatorSetError::PriorityOutOfRange { index });
            }
            total = total
                .checked_add(v.power)
                .filter(|t| *t <= MAX_TOTAL_VOTING_POWER)
                .ok_or(ValidatorSetError::TooMuchPower)?;
        }
        let mut indexed: Vec<(usize, (Validator<A>, i64))> =
            validators.into_iter().enumerate().collect();
        indexed.sort_by(|a, b| a.1.0.address.cmp(&b.1.0.address));
        for pair in indexed.windows(2) {
            if pair[0].1.0.address == pair[1].1.0.address {
                return Err(ValidatorSetError::DuplicateAddress {
                    index: pair[0].0.max(pair[1].0),
                });
            }
        }
        let (validators, priorities) = indexed.into_iter().map(|(_, vp)| vp).unzip();
        Ok(Self {
            validators,
            priorities,
            total_power: total,
        })
    }

    /// Total voting power.
    pub fn total_power(&self) -> u64 {
        self.total_power
    }

    /// Number of validators.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Always false for a constructed set; here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// The validators, sorted by address.
    pub fn validators(&self) -> &[Validator<A>] {
        &self.validators
    }

    /// Proposer priorities, in the order of [`ValidatorSet::validators`].
    pub fn priorities(&self) -> &[i64] {
        &self.priorities
    }

    /// Position of `address` in the set.
    pub fn index_of(&self, address: &A) -> Option<usize> {
        self.validators
            .binary_search_by(|v| v.address.cmp(address))
            .ok()
    }

    /// Voting power of `address`, if it is a validator.
    pub fn power_of(&self, address: &A) -> Option<u64> {
        self.index_of(address).map(|i| self.validators[i].power)
    }

    /// Whether `address` is in the set.
    pub fn contains(&self, address: &A) -> bool {
        self.index_of(address).is_some()
    }

    /// More than 2/3 of the total power (the paper's 2f+1).
    pub fn is_quorum(&self, power: u64) -> bool {
        3 * u128::from(power) > 2 * u128::from(self.total_power)
    }

    /// More than 1/3 of the total power (the paper's f+1): at least one
    /// correct validator is among them.
    pub fn is_one_third_plus(&self, power: u64) -> bool {
        3 * u128::from(power) > u128::from(self.total_power)
    }

    /// The smallest power that is a quorum.
    pub fn quorum_power(&self) -> u64 {
        // floor(2T/3) + 1, computed without overflow.
        let t = u128::from(self.total_power);
        u64::try_from(2 * t / 3 + 1).unwrap_or(u64::MAX)
    }

    /// The proposer of round `round` of the height this set belongs to.
    /// Costs `O((round + 1) * len)`; the machine caches the sequence.
    pub fn proposer(&self, round: u32) -> &A {
        let mut rotation = self.clone();
        let mut index = 0;
        for _ in 0..=round {
            index = rotation.rotate();
        }
        &self.validators[index].address
    }

    /// The set for the next height: this one advanced by one rotation step.
    pub fn next_height(&self) -> Self {
        let mut next = self.clone();
        next.rotate();
        next
    }

    /// Advances this set by `steps` heights in place: the same as calling
    /// [`ValidatorSet::next_height`] `steps` times. The rotation is a
    /// function of the priorities alone, so it cycles; once a cycle is seen
    /// (Brent's method, within about twice its length) the rest of the
    /// steps are taken modulo its length. A node at height 10^8 thus starts
    /// in the time of one cycle, not of the chain's age.
    pub fn advance(&mut self, mut steps: u64) {
        let mut saved = self.priorities.clone();
        let (mut window, mut since_saved) = (1u64, 0u64);
        while steps > 0 {
            self.rotate();
            steps -= 1;
            since_saved += 1;
            if self.priorities == saved {
                // From here on the state repeats every `since_saved` steps.
                for _ in 0..steps % since_saved {
                    self.rotate();
                }
                return;
            }
            if since_saved == window {
                saved.clone_from(&self.priorities);
                window = window.saturating_mul(2);
                since_saved = 0;
            }
        }
    }

    /// One rotation step; returns the index of the chosen proposer.
    pub(crate) fn rotate(&mut self) -> usize {
        self.rescale_priorities();
        self.center_priorities();
        let total = self.total_power as i64;
        // Bounded by the rescale above: |p| <= 2T, power <= T, T <= i64::MAX / 8.
        for (p, v) in self.priorities.iter_mut().zip(&self.validators) {
            *p = p.saturating_add(v.power as i64);
        }
        // Highest priority wins; ties go to the smaller address (lower index).
        let mut best = 0;
        for i in 1..self.priorities.len() {
            if self.priorities[i] > self.priorities[best] {
                best = i;
            }
        }
        self.priorities[best] = self.priorities[best].saturating_sub(total);
        best
    }

    fn rescale_priorities(&mut self) {
        let (Some(&max), Some(&min)) = (self.priorities.iter().max(), self.priorities.iter().min())
        else {
            return;
        };
        let diff = i128::from(max) - i128::from(min);
        let window = PRIORITY_WINDOW_FACTOR * i128::from(self.total_power);
        if diff > window {
            // ceil(diff / window) >= 2, so the spread drops to at most the window.
            let ratio = (diff + window - 1) / window;
            for p in &mut self.priorities {
                *p = (i128::from(*p) / ratio) as i64;
            }
        }
    }

    fn center_priorities(&mut self) {
        let n = self.priorities.len() as i128;
        if n == 0 {
            return;
        }
        let sum: i128 = self.priorities.iter().map(|p| i128::from(*p)).sum();
        let avg = sum / n;
        if avg != 0 {
            for p in &mut self.priorities {
                *p = (i128::from(*p) - avg) as i64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(powers: &[u64]) -> ValidatorSet<u32> {
        ValidatorSet::new(
            powers
                .iter()
                .enumerate()
                .map(|(i, p)| Validator {
                    address: i as u32,
                    power: *p,
                })
                .collect(),
        )
        .expect("valid set")
    }

    #[test]
    fn thresholds() {
        let s = set(&[1, 1, 1, 1]);
        assert!(!s.is_quorum(2));
        assert!(s.is_quorum(3));
        assert!(!s.is_one_third_plus(1));
        assert!(s.is_one_third_plus(2));
        assert_eq!(s.quorum_power(), 3);
        let s = set(&[1, 1, 1]);
        assert!(!s.is_quorum(2));
        assert!(s.is_quorum(3));
        assert_eq!(s.quorum_power(), 3);
        let s = set(&[10, 10, 10, 10, 10, 10, 10]);
        assert_eq!(s.quorum_power(), 47);
        assert!(s.is_quorum(47) && !s.is_quorum(46));
    }

    #[test]
    fn rejects_bad_sets() {
        assert_eq!(
            ValidatorSet::<u32>::new(vec![]),
            Err(ValidatorSetError::Empty)
        );
        let zero = vec![Validator {
            address: 1,
            power: 0,
        }];
        assert_eq!(
            ValidatorSet::new(zero),
            Err(ValidatorSetError::ZeroPower { index: 0 })
        );
        let dup = vec![
            Validator {
                address: 1,
                power: 1,
            },
            Validator {
                address: 2,
                power: 1,
            },
            Validator {
                address: 1,
                power: 1,
            },
        ];
        assert_eq!(
            ValidatorSet::new(dup),
            Err(ValidatorSetError::DuplicateAddress { index: 2 })
        );
        let big = vec![
            Validator {
                address: 1,
                power: MAX_TOTAL_VOTING_POWER,
            },
            Validator {
                address: 2,
                power: 1,
            },
        ];
        assert_eq!(ValidatorSet::new(big), Err(ValidatorSetError::TooMuchPower));
    }

    /// The borsh encoding of a set's fields, whatever they are.
    fn encode(validators: &[(u32, u64)], priorities: &[i64], total_power: u64) -> Vec<u8> {
        let validators: Vec<Validator<u32>> = validators
            .iter()
            .map(|&(address, power)| Validator { address, power })
            .collect();
        borsh::to_vec(&(validators, priorities.to_vec(), total_power)).expect("encodes")
    }

    fn decode(bytes: &[u8]) -> Result<ValidatorSet<u32>, String> {
        borsh::from_slice::<ValidatorSet<u32>>(bytes).map_err(|e| e.to_string())
    }

    #[test]
    fn decoding_goes_through_the_checks() {
        let good = ValidatorSet::with_priorities(vec![
            (
                Validator {
                    address: 1,
                    power: 5,
                },
                -3,
            ),
            (
                Validator {
                    address: 2,
                    power: 3,
                },
                3,
            ),
        ])
        .expect("valid set");
        let bytes = borsh::to_vec(&good).expect("encodes");
        assert_eq!(bytes, encode(&[(1, 5), (2, 3)], &[-3, 3], 8));
        assert_eq!(decode(&bytes), Ok(good));

        for (bytes, why) in [
            (encode(&[(1, 5), (2, 3)], &[0, 0], 3), "wrong total power"),
            (encode(&[(2, 3), (1, 5)], &[0, 0], 8), "not sorted"),
            (encode(&[(1, 5), (1, 3)], &[0, 0], 8), "duplicate address"),
            (encode(&[], &[], 0), "empty"),
            (encode(&[(1, 5), (2, 3)], &[0], 8), "fewer priorities"),
            (encode(&[(1, 5)], &[0, 0], 5), "more priorities"),
            (encode(&[(1, 0)], &[0], 0), "zero power"),
            (encode(&[(1, 5)], &[i64::MAX], 5), "priority out of range"),
        ] {
            assert!(decode(&bytes).is_err(), "{why}: decoded");
        }

        // The serde path shares the same conversion.
        let raw = RawValidatorSet {
            validators: vec![Validator {
                address: 1u32,
                power: 5,
            }],
            priorities: vec![0],
            total_power: 4,
        };
        assert_eq!(
            ValidatorSet::try_from(raw),
            Err(ValidatorSetError::NotCanonical {
                reason: "total power is not the sum of the powers"
            })
        );
    }

    #[test]
    fn equal_power_rotates_round_robin() {
        let s = set(&[1, 1, 1, 1]);
        let proposers: Vec<u32> = (0..8).map(|r| *s.proposer(r)).collect();
        assert_eq!(proposers, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        // The next height starts where round 1 of this height would.
        assert_eq!(s.next_height().proposer(0), s.proposer(1));
    }

    #[test]
    fn advancing_equals_stepping_one_height_at_a_time() {
        for powers in [
            &[1, 1, 1, 1][..],
            &[5, 3, 1, 1],
            &[100, 1],
            &[33, 34, 33],
            &[7],
            &[1_000_000, 999_999, 3, 1],
        ] {
            let genesis = set(powers);
            let mut stepped = genesis.clone();
            for steps in [0u64, 1, 2, 3, 7, 64, 1_000, 5_003] {
                let mut advanced = genesis.clone();
                advanced.advance(steps);
                let mut expected = genesis.clone();
                for _ in 0..steps {
                    expected = expected.next_height();
                }
                assert_eq!(advanced, expected, "powers {powers:?}, {steps} steps");
            }
            if genesis.total_power() > 1_000 {
                continue;
            }
            // A long way (cycles of at most the total power) in pieces and
            // in one go agree.
            let mut long = genesis.clone();
            long.advance(1_000_000_007);
            for _ in 0..7 {
                stepped.advance(142_857_143);
            }
            stepped.advance(6);
            assert_eq!(long, stepped, "powers {powers:?}");
        }
    }

    #[test]
    fn weighted_rotation_is_proportional() {
        let s = set(&[5, 3, 1, 1]);
        let mut counts = [0u32; 4];
        for r in 0..100 {
            counts[*s.proposer(r) as usize] += 1;
        }
        assert_eq!(counts, [50, 30, 10, 10]);
    }
}
