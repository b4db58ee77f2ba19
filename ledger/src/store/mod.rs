//! The RocksDB store: blocks, indexes, receipts, accounts and the state tree.
//!
//! Column families are typed tables with big-endian integer keys (so byte
//! order is numeric order) and borsh values. Committing a block writes the
//! block, its receipts, its indexes, every changed account and the new
//! state-tree nodes in one atomic, fsync'd `WriteBatch`: after a crash the
//! store holds either all of a block or none of it.
//!
//! The validator sets of the chain's history are kept by start height (one
//! entry per change, read in O(log n)), on disk and in memory.

mod prune;
pub use prune::Pruned;
mod snapshot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::storage::{LeafNode, NibblePath, Node, NodeBatch, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, Version};
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};

use crate::block::{Block, Commit, Header};
use crate::crypto::{Address, Hash};
use crate::error::StoreError;
use crate::execution::{ExecutedBlock, Receipt};
use crate::governance::{ACTIVATION_DELAY, GovernanceState, Member, governance_key};
pub use crate::receipt::TxLocation;
use crate::state::{Account, AccountProof, StateReader, TreeHasher, account_key};

const CF_BLOCKS: &str = "blocks";
const CF_BLOCK_HASHES: &str = "block_hashes";
const CF_TX_INDEX: &str = "tx_index";
const CF_RECEIPTS: &str = "receipts";
const CF_ACCOUNTS: &str = "accounts";
const CF_META: &str = "meta";
const CF_TREE_NODES: &str = "tree_nodes";
const CF_TREE_VALUES: &str = "tree_values";
const CF_COMMITS: &str = "commits";
/// Tree key (keccak256 of the address) to address, to serve snapshots.
const CF_KEY_PREIMAGES: &str = "key_preimages";
/// Checked chunks of a state sync under way, by index.
const CF_SYNC_CHUNKS: &str = "state_sync_chunks";
/// Tree nodes by the version from which no later version needs them
/// (written only while pruning is on).
const CF_STALE_NODES: &str = "stale_nodes";
/// Validator sets by the first height they sign (big-endian u64).
const CF_VALIDATOR_SETS: &str = "validator_sets";

const COLUMN_FAMILIES: [&str; 13] = [
    CF_BLOCKS,
    CF_BLOCK_HASHES,
    CF_TX_INDEX,
    CF_RECEIPTS,
    CF_ACCOUNTS,
    CF_META,
    CF_TREE_NODES,
    CF_TREE_VALUES,
    CF_COMMITS,
    CF_KEY_PREIMAGES,
    CF_SYNC_CHUNKS,
    CF_STALE_NODES,
    CF_VALIDATOR_SETS,
];

/// Memtable size of one column family, and of all of them together.
const WRITE_BUFFER_BYTES: usize = 16 * 1024 * 1024;
const TOTAL_WRITE_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// The write-ahead logs kept at most, in all.
const MAX_WAL_BYTES: u64 = 32 * 1024 * 1024;

const META_GENESIS_HASH: &[u8] = b"genesis_hash";
const META_TIP: &[u8] = b"tip";
/// The on-disk format. 2: blocks hold versioned transactions (native or
/// Ethereum). 3: headers name the next validator set and the state holds
/// the governance state. A store without the key was written in format 1.
const META_FORMAT: &[u8] = b"format";
const FORMAT: u32 = 3;
/// The latest governance state (also in the state tree).
const META_GOVERNANCE: &[u8] = b"governance";
/// The snapshot a state sync under way installs ([`SnapshotOffer`]).
const META_STATE_SYNC: &[u8] = b"state_sync";
/// The header of the snapshot a state-synced store started from: the
/// store holds no block at or below it.
const META_BASE: &[u8] = b"base";
/// Present when every account's tree key has its address recorded (stores
/// initialised before that lack it and serve no snapshots).
const META_PREIMAGES: &[u8] = b"preimages";
/// Present while a state sync writes the snapshot's state: from then on it
/// can only be finished, never abandoned.
const META_INSTALLING: &[u8] = b"state_sync_installing";

pub use crate::params::GenesisState;

/// The latest committed point of the chain. At height 0 (nothing but
/// genesis), `hash` is the genesis hash, which block 1 names as its parent.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ChainTip {
    pub height: u64,
    pub hash: Hash,
    pub state_root: Hash,
}

/// A committed transaction with its location, sender and receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRecord {
    pub tx: crate::tx::SignedTransaction,
    pub location: TxLocation,
    /// Recovered when the block was executed, so that reading a committed
    /// transaction never costs a signature recovery.
    pub sender: Address,
    pub receipt: Receipt,
}

/// What the transaction index holds for a transaction id.
#[derive(BorshSerialize, BorshDeserialize)]
struct TxIndexEntry {
    location: TxLocation,
    sender: Address,
}

#[derive(Debug)]
pub struct Store {
    db: DB,
    path: PathBuf,
    genesis_hash: Hash,
    /// Whether commits record which tree nodes they make stale, for
    /// [`Store::prune`].
    pruning: std::sync::atomic::AtomicBool,
    /// Every validator set known, by the first height it signs.
    history: RwLock<BTreeMap<u64, Arc<Vec<Member>>>>,
    /// The latest governance state (as in `meta`).
    governance: RwLock<Arc<GovernanceState>>,
}

/// A validator set of the chain's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAt {
    /// The first height it signs.
    pub start: u64,
    pub members: Arc<Vec<Member>>,
}

fn decode<T: BorshDeserialize>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    borsh::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh encoding into a Vec cannot fail")
}

/// The key of the tree's root node at `version`.
fn root_key(version: Version) -> NodeKey {
    NodeKey::new(version, std::iter::empty().collect::<NibblePath>())
}

/// The key of a stale-node record: the version it is stale since, then
/// the node's key (so records sort by that version).
fn stale_key(since: Version, node: &NodeKey) -> Vec<u8> {
    let mut key = since.to_be_bytes().to_vec();
    key.extend_from_slice(&encode(node));
    key
}

fn tree_value_key(key_hash: &KeyHash, version: Version) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(&key_hash.0);
    key[32..].copy_from_slice(&version.to_be_bytes());
    key
}

impl Store {
    /// Opens (creating if needed) the store at `path` for the chain of
    /// `genesis`. A new store is initialised with the genesis accounts; an
    /// existing one must belong to the same genesis.
    pub fn open(path: &Path, genesis: &GenesisState) -> Result<Store, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Bound memtable memory: by default each of the column families may
        // hold 2 x 64 MiB before flushing, which under steady load shows as
        // a node's resident memory climbing past 350 MB.
        options.set_write_buffer_size(WRITE_BUFFER_BYTES);
        options.set_db_write_buffer_size(TOTAL_WRITE_BUFFER_BYTES);
        // A write-ahead log file is kept until every column family with data
        // in it has flushed, and some families take few writes: without a
        // cap the logs held 100 MB of a 140 MB store after 20,000 small
        // blocks. Past the cap the families holding the oldest log flush.
        options.set_max_total_wal_size(MAX_WAL_BYTES);
        let descriptors = COLUMN_FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, options.clone()));
        let db = DB::open_cf_descriptors(&options, path, descriptors)?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            genesis_hash: genesis.hash,
            pruning: std::sync::atomic::AtomicBool::new(false),
            history: RwLock::new(BTreeMap::new()),
            governance: RwLock::new(Arc::new(GovernanceState::genesis(
                genesis.validators.clone(),
            ))),
        };
        match store.get_meta(META_GENESIS_HASH)? {
            Some(found) => {
                let found: Hash = decode("genesis hash", &found)?;
                if found != genesis.hash {
                    return Err(StoreError::GenesisMismatch {
                        path: path.display().to_string(),
                        expected: genesis.hash,
                        found,
                    });
                }
                let format = match store.get_meta(META_FORMAT)? {
                    Some(bytes) => decode("store format", &bytes)?,
                    None => 1,
                };
                if format != FORMAT {
                    return Err(StoreError::FormatMismatch {
                        path: path.display().to_string(),
                        found: format,
                        expected: FORMAT,
                    });
                }
            }
            None => store.init_genesis(genesis)?,
        }
        store.load_history()?;
        Ok(store)
    }

    /// Reads the set history and the governance state into memory.
    fn load_history(&self) -> Result<(), StoreError> {
        let state = self
            .get_meta(META_GOVERNANCE)?
            .ok_or_else(|| StoreError::Corrupt {
                what: "governance state",
                detail: "missing".into(),
            })?;
        *self.governance.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(decode("governance state", &state)?);
        let mut history = BTreeMap::new();
        for entry in self
            .db
            .iterator_cf(self.cf(CF_VALIDATOR_SETS), IteratorMode::Start)
        {
            let (key, value) = entry?;
            let start: [u8; 8] = key.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                what: "validator set key",
                detail: format!("{} bytes", key.len()),
            })?;
            let members: Vec<Member> = decode("validator set", &value)?;
            history.insert(u64::from_be_bytes(start), Arc::new(members));
        }
        *self.history.write().unwrap_or_else(|e| e.into_inner()) = history;
        Ok(())
    }

    /// The validator set that signs `height`: `None` past the sets the
    /// committed state fixes (more than [`ACTIVATION_DELAY`] above the tip)
    /// or before the history this store holds (a state-synced store knows
    /// the sets from its snapshot on).
    pub fn validator_set_at(&self, height: u64) -> Result<Option<SetAt>, StoreError> {
        if height == 0 || height > self.tip()?.height + ACTIVATION_DELAY {
            return Ok(None);
        }
        let history = self.history.read().unwrap_or_else(|e| e.into_inner());
        Ok(history
            .range(..=height)
            .next_back()
            .map(|(start, members)| SetAt {
                start: *start,
                members: members.clone(),
            }))
    }

    /// Every validator set this store knows, oldest first.
    pub fn validator_sets(&self) -> Vec<SetAt> {
        let history = self.history.read().unwrap_or_else(|e| e.into_inner());
        history
            .iter()
            .map(|(start, members)| SetAt {
                start: *start,
                members: members.clone(),
            })
            .collect()
    }

    /// The latest committed governance state.
    pub fn governance_state(&self) -> Arc<GovernanceState> {
        self.governance
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `state` into `batch` as the latest governance state, with the
    /// sets it names that the history lacks, and makes both the store's
    /// view at once, before the batch is written: a set is read only up to
    /// two heights above the tip, and the tip moves with the batch, so no
    /// reader sees a new tip without its sets. (If the write fails the node
    /// stops.)
    fn put_governance(&self, batch: &mut WriteBatch, state: GovernanceState) {
        batch.put_cf(self.cf(CF_META), META_GOVERNANCE, state.encode());
        let mut history = self.history.write().unwrap_or_else(|e| e.into_inner());
        for epoch in &state.epochs {
            if let std::collections::btree_map::Entry::Vacant(entry) = history.entry(epoch.start) {
                batch.put_cf(
                    self.cf(CF_VALIDATOR_SETS),
                    epoch.start.to_be_bytes(),
                    encode(&epoch.members),
                );
                entry.insert(Arc::new(epoch.members.clone()));
            }
        }
        drop(history);
        *self.governance.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
    }

    fn init_genesis(&self, genesis: &GenesisState) -> Result<(), StoreError> {
        let mut changes: Vec<(Address, Account)> = Vec::with_capacity(genesis.accounts.len());
        for (address, balance) in &genesis.accounts {
            changes.push((
                *address,
                Account {
                    nonce: 0,
                    balance: *balance,
                },
            ));
        }
        let governance = GovernanceState::genesis(genesis.validators.clone());
        let (state_root, tree) = self.state_update(&changes, Some(&governance), 0)?;
        let mut batch = WriteBatch::default();
        self.write_state(&mut batch, &changes, tree);
        self.put_governance(&mut batch, governance);
        batch.put_cf(self.cf(CF_META), META_GENESIS_HASH, encode(&genesis.hash));
        batch.put_cf(self.cf(CF_META), META_FORMAT, encode(&FORMAT));
        batch.put_cf(self.cf(CF_META), META_PREIMAGES, []);
        let tip = ChainTip {
            height: 0,
            hash: genesis.hash,
            state_root,
        };
        batch.put_cf(self.cf(CF_META), META_TIP, encode(&tip));
        self.write(batch)?;
        tracing::info!(genesis = %genesis.hash, %state_root, accounts = changes.len(), "initialised store from genesis");
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is created when the store opens")
    }

    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_META), key)?)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    /// The latest committed height, block hash and state root.
    pub fn tip(&self) -> Result<ChainTip, StoreError> {
        let bytes = self.get_meta(META_TIP)?.ok_or(StoreError::Corrupt {
            what: "chain tip",
            detail: "missing".into(),
        })?;
        decode("chain tip", &bytes)
    }

    pub fn latest_height(&self) -> Result<u64, StoreError> {
        Ok(self.tip()?.height)
    }

    pub fn block_by_height(&self, height: u64) -> Result<Option<Block>, StoreError> {
        self.db
            .get_pinned_cf(self.cf(CF_BLOCKS), height.to_be_bytes())?
            .map(|bytes| decode("block", &bytes))
            .transpose()
    }

    /// The header of the block at `height` and how many transactions the
    /// block holds, read without decoding the transactions.
    pub fn header_by_height(&self, height: u64) -> Result<Option<(Header, u32)>, StoreError> {
        let Some(bytes) = self
            .db
            .get_pinned_cf(self.cf(CF_BLOCKS), height.to_be_bytes())?
        else {
            return Ok(None);
        };
        // A block's encoding starts with its header, then the length of
        // its transaction list.
        let mut rest: &[u8] = &bytes;
        let corrupt = |e: std::io::Error| StoreError::Corrupt {
            what: "block",
            detail: e.to_string(),
        };
        let header = <Header as BorshDeserialize>::deserialize(&mut rest).map_err(corrupt)?;
        let txs = <u32 as BorshDeserialize>::deserialize(&mut rest).map_err(corrupt)?;
        Ok(Some((header, txs)))
    }

    pub fn height_by_hash(&self, hash: &Hash) -> Result<Option<u64>, StoreError> {
        self.db
            .get_pinned_cf(self.cf(CF_BLOCK_HASHES), hash.0)?
            .map(|bytes| {
                let arr: [u8; 8] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    what: "block height",
                    detail: format!("{} bytes", bytes.len()),
                })?;
                Ok(u64::from_be_bytes(arr))
            })
            .transpose()
    }

    pub fn block_by_hash(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
        match self.height_by_hash(hash)? {
            Some(height) => self.block_by_height(height),
            None => Ok(None),
        }
    }

    /// The commit certificate that decided the block at `height`, as this
    /// node saw it (block `height + 1` carries one too, possibly signed by a
    /// different quorum). Blocks committed without one have none.
    pub fn seen_commit(&self, height: u64) -> Result<Option<Commit>, StoreError> {
        self.db
            .get_pinned_cf(self.cf(CF_COMMITS), height.to_be_bytes())?
            .map(|bytes| decode("commit", &bytes))
            .transpose()
    }

    /// A committed transaction, its location and its receipt.
    pub fn transaction(&self, hash: &Hash) -> Result<Option<TxRecord>, StoreError> {
        let Some(bytes) = self.db.get_pinned_cf(self.cf(CF_TX_INDEX), hash.0)? else {
            return Ok(None);
        };
        let TxIndexEntry { location, sender } = decode("tx location", &bytes)?;
        let block = self
            .block_by_height(location.height)?
            .ok_or(StoreError::Corrupt {
                what: "tx index",
                detail: format!("tx {hash} points at missing block {}", location.height),
            })?;
        let tx = block
            .txs
            .get(location.index as usize)
            .cloned()
            .ok_or(StoreError::Corrupt {
                what: "tx index",
                detail: format!("tx {hash} points past the end of block {}", location.height),
            })?;
        let receipt = self
            .db
            .get_pinned_cf(self.cf(CF_RECEIPTS), hash.0)?
            .ok_or(StoreError::Corrupt {
                what: "receipts",
                detail: format!("no receipt for committed tx {hash}"),
            })
            .and_then(|bytes| decode("receipt", &bytes))?;
        Ok(Some(TxRecord {
            tx,
            location,
            sender,
            receipt,
        }))
    }

    /// The senders of committed transactions, from the index (`None` for
    /// an id not committed here).
    pub fn senders(&self, ids: &[Hash]) -> Result<Vec<Option<Address>>, StoreError> {
        let cf = self.cf(CF_TX_INDEX);
        self.db
            .batched_multi_get_cf(cf, ids.iter().map(|id| &id.0), false)
            .into_iter()
            .map(|entry| {
                entry?
                    .map(|bytes| decode::<TxIndexEntry>("tx location", &bytes).map(|e| e.sender))
                    .transpose()
            })
            .collect()
    }

    /// The account at `address` at `height` with a Merkle proof against that
    /// height's state root (`header.state_root`, or the genesis root at 0).
    pub fn account_with_proof(
        &self,
        address: &Address,
        height: u64,
    ) -> Result<(Option<Account>, AccountProof), StoreError> {
        let view = TreeView(self);
        let tree = JellyfishMerkleTree::<_, TreeHasher>::new(&view);
        let (value, proof) = tree
            .get_with_proof(account_key(address), height)
            .map_err(|e| StoreError::Tree(e.to_string()))?;
        let account = value.map(|v| decode("account", &v)).transpose()?;
        Ok((account, proof))
    }

    /// The state root at `height` (height 0: the genesis state).
    pub fn state_root_at(&self, height: u64) -> Result<Hash, StoreError> {
        let view = TreeView(self);
        let root = JellyfishMerkleTree::<_, TreeHasher>::new(&view)
            .get_root_hash(height)
            .map_err(|e| StoreError::Tree(e.to_string()))?;
        Ok(Hash(root.0))
    }

    /// The state root after applying `changes` on top of the latest state, as
    /// tree version `version`, with the tree nodes to write on commit.
    pub(crate) fn state_update(
        &self,
        changes: &[(Address, Account)],
        governance: Option<&GovernanceState>,
        version: Version,
    ) -> Result<(Hash, TreeUpdateBatch), StoreError> {
        let view = TreeView(self);
        let tree = JellyfishMerkleTree::<_, TreeHasher>::new(&view);
        let values = changes
            .iter()
            .map(|(address, account)| (account_key(address), Some(account.encode())))
            .chain(governance.map(|g| (KeyHash(governance_key().0), Some(g.encode()))));
        let (root, mut batch) = tree
            .put_value_set(values, version)
            .map_err(|e| StoreError::Tree(e.to_string()))?;
        if changes.is_empty() && governance.is_none() && version > 0 {
            // jmt only writes a root for versions that change something, but
            // every height must have one: the next update starts from it.
            let previous = root_key(version - 1);
            let root_node = view
                .get_node_option(&previous)
                .map_err(|e| StoreError::Tree(e.to_string()))?
                .ok_or_else(|| {
                    StoreError::Tree(format!("no state root at version {}", version - 1))
                })?;
            batch.node_batch.insert_node(root_key(version), root_node);
            // Only that height reads the previous copy from now on.
            batch
                .stale_node_index_batch
                .insert(jmt::storage::StaleNodeIndex {
                    stale_since_version: version,
                    node_key: previous,
                });
        }
        Ok((Hash(root.0), batch))
    }

    fn write_state(
        &self,
        batch: &mut WriteBatch,
        changes: &[(Address, Account)],
        tree: TreeUpdateBatch,
    ) {
        for (address, account) in changes {
            batch.put_cf(self.cf(CF_ACCOUNTS), address.0, account.encode());
            // An account enters the tree by receiving (or in genesis), so
            // with nonce 0: writing the preimage then covers every account,
            // and a sender's changes (nonce above 0) cost nothing more.
            if account.nonce == 0 {
                batch.put_cf(self.cf(CF_KEY_PREIMAGES), account_key(address).0, address.0);
            }
        }
        self.write_nodes(batch, &tree.node_batch);
        if self.pruning.load(std::sync::atomic::Ordering::Relaxed) {
            for stale in &tree.stale_node_index_batch {
                batch.put_cf(
                    self.cf(CF_STALE_NODES),
                    stale_key(stale.stale_since_version, &stale.node_key),
                    [],
                );
            }
        }
    }

    fn write_nodes(&self, batch: &mut WriteBatch, nodes: &NodeBatch) {
        for (key, node) in nodes.nodes() {
            batch.put_cf(self.cf(CF_TREE_NODES), encode(key), encode(node));
        }
        for ((version, key_hash), value) in nodes.values() {
            batch.put_cf(
                self.cf(CF_TREE_VALUES),
                tree_value_key(key_hash, *version),
                encode(value),
            );
        }
    }

    /// Commits an executed block in one atomic, fsync'd write. The block must
    /// be the next height and have been executed against the current tip.
    pub fn commit(&self, executed: ExecutedBlock) -> Result<ChainTip, StoreError> {
        self.commit_with(executed, None)
    }

    /// [`Store::commit`], also recording the certificate that decided the
    /// block in the same write (see [`Store::seen_commit`]).
    pub fn commit_with(
        &self,
        executed: ExecutedBlock,
        seen_commit: Option<&Commit>,
    ) -> Result<ChainTip, StoreError> {
        let tip = self.tip()?;
        let block = &executed.block;
        let height = block.height();
        if height != tip.height + 1 || block.header.prev_hash != tip.hash {
            return Err(StoreError::NotNext {
                latest: tip.height,
                got: height,
            });
        }
        let n = block.txs.len();
        let lens = [
            executed.tx_hashes.len(),
            executed.receipts.len(),
            executed.senders.len(),
        ];
        if lens.iter().any(|&len| len != n) {
            // Indexing part of a block would lose transactions silently.
            return Err(StoreError::Corrupt {
                what: "executed block",
                detail: format!(
                    "{n} transactions, {} ids, {} receipts, {} senders",
                    executed.tx_hashes.len(),
                    executed.receipts.len(),
                    executed.senders.len()
                ),
            });
        }
        let hash = block.hash();
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_BLOCKS), height.to_be_bytes(), block.encode());
        batch.put_cf(self.cf(CF_BLOCK_HASHES), hash.0, height.to_be_bytes());
        if let Some(commit) = seen_commit {
            batch.put_cf(self.cf(CF_COMMITS), height.to_be_bytes(), encode(commit));
        }
        for (index, ((tx, receipt), sender)) in executed
            .tx_hashes
            .iter()
            .zip(&executed.receipts)
            .zip(&executed.senders)
            .enumerate()
        {
            let entry = TxIndexEntry {
                location: TxLocation {
                    height,
                    index: index as u32,
                },
                sender: *sender,
            };
            batch.put_cf(self.cf(CF_TX_INDEX), tx.0, encode(&entry));
            batch.put_cf(self.cf(CF_RECEIPTS), tx.0, encode(receipt));
        }
        self.write_state(&mut batch, &executed.changes, executed.tree);
        if let Some(state) = executed.governance {
            self.put_governance(&mut batch, state);
        }
        let new_tip = ChainTip {
            height,
            hash,
            state_root: block.header.state_root,
        };
        batch.put_cf(self.cf(CF_META), META_TIP, encode(&new_tip));
        self.write(batch)?;
        Ok(new_tip)
    }
}

impl StateReader for Store {
    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_ACCOUNTS), address.0)?
            .map(|bytes| decode("account", &bytes))
            .transpose()?
            .unwrap_or_default())
    }

    fn governance(&self) -> Result<Arc<GovernanceState>, StoreError> {
        Ok(self.governance_state())
    }
}

/// The state tree's view of the store (jmt's storage interface).
struct TreeView<'a>(&'a Store);

impl TreeReader for TreeView<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let store = self.0;
        Ok(store
            .db
            .get_pinned_cf(store.cf(CF_TREE_NODES), encode(node_key))?
            .map(|bytes| decode("state tree node", &bytes))
            .transpose()?)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let store = self.0;
        // The newest value at or below `max_version`: keys sort by key hash,
        // then by big-endian version, so seek to the last one not after it.
        let seek = tree_value_key(&key_hash, max_version);
        let mut iter = store.db.iterator_cf(
            store.cf(CF_TREE_VALUES),
            IteratorMode::From(&seek, Direction::Reverse),
        );
        match iter.next().transpose()? {
            Some((key, value)) if key.len() == 40 && key[..32] == key_hash.0 => {
                Ok(decode::<Option<OwnedValue>>("state tree value", &value)?)
            }
            _ => Ok(None),
        }
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only jmt's chunked restore uses this; Tally catches up by replaying
        // blocks, never by restoring a tree from chunks.
        anyhow::bail!("restoring the state tree from chunks is not supported")
    }
}
