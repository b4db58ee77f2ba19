//! Integration tests of the node crate.

mod chain;
