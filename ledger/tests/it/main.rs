//! Integration tests of the ledger, in one binary so that linking stays fast.

mod common;
mod eth;
mod execution;
mod governance;
mod journal;
mod mempool;
mod props;
mod snapshot;
mod store;
mod tx;
mod vectors;
