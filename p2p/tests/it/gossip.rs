use std::{collections::HashSet, time::Duration};

use tally_p2p::{Config, Error, Topic};

use crate::common::{Node, Seen, config, start};

async fn shutdown(nodes: &[&Node]) {
    for node in nodes {
        node.handle.shutdown().await.expect("shutdown");
    }
}

/// Five nodes that only know one bootstrap node discover each other (Kademlia)
/// and form a mesh; every message published by any of them reaches all the
/// others, on both the transaction and the consensus topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_from_one_bootstrap_form_a_mesh_and_deliver_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = start(config(&dir, "hub")).await;
    let mut nodes = vec![hub];
    for i in 0..4 {
        let cfg = Config {
            bootstrap: vec![nodes[0].addr.clone()],
            ..config(&dir, &format!("n{i}"))
        };
        nodes.push(start(cfg).await);
    }
    let ids: Vec<_> = nodes.iter().map(Node::id).collect();
    for node in &nodes {
        let others: Vec<_> = ids.iter().copied().filter(|p| *p != node.id()).collect();
        node.wait_connected_to(&others).await;
    }
    // Every node has mesh peers once the first heartbeats have run.
    for node in &nodes {
        let ok = tokio::time::timeout(Duration::from_secs(10), async {
            while node
                .handle
                .mesh_peers(Topic::Txs)
                .await
                .expect("mesh")
                .is_empty()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(ok.is_ok(), "{} has no mesh peers", node.id());
    }

    for (i, node) in nodes.iter().enumerate() {
        node.publish(Topic::Txs, format!("tx from {i}").into_bytes())
            .await;
        node.publish(Topic::Consensus, format!("vote from {i}").into_bytes())
            .await;
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        let mut expected: HashSet<(Topic, Vec<u8>)> = (0..5)
            .filter(|j| *j != i)
            .flat_map(|j| {
                [
                    (Topic::Txs, format!("tx from {j}").into_bytes()),
                    (Topic::Consensus, format!("vote from {j}").into_bytes()),
                ]
            })
            .collect();
        while !expected.is_empty() {
            let got = node
                .wait_for("gossip delivery", |seen| match seen {
                    Seen::Message { topic, data, .. } => Some((*topic, data.clone())),
                    _ => None,
                })
                .await;
            assert!(expected.remove(&got), "node {i} got unexpected {got:?}");
        }
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    shutdown(&refs).await;
}

/// A node of another chain (other topics) connected to the same peers never
/// receives this chain's gossip, and nobody there takes its publications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_another_chain_receives_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = start(config(&dir, "a")).await;
    let mut b = start(Config {
        bootstrap: vec![a.addr.clone()],
        ..config(&dir, "b")
    })
    .await;
    let mut other = start(Config {
        bootstrap: vec![a.addr.clone()],
        chain_id: 8,
        ..config(&dir, "other")
    })
    .await;
    a.wait_connected_to(&[b.id(), other.id()]).await;

    a.publish(Topic::Txs, b"for chain 7".to_vec()).await;
    b.wait_for("delivery on chain 7", |seen| match seen {
        Seen::Message { data, .. } if data == b"for chain 7" => Some(()),
        _ => None,
    })
    .await;
    let leaked = other.drain_for(Duration::from_secs(1)).await;
    assert!(
        !leaked.iter().any(|s| matches!(s, Seen::Message { .. })),
        "other chain received {leaked:?}"
    );
    assert!(matches!(
        other
            .handle
            .publish(Topic::Txs, b"for chain 8".to_vec())
            .await,
        Err(Error::NoPeers)
    ));
    let stats = other.handle.stats().await.expect("stats");
    assert_eq!(stats.messages_received, 0);
    shutdown(&[&a, &b, &other]).await;
}

/// A payload above the receiver's limit is dropped by the receiver (and
/// refused outright by a node asked to publish it); the receiver keeps
/// working and still gets normal messages afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut receiver = start(Config {
        max_message_bytes: 16 * 1024,
        ..config(&dir, "receiver")
    })
    .await;
    let sender = start(Config {
        max_message_bytes: 1024 * 1024,
        bootstrap: vec![receiver.addr.clone()],
        ..config(&dir, "sender")
    })
    .await;
    let other = start(Config {
        bootstrap: vec![receiver.addr.clone()],
        ..config(&dir, "other")
    })
    .await;
    receiver.wait_connected_to(&[sender.id(), other.id()]).await;

    let big = vec![0xee; 100 * 1024];
    match receiver.handle.publish(Topic::Txs, big.clone()).await {
        Err(Error::MessageTooLarge { size, max }) => {
            assert_eq!((size, max), (100 * 1024, 16 * 1024));
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert_eq!(
        receiver
            .handle
            .stats()
            .await
            .expect("stats")
            .oversized_dropped,
        1
    );

    // The sender's own limit allows it; the receiver's does not.
    sender.publish(Topic::Txs, big).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    other.publish(Topic::Txs, b"small".to_vec()).await;
    let mut seen = Vec::new();
    let ok = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let batch = receiver.drain_for(Duration::from_millis(200)).await;
            let done = batch
                .iter()
                .any(|s| matches!(s, Seen::Message { data, .. } if data == b"small"));
            seen.extend(batch);
            if done {
                return;
            }
        }
    })
    .await;
    assert!(ok.is_ok(), "the small message did not arrive");
    assert!(
        !seen
            .iter()
            .any(|s| matches!(s, Seen::Message { data, .. } if data.len() > 16 * 1024)),
        "the oversized message was delivered"
    );
    shutdown(&[&receiver, &sender, &other]).await;
}
