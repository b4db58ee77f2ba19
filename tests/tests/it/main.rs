//! Workspace-level tests: the crates working together, as the node will use them.

mod ledger_pipeline;
