//! The checks each fuzz target makes on one input. A decoder may refuse any
//! input, but it must never panic, and what it accepts must encode back to
//! exactly the bytes it came from (one canonical encoding: a message's id
//! and signature cover its bytes).

mod rpc;

pub use rpc::rpc_body;

use tally_ledger::{Block, EthTransaction, SignedTransaction};
use tally_wire::{ConsensusEnvelope, ConsensusMessage, SyncRequest, SyncResponse, TxBatch};

/// `decode(data)`; if it accepts, `encode(value) == data`.
fn roundtrip<T, E>(
    data: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, E>,
    encode: impl Fn(&T) -> Vec<u8>,
) -> Option<T> {
    let value = decode(data).ok()?;
    assert_eq!(encode(&value), data, "accepted bytes do not encode back");
    Some(value)
}

/// A signed transaction, as RPC and gossip receive it.
pub fn tx(data: &[u8]) {
    if let Some(tx) = roundtrip(data, SignedTransaction::decode, SignedTransaction::encode) {
        let _ = tx.hash();
        let _ = tx.verify();
    }
}

/// An Ethereum envelope, as `eth_sendRawTransaction` receives it: what the
/// decoder accepts is canonical (its fields and signature encode back to the
/// same bytes, and the signed fields to the same prehash).
pub fn eth_tx(data: &[u8]) {
    if let Ok(tx) = EthTransaction::decode(data) {
        assert_eq!(tx.transfer().encode_signed(tx.signature()), data);
        assert_eq!(tx.transfer().sign_hash(), tx.sign_hash());
        let _ = tx.recover_sender();
        let _ = SignedTransaction::from(tx).verify();
    }
}

/// A gossiped batch: the batch, then each transaction in it.
pub fn tx_batch(data: &[u8]) {
    if let Some(batch) = roundtrip(data, tally_wire::decode::<TxBatch>, tally_wire::encode) {
        for bytes in &batch.txs {
            tx(bytes);
        }
    }
}

/// A block, as sync and proposals carry it; its body check too.
pub fn block(data: &[u8]) {
    if let Some(block) = roundtrip(data, Block::decode, Block::encode) {
        let _ = block.check_body();
        let _ = block.hash();
    }
}

/// A consensus message, with what the gate computes from it before any
/// signature work.
pub fn consensus_envelope(data: &[u8]) {
    let Some(envelope) = roundtrip(
        data,
        tally_wire::decode::<ConsensusEnvelope>,
        tally_wire::encode,
    ) else {
        return;
    };
    match &envelope.message {
        ConsensusMessage::Proposal { proposal, block } => {
            let _ = proposal.message.sign_bytes(1);
            let _ = block.check_body();
        }
        ConsensusMessage::Vote(vote) => {
            let _ = vote.message.sign_bytes(1);
        }
    }
}

/// Sync requests and responses (the same bytes tried as both).
pub fn sync_messages(data: &[u8]) {
    let _ = roundtrip(data, tally_wire::decode::<SyncRequest>, tally_wire::encode);
    if let Some(SyncResponse::Blocks(blocks)) =
        roundtrip(data, tally_wire::decode::<SyncResponse>, tally_wire::encode)
    {
        for (block, _) in &blocks {
            let _ = block.check_body();
        }
    }
}

/// A genesis file's text: parsing and validation, then what a node
/// derives from an accepted one.
pub fn genesis(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(genesis) = tally_genesis::Genesis::parse(text, "fuzz") {
        let _ = genesis.hash();
        let _ = genesis.state();
        let _ = genesis.exec_params();
        let _ = genesis.total_supply();
        let _ = genesis.genesis_time_ms();
    }
}

/// The strings JSON-RPC parameters carry: addresses, hashes, keys,
/// signatures and hex-encoded transactions.
pub fn rpc_params(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    use std::str::FromStr;
    if let Ok(address) = tally_ledger::Address::from_str(text) {
        assert_eq!(
            tally_ledger::Address::from_str(&address.to_string()).ok(),
            Some(address),
            "an address does not parse back from its display"
        );
    }
    let _ = tally_ledger::Hash::from_str(text);
    let _ = tally_ledger::PublicKey::from_str(text);
    let _ = tally_ledger::Signature::from_str(text);
    if let Ok(bytes) = hex::decode(text.trim_start_matches("0x")) {
        tx(&bytes);
    }
}

/// A `config.toml`: what parses must be written back (with its comments) to
/// a file that parses to the same config.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = tally_config::Config::parse(text) {
        let written = config.documented();
        let reread = tally_config::Config::parse(&written)
            .unwrap_or_else(|e| panic!("the documented config does not parse: {e:#}\n{written}"));
        assert_eq!(
            reread, config,
            "the documented config reads back differently"
        );
        let _ = config.mempool.ledger_config();
    }
}
