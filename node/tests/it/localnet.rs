//! Four validator processes on loopback under a steady stream of transfers:
//! they agree on every block, survive a kill -9 of one and of all without
//! losing a transfer they accepted, and a full node started late syncs the
//! whole chain.

use std::path::PathBuf;
use std::time::Duration;

use jsonrpsee_http_client::HttpClient;
use tally_ledger::{Address, Hash};
use tally_node::config::{Config, Home};
use tally_rpc::TallyApiClient;

use crate::harness::{
    Load, NodeProc, assert_agreement, assert_settled, client, committed, hashes, height, rpc_url,
    run, scrape, wait_for, wait_height,
};

const LONG: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn four_validators_agree_survive_kills_and_serve_a_full_node() {
    let _heavy = crate::harness::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let homes = crate::harness::four_validator_homes(dir.path());
    let urls: Vec<String> = homes.iter().map(|h| rpc_url(h)).collect();
    let mut nodes: Vec<NodeProc> = homes
        .iter()
        .enumerate()
        .map(|(i, h)| NodeProc::start(&format!("node{i}"), h, &[]))
        .collect();
    let clients: Vec<HttpClient> = urls.iter().map(|u| client(u)).collect();
    for c in &clients {
        wait_height(c, 2, LONG).await;
    }
    let chain_id = clients[0].status().await.expect("status").chain_id;

    // Steady load: every node has the same block at every height.
    let load = Load::start(urls.clone(), chain_id);
    wait_height(&clients[0], 12, LONG).await;
    assert_agreement(&clients).await;

    // Every node's metrics see the network: three peers, votes and
    // consensus gossip accepted, transfers arriving by gossip somewhere,
    // bytes on the wire.
    let mut gossiped = 0.0;
    for node in &nodes {
        let m = scrape(&node.metrics_url().await);
        assert_eq!(m.sum("tally_p2p_peers"), 3.0, "{}: peers", node.name);
        assert!(m.get("tally_consensus_votes_total{kind=\"prevote\"}") > 0.0);
        assert!(m.get("tally_consensus_votes_total{kind=\"precommit\"}") > 0.0);
        assert!(
            m.get("tally_p2p_gossip_verdicts_total{topic=\"consensus\",verdict=\"accept\"}") > 0.0
        );
        assert!(m.sum("tally_p2p_messages_received_total") > 0.0);
        assert!(m.sum("libp2p_bandwidth_bytes_total") > 0.0);
        assert_eq!(m.get("tally_consensus_validators"), 4.0);
        gossiped += m.get("tally_mempool_admitted_total{kind=\"gossip\"}");
    }
    assert!(gossiped > 0.0, "no transfer arrived by gossip at any node");

    // tally_consensusState and tally_netInfo: node0 sees the round it is
    // in, and each of its three peers with the validator whose votes it
    // authors (the other three: node i runs validator i), bytes in, and a
    // reported height.
    let state = clients[0].consensus_state().await.expect("consensusState");
    assert!(state.height >= 12, "{state:?}");
    assert!(["propose", "prevote", "precommit"].contains(&state.step.as_str()));
    let validators: Vec<Address> = clients[0]
        .validators(None)
        .await
        .expect("validators")
        .validators
        .iter()
        .map(|v| v.address)
        .collect();
    assert!(state.proposer.is_some_and(|p| validators.contains(&p)));
    assert!(state.missing_prevotes.len() + state.prevotes.len() >= 4);
    let me = clients[0].status().await.expect("status").validator;
    let peers = wait_for("every peer's validator and height known", LONG, || async {
        let peers = clients[0].net_info().await.ok()?;
        (peers.len() == 3
            && peers
                .iter()
                .all(|p| p.validator.is_some() && p.reported_height.is_some()))
        .then_some(peers)
    })
    .await;
    let mut theirs: Vec<Address> = peers.iter().filter_map(|p| p.validator).collect();
    theirs.sort();
    let mut others: Vec<Address> = validators.into_iter().filter(|v| Some(*v) != me).collect();
    others.sort();
    assert_eq!(theirs, others, "{peers:?}");
    for p in &peers {
        assert!(p.bytes_in > 0 && p.connected_since_ms > 0, "{p:?}");
        assert!(p.direction == "inbound" || p.direction == "outbound");
        assert!(p.score.is_some());
    }

    // `tally query account --prove`: a dev account's balance, checked
    // against a header the genesis validators certified.
    let dev = tally_genesis::dev_keys().remove(1).address().to_string();
    let genesis_file = homes[0].join("config/genesis.json");
    let out = crate::harness::run(&[
        "query",
        "account",
        &dev,
        "--prove",
        "--genesis",
        genesis_file.to_str().expect("utf-8 path"),
        "--rpc",
        &urls[2],
    ]);
    let proven: serde_json::Value = serde_json::from_str(&out).expect("json");
    let proven_at = proven["height"].as_u64().expect("height");
    assert_eq!(proven["exists"], true, "{proven}");
    let block = clients[0]
        .get_block_by_height(proven_at)
        .await
        .expect("read")
        .expect("block");
    assert_eq!(
        proven["blockHash"],
        serde_json::json!(block.hash),
        "{proven}"
    );
    // Without the genesis there is nothing to check against.
    let refused = crate::harness::tally()
        .args(["query", "account", &dev, "--prove", "--rpc", &urls[2]])
        .output()
        .expect("run");
    assert!(!refused.status.success());

    // tally_traceTransaction: a transfer the load submitted to node1, once
    // committed, is traced on every node: node1 had it from RPC, the
    // others from a peer (or, if a proposal beat the gossip, a block), all
    // saw it committed at the same height; `tally query trace` puts the
    // four records on one timeline.
    let (hash, at_node) = {
        // Origins first: each is pushed after its hash, so the indices agree.
        let origins = load.origins.lock().await.clone();
        let accepted = load.accepted.lock().await.clone();
        let i = origins
            .iter()
            .position(|o| o.node == 1)
            .expect("one accepted by node1");
        (accepted[i], origins[i].node)
    };
    let traces = wait_for(
        "the transfer traced as committed everywhere",
        LONG,
        || async {
            let mut traces = Vec::new();
            for c in &clients {
                let t = c.trace_transaction(hash.to_string()).await.ok()??;
                t.committed_height?;
                traces.push(t);
            }
            Some(traces)
        },
    )
    .await;
    assert_eq!(traces[at_node].source, "rpc", "{:?}", traces[at_node]);
    let at = traces[0].committed_height;
    assert!(
        traces.iter().all(|t| t.committed_height == at),
        "{traces:?}"
    );
    assert!(traces.iter().all(|t| !t.proposals.is_empty()), "{traces:?}");
    let from_peers = traces
        .iter()
        .enumerate()
        .filter(|(i, t)| *i != at_node && t.source.starts_with("peer "))
        .count();
    assert!(from_peers > 0, "no node had it by gossip: {traces:?}");
    for (i, t) in traces.iter().enumerate() {
        if i != at_node {
            assert!(
                t.source.starts_with("peer ") || t.source == "block",
                "{t:?}"
            );
        }
    }
    let hash_s = hash.to_string();
    let mut args = vec!["query", "trace", hash_s.as_str()];
    for url in &urls {
        args.extend(["--rpc", url.as_str()]);
    }
    let timeline = run(&args);
    assert!(timeline.contains("first seen (rpc)"), "{timeline}");
    assert_eq!(
        timeline.matches("committed at height").count(),
        4,
        "{timeline}"
    );

    // kill -9 one validator: the other three keep committing.
    nodes[3].kill9();
    let before = height(&clients[0]).await.expect("node0");
    wait_height(&clients[0], before + 5, LONG).await;
    wait_height(&clients[1], before + 5, LONG).await;
    // Restarted, it catches up by sync and agrees.
    nodes[3].restart();
    let target = height(&clients[0]).await.expect("node0");
    wait_height(&clients[3], target, LONG).await;
    assert_agreement(&clients).await;

    // kill -9 all four at once, mid-load.
    let accepted_so_far = load.accepted.lock().await.clone();
    let committed_before = committed(&clients[0], &accepted_so_far).await;
    assert!(
        !committed_before.is_empty(),
        "no transfer committed under load"
    );
    let tip_before = height(&clients[0]).await.expect("node0");
    let chain_before = hashes(&clients[0], tip_before).await;
    eprintln!(
        "kill -9 of all four at height {tip_before}, {} of {} accepted transfers committed",
        committed_before.len(),
        accepted_so_far.len()
    );
    for node in &mut nodes {
        node.kill9();
    }
    // They come back offering a snapshot every 10 heights, for the
    // validator that rejoins by state sync below.
    for home in &homes {
        let path = Home::new(home).config_file();
        let mut config = Config::load(&path).expect("config");
        config.sync.snapshot_interval = 10;
        config.sync.snapshot_keep = 30;
        std::fs::write(&path, config.documented()).expect("write config");
    }
    for node in &mut nodes {
        node.restart();
    }
    for c in &clients {
        wait_height(c, tip_before + 3, LONG).await;
    }
    // Nothing committed was lost or changed.
    let chain_after = assert_agreement(&clients).await;
    assert_eq!(chain_after[..chain_before.len()], chain_before[..]);
    for c in &clients {
        let hashes: Vec<Hash> = committed_before.keys().copied().collect();
        assert_eq!(committed(c, &hashes).await, committed_before);
    }

    // Stop the load; once the mempools drain, every transfer that got a
    // hash back is committed or reported dropped by the node that accepted
    // it (the journal kept them across the kill -9 of all four): none is
    // stranded. Balances agree; nobody double-signed.
    let (accepted, origins) = load.finish_with_origins().await;
    let logs: Vec<(String, String)> = nodes
        .iter()
        .map(|n| (n.name.clone(), n.log_text()))
        .collect();
    assert_settled(&clients, &accepted, &origins, &logs).await;

    // A full node started from genesis after 100+ blocks syncs to the tip.
    wait_height(&clients[0], 100, Duration::from_secs(180)).await;
    let full = crate::harness::joining_home(dir.path(), "full", &homes, true);
    let full_node = NodeProc::start("full", &full, &[]);
    let full_client = client(&full_node.rpc_url().await);
    let tip = height(&clients[0]).await.expect("node0");
    wait_height(&full_client, tip, LONG).await;
    eprintln!("full node synced {tip} blocks");
    let status = full_client.status().await.expect("status");
    assert_eq!(status.validator, None);
    assert_eq!(
        hashes(&full_client, tip).await,
        hashes(&clients[0], tip).await
    );

    // A validator whose store is lost rejoins by state sync: its signing
    // state survives `tally reset`, it installs a snapshot, block-syncs to
    // the tip and votes again.
    nodes[3].kill9();
    run(&[
        "reset",
        "--home",
        &homes[3].display().to_string(),
        "--yes-delete-chain-data",
    ]);
    let path = Home::new(&homes[3]).config_file();
    let mut config = Config::load(&path).expect("config");
    config.sync.state_sync = true;
    std::fs::write(&path, config.documented()).expect("write config");
    nodes[3].restart();
    let tip = height(&clients[0]).await.expect("node0");
    wait_height(&clients[3], tip, LONG).await;
    let log = nodes[3].log_text();
    assert!(log.contains("state sync done"), "it did not state-sync");
    let me = clients[3]
        .status()
        .await
        .expect("status")
        .validator
        .expect("a validator");
    let voted = wait_for("its precommits in a certificate", LONG, || async {
        let at = height(&clients[0]).await?;
        let block = clients[0].get_block_by_height(at).await.ok()??;
        block
            .last_commit
            .is_some_and(|c| c.signatures.iter().any(|s| s.validator == me))
            .then_some(at)
    })
    .await;
    eprintln!("the state-synced validator signed the certificate in block {voted}");
    wait_height(&clients[3], voted, LONG).await;
    let ours = clients[3].get_block_by_height(voted).await.expect("read");
    let theirs = clients[0].get_block_by_height(voted).await.expect("read");
    assert_eq!(ours.map(|b| b.hash), theirs.map(|b| b.hash));
}

/// Every validator locks a block that is never decided (each withholds its
/// precommits), then all four are killed with -9 and restarted normally: the
/// locked block's body was saved beside the signing state, so it is
/// proposed again, verified and decided, and the chain goes on. (Before the
/// bodies were saved, nobody could propose the locked value after the
/// restart and the lockers refused every other: the chain stopped for good.)
#[tokio::test(flavor = "multi_thread")]
async fn a_lock_without_a_decision_survives_a_restart_of_every_validator() {
    let _heavy = crate::harness::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let homes = crate::harness::four_validator_homes(dir.path());
    let withhold = [(tally_node::node::WITHHOLD_PRECOMMITS_VAR, "1")];
    let mut nodes: Vec<NodeProc> = homes
        .iter()
        .enumerate()
        .map(|(i, h)| NodeProc::start_with_env(&format!("node{i}"), h, &withhold))
        .collect();
    let clients: Vec<HttpClient> = homes.iter().map(|h| client(&rpc_url(h))).collect();
    // Every validator saved the body of a block it locked (or proposed).
    let saved: Vec<PathBuf> = homes
        .iter()
        .map(|h| Home::new(h.clone()).signed_blocks_file())
        .collect();
    wait_for("every validator saved a signed block", LONG, || {
        let all = saved.iter().all(|f| f.exists());
        async move { all.then_some(()) }
    })
    .await;
    // A few rounds with locks and no decision.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for c in &clients {
        assert_eq!(height(c).await, Some(0), "nothing can be decided yet");
    }
    for node in &mut nodes {
        node.kill9();
    }
    for node in &mut nodes {
        node.env.clear();
        node.restart();
    }
    for c in &clients {
        wait_height(c, 3, LONG).await;
    }
    assert_agreement(&clients).await;
    for node in &nodes {
        let log = node.log_text();
        assert!(
            log.contains("restored a signed block's body"),
            "{} restored no body",
            node.name
        );
    }
}
