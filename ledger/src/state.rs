//! Accounts and the authenticated state tree.
//!
//! The state root commits to every account: a Jellyfish Merkle tree (the `jmt`
//! crate, a 16-ary sparse Merkle tree) keyed by keccak256 of the address, whose
//! values are borsh-encoded [`Account`]s. Tree versions are block heights
//! (genesis is version 0). Updating it after a block costs work in proportion
//! to the accounts the block touched, and the tree nodes live in RocksDB next
//! to the blocks, so that any account can be proven against any header.

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::KeyHash;
use jmt::proof::SparseMerkleProof;
use serde::{Deserialize, Serialize};

use crate::crypto::{Address, Hash, keccak256};
use crate::error::StoreError;
use crate::snapshot::ProofNode;

/// The hash function of the state tree (jmt's hasher over keccak256).
pub type TreeHasher = sha3::Keccak256;

/// A Merkle proof of an account (or of its absence) against a state root.
pub type AccountProof = SparseMerkleProof<TreeHasher>;

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Account {
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
    #[serde(with = "crate::serde_u128")]
    pub balance: u128,
}

impl Account {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail")
    }
}

/// Read access to the latest committed accounts.
pub trait StateReader {
    /// The account at `address`; a never-seen address is the zero account.
    fn account(&self, address: &Address) -> Result<Account, StoreError>;

    /// The governance state (validator sets and proposals).
    fn governance(&self) -> Result<std::sync::Arc<crate::governance::GovernanceState>, StoreError>;
}

/// The key of an account in the state tree.
pub fn account_key(address: &Address) -> KeyHash {
    KeyHash(keccak256(address.as_bytes()).0)
}

/// An account proof in its parts, as `tally_getAccountProof` returns it:
/// the leaf the search for the account's key ended at (the account's own,
/// another account's when the key is absent, or none when the key's subtree
/// is empty) and the siblings on the path from there up to the root,
/// bottom first. The same borsh encoding as jmt's `SparseMerkleProof`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ProofParts {
    pub leaf: Option<ProofLeaf>,
    pub siblings: Vec<ProofNode>,
}

/// A leaf of the state tree: the account's key (keccak256 of the address)
/// and the keccak256 of its value (the borsh-encoded account).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct ProofLeaf {
    pub key: Hash,
    pub value_hash: Hash,
}

impl ProofParts {
    pub fn of(proof: &AccountProof) -> ProofParts {
        let bytes = borsh::to_vec(proof).expect("encoding into a Vec");
        borsh::from_slice(&bytes).expect("ProofParts encodes as jmt's SparseMerkleProof")
    }

    /// jmt's proof from the parts (for [`verify_account_proof`]).
    pub fn to_proof(&self) -> AccountProof {
        let bytes = borsh::to_vec(self).expect("encoding into a Vec");
        borsh::from_slice(&bytes).expect("ProofParts encodes as jmt's SparseMerkleProof")
    }
}

/// Checks a proof that `account` (or no account, for `None`) is the value of
/// `address` in the state with root `state_root`.
pub fn verify_account_proof(
    proof: &AccountProof,
    state_root: &Hash,
    address: &Address,
    account: Option<&Account>,
) -> Result<(), StoreError> {
    proof
        .verify(
            jmt::RootHash(state_root.0),
            account_key(address),
            account.map(Account::encode),
        )
        .map_err(|e| StoreError::Tree(format!("account proof does not verify: {e}")))
}
