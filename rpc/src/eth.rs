//! The Ethereum JSON-RPC methods wallets and libraries call (`eth_`, `net_`,
//! `web3_`), declared as [`EthApi`], with the result shapes they parse:
//! quantities are minimal `0x` hex, data is even-length hex (`0x` when empty),
//! hashes and addresses are lower-case hex, unknown blocks, transactions and
//! pending receipts are `null`.
//!
//! Tally has no contracts, so the answers are those of a chain without any:
//! `eth_getCode` and `eth_call` give `0x`, `eth_getLogs` `[]`, every account
//! is an externally owned one.

use std::fmt;
use std::str::FromStr;

use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tally_ledger::{Address, Hash};

/// Error code geth uses for a refused transaction and other server-side
/// refusals; wallets read the message (geth's words), not the code.
pub const SERVER_ERROR: i32 = -32000;

/// keccak256 of the RLP of an empty list: the uncles hash of every block.
pub const EMPTY_UNCLES_HASH: &str =
    "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347";

/// A zero bloom filter (256 bytes): no block has logs.
pub fn empty_bloom() -> String {
    format!("0x{}", "00".repeat(256))
}

/// An address serialised in lower-case hex, as Ethereum nodes send it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthAddress(pub Address);

impl Serialize for EthAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(self.0.0)))
    }
}

impl<'de> Deserialize<'de> for EthAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Address::from_str(&s)
            .map(EthAddress)
            .map_err(serde::de::Error::custom)
    }
}

/// An unsigned integer as a minimal `0x` hex quantity (`0x0`, `0x5208`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(pub u128);

impl Quantity {
    /// Parses `0x` hex (or, leniently, a decimal string).
    pub fn parse(s: &str) -> Result<Quantity, String> {
        let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some("") => return Err(format!("empty hex quantity {s:?}")),
            Some(digits) => u128::from_str_radix(digits, 16),
            None => s.parse(),
        };
        parsed
            .map(Quantity)
            .map_err(|e| format!("bad quantity {s:?}: {e}"))
    }

    /// The value as a u64, or an error naming `what`.
    pub fn to_u64(self, what: &str) -> Result<u64, String> {
        u64::try_from(self.0).map_err(|_| format!("{what} {} does not fit 64 bits", self.0))
    }
}

impl From<u64> for Quantity {
    fn from(n: u64) -> Self {
        Quantity(n.into())
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    /// A hex string, or a JSON number (some tools send block counts so).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Quantity::parse(&s).map_err(serde::de::Error::custom),
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(Quantity::from)
                .ok_or_else(|| serde::de::Error::custom(format!("bad quantity {n}"))),
            other => Err(serde::de::Error::custom(format!("bad quantity {other}"))),
        }
    }
}

/// The hex of a big-endian unsigned integer with its leading zeros dropped
/// (signature `r` and `s` are quantities).
pub fn be_quantity(bytes: &[u8]) -> String {
    let digits = hex::encode(bytes);
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        "0x0".into()
    } else {
        format!("0x{trimmed}")
    }
}

/// Which block a read is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockTag {
    /// The latest committed block; `safe` and `finalized` mean the same on
    /// a chain with instant finality.
    Latest,
    /// The latest committed state with the mempool on top (only nonces
    /// differ: pending transfers change no balance until committed).
    Pending,
    /// Genesis.
    Earliest,
    Number(u64),
    Hash(Hash),
}

impl BlockTag {
    fn parse(s: &str) -> Result<BlockTag, String> {
        match s {
            "latest" | "safe" | "finalized" => Ok(BlockTag::Latest),
            "pending" => Ok(BlockTag::Pending),
            "earliest" => Ok(BlockTag::Earliest),
            hash if hash.len() == 66 => Hash::from_str(hash)
                .map(BlockTag::Hash)
                .map_err(|e| format!("bad block hash {hash:?}: {e}")),
            number => Quantity::parse(number)
                .and_then(|q| q.to_u64("block number"))
                .map(BlockTag::Number),
        }
    }
}

impl Serialize for BlockTag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BlockTag::Latest => s.serialize_str("latest"),
            BlockTag::Pending => s.serialize_str("pending"),
            BlockTag::Earliest => s.serialize_str("earliest"),
            BlockTag::Number(n) => Quantity::from(*n).serialize(s),
            BlockTag::Hash(h) => h.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for BlockTag {
    /// A tag, a hex number or a block hash as a string, or an EIP-1898
    /// object (`{"blockNumber": ...}` or `{"blockHash": ...}`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Eip1898 {
            block_number: Option<String>,
            block_hash: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Object(Eip1898),
        }
        let tag = match Form::deserialize(d)? {
            Form::Text(s) => BlockTag::parse(&s),
            Form::Object(Eip1898 {
                block_hash: Some(h),
                ..
            }) => Hash::from_str(&h)
                .map(BlockTag::Hash)
                .map_err(|e| format!("bad block hash {h:?}: {e}")),
            Form::Object(Eip1898 {
                block_number: Some(n),
                ..
            }) => BlockTag::parse(&n),
            Form::Object(_) => Err("a block object needs blockNumber or blockHash".into()),
        };
        tag.map_err(serde::de::Error::custom)
    }
}

/// A transaction request as `eth_estimateGas` and `eth_call` take it; every
/// field is optional and unknown ones are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<EthAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<EthAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gas: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gas_price: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fee_per_gas: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

impl TxRequest {
    /// Whether the request carries call data (`input` or `data`, not `0x`).
    pub fn has_data(&self) -> bool {
        [&self.input, &self.data]
            .into_iter()
            .flatten()
            .any(|d| !matches!(d.as_str(), "" | "0x" | "0X"))
    }
}

/// A transaction as `eth_getTransactionByHash` and full blocks show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EthTx {
    pub hash: Hash,
    pub from: EthAddress,
    pub to: Option<EthAddress>,
    pub nonce: Quantity,
    pub value: Quantity,
    pub gas: Quantity,
    pub gas_price: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fee_per_gas: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority_fee_per_gas: Option<Quantity>,
    pub input: String,
    pub r#type: Quantity,
    pub chain_id: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_list: Option<Vec<serde_json::Value>>,
    pub v: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y_parity: Option<Quantity>,
    pub r: String,
    pub s: String,
    pub block_hash: Option<Hash>,
    pub block_number: Option<Quantity>,
    pub transaction_index: Option<Quantity>,
}

/// A receipt as `eth_getTransactionReceipt` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EthReceipt {
    pub transaction_hash: Hash,
    pub transaction_index: Quantity,
    pub block_hash: Hash,
    pub block_number: Quantity,
    pub from: EthAddress,
    pub to: Option<EthAddress>,
    pub cumulative_gas_used: Quantity,
    pub gas_used: Quantity,
    pub effective_gas_price: Quantity,
    pub contract_address: Option<EthAddress>,
    pub logs: Vec<serde_json::Value>,
    pub logs_bloom: String,
    pub status: Quantity,
    pub r#type: Quantity,
}

/// A block's transactions: their hashes, or the whole objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EthBlockTxs {
    Hashes(Vec<Hash>),
    Full(Vec<EthTx>),
}

/// A block in geth's shape, with the proof-of-work fields a client still
/// parses set to zero.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EthBlock {
    pub number: Quantity,
    pub hash: Hash,
    pub parent_hash: Hash,
    pub nonce: String,
    pub sha3_uncles: String,
    pub logs_bloom: String,
    pub transactions_root: Hash,
    pub state_root: Hash,
    pub receipts_root: Hash,
    pub miner: EthAddress,
    pub difficulty: Quantity,
    pub total_difficulty: Quantity,
    pub extra_data: String,
    pub size: Quantity,
    pub gas_limit: Quantity,
    pub gas_used: Quantity,
    pub timestamp: Quantity,
    pub mix_hash: Hash,
    pub base_fee_per_gas: Quantity,
    pub uncles: Vec<Hash>,
    pub transactions: EthBlockTxs,
}

/// `eth_feeHistory`'s answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeeHistory {
    pub oldest_block: Quantity,
    pub base_fee_per_gas: Vec<Quantity>,
    pub gas_used_ratio: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<Vec<Vec<Quantity>>>,
}

#[rpc(server, client)]
pub trait EthApi {
    #[method(name = "eth_chainId")]
    async fn chain_id(&self) -> Result<Quantity, ErrorObjectOwned>;

    /// The chain id in decimal, as a string.
    #[method(name = "net_version")]
    async fn net_version(&self) -> Result<String, ErrorObjectOwned>;

    #[method(name = "web3_clientVersion")]
    async fn client_version(&self) -> Result<String, ErrorObjectOwned>;

    #[method(name = "eth_blockNumber")]
    async fn block_number(&self) -> Result<Quantity, ErrorObjectOwned>;

    #[method(name = "eth_getBalance")]
    async fn get_balance(
        &self,
        address: EthAddress,
        block: Option<BlockTag>,
    ) -> Result<Quantity, ErrorObjectOwned>;

    /// `pending` counts this node's mempool.
    #[method(name = "eth_getTransactionCount")]
    async fn get_transaction_count(
        &self,
        address: EthAddress,
        block: Option<BlockTag>,
    ) -> Result<Quantity, ErrorObjectOwned>;

    #[method(name = "eth_getCode")]
    async fn get_code(
        &self,
        address: EthAddress,
        block: Option<BlockTag>,
    ) -> Result<String, ErrorObjectOwned>;

    /// The base fee plus the suggested tip.
    #[method(name = "eth_gasPrice")]
    async fn gas_price(&self) -> Result<Quantity, ErrorObjectOwned>;

    #[method(name = "eth_maxPriorityFeePerGas")]
    async fn max_priority_fee_per_gas(&self) -> Result<Quantity, ErrorObjectOwned>;

    #[method(name = "eth_feeHistory")]
    async fn fee_history(
        &self,
        block_count: Quantity,
        newest: BlockTag,
        percentiles: Option<Vec<f64>>,
    ) -> Result<FeeHistory, ErrorObjectOwned>;

    /// 21,000 for a value transfer; an error for anything else.
    #[method(name = "eth_estimateGas")]
    async fn estimate_gas(
        &self,
        request: TxRequest,
        block: Option<BlockTag>,
    ) -> Result<Quantity, ErrorObjectOwned>;

    #[method(name = "eth_call")]
    async fn call(
        &self,
        request: TxRequest,
        block: Option<BlockTag>,
    ) -> Result<String, ErrorObjectOwned>;

    /// Returns keccak256 of the raw bytes: the hash the wallet computed.
    #[method(name = "eth_sendRawTransaction")]
    async fn send_raw_transaction(&self, raw: String) -> Result<Hash, ErrorObjectOwned>;

    #[method(name = "eth_getTransactionByHash")]
    async fn get_transaction_by_hash(&self, hash: Hash) -> Result<Option<EthTx>, ErrorObjectOwned>;

    /// `null` until the transaction is committed.
    #[method(name = "eth_getTransactionReceipt")]
    async fn get_transaction_receipt(
        &self,
        hash: Hash,
    ) -> Result<Option<EthReceipt>, ErrorObjectOwned>;

    #[method(name = "eth_getBlockByNumber")]
    async fn get_block_by_number(
        &self,
        block: BlockTag,
        full: Option<bool>,
    ) -> Result<Option<EthBlock>, ErrorObjectOwned>;

    #[method(name = "eth_getBlockByHash")]
    async fn get_block_by_hash(
        &self,
        hash: Hash,
        full: Option<bool>,
    ) -> Result<Option<EthBlock>, ErrorObjectOwned>;

    #[method(name = "eth_getLogs")]
    async fn get_logs(
        &self,
        filter: serde_json::Value,
    ) -> Result<Vec<serde_json::Value>, ErrorObjectOwned>;

    /// `false`, or the sync progress while the node catches up.
    #[method(name = "eth_syncing")]
    async fn syncing(&self) -> Result<serde_json::Value, ErrorObjectOwned>;

    #[method(name = "eth_accounts")]
    async fn accounts(&self) -> Result<Vec<EthAddress>, ErrorObjectOwned>;

    #[method(name = "net_peerCount")]
    async fn peer_count(&self) -> Result<Quantity, ErrorObjectOwned>;

    #[method(name = "net_listening")]
    async fn listening(&self) -> Result<bool, ErrorObjectOwned>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_minimal_hex() {
        assert_eq!(Quantity(0).to_string(), "0x0");
        assert_eq!(Quantity(21_000).to_string(), "0x5208");
        assert_eq!(Quantity::parse("0x5208"), Ok(Quantity(21_000)));
        assert!(Quantity::parse("0x").is_err());
        assert_eq!(be_quantity(&[0, 0, 1, 0]), "0x100");
        assert_eq!(be_quantity(&[0; 32]), "0x0");
    }

    #[test]
    fn block_tags_parse_in_every_form() {
        let tag = |v: serde_json::Value| serde_json::from_value::<BlockTag>(v);
        assert_eq!(tag("latest".into()).expect("valid"), BlockTag::Latest);
        assert_eq!(tag("finalized".into()).expect("valid"), BlockTag::Latest);
        assert_eq!(tag("pending".into()).expect("valid"), BlockTag::Pending);
        assert_eq!(tag("earliest".into()).expect("valid"), BlockTag::Earliest);
        assert_eq!(tag("0x2a".into()).expect("valid"), BlockTag::Number(42));
        let hash = format!("0x{}", "ab".repeat(32));
        assert_eq!(
            tag(hash.clone().into()).expect("valid"),
            BlockTag::Hash(hash.parse().expect("valid"))
        );
        assert_eq!(
            tag(serde_json::json!({ "blockHash": hash })).expect("valid"),
            BlockTag::Hash(hash.parse().expect("valid"))
        );
        assert_eq!(
            tag(serde_json::json!({ "blockNumber": "0x1" })).expect("valid"),
            BlockTag::Number(1)
        );
        assert!(tag("newest".into()).is_err());
        assert!(tag(serde_json::json!({})).is_err());
    }
}
