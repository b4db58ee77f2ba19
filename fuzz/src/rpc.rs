//! Whole JSON-RPC request bodies: jsonrpsee's HTTP service, with the limits
//! the node gives it (`tally_rpc::server_config` of the default `[rpc]`),
//! parses the body (single calls, batches, notifications), matches the
//! method and decodes its parameters as the `TallyApi` trait declares them;
//! each method then parses its strings with the helpers the node uses and
//! decodes and recovers a transaction as the node does before the mempool.
//! What a method reads from a store is not here (the store needs RocksDB):
//! the answers are fixed, so the target is the parsing, not the node's state.

use std::sync::OnceLock;

use http_body_util::BodyExt;
use tally_config::RpcConfig;
use tally_ledger::{Address, Hash, VerifiedTransaction};
use tally_rpc::jsonrpsee::core::{SubscriptionResult, async_trait};
use tally_rpc::jsonrpsee::server::{
    HttpBody, Methods, PendingSubscriptionSink, Server, ServerHandle, StopHandle, stop_channel,
};
use tally_rpc::jsonrpsee::types::ErrorObjectOwned;
use tally_rpc::{
    AccountInfo, BlockInfo, ConsensusState, NetPeerInfo, PeerInfo, Status, SubmitError,
    SubmitResult, TallyApiServer, TxInfo, TxStatusInfo, TxTrace, GovernanceInfo, ValidatorSetInfo, codes, error,
    parse_address, parse_hash, parse_hex,
};
use tower::Service;

struct Parser;

fn decode_tx(hex: &str) -> Result<Hash, ErrorObjectOwned> {
    let bytes = parse_hex("transaction", hex)?;
    let verified = VerifiedTransaction::from_bytes(&bytes)
        .map_err(|e| error(codes::INVALID_TX, e.to_string()))?;
    Ok(verified.hash())
}

fn unknown(hash: Hash) -> TxInfo {
    TxInfo {
        hash,
        status: TxStatusInfo::Unknown,
        tx: None,
        sender: None,
    }
}

#[async_trait]
impl TallyApiServer for Parser {
    async fn send_raw_transaction(&self, tx: String) -> Result<Hash, ErrorObjectOwned> {
        decode_tx(&tx)
    }

    async fn send_raw_transactions(
        &self,
        txs: Vec<String>,
    ) -> Result<Vec<SubmitResult>, ErrorObjectOwned> {
        Ok(txs
            .iter()
            .map(|tx| match decode_tx(tx) {
                Ok(hash) => SubmitResult {
                    hash: Some(hash),
                    error: None,
                },
                Err(e) => SubmitResult {
                    hash: None,
                    error: Some(SubmitError {
                        code: e.code(),
                        message: e.message().to_string(),
                    }),
                },
            })
            .collect())
    }

    async fn send_transaction_and_wait(
        &self,
        tx: String,
        _timeout_ms: Option<u64>,
    ) -> Result<TxInfo, ErrorObjectOwned> {
        decode_tx(&tx).map(unknown)
    }

    async fn get_transaction(&self, hash: String) -> Result<TxInfo, ErrorObjectOwned> {
        parse_hash(&hash).map(unknown)
    }

    async fn get_account_proof(
        &self,
        address: String,
        _height: Option<u64>,
    ) -> Result<tally_rpc::AccountProofInfo, ErrorObjectOwned> {
        parse_address(&address)?;
        // The store is not here: the node answers this for an empty chain.
        Err(error(
            codes::INVALID_PARAMS,
            "no certified header at height 0",
        ))
    }

    async fn get_account(&self, address: String) -> Result<AccountInfo, ErrorObjectOwned> {
        Ok(AccountInfo {
            address: parse_address(&address)?,
            balance: 0,
            nonce: 0,
            height: 0,
        })
    }

    async fn get_block_by_height(
        &self,
        _height: u64,
    ) -> Result<Option<BlockInfo>, ErrorObjectOwned> {
        Ok(None)
    }

    async fn get_block_by_hash(&self, hash: String) -> Result<Option<BlockInfo>, ErrorObjectOwned> {
        parse_hash(&hash).map(|_| None)
    }

    async fn get_latest_block(&self) -> Result<Option<BlockInfo>, ErrorObjectOwned> {
        Ok(None)
    }

    async fn status(&self) -> Result<Status, ErrorObjectOwned> {
        Ok(Status {
            chain_id: 1,
            chain_name: "fuzz".into(),
            genesis_hash: Hash::ZERO,
            peer_id: String::new(),
            listen_addrs: Vec::new(),
            node_version: String::new(),
            latest_height: 0,
            latest_hash: Hash::ZERO,
            latest_time: 0,
            state_root: Hash::ZERO,
            syncing: false,
            peer_count: 0,
            validator: Some(Address::ZERO),
            mempool_size: 0,
            mempool_queued: 0,
            mempool_bytes: 0,
        })
    }

    async fn validators(&self, height: Option<u64>) -> Result<ValidatorSetInfo, ErrorObjectOwned> {
        Ok(ValidatorSetInfo {
            height: height.unwrap_or(1),
            since: 1,
            total_power: 0,
            validators_hash: Hash::ZERO,
            validators: Vec::new(),
        })
    }

    async fn governance_proposals(&self) -> Result<GovernanceInfo, ErrorObjectOwned> {
        Ok(GovernanceInfo {
            height: 0,
            pending: Vec::new(),
            finished: Vec::new(),
            upcoming: Vec::new(),
        })
    }

    async fn peers(&self) -> Result<Vec<PeerInfo>, ErrorObjectOwned> {
        Ok(Vec::new())
    }

    async fn consensus_state(&self) -> Result<ConsensusState, ErrorObjectOwned> {
        Ok(ConsensusState {
            height: 1,
            round: 0,
            step: "propose".into(),
            proposer: None,
            proposal: None,
            locked_round: None,
            locked_block: None,
            valid_round: None,
            valid_block: None,
            decided: false,
            prevotes: Vec::new(),
            precommits: Vec::new(),
            missing_prevotes: Vec::new(),
            missing_precommits: Vec::new(),
        })
    }

    async fn net_info(&self) -> Result<Vec<NetPeerInfo>, ErrorObjectOwned> {
        Ok(Vec::new())
    }

    async fn trace_transaction(&self, hash: String) -> Result<Option<TxTrace>, ErrorObjectOwned> {
        parse_hash(&hash)?;
        Ok(None)
    }

    async fn health(&self) -> Result<String, ErrorObjectOwned> {
        Ok("ok".into())
    }

    async fn subscribe_new_blocks(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        pending
            .reject(error(codes::INTERNAL, "not over HTTP"))
            .await;
        Ok(())
    }

    async fn subscribe_transaction(
        &self,
        pending: PendingSubscriptionSink,
        hash: String,
    ) -> SubscriptionResult {
        let e = parse_hash(&hash).err();
        pending
            .reject(e.unwrap_or_else(|| error(codes::INTERNAL, "not over HTTP")))
            .await;
        Ok(())
    }
}

struct Rig {
    runtime: tokio::runtime::Runtime,
    methods: Methods,
    config: RpcConfig,
    stop: StopHandle,
    _handle: ServerHandle,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let (stop, handle) = stop_channel();
        Rig {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime"),
            methods: Parser.into_rpc().into(),
            config: RpcConfig::default(),
            stop,
            _handle: handle,
        }
    })
}

/// One HTTP POST of `data` as the body. The service must answer (never
/// panic), with JSON whenever it says 200 and within the response limit.
pub fn rpc_body(data: &[u8]) {
    let rig = rig();
    let mut service = Server::builder()
        .set_config(tally_rpc::server_config(&rig.config))
        .to_service_builder()
        .build(rig.methods.clone(), rig.stop.clone());
    let request = http::Request::post("/")
        .header("content-type", "application/json")
        .body(HttpBody::from(data.to_vec()))
        .expect("a request");
    rig.runtime.block_on(async {
        let response = service.call(request).await.expect("the service answers");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a response body")
            .to_bytes();
        assert!(
            body.len() <= rig.config.max_response_body_bytes as usize,
            "a response of {} bytes is over the limit",
            body.len()
        );
        if status == http::StatusCode::OK && !body.is_empty() {
            let value: serde_json::Value =
                serde_json::from_slice(&body).expect("a 200 response is JSON");
            // `null`: what jsonrpsee answers a notification (no id) with.
            assert!(
                value.is_object() || value.is_array() || value.is_null(),
                "a response is an object, a batch or null: {value}"
            );
        }
    });
}
