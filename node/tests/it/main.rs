//! Integration tests of the node crate: the consensus glue in process, and
//! real `tally` processes on loopback (ports picked at run time).

mod chain;
mod dashboard;
mod dev;
mod harness;
mod hostile;
mod inprocess;
mod localnet;
mod metrics;
mod overload;
mod rpc;
