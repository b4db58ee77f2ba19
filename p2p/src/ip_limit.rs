//! Per-host limits on inbound connections, a host being an IP address (an
//! IPv6 /64, which one host usually holds whole), so that one host cannot
//! take every inbound slot with throwaway identities:
//! - at most `max_per_ip` established inbound connections, and at most as
//!   many still in their handshake (so a host that opens sockets and never
//!   finishes the handshake cannot hold every pending slot either);
//! - a host from which `banned_identities_per_host` identities were banned
//!   (and whose bans have not expired) gets no new inbound connection for a
//!   peer it has not been told is reserved: identities are free, hosts are not.
//!
//! Reserved peers (the configured bootstrap and persistent peers) are not
//! counted and never refused once their identity is known; they also bypass
//! the inbound and outbound limits of `connection_limits`, so validators can
//! always reach each other. Their handshakes count as pending like any other
//! (the identity is not known before the handshake).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};
use tokio::time::Instant;

use libp2p::PeerId;
use libp2p::core::{ConnectedPoint, Endpoint, Multiaddr, multiaddr::Protocol, transport::PortUse};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, behaviour::ConnectionEstablished, dummy,
};

/// The connection was refused: its IP address has too many already.
#[derive(Debug, thiserror::Error)]
#[error("{ip} already has {limit} inbound connections {stage}")]
pub struct PerIpExceeded {
    ip: IpAddr,
    limit: u32,
    stage: &'static str,
}

/// The connection was refused: identities from its host were banned.
#[derive(Debug, thiserror::Error)]
#[error("{ip}: {banned} identities from this host are banned")]
pub struct HostBanned {
    ip: IpAddr,
    banned: usize,
}

pub(crate) struct IpLimit {
    max_per_ip: u32,
    /// Banned identities after which a host is refused (0: never).
    banned_per_host: usize,
    reserved: HashSet<PeerId>,
    inbound: HashMap<IpAddr, HashSet<ConnectionId>>,
    /// Inbound connections in their handshake, by connection and by host.
    pending: HashMap<ConnectionId, IpAddr>,
    pending_per_host: HashMap<IpAddr, u32>,
    /// The identities banned at each host, and when their bans expire.
    strikes: HashMap<IpAddr, HashMap<PeerId, Instant>>,
}

/// What the per-IP cap counts: the IPv4 address, or the IPv6 /64.
pub(crate) fn host_of(addr: &Multiaddr) -> Option<IpAddr> {
    ip_of(addr).map(|ip| match ip {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    })
}

/// The IP address in `addr`, if it has one. A relayed connection's
/// (`.../p2p-circuit...`) has none of its own: the address in it is the
/// relay's, which must not pay for the peers it relays.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl IpLimit {
    pub(crate) fn new(max_per_ip: u32, banned_per_host: usize) -> Self {
        Self {
            max_per_ip,
            banned_per_host,
            reserved: HashSet::new(),
            inbound: HashMap::new(),
            pending: HashMap::new(),
            pending_per_host: HashMap::new(),
            strikes: HashMap::new(),
        }
    }

    pub(crate) fn reserve(&mut self, peer: PeerId) {
        self.reserved.insert(peer);
    }

    pub(crate) fn is_reserved(&self, peer: &PeerId) -> bool {
        self.reserved.contains(peer)
    }

    /// `peer`, seen at `addr`, was banned until `until` (each identity
    /// counts once per host, however often it is banned).
    pub(crate) fn strike(&mut self, peer: PeerId, addr: &Multiaddr, until: Instant) {
        if self.banned_per_host == 0 {
            return;
        }
        if let Some(host) = host_of(addr) {
            self.strikes.entry(host).or_default().insert(peer, until);
        }
    }

    /// Forgets strikes whose bans have expired.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.strikes.retain(|_, banned| {
            banned.retain(|_, until| *until > now);
            !banned.is_empty()
        });
    }

    /// Whether new identities from the host of `addr` are refused.
    pub(crate) fn banned_host(&self, addr: &Multiaddr) -> Option<(IpAddr, usize)> {
        let host = host_of(addr)?;
        let banned = self.strikes.get(&host).map_or(0, HashMap::len);
        (self.banned_per_host > 0 && banned >= self.banned_per_host).then_some((host, banned))
    }

    fn end_pending(&mut self, connection: ConnectionId) {
        if let Some(host) = self.pending.remove(&connection) {
            if let Some(count) = self.pending_per_host.get_mut(&host) {
                *count -= 1;
                if *count == 0 {
                    self.pending_per_host.remove(&host);
                }
            }
        }
    }
}

impl NetworkBehaviour for IpLimit {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        _: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = host_of(remote_addr) else {
            return Ok(());
        };
        let count = self.pending_per_host.entry(ip).or_default();
        if *count >= self.max_per_ip {
            return Err(ConnectionDenied::new(PerIpExceeded {
                ip,
                limit: self.max_per_ip,
                stage: "in their handshake",
            }));
        }
        *count += 1;
        self.pending.insert(connection, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.end_pending(connection);
        if self.reserved.contains(&peer) {
            return Ok(dummy::ConnectionHandler);
        }
        if let Some((ip, banned)) = self.banned_host(remote_addr) {
            return Err(ConnectionDenied::new(HostBanned { ip, banned }));
        }
        if let Some(ip) = host_of(remote_addr) {
            let held = self.inbound.get(&ip).map_or(0, HashSet::len);
            if held >= self.max_per_ip as usize {
                return Err(ConnectionDenied::new(PerIpExceeded {
                    ip,
                    limit: self.max_per_ip,
                    stage: "established",
                }));
            }
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint: ConnectedPoint::Listener { send_back_addr, .. },
                ..
            }) if !self.reserved.contains(&peer_id) => {
                if let Some(ip) = host_of(send_back_addr) {
                    self.inbound.entry(ip).or_default().insert(connection_id);
                }
            }
            // A handshake failed, or another behaviour refused the connection.
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.end_pending(connection_id);
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                connection_id,
                endpoint: ConnectedPoint::Listener { send_back_addr, .. },
                ..
            }) => {
                if let Some(ip) = host_of(send_back_addr) {
                    if let Some(held) = self.inbound.get_mut(&ip) {
                        held.remove(&connection_id);
                        if held.is_empty() {
                            self.inbound.remove(&ip);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
