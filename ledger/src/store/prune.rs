//! Pruning: deleting the blocks and state-tree versions below a height.
//!
//! While pruning is on, every commit records the tree nodes it makes stale
//! under the version from which no later version reads them (jmt's stale
//! node index). Pruning below `h` then deletes, in bounded atomic batches:
//! the blocks under `h` with their hashes, certificates, receipts and
//! transaction index entries, and every tree node stale since `h` or
//! earlier, with the value a stale leaf held. The tree at `h` and above is
//! untouched, so every state from `h` on stays readable and provable, and a
//! crash between batches only leaves less done. `history_start` (the lowest
//! height whose block is held) moves with the block deletions.

use std::sync::atomic::Ordering;

use jmt::KeyHash;
use jmt::storage::{Node, NodeKey};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{
    CF_BLOCK_HASHES, CF_BLOCKS, CF_COMMITS, CF_META, CF_RECEIPTS, CF_STALE_NODES, CF_TREE_NODES,
    CF_TREE_VALUES, CF_TX_INDEX, META_BASE, Store, decode, encode, tree_value_key,
};
use crate::error::StoreError;

/// The lowest height whose block is held, once pruning has moved it.
const META_HISTORY_START: &[u8] = b"history_start";

/// What one call of [`Store::prune`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Heights whose block was deleted.
    pub blocks: u64,
    /// Stale tree nodes deleted.
    pub tree_nodes: u64,
    /// Whether everything below the height is gone (else call again).
    pub done: bool,
}

impl Store {
    /// Records, from now on, which tree nodes each commit makes stale, so
    /// that [`Store::prune`] can delete them. Nodes made stale while it was
    /// off are never pruned.
    pub fn enable_pruning(&self) {
        self.pruning.store(true, Ordering::Relaxed);
    }

    /// The lowest height whose block this store holds (1 for an archive;
    /// above the snapshot for a state-synced store; higher once pruned).
    pub fn history_start(&self) -> Result<u64, StoreError> {
        if let Some(bytes) = self.get_meta(META_HISTORY_START)? {
            return decode("history start", &bytes);
        }
        Ok(match self.get_meta(META_BASE)? {
            Some(bytes) => decode::<crate::block::Header>("base header", &bytes)?.height + 1,
            None => 1,
        })
    }

    /// The lowest height whose state this store holds: 0 for an archive,
    /// the snapshot's for a state-synced store, the history start once
    /// pruned.
    pub fn state_start(&self) -> Result<u64, StoreError> {
        if let Some(bytes) = self.get_meta(META_HISTORY_START)? {
            return decode("history start", &bytes);
        }
        Ok(match self.get_meta(META_BASE)? {
            Some(bytes) => decode::<crate::block::Header>("base header", &bytes)?.height,
            None => 0,
        })
    }

    /// Deletes at most about `budget` entries of what lies below `height`
    /// (blocks first, oldest first, then stale tree nodes). `height` must
    /// not pass the tip: the tip's state is never pruned.
    pub fn prune(&self, height: u64, budget: usize) -> Result<Pruned, StoreError> {
        let height = height.min(self.tip()?.height);
        let mut pruned = Pruned::default();
        let mut spent = 0usize;
        let start = self.history_start()?;
        let mut next = start;
        let mut batch = WriteBatch::default();
        while next < height && spent < budget {
            if let Some(block) = self.block_by_height(next)? {
                for tx in &block.txs {
                    let id = tx.hash();
                    batch.delete_cf(self.cf(CF_TX_INDEX), id.0);
                    batch.delete_cf(self.cf(CF_RECEIPTS), id.0);
                }
                batch.delete_cf(self.cf(CF_BLOCK_HASHES), block.hash().0);
                spent += block.txs.len() * 2 + 1;
            }
            batch.delete_cf(self.cf(CF_BLOCKS), next.to_be_bytes());
            batch.delete_cf(self.cf(CF_COMMITS), next.to_be_bytes());
            spent += 2;
            next += 1;
            pruned.blocks += 1;
        }
        if next > start {
            batch.put_cf(self.cf(CF_META), META_HISTORY_START, encode(&next));
        }
        // Tree nodes stale since `height` or earlier: no version from
        // `height` on reads them.
        let mut iter = self.db.iterator_cf(
            self.cf(CF_STALE_NODES),
            IteratorMode::From(&[], Direction::Forward),
        );
        let mut more_nodes = false;
        for entry in iter.by_ref() {
            let (key, _) = entry?;
            let since = key
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt {
                    what: "stale node record",
                    detail: format!("{} bytes", key.len()),
                })?;
            if since > height {
                break;
            }
            if spent >= budget {
                more_nodes = true;
                break;
            }
            let node_key: NodeKey = decode("stale node key", &key[8..])?;
            let node_bytes = encode(&node_key);
            if let Some(bytes) = self.db.get_pinned_cf(self.cf(CF_TREE_NODES), &node_bytes)? {
                if let Node::Leaf(leaf) = decode::<Node>("state tree node", &bytes)? {
                    spent += self.prune_values(&mut batch, leaf.key_hash(), height)?;
                }
            }
            batch.delete_cf(self.cf(CF_TREE_NODES), node_bytes);
            batch.delete_cf(self.cf(CF_STALE_NODES), &key);
            spent += 3;
            pruned.tree_nodes += 1;
        }
        self.db.write(batch)?;
        pruned.done = next >= height && !more_nodes;
        Ok(pruned)
    }

    /// Deletes the values of `key` older than its newest at or below
    /// `height`: no state from `height` on reads them. (A leaf's node
    /// version is not its value's: jmt moves a leaf deeper, under a new
    /// node key, when a neighbour arrives, and the value stays where it
    /// was written.)
    fn prune_values(
        &self,
        batch: &mut WriteBatch,
        key: KeyHash,
        height: u64,
    ) -> Result<usize, StoreError> {
        let version = |k: &[u8]| {
            u64::from_be_bytes(k[32..40].try_into().expect("tree value keys are 40 bytes"))
        };
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_TREE_VALUES));
        iter.seek_for_prev(tree_value_key(&key, height));
        let newest = match iter.key() {
            Some(k) if k.len() == 40 && k[..32] == key.0 => version(k),
            _ => return Ok(0),
        };
        let mut deleted = 0;
        iter.seek(tree_value_key(&key, 0));
        while let Some(k) = iter.key() {
            if k.len() != 40 || k[..32] != key.0 || version(k) >= newest {
                break;
            }
            batch.delete_cf(self.cf(CF_TREE_VALUES), k);
            deleted += 1;
            iter.next();
        }
        iter.status()?;
        Ok(deleted)
    }
}
