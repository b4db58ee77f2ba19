//! Integration tests of the p2p crate: real libp2p nodes on 127.0.0.1 with
//! ports picked at run time.

mod announce;
mod common;
mod gossip;
mod peers;
mod relay;
mod scoring;
mod sync;
