//! `tally tx validator ...`: propose and approve validator-set changes
//! (see `tally_ledger::governance` for the rules).

use anyhow::Context;
use clap::Subcommand;
use jsonrpsee_http_client::HttpClient;
use tally_ledger::governance::{GovernanceAction, GovernanceTx, Member, SetChange};
use tally_ledger::{Address, PublicKey, SecretKey};
use tally_rpc::TallyApiClient;

/// Blocks a proposal stays open by default (about a day at one block a second).
pub const DEFAULT_LIFETIME: u64 = 86_400;

#[derive(Debug, Subcommand)]
pub enum ValidatorCommand {
    /// Propose a change of the validator set; counts as your approval. Only
    /// a validator (or a dev chain's governance admin) may propose.
    Propose {
        #[command(subcommand)]
        change: ChangeArg,
        /// Blocks from now until the proposal expires unapproved.
        #[arg(long, default_value_t = DEFAULT_LIFETIME)]
        expires_in: u64,
    },
    /// Approve a pending proposal (see `tally query proposals`).
    Approve { id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum ChangeArg {
    /// Add a validator (its operator prints its public key with `tally keys show`).
    Add {
        #[arg(long)]
        name: String,
        /// Compressed SEC1 public key, 0x hex.
        #[arg(long)]
        public_key: PublicKey,
        #[arg(long)]
        power: u64,
    },
    /// Remove a validator.
    Remove { address: Address },
    /// Change a validator's voting power.
    Power { address: Address, power: u64 },
    /// Replace a validator's key (a compromised or retired one) with another.
    Rotate {
        address: Address,
        /// The new compressed SEC1 public key, 0x hex.
        #[arg(long)]
        public_key: PublicKey,
    },
}

impl ChangeArg {
    pub fn change(self) -> SetChange {
        match self {
            ChangeArg::Add {
                name,
                public_key,
                power,
            } => SetChange::Add {
                member: Member::of_key(&name, &public_key, power),
            },
            ChangeArg::Remove { address } => SetChange::Remove { address },
            ChangeArg::Power { address, power } => SetChange::SetPower { address, power },
            ChangeArg::Rotate {
                address,
                public_key,
            } => SetChange::ReplaceKey {
                address,
                public_key: public_key.to_compressed(),
            },
        }
    }
}

/// Signs the governance transaction `command` asks for with `key`: the chain
/// id, next nonce (unless given) and current height come from the node.
pub async fn transaction(
    client: &HttpClient,
    key: &SecretKey,
    command: ValidatorCommand,
    fee: u128,
    nonce: Option<u64>,
) -> anyhow::Result<tally_ledger::SignedTransaction> {
    let status = TallyApiClient::status(client)
        .await
        .context("asking the node for its status")?;
    let nonce = match nonce {
        Some(nonce) => nonce,
        None => {
            TallyApiClient::get_account(client, key.address().to_string())
                .await
                .context("reading the sender's nonce")?
                .nonce
        }
    };
    let action = match command {
        ValidatorCommand::Propose { change, expires_in } => GovernanceAction::Propose {
            change: change.change(),
            expires_at: status.latest_height.saturating_add(expires_in.max(1)),
        },
        ValidatorCommand::Approve { id } => GovernanceAction::Approve { id },
    };
    Ok(GovernanceTx {
        chain_id: status.chain_id,
        nonce,
        fee,
        action,
    }
    .sign(key))
}
