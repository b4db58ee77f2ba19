//! Commit certificates: the precommits that decided a value, checkable by any
//! node on its own against the validator set of the height (block sync, light
//! clients, the ledger's stored `Commit`).

use std::cmp::Ordering;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::scheme::SigningScheme;
use crate::sign_bytes::vote_sign_bytes;
use crate::types::{Height, Round, ValueId, VoteType};
use crate::validators::ValidatorSet;

/// The precommits of more than 2/3 of the power for `value` in `round` of
/// `height`. Each signature is over
/// `vote_sign_bytes(chain_id, height, round, Precommit, Some(value))`, so the
/// certificate maps one to one onto the ledger's
/// `Commit { height, round, block_hash, signatures }`.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct CommitCertificate<A, V, Sig> {
    /// The decided height.
    pub height: Height,
    /// The round whose precommits decided it.
    pub round: Round,
    /// The decided value (block id).
    pub value: V,
    /// `(validator, precommit signature)`, sorted by address, no repeats.
    pub signatures: Vec<(A, Sig)>,
}

/// Why a certificate was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The certificate is for another height.
    #[error("certificate is for height {found}, expected {expected}")]
    WrongHeight {
        /// Height the caller expected.
        expected: Height,
        /// Height the certificate claims.
        found: Height,
    },
    /// The certificate is for another value.
    #[error("certificate is for another value than expected")]
    WrongValue,
    /// A signer is not in the validator set.
    #[error("signer at position {index} is not a validator")]
    UnknownSigner {
        /// Position in `signatures`.
        index: usize,
    },
    /// A signer appears twice.
    #[error("signer at position {index} appears twice")]
    DuplicateSigner {
        /// Position in `signatures`.
        index: usize,
    },
    /// Signers are not in increasing address order (a commit has exactly
    /// one encoding).
    #[error("signer at position {index} is out of address order")]
    UnsortedSigners {
        /// Position in `signatures`.
        index: usize,
    },
    /// A signature does not verify over the precommit sign bytes of the
    /// certificate's height, round and value.
    #[error("signature at position {index} does not verify")]
    BadSignature {
        /// Position in `signatures`.
        index: usize,
    },
    /// The signers hold too little power.
    #[error("signers hold {power} of {total} voting power; a quorum needs more than 2/3")]
    InsufficientPower {
        /// Power of the (valid) signers.
        power: u64,
        /// Total power of the set.
        total: u64,
    },
}

/// Checks `certificate` for `height` and `value` against `validators` (the set
/// of that height): every signer known, signers in strictly increasing address
/// order (so distinct, and one canonical encoding per set of signers), every
/// signature valid for the certificate's height, round and value, and more
/// than 2/3 of the power.
/// Returns the signers' power. A wrong round or value inside the certificate
/// shows up as bad signatures, since they are part of the sign bytes.
pub fn verify_certificate<S: SigningScheme, V: ValueId>(
    scheme: &S,
    chain_id: u64,
    validators: &ValidatorSet<S::Address>,
    height: Height,
    value: &V,
    certificate: &CommitCertificate<S::Address, V, S::Signature>,
) -> Result<u64, CertificateError> {
    if certificate.height != height {
        return Err(CertificateError::WrongHeight {
            expected: height,
            found: certificate.height,
        });
    }
    if &certificate.value != value {
        return Err(CertificateError::WrongValue);
    }
    let sign_bytes = vote_sign_bytes(
        chain_id,
        certificate.height,
        certificate.round,
        VoteType::Precommit,
        Some(certificate.value.as_ref()),
    );
    let mut previous: Option<&S::Address> = None;
    let mut power: u64 = 0;
    for (index, (signer, signature)) in certificate.signatures.iter().enumerate() {
        let Some(p) = validators.power_of(signer) else {
            return Err(CertificateError::UnknownSigner { index });
        };
        match previous.map(|prev| signer.cmp(prev)) {
            Some(Ordering::Equal) => return Err(CertificateError::DuplicateSigner { index }),
            Some(Ordering::Less) => return Err(CertificateError::UnsortedSigners { index }),
            _ => {}
        }
        previous = Some(signer);
        if !scheme.verify(signer, &sign_bytes, signature) {
            return Err(CertificateError::BadSignature { index });
        }
        // Distinct members of a set whose total fits in u64.
        power = power.saturating_add(p);
    }
    if !validators.is_quorum(power) {
        return Err(CertificateError::InsufficientPower {
            power,
            total: validators.total_power(),
        });
    }
    Ok(power)
}
