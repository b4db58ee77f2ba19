//! Integration tests of the node crate: the consensus glue in process, and
//! real `tally` processes on loopback (ports picked at run time) and on
//! emulated hosts in network namespaces.

mod chain;
mod dashboard;
mod dev;
mod harness;
mod hostile;
mod inprocess;
mod localnet;
mod metrics;
mod netns;
mod overload;
mod rpc;
mod state_sync;
mod validators;
mod wallets;
