//! `tally`: the Tally node binary.
//!
//! Today it manages keys and generates testnet homes; running a validator
//! (`tally start`, `tally dev`, `tally localnet`) lands with the node issue.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tally_genesis::{ConsensusParams, generate_testnet};
use tally_ledger::SecretKey;

#[derive(Debug, Parser)]
#[command(name = "tally", version, about = "Tally: a BFT ledger validator node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and inspect secp256k1 key files.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Generate homes for an N-validator testnet sharing one genesis.
    Testnet {
        /// Number of validators.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Directory to create the homes in (node0, node1, ...).
        #[arg(long)]
        out: PathBuf,
        /// Numeric chain id.
        #[arg(long, default_value_t = 1337)]
        chain_id: u64,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Write a new random key to a key file (mode 0600).
    Generate {
        /// Where to write the key file; refuses to overwrite an existing file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the address and public key of a key file.
    Show {
        /// The key file.
        key: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Keys(KeysCommand::Generate { out }) => {
            let key = SecretKey::generate()?;
            key.save(&out)?;
            println!("address:    {}", key.address());
            println!("public key: {}", key.public_key());
            println!("key file:   {}", out.display());
        }
        Command::Keys(KeysCommand::Show { key }) => {
            let key = SecretKey::load(&key)?;
            println!("address:    {}", key.address());
            println!("public key: {}", key.public_key());
        }
        Command::Testnet {
            validators,
            out,
            chain_id,
        } => {
            let testnet = generate_testnet(validators, chain_id, ConsensusParams::default(), &out)
                .with_context(|| format!("generating a testnet in {}", out.display()))?;
            println!(
                "chain {} (id {}), genesis {}",
                testnet.genesis.chain_name,
                testnet.genesis.chain_id,
                testnet.genesis.hash()
            );
            for (home, key) in testnet.homes.iter().zip(&testnet.validator_keys) {
                println!("  {}  validator {}", home.display(), key.address());
            }
        }
    }
    Ok(())
}
