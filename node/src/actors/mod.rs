//! The actors a node is made of, each a task (the ledger an OS thread) that
//! owns its state and talks to the others through channels; wired in
//! [`crate::node::Node::start`].

pub mod consensus;
pub mod ledger;
pub mod mempool;
pub mod network;
pub mod priority;
pub mod prune;
pub mod sync;
