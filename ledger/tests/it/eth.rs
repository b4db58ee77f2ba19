//! Signed Ethereum transactions: the decoder against transactions signed by
//! an independent implementation (eth-account, `tests/vectors/eth_transactions.py`),
//! the refusals, and Ethereum and native transfers sharing one nonce in
//! blocks and the mempool.

use serde_json::Value;
use tally_ledger::{
    Address, Block, EthTransaction, EthTransfer, EthTxKind, Hash, MempoolConfig, SecretKey,
    SignedTransaction, TRANSFER_GAS, TxError, VerifiedTransaction, base_fee_per_gas, build_block,
    verify_block,
};

use crate::common::{CHAIN_ID, MIN_FEE, key, params, proposal, store, transfer};

fn vectors() -> Value {
    serde_json::from_str(include_str!("../vectors/eth-transactions.json")).expect("JSON")
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(&v.as_str().expect("hex string")[2..]).expect("hex")
}

fn num(v: &Value) -> u128 {
    match v {
        Value::String(s) => s.parse().expect("decimal"),
        other => u128::from(other.as_u64().expect("number")),
    }
}

#[test]
fn transactions_signed_by_eth_account_decode_with_their_hash_and_sender() {
    let all = vectors();
    let cases = all["valid"].as_array().expect("valid cases");
    assert_eq!(cases.len(), 10);
    for case in cases {
        let raw = bytes(&case["raw"]);
        let tx = EthTransaction::decode(&raw).unwrap_or_else(|e| panic!("{case}: {e}"));
        let expected_hash: Hash = case["hash"].as_str().expect("hash").parse().expect("hash");
        assert_eq!(tx.hash(), expected_hash, "{}", case["kind"]);
        let sender: Address = case["sender"]
            .as_str()
            .expect("sender")
            .parse()
            .expect("EIP-55");
        assert_eq!(tx.recover_sender().expect("recovers"), sender);
        let t = tx.transfer();
        assert_eq!(u128::from(t.chain_id), num(&case["chain_id"]));
        assert_eq!(u128::from(t.nonce), num(&case["nonce"]));
        assert_eq!(u128::from(t.gas_limit), num(&case["gas"]));
        assert_eq!(t.value, num(&case["value"]));
        assert_eq!(t.max_fee_per_gas, num(&case["max_fee_per_gas"]));
        assert_eq!(
            t.max_priority_fee_per_gas,
            num(&case["max_priority_fee_per_gas"])
        );
        assert_eq!(
            t.to,
            case["to"].as_str().expect("to").parse().expect("address")
        );
        // Canonical: what was decoded encodes back to the same bytes, and
        // Tally's own signer produces the wallet's bytes exactly (RFC 6979).
        assert_eq!(t.encode_signed(tx.signature()), raw);
        let verified = SignedTransaction::from(tx).verify().expect("verifies");
        assert_eq!(verified.sender(), sender);
        assert_eq!(verified.hash(), expected_hash);
    }
}

#[test]
fn tallys_signer_reproduces_the_eip155_example() {
    // EIP-155's own example: key 0x4646..46, nonce 9, 20 gwei, chain id 1.
    let key = SecretKey::from_bytes(&[0x46; 32]).expect("key");
    let signed = EthTransfer {
        kind: EthTxKind::Legacy,
        chain_id: 1,
        nonce: 9,
        max_priority_fee_per_gas: 20_000_000_000,
        max_fee_per_gas: 20_000_000_000,
        gas_limit: 21_000,
        to: Address([0x35; 20]),
        value: 1_000_000_000_000_000_000,
    }
    .sign(&key);
    assert_eq!(
        format!("0x{}", hex::encode(signed.raw())),
        "0xf86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
    );
    assert_eq!(
        signed.sign_hash().to_string(),
        "0xdaf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
    );
}

#[test]
fn malformed_and_unsupported_transactions_are_refused_with_their_reason() {
    let all = vectors();
    let cases = all["invalid"].as_array().expect("invalid cases");
    assert!(cases.len() >= 15);
    for case in cases {
        let raw = bytes(&case["raw"]);
        let why = case["why"].as_str().expect("why");
        // Refused by the decoder, or (high s) at recovery: never accepted.
        let refusal = match EthTransaction::decode(&raw) {
            Err(e) => e.to_string(),
            Ok(tx) => match SignedTransaction::from(tx).verify() {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{}: accepted", case["name"]),
            },
        };
        assert!(
            refusal.contains(why),
            "{}: {refusal:?} does not say {why:?}",
            case["name"]
        );
    }
}

#[test]
fn oversized_envelopes_are_refused_before_parsing() {
    let raw = vec![0x02; tally_ledger::eth::MAX_ETH_TX_BYTES + 1];
    assert!(matches!(
        EthTransaction::decode(&raw),
        Err(TxError::TooLarge { .. })
    ));
}

fn eth_transfer(key: &SecretKey, nonce: u64, to: Address, value: u128) -> SignedTransaction {
    EthTransfer {
        kind: EthTxKind::DynamicFee,
        chain_id: CHAIN_ID,
        nonce,
        max_priority_fee_per_gas: 3,
        max_fee_per_gas: 2 * base_fee_per_gas(MIN_FEE) + 3,
        gas_limit: 31_500,
        to,
        value,
    }
    .sign(key)
    .into()
}

#[test]
fn fees_follow_the_documented_rule() {
    let base = base_fee_per_gas(MIN_FEE);
    assert_eq!(
        base, 1,
        "a minimum fee below 21,000 gives the smallest base fee"
    );
    assert_eq!(base_fee_per_gas(21_000 * 5 + 1), 6);
    // min(max_fee, base + tip) per gas, for 21,000 gas whatever the limit.
    let tx = eth_transfer(&key(0), 0, key(1).address(), 10);
    assert_eq!(tx.fee(MIN_FEE), Ok(u128::from(TRANSFER_GAS) * (base + 3)));
    assert_eq!(
        tx.cost(MIN_FEE),
        Ok(10 + u128::from(TRANSFER_GAS) * (base + 3))
    );
    let capped = EthTransfer {
        kind: EthTxKind::DynamicFee,
        chain_id: CHAIN_ID,
        nonce: 0,
        max_priority_fee_per_gas: 100,
        max_fee_per_gas: 100,
        gas_limit: 21_000,
        to: key(1).address(),
        value: 1,
    };
    let tx: SignedTransaction = capped.sign(&key(0)).into();
    assert_eq!(tx.fee(MIN_FEE), Ok(21_000 * 100));
    // A fee cap below the base fee, a tip above the cap, too little gas.
    let chain = 21_000 * 500;
    assert!(matches!(
        tx.fee(chain),
        Err(TxError::FeeCapBelowBaseFee { .. })
    ));
    for (tip, cap, gas) in [(5, 4, 21_000), (1, 1, 20_999)] {
        let tx: SignedTransaction = EthTransfer {
            max_priority_fee_per_gas: tip,
            max_fee_per_gas: cap,
            gas_limit: gas,
            ..capped.clone()
        }
        .sign(&key(0))
        .into();
        let refused = tx.verify().expect_err("refused");
        assert!(
            matches!(
                refused,
                TxError::TipAboveFeeCap { .. } | TxError::IntrinsicGasTooLow { .. }
            ),
            "{refused}"
        );
    }
}

#[test]
fn native_and_ethereum_transfers_share_a_nonce_in_one_block() {
    let (_dir, store) = store(2);
    let (alice, bob) = (key(0), key(1));
    let txs: Vec<VerifiedTransaction> = vec![
        transfer(&alice, 0, bob.address(), 5),
        eth_transfer(&alice, 1, bob.address(), 7)
            .verify()
            .expect("valid"),
        transfer(&alice, 2, bob.address(), 11),
        eth_transfer(&alice, 3, bob.address(), 13)
            .verify()
            .expect("valid"),
    ];
    let (executed, skipped) =
        build_block(&store, &params(), proposal(Address([0xee; 20])), txs.iter()).expect("builds");
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(executed.block.txs.len(), 4);
    let eth_fee = u128::from(TRANSFER_GAS) * (base_fee_per_gas(MIN_FEE) + 3);
    let fees: Vec<u128> = executed.receipts.iter().map(|r| r.fee_paid).collect();
    assert_eq!(fees, vec![MIN_FEE, eth_fee, MIN_FEE, eth_fee]);
    // The block's encoding carries both kinds and decodes to the same block,
    // and the transaction root covers both (an Ethereum transaction's id is
    // its envelope's hash).
    let block = Block::decode(&executed.block.encode()).expect("decodes");
    assert_eq!(block, executed.block);
    let ids = block.check_body().expect("body matches the header");
    assert_eq!(ids[1], txs[1].hash());
    assert_eq!(
        ids[1],
        tally_ledger::keccak256(txs[1].signed().as_ethereum().expect("eth").raw())
    );
    // Another node verifies it from the bytes alone.
    let (_dir2, other) = crate::common::store(2);
    let verified = verify_block(&other, &params(), block, |tx| {
        tx.clone().verify().map(std::sync::Arc::new)
    })
    .expect("valid block");
    other.commit(verified).expect("commits");
    let account = tally_ledger::StateReader::account(&other, &alice.address()).expect("read");
    assert_eq!(account.nonce, 4);
    assert_eq!(
        account.balance,
        crate::common::START_BALANCE - (5 + 7 + 11 + 13) - 2 * MIN_FEE - 2 * eth_fee
    );
    // A replayed nonce is refused whichever kind replays it.
    let replay = eth_transfer(&alice, 3, bob.address(), 1)
        .verify()
        .expect("valid");
    let (_, skipped) =
        build_block(&other, &params(), proposal(Address([0xee; 20])), [&replay]).expect("builds");
    assert!(matches!(skipped[0].1, TxError::NonceTooLow { .. }));
}

#[test]
fn the_mempool_orders_one_senders_kinds_by_nonce_and_replaces_across_kinds() {
    let (_dir, store) = store(2);
    let (alice, bob) = (key(0), key(1));
    let mut pool = tally_ledger::Mempool::new(MempoolConfig::default(), CHAIN_ID, MIN_FEE);
    let eth1 = eth_transfer(&alice, 1, bob.address(), 1)
        .verify()
        .expect("valid");
    pool.add(eth1.clone(), &store, 0).expect("queued");
    pool.add(transfer(&alice, 0, bob.address(), 1), &store, 0)
        .expect("admitted");
    let order: Vec<u64> = pool
        .reap(10, usize::MAX)
        .iter()
        .map(|t| t.nonce())
        .collect();
    assert_eq!(order, vec![0, 1]);
    assert_eq!(pool.pending_nonce(&alice.address()), Some(2));
    // The Ethereum transfer at nonce 1 pays 21,000 x 4; a native one at the
    // same nonce must pay 10% more to replace it.
    let under = transfer(&alice, 1, bob.address(), 1);
    let refused = pool.add(under, &store, 0).expect_err("underpriced");
    assert!(
        refused
            .to_string()
            .contains("replacement transaction underpriced")
    );
}
