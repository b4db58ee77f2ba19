//! What a node tells its peers about its own addresses (identify).

use std::time::Duration;

use futures::StreamExt;
use libp2p::{Multiaddr, identify, noise, swarm::SwarmEvent, tcp, yamux};

use crate::common::{WAIT, config, start};

/// Connects a bare libp2p peer to `addr` and returns the listen addresses
/// the node announces to it over identify.
async fn announced_by(addr: Multiaddr) -> Vec<Multiaddr> {
    let mut probe = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|key| {
            identify::Behaviour::new(identify::Config::new("/probe/1".into(), key.public()))
        })
        .expect("identify behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build();
    probe.dial(addr).expect("dial");
    tokio::time::timeout(WAIT, async {
        loop {
            if let SwarmEvent::Behaviour(identify::Event::Received { info, .. }) =
                probe.select_next_some().await
            {
                return info.listen_addrs;
            }
        }
    })
    .await
    .expect("identify info in time")
}

/// A node whose operator named its public address announces that one
/// only: its listen addresses (here loopback, on a real host a private
/// network) are not routable from its peers and stay private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_an_external_address_announces_only_that() {
    let dir = tempfile::tempdir().expect("temp dir");
    let external: Multiaddr = "/ip4/203.0.113.7/tcp/26656".parse().expect("addr");
    let node = start(tally_p2p::Config {
        external: vec![external.clone()],
        ..config(&dir, "a")
    })
    .await;
    assert_eq!(announced_by(node.addr.clone()).await, vec![external]);
    node.handle.shutdown().await.expect("shutdown");
}

/// A node with nothing but loopback (a single-machine testnet) announces
/// its loopback address, and one behind NAT (`use_relays`, no relay yet)
/// announces none: peers could not dial what it listens on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_only_nodes_announce_loopback_and_nodes_behind_nat_nothing_private() {
    let dir = tempfile::tempdir().expect("temp dir");
    let local = start(config(&dir, "a")).await;
    let announced = announced_by(local.addr.clone()).await;
    let listen: Vec<Multiaddr> = local
        .handle
        .listen_addrs()
        .await
        .expect("listen addrs")
        .into_iter()
        .map(|mut a| {
            a.pop(); // the /p2p/<id>
            a
        })
        .collect();
    assert_eq!(announced, listen);

    let natted = start(tally_p2p::Config {
        use_relays: true,
        ..config(&dir, "b")
    })
    .await;
    assert_eq!(
        announced_by(natted.addr.clone()).await,
        Vec::<Multiaddr>::new()
    );
    local.handle.shutdown().await.expect("shutdown");
    natted.handle.shutdown().await.expect("shutdown");
}
