use std::time::Duration;

use tally_p2p::{Config, Event, Handle, Multiaddr, PeerId, RequestId, Topic, Verdict};
use tempfile::TempDir;
use tokio::sync::mpsc;

pub const CHAIN: u64 = 7;
pub const GENESIS: [u8; 32] = [0x42; 32];
/// Upper bound for anything a test waits on; tests normally finish far sooner.
pub const WAIT: Duration = Duration::from_secs(20);

/// A config for a loopback node with fast timers, its key in `dir`.
pub fn config(dir: &TempDir, name: &str) -> Config {
    Config {
        key_file: dir.path().join(name),
        chain_id: CHAIN,
        genesis_hash: GENESIS,
        heartbeat_interval: Duration::from_millis(200),
        redial_initial_backoff: Duration::from_millis(200),
        redial_max_backoff: Duration::from_secs(1),
        discovery_interval: Duration::from_secs(2),
        ..Config::default()
    }
}

/// The identity of the node whose key lives at `dir/name` (created now),
/// known before the node runs.
pub fn peer_id(dir: &TempDir, name: &str) -> PeerId {
    tally_p2p::load_or_create_key(&dir.path().join(name))
        .expect("key")
        .public()
        .to_peer_id()
}

/// A loopback TCP address on a port free right now, for a node whose
/// address must be known before it runs.
pub fn free_loopback_addr() -> Multiaddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr")
}

/// What a test node's event loop saw, minus the gossip verdict plumbing.
#[derive(Debug)]
pub enum Seen {
    Message { topic: Topic, data: Vec<u8> },
    Request { id: RequestId, data: Vec<u8> },
    Connected(PeerId),
    Disconnected(PeerId),
}

pub struct Node {
    pub handle: Handle,
    pub addr: Multiaddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl Node {
    pub fn id(&self) -> PeerId {
        self.handle.local_peer_id()
    }

    /// Waits for the first observation that `pick` maps to `Some`, skipping
    /// the others; panics after [`WAIT`].
    pub async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&Seen) -> Option<T>) -> T {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(seen) = self.seen.recv().await {
                if let Some(found) = pick(&seen) {
                    return Some(found);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(found)) => found,
            Ok(None) => panic!("{what}: node stopped"),
            Err(_) => panic!("{what}: timed out"),
        }
    }

    /// Collects everything seen for `period`.
    pub async fn drain_for(&mut self, period: Duration) -> Vec<Seen> {
        let mut all = Vec::new();
        let _ = tokio::time::timeout(period, async {
            while let Some(seen) = self.seen.recv().await {
                all.push(seen);
            }
        })
        .await;
        all
    }

    /// Waits until this node is connected to all of `peers`.
    pub async fn wait_connected_to(&self, peers: &[PeerId]) {
        let ok = tokio::time::timeout(WAIT, async {
            loop {
                let connected = self.handle.peers().await.expect("peers");
                if peers
                    .iter()
                    .all(|p| connected.iter().any(|info| info.peer == *p))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            ok.is_ok(),
            "{} not connected to all of {peers:?}",
            self.id()
        );
    }

    /// Publishes, retrying while no peer has subscribed yet.
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.handle.publish(topic, data.clone()).await {
                Ok(_) => return,
                Err(tally_p2p::Error::NoPeers) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("publish failed: {e}"),
            }
        }
    }
}

/// Starts a node whose event loop gives `verdict(source, data)` on every
/// gossip message and forwards what it sees to `Node::seen`.
pub async fn start_with(
    config: Config,
    verdict: impl Fn(&PeerId, &[u8]) -> Verdict + Send + 'static,
) -> Node {
    let (handle, mut events) = tally_p2p::spawn(config).await.expect("spawn node");
    let addr = handle
        .listen_addrs()
        .await
        .expect("listen addrs")
        .into_iter()
        .next()
        .expect("one listen address");
    let (tx, seen) = mpsc::unbounded_channel();
    let reporter = handle.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let seen = match event {
                Event::Message {
                    topic,
                    source,
                    id,
                    data,
                    ..
                } => {
                    let v = verdict(&source, &data);
                    if reporter.report(id, source, v).await.is_err() {
                        break;
                    }
                    Seen::Message { topic, data }
                }
                Event::Request { id, data, .. } => Seen::Request { id, data },
                Event::PeerConnected { peer, .. } => Seen::Connected(peer),
                Event::PeerDisconnected { peer } => Seen::Disconnected(peer),
            };
            // The test may have stopped listening; keep reporting anyway.
            let _ = tx.send(seen);
        }
    });
    Node { handle, addr, seen }
}

/// A node that accepts every message.
pub async fn start(config: Config) -> Node {
    start_with(config, |_, _| Verdict::Accept).await
}
