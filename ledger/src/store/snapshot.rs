//! Serving snapshots from the state tree, and installing one (state sync).
//!
//! Every committed height's tree version stays in the store, so a snapshot
//! costs nothing to make: serving chunk `i` at height `h` reads the
//! accounts of one key range as of `h` and jmt's proof of the range's
//! first key. Installing one stages every checked chunk (so a restart
//! resumes the download), then builds the tree with jmt's restore, which
//! checks the tree so far against the root after each chunk, and sets the
//! tip to the snapshot in the last, fsync'd write. Until that write the
//! store is marked as state syncing and the tip stays at genesis.

use std::sync::{Arc, Mutex};

use jmt::restore::{JellyfishMerkleRestore, StateSnapshotReceiver};
use jmt::storage::{NodeBatch, TreeWriter};
use jmt::{JellyfishMerkleTree, KeyHash, RootHash};
use rocksdb::WriteBatch;

use super::{
    CF_ACCOUNTS, CF_COMMITS, CF_KEY_PREIMAGES, CF_META, CF_SYNC_CHUNKS, CF_TREE_VALUES,
    CF_VALIDATOR_SETS, ChainTip, META_BASE, META_INSTALLING, META_PREIMAGES, META_STATE_SYNC,
    META_TIP, Store, TreeView, decode, encode, tree_value_key,
};
use crate::block::Header;
use crate::crypto::Address;
use crate::error::StoreError;
use crate::governance::{GovernanceState, governance_key};
use crate::snapshot::{
    MAX_CHUNK_ACCOUNTS, MAX_CHUNKS, SnapshotInfo, SnapshotOffer, StateChunk, chunk_bounds,
    chunk_count, chunk_siblings, verify_chunk,
};
use crate::state::{Account, ProofParts, TreeHasher};

/// The next key after `key`, if any.
fn successor(mut key: [u8; 32]) -> Option<[u8; 32]> {
    for byte in key.iter_mut().rev() {
        let (next, overflow) = byte.overflowing_add(1);
        *byte = next;
        if !overflow {
            return Some(key);
        }
    }
    None
}

fn unserved(detail: String) -> StoreError {
    StoreError::Snapshot(detail)
}

impl Store {
    /// The snapshot of the state at `height`: its root and account count,
    /// `None` if the store does not hold that tree version.
    pub fn snapshot_info(&self, height: u64) -> Result<Option<SnapshotInfo>, StoreError> {
        let view = TreeView(self);
        let tree = JellyfishMerkleTree::<_, TreeHasher>::new(&view);
        let tree_error = |e: anyhow::Error| StoreError::Tree(e.to_string());
        let Some(root) = tree.get_root_hash_option(height).map_err(tree_error)? else {
            return Ok(None);
        };
        // Every leaf but one is an account; that one is the governance state.
        let accounts = (tree.get_leaf_count(height).map_err(tree_error)? as u64).saturating_sub(1);
        Ok(Some(SnapshotInfo {
            height,
            state_root: crate::crypto::Hash(root.0),
            accounts,
            chunks: chunk_count(accounts),
        }))
    }

    /// Whether this store can serve snapshots: every account's address is
    /// recorded under its tree key (not so in stores from before that).
    pub fn serves_snapshots(&self) -> Result<bool, StoreError> {
        Ok(self.get_meta(META_PREIMAGES)?.is_some())
    }

    /// Chunk `index` of `chunks` of the state at `height`: the accounts
    /// whose keys it covers, as of that height, with its siblings.
    pub fn state_chunk(
        &self,
        height: u64,
        chunks: u32,
        index: u32,
    ) -> Result<StateChunk, StoreError> {
        if !chunks.is_power_of_two() || chunks > MAX_CHUNKS || index >= chunks {
            return Err(unserved(format!(
                "chunk {index} of {chunks} does not exist"
            )));
        }
        if !self.serves_snapshots()? {
            return Err(unserved(
                "this store predates key preimages and serves no snapshots".into(),
            ));
        }
        if height < self.state_start()? || self.snapshot_info(height)?.is_none() {
            return Err(unserved(format!("no state held at height {height}")));
        }
        let (low, high) = chunk_bounds(index, chunks);
        let mut keys: Vec<[u8; 32]> = Vec::new();
        let mut values: Vec<Account> = Vec::new();
        let mut governance: Option<GovernanceState> = None;
        let governance_key = governance_key().0;
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_TREE_VALUES));
        let mut next = Some(low);
        // Per key: seek to its first version, then back to its newest at
        // or below `height` (a key may have a version per block).
        while let Some(from) = next {
            iter.seek(tree_value_key(&KeyHash(from), 0));
            let Some(found) = iter.key() else { break };
            let key: [u8; 32] = found[..32]
                .try_into()
                .expect("tree value keys are 40 bytes");
            if key > high {
                break;
            }
            iter.seek_for_prev(tree_value_key(&KeyHash(key), height));
            if let (Some(at), Some(value)) = (iter.key(), iter.value()) {
                if at[..32] == key {
                    let value: Option<Vec<u8>> = decode("state tree value", value)?;
                    match value {
                        Some(bytes) if key == governance_key => {
                            governance = Some(decode("governance state", &bytes)?);
                        }
                        Some(bytes) => {
                            if keys.len() == MAX_CHUNK_ACCOUNTS {
                                return Err(unserved(format!(
                                    "chunk {index} of {chunks} holds more than {MAX_CHUNK_ACCOUNTS} accounts"
                                )));
                            }
                            keys.push(key);
                            values.push(decode("account", &bytes)?);
                        }
                        None => {}
                    }
                }
            }
            next = successor(key);
        }
        iter.status()?;
        let cf = self.cf(CF_KEY_PREIMAGES);
        let mut accounts = Vec::with_capacity(keys.len());
        for (key, (found, account)) in keys.iter().zip(
            self.db
                .batched_multi_get_cf(cf, keys.iter(), true)
                .into_iter()
                .zip(values),
        ) {
            let bytes = found?.ok_or_else(|| StoreError::Corrupt {
                what: "key preimages",
                detail: format!("no address for tree key {}", hex::encode(key)),
            })?;
            let address: [u8; 20] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                what: "key preimages",
                detail: format!("{} bytes", bytes.len()),
            })?;
            accounts.push((Address(address), account));
        }
        let view = TreeView(self);
        let (_, proof) = JellyfishMerkleTree::<_, TreeHasher>::new(&view)
            .get_with_proof(KeyHash(low), height)
            .map_err(|e| StoreError::Tree(e.to_string()))?;
        let proof = ProofParts::of(&proof);
        Ok(StateChunk {
            accounts,
            governance,
            siblings: chunk_siblings(index, chunks, proof.leaf, &proof.siblings),
        })
    }

    /// The snapshot a state sync under way installs, if one is.
    pub fn state_sync_target(&self) -> Result<Option<SnapshotOffer>, StoreError> {
        self.get_meta(META_STATE_SYNC)?
            .map(|bytes| decode("state sync target", &bytes))
            .transpose()
    }

    /// Marks the store as installing `offer` (its certificate checked by
    /// the caller). Only a store at genesis can start a state sync.
    pub fn begin_state_sync(&self, offer: &SnapshotOffer) -> Result<(), StoreError> {
        let tip = self.tip()?;
        if tip.height != 0 {
            return Err(unserved(format!(
                "the store is at height {}: state sync starts from an empty store",
                tip.height
            )));
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), META_STATE_SYNC, encode(offer));
        // Chunks of another snapshot are of no use.
        batch.delete_range_cf(self.cf(CF_SYNC_CHUNKS), &[0u8; 4][..], &[0xffu8; 5][..]);
        self.write(batch)
    }

    /// Drops the state sync under way (its target and staged chunks), as
    /// long as it has not begun writing the state; returns whether it did.
    pub fn abandon_state_sync(&self) -> Result<bool, StoreError> {
        if self.get_meta(META_INSTALLING)?.is_some() {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_META), META_STATE_SYNC);
        batch.delete_range_cf(self.cf(CF_SYNC_CHUNKS), &[0u8; 4][..], &[0xffu8; 5][..]);
        self.write(batch)?;
        Ok(true)
    }

    /// The indexes of the chunks staged so far.
    pub fn staged_chunks(&self) -> Result<Vec<u32>, StoreError> {
        let mut staged = Vec::new();
        for entry in self
            .db
            .iterator_cf(self.cf(CF_SYNC_CHUNKS), rocksdb::IteratorMode::Start)
        {
            let (key, _) = entry?;
            let index: [u8; 4] = key.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                what: "state sync chunk key",
                detail: format!("{} bytes", key.len()),
            })?;
            staged.push(u32::from_be_bytes(index));
        }
        Ok(staged)
    }

    /// Keeps a checked chunk until the tree is built (not fsync'd: a chunk
    /// lost in a crash is fetched again).
    pub fn stage_chunk(&self, index: u32, chunk: &StateChunk) -> Result<(), StoreError> {
        self.db
            .put_cf(self.cf(CF_SYNC_CHUNKS), index.to_be_bytes(), encode(chunk))?;
        Ok(())
    }

    /// Builds the state tree from the staged chunks (every one of them must
    /// be there) and moves the tip to the snapshot. The chunks are checked
    /// again as they are read, and jmt checks the tree against the root
    /// after each: a staged chunk found damaged is dropped and `None`
    /// returned, to fetch it again and call this again (the writes so far
    /// are redone alike). From the first write on, the state sync can no
    /// longer be abandoned.
    pub fn finish_state_sync(&self) -> Result<Option<ChainTip>, StoreError> {
        let offer = self
            .state_sync_target()?
            .ok_or_else(|| unserved("no state sync under way".into()))?;
        let info = offer.info;
        let staged = self.staged_chunks()?;
        if let Some(missing) = (0..info.chunks).find(|i| staged.binary_search(i).is_err()) {
            return Err(unserved(format!("chunk {missing} was not fetched")));
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), META_INSTALLING, []);
        self.write(batch)?;
        let tree_error = |e: anyhow::Error| StoreError::Tree(e.to_string());
        let sink = Arc::new(CollectNodes::default());
        let mut governance = None;
        let mut restore = JellyfishMerkleRestore::<TreeHasher>::new_overwrite(
            sink.clone(),
            info.height,
            RootHash(info.state_root.0),
        )
        .map_err(tree_error)?;
        for index in 0..info.chunks {
            let bytes = self
                .db
                .get_pinned_cf(self.cf(CF_SYNC_CHUNKS), index.to_be_bytes())?
                .ok_or_else(|| unserved(format!("chunk {index} was not fetched")))?;
            let checked = decode::<StateChunk>("state sync chunk", &bytes)
                .map_err(|e| e.to_string())
                .and_then(|chunk| verify_chunk(&info, index, &chunk));
            drop(bytes);
            let mut verified = match checked {
                Ok(verified) => verified,
                Err(why) => {
                    tracing::warn!(
                        index,
                        why,
                        "a staged state sync chunk is damaged: fetching it again"
                    );
                    self.db
                        .delete_cf(self.cf(CF_SYNC_CHUNKS), index.to_be_bytes())?;
                    return Ok(None);
                }
            };
            if verified.leaves.is_empty() {
                continue;
            }
            let proof = verified.range_proof();
            restore
                .add_chunk(std::mem::take(&mut verified.leaves), proof)
                .map_err(tree_error)?;
            let mut batch = WriteBatch::default();
            for (key, address, account) in &verified.accounts {
                batch.put_cf(self.cf(CF_ACCOUNTS), address.0, account.encode());
                batch.put_cf(self.cf(CF_KEY_PREIMAGES), key.0, address.0);
            }
            if let Some(state) = &verified.governance {
                governance = Some(state.clone());
            }
            for nodes in sink.take() {
                self.write_nodes(&mut batch, &nodes);
            }
            self.db.write(batch)?;
        }
        restore.finish().map_err(tree_error)?;
        let mut batch = WriteBatch::default();
        for nodes in sink.take() {
            self.write_nodes(&mut batch, &nodes);
        }
        self.db.write(batch)?;
        let built = self.state_root_at(info.height)?;
        if built != info.state_root {
            return Err(StoreError::Tree(format!(
                "the restored tree has root {built}, not {}",
                info.state_root
            )));
        }
        let tip = ChainTip {
            height: info.height,
            hash: offer.header.hash(),
            state_root: info.state_root,
        };
        let governance = governance
            .ok_or_else(|| StoreError::Tree("the snapshot holds no governance state".into()))?;
        let mut batch = WriteBatch::default();
        // The history starts at the snapshot's sets: the genesis set the
        // empty store began with may not have signed the heights between.
        let first = governance.epochs[0].start;
        batch.delete_range_cf(
            self.cf(CF_VALIDATOR_SETS),
            0u64.to_be_bytes(),
            first.to_be_bytes(),
        );
        self.history
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|start, _| *start >= first);
        self.put_governance(&mut batch, governance);
        batch.put_cf(self.cf(CF_META), META_TIP, encode(&tip));
        batch.put_cf(self.cf(CF_META), META_BASE, encode(&offer.header));
        batch.put_cf(
            self.cf(CF_COMMITS),
            info.height.to_be_bytes(),
            encode(&offer.commit),
        );
        batch.put_cf(self.cf(CF_META), META_PREIMAGES, []);
        batch.delete_cf(self.cf(CF_META), META_STATE_SYNC);
        batch.delete_cf(self.cf(CF_META), META_INSTALLING);
        batch.delete_range_cf(self.cf(CF_SYNC_CHUNKS), &[0u8; 4][..], &[0xffu8; 5][..]);
        self.write(batch)?;
        tracing::info!(height = tip.height, state_root = %tip.state_root, accounts = info.accounts, "installed the state snapshot");
        Ok(Some(tip))
    }

    /// The header of the snapshot this store was state-synced from (it
    /// holds no blocks at or below it), if it was.
    pub fn base_header(&self) -> Result<Option<Header>, StoreError> {
        self.get_meta(META_BASE)?
            .map(|bytes| decode("base header", &bytes))
            .transpose()
    }
}

/// Collects the tree nodes jmt's restore writes, for the store to write
/// with the chunk's accounts.
#[derive(Default)]
struct CollectNodes(Mutex<Vec<NodeBatch>>);

impl CollectNodes {
    fn take(&self) -> Vec<NodeBatch> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl TreeWriter for CollectNodes {
    fn write_node_batch(&self, node_batch: &NodeBatch) -> anyhow::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(node_batch.clone());
        Ok(())
    }
}
