//! A behaviour confined to trusted peers.
//!
//! Relaying, hole punching and AutoNAT cost the node bandwidth, connection
//! slots and dials to addresses a peer names. Served to anyone, one stranger
//! holds every relay slot, has validators dial hosts of its choosing or fills
//! the outbound slots with dial-backs. [`OnlyTrusted`] runs such a behaviour
//! on connections with the peers the operator named (bootstrap and trusted
//! peers) only: every other connection gets a handler that speaks none of
//! its protocols, so a stranger can neither use the behaviour nor feed it.

use std::{
    collections::HashSet,
    task::{Context, Poll},
};

use either::Either;
use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, dummy,
    },
};

/// External address candidates (our address as peers see it, which any
/// peer can claim through identify) passed on; later ones are dropped so
/// that no peer can grow the inner behaviour's candidate list.
const MAX_CANDIDATES: usize = 16;

pub(crate) struct OnlyTrusted<B> {
    inner: B,
    trusted: HashSet<PeerId>,
    candidates: HashSet<Multiaddr>,
}

impl<B> OnlyTrusted<B> {
    pub(crate) fn new(inner: B, trusted: HashSet<PeerId>) -> Self {
        Self {
            inner,
            trusted,
            candidates: HashSet::new(),
        }
    }

    fn trusts(&self, peer: &PeerId) -> bool {
        self.trusted.contains(peer)
    }

    /// Whether the inner behaviour may see `event`: nothing about
    /// connections it has no handler on (it would not know them; some
    /// behaviours assert that they do), and a bounded set of candidates.
    fn passes(&mut self, event: &FromSwarm) -> bool {
        match event {
            FromSwarm::ConnectionEstablished(e) => self.trusts(&e.peer_id),
            FromSwarm::ConnectionClosed(e) => self.trusts(&e.peer_id),
            FromSwarm::AddressChange(e) => self.trusts(&e.peer_id),
            FromSwarm::DialFailure(e) => e.peer_id.is_none_or(|p| self.trusts(&p)),
            FromSwarm::NewExternalAddrCandidate(e) => {
                self.candidates.contains(e.addr)
                    || (self.candidates.len() < MAX_CANDIDATES
                        && self.candidates.insert(e.addr.clone()))
            }
            _ => true,
        }
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for OnlyTrusted<B> {
    type ConnectionHandler = Either<THandler<B>, dummy::ConnectionHandler>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.trusts(&peer) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        self.inner
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
            .map(Either::Left)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if maybe_peer.is_some_and(|p| !self.trusts(&p)) {
            return Ok(Vec::new());
        }
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.trusts(&peer) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        self.inner
            .handle_established_outbound_connection(
                connection_id,
                peer,
                addr,
                role_override,
                port_use,
            )
            .map(Either::Left)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if self.passes(&event) {
            self.inner.on_swarm_event(event);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Either::Left(event) => {
                self.inner
                    .on_connection_handler_event(peer_id, connection_id, event)
            }
            Either::Right(never) => match never {},
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            let event = match self.inner.poll(cx) {
                Poll::Ready(event) => event,
                Poll::Pending => return Poll::Pending,
            };
            // A command for a stranger's connection would reach its dummy
            // handler, which cannot take it: drop it here instead.
            if let ToSwarm::NotifyHandler { peer_id, .. } = &event {
                if !self.trusts(peer_id) {
                    continue;
                }
            }
            return Poll::Ready(event.map_in(Either::Left));
        }
    }
}
