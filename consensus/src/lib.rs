//! Tendermint BFT consensus ("The latest gossip on BFT consensus", Buchman,
//! Kwon, Milosevic, arXiv:1807.04938) as a pure state machine: events in,
//! actions out, no clock, no IO. Depends on no other workspace crate.
//!
//! The state machine lands with the consensus issue.
