//! `tally query account --prove`: an account checked against the chain's
//! genesis rather than taken on the node's word.
//!
//! The node answers `tally_getAccountProof` with the account, a Merkle proof
//! to a header's state root, the header and the certificate that decided
//! it. The header is trusted only if the certificate is signed by more than
//! two thirds of the voting power of the genesis validators, and the account
//! only if the proof leads from it to that header's state root.

use serde::Serialize;
use tally_genesis::Genesis;
use tally_ledger::governance::validators_hash;
use tally_ledger::{Address, Hash, verify_account_proof};
use tally_rpc::AccountProofInfo;

use crate::actors::ledger::check_certificate;
use crate::chain::validator_set;

/// An account whose proof and header checked.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvenAccount {
    pub address: Address,
    #[serde(with = "tally_ledger::serde_u128")]
    pub balance: u128,
    pub nonce: u64,
    /// False: no such account, and the proof shows its absence.
    pub exists: bool,
    pub height: u64,
    pub block_hash: Hash,
    /// The header's time (ms since the Unix epoch): how fresh the proven
    /// state is, when no height was asked for.
    pub time_ms: u64,
    pub state_root: Hash,
    /// Validators whose signatures the certificate carries.
    pub signatures: usize,
}

/// Checks `info` for `address` against `genesis`: the header is this
/// chain's and was certified by its validators, and the proof leads from
/// the account (or its absence) to the header's state root.
pub fn check(
    genesis: &Genesis,
    address: &Address,
    height: Option<u64>,
    info: &AccountProofInfo,
) -> anyhow::Result<ProvenAccount> {
    let set = validator_set(genesis)?;
    let (header, commit) = (&info.header, &info.commit);
    let hash = header.hash();
    anyhow::ensure!(
        info.address == *address,
        "the node answered for {} instead of {address}",
        info.address
    );
    if let Some(height) = height {
        anyhow::ensure!(
            info.height == height,
            "the node answered for height {} instead of {height}",
            info.height
        );
    }
    anyhow::ensure!(
        header.chain_id == genesis.chain_id,
        "the header is of chain {}, not {}",
        header.chain_id,
        genesis.chain_id
    );
    anyhow::ensure!(
        header.height == info.height && commit.height == info.height,
        "height {} with a header of {} and a certificate of {}",
        info.height,
        header.height,
        commit.height
    );
    anyhow::ensure!(
        commit.block_hash == hash,
        "the certificate decides block {}, not the header's {hash}",
        commit.block_hash
    );
    anyhow::ensure!(
        header.validators_hash == validators_hash(&genesis.members()),
        "the header names another validator set than genesis (the set has changed since; \
         proofs across set changes are not checked yet)"
    );
    check_certificate(genesis.chain_id, &set, commit, info.height, &hash)?;
    verify_account_proof(
        &info.proof.to_proof(),
        &header.state_root,
        address,
        info.account.as_ref(),
    )?;
    let account = info.account.unwrap_or_default();
    Ok(ProvenAccount {
        address: *address,
        balance: account.balance,
        nonce: account.nonce,
        exists: info.account.is_some(),
        height: info.height,
        block_hash: hash,
        time_ms: header.time,
        state_root: header.state_root,
        signatures: commit.signatures.len(),
    })
}
