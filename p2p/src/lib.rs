//! The Tally network: libp2p (TCP + Noise + Yamux), gossipsub topics scoped
//! to the chain, and a request-response protocol for status and block sync.
//! Carries opaque bytes; depends on no other workspace crate.
//!
//! The swarm lands with the p2p issue.
