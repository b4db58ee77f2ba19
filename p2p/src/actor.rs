//! The actor: owns the swarm and every piece of peer bookkeeping, and runs
//! one `select!` loop over swarm events, handle commands, the event channel
//! and a maintenance tick.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use libp2p::metrics::{Recorder, Registry};
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder,
    core::ConnectedPoint,
    dcutr,
    gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, TopicHash},
    identify,
    identity::Keypair,
    multiaddr::Protocol,
    noise, relay, request_response,
    swarm::{
        ConnectionId, SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
    tcp, yamux,
};
use tokio::{
    sync::{
        mpsc::{self, error::TrySendError},
        oneshot,
    },
    time::{Instant, MissedTickBehavior},
};
use tracing::{debug, info, warn};

use crate::{
    Config, Error, Event, Handle, PeerInfo, RequestError, RequestId, Stats, Topic, Verdict,
    behaviour::{self, Behaviour, BehaviourEvent, GRAYLIST_THRESHOLD},
    config::{load_or_create_key, peer_id_of, quic_twin},
    ingress::Command,
    ip_limit::{host_of, ip_of},
    metrics::{DirectionLabel, P2pMetrics, ReasonLabel, TopicLabel},
};

/// Period of the maintenance tick: redials, ban expiry, score checks.
const TICK: Duration = Duration::from_millis(100);
/// Non-gossip events waiting for room in the event channel. Beyond this the
/// node is hopelessly behind, and new requests are refused.
const MAX_PENDING_EVENTS: usize = 4096;
/// Commands queued from handles before senders wait.
const COMMAND_CAPACITY: usize = 1024;
/// How long `spawn` waits for the listeners to report their addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

type ResponseReply = oneshot::Sender<Result<Vec<u8>, RequestError>>;

struct Redial {
    addr: Multiaddr,
    backoff: Duration,
    next_dial: Option<Instant>,
}

struct Inbound {
    peer: PeerId,
    request_id: request_response::InboundRequestId,
    channel: request_response::ResponseChannel<Vec<u8>>,
}

/// A connected peer's first connection and its traffic.
struct PeerMeta {
    direction: &'static str,
    since_ms: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Actor {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Connection and request events wait here rather than being dropped
    /// when the channel is full; gossip is never queued.
    pending_events: VecDeque<Event>,
    local_peer_id: PeerId,
    topics: HashMap<TopicHash, Topic>,
    kad_protocol: libp2p::StreamProtocol,
    listen_addrs: Vec<Multiaddr>,
    external_addrs: Vec<Multiaddr>,
    connected: HashMap<PeerId, HashMap<ConnectionId, Multiaddr>>,
    persistent: HashMap<PeerId, Redial>,
    bans: HashMap<PeerId, Instant>,
    outbound: HashMap<request_response::OutboundRequestId, (PeerId, ResponseReply)>,
    outbound_per_peer: HashMap<PeerId, usize>,
    inbound: HashMap<u64, Inbound>,
    inbound_ids: HashMap<request_response::InboundRequestId, u64>,
    inbound_per_peer: HashMap<PeerId, usize>,
    next_request_id: u64,
    next_discovery: Instant,
    discovery_soon: Option<Instant>,
    stats: Stats,
    malformed_requests: Arc<AtomicU64>,
    /// libp2p's metrics and ours, when the node exports them.
    libp2p_metrics: Option<libp2p::metrics::Metrics>,
    metrics: P2pMetrics,
    /// Each connected peer's first connection and traffic.
    peer_meta: HashMap<PeerId, PeerMeta>,
    /// Relays we hold a reservation on (or asked for one), with the
    /// listener of the circuit address (`use_relays`).
    relays: HashMap<PeerId, libp2p::core::transport::ListenerId>,
    /// Peers holding a reservation on this node's relay.
    reserved_here: HashSet<PeerId>,
    /// The peers the operator named (bootstrap and trusted): the only
    /// relays this node reserves on.
    trusted: HashSet<PeerId>,
    /// The listen addresses announced to peers, as external addresses
    /// (identify hides the listen addresses themselves).
    announced: Vec<Multiaddr>,
    /// Relayed connections to close once the hole-punched direct one has
    /// had time to take over.
    close_relayed: Vec<(Instant, PeerId)>,
    config: Config,
}

/// Reservations a node behind NAT holds at once.
const MAX_RELAYS: usize = 2;
/// Listen addresses kept (interfaces and relay circuits).
const MAX_LISTEN_ADDRS: usize = 64;
/// How long a relayed connection stays after a hole punch replaced it.
const RELAYED_GRACE: Duration = Duration::from_secs(5);

/// Whether `addr` goes through a relay.
fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// A circuit address `<relay addr>/p2p/<relay>/p2p-circuit[/p2p/<peer>]`
/// split into the relay's address (without its id) and the relay; None if it
/// is not exactly that shape or names another peer as the destination.
fn circuit_parts(addr: &Multiaddr, peer: &PeerId) -> Option<(Multiaddr, PeerId)> {
    let parts: Vec<Protocol> = addr.iter().collect();
    let circuit = parts
        .iter()
        .position(|p| matches!(p, Protocol::P2pCircuit))?;
    if parts
        .iter()
        .filter(|p| matches!(p, Protocol::P2pCircuit))
        .count()
        != 1
    {
        return None;
    }
    match &parts[circuit + 1..] {
        [] => {}
        [Protocol::P2p(dest)] if dest == peer => {}
        _ => return None,
    }
    let (relay_part, relay) = match parts[..circuit].split_last()? {
        (Protocol::P2p(relay), rest) => (rest.iter().cloned().collect::<Multiaddr>(), *relay),
        _ => return None,
    };
    (relay != *peer && !is_circuit(&relay_part)).then_some((relay_part, relay))
}

pub(crate) async fn spawn(
    config: Config,
    mut registry: Option<&mut Registry>,
) -> Result<(Handle, mpsc::Receiver<Event>), Error> {
    if config.event_capacity == 0 || config.max_inflight_requests_per_peer == 0 {
        return Err(Error::Config(
            "event_capacity and max_inflight_requests_per_peer must be positive".into(),
        ));
    }
    if config.enable_quic && !cfg!(feature = "quic") {
        return Err(Error::Config(
            "enable_quic needs tally-p2p built with the `quic` feature".into(),
        ));
    }
    let key = load_or_create_key(&config.key_file)?;
    let local_peer_id = key.public().to_peer_id();

    let topic_list: Vec<(Topic, IdentTopic)> = Topic::ALL
        .iter()
        .map(|t| (*t, t.ident(config.chain_id, &config.genesis_hash)))
        .collect();
    let hashes: Vec<TopicHash> = topic_list.iter().map(|(_, i)| i.hash()).collect();
    let protocols = behaviour::protocols(&config)?;
    let malformed_requests = Arc::new(AtomicU64::new(0));
    let behaviour = behaviour::build(
        &key,
        &config,
        &hashes,
        &protocols,
        malformed_requests.clone(),
        registry.as_deref_mut(),
    )?;
    let libp2p_metrics = registry.as_deref_mut().map(libp2p::metrics::Metrics::new);
    let metrics = registry
        .as_deref_mut()
        .map(P2pMetrics::register)
        .unwrap_or_default();
    let mut swarm = build_swarm(key, behaviour, &config, registry)?;

    for (_, ident) in &topic_list {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(ident)
            .map_err(|e| Error::Config(format!("subscribe {ident}: {e}")))?;
    }
    let mut listen = config.listen.clone();
    if config.enable_quic {
        listen.extend(config.listen.iter().filter_map(quic_twin));
    }
    let listen_addrs = bind(&mut swarm, &listen).await?;
    for addr in &config.external {
        swarm.add_external_address(addr.clone());
    }

    let mut persistent = HashMap::new();
    let now = Instant::now();
    for addr in &config.bootstrap {
        let Some(peer) = peer_id_of(addr) else {
            return Err(Error::Config(format!(
                "bootstrap address {addr} lacks /p2p/<peer id>"
            )));
        };
        if peer == local_peer_id {
            continue;
        }
        let addr = without_peer_id(addr);
        let _ = swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        // Reserved: no connection limit ever keeps a configured peer out.
        swarm.behaviour_mut().limits.bypass_peer_id(&peer);
        swarm.behaviour_mut().ip_limit.reserve(peer);
        persistent.insert(
            peer,
            Redial {
                addr,
                backoff: config.redial_initial_backoff,
                next_dial: Some(now),
            },
        );
    }

    let (command_tx, command_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (event_tx, event_rx) = mpsc::channel(config.event_capacity);
    info!(peer_id = %local_peer_id, addrs = ?listen_addrs, chain_id = config.chain_id, "p2p started");
    let mut actor = Actor {
        swarm,
        commands: command_rx,
        events: event_tx,
        pending_events: VecDeque::new(),
        local_peer_id,
        topics: topic_list.iter().map(|(t, i)| (i.hash(), *t)).collect(),
        kad_protocol: protocols.kad,
        listen_addrs,
        external_addrs: config.external.clone(),
        connected: HashMap::new(),
        persistent,
        bans: HashMap::new(),
        outbound: HashMap::new(),
        outbound_per_peer: HashMap::new(),
        inbound: HashMap::new(),
        inbound_ids: HashMap::new(),
        inbound_per_peer: HashMap::new(),
        next_request_id: 0,
        next_discovery: now + config.discovery_interval,
        discovery_soon: None,
        stats: Stats::default(),
        malformed_requests,
        libp2p_metrics,
        metrics,
        peer_meta: HashMap::new(),
        relays: HashMap::new(),
        reserved_here: HashSet::new(),
        trusted: config.trusted(),
        announced: Vec::new(),
        close_relayed: Vec::new(),
        config,
    };
    actor.announce();
    tokio::spawn(actor.run());
    Ok((
        Handle {
            commands: command_tx,
            local_peer_id,
        },
        event_rx,
    ))
}

fn build_swarm(
    key: Keypair,
    behaviour: Behaviour,
    config: &Config,
    registry: Option<&mut Registry>,
) -> Result<Swarm<Behaviour>, Error> {
    let idle = config.idle_connection_timeout;
    let builder = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| Error::Transport(e.to_string()))?;
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    // The relay client's transport (dialling and listening through relays)
    // comes with its behaviour, which only exists from here on.
    let builder = builder
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| Error::Transport(e.to_string()))?;
    let mut behaviour = behaviour;
    // Bandwidth is counted on the transport (per protocol and direction).
    let swarm = match registry {
        Some(registry) => builder
            .with_bandwidth_metrics(registry)
            .with_behaviour(move |_, client| {
                behaviour.relay_client = Some(client).into();
                behaviour
            })
            .map_err(|e| Error::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
        None => builder
            .with_behaviour(move |_, client| {
                behaviour.relay_client = Some(client).into();
                behaviour
            })
            .map_err(|e| Error::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    };
    Ok(swarm)
}

/// Starts every listener and waits until each reports its bound address.
async fn bind(swarm: &mut Swarm<Behaviour>, listen: &[Multiaddr]) -> Result<Vec<Multiaddr>, Error> {
    let mut waiting = Vec::new();
    for addr in listen {
        let id = swarm.listen_on(addr.clone()).map_err(|e| Error::Listen {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
        waiting.push((id, addr.clone()));
    }
    let mut bound = Vec::new();
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    while !waiting.is_empty() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| Error::Listen {
                addr: waiting[0].1.clone(),
                reason: "no address reported in time".into(),
            })?;
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                waiting.retain(|(id, _)| *id != listener_id);
                bound.push(address);
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                if let Some((_, addr)) = waiting.iter().find(|(id, _)| *id == listener_id) {
                    return Err(Error::Listen {
                        addr: addr.clone(),
                        reason: error.to_string(),
                    });
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some((_, addr)) = waiting.iter().find(|(id, _)| *id == listener_id) {
                    return Err(Error::Listen {
                        addr: addr.clone(),
                        reason: format!("listener closed: {reason:?}"),
                    });
                }
            }
            other => debug!(event = ?other, "swarm event while binding"),
        }
    }
    Ok(bound)
}

/// `addr` without its trailing `/p2p/<id>` (a circuit address keeps its
/// relay's id).
fn without_peer_id(addr: &Multiaddr) -> Multiaddr {
    let mut addr = addr.clone();
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

fn with_peer_id(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    without_peer_id(addr).with(Protocol::P2p(peer))
}

/// The listen addresses worth announcing to peers: none when the operator
/// named the node's public addresses (`external`) or it sits behind a NAT
/// (`use_relays`: peers reach it through its relays' circuit addresses,
/// which the relay client announces); otherwise every one a peer on another
/// host could dial, and loopback ones only when there is nothing else (one
/// machine's testnet). Circuit addresses are the relay client's to announce.
fn announceable(listen: &[Multiaddr], config: &Config) -> Vec<Multiaddr> {
    if !config.external.is_empty() || config.use_relays {
        return Vec::new();
    }
    let usable = |addr: &&Multiaddr| {
        !is_circuit(addr)
            && ip_of(addr).is_some_and(|ip| !ip.is_unspecified() && !is_link_local(ip))
    };
    let (loopback, other): (Vec<Multiaddr>, Vec<Multiaddr>) = listen
        .iter()
        .filter(usable)
        .cloned()
        .partition(|addr| ip_of(addr).is_some_and(|ip| ip.is_loopback()));
    if other.is_empty() { loopback } else { other }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn acceptance(verdict: Verdict) -> MessageAcceptance {
    match verdict {
        Verdict::Accept => MessageAcceptance::Accept,
        Verdict::Reject => MessageAcceptance::Reject,
        Verdict::Ignore => MessageAcceptance::Ignore,
    }
}

impl Actor {
    /// Brings the announced listen addresses in line with
    /// [`announceable`]: identify sends the swarm's external addresses and
    /// hides the listen addresses themselves.
    fn announce(&mut self) {
        let wanted = announceable(&self.listen_addrs, &self.config);
        for addr in self.announced.iter().filter(|a| !wanted.contains(a)) {
            self.swarm.remove_external_address(addr);
        }
        for addr in wanted.iter().filter(|a| !self.announced.contains(a)) {
            self.swarm.add_external_address(addr.clone());
        }
        self.announced = wanted;
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut shutdown_reply = None;
        // A clone, so that a reserved slot borrows this local and not `self`.
        let events = self.events.clone();
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => {
                        if let Some(reply) = self.on_command(command) {
                            shutdown_reply = Some(reply);
                            break;
                        }
                    }
                    None => break,
                },
                permit = events.reserve(), if !self.pending_events.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.pending_events.pop_front() {
                            permit.send(event);
                        }
                    }
                    // The node dropped its receiver: nobody will read these.
                    Err(_) => self.pending_events.clear(),
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
        info!(peer_id = %self.local_peer_id, "p2p stopping");
        // Dropping the swarm closes the listeners and every connection; only
        // then is the shutdown acknowledged, so a restart can reuse the port.
        let Actor { swarm, .. } = self;
        drop(swarm);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// Queues a connection or request event; these are never dropped while
    /// the receiver lives.
    fn queue_event(&mut self, event: Event) {
        if self.pending_events.is_empty() {
            match self.events.try_send(event) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(event)) => self.pending_events.push_back(event),
            }
        } else {
            self.pending_events.push_back(event);
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        // External address candidates come from what peers say they saw
        // (identify), and libp2p-metrics keeps a label per protocol stack
        // for ever: a peer could grow it without bound. Not recorded.
        let from_peers = matches!(
            event,
            SwarmEvent::NewExternalAddrCandidate { .. }
                | SwarmEvent::ExternalAddrConfirmed { .. }
                | SwarmEvent::ExternalAddrExpired { .. }
        );
        if let Some(metrics) = self.libp2p_metrics.as_ref().filter(|_| !from_peers) {
            metrics.record(&event);
            match &event {
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => metrics.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => metrics.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => metrics.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => metrics.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => metrics.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => metrics.record(e),
                _ => {}
            }
        }
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::BlockSync(event)) => self.on_sync(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => self.on_relay(event),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { relay_peer_id, .. },
            )) => {
                info!(relay = %relay_peer_id, "reserved a slot on a relay: reachable through it");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => self.on_dcutr(event),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(event)) => {
                debug!(addr = %event.tested_addr, server = %event.server, ok = event.result.is_ok(), "autonat probe");
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "external address confirmed");
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                ..
            } => {
                self.listen_addrs.retain(|a| !addresses.contains(a));
                self.relays.retain(|_, id| *id != listener_id);
                self.announce();
            }
            SwarmEvent::Behaviour(_) => {}
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                // A relayed connection's listener side knows only the
                // dialler's id as its address: keep the circuit it came in on.
                let addr = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => address.clone(),
                    ConnectedPoint::Listener { local_addr, .. } if endpoint.is_relayed() => {
                        local_addr.clone()
                    }
                    ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
                };
                debug!(peer = %peer_id, %addr, "connection established");
                if self.bans.contains_key(&peer_id) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                self.connected
                    .entry(peer_id)
                    .or_default()
                    .insert(connection_id, addr.clone());
                if let Some(redial) = self.persistent.get_mut(&peer_id) {
                    redial.backoff = self.config.redial_initial_backoff;
                    redial.next_dial = None;
                }
                if num_established.get() == 1 {
                    let direction = if endpoint.is_dialer() {
                        "outbound"
                    } else {
                        "inbound"
                    };
                    self.peer_meta.insert(
                        peer_id,
                        PeerMeta {
                            direction,
                            since_ms: now_ms(),
                            bytes_in: 0,
                            bytes_out: 0,
                        },
                    );
                    self.metrics
                        .peers
                        .get_or_create(&DirectionLabel { direction })
                        .inc();
                    info!(peer = %peer_id, %addr, "peer connected");
                    self.queue_event(Event::PeerConnected {
                        peer: peer_id,
                        addr,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, ?cause, "connection closed");
                let was_known = match self.connected.get_mut(&peer_id) {
                    Some(conns) => {
                        let known = conns.remove(&connection_id).is_some();
                        if conns.is_empty() {
                            self.connected.remove(&peer_id);
                        }
                        known
                    }
                    None => false,
                };
                if num_established == 0 {
                    if let Some(meta) = self.peer_meta.remove(&peer_id) {
                        self.metrics
                            .peers
                            .get_or_create(&DirectionLabel {
                                direction: meta.direction,
                            })
                            .dec();
                    }
                    if was_known {
                        info!(peer = %peer_id, "peer disconnected");
                        self.queue_event(Event::PeerDisconnected { peer: peer_id });
                    }
                    self.schedule_redial(peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, %error, "dial failed");
                if let Some(peer) = peer_id {
                    if !self.connected.contains_key(&peer) {
                        self.schedule_redial(peer);
                    }
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                debug!(%error, "inbound connection failed");
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                // A relay's reservation reply names the addresses we listen
                // at through it: a bounded list, whatever a relay sends.
                if self.listen_addrs.len() >= MAX_LISTEN_ADDRS {
                    warn!(%address, "too many listen addresses: not using this one");
                } else if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                    self.announce();
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
                self.announce();
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = event
        else {
            return;
        };
        let Some(topic) = self.topics.get(&message.topic).copied() else {
            self.stats.unknown_topic_dropped += 1;
            self.count_dropped("unknown_topic");
            debug!(peer = %propagation_source, topic = %message.topic, "gossip on unknown topic");
            self.validate(&message_id, &propagation_source, MessageAcceptance::Ignore);
            return;
        };
        // Gossipsub enforces the same limit; this guards against a change of
        // its semantics rather than trusting it blindly.
        if message.data.len() > self.config.max_message_bytes {
            self.stats.oversized_dropped += 1;
            self.count_dropped("oversized");
            warn!(peer = %propagation_source, size = message.data.len(), "oversized gossip dropped");
            self.validate(&message_id, &propagation_source, MessageAcceptance::Reject);
            return;
        }
        let bytes = message.data.len() as u64;
        let event = Event::Message {
            topic,
            source: propagation_source,
            author: message.source,
            id: message_id.clone(),
            data: message.data,
        };
        match self.events.try_send(event) {
            Ok(()) => {
                self.stats.messages_received += 1;
                self.count_in(&propagation_source, bytes);
                let label = TopicLabel {
                    topic: topic.name(),
                };
                self.metrics.messages_received.get_or_create(&label).inc();
                self.metrics
                    .bytes_received
                    .get_or_create(&label)
                    .inc_by(bytes);
            }
            Err(TrySendError::Full(_)) => {
                self.count_dropped("backpressure");
                // Blocking here would stall every connection; gossip is
                // redundant, so dropping one copy is the cheaper failure.
                self.stats.gossip_dropped_backpressure += 1;
                if self.stats.gossip_dropped_backpressure.is_power_of_two() {
                    warn!(
                        dropped = self.stats.gossip_dropped_backpressure,
                        "event channel full, dropping gossip"
                    );
                }
                self.validate(&message_id, &propagation_source, MessageAcceptance::Ignore);
            }
            Err(TrySendError::Closed(_)) => {
                self.validate(&message_id, &propagation_source, MessageAcceptance::Ignore);
            }
        }
    }

    fn count_in(&mut self, peer: &PeerId, bytes: u64) {
        if let Some(meta) = self.peer_meta.get_mut(peer) {
            meta.bytes_in = meta.bytes_in.saturating_add(bytes);
        }
    }

    fn count_out(&mut self, peer: &PeerId, bytes: u64) {
        if let Some(meta) = self.peer_meta.get_mut(peer) {
            meta.bytes_out = meta.bytes_out.saturating_add(bytes);
        }
    }

    fn count_dropped(&self, reason: &'static str) {
        self.metrics
            .gossip_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    fn validate(&mut self, id: &MessageId, source: &PeerId, acceptance: MessageAcceptance) {
        // False when the message already left the cache: nothing to do.
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
    }

    fn on_sync(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request_id,
                    request,
                    channel,
                } => self.on_inbound_request(peer, request_id, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((peer, reply)) = self.outbound.remove(&request_id) {
                        self.release_outbound(peer);
                        self.count_in(&peer, response.len() as u64);
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.stats.outbound_request_failures += 1;
                self.metrics.requests_failed.inc();
                debug!(%peer, %error, "outbound request failed");
                if let Some((peer, reply)) = self.outbound.remove(&request_id) {
                    self.release_outbound(peer);
                    let error = match error {
                        request_response::OutboundFailure::Timeout => RequestError::Timeout,
                        request_response::OutboundFailure::DialFailure => RequestError::Unreachable,
                        other => RequestError::Failed(other.to_string()),
                    };
                    let _ = reply.send(Err(error));
                }
            }
            request_response::Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.stats.inbound_request_failures += 1;
                debug!(%peer, %error, "inbound request failed");
                if let Some(token) = self.inbound_ids.remove(&request_id) {
                    if let Some(inbound) = self.inbound.remove(&token) {
                        self.release_inbound(inbound.peer);
                    }
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_inbound_request(
        &mut self,
        peer: PeerId,
        request_id: request_response::InboundRequestId,
        data: Vec<u8>,
        channel: request_response::ResponseChannel<Vec<u8>>,
    ) {
        self.stats.requests_received += 1;
        self.metrics.requests_received.inc();
        let in_flight = self.inbound_per_peer.get(&peer).copied().unwrap_or(0);
        if in_flight >= self.config.max_inflight_requests_per_peer
            || self.pending_events.len() >= MAX_PENDING_EVENTS
        {
            // Dropping the channel closes the stream: the requester sees a
            // failure at once instead of waiting for its timeout.
            self.stats.requests_refused += 1;
            self.metrics.requests_refused.inc();
            warn!(%peer, in_flight, "inbound request refused");
            drop(channel);
            return;
        }
        *self.inbound_per_peer.entry(peer).or_default() += 1;
        let token = self.next_request_id;
        self.next_request_id += 1;
        self.inbound.insert(
            token,
            Inbound {
                peer,
                request_id,
                channel,
            },
        );
        self.inbound_ids.insert(request_id, token);
        self.queue_event(Event::Request {
            peer,
            id: RequestId(token),
            data,
        });
    }

    fn release_inbound(&mut self, peer: PeerId) {
        if let Some(n) = self.inbound_per_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.inbound_per_peer.remove(&peer);
            }
        }
    }

    fn release_outbound(&mut self, peer: PeerId) {
        if let Some(n) = self.outbound_per_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.outbound_per_peer.remove(&peer);
            }
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received {
            peer_id,
            info,
            connection_id,
        } = event
        else {
            return;
        };
        if !info.protocols.contains(&self.kad_protocol) {
            // Another chain (or not a Tally node): keep it out of discovery.
            return;
        }
        // Only addresses at the host we actually reach the peer at (its IP,
        // or its IPv6 /64) go into the routing table: any other would let a peer point every node that
        // asks us at a host of its choosing (and spread the lie). A peer
        // behind NAT announces its external address (`p2p.external`), which
        // is the IP its connections come from.
        let seen: HashSet<_> = self
            .connected
            .get(&peer_id)
            .into_iter()
            .flat_map(|c| c.values())
            .filter_map(host_of)
            .collect();
        let mut direct_addr = None;
        for addr in info.listen_addrs {
            let usable = if is_circuit(&addr) {
                self.relay_vouches(&addr, &peer_id)
            } else {
                host_of(&addr).is_some_and(|host| seen.contains(&host))
            };
            if usable {
                if !is_circuit(&addr) && direct_addr.is_none() {
                    direct_addr = Some(addr.clone());
                }
                let _ = self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            } else {
                debug!(peer = %peer_id, %addr, "identify: not adding an address the peer is not seen at");
            }
        }
        if self.config.use_relays
            && self.relays.len() < MAX_RELAYS
            && self.trusted.contains(&peer_id)
            && !self.relays.contains_key(&peer_id)
            && info.protocols.contains(&relay::HOP_PROTOCOL_NAME)
        {
            // Only over a direct connection: a relay seen through another
            // relay is no use.
            let direct = self
                .connected
                .get(&peer_id)
                .and_then(|c| c.get(&connection_id))
                .is_some_and(|a| !is_circuit(a));
            if let Some(addr) = direct_addr.filter(|_| direct) {
                self.reserve_on(peer_id, addr);
            }
        }
        // A new peer may know peers we do not: look soon, but coalesce the
        // lookups of a burst of new connections into one.
        self.discovery_soon
            .get_or_insert_with(|| Instant::now() + Duration::from_millis(300));
    }

    /// Whether a circuit address a peer announces goes through a relay we
    /// can vouch for: one we reach directly at the host in the address, or
    /// this node, at one of its own addresses, when the peer holds a
    /// reservation here. Anything else would let a peer point others at a
    /// relay, or a host, of its choosing.
    fn relay_vouches(&self, addr: &Multiaddr, peer: &PeerId) -> bool {
        let Some((relay_addr, relay)) = circuit_parts(addr, peer) else {
            return false;
        };
        if relay == self.local_peer_id {
            return self.reserved_here.contains(peer)
                && self.swarm.external_addresses().any(|a| *a == relay_addr);
        }
        let Some(host) = host_of(&relay_addr) else {
            return false;
        };
        self.connected
            .get(&relay)
            .into_iter()
            .flat_map(|c| c.values())
            .any(|a| !is_circuit(a) && host_of(a) == Some(host))
    }

    /// Asks `relay`, reachable at its listen address `relay_addr`, for a
    /// slot, by listening on a circuit address through it.
    fn reserve_on(&mut self, relay: PeerId, relay_addr: Multiaddr) {
        let circuit = without_peer_id(&relay_addr)
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                info!(%relay, addr = %circuit, "asking a relay for a slot");
                self.relays.insert(relay, id);
            }
            Err(error) => debug!(%relay, %error, "could not listen through a relay"),
        }
    }

    fn on_relay(&mut self, event: relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                debug!(peer = %src_peer_id, "relay: reservation accepted");
                self.reserved_here.insert(src_peer_id);
            }
            relay::Event::ReservationTimedOut { src_peer_id }
            | relay::Event::ReservationClosed { src_peer_id } => {
                self.reserved_here.remove(&src_peer_id);
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => debug!(src = %src_peer_id, dst = %dst_peer_id, "relay: circuit opened"),
            _ => {}
        }
    }

    fn on_dcutr(&mut self, event: dcutr::Event) {
        match event.result {
            Ok(connection) => {
                info!(peer = %event.remote_peer_id, ?connection, "hole punched: direct connection");
                self.close_relayed
                    .push((Instant::now() + RELAYED_GRACE, event.remote_peer_id));
            }
            Err(error) => {
                info!(peer = %event.remote_peer_id, %error, "hole punch failed: staying relayed");
            }
        }
    }

    /// Returns the reply of a shutdown command, which ends the loop.
    fn on_command(&mut self, command: Command) -> Option<oneshot::Sender<()>> {
        match command {
            Command::ListenAddrs(reply) => {
                let addrs = self
                    .listen_addrs
                    .iter()
                    .chain(self.external_addrs.iter())
                    .map(|a| with_peer_id(a, self.local_peer_id))
                    .collect();
                let _ = reply.send(addrs);
            }
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::Report {
                id,
                source,
                verdict,
            } => self.validate(&id, &source, acceptance(verdict)),
            Command::Request { peer, data, reply } => self.request(peer, data, reply),
            Command::Respond { id, data, reply } => {
                let _ = reply.send(self.respond(id, data));
            }
            Command::Dial { addr, reply } => {
                let result = match peer_id_of(&addr) {
                    Some(peer) if self.bans.contains_key(&peer) => Err(Error::Dial {
                        addr,
                        reason: "peer is banned".into(),
                    }),
                    _ => self.swarm.dial(addr.clone()).map_err(|e| Error::Dial {
                        addr,
                        reason: e.to_string(),
                    }),
                };
                let _ = reply.send(result);
            }
            Command::Ban {
                peer,
                duration,
                reply,
            } => {
                self.ban(peer, duration);
                let _ = reply.send(());
            }
            Command::Peers(reply) => {
                let peers = self
                    .connected
                    .iter()
                    .map(|(peer, conns)| {
                        let meta = self.peer_meta.get(peer);
                        PeerInfo {
                            peer: *peer,
                            addrs: conns.values().cloned().collect(),
                            inbound: meta.is_some_and(|m| m.direction == "inbound"),
                            connected_since_ms: meta.map_or(0, |m| m.since_ms),
                            bytes_in: meta.map_or(0, |m| m.bytes_in),
                            bytes_out: meta.map_or(0, |m| m.bytes_out),
                            score: self.swarm.behaviour().gossipsub.peer_score(peer),
                        }
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::MeshPeers { topic, reply } => {
                let hash = topic.hash(self.config.chain_id, &self.config.genesis_hash);
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .mesh_peers(&hash)
                    .copied()
                    .collect();
                let _ = reply.send(peers);
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::Stats(reply) => {
                let mut stats = self.stats;
                stats.malformed_requests = self.malformed_requests.load(Ordering::Relaxed);
                let _ = reply.send(stats);
            }
            Command::Shutdown(reply) => return Some(reply),
        }
        None
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) -> Result<MessageId, Error> {
        if data.len() > self.config.max_message_bytes {
            self.stats.oversized_dropped += 1;
            return Err(Error::MessageTooLarge {
                size: data.len(),
                max: self.config.max_message_bytes,
            });
        }
        let ident = topic.ident(self.config.chain_id, &self.config.genesis_hash);
        let bytes = data.len() as u64;
        match self.swarm.behaviour_mut().gossipsub.publish(ident, data) {
            Ok(id) => {
                self.stats.messages_published += 1;
                let label = TopicLabel {
                    topic: topic.name(),
                };
                self.metrics.messages_published.get_or_create(&label).inc();
                self.metrics
                    .bytes_published
                    .get_or_create(&label)
                    .inc_by(bytes);
                Ok(id)
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Err(Error::NoPeers),
            Err(gossipsub::PublishError::Duplicate) => Err(Error::Duplicate),
            Err(e) => Err(Error::Publish(e.to_string())),
        }
    }

    fn request(&mut self, peer: PeerId, data: Vec<u8>, reply: ResponseReply) {
        let max = self.config.max_request_bytes;
        let in_flight = self.outbound_per_peer.get(&peer).copied().unwrap_or(0);
        let refusal = if data.len() > max {
            Some(RequestError::TooLarge {
                size: data.len(),
                max,
            })
        } else if self.bans.contains_key(&peer) {
            Some(RequestError::Banned)
        } else if in_flight >= self.config.max_inflight_requests_per_peer {
            Some(RequestError::TooManyInFlight)
        } else {
            None
        };
        if let Some(error) = refusal {
            let _ = reply.send(Err(error));
            return;
        }
        *self.outbound_per_peer.entry(peer).or_default() += 1;
        self.metrics.requests_sent.inc();
        self.count_out(&peer, data.len() as u64);
        let id = self
            .swarm
            .behaviour_mut()
            .block_sync
            .send_request(&peer, data);
        self.outbound.insert(id, (peer, reply));
    }

    fn respond(&mut self, id: RequestId, data: Vec<u8>) -> Result<(), Error> {
        let Some(inbound) = self.inbound.remove(&id.0) else {
            return Err(Error::UnknownRequest);
        };
        self.inbound_ids.remove(&inbound.request_id);
        self.release_inbound(inbound.peer);
        if data.len() > self.config.max_response_bytes {
            // The channel is dropped: the requester sees a failure now.
            return Err(Error::MessageTooLarge {
                size: data.len(),
                max: self.config.max_response_bytes,
            });
        }
        self.count_out(&inbound.peer, data.len() as u64);
        self.swarm
            .behaviour_mut()
            .block_sync
            .send_response(inbound.channel, data)
            .map_err(|_| Error::UnknownRequest)
    }

    fn ban(&mut self, peer: PeerId, duration: Duration) {
        warn!(%peer, ?duration, "banning peer");
        let until = Instant::now() + duration;
        let already = self.bans.insert(peer, until).is_some();
        if !already {
            self.metrics.peers_banned.inc();
        }
        // Identities are free: count the ban against the hosts it came from
        // too (each host once), so a host that keeps coming back with new
        // ones is refused as a whole (`banned_identities_per_host`).
        let limit = &mut self.swarm.behaviour_mut().ip_limit;
        if !already && !limit.is_reserved(&peer) {
            for addr in self
                .connected
                .get(&peer)
                .into_iter()
                .flat_map(|c| c.values())
            {
                limit.strike(peer, addr, until);
            }
        }
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn schedule_redial(&mut self, peer: PeerId) {
        let max = self.config.redial_max_backoff;
        if let Some(redial) = self.persistent.get_mut(&peer) {
            if redial.next_dial.is_none() {
                redial.next_dial = Some(Instant::now() + redial.backoff);
                redial.backoff = (redial.backoff * 2).min(max);
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();

        let (due, later): (Vec<_>, Vec<_>) =
            self.close_relayed.drain(..).partition(|(at, _)| *at <= now);
        self.close_relayed = later;
        for (_, peer) in due {
            let Some(conns) = self.connected.get(&peer) else {
                continue;
            };
            let direct = conns.values().any(|a| !is_circuit(a));
            let relayed: Vec<ConnectionId> = conns
                .iter()
                .filter(|(_, a)| is_circuit(a))
                .map(|(id, _)| *id)
                .collect();
            if direct {
                for id in relayed {
                    self.swarm.close_connection(id);
                }
            }
        }

        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            info!(%peer, "ban expired");
            self.bans.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            self.schedule_redial(peer);
        }
        self.swarm.behaviour_mut().ip_limit.expire(now);

        let due: Vec<(PeerId, Multiaddr)> = self
            .persistent
            .iter()
            .filter(|(peer, r)| {
                r.next_dial.is_some_and(|t| t <= now)
                    && !self.connected.contains_key(peer)
                    && !self.bans.contains_key(peer)
            })
            .map(|(peer, r)| (*peer, r.addr.clone()))
            .collect();
        for (peer, addr) in due {
            if let Some(redial) = self.persistent.get_mut(&peer) {
                redial.next_dial = None;
            }
            debug!(%peer, %addr, "dialling persistent peer");
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(error) = self.swarm.dial(opts) {
                debug!(%peer, %error, "dial not started");
                self.schedule_redial(peer);
            }
        }

        // Gossipsub only ignores graylisted peers; a peer that earned that
        // score is cut off entirely so that it stops costing bandwidth.
        let graylisted: Vec<(PeerId, f64)> = self
            .connected
            .keys()
            .filter_map(|peer| {
                let score = self.swarm.behaviour().gossipsub.peer_score(peer)?;
                (score < GRAYLIST_THRESHOLD).then_some((*peer, score))
            })
            .collect();
        for (peer, score) in graylisted {
            warn!(%peer, score, "peer score below graylist threshold");
            self.stats.peers_banned_for_score += 1;
            self.ban(peer, self.config.score_ban_duration);
        }

        let soon = self.discovery_soon.is_some_and(|t| t <= now);
        if soon || now >= self.next_discovery {
            self.discovery_soon = None;
            self.next_discovery = now + self.config.discovery_interval;
            // Fails only while the routing table is empty.
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<Multiaddr> {
        list.iter().map(|a| a.parse().expect("multiaddr")).collect()
    }

    #[test]
    fn only_addresses_another_host_can_dial_are_announced() {
        let listen = addrs(&[
            "/ip4/127.0.0.1/tcp/1",
            "/ip4/10.200.0.3/tcp/1",
            "/ip4/169.254.3.4/tcp/1",
            "/ip6/fe80::1/tcp/1",
            "/ip6/::1/tcp/1",
            "/ip4/10.200.0.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
        ]);
        let config = Config::default();
        assert_eq!(
            announceable(&listen, &config),
            addrs(&["/ip4/10.200.0.3/tcp/1"])
        );
        // One machine's testnet: loopback is all there is, and it is dialable.
        assert_eq!(
            announceable(&listen[..1], &config),
            addrs(&["/ip4/127.0.0.1/tcp/1"])
        );
        let external = Config {
            external: addrs(&["/ip4/203.0.113.7/tcp/26656"]),
            ..Config::default()
        };
        assert!(announceable(&listen, &external).is_empty());
        let natted = Config {
            use_relays: true,
            ..Config::default()
        };
        assert!(announceable(&listen, &natted).is_empty());
    }
}
