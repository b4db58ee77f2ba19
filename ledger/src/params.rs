//! What genesis tells the ledger: the chain-wide rules of execution and the
//! initial state. Plain data, so crates that only read genesis need no store.

use crate::crypto::{Address, Hash};
use crate::governance::{GovernanceParams, Member};

/// The chain-wide rules execution needs (from genesis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecParams {
    pub chain_id: u64,
    pub min_fee: u128,
    pub max_block_txs: usize,
    pub max_block_bytes: usize,
    pub governance: GovernanceParams,
}

/// What the store needs of the genesis: its hash (to refuse a database of
/// another chain), the initial balances and the first validator set.
#[derive(Clone, Debug)]
pub struct GenesisState {
    pub hash: Hash,
    pub accounts: Vec<(Address, u128)>,
    pub validators: Vec<Member>,
}
