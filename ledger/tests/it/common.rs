//! Fixtures shared by the ledger tests.

use tally_ledger::{
    Address, ExecParams, GenesisState, GovernanceParams, Member, NativeTransaction, Proposal,
    SecretKey, SignedTransaction, Store, Transaction, VerifiedTransaction, keccak256,
};
use tempfile::TempDir;

pub const CHAIN_ID: u64 = 7;
pub const MIN_FEE: u128 = 2;
pub const START_BALANCE: u128 = 1_000_000;

pub fn params() -> ExecParams {
    ExecParams {
        chain_id: CHAIN_ID,
        min_fee: MIN_FEE,
        max_block_txs: 10_000,
        max_block_bytes: 4 << 20,
        governance: GovernanceParams::for_genesis(VALIDATORS, None),
    }
}

/// Validators in the test genesis, each of power [`POWER`].
pub const VALIDATORS: usize = 4;
pub const POWER: u64 = 10;

pub fn validator_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&format!("ledger-test-validator-{i}"))
}

/// The genesis validator set: [`VALIDATORS`] validators of [`POWER`] each.
pub fn validators() -> Vec<Member> {
    (0..VALIDATORS)
        .map(|i| Member::of_key(&format!("v{i}"), &validator_key(i).public_key(), POWER))
        .collect()
}

/// The native transfer inside `signed` (tests that tamper with one).
pub fn native(signed: SignedTransaction) -> NativeTransaction {
    match signed {
        SignedTransaction::Native(native) => native,
        _ => panic!("not a native transfer"),
    }
}

pub fn key(i: usize) -> SecretKey {
    SecretKey::from_seed(&format!("ledger-test-{i}"))
}

pub fn genesis(n_accounts: usize) -> GenesisState {
    GenesisState {
        hash: keccak256(format!("test-genesis-{n_accounts}").as_bytes()),
        accounts: (0..n_accounts)
            .map(|i| (key(i).address(), START_BALANCE))
            .collect(),
        validators: validators(),
    }
}

/// A fresh store in a temporary directory (removed when the `TempDir` drops).
pub fn store(n_accounts: usize) -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), &genesis(n_accounts)).expect("open store");
    (dir, store)
}

pub fn transfer(from: &SecretKey, nonce: u64, to: Address, amount: u128) -> VerifiedTransaction {
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to,
        amount,
        fee: MIN_FEE,
        memo: vec![],
    }
    .sign(from)
    .verify()
    .expect("a freshly signed tx verifies")
}

pub fn proposal(proposer: Address) -> Proposal {
    Proposal {
        time: 1_700_000_000_000,
        proposer,
        last_commit: None,
    }
}
