//! The Tally node: how the crates fit together. Today it holds the glue
//! between the ledger's secp256k1 keys and the consensus state machine; the
//! actors, config and JSON-RPC wiring land with the node issue.

pub mod chain;
