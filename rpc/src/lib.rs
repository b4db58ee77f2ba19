//! Tally's JSON-RPC API, declared once: the [`TallyApi`] trait generates both
//! the server trait the node implements (`TallyApiServer`) and a typed client
//! (`TallyApiClient`, for any jsonrpsee HTTP or WebSocket client).
//!
//! Every method here is in the `tally_` namespace; [`eth`] declares the
//! Ethereum methods served on the same port. Amounts are decimal strings
//! (they are `u128`), hashes and addresses `0x`-prefixed hex, raw
//! transactions hex of their borsh encoding (with or without `0x`).
//! Rejections are JSON-RPC errors with a code from [`codes`] and a message
//! that says what is wrong.

use std::str::FromStr;
use std::time::Duration;

use jsonrpsee::proc_macros::rpc;
use jsonrpsee::server::{BatchRequestConfig, PingConfig, ServerConfig};
use jsonrpsee::types::ErrorObjectOwned;
use serde::{Deserialize, Serialize};
use tally_config::RpcConfig;
use tally_ledger::{Address, Commit, Hash, Header, Receipt, SignedTransaction, TxLocation};

pub use jsonrpsee;

pub mod eth;

/// Application error codes (JSON-RPC reserves -32768..-32000 for itself;
/// `-32602` invalid params is used for input that cannot be parsed).
pub mod codes {
    /// Hex, address, hash or parameter that cannot be parsed.
    pub const INVALID_PARAMS: i32 = -32602;
    /// Something failed inside the node (storage, shutting down).
    pub const INTERNAL: i32 = -32603;
    /// The transaction cannot be decoded, is too large, or its signature is bad.
    pub const INVALID_TX: i32 = 1001;
    /// The transaction is for another chain.
    pub const WRONG_CHAIN: i32 = 1002;
    /// The nonce is below the account's or too far ahead, or the sender
    /// already has the most transactions allowed behind a nonce gap.
    pub const BAD_NONCE: i32 = 1003;
    /// The sender cannot pay amount plus fee, or the fee is below the minimum.
    pub const CANNOT_PAY: i32 = 1004;
    /// The mempool is full; retry later.
    pub const MEMPOOL_FULL: i32 = 1005;
    /// The transaction is already in the mempool.
    pub const ALREADY_KNOWN: i32 = 1006;
    /// Waiting for a transaction to commit timed out (it may still commit).
    pub const TIMEOUT: i32 = 1007;
    /// The transaction was dropped from the mempool before committing.
    pub const DROPPED: i32 = 1008;
    /// A transaction with this sender and nonce is pending, and this one does
    /// not pay enough more to replace it (the message gives the fee needed).
    pub const REPLACEMENT_UNDERPRICED: i32 = 1009;
    /// The node is checking as many submissions as it will queue; retry
    /// after a short backoff.
    pub const BUSY: i32 = 1010;
    /// The node holds as many subscriptions (over all connections) as it
    /// allows; retry later or unsubscribe others.
    pub const TOO_MANY_SUBSCRIPTIONS: i32 = 1011;
    /// The node does not hold what was asked for at that height (it
    /// state-synced from a later snapshot, or pruned it).
    pub const NOT_HELD: i32 = 1012;
    /// A governance transaction the validator-set rules refuse (not a
    /// validator, unknown or finished proposal, a duplicate approval, a
    /// change that would break the set's limits); the message says which.
    pub const GOVERNANCE: i32 = 1013;
}

/// An error with one of the [`codes`].
pub fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

/// Parses `0x`-prefixed or bare hex.
pub fn parse_hex(what: &str, s: &str) -> Result<Vec<u8>, ErrorObjectOwned> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    hex::decode(digits).map_err(|e| error(codes::INVALID_PARAMS, format!("bad hex in {what}: {e}")))
}

/// Parses a `0x`-prefixed hash.
pub fn parse_hash(s: &str) -> Result<Hash, ErrorObjectOwned> {
    Hash::from_str(s).map_err(|e| error(codes::INVALID_PARAMS, format!("bad hash {s:?}: {e}")))
}

/// Parses a `0x`-prefixed address.
pub fn parse_address(s: &str) -> Result<Address, ErrorObjectOwned> {
    Address::from_str(s)
        .map_err(|e| error(codes::INVALID_PARAMS, format!("bad address {s:?}: {e}")))
}

/// jsonrpsee's own limits from the node's `[rpc]` section: body sizes,
/// connections (in flight), subscriptions per connection, batch length and
/// WebSocket pings. The transport around it (socket slots, deadlines, Host
/// and CORS filters) is the node's.
pub fn server_config(config: &RpcConfig) -> ServerConfig {
    let mut server_config = ServerConfig::builder()
        .max_request_body_size(config.max_request_body_bytes)
        .max_response_body_size(config.max_response_body_bytes)
        .max_connections(config.max_connections)
        .max_subscriptions_per_connection(config.max_subscriptions_per_connection)
        .set_batch_request_config(BatchRequestConfig::Limit(config.max_batch_len));
    if config.ws_ping_interval_ms > 0 {
        let interval = Duration::from_millis(config.ws_ping_interval_ms);
        server_config = server_config.enable_ws_ping(
            PingConfig::new()
                .ping_interval(interval)
                .inactive_limit(Duration::from_millis(config.ws_idle_timeout_ms).max(interval))
                .max_failures(1),
        );
    }
    server_config.build()
}

/// Where a transaction is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum TxStatusInfo {
    /// Not in this node's mempool nor in any committed block.
    Unknown,
    /// In the mempool, waiting for a block.
    Pending,
    /// In the mempool behind a nonce gap: an earlier nonce of its sender is
    /// missing, and it cannot go into a block until that one arrives.
    Queued,
    /// Left this node's mempool without being committed, and why (it was
    /// replaced, evicted for a higher fee, expired, or became invalid).
    Dropped { reason: String },
    /// In a committed block.
    Committed {
        height: u64,
        index: u32,
        block_hash: Hash,
        receipt: Receipt,
    },
}

/// A transaction and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxInfo {
    pub hash: Hash,
    #[serde(flatten)]
    pub status: TxStatusInfo,
    /// The transaction and its sender, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tx: Option<SignedTransaction>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sender: Option<Address>,
}

impl TxInfo {
    pub fn is_committed(&self) -> bool {
        matches!(self.status, TxStatusInfo::Committed { .. })
    }

    pub fn location(&self) -> Option<TxLocation> {
        match self.status {
            TxStatusInfo::Committed { height, index, .. } => Some(TxLocation { height, index }),
            _ => None,
        }
    }
}

/// An account at the latest committed height.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub address: Address,
    #[serde(with = "tally_ledger::serde_u128")]
    pub balance: u128,
    pub nonce: u64,
    /// The height the account was read at.
    pub height: u64,
}

/// A committed block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    pub hash: Hash,
    pub header: Header,
    /// Hashes of the block's transactions, in order.
    pub tx_hashes: Vec<Hash>,
    /// The certificate of the previous block carried by this one.
    pub last_commit: Option<Commit>,
}

/// A new block, as sent to `tally_subscribeNewBlocks` subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSummary {
    pub height: u64,
    pub hash: Hash,
    pub time: u64,
    pub tx_count: u32,
    pub state_root: Hash,
}

/// The node and its view of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub chain_id: u64,
    pub chain_name: String,
    pub genesis_hash: Hash,
    /// The node's libp2p peer id.
    pub peer_id: String,
    /// Addresses the node's p2p network listens on.
    pub listen_addrs: Vec<String>,
    pub node_version: String,
    pub latest_height: u64,
    pub latest_hash: Hash,
    /// Time of the latest block (ms since the Unix epoch; 0 at genesis).
    pub latest_time: u64,
    pub state_root: Hash,
    /// Whether the node knows peers ahead of it and is fetching blocks.
    pub syncing: bool,
    pub peer_count: u32,
    /// This node's validator address, if it runs with a validator key.
    pub validator: Option<Address>,
    /// Transactions in the mempool, executable and queued.
    pub mempool_size: u32,
    /// Of them, those waiting behind a nonce gap.
    #[serde(default)]
    pub mempool_queued: u32,
    pub mempool_bytes: u64,
}

/// One member of the validator set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorInfo {
    pub name: String,
    pub address: Address,
    pub power: u64,
    /// Compressed SEC1, `0x` hex.
    pub public_key: String,
}

/// The validator set of a height.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorSetInfo {
    pub height: u64,
    /// The first height this set signs (1 for the genesis set).
    pub since: u64,
    pub total_power: u64,
    /// What headers of this height name as `validators_hash`.
    pub validators_hash: Hash,
    /// By address.
    pub validators: Vec<ValidatorInfo>,
}

/// The governance state after the latest block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernanceInfo {
    /// The latest committed height.
    pub height: u64,
    /// Proposals waiting for approvals, by id.
    pub pending: Vec<tally_ledger::governance::Proposal>,
    /// The latest enacted, expired or failed ones, oldest first.
    pub finished: Vec<tally_ledger::governance::Proposal>,
    /// Sets already enacted that sign from a later height.
    pub upcoming: Vec<ValidatorSetInfo>,
}

/// A connected peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub addrs: Vec<String>,
}

/// One validator's vote in the current round, as this node holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteInfo {
    pub validator: Address,
    /// The block voted for; `None` is a nil vote.
    pub block: Option<Hash>,
}

/// Where this node's consensus stands (`tally_consensusState`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsensusState {
    pub height: u64,
    pub round: u32,
    /// `"propose"`, `"prevote"` or `"precommit"`.
    pub step: String,
    /// The proposer of the current round.
    pub proposer: Option<Address>,
    /// The block this node proposed or received for the current round.
    pub proposal: Option<Hash>,
    pub locked_round: Option<u32>,
    pub locked_block: Option<Hash>,
    pub valid_round: Option<u32>,
    pub valid_block: Option<Hash>,
    /// Whether this node decided the current height (it waits to commit or
    /// for the next height to start).
    pub decided: bool,
    /// The prevotes and precommits of the current round held here, by
    /// validator (an equivocator may appear twice).
    pub prevotes: Vec<VoteInfo>,
    pub precommits: Vec<VoteInfo>,
    /// Validators of the height with no prevote, and no precommit, held in
    /// the current round.
    pub missing_prevotes: Vec<Address>,
    pub missing_precommits: Vec<Address>,
}

/// A connected peer in detail (`tally_netInfo`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetPeerInfo {
    pub peer_id: String,
    pub addrs: Vec<String>,
    /// `"inbound"` or `"outbound"`: who dialled the first connection.
    pub direction: String,
    /// When the first connection was made (ms since the Unix epoch).
    pub connected_since_ms: u64,
    /// Gossip payload and block-sync response bytes received from it.
    pub bytes_in: u64,
    /// Block-sync request and response bytes sent to it (gossip is
    /// forwarded by gossipsub to its mesh and not counted per peer).
    pub bytes_out: u64,
    /// Its gossipsub score (negative: it misbehaved).
    pub score: Option<f64>,
    /// The validator whose votes this peer publishes as their gossip
    /// author (signed by its node key): a strong hint, not a proof (a peer
    /// may publish another validator's votes as its own).
    pub validator: Option<Address>,
    /// The height it last answered a status request with.
    pub reported_height: Option<u64>,
}

/// A proposal this node saw the transaction in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceProposal {
    pub height: u64,
    pub round: u32,
    pub proposer: Address,
    /// When this node built or checked the block (ms since the Unix epoch).
    pub at_ms: u64,
}

/// One node's record of a transaction's life (`tally_traceTransaction`);
/// times are this node's clock, in ms since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxTrace {
    pub hash: Hash,
    /// When this node first saw it, and where from: `"rpc"`, `"journal"`,
    /// `"peer <peer id>"` (gossip) or `"block"` (first seen in a block).
    pub first_seen_ms: u64,
    pub source: String,
    /// When this node gossiped it on (in one of its own batches).
    pub gossiped_ms: Option<u64>,
    /// The proposals this node saw it in, first ones first (at most 8).
    pub proposals: Vec<TraceProposal>,
    pub committed_height: Option<u64>,
    pub committed_ms: Option<u64>,
    /// Why and when it left this node's mempool uncommitted.
    pub dropped_reason: Option<String>,
    pub dropped_ms: Option<u64>,
}

/// The outcome of one transaction of a batch submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResult {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hash: Option<Hash>,
    /// Set when rejected: the error code and message a single submission
    /// would have returned.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<SubmitError>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitError {
    pub code: i32,
    pub message: String,
}

/// An account (or its absence) at a height, with what a client needs to
/// check it without trusting the node: the header whose state root the
/// proof leads to and the certificate by which the validators decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountProofInfo {
    pub address: Address,
    /// `null`: no such account (its absence is what the proof shows).
    pub account: Option<tally_ledger::Account>,
    pub height: u64,
    pub header: Header,
    pub commit: Commit,
    pub proof: tally_ledger::ProofParts,
}

/// Tally's JSON-RPC API.
#[rpc(server, client, namespace = "tally")]
pub trait TallyApi {
    /// Submits a signed transaction (hex of its encoding) to the mempool and
    /// returns its hash once admitted.
    #[method(name = "sendRawTransaction")]
    async fn send_raw_transaction(&self, tx: String) -> Result<Hash, ErrorObjectOwned>;

    /// Submits many signed transactions at once; one result per transaction,
    /// in order (a rejected one does not fail the others).
    #[method(name = "sendRawTransactions")]
    async fn send_raw_transactions(
        &self,
        txs: Vec<String>,
    ) -> Result<Vec<SubmitResult>, ErrorObjectOwned>;

    /// Submits a transaction and waits until it is committed (or until
    /// `timeout_ms`, default 30 000, passes: error `TIMEOUT`).
    #[method(name = "sendTransactionAndWait")]
    async fn send_transaction_and_wait(
        &self,
        tx: String,
        timeout_ms: Option<u64>,
    ) -> Result<TxInfo, ErrorObjectOwned>;

    /// A transaction: pending, committed (with height, index and receipt) or
    /// unknown.
    #[method(name = "getTransaction")]
    async fn get_transaction(&self, hash: String) -> Result<TxInfo, ErrorObjectOwned>;

    /// Balance and nonce of an account (zero for one never seen).
    #[method(name = "getAccount")]
    async fn get_account(&self, address: String) -> Result<AccountInfo, ErrorObjectOwned>;

    /// An account at `height` (default: the latest) with its Merkle proof
    /// against that height's header and the header's certificate.
    #[method(name = "getAccountProof")]
    async fn get_account_proof(
        &self,
        address: String,
        height: Option<u64>,
    ) -> Result<AccountProofInfo, ErrorObjectOwned>;

    #[method(name = "getBlockByHeight")]
    async fn get_block_by_height(&self, height: u64)
    -> Result<Option<BlockInfo>, ErrorObjectOwned>;

    #[method(name = "getBlockByHash")]
    async fn get_block_by_hash(&self, hash: String) -> Result<Option<BlockInfo>, ErrorObjectOwned>;

    /// The latest committed block (none before block 1).
    #[method(name = "getLatestBlock")]
    async fn get_latest_block(&self) -> Result<Option<BlockInfo>, ErrorObjectOwned>;

    #[method(name = "status")]
    async fn status(&self) -> Result<Status, ErrorObjectOwned>;

    /// The validator set of `height` (default: the next height to decide;
    /// known up to two heights above the latest block).
    #[method(name = "validators")]
    async fn validators(&self, height: Option<u64>) -> Result<ValidatorSetInfo, ErrorObjectOwned>;

    /// Validator-set proposals: pending (with approvals), and the latest
    /// enacted, expired or failed.
    #[method(name = "governanceProposals")]
    async fn governance_proposals(&self) -> Result<GovernanceInfo, ErrorObjectOwned>;

    #[method(name = "peers")]
    async fn peers(&self) -> Result<Vec<PeerInfo>, ErrorObjectOwned>;

    /// Height, round, step, lock and valid value, and the votes of the
    /// current round this node holds.
    #[method(name = "consensusState")]
    async fn consensus_state(&self) -> Result<ConsensusState, ErrorObjectOwned>;

    /// Every connected peer: addresses, direction, since when, bytes, score,
    /// the validator it speaks for, its reported height.
    #[method(name = "netInfo")]
    async fn net_info(&self) -> Result<Vec<NetPeerInfo>, ErrorObjectOwned>;

    /// This node's record of a transaction (null if it is not among the
    /// last 100,000 it saw): where it came from, when it was gossiped,
    /// proposed, committed or dropped.
    #[method(name = "traceTransaction")]
    async fn trace_transaction(&self, hash: String) -> Result<Option<TxTrace>, ErrorObjectOwned>;

    /// `"ok"` while the node runs.
    #[method(name = "health")]
    async fn health(&self) -> Result<String, ErrorObjectOwned>;

    /// Every newly committed block (WebSocket only).
    #[subscription(name = "subscribeNewBlocks" => "newBlock", unsubscribe = "unsubscribeNewBlocks", item = BlockSummary)]
    async fn subscribe_new_blocks(&self) -> jsonrpsee::core::SubscriptionResult;

    /// A transaction's status now and at every change, until it is committed
    /// or dropped (WebSocket only).
    #[subscription(name = "subscribeTransaction" => "transaction", unsubscribe = "unsubscribeTransaction", item = TxInfo)]
    async fn subscribe_transaction(&self, hash: String) -> jsonrpsee::core::SubscriptionResult;
}
