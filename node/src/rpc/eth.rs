//! The `eth_` methods: Tally's ledger seen as an Ethereum chain with no
//! contracts, over the same store, mempool and recovery pool as `tally_`.
//!
//! How a native Tally transfer looks here: a legacy (type `0x0`) transaction
//! with `gas` 21,000, `gasPrice` its fee / 21,000 (rounded up, so that
//! `gasUsed x gasPrice` is never less than what it paid), its memo as
//! `input`, and `v` 27 or 28 (its signature is over Tally's sign bytes, not an
//! Ethereum payload, so no Ethereum tool can re-verify it). Every transaction
//! uses 21,000 gas; a block's gas limit is its transaction limit x 21,000.

use std::sync::atomic::Ordering;

use jsonrpsee::core::async_trait;
use jsonrpsee::types::ErrorObjectOwned;
use tally_ledger::{
    AddError, Address, Block, EthTransaction, Hash, Header, MAX_ETH_TX_BYTES, MempoolError,
    SignedTransaction, StateReader, TRANSFER_GAS, TxError, TxRecord, base_fee_per_gas,
};
use tally_rpc::eth::{
    BlockTag, EMPTY_UNCLES_HASH, EthAddress, EthApiServer, EthBlock, EthBlockTxs, EthReceipt,
    EthTx, FeeHistory, Quantity, SERVER_ERROR, TxRequest, be_quantity, empty_bloom,
};
use tally_rpc::{codes, error, parse_hex};

use super::{RpcContext, internal};

/// Most blocks one `eth_feeHistory` call reads.
const MAX_FEE_HISTORY: u64 = 128;
/// Most reward percentiles one `eth_feeHistory` call asks for (geth's limit).
const MAX_REWARD_PERCENTILES: usize = 100;

/// The tip suggested to wallets: blocks are not full at the base fee, so
/// none is needed (a higher one still buys priority under load).
const SUGGESTED_TIP: u128 = 0;

fn server_error(message: impl Into<String>) -> ErrorObjectOwned {
    error(SERVER_ERROR, message)
}

fn invalid(message: impl Into<String>) -> ErrorObjectOwned {
    error(codes::INVALID_PARAMS, message)
}

/// A refusal in geth's words (wallets match on them); the node's own
/// failures stay internal.
fn add_error(e: &AddError) -> ErrorObjectOwned {
    match e {
        AddError::Store(store) => internal(store),
        AddError::Rejected(MempoolError::Invalid(TxError::NonceGap { .. })) => {
            server_error(format!("nonce too high: {e}"))
        }
        AddError::Rejected(_) => server_error(e.to_string()),
    }
}

/// Where a committed transaction is, for the answers that show it.
#[derive(Clone, Copy)]
struct Included {
    block_hash: Hash,
    height: u64,
    index: u32,
}

impl RpcContext {
    fn base_fee(&self) -> u128 {
        base_fee_per_gas(self.exec.min_fee)
    }

    fn gas_limit(&self) -> u64 {
        (self.exec.max_block_txs as u64).saturating_mul(TRANSFER_GAS)
    }

    /// The committed height a tag names (`None`: no such block yet).
    fn height_of(&self, tag: Option<BlockTag>) -> Result<Option<u64>, ErrorObjectOwned> {
        let tip = self.store.latest_height().map_err(internal)?;
        Ok(match tag.unwrap_or(BlockTag::Latest) {
            BlockTag::Latest | BlockTag::Pending => Some(tip),
            BlockTag::Earliest => Some(0),
            BlockTag::Number(n) => (n <= tip).then_some(n),
            BlockTag::Hash(hash) => self.store.height_by_hash(&hash).map_err(internal)?,
        })
    }

    /// The account at the height a tag names; geth's words when there is
    /// no such block.
    fn account_at(
        &self,
        address: Address,
        tag: Option<BlockTag>,
    ) -> Result<tally_ledger::Account, ErrorObjectOwned> {
        let height = self
            .height_of(tag)?
            .ok_or_else(|| server_error("header not found"))?;
        if height == self.store.latest_height().map_err(internal)? {
            return self.store.account(&address).map_err(internal);
        }
        let (account, _proof) = self
            .store
            .account_with_proof(&address, height)
            .map_err(internal)?;
        Ok(account.unwrap_or_default())
    }

    /// The Ethereum view of a transaction; `at` is where it was committed.
    fn eth_tx(&self, tx: &SignedTransaction, from: Address, at: Option<Included>) -> EthTx {
        let (block_hash, block_number, transaction_index) = match at {
            Some(at) => (
                Some(at.block_hash),
                Some(at.height.into()),
                Some(u64::from(at.index).into()),
            ),
            None => (None, None, None),
        };
        let gas = u128::from(TRANSFER_GAS);
        // Tally-signed kinds show as legacy transactions; a governance one,
        // which has no Ethereum counterpart, goes to nobody with its borsh
        // action as input.
        let (to, nonce, value, fee, input, chain_id, sig) = match tx {
            SignedTransaction::Native(n) => (
                Some(EthAddress(n.tx.to)),
                n.tx.nonce,
                n.tx.amount,
                n.tx.fee,
                n.tx.memo.clone(),
                n.tx.chain_id,
                &n.signature.0,
            ),
            SignedTransaction::Governance(g) => (
                None,
                g.tx.nonce,
                0,
                g.tx.fee,
                borsh::to_vec(&g.tx.action).unwrap_or_default(),
                g.tx.chain_id,
                &g.signature.0,
            ),
            SignedTransaction::Ethereum(eth) => {
                let t = eth.transfer();
                let sig = &eth.signature().0;
                let parity = u128::from(sig[64]);
                let typed = t.kind.type_byte() != 0;
                // Once included the price paid; before, the most it may pay.
                let gas_price = match at {
                    Some(_) => tx
                        .fee(self.exec.min_fee)
                        .map_or(t.max_fee_per_gas, |fee| fee / gas),
                    None => t.max_fee_per_gas,
                };
                let dynamic = t.kind == tally_ledger::EthTxKind::DynamicFee;
                return EthTx {
                    hash: eth.hash(),
                    from: EthAddress(from),
                    to: Some(EthAddress(t.to)),
                    nonce: t.nonce.into(),
                    value: Quantity(t.value),
                    gas: t.gas_limit.into(),
                    gas_price: Quantity(gas_price),
                    max_fee_per_gas: dynamic.then_some(Quantity(t.max_fee_per_gas)),
                    max_priority_fee_per_gas: dynamic
                        .then_some(Quantity(t.max_priority_fee_per_gas)),
                    input: "0x".into(),
                    r#type: Quantity(t.kind.type_byte().into()),
                    chain_id: t.chain_id.into(),
                    access_list: typed.then(Vec::new),
                    v: Quantity(if typed {
                        parity
                    } else {
                        u128::from(t.chain_id) * 2 + 35 + parity
                    }),
                    y_parity: typed.then_some(Quantity(parity)),
                    r: be_quantity(&sig[..32]),
                    s: be_quantity(&sig[32..64]),
                    block_hash,
                    block_number,
                    transaction_index,
                };
            }
        };
        EthTx {
            hash: tx.hash(),
            from: EthAddress(from),
            to,
            nonce: nonce.into(),
            value: Quantity(value),
            gas: Quantity(gas),
            gas_price: Quantity(fee.div_ceil(gas)),
            max_fee_per_gas: None,
            max_priority_fee_per_gas: None,
            input: format!("0x{}", hex::encode(input)),
            r#type: Quantity(0),
            chain_id: chain_id.into(),
            access_list: None,
            v: Quantity(27 + u128::from(sig[64])),
            y_parity: None,
            r: be_quantity(&sig[..32]),
            s: be_quantity(&sig[32..64]),
            block_hash,
            block_number,
            transaction_index,
        }
    }

    fn receipt(&self, hash: Hash, record: &TxRecord, block_hash: Hash) -> EthReceipt {
        let gas = u128::from(TRANSFER_GAS);
        let index = u128::from(record.location.index);
        EthReceipt {
            transaction_hash: hash,
            transaction_index: Quantity(index),
            block_hash,
            block_number: record.location.height.into(),
            from: EthAddress(record.sender),
            to: record.tx.to().map(EthAddress),
            cumulative_gas_used: Quantity((index + 1) * gas),
            gas_used: Quantity(gas),
            effective_gas_price: Quantity(record.receipt.fee_paid.div_ceil(gas)),
            contract_address: None,
            logs: Vec::new(),
            logs_bloom: empty_bloom(),
            // Committed blocks hold only transactions that succeeded.
            status: Quantity(1),
            r#type: Quantity(
                record
                    .tx
                    .as_ethereum()
                    .map_or(0, |e| e.transfer().kind.type_byte())
                    .into(),
            ),
        }
    }

    /// The senders of committed transactions, from the store's index
    /// (recovered once, when their block was executed).
    fn committed_senders(
        &self,
        txs: &[SignedTransaction],
    ) -> Result<Vec<Address>, ErrorObjectOwned> {
        let hashes: Vec<Hash> = txs.iter().map(SignedTransaction::hash).collect();
        self.store
            .senders(&hashes)
            .map_err(internal)?
            .into_iter()
            .zip(&hashes)
            .map(|(sender, hash)| {
                sender
                    .ok_or_else(|| internal(format!("committed transaction {hash} is not indexed")))
            })
            .collect()
    }

    /// Block 0: the genesis, which is no stored block, as wallets and tools
    /// that walk to it expect one.
    fn genesis_block(&self, full: bool) -> Result<EthBlock, ErrorObjectOwned> {
        let header = Header {
            chain_id: self.chain_id,
            height: 0,
            time: self.genesis_time_ms,
            prev_hash: Hash::ZERO,
            tx_root: Hash::ZERO,
            state_root: self.store.state_root_at(0).map_err(internal)?,
            proposer: Address::ZERO,
            validators_hash: Hash::ZERO,
            next_validators_hash: Hash::ZERO,
            last_commit_hash: Hash::ZERO,
        };
        let transactions = if full {
            EthBlockTxs::Full(Vec::new())
        } else {
            EthBlockTxs::Hashes(Vec::new())
        };
        Ok(self.eth_block_of(self.genesis_hash, &header, 0, 0, transactions))
    }

    fn eth_block(&self, block: Block, full: bool) -> Result<EthBlock, ErrorObjectOwned> {
        let hash = block.hash();
        let height = block.height();
        let transactions = if full {
            let senders = self.committed_senders(&block.txs)?;
            EthBlockTxs::Full(
                block
                    .txs
                    .iter()
                    .zip(senders)
                    .enumerate()
                    .map(|(index, (tx, from))| {
                        let at = Included {
                            block_hash: hash,
                            height,
                            index: index as u32,
                        };
                        self.eth_tx(tx, from, Some(at))
                    })
                    .collect(),
            )
        } else {
            EthBlockTxs::Hashes(block.txs.iter().map(SignedTransaction::hash).collect())
        };
        let size = block.encode().len();
        Ok(self.eth_block_of(hash, &block.header, block.txs.len(), size, transactions))
    }

    fn eth_block_of(
        &self,
        hash: Hash,
        header: &Header,
        txs: usize,
        size: usize,
        transactions: EthBlockTxs,
    ) -> EthBlock {
        EthBlock {
            number: header.height.into(),
            hash,
            parent_hash: header.prev_hash,
            nonce: "0x0000000000000000".into(),
            sha3_uncles: EMPTY_UNCLES_HASH.into(),
            logs_bloom: empty_bloom(),
            transactions_root: header.tx_root,
            state_root: header.state_root,
            receipts_root: Hash::ZERO,
            miner: EthAddress(header.proposer),
            difficulty: Quantity(0),
            total_difficulty: Quantity(0),
            extra_data: "0x".into(),
            size: Quantity(size as u128),
            gas_limit: self.gas_limit().into(),
            gas_used: (txs as u64 * TRANSFER_GAS).into(),
            timestamp: (header.time / 1000).into(),
            mix_hash: Hash::ZERO,
            base_fee_per_gas: Quantity(self.base_fee()),
            uncles: Vec::new(),
            transactions,
        }
    }
}

#[async_trait]
impl EthApiServer for RpcContext {
    async fn chain_id(&self) -> Result<Quantity, ErrorObjectOwned> {
        Ok(self.chain_id.into())
    }

    async fn net_version(&self) -> Result<String, ErrorObjectOwned> {
        Ok(self.chain_id.to_string())
    }

    async fn client_version(&self) -> Result<String, ErrorObjectOwned> {
        Ok(format!("tally/v{}", env!("CARGO_PKG_VERSION")))
    }

    async fn block_number(&self) -> Result<Quantity, ErrorObjectOwned> {
        Ok(self.store.latest_height().map_err(internal)?.into())
    }

    async fn get_balance(
        &self,
        address: EthAddress,
        block: Option<BlockTag>,
    ) -> Result<Quantity, ErrorObjectOwned> {
        Ok(Quantity(self.account_at(address.0, block)?.balance))
    }

    async fn get_transaction_count(
        &self,
        address: EthAddress,
        block: Option<BlockTag>,
    ) -> Result<Quantity, ErrorObjectOwned> {
        let nonce = self.account_at(address.0, block)?.nonce;
        if block != Some(BlockTag::Pending) {
            return Ok(nonce.into());
        }
        let pending = self
            .mempool
            .pending_nonce(address.0)
            .await
            .map_err(internal)?;
        Ok(nonce.max(pending.unwrap_or(0)).into())
    }

    async fn get_code(
        &self,
        _address: EthAddress,
        block: Option<BlockTag>,
    ) -> Result<String, ErrorObjectOwned> {
        self.height_of(block)?
            .ok_or_else(|| server_error("header not found"))?;
        Ok("0x".into())
    }

    async fn gas_price(&self) -> Result<Quantity, ErrorObjectOwned> {
        Ok(Quantity(self.base_fee() + SUGGESTED_TIP))
    }

    async fn max_priority_fee_per_gas(&self) -> Result<Quantity, ErrorObjectOwned> {
        Ok(Quantity(SUGGESTED_TIP))
    }

    async fn fee_history(
        &self,
        block_count: Quantity,
        newest: BlockTag,
        percentiles: Option<Vec<f64>>,
    ) -> Result<FeeHistory, ErrorObjectOwned> {
        if let Some(p) = &percentiles {
            if p.len() > MAX_REWARD_PERCENTILES {
                return Err(invalid(format!(
                    "at most {MAX_REWARD_PERCENTILES} reward percentiles"
                )));
            }
            if p.iter().any(|x| !(0.0..=100.0).contains(x)) || p.windows(2).any(|w| w[0] > w[1]) {
                return Err(invalid(
                    "reward percentiles must lie in 0..=100, in increasing order",
                ));
            }
        }
        let newest = self
            .height_of(Some(newest))?
            .ok_or_else(|| server_error("header not found"))?;
        let count = block_count
            .to_u64("block count")
            .map_err(invalid)?
            .min(MAX_FEE_HISTORY)
            .min(newest + 1);
        let oldest = newest + 1 - count;
        let gas_limit = self.gas_limit().max(1) as f64;
        let mut gas_used_ratio = Vec::with_capacity(count as usize);
        for height in oldest..=newest {
            let txs = match height {
                0 => 0,
                h => self
                    .store
                    .header_by_height(h)
                    .map_err(internal)?
                    .map_or(0, |(_, txs)| txs),
            };
            gas_used_ratio.push(txs as f64 * TRANSFER_GAS as f64 / gas_limit);
        }
        let base_fee = Quantity(self.base_fee());
        Ok(FeeHistory {
            oldest_block: oldest.into(),
            // One more than the blocks: the base fee of the next one.
            base_fee_per_gas: vec![base_fee; gas_used_ratio.len() + 1],
            reward: percentiles
                .map(|p| vec![vec![Quantity(SUGGESTED_TIP); p.len()]; gas_used_ratio.len()]),
            gas_used_ratio,
        })
    }

    async fn estimate_gas(
        &self,
        request: TxRequest,
        block: Option<BlockTag>,
    ) -> Result<Quantity, ErrorObjectOwned> {
        if request.to.is_none() {
            return Err(server_error(TxError::EthContractCreation.to_string()));
        }
        if request.has_data() {
            return Err(server_error(TxError::EthHasData.to_string()));
        }
        if let Some(from) = request.from {
            let balance = self.account_at(from.0, block)?.balance;
            let value = request.value.unwrap_or_default().0;
            let price = request
                .max_fee_per_gas
                .or(request.gas_price)
                .map_or(self.base_fee(), |q| q.0);
            let needed = price
                .saturating_mul(u128::from(TRANSFER_GAS))
                .saturating_add(value);
            if balance < needed {
                return Err(server_error(format!(
                    "insufficient funds for gas * price + value: balance {balance}, needed {needed}"
                )));
            }
        }
        Ok(TRANSFER_GAS.into())
    }

    async fn call(
        &self,
        _request: TxRequest,
        block: Option<BlockTag>,
    ) -> Result<String, ErrorObjectOwned> {
        // Every account is an externally owned one: a call runs no code.
        self.height_of(block)?
            .ok_or_else(|| server_error("header not found"))?;
        Ok("0x".into())
    }

    async fn send_raw_transaction(&self, raw: String) -> Result<Hash, ErrorObjectOwned> {
        // Refuse what cannot be a transfer before decoding it.
        let digits = raw.strip_prefix("0x").unwrap_or(&raw).len();
        if digits > 2 * MAX_ETH_TX_BYTES {
            return Err(server_error(
                TxError::TooLarge {
                    size: digits / 2,
                    max: MAX_ETH_TX_BYTES,
                }
                .to_string(),
            ));
        }
        let bytes = parse_hex("transaction", &raw)?;
        let priority = self.priority.clone();
        let verified = self
            .recovery
            .run(move || {
                priority.step_aside();
                SignedTransaction::from(EthTransaction::decode(&bytes)?).verify()
            })
            .await?
            .map_err(|e| server_error(e.to_string()))?;
        let mut results = self
            .mempool
            .submit(vec![verified])
            .await
            .map_err(internal)?;
        match results.pop() {
            Some(Ok(hash)) => Ok(hash),
            Some(Err(e)) => Err(add_error(&e)),
            None => Err(internal("the mempool returned no result")),
        }
    }

    async fn get_transaction_by_hash(&self, hash: Hash) -> Result<Option<EthTx>, ErrorObjectOwned> {
        let info = self.tx_info(hash).await?;
        let (Some(tx), Some(from)) = (info.tx.as_ref(), info.sender) else {
            return Ok(None);
        };
        let at = match info.status {
            tally_rpc::TxStatusInfo::Committed {
                height,
                index,
                block_hash,
                ..
            } => Some(Included {
                block_hash,
                height,
                index,
            }),
            _ => None,
        };
        Ok(Some(self.eth_tx(tx, from, at)))
    }

    async fn get_transaction_receipt(
        &self,
        hash: Hash,
    ) -> Result<Option<EthReceipt>, ErrorObjectOwned> {
        let Some(record) = self.store.transaction(&hash).map_err(internal)? else {
            return Ok(None);
        };
        let block_hash = self.block_hash(record.location.height)?;
        Ok(Some(self.receipt(hash, &record, block_hash)))
    }

    async fn get_block_by_number(
        &self,
        block: BlockTag,
        full: Option<bool>,
    ) -> Result<Option<EthBlock>, ErrorObjectOwned> {
        let full = full.unwrap_or(false);
        match self.height_of(Some(block))? {
            None => Ok(None),
            Some(0) => Ok(Some(self.genesis_block(full)?)),
            Some(height) => self
                .store
                .block_by_height(height)
                .map_err(internal)?
                .map(|block| self.eth_block(block, full))
                .transpose(),
        }
    }

    async fn get_block_by_hash(
        &self,
        hash: Hash,
        full: Option<bool>,
    ) -> Result<Option<EthBlock>, ErrorObjectOwned> {
        let full = full.unwrap_or(false);
        if hash == self.genesis_hash {
            return Ok(Some(self.genesis_block(full)?));
        }
        self.store
            .block_by_hash(&hash)
            .map_err(internal)?
            .map(|block| self.eth_block(block, full))
            .transpose()
    }

    async fn get_logs(
        &self,
        _filter: serde_json::Value,
    ) -> Result<Vec<serde_json::Value>, ErrorObjectOwned> {
        Ok(Vec::new())
    }

    async fn syncing(&self) -> Result<serde_json::Value, ErrorObjectOwned> {
        if !self.syncing.load(Ordering::Relaxed) {
            return Ok(serde_json::Value::Bool(false));
        }
        let current = Quantity::from(self.store.latest_height().map_err(internal)?);
        Ok(serde_json::json!({
            "startingBlock": Quantity(0),
            "currentBlock": current,
            "highestBlock": current,
        }))
    }

    async fn accounts(&self) -> Result<Vec<EthAddress>, ErrorObjectOwned> {
        Ok(Vec::new())
    }

    async fn peer_count(&self) -> Result<Quantity, ErrorObjectOwned> {
        let peers = self.network.peers().await.map_err(internal)?;
        Ok(Quantity(peers.len() as u128))
    }

    async fn listening(&self) -> Result<bool, ErrorObjectOwned> {
        Ok(true)
    }
}
