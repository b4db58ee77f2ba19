//! The Prometheus endpoint of a running dev chain: scraped over HTTP,
//! parsed as OpenMetrics text, and its counters move as blocks commit and
//! transfers are admitted and refused (not only that the names exist).

use std::time::Duration;

use tally_genesis::dev_keys;
use tally_rpc::TallyApiClient;

use crate::harness::{NodeProc, client, raw, scrape, transfer, wait_for, wait_height};

#[tokio::test(flavor = "multi_thread")]
async fn a_dev_chain_exports_metrics_that_follow_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("dev");
    let node = NodeProc::spawn("dev", &home, "dev", crate::harness::DEV_ARGS);
    let rpc = client(&node.rpc_url().await);
    let url = node.metrics_url().await;
    wait_height(&rpc, 2, Duration::from_secs(30)).await;
    let chain_id = rpc.status().await.expect("status").chain_id;

    let before = scrape(&url);
    let blocks = before.get("tally_ledger_blocks_committed_total");
    assert!(blocks >= 2.0, "blocks committed: {blocks}");
    assert!(before.get("tally_consensus_height") >= 2.0);
    assert_eq!(before.get("tally_consensus_validators"), 1.0);
    assert!(
        before.get("tally_ledger_store_bytes") > 0.0,
        "store size measured"
    );
    assert!(
        before.get("tally_rpc_requests_total{method=\"tally_status\",outcome=\"ok\"}") >= 1.0,
        "RPC calls counted by method"
    );
    // libp2p's own families are there too (swarm, bandwidth, gossipsub).
    for family in ["libp2p_swarm_", "libp2p_identify_", "libp2p_gossipsub_"] {
        assert!(before.has(family), "no {family}* metrics");
    }

    // A transfer: admitted once (local), then committed.
    let keys = dev_keys();
    let (alice, bob) = (&keys[0], &keys[1]);
    let nonce = rpc
        .get_account(alice.address().to_string())
        .await
        .expect("account")
        .nonce;
    let tx = transfer(alice, chain_id, nonce, bob.address(), 7);
    rpc.send_transaction_and_wait(raw(&tx), Some(20_000))
        .await
        .expect("transfer commits");
    // The same transfer again: refused (its nonce is used now).
    assert!(rpc.send_raw_transaction(raw(&tx)).await.is_err());

    let after = wait_for("the counters to move", Duration::from_secs(20), || async {
        let s = scrape(&url);
        (s.get("tally_ledger_txs_committed_total") >= 1.0).then_some(s)
    })
    .await;
    let admitted = "tally_mempool_admitted_total{kind=\"local\"}";
    assert_eq!(after.get(admitted) - before.get(admitted), 1.0);
    assert_eq!(
        after.get("tally_mempool_refused_total{reason=\"nonce_too_low\"}"),
        1.0,
        "{:?}",
        after
            .0
            .iter()
            .filter(|(k, _)| k.starts_with("tally_mempool_refused"))
            .collect::<Vec<_>>()
    );
    assert!(after.get("tally_ledger_blocks_committed_total") > blocks);
    assert!(after.get("tally_ledger_block_txs_count") > before.get("tally_ledger_block_txs_count"));
    assert!(after.get("tally_consensus_rounds_per_height_count") >= 2.0);
    assert!(
        after.sum("tally_rpc_latency_seconds_count")
            > before.sum("tally_rpc_latency_seconds_count")
    );

    // Every Tally family exported is documented for operators, and the
    // Grafana dashboard plots only documented ones (families without a
    // series yet, say timeouts on a one-validator chain, are not exported).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let operations =
        std::fs::read_to_string(root.join("docs/OPERATIONS.md")).expect("OPERATIONS.md");
    let tally: Vec<&String> = after.1.iter().filter(|f| f.starts_with("tally_")).collect();
    assert!(tally.len() > 30, "{tally:?}");
    for family in &tally {
        assert!(
            operations.contains(family.as_str()),
            "{family} is not in docs/OPERATIONS.md"
        );
    }
    let dashboard =
        std::fs::read_to_string(root.join("docs/grafana/tally.json")).expect("dashboard");
    for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if !word.starts_with("tally_") && !word.starts_with("libp2p_") {
            continue;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| word.strip_suffix(s))
            .unwrap_or(word);
        assert!(
            operations.contains(family),
            "the dashboard plots {word}, which docs/OPERATIONS.md does not list"
        );
    }
}
