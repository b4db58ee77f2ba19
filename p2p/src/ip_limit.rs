//! A cap on established inbound connections from one IP address (an IPv6
//! /64, which one host usually holds whole), so that one host cannot take
//! every inbound slot with throwaway identities.
//! Reserved peers (the configured bootstrap and persistent peers) are not
//! counted and never refused; they also bypass the inbound and outbound
//! limits of `connection_limits`, so validators can always reach each other.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::{ConnectedPoint, Endpoint, Multiaddr, multiaddr::Protocol, transport::PortUse};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, behaviour::ConnectionEstablished, dummy,
};

/// The connection was refused: its IP address has too many already.
#[derive(Debug, thiserror::Error)]
#[error("{ip} already has {limit} inbound connections")]
pub struct PerIpExceeded {
    ip: IpAddr,
    limit: u32,
}

pub(crate) struct IpLimit {
    max_per_ip: u32,
    reserved: HashSet<PeerId>,
    inbound: HashMap<IpAddr, HashSet<ConnectionId>>,
}

/// What the per-IP cap counts: the IPv4 address, or the IPv6 /64.
fn host_of(addr: &Multiaddr) -> Option<IpAddr> {
    ip_of(addr).map(|ip| match ip {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    })
}

/// The IP address in `addr`, if it has one.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl IpLimit {
    pub(crate) fn new(max_per_ip: u32) -> Self {
        Self {
            max_per_ip,
            reserved: HashSet::new(),
            inbound: HashMap::new(),
        }
    }

    pub(crate) fn reserve(&mut self, peer: PeerId) {
        self.reserved.insert(peer);
    }
}

impl NetworkBehaviour for IpLimit {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if self.reserved.contains(&peer) {
            return Ok(dummy::ConnectionHandler);
        }
        if let Some(ip) = host_of(remote_addr) {
            let held = self.inbound.get(&ip).map_or(0, HashSet::len);
            if held >= self.max_per_ip as usize {
                return Err(ConnectionDenied::new(PerIpExceeded {
                    ip,
                    limit: self.max_per_ip,
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
