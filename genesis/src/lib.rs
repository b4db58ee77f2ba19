//! The genesis file of a Tally chain: format, validation, canonical hash, and
//! generators for a one-validator dev chain and an N-validator testnet.
//!
//! `genesis.json` names the chain (numeric id and name), its start time, the
//! consensus parameters, the validators with their voting power, and the
//! funded accounts. [`Genesis::validate`] gives a clear error for every
//! mistake; [`Genesis::hash`] is independent of JSON formatting and of the
//! order in which accounts and validators are listed, and is what a node's
//! store and network topics are bound to.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use borsh::BorshSerialize;
use serde::{Deserialize, Serialize};
use tally_ledger::crypto::keccak256_concat;
use tally_ledger::governance::{GovernanceParams, MAX_NAME_BYTES, MAX_TOTAL_POWER, MAX_VALIDATORS};
use tally_ledger::tx::MAX_SIGNED_TX_BYTES;
use tally_ledger::{Address, ExecParams, GenesisState, Hash, Member, PublicKey, SecretKey};

/// Domain tag of the genesis hash.
const GENESIS_DOMAIN: &[u8] = b"tally/genesis/v1";

/// How many well-known dev accounts the dev and testnet generators fund.
pub const DEV_ACCOUNTS: usize = 16;

/// The balance of each dev account: 10^24 base units.
pub const DEV_BALANCE: u128 = 1_000_000_000_000_000_000_000_000;

/// The largest chain id: MetaMask's bound, `(2^53 - 1) / 2 - 36`, so that a
/// legacy signature's `v` (`2 x id + 36`) stays an exact JavaScript number.
pub const MAX_CHAIN_ID: u64 = 4_503_599_627_370_476;

/// Chain ids of public EVM networks, refused so that a wallet-signed Tally
/// transfer can never be replayed on one of them (or one of theirs here).
const PUBLIC_CHAIN_IDS: &[(u64, &str)] = &[
    (1, "Ethereum mainnet"),
    (10, "OP Mainnet"),
    (56, "BNB Smart Chain"),
    (100, "Gnosis"),
    (137, "Polygon PoS"),
    (250, "Fantom"),
    (324, "zkSync Era"),
    (8453, "Base"),
    (17000, "Holesky"),
    (42161, "Arbitrum One"),
    (43114, "Avalanche C-Chain"),
    (59144, "Linea"),
    (560048, "Hoodi"),
    (11155111, "Sepolia"),
];

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: String },
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: String },
    #[error("{path} is not a valid genesis file: {error}")]
    Parse { path: String, error: String },
    #[error("genesis time {0:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z")]
    BadTime(String),
    #[error("chain id must not be 0")]
    ZeroChainId,
    #[error(
        "chain id {0} is above {MAX_CHAIN_ID}, the largest that wallets (MetaMask) and \
         JavaScript numbers handle"
    )]
    ChainIdTooLarge(u64),
    #[error(
        "chain id {id} is {name}'s: Ethereum transactions signed for one chain would be valid \
         on the other (same keys, same addresses); choose an id no public chain uses"
    )]
    PublicChainId { id: u64, name: &'static str },
    #[error("chain name must not be empty")]
    EmptyChainName,
    #[error("the validator set is empty: a chain needs at least one validator")]
    NoValidators,
    #[error("validator {name:?} ({address}) is listed twice")]
    DuplicateValidator { name: String, address: Address },
    #[error("validator {name:?} has zero voting power")]
    ZeroPower { name: String },
    #[error("total voting power exceeds {MAX_TOTAL_POWER}")]
    PowerOverflow,
    #[error("{0} validators, more than the {MAX_VALIDATORS} a set may have")]
    TooManyValidators(usize),
    #[error("validator name {0:?} is longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong(String),
    #[error(
        "validator {name:?}: address {address} does not match its public key, which gives {derived}"
    )]
    AddressMismatch {
        name: String,
        address: Address,
        derived: Address,
    },
    #[error("account {0} is funded twice")]
    DuplicateAccount(Address),
    #[error("total supply of the funded accounts overflows u128")]
    SupplyOverflow,
    #[error("consensus parameter {name}: {problem}")]
    BadParam { name: &'static str, problem: String },
    #[error(transparent)]
    Key(#[from] tally_ledger::CryptoError),
}

/// The largest `max_block_bytes` a genesis may set: a proposal carries its
/// block in one gossip message (the node allows the block plus 256 KiB) and
/// a syncing node receives at least one whole block (with its certificate)
/// in one 16 MiB response.
pub const MAX_BLOCK_BYTES: u32 = 8 * 1024 * 1024;

/// The longest any consensus timeout or block interval may be: ten minutes.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// Consensus parameters, fixed at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusParams {
    /// How long to wait for a proposal in round 0 (grows by `timeout_delta_ms` per round).
    pub timeout_propose_ms: u64,
    /// How long to wait for more prevotes after seeing 2/3 of any.
    pub timeout_prevote_ms: u64,
    /// How long to wait for more precommits after seeing 2/3 of any.
    pub timeout_precommit_ms: u64,
    /// Added to each timeout per round, so that rounds eventually last long enough.
    pub timeout_delta_ms: u64,
    /// Minimum time between consecutive blocks (0: propose as soon as the last one commits).
    pub block_interval_ms: u64,
    pub max_block_txs: u32,
    pub max_block_bytes: u32,
    /// Smallest fee a transaction may pay, in base units.
    #[serde(with = "tally_ledger::serde_u128")]
    pub min_fee: u128,
    /// With no transaction waiting, the next height starts only after this
    /// long (or as soon as one arrives): an idle chain makes one empty block
    /// per interval instead of one per `block_interval_ms`. 0: never wait.
    #[serde(default = "default_empty_block_interval_ms")]
    pub empty_block_interval_ms: u64,
}

fn default_empty_block_interval_ms() -> u64 {
    1000
}

impl Default for ConsensusParams {
    fn default() -> Self {
        ConsensusParams {
            timeout_propose_ms: 1000,
            timeout_prevote_ms: 500,
            timeout_precommit_ms: 500,
            timeout_delta_ms: 250,
            block_interval_ms: 100,
            max_block_txs: 10_000,
            max_block_bytes: 4 * 1024 * 1024,
            min_fee: 1,
            empty_block_interval_ms: default_empty_block_interval_ms(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub name: String,
    pub address: Address,
    pub public_key: PublicKey,
    pub power: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub address: Address,
    #[serde(with = "tally_ledger::serde_u128")]
    pub balance: u128,
}

/// The contents of `genesis.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: u64,
    pub chain_name: String,
    /// RFC 3339, e.g. `2026-11-28T00:00:00Z`.
    pub genesis_time: String,
    pub consensus: ConsensusParams,
    pub validators: Vec<GenesisValidator>,
    pub accounts: Vec<GenesisAccount>,
    /// **Dev chains only.** An address whose governance proposals change the
    /// validator set alone, without approvals and beyond the one-third
    /// limit. Whoever holds its key controls the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance_admin: Option<Address>,
}

/// The canonical form that is hashed: validators and accounts sorted by
/// address, time as milliseconds, public keys compressed.
#[derive(BorshSerialize)]
struct Canonical<'a> {
    chain_id: u64,
    chain_name: &'a str,
    genesis_time_ms: u64,
    consensus: &'a ConsensusParams,
    validators: Vec<(Address, [u8; 33], u64, &'a str)>,
    accounts: Vec<(Address, u128)>,
    governance_admin: Option<Address>,
}

fn parse_time_ms(time: &str) -> Result<u64, GenesisError> {
    let at = humantime::parse_rfc3339(time).map_err(|_| GenesisError::BadTime(time.to_string()))?;
    let since = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| GenesisError::BadTime(time.to_string()))?;
    u64::try_from(since.as_millis()).map_err(|_| GenesisError::BadTime(time.to_string()))
}

/// The current time as RFC 3339 with seconds precision.
fn now_rfc3339() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(now.as_secs())).to_string()
}

impl Genesis {
    /// Reads and validates a genesis file.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = fs::read_to_string(path).map_err(|e| GenesisError::Read {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a genesis from its JSON text; `origin` names it
    /// in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Genesis, GenesisError> {
        let genesis: Genesis = serde_json::from_str(text).map_err(|e| GenesisError::Parse {
            path: origin.to_string(),
            error: e.to_string(),
        })?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Validates and writes the genesis as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), GenesisError> {
        self.validate()?;
        let err = |e: std::io::Error| GenesisError::Write {
            path: path.display().to_string(),
            error: e.to_string(),
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(err)?;
        }
        let json = serde_json::to_string_pretty(self).expect("genesis serialises to JSON");
        fs::write(path, json + "\n").map_err(err)
    }

    /// Checks everything that can be wrong with a genesis.
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.chain_id == 0 {
            return Err(GenesisError::ZeroChainId);
        }
        if self.chain_id > MAX_CHAIN_ID {
            return Err(GenesisError::ChainIdTooLarge(self.chain_id));
        }
        if let Some((id, name)) = PUBLIC_CHAIN_IDS.iter().find(|(id, _)| *id == self.chain_id) {
            return Err(GenesisError::PublicChainId { id: *id, name });
        }
        if self.chain_name.trim().is_empty() {
            return Err(GenesisError::EmptyChainName);
        }
        parse_time_ms(&self.genesis_time)?;
        self.validate_params()?;
        if self.validators.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        if self.validators.len() > MAX_VALIDATORS {
            return Err(GenesisError::TooManyValidators(self.validators.len()));
        }
        let mut seen = BTreeSet::new();
        let mut total_power: u64 = 0;
        for v in &self.validators {
            if !seen.insert(v.address) {
                return Err(GenesisError::DuplicateValidator {
                    name: v.name.clone(),
                    address: v.address,
                });
            }
            if v.power == 0 {
                return Err(GenesisError::ZeroPower {
                    name: v.name.clone(),
                });
            }
            if v.name.len() > MAX_NAME_BYTES {
                return Err(GenesisError::NameTooLong(v.name.clone()));
            }
            let derived = v.public_key.address();
            if derived != v.address {
                return Err(GenesisError::AddressMismatch {
                    name: v.name.clone(),
                    address: v.address,
                    derived,
                });
            }
            total_power = total_power
                .checked_add(v.power)
                .filter(|t| *t <= MAX_TOTAL_POWER)
                .ok_or(GenesisError::PowerOverflow)?;
        }
        let mut funded = BTreeSet::new();
        let mut supply: u128 = 0;
        for a in &self.accounts {
            if !funded.insert(a.address) {
                return Err(GenesisError::DuplicateAccount(a.address));
            }
            supply = supply
                .checked_add(a.balance)
                .ok_or(GenesisError::SupplyOverflow)?;
        }
        Ok(())
    }

    fn validate_params(&self) -> Result<(), GenesisError> {
        let p = &self.consensus;
        let bad = |name, problem: &str| {
            Err(GenesisError::BadParam {
                name,
                problem: problem.to_string(),
            })
        };
        for (name, ms) in [
            ("timeout_propose_ms", p.timeout_propose_ms),
            ("timeout_prevote_ms", p.timeout_prevote_ms),
            ("timeout_precommit_ms", p.timeout_precommit_ms),
            // Timeouts must grow with the round, or a network whose messages
            // take longer than the timeouts never decides.
            ("timeout_delta_ms", p.timeout_delta_ms),
        ] {
            if ms == 0 {
                return bad(name, "must be positive");
            }
            if ms > MAX_TIMEOUT_MS {
                return bad(name, &format!("must be at most {MAX_TIMEOUT_MS} ms"));
            }
        }
        for (name, ms) in [
            ("block_interval_ms", p.block_interval_ms),
            ("empty_block_interval_ms", p.empty_block_interval_ms),
        ] {
            if ms > MAX_TIMEOUT_MS {
                return bad(name, &format!("must be at most {MAX_TIMEOUT_MS} ms"));
            }
        }
        if p.max_block_txs == 0 {
            return bad("max_block_txs", "must be positive");
        }
        if (p.max_block_bytes as usize) < MAX_SIGNED_TX_BYTES {
            return bad(
                "max_block_bytes",
                &format!("must hold at least one transaction ({MAX_SIGNED_TX_BYTES} bytes)"),
            );
        }
        if p.max_block_bytes > MAX_BLOCK_BYTES {
            return bad(
                "max_block_bytes",
                &format!(
                    "must be at most {MAX_BLOCK_BYTES} bytes (a proposal is one gossip message, \
                     and a block must fit in one sync response)"
                ),
            );
        }
        if p.min_fee == 0 {
            return bad(
                "min_fee",
                "must be positive (free transactions let anyone fill every block)",
            );
        }
        Ok(())
    }

    /// Genesis time in Unix milliseconds (0 if the genesis was never validated).
    pub fn genesis_time_ms(&self) -> u64 {
        parse_time_ms(&self.genesis_time).unwrap_or(0)
    }

    /// The canonical genesis hash.
    pub fn hash(&self) -> Hash {
        let mut validators: Vec<_> = self
            .validators
            .iter()
            .map(|v| {
                (
                    v.address,
                    v.public_key.to_compressed(),
                    v.power,
                    v.name.as_str(),
                )
            })
            .collect();
        validators.sort_by_key(|v| v.0);
        let mut accounts: Vec<_> = self
            .accounts
            .iter()
            .map(|a| (a.address, a.balance))
            .collect();
        accounts.sort_by_key(|a| a.0);
        let canonical = Canonical {
            chain_id: self.chain_id,
            chain_name: &self.chain_name,
            genesis_time_ms: self.genesis_time_ms(),
            consensus: &self.consensus,
            validators,
            accounts,
            governance_admin: self.governance_admin,
        };
        let body = borsh::to_vec(&canonical).expect("borsh encoding into a Vec cannot fail");
        keccak256_concat(&[GENESIS_DOMAIN, &body])
    }

    /// What the store needs to initialise or check itself.
    pub fn state(&self) -> GenesisState {
        GenesisState {
            hash: self.hash(),
            accounts: self
                .accounts
                .iter()
                .map(|a| (a.address, a.balance))
                .collect(),
            validators: self.members(),
        }
    }

    /// The genesis validators as the chain records them: by address.
    pub fn members(&self) -> Vec<Member> {
        let mut members: Vec<Member> = self
            .validators
            .iter()
            .map(|v| Member::of_key(&v.name, &v.public_key, v.power))
            .collect();
        members.sort_by_key(|m| m.address);
        members
    }

    /// The execution rules of this chain.
    pub fn exec_params(&self) -> ExecParams {
        ExecParams {
            chain_id: self.chain_id,
            min_fee: self.consensus.min_fee,
            max_block_txs: self.consensus.max_block_txs as usize,
            max_block_bytes: self.consensus.max_block_bytes as usize,
            governance: GovernanceParams::for_genesis(self.validators.len(), self.governance_admin),
        }
    }

    /// Total supply: the sum of all genesis balances (validated not to overflow).
    pub fn total_supply(&self) -> u128 {
        self.accounts.iter().map(|a| a.balance).sum()
    }
}

/// The well-known dev account keys. Their private keys are public knowledge:
/// use them only on dev chains and local testnets.
pub fn dev_keys() -> Vec<SecretKey> {
    (0..DEV_ACCOUNTS)
        .map(|i| SecretKey::from_seed(&format!("tally-dev-account-{i}")))
        .collect()
}

fn validator_entry(name: String, key: &SecretKey, power: u64) -> GenesisValidator {
    GenesisValidator {
        name,
        address: key.address(),
        public_key: key.public_key(),
        power,
    }
}

fn dev_accounts() -> Vec<GenesisAccount> {
    dev_keys()
        .iter()
        .map(|k| GenesisAccount {
            address: k.address(),
            balance: DEV_BALANCE,
        })
        .collect()
}

/// A one-validator dev genesis whose validator key is `validator`, with the
/// well-known dev accounts funded.
pub fn dev_genesis(chain_id: u64, validator: &SecretKey) -> Genesis {
    Genesis {
        chain_id,
        chain_name: "tally-dev".into(),
        genesis_time: now_rfc3339(),
        consensus: ConsensusParams::default(),
        validators: vec![validator_entry("dev-validator".into(), validator, 10)],
        accounts: dev_accounts(),
        // A dev chain's one validator may grow its set alone.
        governance_admin: Some(validator.address()),
    }
}

/// File names inside a node home, shared with the node crate.
pub mod layout {
    pub const CONFIG_DIR: &str = "config";
    pub const GENESIS_FILE: &str = "config/genesis.json";
    pub const VALIDATOR_KEY_FILE: &str = "config/validator_key.json";
}

/// A generated testnet: the genesis, and for each validator its home and key.
#[derive(Debug)]
pub struct Testnet {
    pub genesis: Genesis,
    pub homes: Vec<PathBuf>,
    pub validator_keys: Vec<SecretKey>,
}

/// Generates an `n`-validator testnet under `out`: fresh validator keys, one
/// genesis (with the dev accounts funded), and a home per validator
/// (`out/node0`, `out/node1`, ...) holding the genesis and its key file.
/// Refuses to overwrite existing key files.
pub fn generate_testnet(
    n: usize,
    chain_id: u64,
    consensus: ConsensusParams,
    out: &Path,
) -> Result<Testnet, GenesisError> {
    if n == 0 {
        return Err(GenesisError::NoValidators);
    }
    let validator_keys = (0..n)
        .map(|_| SecretKey::generate())
        .collect::<Result<Vec<_>, _>>()?;
    let genesis = Genesis {
        chain_id,
        chain_name: format!("tally-testnet-{n}"),
        genesis_time: now_rfc3339(),
        consensus,
        validators: validator_keys
            .iter()
            .enumerate()
            .map(|(i, k)| validator_entry(format!("node{i}"), k, 10))
            .collect(),
        accounts: dev_accounts(),
        governance_admin: None,
    };
    genesis.validate()?;
    // Check before writing anything, so that a refusal leaves no half-new home.
    for i in 0..n {
        let existing = out.join(format!("node{i}")).join(layout::GENESIS_FILE);
        if existing.exists() {
            return Err(GenesisError::Write {
                path: existing.display().to_string(),
                error: "already exists; choose another --out or remove it".into(),
            });
        }
    }
    let mut homes = Vec::with_capacity(n);
    for (i, key) in validator_keys.iter().enumerate() {
        let home = out.join(format!("node{i}"));
        genesis.save(&home.join(layout::GENESIS_FILE))?;
        key.save(&home.join(layout::VALIDATOR_KEY_FILE))?;
        homes.push(home);
    }
    Ok(Testnet {
        genesis,
        homes,
        validator_keys,
    })
}
