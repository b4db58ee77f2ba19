//! Overload as a user meets it on `tally dev`: a pool filled with gapped
//! transactions (the lockout of review item 9) still admits and commits an
//! unrelated transfer; replace-by-fee and the queued/dropped statuses over
//! JSON-RPC.

use std::time::{Duration, Instant};

use tally_genesis::dev_keys;
use tally_ledger::{SecretKey, SignedTransaction, Transaction};
use tally_node::config::{Config, Home};
use tally_rpc::{TallyApiClient, TxStatusInfo, codes};

use crate::harness::{NodeProc, client, raw, transfer, wait_for, wait_height};

fn paying(
    key: &SecretKey,
    chain_id: u64,
    nonce: u64,
    amount: u128,
    fee: u128,
) -> SignedTransaction {
    Transaction {
        chain_id,
        nonce,
        to: dev_keys()[0].address(),
        amount,
        fee,
        memo: Vec::new(),
    }
    .sign(key)
}

#[tokio::test(flavor = "multi_thread")]
async fn gapped_transactions_cannot_lock_a_dev_chain() {
    // It loads both cores: never beside a multi-node test.
    let _heavy = crate::harness::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("dev");
    let mut node = NodeProc::spawn("dev", &home, "dev", crate::harness::DEV_ARGS);
    wait_height(&client(&node.rpc_url().await), 1, Duration::from_secs(30)).await;
    // A small pool, so that filling it takes a second: at most 2,000
    // transactions, 500 of them behind nonce gaps, 16 per sender.
    node.kill9();
    std::fs::remove_file(&node.log).expect("old log");
    let config_file = Home::new(&home).config_file();
    let mut config = Config::load(&config_file).expect("config");
    config.mempool.max_txs = 2_000;
    config.mempool.max_queued = 500;
    config.mempool.max_queued_per_sender = 16;
    std::fs::write(&config_file, config.documented()).expect("write config");
    node.restart();
    let rpc = client(&node.rpc_url().await);
    wait_height(&rpc, 1, Duration::from_secs(30)).await;
    let chain_id = rpc.status().await.expect("status").chain_id;

    // 100 accounts, funded by a dev account.
    let dev = dev_keys();
    let keys: Vec<SecretKey> = (0..100)
        .map(|i| SecretKey::from_seed(&format!("overload-{i}")))
        .collect();
    // Two funders: a sender's nonces may run at most 64 ahead.
    let funding: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let from = &dev[3 + i % 2];
            raw(&transfer(
                from,
                chain_id,
                (i / 2) as u64,
                k.address(),
                1_000_000,
            ))
        })
        .collect();
    let results = rpc.send_raw_transactions(funding).await.expect("submit");
    assert!(results.iter().all(|r| r.error.is_none()), "{results:?}");
    wait_for("funding to commit", Duration::from_secs(30), || async {
        for funder in &dev[3..5] {
            let account = rpc.get_account(funder.address().to_string()).await.ok()?;
            if account.nonce != 50 {
                return None;
            }
        }
        Some(())
    })
    .await;

    // Each sends 64 nonces from 1: nonce 0 never comes.
    let gapped: Vec<String> = keys
        .iter()
        .flat_map(|k| (1..=64).map(move |n| raw(&paying(k, chain_id, n, 1, 1))))
        .collect();
    let results = rpc.send_raw_transactions(gapped).await.expect("submit");
    let accepted: Vec<_> = results.iter().filter_map(|r| r.hash).collect();
    let codes_seen: std::collections::BTreeSet<i32> = results
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| e.code))
        .collect();
    assert_eq!(accepted.len(), 500, "the queued part is capped");
    assert_eq!(
        codes_seen,
        [codes::BAD_NONCE, codes::MEMPOOL_FULL].into(),
        "a sender over its queued limit, or the queued part full"
    );
    let status = rpc.status().await.expect("status");
    assert_eq!((status.mempool_size, status.mempool_queued), (500, 500));
    let info = rpc
        .get_transaction(accepted[0].to_string())
        .await
        .expect("tx");
    assert_eq!(info.status, TxStatusInfo::Queued);

    // An unrelated transfer is admitted and committed at once.
    let started = Instant::now();
    let fresh = transfer(&dev[1], chain_id, 0, dev[2].address(), 5);
    let info = rpc
        .send_transaction_and_wait(raw(&fresh), Some(10_000))
        .await
        .expect("a fresh transfer commits");
    assert!(info.is_committed());
    eprintln!(
        "fresh transfer committed {} ms after submission, beside 500 gapped ones",
        started.elapsed().as_millis()
    );

    // Replace-by-fee: the same fee is refused with its own code; a higher
    // one replaces, and the first is reported dropped.
    let queued = paying(&keys[0], chain_id, 1, 2, 1);
    let err = rpc
        .send_raw_transaction(raw(&queued))
        .await
        .expect_err("the same fee does not replace");
    let jsonrpsee::core::ClientError::Call(err) = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        err.code(),
        codes::REPLACEMENT_UNDERPRICED,
        "{}",
        err.message()
    );
    assert!(err.message().contains("at least 2"), "{}", err.message());
    let replacement = paying(&keys[0], chain_id, 1, 1, 2);
    rpc.send_raw_transaction(raw(&replacement))
        .await
        .expect("a higher fee replaces");
    let old = rpc
        .get_transaction(accepted[0].to_string())
        .await
        .expect("tx");
    let TxStatusInfo::Dropped { reason } = &old.status else {
        panic!("{old:?}")
    };
    assert!(reason.contains("replaced"), "{reason}");

    // Filling the gap makes the sender's run executable: all of it commits.
    let zero = paying(&keys[0], chain_id, 0, 1, 1);
    rpc.send_raw_transaction(raw(&zero)).await.expect("nonce 0");
    wait_for(
        "the promoted run to commit",
        Duration::from_secs(30),
        || async {
            let account = rpc.get_account(keys[0].address().to_string()).await.ok()?;
            (account.nonce == 17).then_some(())
        },
    )
    .await;
    let status = rpc.status().await.expect("status");
    assert_eq!(status.mempool_queued, 484);
}

/// What this node's clients submitted survives kill -9 in the mempool
/// journal, a torn tail included: queued transfers come back queued, a
/// replaced one is still reported replaced, and what no longer fits the
/// (restarted, smaller) pool is reported dropped with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn accepted_transfers_survive_kill9_in_the_journal() {
    // It loads both cores: never beside a multi-node test.
    let _heavy = crate::harness::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("dev");
    let mut node = NodeProc::spawn("dev", &home, "dev", crate::harness::DEV_ARGS);
    let rpc = client(&node.rpc_url().await);
    wait_height(&rpc, 1, Duration::from_secs(30)).await;
    let chain_id = rpc.status().await.expect("status").chain_id;
    let sender = &dev_keys()[7];
    let start = rpc
        .get_account(sender.address().to_string())
        .await
        .expect("account")
        .nonce;

    // Nonces start+1..=start+5 wait behind the missing start; the first is
    // then replaced by a higher fee.
    let queued: Vec<SignedTransaction> = (1..=5)
        .map(|i| paying(sender, chain_id, start + i, 1, 1))
        .collect();
    let mut hashes = Vec::new();
    for tx in &queued {
        hashes.push(rpc.send_raw_transaction(raw(tx)).await.expect("queued"));
    }
    let replacement = paying(sender, chain_id, start + 1, 1, 2);
    let replacement_hash = rpc
        .send_raw_transaction(raw(&replacement))
        .await
        .expect("replacement");

    node.kill9();
    // A crash mid-append: a torn entry at the end.
    let journal = Home::new(&home).mempool_journal_file();
    let mut bytes = std::fs::read(&journal).expect("the journal was written");
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&journal, &bytes).expect("tear the journal");
    // The restarted pool holds at most 3 queued per sender.
    let config_file = Home::new(&home).config_file();
    let mut config = Config::load(&config_file).expect("config");
    config.mempool.max_queued_per_sender = 3;
    std::fs::write(&config_file, config.documented()).expect("write config");
    node.restart();
    let rpc = client(&node.rpc_url().await);
    wait_height(&rpc, 1, Duration::from_secs(30)).await;
    let log = node.log_text();
    assert!(
        log.contains("read up to its last whole entry"),
        "the torn tail is reported:\n{log}"
    );

    let status = |hash: tally_ledger::Hash| {
        let rpc = rpc.clone();
        async move {
            rpc.get_transaction(hash.to_string())
                .await
                .expect("tx")
                .status
        }
    };
    let reason = |status: TxStatusInfo| match status {
        TxStatusInfo::Dropped { reason } => reason,
        other => panic!("expected dropped, got {other:?}"),
    };
    assert!(reason(status(hashes[0]).await).contains("replaced"));
    for hash in [replacement_hash, hashes[1], hashes[2]] {
        assert_eq!(status(hash).await, TxStatusInfo::Queued, "kept queued");
    }
    for hash in [hashes[3], hashes[4]] {
        let reason = reason(status(hash).await);
        assert!(reason.contains("behind the gap"), "{reason}");
    }

    // The missing nonce arrives: the replayed run commits.
    let first = paying(sender, chain_id, start, 1, 1);
    rpc.send_raw_transaction(raw(&first))
        .await
        .expect("nonce 0");
    wait_for(
        "the replayed run to commit",
        Duration::from_secs(30),
        || async {
            let info = rpc.get_transaction(hashes[2].to_string()).await.ok()?;
            info.is_committed().then_some(())
        },
    )
    .await;
    assert!(
        rpc.get_transaction(replacement_hash.to_string())
            .await
            .expect("tx")
            .is_committed()
    );
}

/// `tally bench --overload 2` against a dev chain: first closed loop to
/// measure what it commits, then twice that offered. Every transfer that
/// got a hash back is committed or reported dropped (none stranded), and an
/// unrelated account's transfer sent mid-overload commits within 2 s.
#[tokio::test(flavor = "multi_thread")]
async fn twice_the_capacity_strands_nothing_and_a_newcomer_still_commits() {
    let _heavy = crate::harness::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("dev");
    let node = NodeProc::spawn("dev", &home, "dev", crate::harness::DEV_ARGS);
    let url = node.rpc_url().await;
    wait_height(&client(&url), 1, Duration::from_secs(30)).await;
    let out = dir.path().join("bench.json");
    let stdout = crate::harness::run(&[
        "bench",
        "--rpc",
        &url,
        "--duration",
        "8s",
        "--overload",
        "2",
        "--txs",
        "150000",
        "--senders",
        "500",
        "--no-calibrate",
        "--out",
        &out.display().to_string(),
    ]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("report")).expect("json");
    eprintln!("{stdout}");
    let number = |key: &str| {
        report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {report}"))
    };
    assert_eq!(report["mode"], "overload");
    assert!(number("committed") > 1000.0, "{report}");
    assert!(number("capacity_tps") > 0.0, "{report}");
    assert_eq!(number("stranded"), 0.0, "accepted and lost: {report}");
    assert!(
        number("probe_higher_fee_ms") < 2000.0,
        "a newcomer paying more waited: {report}"
    );
    assert!(
        number("probe_same_fee_ms") < 2000.0,
        "a newcomer at the load's fee waited behind the backlog: {report}"
    );
    assert!(
        report["peak_rss_mib"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "the node's memory was sampled: {report}"
    );
}
