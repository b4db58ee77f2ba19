use std::{
    fs,
    io::Write,
    net::Ipv4Addr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use std::collections::HashSet;

use libp2p::{Multiaddr, PeerId, identity::Keypair, multiaddr::Protocol};

use crate::Error;

/// Network settings. `Default` gives a loopback node with an ephemeral port
/// and limits sized for a validator network of 4 to 100 nodes.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the node's ed25519 key lives (protobuf encoding, as libp2p
    /// writes it). Created with mode 0600 if missing, so the peer id stays
    /// the same across restarts.
    pub key_file: PathBuf,
    /// Addresses to listen on; `tcp/0` picks a free port.
    pub listen: Vec<Multiaddr>,
    /// Addresses other nodes should use to reach this one (behind NAT or a
    /// port mapping); announced through identify.
    pub external: Vec<Multiaddr>,
    /// Bootstrap and persistent peers, each ending in `/p2p/<peer id>`. They
    /// are dialled at start and redialled with exponential backoff whenever
    /// the connection drops.
    pub bootstrap: Vec<Multiaddr>,
    pub chain_id: u64,
    pub genesis_hash: [u8; 32],
    /// Largest gossip payload accepted or published.
    pub max_message_bytes: usize,
    /// Largest request read from or sent to a peer.
    pub max_request_bytes: usize,
    /// Largest response read from or sent to a peer.
    pub max_response_bytes: usize,
    /// How long an outbound request waits for its response (and how long an
    /// inbound one waits for the node's answer).
    pub request_timeout: Duration,
    /// Outbound requests in flight to one peer, and inbound requests from
    /// one peer awaiting an answer; beyond that requests are refused.
    pub max_inflight_requests_per_peer: usize,
    /// Established inbound connections, not counting reserved peers (the
    /// bootstrap peers: they bypass every connection limit).
    pub max_inbound: u32,
    /// Established outbound connections, not counting reserved peers.
    pub max_outbound: u32,
    /// Established inbound connections from one IP address, not counting
    /// reserved peers; as many may be in their handshake.
    pub max_inbound_per_ip: u32,
    /// Once this many identities seen at one host are banned, the host's
    /// new inbound identities are refused until those bans expire (0: off).
    pub banned_identities_per_host: usize,
    /// Established connections to one peer (3: simultaneous dials from
    /// both sides, or a relayed connection, its hole-punched successor and
    /// an AutoNAT dial-back).
    pub max_connections_per_peer: u32,
    /// Peers, besides the bootstrap ones, that this node relays for, punches
    /// holes with and runs AutoNAT with: its fellow validators. Those
    /// services cost bandwidth, connection slots and dials to addresses the
    /// peer names, so strangers get none of them.
    pub trusted_peers: Vec<PeerId>,
    /// Serve circuit relay v2 (and AutoNAT) to trusted peers behind NAT,
    /// while this node has an external address (`external`, or its listen
    /// addresses when none is configured). It forwards their traffic: bounded
    /// by the circuit limits in `behaviour.rs`.
    pub relay_server: bool,
    /// This node is behind a NAT that lets no connection in: reserve a slot
    /// on up to two trusted relays among its peers, so that others reach it
    /// through them, and let DCUtR upgrade those connections to direct ones.
    pub use_relays: bool,
    /// Capacity of the event channel. When it is full, gossip is dropped
    /// (counted, reported to gossipsub as Ignore) instead of stalling the
    /// swarm. Request and peer events are never dropped while the receiver
    /// lives: they wait in an internal queue; once 4096 are waiting, new
    /// inbound requests are refused by closing their stream, which the
    /// requester sees at once as a failed request (counted as refused).
    pub event_capacity: usize,
    /// Gossipsub heartbeat: mesh maintenance, gossip emission and score decay.
    pub heartbeat_interval: Duration,
    /// Connections that no protocol keeps alive are closed after this long.
    pub idle_connection_timeout: Duration,
    /// First delay before redialling a dropped persistent peer; doubles on
    /// every failure up to `redial_max_backoff`.
    pub redial_initial_backoff: Duration,
    pub redial_max_backoff: Duration,
    /// How long a peer whose gossip score fell below the graylist threshold
    /// stays banned.
    pub score_ban_duration: Duration,
    /// How often a Kademlia random walk looks for new peers.
    pub discovery_interval: Duration,
    /// Also listen on QUIC (`udp/<port>/quic-v1`) next to every TCP listen
    /// address. Needs the crate's `quic` feature; without it `spawn` fails.
    pub enable_quic: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            key_file: PathBuf::from("node_key"),
            listen: vec![loopback_tcp(0)],
            external: Vec::new(),
            bootstrap: Vec::new(),
            chain_id: 0,
            genesis_hash: [0; 32],
            max_message_bytes: 1024 * 1024,
            max_request_bytes: 64 * 1024,
            max_response_bytes: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            max_inflight_requests_per_peer: 8,
            max_inbound: 96,
            max_outbound: 32,
            max_inbound_per_ip: 8,
            banned_identities_per_host: 3,
            max_connections_per_peer: 3,
            trusted_peers: Vec::new(),
            relay_server: false,
            use_relays: false,
            event_capacity: 4096,
            heartbeat_interval: Duration::from_millis(700),
            idle_connection_timeout: Duration::from_secs(300),
            redial_initial_backoff: Duration::from_millis(500),
            redial_max_backoff: Duration::from_secs(60),
            score_ban_duration: Duration::from_secs(600),
            discovery_interval: Duration::from_secs(30),
            enable_quic: false,
        }
    }
}

impl Config {
    /// The bootstrap peers and `trusted_peers`: the peers the operator named.
    pub(crate) fn trusted(&self) -> HashSet<PeerId> {
        self.bootstrap
            .iter()
            .filter_map(peer_id_of)
            .chain(self.trusted_peers.iter().copied())
            .collect()
    }
}

/// The peer an address leads to: its last `/p2p/<id>` (a circuit address
/// names its relay first).
pub(crate) fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter()
        .filter_map(|p| match p {
            Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .last()
}

/// `/ip4/127.0.0.1/tcp/<port>`.
pub(crate) fn loopback_tcp(port: u16) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4(Ipv4Addr::LOCALHOST))
        .with(Protocol::Tcp(port))
}

/// The QUIC address matching a TCP one: same IP, same port number on UDP.
pub(crate) fn quic_twin(addr: &Multiaddr) -> Option<Multiaddr> {
    let mut parts = addr.iter();
    let ip = match parts.next()? {
        ip @ (Protocol::Ip4(_) | Protocol::Ip6(_)) => ip,
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else {
        return None;
    };
    Some(
        Multiaddr::empty()
            .with(ip)
            .with(Protocol::Udp(port))
            .with(Protocol::QuicV1),
    )
}

/// Reads the node key from `path`, or creates a new ed25519 key there (mode
/// 0600, parent directories included) if the file does not exist.
pub fn load_or_create_key(path: &Path) -> Result<Keypair, Error> {
    let io_err = |source| Error::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    match fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| Error::KeyDecode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| Error::KeyDecode {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(io_err)?;
            }
            // create_new: never overwrite a key another process just wrote.
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io_err)?;
            file.write_all(&bytes).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            Ok(key)
        }
        Err(e) => Err(io_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keys/node_key");
        let first = load_or_create_key(&path).expect("create key");
        let mode = fs::metadata(&path)
            .expect("key file exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create_key(&path).expect("reload key");
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
    }

    #[test]
    fn a_circuit_address_leads_to_its_last_peer_and_bootstrap_peers_are_trusted() {
        let relay = PeerId::random();
        let target = PeerId::random();
        let circuit: Multiaddr =
            format!("/ip4/10.0.0.1/tcp/1/p2p/{relay}/p2p-circuit/p2p/{target}")
                .parse()
                .expect("multiaddr");
        assert_eq!(peer_id_of(&circuit), Some(target));
        let named = PeerId::random();
        let config = Config {
            bootstrap: vec![circuit],
            trusted_peers: vec![named],
            ..Config::default()
        };
        assert_eq!(config.trusted(), HashSet::from([target, named]));
    }

    #[test]
    fn quic_twin_keeps_ip_and_port() {
        let tcp: Multiaddr = loopback_tcp(4001);
        let quic = quic_twin(&tcp).expect("tcp address has a twin");
        assert_eq!(quic.to_string(), "/ip4/127.0.0.1/udp/4001/quic-v1");
        assert!(quic_twin(&quic).is_none());
    }

    #[test]
    fn garbage_key_file_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node_key");
        fs::write(&path, b"not a key").expect("write");
        assert!(matches!(
            load_or_create_key(&path),
            Err(Error::KeyDecode { .. })
        ));
    }
}
