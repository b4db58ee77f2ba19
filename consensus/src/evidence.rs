//! Proof that a validator signed two different messages for the same
//! height, round and step.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::scheme::SigningScheme;
use crate::types::{SignedProposal, SignedVote, ValueId};

/// Two conflicting signed messages of one validator. Either one alone is a
/// valid message; together they prove misbehaviour to anyone with the
/// validator's address.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub enum Evidence<A, V, Sig> {
    /// Two different prevotes, or two different precommits, in one round.
    DuplicateVote {
        /// The vote received first.
        first: SignedVote<A, V, Sig>,
        /// The conflicting vote.
        second: SignedVote<A, V, Sig>,
    },
    /// Two different proposals of the proposer in one round.
    DuplicateProposal {
        /// The proposal received first.
        first: SignedProposal<A, V, Sig>,
        /// The conflicting proposal.
        second: SignedProposal<A, V, Sig>,
    },
}

impl<A: Eq, V: ValueId, Sig> Evidence<A, V, Sig> {
    /// The validator the evidence accuses.
    pub fn offender(&self) -> &A {
        match self {
            Evidence::DuplicateVote { first, .. } => &first.message.validator,
            Evidence::DuplicateProposal { first, .. } => &first.message.proposer,
        }
    }

    /// Whether this is real evidence: same signer, height, round and step,
    /// different content, both signatures valid.
    pub fn verify<S>(&self, scheme: &S, chain_id: u64) -> bool
    where
        S: SigningScheme<Address = A, Signature = Sig>,
    {
        match self {
            Evidence::DuplicateVote { first, second } => {
                let (a, b) = (&first.message, &second.message);
                a.validator == b.validator
                    && a.height == b.height
                    && a.round == b.round
                    && a.vote_type == b.vote_type
                    && a.value != b.value
                    && scheme.verify(&a.validator, &a.sign_bytes(chain_id), &first.signature)
                    && scheme.verify(&b.validator, &b.sign_bytes(chain_id), &second.signature)
            }
            Evidence::DuplicateProposal { first, second } => {
                let (a, b) = (&first.message, &second.message);
                a.proposer == b.proposer
                    && a.height == b.height
                    && a.round == b.round
                    && (a.value != b.value || a.pol_round != b.pol_round)
                    && scheme.verify(&a.proposer, &a.sign_bytes(chain_id), &first.signature)
                    && scheme.verify(&b.proposer, &b.sign_bytes(chain_id), &second.signature)
            }
        }
    }
}
