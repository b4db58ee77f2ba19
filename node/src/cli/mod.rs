//! The building blocks of the CLI's bigger commands: node homes
//! (`tally init`, `tally testnet`), `tally localnet` and `tally bench`.

pub mod bench;
pub mod homes;
pub mod localnet;
pub mod trace;
