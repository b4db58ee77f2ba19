//! The canonical bytes a validator signs.
//!
//! Every signature in the protocol is over one of two fixed-layout encodings,
//! all integers big-endian:
//!
//! ```text
//! vote:     "tally/vote/v1"     | chain_id u64 | height u64 | round u32 | step u8
//!           | 0x00 (nil)  or  0x01 | len u32 | value bytes
//! proposal: "tally/proposal/v1" | chain_id u64 | height u64 | round u32 | step u8 = 0
//!           | 0x00 (no POL round)  or  0x01 | pol_round u32
//!           | len u32 | value bytes
//! ```
//!
//! `step` is 0 for a proposal, 1 for a prevote and 2 for a precommit. The
//! domain tags keep a vote signature from ever verifying as a proposal (or as
//! any other Tally message, whose tags differ), the chain id keeps it from
//! replaying on another chain, and the length prefix keeps the encoding
//! injective for values of any length. The node signs `keccak256` of these
//! bytes; the machine and [`crate::verify_certificate`] only ever hand these
//! bytes to the [`crate::SigningScheme`].

use crate::types::{Height, Round, VoteType};

/// Domain tag of vote sign bytes.
pub const VOTE_DOMAIN: &[u8] = b"tally/vote/v1";
/// Domain tag of proposal sign bytes.
pub const PROPOSAL_DOMAIN: &[u8] = b"tally/proposal/v1";

/// The step byte of a proposal.
pub const STEP_PROPOSE: u8 = 0;
/// The step byte of a prevote.
pub const STEP_PREVOTE: u8 = 1;
/// The step byte of a precommit.
pub const STEP_PRECOMMIT: u8 = 2;

fn step_byte(vote_type: VoteType) -> u8 {
    match vote_type {
        VoteType::Prevote => STEP_PREVOTE,
        VoteType::Precommit => STEP_PRECOMMIT,
    }
}

fn push_value(out: &mut Vec<u8>, value: &[u8]) {
    // Values are block ids (32 bytes in the node); a value past u32::MAX bytes
    // cannot be gossiped, so saturating keeps this total without a panic.
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// Sign bytes of a prevote or precommit for `value` (`None` = nil).
pub fn vote_sign_bytes(
    chain_id: u64,
    height: Height,
    round: Round,
    vote_type: VoteType,
    value: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(VOTE_DOMAIN.len() + 22 + value.map_or(0, |v| v.len()));
    out.extend_from_slice(VOTE_DOMAIN);
    out.extend_from_slice(&chain_id.to_be_bytes());
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&round.to_be_bytes());
    out.push(step_byte(vote_type));
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            push_value(&mut out, v);
        }
    }
    out
}

/// Sign bytes of a proposal of `value` in `round` with POL round `pol_round`.
pub fn proposal_sign_bytes(
    chain_id: u64,
    height: Height,
    round: Round,
    value: &[u8],
    pol_round: Option<Round>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(PROPOSAL_DOMAIN.len() + 30 + value.len());
    out.extend_from_slice(PROPOSAL_DOMAIN);
    out.extend_from_slice(&chain_id.to_be_bytes());
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&round.to_be_bytes());
    out.push(STEP_PROPOSE);
    match pol_round {
        None => out.push(0),
        Some(r) => {
            out.push(1);
            out.extend_from_slice(&r.to_be_bytes());
        }
    }
    push_value(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_layout_is_fixed() {
        let bytes = vote_sign_bytes(7, 9, 2, VoteType::Precommit, Some(&[0xaa, 0xbb]));
        let mut expected = b"tally/vote/v1".to_vec();
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(&9u64.to_be_bytes());
        expected.extend_from_slice(&2u32.to_be_bytes());
        expected.extend_from_slice(&[2, 1, 0, 0, 0, 2, 0xaa, 0xbb]);
        assert_eq!(bytes, expected);

        let nil = vote_sign_bytes(7, 9, 2, VoteType::Prevote, None);
        assert_eq!(nil.len(), VOTE_DOMAIN.len() + 8 + 8 + 4 + 1 + 1);
        assert_eq!(&nil[nil.len() - 2..], &[1, 0]);
    }

    #[test]
    fn proposal_layout_is_fixed() {
        let bytes = proposal_sign_bytes(1, 2, 3, &[9], Some(1));
        let mut expected = b"tally/proposal/v1".to_vec();
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&3u32.to_be_bytes());
        expected.extend_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 9]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn every_field_changes_the_bytes() {
        let base = vote_sign_bytes(1, 1, 0, VoteType::Prevote, Some(b"v"));
        for other in [
            vote_sign_bytes(2, 1, 0, VoteType::Prevote, Some(b"v")),
            vote_sign_bytes(1, 2, 0, VoteType::Prevote, Some(b"v")),
            vote_sign_bytes(1, 1, 1, VoteType::Prevote, Some(b"v")),
            vote_sign_bytes(1, 1, 0, VoteType::Precommit, Some(b"v")),
            vote_sign_bytes(1, 1, 0, VoteType::Prevote, Some(b"w")),
            vote_sign_bytes(1, 1, 0, VoteType::Prevote, None),
            proposal_sign_bytes(1, 1, 0, b"v", None),
        ] {
            assert_ne!(base, other);
        }
    }
}
