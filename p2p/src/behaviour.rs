//! The composed libp2p behaviour and the gossipsub parameters.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use libp2p::metrics::Registry;
use libp2p::{
    StreamProtocol, allow_block_list, autonat, connection_limits, dcutr,
    gossipsub::{self, MessageAuthenticity, TopicHash, ValidationMode},
    identify,
    identity::Keypair,
    kad, ping, relay, request_response,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
};
use sha3::{Digest, Keccak256};

use crate::{
    Config, Error, codec::BytesCodec, ip_limit::IpLimit, topic::chain_prefix, trusted::OnlyTrusted,
};

/// Score below which gossipsub ignores a peer and the actor bans it.
pub(crate) const GRAYLIST_THRESHOLD: f64 = -80.0;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // Limits and the block list come first so that they refuse a connection
    // before any other behaviour sees it.
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) ip_limit: IpLimit,
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) block_sync: request_response::Behaviour<BytesCodec>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Circuit relay v2 server (`relay_server`), for trusted peers only.
    pub(crate) relay: Toggle<OnlyTrusted<relay::Behaviour>>,
    /// Its client: set by `build_swarm`, which makes it with its transport.
    pub(crate) relay_client: Toggle<relay::client::Behaviour>,
    /// Hole punching over relayed connections, with trusted peers.
    pub(crate) dcutr: OnlyTrusted<dcutr::Behaviour>,
    /// AutoNAT v2: a node behind NAT has trusted peers dial its candidate
    /// addresses back, to learn which (if any) are reachable; relays do the
    /// dialling.
    pub(crate) autonat: Toggle<OnlyTrusted<autonat::v2::client::Behaviour>>,
    pub(crate) autonat_server: Toggle<OnlyTrusted<autonat::v2::server::Behaviour>>,
}

/// The relay's limits. libp2p's defaults (2 minutes and 128 KiB per
/// circuit) only carry hole-punch coordination; a validator behind NAT whose
/// hole punch fails carries its consensus traffic over the circuit, so
/// circuits last a day and carry up to 4 GiB. What bounds the cost to the
/// relay is the number of reservations and circuits, per peer and in all,
/// and the rate at which one IP may open circuits.
fn relay_config() -> relay::Config {
    relay::Config {
        max_reservations: 64,
        max_reservations_per_peer: 2,
        reservation_duration: Duration::from_secs(3600),
        max_circuits: 128,
        max_circuits_per_peer: 16,
        max_circuit_duration: Duration::from_secs(24 * 3600),
        max_circuit_bytes: 4 << 30,
        reservation_rate_limiters: Vec::new(),
        circuit_src_rate_limiters: Vec::new(),
    }
    .reservation_rate_per_peer(
        NonZeroU32::new(30).expect("non-zero"),
        Duration::from_secs(120),
    )
    .reservation_rate_per_ip(
        NonZeroU32::new(60).expect("non-zero"),
        Duration::from_secs(60),
    )
    .circuit_src_per_peer(
        NonZeroU32::new(30).expect("non-zero"),
        Duration::from_secs(120),
    )
    .circuit_src_per_ip(
        NonZeroU32::new(60).expect("non-zero"),
        Duration::from_secs(60),
    )
}

pub(crate) struct Protocols {
    pub(crate) sync: StreamProtocol,
    pub(crate) kad: StreamProtocol,
}

/// Protocol names carry the chain prefix too: nodes of another chain neither
/// answer our sync requests nor pollute our routing table.
pub(crate) fn protocols(config: &Config) -> Result<Protocols, Error> {
    let prefix = chain_prefix(config.chain_id, &config.genesis_hash);
    let sync = StreamProtocol::try_from_owned(format!("{prefix}/sync/1"))
        .map_err(|e| Error::Config(e.to_string()))?;
    let kad = StreamProtocol::try_from_owned(format!("{prefix}/kad/1"))
        .map_err(|e| Error::Config(e.to_string()))?;
    Ok(Protocols { sync, kad })
}

/// Message id = keccak256(topic || 0 || data): the same bytes published twice
/// (by anyone) are one message and are suppressed as duplicates, while the
/// topic keeps equal payloads on different topics apart.
pub(crate) fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let mut hasher = Keccak256::new();
    hasher.update(message.topic.as_str().as_bytes());
    hasher.update([0u8]);
    hasher.update(&message.data);
    gossipsub::MessageId::from(hasher.finalize().to_vec())
}

pub(crate) fn build(
    key: &Keypair,
    config: &Config,
    topics: &[TopicHash],
    protocols: &Protocols,
    malformed_requests: Arc<AtomicU64>,
    registry: Option<&mut Registry>,
) -> Result<Behaviour, Error> {
    let local = key.public().to_peer_id();

    // Inbound and outbound are counted apart, so inbound connections from
    // strangers never use the slots this node dials its peers with; the
    // reserved (bootstrap) peers bypass both (see `actor::spawn`).
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established_incoming(Some(config.max_inbound))
            .with_max_established_outgoing(Some(config.max_outbound))
            .with_max_established_per_peer(Some(config.max_connections_per_peer))
            .with_max_pending_incoming(Some(config.max_inbound))
            .with_max_pending_outgoing(Some(config.max_outbound)),
    );

    // Mesh sizes are the gossipsub defaults (D=6, D_lo=4, D_hi=12): with 4
    // nodes every peer is in every mesh, and at 100 nodes each message costs
    // about 6 sends per hop with a diameter of 3 to 4 hops.
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.heartbeat_interval)
        .heartbeat_initial_delay(config.heartbeat_interval)
        .mesh_n(6)
        .mesh_n_low(4)
        .mesh_n_high(12)
        .mesh_outbound_min(2)
        .gossip_lazy(6)
        .history_length(5)
        .history_gossip(3)
        .duplicate_cache_time(Duration::from_secs(120))
        .max_transmit_size(config.max_message_bytes)
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(message_id)
        .build()
        .map_err(|e| Error::Config(format!("gossipsub: {e}")))?;
    let mut gossipsub =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
            .map_err(|e| Error::Config(format!("gossipsub: {e}")))?;
    let (params, thresholds) = score_params(topics);
    if let Some(registry) = registry {
        let mut metrics = gossipsub::MetricsConfig::default();
        metrics.buckets_using_scoring_thresholds(&thresholds);
        gossipsub = gossipsub.with_metrics(
            registry.sub_registry_with_prefix("libp2p_gossipsub"),
            metrics,
        );
    }
    gossipsub
        .with_peer_score(params, thresholds)
        .map_err(|e| Error::Config(format!("gossipsub scoring: {e}")))?;

    let block_sync = request_response::Behaviour::with_codec(
        BytesCodec {
            max_request_bytes: config.max_request_bytes,
            max_response_bytes: config.max_response_bytes,
            malformed_requests,
        },
        [(
            protocols.sync.clone(),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_inflight_requests_per_peer.max(1) * 4),
    );

    let identify = identify::Behaviour::new(
        identify::Config::new(
            format!("{}/1", chain_prefix(config.chain_id, &config.genesis_hash)),
            key.public(),
        )
        .with_agent_version(format!("tally/{}", env!("CARGO_PKG_VERSION")))
        // A node behind NAT that got a relay slot tells its peers at once.
        .with_push_listen_addr_updates(true)
        // Only the addresses the actor chose (as external addresses): a
        // peer on another host cannot dial loopback or a NAT'ed address.
        .with_hide_listen_addrs(true),
    );

    let mut kad_config = kad::Config::new(protocols.kad.clone());
    kad_config.set_query_timeout(Duration::from_secs(30));
    let mut kad =
        kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), kad_config);
    // Loopback and private networks never confirm an external address, so
    // the automatic mode would leave every node a DHT client that nobody can
    // discover.
    kad.set_mode(Some(kad::Mode::Server));

    let trusted = config.trusted();
    Ok(Behaviour {
        limits,
        ip_limit: IpLimit::new(config.max_inbound_per_ip, config.banned_identities_per_host),
        blocked: allow_block_list::Behaviour::default(),
        gossipsub,
        block_sync,
        identify,
        ping: ping::Behaviour::default(),
        kad,
        relay: config
            .relay_server
            .then(|| {
                OnlyTrusted::new(
                    relay::Behaviour::new(local, relay_config()),
                    trusted.clone(),
                )
            })
            .into(),
        relay_client: None.into(),
        dcutr: OnlyTrusted::new(dcutr::Behaviour::new(local), trusted.clone()),
        autonat: config
            .use_relays
            .then(|| OnlyTrusted::new(autonat::v2::client::Behaviour::default(), trusted.clone()))
            .into(),
        autonat_server: config
            .relay_server
            .then(|| OnlyTrusted::new(autonat::v2::server::Behaviour::default(), trusted))
            .into(),
    })
}

/// Scoring tuned so that invalid messages dominate: each Reject adds one to
/// a per-topic counter whose square is weighted -10, so three rejected
/// messages (-90) take an honest-looking peer below the graylist threshold
/// (-80), four if it had earned the maximum positive score (+10). The counter
/// decays by 1% a second, so a peer is not punished forever for an old fault.
///
/// Mesh-delivery penalties (P3, P3b) are off: consensus and tx topics are
/// quiet for seconds at a time and would penalise honest peers. IP
/// colocation (P6) is off: a permissioned validator set and local testnets
/// legitimately run many nodes on one address.
fn score_params(
    topics: &[TopicHash],
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let topic = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 0.1,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 50.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.99,
        ..Default::default()
    };
    let params = gossipsub::PeerScoreParams {
        topics: topics
            .iter()
            .map(|t| (t.clone(), topic.clone()))
            .collect::<HashMap<_, _>>(),
        topic_score_cap: 10.0,
        ip_colocation_factor_weight: 0.0,
        behaviour_penalty_weight: -1.0,
        behaviour_penalty_threshold: 6.0,
        behaviour_penalty_decay: 0.9,
        ..Default::default()
    };
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -20.0,
        publish_threshold: -40.0,
        graylist_threshold: GRAYLIST_THRESHOLD,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 3.0,
    };
    (params, thresholds)
}
