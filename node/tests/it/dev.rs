//! `tally dev` as a user runs it: transfers over JSON-RPC commit and move
//! balances and nonces; every kind of bad input gets its JSON-RPC error and
//! changes nothing.

use std::io::{Read, Write};
use std::time::Duration;

use jsonrpsee::core::ClientError;
use tally_genesis::dev_keys;
use tally_ledger::{SecretKey, SignedTransaction};
use tally_rpc::{TallyApiClient, TxStatusInfo, codes};

use crate::harness::{NodeProc, client, raw, transfer, wait_height};

/// The JSON-RPC error code of a failed call.
fn code(result: Result<impl std::fmt::Debug, ClientError>) -> (i32, String) {
    match result {
        Err(ClientError::Call(e)) => (e.code(), e.message().to_string()),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_chain_commits_transfers_and_rejects_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("dev");
    let node = NodeProc::spawn("dev", &home, "dev", crate::harness::DEV_ARGS);
    let url = node.rpc_url().await;
    let rpc = client(&url);
    wait_height(&rpc, 1, Duration::from_secs(30)).await;
    let status = rpc.status().await.expect("status");
    let chain_id = status.chain_id;
    assert!(status.validator.is_some());
    assert_eq!(rpc.health().await.expect("health"), "ok");

    let keys = dev_keys();
    let (alice, bob) = (&keys[0], &keys[1]);
    let alice_before = rpc
        .get_account(alice.address().to_string())
        .await
        .expect("account");
    let bob_before = rpc
        .get_account(bob.address().to_string())
        .await
        .expect("account");

    // A transfer, waited on.
    let tx = transfer(alice, chain_id, alice_before.nonce, bob.address(), 1_000);
    let info = rpc
        .send_transaction_and_wait(raw(&tx), Some(20_000))
        .await
        .expect("transfer commits");
    let TxStatusInfo::Committed {
        height, receipt, ..
    } = &info.status
    else {
        panic!("not committed: {info:?}");
    };
    assert_eq!(receipt.status, tally_ledger::TxStatus::Success);
    assert_eq!(info.sender, Some(alice.address()));
    let block = rpc
        .get_block_by_height(*height)
        .await
        .expect("block")
        .expect("block exists");
    assert!(block.tx_hashes.contains(&tx.hash()));
    assert_eq!(
        rpc.get_block_by_hash(block.hash.to_string())
            .await
            .expect("by hash"),
        Some(block)
    );

    let alice_after = rpc
        .get_account(alice.address().to_string())
        .await
        .expect("account");
    let bob_after = rpc
        .get_account(bob.address().to_string())
        .await
        .expect("account");
    assert_eq!(alice_after.nonce, alice_before.nonce + 1);
    assert_eq!(alice_after.balance, alice_before.balance - 1_001);
    assert_eq!(bob_after.balance, bob_before.balance + 1_000);
    assert_eq!(bob_after.nonce, bob_before.nonce);

    // A transfer submitted without waiting shows up as committed.
    let tx2 = transfer(alice, chain_id, alice_after.nonce, bob.address(), 5);
    let hash = rpc.send_raw_transaction(raw(&tx2)).await.expect("submit");
    assert_eq!(hash, tx2.hash());
    let mut committed = false;
    for _ in 0..100 {
        if rpc
            .get_transaction(hash.to_string())
            .await
            .expect("tx")
            .is_committed()
        {
            committed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(committed, "second transfer never committed");
    let alice_now = rpc
        .get_account(alice.address().to_string())
        .await
        .expect("account");
    assert_eq!(alice_now.nonce, alice_after.nonce + 1);

    // Bad inputs: each is refused with its own error, and nothing moves.
    let bad: Vec<(&str, String, i32)> = vec![
        ("malformed hex", "0xzz12".into(), codes::INVALID_PARAMS),
        ("undecodable bytes", "0x0102".into(), codes::INVALID_TX),
        (
            "wrong chain id",
            raw(&transfer(
                alice,
                chain_id + 1,
                alice_now.nonce,
                bob.address(),
                1,
            )),
            codes::WRONG_CHAIN,
        ),
        (
            "tampered signature",
            raw(&{
                let tx = transfer(alice, chain_id, alice_now.nonce, bob.address(), 1);
                let SignedTransaction::Native(mut tx) = tx else {
                    unreachable!("a native transfer")
                };
                tx.signature.0[..32].fill(0);
                SignedTransaction::Native(tx)
            }),
            codes::INVALID_TX,
        ),
        ("replayed nonce", raw(&tx), codes::BAD_NONCE),
        (
            "insufficient balance",
            raw(&transfer(
                &SecretKey::from_seed("tally-test-empty-account"),
                chain_id,
                0,
                bob.address(),
                1,
            )),
            codes::CANNOT_PAY,
        ),
        (
            "more than the balance",
            raw(&transfer(
                alice,
                chain_id,
                alice_now.nonce,
                bob.address(),
                u128::MAX / 2,
            )),
            codes::CANNOT_PAY,
        ),
    ];
    for (what, tx, expected) in bad {
        let (got, message) = code(rpc.send_raw_transaction(tx).await);
        assert_eq!(got, expected, "{what}: {message}");
        assert!(!message.is_empty(), "{what}: empty message");
    }
    let (got, message) = code(rpc.get_account("0xnot-an-address".into()).await);
    assert_eq!(got, codes::INVALID_PARAMS, "{message}");

    // An oversized body is refused by the server before it is parsed.
    let addr = url.trim_start_matches("http://");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tally_sendRawTransaction","params":["{}"]}}"#,
        "ab".repeat(5 * 1024 * 1024)
    );
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write head");
    // The server may answer and close before reading the whole body.
    let _ = stream.write_all(body.as_bytes());
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 413") || response.contains("too big"),
        "oversized body not refused: {}",
        &response[..response.len().min(300)]
    );

    // Nothing moved: balances and nonces are as after the two transfers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alice_end = rpc
        .get_account(alice.address().to_string())
        .await
        .expect("account");
    assert_eq!(alice_end.nonce, alice_now.nonce);
    assert_eq!(alice_end.balance, alice_now.balance);
    assert_eq!(rpc.status().await.expect("status").mempool_size, 0);

    // reset refuses without its flag, and while the node holds the store.
    let home_s = home.display().to_string();
    for args in [
        vec!["reset", "--home", home_s.as_str()],
        vec![
            "reset",
            "--home",
            home_s.as_str(),
            "--yes-delete-chain-data",
        ],
    ] {
        let output = crate::harness::tally()
            .args(&args)
            .output()
            .expect("run reset");
        assert!(!output.status.success(), "{args:?} succeeded");
    }
    assert!(home.join("data/store").exists());

    // The load generator funds its senders, commits everything it sends,
    // and reports it.
    let report = dir.path().join("bench.json");
    let out = crate::harness::run(&[
        "bench",
        "--rpc",
        &url,
        "--txs",
        "2000",
        "--senders",
        "40",
        "--no-calibrate",
        "--out",
        &report.display().to_string(),
    ]);
    assert!(out.contains("committed throughput"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(report["accepted"], 2000, "{report}");
    assert_eq!(report["committed"], 2000, "{report}");
    assert!(
        report["committed_tps"].as_f64().is_some_and(|t| t > 0.0),
        "{report}"
    );
}

/// A validator whose store holds blocks but whose signing state is gone
/// may have signed at heights it no longer knows of: it refuses to start
/// unless the operator says the state is lost, and then it writes a guard
/// that signs nothing below the tip plus a margin.
#[tokio::test(flavor = "multi_thread")]
async fn a_validator_that_lost_its_signing_state_refuses_to_start_unless_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("net");
    crate::harness::run(&[
        "testnet",
        "--validators",
        "1",
        "--out",
        &out.display().to_string(),
        "--free-ports",
    ]);
    let home = out.join("node0");
    let state_file = home.join("data/signing_state.bin");
    let mut node = NodeProc::start("node0", &home, &[]);
    let rpc = client(&node.rpc_url().await);
    wait_height(&rpc, 3, Duration::from_secs(60)).await;
    node.kill9();
    std::fs::remove_file(&state_file).expect("the signing state exists");

    node.restart();
    let status = node
        .wait_exit(Duration::from_secs(30))
        .expect("the node refuses to start");
    assert!(!status.success());
    let log = node.log_text();
    assert!(
        log.contains("no signing state") && log.contains("--signing-state-lost"),
        "the refusal does not say what to do: {log}"
    );
    assert!(!state_file.exists());

    let mut told = NodeProc::start("node0-told", &home, &["--signing-state-lost"]);
    let rpc = client(&told.rpc_url().await);
    let tip = crate::harness::height(&rpc).await.expect("answers");
    let state = tally_node::signing::load(&state_file)
        .expect("readable")
        .expect("a guard was written before anything else");
    assert!(
        state.height >= tip + tally_node::node::SIGNING_MARGIN,
        "guard at {} with the tip at {tip}",
        state.height
    );
    // It signs nothing below the guard: a lone validator's chain stands still.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(crate::harness::height(&rpc).await, Some(tip));
    told.kill9();
}
