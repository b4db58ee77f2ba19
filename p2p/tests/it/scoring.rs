use std::time::Duration;

use tally_p2p::{Config, Topic, Verdict};

use crate::common::{Seen, config, start, start_with};

/// A peer whose messages the node keeps rejecting drops below the graylist
/// threshold, is disconnected, and cannot come back while banned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_rejected_messages_is_disconnected_and_banned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut good = start_with(config(&dir, "good"), |_, data| {
        if data.starts_with(b"bad") {
            Verdict::Reject
        } else {
            Verdict::Accept
        }
    })
    .await;
    let bad = start(Config {
        bootstrap: vec![good.addr.clone()],
        ..config(&dir, "bad")
    })
    .await;
    good.wait_connected_to(&[bad.id()]).await;

    let bad_id = bad.id();
    // Six rejected messages are plenty (three cross the threshold). Once the
    // ban lands, publishing fails for lack of peers, which is the point.
    let mut sent = 0;
    for i in 0..50u32 {
        if sent == 6 {
            break;
        }
        let data = format!("bad {i}").into_bytes();
        match bad.handle.publish(Topic::Txs, data).await {
            Ok(_) => sent += 1,
            Err(_) if sent >= 3 => break,
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent >= 3, "only {sent} bad messages could be published");
    good.wait_for("disconnect of the bad peer", |seen| match seen {
        Seen::Disconnected(p) if *p == bad_id => Some(()),
        _ => None,
    })
    .await;
    let score = good
        .handle
        .peer_score(bad_id)
        .await
        .expect("score")
        .expect("the bad peer has a score");
    assert!(score < -80.0, "score {score} should be below the graylist");
    assert_eq!(
        good.handle
            .stats()
            .await
            .expect("stats")
            .peers_banned_for_score,
        1
    );

    // The bad peer keeps redialling (it is a bootstrap peer for it), but the
    // ban refuses every connection.
    let after = good.drain_for(Duration::from_secs(2)).await;
    assert!(
        !after
            .iter()
            .any(|s| matches!(s, Seen::Connected(p) if *p == bad_id)),
        "banned peer reconnected: {after:?}"
    );
    assert!(
        !good
            .handle
            .peers()
            .await
            .expect("peers")
            .iter()
            .any(|p| p.peer == bad_id)
    );
    good.handle.shutdown().await.expect("shutdown");
    bad.handle.shutdown().await.expect("shutdown");
}

/// An explicit ban disconnects the peer; after it expires the persistent
/// peer is redialled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_ban_disconnects_until_it_expires() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut a = start(config(&dir, "a")).await;
    let b = start(Config {
        bootstrap: vec![a.addr.clone()],
        ..config(&dir, "b")
    })
    .await;
    a.wait_connected_to(&[b.id()]).await;
    let b_id = b.id();
    b.handle
        .ban(a.id(), Duration::from_secs(1))
        .await
        .expect("ban");
    a.wait_for("disconnect after ban", |seen| match seen {
        Seen::Disconnected(p) if *p == b_id => Some(()),
        _ => None,
    })
    .await;
    // b redials a, its bootstrap peer, once the ban is over.
    a.wait_for("reconnect after the ban expired", |seen| match seen {
        Seen::Connected(p) if *p == b_id => Some(()),
        _ => None,
    })
    .await;
    a.handle.shutdown().await.expect("shutdown");
    b.handle.shutdown().await.expect("shutdown");
}
