//! Blocks, headers, commit certificates and the transaction Merkle root.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::crypto::{Address, Hash, Signature, keccak256, keccak256_concat};
use crate::error::BlockError;
use crate::tx::SignedTransaction;

/// Domain tags of the binary Merkle tree: a leaf can never be read as an inner
/// node (second-preimage resistance), as in RFC 6962.
const MERKLE_LEAF: &[u8] = &[0x00];
const MERKLE_NODE: &[u8] = &[0x01];

/// Root of the binary Merkle tree over `leaves` (already hashed items, e.g. tx
/// ids). An odd node at the end of a level is promoted unchanged; the empty
/// tree's root is keccak256 of the empty string.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return keccak256(&[]);
    }
    let mut level: Vec<Hash> = leaves
        .iter()
        .map(|leaf| keccak256_concat(&[MERKLE_LEAF, &leaf.0]))
        .collect();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [left, right] => next.push(keccak256_concat(&[MERKLE_NODE, &left.0, &right.0])),
                [single] => next.push(*single),
                _ => unreachable!("chunks(2) yields one or two items"),
            }
        }
        level = next;
    }
    level[0]
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Header {
    pub chain_id: u64,
    pub height: u64,
    /// Unix time in milliseconds, set by the proposer.
    pub time: u64,
    pub prev_hash: Hash,
    pub tx_root: Hash,
    /// Root of the account-state tree after this block's transactions.
    pub state_root: Hash,
    pub proposer: Address,
    /// The set that signs this height ([`crate::governance::validators_hash`]).
    pub validators_hash: Hash,
    /// The set that signs the next height: a change enacted in block `h`
    /// signs from `h + 2`, so header `h + 1` names it before anyone votes
    /// with it, and a node that trusts one header's set learns the next.
    pub next_validators_hash: Hash,
    /// Hash of `Block::last_commit`, or zero when there is none (height 1).
    pub last_commit_hash: Hash,
}

impl Header {
    /// The block hash: keccak256 of the borsh-encoded header.
    pub fn hash(&self) -> Hash {
        keccak256(&borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail"))
    }
}

/// One validator's precommit signature in a commit certificate.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommitSig {
    pub validator: Address,
    pub signature: Signature,
}

/// The precommits that decided `block_hash` at (`height`, `round`): a plain
/// record that any node can check later against the validator set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Commit {
    pub height: u64,
    pub round: u32,
    pub block_hash: Hash,
    pub signatures: Vec<CommitSig>,
}

impl Commit {
    pub fn hash(&self) -> Hash {
        keccak256(&borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail"))
    }
}

/// The hash a header records for an optional previous commit.
pub fn last_commit_hash(commit: Option<&Commit>) -> Hash {
    commit.map_or(Hash::ZERO, Commit::hash)
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Block {
    pub header: Header,
    pub txs: Vec<SignedTransaction>,
    /// The certificate of the previous block (`None` at height 1).
    pub last_commit: Option<Commit>,
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn height(&self) -> u64 {
        self.header.height
    }

    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail")
    }

    /// Decodes untrusted bytes; an error (never a panic) on anything malformed.
    pub fn decode(bytes: &[u8]) -> Result<Block, borsh::io::Error> {
        borsh::from_slice(bytes)
    }

    /// Checks that the body is the one the header commits to: the
    /// transactions hash to `tx_root` and the certificate to
    /// `last_commit_hash`. The block hash covers only the header, so without
    /// this check anyone could pair a signed header with another body.
    /// Costs one keccak256 per transaction, no signature work; returns the
    /// transaction ids.
    pub fn check_body(&self) -> Result<Vec<Hash>, BlockError> {
        let computed = last_commit_hash(self.last_commit.as_ref());
        if self.header.last_commit_hash != computed {
            return Err(BlockError::WrongLastCommitHash {
                computed,
                got: self.header.last_commit_hash,
            });
        }
        let tx_hashes: Vec<Hash> = self.txs.iter().map(SignedTransaction::hash).collect();
        let computed = merkle_root(&tx_hashes);
        if self.header.tx_root != computed {
            return Err(BlockError::WrongTxRoot {
                computed,
                got: self.header.tx_root,
            });
        }
        Ok(tx_hashes)
    }
}
