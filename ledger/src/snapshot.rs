//! State snapshots: the state tree at one height, cut into chunks that a
//! joining node fetches from several peers at once and checks one by one
//! against the state root of a certified header.
//!
//! The tree is a binary sparse Merkle tree over 256-bit keys (jmt stores it
//! 16-ary, but hashes it bit by bit), so a snapshot with `2^k` chunks cuts
//! it at depth `k`: chunk `i` holds every account whose key starts with the
//! `k` bits of `i`, which is one subtree. Its proof is the `k` siblings on
//! the path from the root to that subtree. A chunk is checked on its own,
//! in any order: hash its accounts into the subtree's root, fold in the
//! siblings and compare with the state root. Keys are keccak256 of the
//! address, so the accounts spread evenly over the chunks; the number of
//! chunks follows from the account count ([`chunk_count`]), so every honest
//! peer cuts a snapshot the same way.
//!
//! A sibling says what kind of subtree it is (empty, one leaf, or an inner
//! node with its two children): a subtree holding one leaf hashes as that
//! leaf, so the kind decides how two subtrees combine. A false kind or a
//! leaf placed under the wrong prefix makes the fold miss the root.

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::proof::SparseMerkleRangeProof;
use jmt::storage::LeafNode;
use jmt::{KeyHash, ValueHash};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Keccak256};

use crate::block::{Commit, Header};
use crate::crypto::{Address, Hash};
use crate::governance::{GovernanceState, governance_key};
use crate::state::{Account, ProofLeaf, TreeHasher, account_key};

/// Most chunks a snapshot is cut into.
pub const MAX_CHUNKS: u32 = 1 << 16;
/// Accounts a chunk holds on average, at most.
pub const TARGET_CHUNK_ACCOUNTS: u64 = 4096;
/// Most accounts in one chunk (about 8 MB on the wire): a peer refuses to
/// serve a bigger one and a node refuses to receive one.
pub const MAX_CHUNK_ACCOUNTS: usize = 150_000;

/// jmt's hash of an empty subtree.
const PLACEHOLDER: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";
const INTERNAL_DOMAIN: &[u8] = b"JMT::IntrnalNode";

/// A snapshot a peer offers: the state at `height`, whose root a certified
/// header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SnapshotInfo {
    pub height: u64,
    pub state_root: Hash,
    pub accounts: u64,
    pub chunks: u32,
}

/// A snapshot with the header whose state root it has and the certificate
/// that decided that header: what a node needs to trust the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SnapshotOffer {
    pub info: SnapshotInfo,
    pub header: Header,
    pub commit: Commit,
}

impl SnapshotOffer {
    /// Checks that the parts agree with each other (the certificate's
    /// signatures are the caller's to check): the header is this chain's,
    /// at the snapshot's height, with its state root, decided by the
    /// certificate, and the chunk count is the one the account count gives.
    pub fn check_shape(&self, chain_id: u64) -> Result<(), String> {
        let (info, header) = (&self.info, &self.header);
        if header.chain_id != chain_id {
            return Err(format!("a header of chain {}", header.chain_id));
        }
        if header.height != info.height || self.commit.height != info.height {
            return Err(format!(
                "snapshot at {} with header {} and certificate {}",
                info.height, header.height, self.commit.height
            ));
        }
        if header.state_root != info.state_root {
            return Err("the header's state root is not the snapshot's".into());
        }
        if self.commit.block_hash != header.hash() {
            return Err("the certificate decides another block".into());
        }
        if info.chunks != chunk_count(info.accounts) {
            return Err(format!(
                "{} chunks for {} accounts",
                info.chunks, info.accounts
            ));
        }
        Ok(())
    }
}

/// How many chunks the state of `accounts` accounts is cut into: a power of
/// two, about [`TARGET_CHUNK_ACCOUNTS`] accounts each.
pub fn chunk_count(accounts: u64) -> u32 {
    let wanted = accounts.div_ceil(TARGET_CHUNK_ACCOUNTS).max(1);
    wanted.next_power_of_two().min(u64::from(MAX_CHUNKS)) as u32
}

/// A subtree beside a path of the state tree, as jmt's proofs describe it
/// (the same borsh encoding as `jmt::proof::SparseMerkleNode`): empty, one
/// leaf (its key and the keccak256 of its value), or an inner node (its two
/// children's hashes).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ProofNode {
    Empty,
    Internal { left: Hash, right: Hash },
    Leaf { key: Hash, value_hash: Hash },
}

impl ProofNode {
    pub fn hash(&self) -> [u8; 32] {
        match self {
            ProofNode::Empty => PLACEHOLDER,
            ProofNode::Internal { left, right } => internal_hash(&left.0, &right.0),
            ProofNode::Leaf { key, value_hash } => {
                LeafNode::new(KeyHash(key.0), ValueHash(value_hash.0)).hash::<TreeHasher>()
            }
        }
    }
}

fn internal_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Keccak256::new();
    hasher.update(INTERNAL_DOMAIN);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// One chunk of a snapshot: its accounts in key order, the governance state
/// if its key falls in this chunk, and the siblings of its subtree, from the
/// root down (`siblings[j]` at depth `j`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StateChunk {
    pub accounts: Vec<(Address, Account)>,
    pub governance: Option<GovernanceState>,
    pub siblings: Vec<ProofNode>,
}

/// Bit `i` of a key, most significant first.
fn bit(key: &[u8; 32], i: usize) -> bool {
    key[i / 8] & (0x80 >> (i % 8)) != 0
}

/// Bit `j` (of `k`, most significant first) of a chunk index.
fn index_bit(index: u32, k: usize, j: usize) -> bool {
    (index >> (k - 1 - j)) & 1 == 1
}

/// The first `k` bits of `key` as a chunk index.
fn key_prefix(key: &[u8; 32], k: usize) -> u32 {
    (0..k).fold(0, |acc, i| (acc << 1) | u32::from(bit(key, i)))
}

/// The smallest key of chunk `index` of `chunks`, and the largest.
pub fn chunk_bounds(index: u32, chunks: u32) -> ([u8; 32], [u8; 32]) {
    let k = chunks.trailing_zeros() as usize;
    let mut low = [0u8; 32];
    let mut high = [0xffu8; 32];
    for j in 0..k {
        let mask = 0x80 >> (j % 8);
        if index_bit(index, k, j) {
            low[j / 8] |= mask;
        } else {
            high[j / 8] &= !mask;
        }
    }
    (low, high)
}

/// A subtree as the fold sees it: its kind decides how it combines.
#[derive(Clone, Copy)]
enum Subtree {
    Empty,
    Leaf([u8; 32]),
    Internal([u8; 32]),
}

impl Subtree {
    fn hash(self) -> [u8; 32] {
        match self {
            Subtree::Empty => PLACEHOLDER,
            Subtree::Leaf(h) | Subtree::Internal(h) => h,
        }
    }

    fn of(node: &ProofNode) -> Subtree {
        match node {
            ProofNode::Empty => Subtree::Empty,
            ProofNode::Leaf { .. } => Subtree::Leaf(node.hash()),
            ProofNode::Internal { .. } => Subtree::Internal(node.hash()),
        }
    }

    /// The parent of `left` and `right`: a lone leaf moves up, as in jmt.
    fn join(left: Subtree, right: Subtree) -> Subtree {
        match (left, right) {
            (Subtree::Empty, Subtree::Empty) => Subtree::Empty,
            (leaf @ Subtree::Leaf(_), Subtree::Empty)
            | (Subtree::Empty, leaf @ Subtree::Leaf(_)) => leaf,
            (l, r) => Subtree::Internal(internal_hash(&l.hash(), &r.hash())),
        }
    }
}

/// The subtree at `depth` holding `leaves` (sorted keys with their leaf
/// hashes, all sharing the first `depth` bits).
fn subtree(leaves: &[([u8; 32], [u8; 32])], depth: usize) -> Subtree {
    match leaves {
        [] => Subtree::Empty,
        [(_, hash)] => Subtree::Leaf(*hash),
        _ => {
            let split = leaves.partition_point(|(key, _)| !bit(key, depth));
            Subtree::join(
                subtree(&leaves[..split], depth + 1),
                subtree(&leaves[split..], depth + 1),
            )
        }
    }
}

/// A chunk that matched the state root, ready to be written.
#[derive(Clone, Debug)]
pub struct VerifiedChunk {
    /// The accounts with their tree keys, in key order.
    pub accounts: Vec<(KeyHash, Address, Account)>,
    pub governance: Option<GovernanceState>,
    /// Every leaf's key and value, in key order (what the tree holds).
    pub leaves: Vec<(KeyHash, Vec<u8>)>,
    /// The right siblings of the last account's leaf, bottom first: what
    /// jmt's restore needs to check the tree built so far.
    right_siblings: Vec<ProofNode>,
}

impl VerifiedChunk {
    /// The proof jmt's restore checks after this chunk.
    pub fn range_proof(&self) -> SparseMerkleRangeProof<TreeHasher> {
        // Its only field is the right siblings, in jmt's encoding of them.
        let bytes = borsh::to_vec(&self.right_siblings).expect("encoding into a Vec");
        borsh::from_slice(&bytes).expect("ProofNode encodes as jmt's SparseMerkleNode")
    }
}

/// Checks chunk `index` of `snapshot` against its state root. Cheap checks
/// first: the shape, the count, the order and prefix of every key, before
/// any tree hashing.
pub fn verify_chunk(
    snapshot: &SnapshotInfo,
    index: u32,
    chunk: &StateChunk,
) -> Result<VerifiedChunk, String> {
    let chunks = snapshot.chunks;
    if !chunks.is_power_of_two() || chunks > MAX_CHUNKS || index >= chunks {
        return Err(format!("chunk {index} of {chunks} does not exist"));
    }
    let k = chunks.trailing_zeros() as usize;
    if chunk.siblings.len() != k {
        return Err(format!(
            "{} siblings for a chunk at depth {k}",
            chunk.siblings.len()
        ));
    }
    if chunk.accounts.len() > MAX_CHUNK_ACCOUNTS {
        return Err(format!("{} accounts in one chunk", chunk.accounts.len()));
    }
    // A leaf beside the path must lie under that sibling's prefix, or it
    // could stand in for a leaf of this chunk.
    for (j, sibling) in chunk.siblings.iter().enumerate() {
        if let ProofNode::Leaf { key, .. } = sibling {
            let wanted = (index >> (k - 1 - j)) ^ 1;
            if key_prefix(&key.0, j + 1) != wanted {
                return Err(format!(
                    "the sibling leaf at depth {j} is not beside the path"
                ));
            }
        }
    }
    let mut accounts = Vec::with_capacity(chunk.accounts.len());
    for (address, account) in &chunk.accounts {
        let key = account_key(address);
        if key_prefix(&key.0, k) != index {
            return Err(format!("account {address} belongs to another chunk"));
        }
        if accounts
            .last()
            .is_some_and(|(last, _, _): &(KeyHash, _, _)| last.0 >= key.0)
        {
            return Err("accounts out of key order, or repeated".into());
        }
        accounts.push((key, *address, *account));
    }
    let mut values: Vec<(KeyHash, Vec<u8>)> = accounts
        .iter()
        .map(|(key, _, account)| (*key, account.encode()))
        .collect();
    if let Some(governance) = &chunk.governance {
        governance
            .check_shape()
            .map_err(|e| format!("the governance state is malformed: {e}"))?;
        let key = governance_key();
        if key_prefix(&key.0, k) != index {
            return Err("the governance state belongs to another chunk".into());
        }
        let at = values.partition_point(|(k, _)| k.0 < key.0);
        values.insert(at, (KeyHash(key.0), governance.encode()));
    }
    let leaves: Vec<([u8; 32], [u8; 32])> = values
        .iter()
        .map(|(key, value)| {
            let value_hash = ValueHash::with::<TreeHasher>(value);
            (key.0, LeafNode::new(*key, value_hash).hash::<TreeHasher>())
        })
        .collect();
    let mut node = subtree(&leaves, k);
    for j in (0..k).rev() {
        let sibling = Subtree::of(&chunk.siblings[j]);
        node = if index_bit(index, k, j) {
            Subtree::join(sibling, node)
        } else {
            Subtree::join(node, sibling)
        };
    }
    if node.hash() != snapshot.state_root.0 {
        return Err(format!(
            "chunk {index} does not match state root {}",
            snapshot.state_root
        ));
    }
    let right_siblings = match leaves.as_slice() {
        [] => Vec::new(),
        [.., last] => right_siblings(&chunk.siblings, k, &leaves, last.0),
    };
    Ok(VerifiedChunk {
        accounts,
        governance: chunk.governance.clone(),
        leaves: values,
        right_siblings,
    })
}

/// The siblings right of the last leaf's path, bottom first, as jmt's
/// range proof lists them. Below the chunk's depth everything right of the
/// last leaf is empty; above it they are the chunk's own siblings.
fn right_siblings(
    siblings: &[ProofNode],
    k: usize,
    leaves: &[([u8; 32], [u8; 32])],
    last: [u8; 32],
) -> Vec<ProofNode> {
    // The depth of the last leaf: one below where it parts from its left
    // neighbour in the chunk; alone in its chunk, one below the lowest
    // non-empty sibling above it.
    let depth = match leaves {
        [.., (before, _), _] => {
            1 + (0..256)
                .take_while(|&i| bit(before, i) == bit(&last, i))
                .count()
        }
        _ => siblings
            .iter()
            .rposition(|s| *s != ProofNode::Empty)
            .map_or(0, |j| j + 1),
    };
    (0..depth)
        .rev()
        .filter(|&j| !bit(&last, j))
        .map(|j| {
            if j >= k {
                ProofNode::Empty
            } else {
                siblings[j]
            }
        })
        .collect()
}

/// The siblings of chunk `index` of `chunks`, root first, from jmt's proof
/// of the chunk's smallest key (siblings bottom first, and the leaf the
/// search ended at when the key is absent).
pub(crate) fn chunk_siblings(
    index: u32,
    chunks: u32,
    proof_leaf: Option<ProofLeaf>,
    proof_siblings: &[ProofNode],
) -> Vec<ProofNode> {
    let k = chunks.trailing_zeros() as usize;
    let depth = proof_siblings.len();
    (0..k)
        .map(|j| {
            if j < depth {
                return proof_siblings[depth - 1 - j];
            }
            // Below where the search ended the subtree holds only the
            // proof's leaf (or nothing): a sibling there is that leaf if it
            // lies under the sibling's prefix.
            let wanted = (index >> (k - 1 - j)) ^ 1;
            match proof_leaf {
                Some(ProofLeaf { key, value_hash }) if key_prefix(&key.0, j + 1) == wanted => {
                    ProofNode::Leaf { key, value_hash }
                }
                _ => ProofNode::Empty,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_counts_are_powers_of_two_near_the_target() {
        assert_eq!(chunk_count(0), 1);
        assert_eq!(chunk_count(4096), 1);
        assert_eq!(chunk_count(4097), 2);
        assert_eq!(chunk_count(100_000), 32);
        assert_eq!(chunk_count(u64::MAX), MAX_CHUNKS);
    }

    #[test]
    fn chunk_bounds_cover_the_key_space_in_order() {
        assert_eq!(chunk_bounds(0, 1), ([0; 32], [0xff; 32]));
        let (low, high) = chunk_bounds(5, 16);
        assert_eq!(low[0], 0x50);
        assert_eq!(high[0], 0x5f);
        assert_eq!(high[1..], [0xff; 31]);
        assert_eq!(key_prefix(&low, 4), 5);
        assert_eq!(key_prefix(&high, 4), 5);
    }
}
