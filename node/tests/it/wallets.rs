//! Ethereum transactions end to end: the real libraries (ethers v6 from npm,
//! web3.py from PyPI, pinned, installed by `scripts/wallets.sh` into a cache
//! outside the checkout) against `tally dev`, and Ethereum transfers gossiped
//! and interleaved with native ones on a four-validator localnet.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jsonrpsee_http_client::HttpClient;
use tally_genesis::dev_keys;
use tally_ledger::{
    Address, EthTransfer, EthTxKind, Hash, SecretKey, SignedTransaction, TRANSFER_GAS,
};
use tally_rpc::eth::{EthAddress, EthApiClient, EthBlockTxs, Quantity};
use tally_rpc::{TallyApiClient, TxStatusInfo};

use crate::harness::{
    NodeProc, assert_agreement, client, raw, rpc_url, run, transfer, wait_for, wait_height,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Where `scripts/wallets.sh` installed the libraries, or `None` (with the
/// reason printed) when the registries cannot be reached from here.
fn libraries() -> Option<PathBuf> {
    if std::env::var("TALLY_WALLET_TESTS").as_deref() == Ok("0") {
        eprintln!("skipped: TALLY_WALLET_TESTS=0");
        return None;
    }
    let out = Command::new("bash")
        .arg(repo().join("scripts/wallets.sh"))
        .output()
        .expect("run scripts/wallets.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Some(PathBuf::from(
            String::from_utf8(out.stdout).expect("utf-8").trim(),
        )),
        Some(2) => {
            eprintln!("skipped: {stderr}");
            None
        }
        _ => panic!("scripts/wallets.sh failed: {stderr}"),
    }
}

/// Runs a client script; returns the hashes it printed on its last line.
fn run_client(mut command: Command, what: &str) -> (Vec<Hash>, Address) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    eprintln!("{what}:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let last = stdout.lines().last().expect("a result line");
    let result: serde_json::Value = serde_json::from_str(last).expect("JSON");
    let hashes = result["hashes"]
        .as_array()
        .expect("hashes")
        .iter()
        .map(|h| h.as_str().expect("hash").parse().expect("hash"))
        .collect();
    let to = result["to"].as_str().expect("to").parse().expect("address");
    (hashes, to)
}

/// The library's transfers are what `tally_` and `tally query` see.
async fn check_seen_natively(rpc: &HttpClient, url: &str, sender: Address, hashes: &[Hash]) {
    for hash in hashes {
        let info = rpc
            .get_transaction(hash.to_string())
            .await
            .expect("tally_getTransaction");
        assert!(
            matches!(info.status, TxStatusInfo::Committed { .. }),
            "{info:?}"
        );
        assert_eq!(info.sender, Some(sender));
        assert!(matches!(info.tx, Some(SignedTransaction::Ethereum(_))));
        let shown = run(&["query", "tx", &hash.to_string(), "--rpc", url]);
        assert!(shown.contains("committed"), "{shown}");
        assert!(shown.contains("ethereum"), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ethers_and_web3py_send_transfers_to_a_dev_chain() {
    let Some(libs) = libraries() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::spawn(
        "dev",
        &dir.path().join("dev"),
        "dev",
        crate::harness::DEV_ARGS,
    );
    let url = node.rpc_url().await;
    let rpc = client(&url);
    wait_height(&rpc, 1, Duration::from_secs(30)).await;
    let keys = dev_keys();
    let key_hex = |key: &SecretKey| format!("0x{}", hex::encode(key.to_bytes()));
    let scripts = repo().join("node/tests/wallets");

    let mut ethers = Command::new("node");
    ethers
        .arg(scripts.join("ethers.cjs"))
        .arg(&url)
        .arg(key_hex(&keys[2]))
        .env("NODE_PATH", libs.join("npm/node_modules"));
    let (hashes, to) = run_client(ethers, "ethers");
    check_seen_natively(&rpc, &url, keys[2].address(), &hashes).await;
    let account = rpc.get_account(to.to_string()).await.expect("account");
    assert_eq!(account.balance, 1_500_000_000_000_000_001);

    let mut web3 = Command::new(libs.join("venv/bin/python"));
    web3.arg(scripts.join("web3_check.py"))
        .arg(&url)
        .arg(key_hex(&keys[3]));
    let (hashes, to) = run_client(web3, "web3.py");
    check_seen_natively(&rpc, &url, keys[3].address(), &hashes).await;
    let account = rpc.get_account(to.to_string()).await.expect("account");
    assert_eq!(account.balance, 2_000_000_000_000_000_001);
}

fn eth_transfer(
    key: &SecretKey,
    chain_id: u64,
    nonce: u64,
    to: Address,
    gas_price: u128,
) -> String {
    let signed = EthTransfer {
        kind: EthTxKind::DynamicFee,
        chain_id,
        nonce,
        max_priority_fee_per_gas: 0,
        max_fee_per_gas: gas_price,
        gas_limit: TRANSFER_GAS,
        to,
        value: 1_000,
    }
    .sign(key);
    format!("0x{}", hex::encode(signed.raw()))
}

#[tokio::test(flavor = "multi_thread")]
async fn ethereum_transfers_are_gossiped_and_share_nonces_with_native_ones() {
    let _heavy = crate::harness::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let homes = crate::harness::four_validator_homes(dir.path());
    let urls: Vec<String> = homes.iter().map(|h| rpc_url(h)).collect();
    let _nodes: Vec<NodeProc> = homes
        .iter()
        .enumerate()
        .map(|(i, h)| NodeProc::start(&format!("node{i}"), h, &[]))
        .collect();
    let clients: Vec<HttpClient> = urls.iter().map(|u| client(u)).collect();
    for c in &clients {
        wait_height(c, 2, Duration::from_secs(90)).await;
    }
    let chain_id = clients[0].status().await.expect("status").chain_id;
    let gas_price = EthApiClient::gas_price(&clients[0])
        .await
        .expect("gas price")
        .0;
    let key = &dev_keys()[0];
    let bob = Address([0xb0; 20]);
    let start = EthApiClient::get_transaction_count(
        &clients[0],
        EthAddress(key.address()),
        Some(tally_rpc::eth::BlockTag::Pending),
    )
    .await
    .expect("nonce")
    .0 as u64;

    // One sender, both kinds, alternating nonces, each sent to another node.
    let mut hashes = Vec::new();
    for k in 0..8u64 {
        let node = &clients[(k % 4) as usize];
        let hash = if k % 2 == 0 {
            EthApiClient::send_raw_transaction(
                node,
                eth_transfer(key, chain_id, start + k, bob, gas_price),
            )
            .await
            .expect("eth transfer accepted")
        } else {
            TallyApiClient::send_raw_transaction(
                node,
                raw(&transfer(key, chain_id, start + k, bob, 1_000)),
            )
            .await
            .expect("native transfer accepted")
        };
        hashes.push(hash);
    }
    // Every node has every receipt, in nonce order.
    for c in &clients {
        let mut positions = Vec::new();
        for hash in &hashes {
            let receipt = wait_for(
                "a receipt on every node",
                Duration::from_secs(60),
                || async { c.get_transaction_receipt(*hash).await.ok().flatten() },
            )
            .await;
            assert_eq!(receipt.status, Quantity(1));
            positions.push((receipt.block_number, receipt.transaction_index));
        }
        let mut sorted = positions.clone();
        sorted.sort();
        assert_eq!(positions, sorted, "nonce order is block order");
    }
    let nonce = EthApiClient::get_transaction_count(&clients[3], EthAddress(key.address()), None)
        .await
        .expect("nonce");
    assert_eq!(nonce.0 as u64, start + 8);
    let balance = EthApiClient::get_balance(&clients[2], EthAddress(bob), None)
        .await
        .expect("balance");
    assert_eq!(balance, Quantity(8_000));
    assert_agreement(&clients).await;
}

/// One raw HTTP POST; the response body.
fn post(url: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// What libraries parse beyond the methods' happy paths: batches and ids,
/// `null` for what is not known, block 0, the limits on what one call may
/// ask, and native transfers in their Ethereum dress.
#[tokio::test(flavor = "multi_thread")]
async fn eth_answers_have_the_shapes_libraries_parse() {
    use tally_rpc::eth::BlockTag;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::spawn(
        "dev",
        &dir.path().join("dev"),
        "dev",
        crate::harness::DEV_ARGS,
    );
    let url = node.rpc_url().await;
    let rpc = client(&url);
    wait_height(&rpc, 1, Duration::from_secs(30)).await;
    let status = rpc.status().await.expect("status");

    // A batch with an id of 0 and a string id; an unknown receipt is null.
    let answer: serde_json::Value = serde_json::from_str(&post(
        &url,
        &format!(
            r#"[{{"jsonrpc":"2.0","id":0,"method":"eth_chainId","params":[]}},
                {{"jsonrpc":"2.0","id":"r","method":"eth_getTransactionReceipt","params":["{}"]}}]"#,
            Hash([7; 32])
        ),
    ))
    .expect("JSON");
    let answers = answer.as_array().expect("a batch answer");
    let by_id = |id: serde_json::Value| {
        answers
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("an answer with id {id}: {answer}"))
    };
    assert_eq!(
        by_id(serde_json::json!(0))["result"],
        format!("{:#x}", status.chain_id)
    );
    let receipt = by_id(serde_json::json!("r"));
    assert!(
        receipt["result"].is_null() && receipt.get("error").is_none(),
        "{receipt}"
    );

    // Block 0 is the genesis, and block 1 names it as its parent.
    let genesis = EthApiClient::get_block_by_number(&rpc, BlockTag::Earliest, Some(true))
        .await
        .expect("block 0")
        .expect("exists");
    assert_eq!(genesis.hash, status.genesis_hash);
    assert_eq!(genesis.number, Quantity(0));
    assert!(genesis.base_fee_per_gas.0 > 0);
    let by_hash = EthApiClient::get_block_by_hash(&rpc, status.genesis_hash, None)
        .await
        .expect("by hash")
        .expect("exists");
    assert_eq!(by_hash.hash, genesis.hash);
    let one = EthApiClient::get_block_by_number(&rpc, BlockTag::Number(1), None)
        .await
        .expect("block 1")
        .expect("exists");
    assert_eq!(one.parent_hash, genesis.hash);
    assert!(
        EthApiClient::get_block_by_number(&rpc, BlockTag::Number(1 << 40), None)
            .await
            .expect("a future block")
            .is_none()
    );

    // What one call may ask is bounded.
    let too_many =
        EthApiClient::fee_history(&rpc, Quantity(4), BlockTag::Latest, Some(vec![50.0; 101]))
            .await
            .expect_err("101 percentiles");
    assert!(too_many.to_string().contains("at most 100"), "{too_many}");
    let unordered =
        EthApiClient::fee_history(&rpc, Quantity(4), BlockTag::Latest, Some(vec![90.0, 10.0]))
            .await
            .expect_err("decreasing percentiles");
    assert!(unordered.to_string().contains("increasing"), "{unordered}");
    let history = EthApiClient::fee_history(
        &rpc,
        Quantity(1 << 20),
        BlockTag::Latest,
        Some(vec![25.0, 75.0]),
    )
    .await
    .expect("fee history");
    assert!(history.gas_used_ratio.len() <= 128);
    assert_eq!(
        history.base_fee_per_gas.len(),
        history.gas_used_ratio.len() + 1
    );
    let huge = format!("0x02{}", "00".repeat(4096));
    let refused = EthApiClient::send_raw_transaction(&rpc, huge)
        .await
        .expect_err("4 KiB is no transfer");
    assert!(
        refused.to_string().contains("more than the maximum of 512"),
        "{refused}"
    );

    // A chain with no contracts.
    let anyone = EthAddress(Address([0x42; 20]));
    assert_eq!(
        EthApiClient::get_code(&rpc, anyone, None)
            .await
            .expect("code"),
        "0x"
    );
    let logs = EthApiClient::get_logs(&rpc, serde_json::json!({"fromBlock": "0x0"}))
        .await
        .expect("logs");
    assert!(logs.is_empty());

    // A native transfer seen through eth_: its sender, a gas price that
    // covers its fee, 21,000 gas.
    let keys = dev_keys();
    let to = Address([0x77; 20]);
    let tx = transfer(&keys[4], status.chain_id, 0, to, 5);
    let hash = rpc
        .send_transaction_and_wait(raw(&tx), None)
        .await
        .expect("committed")
        .hash;
    let receipt = EthApiClient::get_transaction_receipt(&rpc, hash)
        .await
        .expect("receipt")
        .expect("committed");
    assert_eq!(receipt.from, EthAddress(keys[4].address()));
    assert_eq!(receipt.gas_used, Quantity(u128::from(TRANSFER_GAS)));
    assert!(receipt.effective_gas_price.0 * u128::from(TRANSFER_GAS) >= tx.fee(1).expect("fee"));
    let seen = EthApiClient::get_transaction_by_hash(&rpc, hash)
        .await
        .expect("tx")
        .expect("known");
    assert_eq!(seen.r#type, Quantity(0));
    assert_eq!(seen.value, Quantity(5));
    let block = EthApiClient::get_block_by_number(
        &rpc,
        BlockTag::Number(receipt.block_number.0 as u64),
        Some(true),
    )
    .await
    .expect("block")
    .expect("exists");
    let EthBlockTxs::Full(txs) = block.transactions else {
        panic!("full transactions asked for")
    };
    assert!(txs.iter().any(|t| t.hash == hash && t.from == receipt.from));
}
