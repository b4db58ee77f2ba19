//! The Tally ledger: everything about accounts and blocks except how
//! validators agree on them.
//!
//! - [`crypto`]: keccak256, EIP-55 addresses, secp256k1 keys and recoverable
//!   signatures, key files.
//! - [`tx`]: transfers of every kind, their sign bytes and a bounded decoder.
//! - [`eth`]: signed Ethereum transactions carrying a value transfer.
//! - [`governance`]: validator-set changes proposed and approved on chain.
//! - [`block`]: headers, blocks, commit certificates, the transaction Merkle root.
//! - [`params`]: the chain-wide rules and initial state genesis gives.
//! - [`execution`]: building and verifying blocks against the state
//!   (feature `store`, on by default).
//! - [`state`]: accounts and the authenticated state tree (jmt).
//! - [`store`]: RocksDB tables, with one atomic write per committed block
//!   (feature `store`).
//! - [`snapshot`]: the state tree cut into chunks checked against a state
//!   root, for state sync.
//! - [`mempool`]: verified transactions waiting for a block.
//! - [`journal`]: the crash-safe file of transactions a node accepted from
//!   its own clients.

pub mod block;
pub mod crypto;
pub mod error;
pub mod eth;
#[cfg(feature = "store")]
pub mod execution;
pub mod governance;
pub mod journal;
pub mod mempool;
pub mod params;
pub mod receipt;
pub mod snapshot;
pub mod state;
#[cfg(feature = "store")]
pub mod store;
pub mod tx;

pub use block::{Block, Commit, CommitSig, Header, merkle_root};
pub use crypto::{Address, Hash, PublicKey, SecretKey, Signature, keccak256};
pub use error::{BlockError, CryptoError, MempoolError, StoreError, TxError};
pub use eth::{
    EthTransaction, EthTransfer, EthTxKind, MAX_ETH_TX_BYTES, TRANSFER_GAS, base_fee_per_gas,
};
#[cfg(feature = "store")]
pub use execution::{ExecutedBlock, Proposal, build_block, verify_block};
pub use governance::{
    GovernanceAction, GovernanceParams, GovernanceState, GovernanceTx, Member, SetChange,
    SignedGovernanceTx,
};
pub use journal::{Journal, Replay};
pub use mempool::{AddError, DropReason, Mempool, MempoolConfig, PoolEvents, PoolStats};
pub use params::{ExecParams, GenesisState};
pub use receipt::{Receipt, TxLocation, TxStatus};
pub use state::{Account, AccountProof, ProofLeaf, ProofParts, StateReader, verify_account_proof};
#[cfg(feature = "store")]
pub use store::{ChainTip, Store, TxRecord};
pub use tx::{NativeTransaction, SignedTransaction, Transaction, VerifiedTransaction};

/// Serde for `u128` amounts as decimal strings (JSON numbers lose precision
/// past 2^53 in most clients); numbers are accepted on input too.
pub mod serde_u128 {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        struct AmountVisitor;
        impl serde::de::Visitor<'_> for AmountVisitor {
            type Value = u128;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a non-negative integer amount, as a decimal string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<u128, E> {
                s.parse()
                    .map_err(|_| E::custom(format!("invalid amount {s:?}")))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<u128, E> {
                Ok(n.into())
            }
            fn visit_u128<E: serde::de::Error>(self, n: u128) -> Result<u128, E> {
                Ok(n)
            }
        }
        d.deserialize_any(AmountVisitor)
    }
}
