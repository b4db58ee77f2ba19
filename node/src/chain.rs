//! The ledger's types as the consensus machine sees them: validators are
//! 20-byte addresses, values are block hashes, and signatures are 65-byte
//! recoverable secp256k1 signatures over keccak256 of the sign bytes,
//! checked by recovering the signer's address.

use tally_consensus::{
    CommitCertificate, Config, SigningScheme, TimeoutConfig, Validator, ValidatorSet,
    ValidatorSetError,
};
use tally_genesis::Genesis;
use tally_ledger::store::Store;
use tally_ledger::{Address, Commit, CommitSig, Hash, Member, SecretKey, Signature, keccak256};

/// secp256k1 with keccak256 prehashing, the scheme of every Tally signature.
#[derive(Clone, Copy, Debug, Default)]
pub struct Secp256k1;

impl SigningScheme for Secp256k1 {
    type Address = Address;
    type Signature = Signature;

    fn verify(&self, signer: &Address, sign_bytes: &[u8], signature: &Signature) -> bool {
        signature
            .recover_address(&keccak256(sign_bytes))
            .is_ok_and(|recovered| recovered == *signer)
    }
}

/// The local validator's key as a consensus signer.
#[derive(Debug)]
pub struct ValidatorSigner {
    key: SecretKey,
    address: Address,
}

impl ValidatorSigner {
    pub fn new(key: SecretKey) -> Self {
        let address = key.address();
        ValidatorSigner { key, address }
    }
}

impl tally_consensus::Signer<Secp256k1> for ValidatorSigner {
    fn address(&self) -> &Address {
        &self.address
    }

    fn sign(&self, sign_bytes: &[u8]) -> Signature {
        self.key.sign_prehash(&keccak256(sign_bytes))
    }
}

/// The consensus machine's types in the node.
pub type Consensus = tally_consensus::Consensus<Secp256k1, Hash>;
pub type Certificate = CommitCertificate<Address, Hash, Signature>;

/// The consensus machine's view of a validator set the ledger records:
/// addresses and powers, every priority zero (a set's proposer rotation
/// starts afresh at its first height).
pub fn consensus_set(members: &[Member]) -> Result<ValidatorSet<Address>, ValidatorSetError> {
    ValidatorSet::new(
        members
            .iter()
            .map(|m| Validator {
                address: m.address,
                power: m.power,
            })
            .collect(),
    )
}

/// The genesis validator set.
pub fn validator_set(genesis: &Genesis) -> Result<ValidatorSet<Address>, ValidatorSetError> {
    consensus_set(&genesis.members())
}

/// Consensus configuration from the genesis parameters: each step's timeout
/// grows by the same delta per round.
pub fn consensus_config(genesis: &Genesis) -> Config {
    let p = &genesis.consensus;
    let mut config = Config::new(genesis.chain_id);
    config.timeouts = TimeoutConfig {
        propose_ms: p.timeout_propose_ms,
        propose_delta_ms: p.timeout_delta_ms,
        prevote_ms: p.timeout_prevote_ms,
        prevote_delta_ms: p.timeout_delta_ms,
        precommit_ms: p.timeout_precommit_ms,
        precommit_delta_ms: p.timeout_delta_ms,
    };
    config
}

/// A decided certificate as the ledger stores it in the next block.
pub fn certificate_to_commit(certificate: &Certificate) -> Commit {
    Commit {
        height: certificate.height,
        round: certificate.round,
        block_hash: certificate.value,
        signatures: certificate
            .signatures
            .iter()
            .map(|(validator, signature)| CommitSig {
                validator: *validator,
                signature: *signature,
            })
            .collect(),
    }
}

/// A stored commit as a certificate that `verify_certificate` can check.
pub fn commit_to_certificate(commit: &Commit) -> Certificate {
    CommitCertificate {
        height: commit.height,
        round: commit.round,
        value: commit.block_hash,
        signatures: commit
            .signatures
            .iter()
            .map(|s| (s.validator, s.signature))
            .collect(),
    }
}

/// The validator set of `height` as the store records it, with its
/// proposer rotation advanced once per height since the set took over (so
/// the proposer of round 0 rotates), and that first height; `None` when the
/// store cannot know it yet (more than two heights above its tip) or no
/// longer holds it.
pub fn validator_set_at(
    store: &Store,
    height: u64,
) -> anyhow::Result<Option<(ValidatorSet<Address>, u64)>> {
    let Some(at) = store.validator_set_at(height)? else {
        return Ok(None);
    };
    let mut set = consensus_set(&at.members)?;
    set.advance(height - at.start);
    Ok(Some((set, at.start)))
}
