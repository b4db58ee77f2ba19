//! Tally's JSON-RPC API (namespace `tally_`), declared once as a jsonrpsee
//! trait that generates both the server and a typed client.
//!
//! The API lands with the node issue.
