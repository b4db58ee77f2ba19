//! Error types of the ledger. Each message says what is wrong in words an
//! operator or a client can act on; the RPC layer passes them through.

use thiserror::Error;

use crate::crypto::{Address, Hash};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    #[error("bad hex: {0}")]
    Hex(String),
    #[error("expected {expected} bytes of hex, found {found}")]
    HexLength { expected: usize, found: usize },
    #[error("address {0} has a bad EIP-55 checksum")]
    BadChecksum(String),
    #[error("invalid public key")]
    InvalidPublicKey,
    #[error("invalid secret key")]
    InvalidSecretKey,
    #[error("invalid signature")]
    InvalidSignature,
    #[error("signature has a high s value (malleable); only low-s signatures are accepted")]
    HighS,
    #[error("invalid recovery id {0}: expected 0 or 1")]
    InvalidRecoveryId(u8),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error("key file {0}: {1}")]
    KeyFile(String, String),
}

/// Why a transaction is refused, by the decoder, the mempool or execution.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TxError {
    #[error("transaction is {size} bytes, more than the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("undecodable transaction: {0}")]
    Decode(String),
    #[error("memo is {len} bytes, more than the maximum of {max}")]
    MemoTooLong { len: usize, max: usize },
    #[error("bad signature: {0}")]
    BadSignature(CryptoError),
    #[error("wrong chain id {got}: this chain is {expected}")]
    WrongChainId { expected: u64, got: u64 },
    #[error("nonce too low: got {got}, account {sender} is at nonce {expected}")]
    NonceTooLow {
        sender: Address,
        expected: u64,
        got: u64,
    },
    #[error("nonce gap: got {got}, account {sender} expects nonce {expected}")]
    NonceGap {
        sender: Address,
        expected: u64,
        got: u64,
    },
    #[error("fee {got} is below the minimum fee {min}")]
    FeeTooLow { min: u128, got: u128 },
    #[error(
        "insufficient funds for gas * price + value: {sender} has {available}, needs {needed} (amount + fee)"
    )]
    InsufficientBalance {
        sender: Address,
        available: u128,
        needed: u128,
    },
    #[error("amount plus fee overflows")]
    CostOverflow,
    #[error("recipient balance would overflow")]
    BalanceOverflow,
    #[error(
        "transaction type 0x{0:02x} not supported: Tally accepts legacy (EIP-155), EIP-2930 and EIP-1559 value transfers"
    )]
    EthTypeNotSupported(u8),
    #[error("only replay-protected (EIP-155) transactions allowed over RPC")]
    EthNotReplayProtected,
    #[error("contract creation is not supported: Tally has no contracts; set `to`")]
    EthContractCreation,
    #[error(
        "transactions with data are not supported: Tally has no contracts, only value transfers"
    )]
    EthHasData,
    #[error("access lists are not supported: a value transfer reads no storage")]
    EthHasAccessList,
    #[error("intrinsic gas too low: gas {gas}, minimum needed {min}")]
    IntrinsicGasTooLow { gas: u64, min: u64 },
    #[error("max priority fee per gas higher than max fee per gas: {tip} > {cap}")]
    TipAboveFeeCap { tip: u128, cap: u128 },
    #[error(
        "max fee per gas less than block base fee: maxFeePerGas: {max_fee_per_gas}, baseFee: {base_fee}"
    )]
    FeeCapBelowBaseFee {
        max_fee_per_gas: u128,
        base_fee: u128,
    },
    #[error("governance: {0}")]
    Governance(#[from] crate::governance::GovernanceError),
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[cfg(feature = "store")]
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt {what} in the store: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error(
        "the database at {path} belongs to a chain with genesis {found}, not {expected}; \
         point --home at another directory or reset this one"
    )]
    GenesisMismatch {
        path: String,
        expected: Hash,
        found: Hash,
    },
    #[error(
        "the database at {path} is in store format {found}, this Tally reads format {expected}; \
         delete it with `tally reset` and resync from peers (or run the Tally that wrote it)"
    )]
    FormatMismatch {
        path: String,
        found: u32,
        expected: u32,
    },
    #[error("block {got} does not follow the latest committed height {latest}")]
    NotNext { latest: u64, got: u64 },
    #[error("state tree: {0}")]
    Tree(String),
    /// A snapshot or chunk that cannot be served or installed.
    #[error("snapshot: {0}")]
    Snapshot(String),
}

/// Why a proposed block is invalid (or could not be checked).
#[derive(Debug, Error)]
pub enum BlockError {
    #[error("wrong chain id {got}: this chain is {expected}")]
    WrongChainId { expected: u64, got: u64 },
    #[error("block height {got}, expected {expected}")]
    WrongHeight { expected: u64, got: u64 },
    #[error("previous hash {got}, expected {expected}")]
    WrongPrevHash { expected: Hash, got: Hash },
    #[error("transaction root {got}, computed {computed}")]
    WrongTxRoot { computed: Hash, got: Hash },
    #[error("state root {got}, computed {computed}")]
    WrongStateRoot { computed: Hash, got: Hash },
    #[error(
        "the header names other validator sets than the chain's: this height's is {expected}, the next's {expected_next}"
    )]
    WrongValidatorsHash { expected: Hash, expected_next: Hash },
    #[error("last commit hash {got}, computed {computed}")]
    WrongLastCommitHash { computed: Hash, got: Hash },
    #[error("block carries {count} transactions, more than the maximum of {max}")]
    TooManyTxs { count: usize, max: usize },
    #[error("block transactions take {bytes} bytes, more than the maximum of {max}")]
    TooManyBytes { bytes: usize, max: usize },
    #[error("transaction {index} ({hash}) is invalid: {error}")]
    InvalidTx {
        index: usize,
        hash: Hash,
        error: TxError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MempoolError {
    #[error(transparent)]
    Invalid(#[from] TxError),
    #[error("already known: transaction {0} is already in the mempool")]
    AlreadyKnown(Hash),
    #[error(
        "replacement transaction underpriced: a transaction from {sender} with nonce {nonce} \
         is already pending; a replacement must pay a fee of at least {min_fee}"
    )]
    ReplacementUnderpriced {
        sender: Address,
        nonce: u64,
        min_fee: u128,
    },
    #[error(
        "account {sender} already has {max} transactions waiting behind a nonce gap; \
         send nonce {next} first"
    )]
    QueueFull {
        sender: Address,
        max: usize,
        next: u64,
    },
    #[error(
        "nonce {got} is too far ahead: account {sender} is at {expected}, at most {max_gap} ahead is held"
    )]
    NonceTooFarAhead {
        sender: Address,
        expected: u64,
        got: u64,
        max_gap: u64,
    },
    #[error("mempool full: {reason}")]
    Full { reason: String },
}
