//! The Tally network: it moves opaque bytes between nodes over libp2p
//! (TCP + Noise + Yamux, identify, ping, Kademlia for peer discovery).
//! Gossip travels on gossipsub topics scoped to one chain (chain id plus
//! genesis hash), and every received message waits for the node's verdict
//! (Accept, Reject or Ignore) before it is forwarded; rejected messages lower
//! the sender's peer score, and a peer whose score falls below the graylist
//! threshold is disconnected and banned for a while. Status and block sync use
//! a bounded request-response protocol. The crate knows nothing about blocks
//! or transactions and depends on no other workspace crate: the node decides
//! what the bytes mean.
//!
//! The network runs as an actor: [`spawn`] binds the listeners, starts the
//! swarm in a tokio task and returns a cloneable [`Handle`] and a bounded
//! stream of [`Event`]s. Input from peers that is malformed or too large is
//! dropped, counted in [`Stats`] and logged; it never panics the node.

mod actor;
mod behaviour;
mod codec;
mod config;
mod error;
mod ingress;
mod ip_limit;
mod metrics;
mod topic;
mod trusted;

pub use config::{Config, load_or_create_key};
pub use error::{Error, RequestError};
pub use ingress::{Event, Handle, PeerInfo, RequestId, Stats, Verdict};
pub use ip_limit::ip_of;
pub use libp2p::{Multiaddr, PeerId, gossipsub::MessageId, identity::Keypair, metrics::Registry};
pub use topic::Topic;

/// Starts the network actor.
///
/// Binds every listen address before returning, so that
/// [`Handle::listen_addrs`] already reports the real ports when `tcp/0` was
/// asked for. Must be called inside a tokio runtime.
pub async fn spawn(config: Config) -> Result<(Handle, tokio::sync::mpsc::Receiver<Event>), Error> {
    actor::spawn(config, None).await
}

/// [`spawn`], registering libp2p's metrics (`libp2p_*`: swarm, identify,
/// ping, Kademlia, gossipsub internals, bandwidth) and the network's own
/// (`tally_p2p_*`) in `registry`.
pub async fn spawn_with_metrics(
    config: Config,
    registry: &mut Registry,
) -> Result<(Handle, tokio::sync::mpsc::Receiver<Event>), Error> {
    actor::spawn(config, Some(registry)).await
}
