use std::path::PathBuf;

use libp2p::Multiaddr;

/// Errors of the network and of its handle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node key file {path} does not hold a libp2p keypair: {reason}")]
    KeyDecode { path: PathBuf, reason: String },
    #[error("invalid network config: {0}")]
    Config(String),
    #[error("building the transport: {0}")]
    Transport(String),
    #[error("listening on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("dialling {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    #[error("no connected peer is subscribed to the topic")]
    NoPeers,
    #[error("the same message was already published or seen")]
    Duplicate,
    #[error("publishing: {0}")]
    Publish(String),
    #[error("the inbound request is unknown, already answered or timed out")]
    UnknownRequest,
    #[error("the network actor has stopped")]
    Stopped,
}

/// Why an outbound request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no response within the request timeout")]
    Timeout,
    #[error("too many requests in flight to this peer")]
    TooManyInFlight,
    #[error("request of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("the peer could not be reached")]
    Unreachable,
    #[error("the peer is banned")]
    Banned,
    #[error("request failed: {0}")]
    Failed(String),
    #[error("the network actor has stopped")]
    Stopped,
}
