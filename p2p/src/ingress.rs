//! What the rest of the node sees: the cloneable [`Handle`], the commands it
//! sends to the actor, and the [`Event`]s the actor emits.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId, gossipsub::MessageId};
use tokio::sync::{mpsc, oneshot};

use crate::{Error, RequestError, Topic};

/// Something the network reports to the node.
#[derive(Debug)]
pub enum Event {
    /// A gossip message. It is not forwarded until the node calls
    /// [`Handle::report`] with `id` and `source`; a Reject lowers the score
    /// of `source`. Messages never reported expire from the gossip cache.
    Message {
        topic: Topic,
        /// The peer that passed the message on (not necessarily its author).
        source: PeerId,
        /// The peer that signed the message.
        author: Option<PeerId>,
        id: MessageId,
        data: Vec<u8>,
    },
    /// A request from `peer`; answer it with [`Handle::respond`]. Unanswered
    /// requests fail at the requester after its timeout.
    Request {
        peer: PeerId,
        id: RequestId,
        data: Vec<u8>,
    },
    PeerConnected {
        peer: PeerId,
        addr: Multiaddr,
    },
    PeerDisconnected {
        peer: PeerId,
    },
}

/// The node's verdict on a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it to the mesh.
    Accept,
    /// Invalid: drop it and penalise the peer that sent it.
    Reject,
    /// Not useful (stale, duplicate at a higher level): drop it, no penalty.
    Ignore,
}

/// Names an inbound request until it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub(crate) u64);

/// A connected peer and the addresses of its connections.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerInfo {
    pub peer: PeerId,
    pub addrs: Vec<Multiaddr>,
    /// Whether the peer dialled the first connection.
    pub inbound: bool,
    /// When the first connection was made (ms since the Unix epoch).
    pub connected_since_ms: u64,
    /// Gossip payload and request-response bytes received from it.
    pub bytes_in: u64,
    /// Request-response bytes sent to it (gossipsub forwards to its mesh
    /// on its own; those sends are not counted per peer).
    pub bytes_out: u64,
    /// Its gossipsub score.
    pub score: Option<f64>,
}

/// Counters of what the network did and, above all, what it dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages_published: u64,
    pub messages_received: u64,
    /// Gossip dropped because the event channel was full.
    pub gossip_dropped_backpressure: u64,
    /// Gossip refused because it was larger than `max_message_bytes`
    /// (published locally, or received past gossipsub's own check).
    pub oversized_dropped: u64,
    /// Gossip on a topic this node does not know.
    pub unknown_topic_dropped: u64,
    pub requests_received: u64,
    /// Inbound requests refused: too many in flight from the peer, or the
    /// event channel backed up.
    pub requests_refused: u64,
    /// Inbound requests that could not be read: oversized or truncated.
    pub malformed_requests: u64,
    /// Inbound requests that failed after being read: not answered in time,
    /// or the connection closed before the answer.
    pub inbound_request_failures: u64,
    pub outbound_request_failures: u64,
    /// Peers banned because their gossip score fell below the graylist
    /// threshold.
    pub peers_banned_for_score: u64,
}

pub(crate) type Reply<T> = oneshot::Sender<T>;

pub(crate) enum Command {
    ListenAddrs(Reply<Vec<Multiaddr>>),
    Publish {
        topic: Topic,
        data: Vec<u8>,
        reply: Reply<Result<MessageId, Error>>,
    },
    Report {
        id: MessageId,
        source: PeerId,
        verdict: Verdict,
    },
    Request {
        peer: PeerId,
        data: Vec<u8>,
        reply: Reply<Result<Vec<u8>, RequestError>>,
    },
    Respond {
        id: RequestId,
        data: Vec<u8>,
        reply: Reply<Result<(), Error>>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<Result<(), Error>>,
    },
    Ban {
        peer: PeerId,
        duration: Duration,
        reply: Reply<()>,
    },
    Peers(Reply<Vec<PeerInfo>>),
    MeshPeers {
        topic: Topic,
        reply: Reply<Vec<PeerId>>,
    },
    PeerScore {
        peer: PeerId,
        reply: Reply<Option<f64>>,
    },
    Stats(Reply<Stats>),
    Shutdown(Reply<()>),
}

/// The node's side of the network actor. Cheap to clone; the actor stops
/// when every clone is dropped or [`Handle::shutdown`] is called.
#[derive(Clone, Debug)]
pub struct Handle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) local_peer_id: PeerId,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Payloads can be megabytes; name the command only.
        let name = match self {
            Command::ListenAddrs(_) => "ListenAddrs",
            Command::Publish { .. } => "Publish",
            Command::Report { .. } => "Report",
            Command::Request { .. } => "Request",
            Command::Respond { .. } => "Respond",
            Command::Dial { .. } => "Dial",
            Command::Ban { .. } => "Ban",
            Command::Peers(_) => "Peers",
            Command::MeshPeers { .. } => "MeshPeers",
            Command::PeerScore { .. } => "PeerScore",
            Command::Stats(_) => "Stats",
            Command::Shutdown(_) => "Shutdown",
        };
        f.write_str(name)
    }
}

impl Handle {
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// The bound listen addresses and the configured external ones, each
    /// ending in `/p2p/<local peer id>`, ready to hand to other nodes.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, Error> {
        self.call(Command::ListenAddrs).await
    }

    /// Publishes `data` on `topic`. Fails with [`Error::NoPeers`] while no
    /// connected peer subscribes to the topic.
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<MessageId, Error> {
        self.call(|reply| Command::Publish { topic, data, reply })
            .await?
    }

    /// Delivers the node's verdict on a received message.
    pub async fn report(
        &self,
        id: MessageId,
        source: PeerId,
        verdict: Verdict,
    ) -> Result<(), Error> {
        self.commands
            .send(Command::Report {
                id,
                source,
                verdict,
            })
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Sends a request and waits for the response (at most the configured
    /// request timeout).
    pub async fn request(&self, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Request {
                peer,
                data,
                reply: tx,
            })
            .await
            .map_err(|_| RequestError::Stopped)?;
        rx.await.map_err(|_| RequestError::Stopped)?
    }

    /// Answers an inbound request.
    pub async fn respond(&self, id: RequestId, data: Vec<u8>) -> Result<(), Error> {
        self.call(|reply| Command::Respond { id, data, reply })
            .await?
    }

    /// Dials an address once (no redial); it should end in `/p2p/<peer id>`.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), Error> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    /// Disconnects `peer` and refuses connections to and from it for
    /// `duration`.
    pub async fn ban(&self, peer: PeerId, duration: Duration) -> Result<(), Error> {
        self.call(|reply| Command::Ban {
            peer,
            duration,
            reply,
        })
        .await
    }

    /// Connected peers with the remote addresses of their connections.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Error> {
        self.call(Command::Peers).await
    }

    /// The peers in this node's gossipsub mesh for `topic`.
    pub async fn mesh_peers(&self, topic: Topic) -> Result<Vec<PeerId>, Error> {
        self.call(|reply| Command::MeshPeers { topic, reply }).await
    }

    /// The gossipsub score this node gives `peer`, if it knows the peer.
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, Error> {
        self.call(|reply| Command::PeerScore { peer, reply }).await
    }

    pub async fn stats(&self) -> Result<Stats, Error> {
        self.call(Command::Stats).await
    }

    /// Stops the actor and returns once the listeners and connections are
    /// closed.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.call(Command::Shutdown).await
    }
}
