//! The building blocks of the CLI's bigger commands: node homes
//! (`tally init`, `tally testnet`), `tally localnet`, `tally netns` and
//! `tally bench`, `tally tx validator`, and the arguments they share.

pub mod bench;
pub mod homes;
pub mod localnet;
pub mod netns;
pub mod prove;
pub mod trace;
pub mod validator;

use clap::Args;
use tally_genesis::ConsensusParams;

/// Consensus parameters of generated genesis files.
#[derive(Debug, Args)]
pub struct ParamArgs {
    /// Minimum time between blocks (ms).
    #[arg(long)]
    pub block_interval_ms: Option<u64>,
    /// Most transactions per block.
    #[arg(long)]
    pub max_block_txs: Option<u32>,
    /// With no transaction waiting, at most one empty block per this many ms (0: no wait).
    #[arg(long)]
    pub empty_block_interval_ms: Option<u64>,
}

impl ParamArgs {
    pub fn params(&self) -> ConsensusParams {
        let mut params = ConsensusParams::default();
        if let Some(ms) = self.block_interval_ms {
            params.block_interval_ms = ms;
        }
        if let Some(n) = self.max_block_txs {
            params.max_block_txs = n;
        }
        if let Some(ms) = self.empty_block_interval_ms {
            params.empty_block_interval_ms = ms;
        }
        params
    }
}
