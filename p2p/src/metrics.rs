//! The network's own Prometheus metrics (`tally_p2p_*`), beside libp2p's
//! (`libp2p_*`: swarm, identify, ping, Kademlia, gossipsub internals,
//! bandwidth per protocol), all registered by [`crate::spawn_with_metrics`].
//! Labels are bounded: topics are the chain's two, directions two, drop
//! reasons three.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TopicLabel {
    pub(crate) topic: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DirectionLabel {
    pub(crate) direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: &'static str,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct P2pMetrics {
    pub(crate) peers: Family<DirectionLabel, Gauge>,
    pub(crate) messages_received: Family<TopicLabel, Counter>,
    pub(crate) bytes_received: Family<TopicLabel, Counter>,
    pub(crate) messages_published: Family<TopicLabel, Counter>,
    pub(crate) bytes_published: Family<TopicLabel, Counter>,
    pub(crate) gossip_dropped: Family<ReasonLabel, Counter>,
    pub(crate) peers_banned: Counter,
    pub(crate) requests_received: Counter,
    pub(crate) requests_refused: Counter,
    pub(crate) requests_sent: Counter,
    pub(crate) requests_failed: Counter,
}

impl P2pMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("tally_p2p");
        r.register(
            "peers",
            "Connected peers, by the direction of their first connection (inbound, outbound)",
            m.peers.clone(),
        );
        r.register(
            "messages_received",
            "Gossip messages received and handed to the node, by topic",
            m.messages_received.clone(),
        );
        r.register_with_unit(
            "received",
            "Gossip payload bytes received and handed to the node, by topic",
            Unit::Bytes,
            m.bytes_received.clone(),
        );
        r.register(
            "messages_published",
            "Gossip messages this node published, by topic",
            m.messages_published.clone(),
        );
        r.register_with_unit(
            "published",
            "Gossip payload bytes this node published, by topic",
            Unit::Bytes,
            m.bytes_published.clone(),
        );
        r.register(
            "gossip_dropped",
            "Gossip messages dropped before the node saw them, by reason \
             (unknown_topic, oversized, backpressure)",
            m.gossip_dropped.clone(),
        );
        r.register(
            "peers_banned",
            "Peers banned (by score or by the node)",
            m.peers_banned.clone(),
        );
        r.register(
            "requests_received",
            "Request-response (block sync) requests received",
            m.requests_received.clone(),
        );
        r.register(
            "requests_refused",
            "Requests refused for want of a slot",
            m.requests_refused.clone(),
        );
        r.register(
            "requests_sent",
            "Requests sent to peers",
            m.requests_sent.clone(),
        );
        r.register(
            "requests_failed",
            "Requests sent that failed (timeout, refused, closed)",
            m.requests_failed.clone(),
        );
        m
    }
}
