//! Circuit relay: served to trusted peers only.

use std::time::Duration;

use tally_p2p::Config;

use crate::common::{WAIT, config, free_loopback_addr, peer_id, start};

/// Waits until `node` listens through a relay (a circuit address); false
/// if it does not within `within`.
async fn holds_a_reservation(node: &crate::common::Node, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let addrs = node.handle.listen_addrs().await.expect("listen addrs");
        if addrs.iter().any(|a| a.to_string().contains("/p2p-circuit")) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A relay reserves a slot for a peer it trusts and none for a stranger,
/// who is not even offered the relay protocol: otherwise one stranger
/// could hold every slot and carry its traffic through a validator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_serves_trusted_peers_and_no_stranger() {
    let dir = tempfile::tempdir().expect("temp dir");
    let friend_id = peer_id(&dir, "friend");
    let at = free_loopback_addr();
    let relay = start(Config {
        listen: vec![at.clone()],
        external: vec![at],
        relay_server: true,
        trusted_peers: vec![friend_id],
        ..config(&dir, "relay")
    })
    .await;
    let behind_nat = |config: Config| Config {
        use_relays: true,
        bootstrap: vec![relay.addr.clone()],
        ..config
    };
    let friend = start(behind_nat(config(&dir, "friend"))).await;
    let stranger = start(behind_nat(config(&dir, "stranger"))).await;
    assert!(
        holds_a_reservation(&friend, WAIT).await,
        "the trusted peer got no slot"
    );
    assert!(
        !holds_a_reservation(&stranger, Duration::from_secs(3)).await,
        "a stranger got a relay slot"
    );
    for node in [relay, friend, stranger] {
        node.handle.shutdown().await.expect("shutdown");
    }
}
