use std::time::Duration;

use tally_p2p::Config;

use crate::common::{Seen, config, free_loopback_addr, peer_id, start};

/// A persistent peer that goes away is redialled with backoff and reconnects
/// when it comes back on the same address; its key file keeps its peer id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_is_redialled_when_it_comes_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = start(config(&dir, "a")).await;
    let a_id = a.id();
    let a_addr = a.addr.clone();
    let mut b = start(Config {
        bootstrap: vec![a_addr.clone()],
        ..config(&dir, "b")
    })
    .await;
    b.wait_for("first connection", |seen| match seen {
        Seen::Connected(p) if *p == a_id => Some(()),
        _ => None,
    })
    .await;
    let peers = b.handle.peers().await.expect("peers");
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer, a_id);

    a.handle.shutdown().await.expect("shutdown a");
    drop(a);
    b.wait_for("disconnect", |seen| match seen {
        Seen::Disconnected(p) if *p == a_id => Some(()),
        _ => None,
    })
    .await;
    // Let a few redials fail against the closed port.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let text = a_addr.to_string();
    let listen: tally_p2p::Multiaddr = text
        .split("/p2p/")
        .next()
        .expect("address text")
        .parse()
        .expect("listen address");
    let a2 = start(Config {
        listen: vec![listen],
        ..config(&dir, "a")
    })
    .await;
    assert_eq!(a2.id(), a_id, "the key file keeps the peer id");
    b.wait_for("reconnect", |seen| match seen {
        Seen::Connected(p) if *p == a_id => Some(()),
        _ => None,
    })
    .await;
    b.handle.shutdown().await.expect("shutdown b");
    a2.handle.shutdown().await.expect("shutdown a2");
}

/// `dial` connects to an address; `peers` lists the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_and_list_peers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = start(config(&dir, "a")).await;
    let b = start(config(&dir, "b")).await;
    assert!(a.addr.to_string().starts_with("/ip4/127.0.0.1/tcp/"));
    assert!(a.addr.to_string().ends_with(&format!("/p2p/{}", a.id())));
    b.handle.dial(a.addr.clone()).await.expect("dial");
    b.wait_connected_to(&[a.id()]).await;
    a.wait_connected_to(&[b.id()]).await;
    let peers = b.handle.peers().await.expect("peers");
    assert_eq!(peers.len(), 1);
    assert!(!peers[0].addrs.is_empty());
    a.handle.shutdown().await.expect("shutdown");
    b.handle.shutdown().await.expect("shutdown");
}

/// With the `quic` feature, `enable_quic` adds a QUIC listener next to TCP
/// and nodes connect over it.
#[cfg(feature = "quic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_connect_over_quic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = start(Config {
        enable_quic: true,
        ..config(&dir, "a")
    })
    .await;
    let b = start(Config {
        enable_quic: true,
        ..config(&dir, "b")
    })
    .await;
    let quic = a
        .handle
        .listen_addrs()
        .await
        .expect("listen addrs")
        .into_iter()
        .find(|addr| addr.to_string().contains("/quic-v1/"))
        .expect("a QUIC listen address");
    b.handle.dial(quic).await.expect("dial over QUIC");
    b.wait_connected_to(&[a.id()]).await;
    let peers = b.handle.peers().await.expect("peers");
    assert!(
        peers[0]
            .addrs
            .iter()
            .any(|addr| addr.to_string().contains("/quic-v1")),
        "{peers:?}"
    );
    a.handle.shutdown().await.expect("shutdown");
    b.handle.shutdown().await.expect("shutdown");
}

/// Without the `quic` feature, asking for QUIC is a config error, not a
/// silently TCP-only node.
#[cfg(not(feature = "quic"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_quic_without_the_feature_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let result = tally_p2p::spawn(Config {
        enable_quic: true,
        ..config(&dir, "a")
    })
    .await;
    assert!(matches!(result, Err(tally_p2p::Error::Config(_))));
}

/// How many peers `node` has after the dust settles.
async fn settled_peers(node: &crate::common::Node) -> usize {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.handle.peers().await.expect("peers").len()
}

/// Strangers that take every inbound slot do not keep a reserved (bootstrap)
/// peer out: it bypasses the limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_filling_every_slot_cannot_keep_a_reserved_peer_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The reserved peer's identity and address, known before it runs.
    let reserved_id = peer_id(&dir, "reserved");
    let reserved_addr = free_loopback_addr();
    let v = start(Config {
        bootstrap: vec![
            format!("{reserved_addr}/p2p/{reserved_id}")
                .parse()
                .expect("addr"),
        ],
        max_inbound: 2,
        // No dials of its own to strangers it discovers.
        max_outbound: 0,
        ..config(&dir, "v")
    })
    .await;
    let mut strangers = Vec::new();
    for i in 0..3 {
        strangers.push(
            start(Config {
                bootstrap: vec![format!("{}/p2p/{}", v.addr, v.id()).parse().expect("addr")],
                ..config(&dir, &format!("stranger{i}"))
            })
            .await,
        );
    }
    assert_eq!(settled_peers(&v).await, 2, "the inbound limit held");

    let reserved = start(Config {
        listen: vec![reserved_addr],
        ..config(&dir, "reserved")
    })
    .await;
    assert_eq!(reserved.id(), reserved_id);
    v.wait_connected_to(&[reserved_id]).await;
    assert_eq!(settled_peers(&v).await, 3);
}

/// One IP address gets at most `max_inbound_per_ip` inbound connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_more_than_its_share_of_inbound_slots() {
    let dir = tempfile::tempdir().expect("temp dir");
    let v = start(Config {
        max_inbound_per_ip: 2,
        max_outbound: 0,
        ..config(&dir, "v")
    })
    .await;
    let mut strangers = Vec::new();
    for i in 0..4 {
        strangers.push(
            start(Config {
                bootstrap: vec![format!("{}/p2p/{}", v.addr, v.id()).parse().expect("addr")],
                ..config(&dir, &format!("stranger{i}"))
            })
            .await,
        );
    }
    assert_eq!(settled_peers(&v).await, 2);
}

/// Identities are free, hosts are not: once three identities from one host
/// are banned, a fourth from that host is refused, while a reserved peer at
/// the same host still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_identities_keep_getting_banned_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let reserved_id = peer_id(&dir, "reserved");
    let reserved_addr = free_loopback_addr();
    let v = start(Config {
        bootstrap: vec![
            format!("{reserved_addr}/p2p/{reserved_id}")
                .parse()
                .expect("addr"),
        ],
        max_outbound: 0,
        ..config(&dir, "v")
    })
    .await;
    let dial_v =
        || -> tally_p2p::Multiaddr { format!("{}/p2p/{}", v.addr, v.id()).parse().expect("addr") };
    for i in 0..Config::default().banned_identities_per_host {
        let stranger = start(Config {
            bootstrap: vec![dial_v()],
            ..config(&dir, &format!("banned{i}"))
        })
        .await;
        v.wait_connected_to(&[stranger.id()]).await;
        v.handle
            .ban(stranger.id(), Duration::from_secs(60))
            .await
            .expect("ban");
    }
    let newcomer = start(Config {
        bootstrap: vec![dial_v()],
        ..config(&dir, "newcomer")
    })
    .await;
    let reserved = start(Config {
        listen: vec![reserved_addr],
        ..config(&dir, "reserved")
    })
    .await;
    v.wait_connected_to(&[reserved.id()]).await;
    let peers: Vec<_> = v
        .handle
        .peers()
        .await
        .expect("peers")
        .into_iter()
        .map(|p| p.peer)
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later: Vec<_> = v
        .handle
        .peers()
        .await
        .expect("peers")
        .into_iter()
        .map(|p| p.peer)
        .collect();
    assert!(
        !peers.contains(&newcomer.id()) && !later.contains(&newcomer.id()),
        "a new identity from a host with banned ones got in"
    );
    assert!(later.contains(&reserved.id()), "the reserved peer stays");
}

/// A host that opens sockets and never finishes the handshake holds at most
/// `max_inbound_per_ip` handshake slots: the next socket is closed at once,
/// and a peer from another address still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_than_its_share_of_handshakes() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("temp dir");
    let v = start(Config {
        max_inbound_per_ip: 2,
        max_outbound: 0,
        ..config(&dir, "v")
    })
    .await;
    // "/ip4/127.0.0.1/tcp/<port>[/p2p/<id>]"
    let addr = v.addr.to_string();
    let parts: Vec<&str> = addr.split('/').collect();
    let port: u16 = parts
        .iter()
        .position(|p| *p == "tcp")
        .and_then(|i| parts.get(i + 1))
        .and_then(|p| p.parse().ok())
        .expect("tcp port");
    // Sockets from 127.0.0.2 (still loopback) that never say a word.
    let silent = || {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind");
        socket
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let stream = silent()
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect");
        held.push(stream.into_std().expect("std stream"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = silent()
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect")
        .into_std()
        .expect("std stream");
    refused.set_nonblocking(false).expect("blocking");
    refused
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let read = (&refused).read(&mut buf);
    assert!(
        matches!(read, Ok(0))
            || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "a third handshake from one address was not closed: {read:?}"
    );
    for stream in &held {
        stream.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 64];
        let open = matches!((&*stream).read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(open, "a socket within the share was closed");
    }

    let stranger = start(Config {
        bootstrap: vec![format!("{}/p2p/{}", v.addr, v.id()).parse().expect("addr")],
        ..config(&dir, "stranger")
    })
    .await;
    v.wait_connected_to(&[stranger.id()]).await;
}
