//! `tally`: the Tally node binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};
use tally_genesis::{Genesis, dev_keys};
use tally_ledger::{Address, Hash, SecretKey, Transaction};
use tally_node::cli::ParamArgs;
use tally_node::cli::homes::{self, Ports};
use tally_node::cli::localnet;
use tally_node::cli::netns::NetnsCommand;
use tally_node::config::{Config, Home, LogFormat};
use tally_node::node::{Node, shutdown_signal};
use tally_rpc::TallyApiClient;

#[derive(Debug, Parser)]
#[command(name = "tally", version, about = "Tally: a BFT ledger validator node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node home: config.toml, node key, validator key and genesis.
    Init {
        #[arg(long)]
        home: PathBuf,
        /// Numeric chain id of the new chain (ignored with --genesis).
        #[arg(long, default_value_t = 1337)]
        chain_id: u64,
        /// Join an existing chain: copy its genesis.json.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// No validator key: follow the chain without voting.
        #[arg(long)]
        full_node: bool,
        #[arg(long, default_value = "tally")]
        moniker: String,
    },
    /// Run the node in a home.
    Start {
        #[arg(long)]
        home: PathBuf,
        /// Override rpc.listen (e.g. 127.0.0.1:0 for a free port).
        #[arg(long)]
        rpc_listen: Option<SocketAddr>,
        /// Override p2p.listen.
        #[arg(long)]
        p2p_listen: Option<String>,
        /// The signing state (data/signing_state.bin) is lost: start this
        /// validator anyway, signing nothing below the store's tip plus 100
        /// heights. Only when the file is really gone: see docs/OPERATIONS.md.
        #[arg(long)]
        signing_state_lost: bool,
    },
    /// A one-validator chain in a temporary directory with funded dev accounts.
    Dev {
        /// Keep the chain here instead of a temporary directory (reused if it exists).
        #[arg(long)]
        home: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8545")]
        rpc_listen: SocketAddr,
        /// Where Prometheus metrics are served (`/metrics`).
        #[arg(long, default_value = "127.0.0.1:26660")]
        metrics_listen: SocketAddr,
        /// Serve no metrics (and record none of libp2p's).
        #[arg(long)]
        no_metrics: bool,
        #[arg(long, default_value_t = 1337)]
        chain_id: u64,
        #[command(flatten)]
        params: ParamArgs,
    },
    /// Create and inspect secp256k1 key files.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Generate homes for an N-validator testnet with one genesis and peers wired.
    Testnet {
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Directory to create the homes in (node0, node1, ...).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1337)]
        chain_id: u64,
        /// IP address the nodes listen on and dial each other at (p2p).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// IP address the nodes' JSON-RPC listens on. Loopback unless you
        /// mean to expose it (then put it behind a proxy with limits; see
        /// docs/SECURITY.md).
        #[arg(long, default_value = "127.0.0.1")]
        rpc_host: String,
        /// P2P port of node0 (node i listens on base + i).
        #[arg(long, default_value_t = 26656)]
        p2p_port: u16,
        /// JSON-RPC port of node0 (node i listens on base + i).
        #[arg(long, default_value_t = 8545)]
        rpc_port: u16,
        /// Metrics port of node0 (node i listens on base + i, on --rpc-host).
        #[arg(long, default_value_t = 26660)]
        metrics_port: u16,
        /// Pick free ports instead of the sequential ones.
        #[arg(long)]
        free_ports: bool,
        #[command(flatten)]
        params: ParamArgs,
    },
    /// Generate an N-validator testnet and run it here as child processes.
    Localnet {
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Directory for the homes (default: a temporary one, removed on exit).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 1337)]
        chain_id: u64,
        /// JSON-RPC port of node0 (node i gets base + i); default: free ports.
        #[arg(long)]
        rpc_port: Option<u16>,
        #[command(flatten)]
        params: ParamArgs,
    },
    /// Sign and submit transactions.
    #[command(subcommand)]
    Tx(TxCommand),
    /// Read the chain over JSON-RPC.
    #[command(subcommand)]
    Query(QueryCommand),
    /// Load generator: submits pre-signed transfers and measures the chain.
    Bench(BenchCli),
    /// A testnet whose nodes each run on their own emulated host (a network
    /// namespace), and the network faults to put on it. Linux, as root.
    #[command(subcommand)]
    Netns(NetnsCommand),
    /// Delete a home's chain data (the store) so the node syncs again.
    Reset {
        #[arg(long)]
        home: PathBuf,
        /// Required: confirms that the chain data is to be deleted.
        #[arg(long)]
        yes_delete_chain_data: bool,
        /// Also delete the validator's signing state. Only safe if this
        /// validator never signed at the chain's current heights.
        #[arg(long)]
        signing_state: bool,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BenchCli {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    load: BenchArgs,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Block sync: build a chain on a localnet (or reuse one in --dir),
    /// then time a fresh full node catching up with it.
    Sync {
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Transfers to build the chain with.
        #[arg(long, default_value_t = 1_000_000)]
        txs: usize,
        /// Sender accounts of the load that builds the chain.
        #[arg(long, default_value_t = 10_000)]
        senders: usize,
        /// Rate of that load (transfers/s); 0: as fast as accepted. Several
        /// validators on one machine build a long chain faster at about
        /// what they sustain than under a burst.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Keep the chain here (reused by later runs) instead of a
        /// temporary directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Give up if the full node is not at the tip after this many seconds.
        #[arg(long, default_value_t = 1800)]
        timeout_s: u64,
        /// The full node installs a recent snapshot by state sync instead
        /// of replaying every block (the validators offer one every 20
        /// heights).
        #[arg(long)]
        state_sync: bool,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// JSON-RPC endpoints to submit to (repeat for several nodes).
    #[arg(long = "rpc", default_value = "http://127.0.0.1:8545")]
    endpoints: Vec<String>,
    /// Sender accounts (funded from the dev accounts on first use).
    #[arg(long, default_value_t = 1000)]
    senders: usize,
    /// Transfers to submit (a burst; default 50000); with --duration, the
    /// most to sign (by default what the bound allows in the time).
    #[arg(long)]
    txs: Option<usize>,
    /// Submit for this long instead (sustained load), e.g. "60s".
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Target rate of new transfers/s; 0 submits as fast as the windows allow.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Most unconfirmed transfers per sender (closed loop); default 8 with
    /// --duration, 64 (the mempool's nonce reach) for a burst.
    #[arg(long)]
    window: Option<usize>,
    /// With --duration: measure what the chain commits closed-loop first,
    /// then offer this many times it (e.g. 2).
    #[arg(long)]
    overload: Option<f64>,
    /// Concurrent HTTP connections submitting.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Transfers per tally_sendRawTransactions call.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Nodes running on this machine (the bound is the recovery rate / this).
    #[arg(long, default_value_t = 1)]
    nodes_on_machine: usize,
    /// Skip measuring this machine's signature-recovery rate.
    #[arg(long)]
    no_calibrate: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Give up waiting for commits this many seconds after the last submission.
    #[arg(long, default_value_t = 60)]
    drain_timeout_s: u64,
    /// Instead of load: the mempool-lockout attack with this many accounts
    /// (64 transfers each behind a nonce gap), then time a normal transfer.
    #[arg(long)]
    lockout: Option<usize>,
    /// Sign Ethereum-format (EIP-1559) transfers, as wallets do, instead of
    /// native ones; they are submitted in the same batches.
    #[arg(long)]
    eth: bool,
}

impl BenchArgs {
    fn config(&self) -> tally_node::cli::bench::BenchConfig {
        tally_node::cli::bench::BenchConfig {
            endpoints: self.endpoints.clone(),
            senders: self.senders,
            txs: self.txs,
            duration: self.duration,
            rate: self.rate,
            window: self
                .window
                .unwrap_or(if self.duration.is_some() { 8 } else { 64 }),
            overload: self.overload,
            connections: self.connections,
            batch: self.batch,
            nodes_on_machine: self.nodes_on_machine,
            calibrate: !self.no_calibrate,
            drain_timeout: std::time::Duration::from_secs(self.drain_timeout_s),
            eth: self.eth,
        }
    }
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
    /// Write a key file for an existing secret key (64 hex digits).
    Import {
        /// The secret key, e.g. one printed by `tally dev`.
        #[arg(long)]
        secret: String,
        /// Where to write the key file; refuses to overwrite an existing file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the p2p peer id of a home's node key.
    PeerId {
        #[arg(long)]
        home: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RpcArg {
    /// The node's JSON-RPC URL.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    rpc: String,
}

impl RpcArg {
    fn client(&self) -> anyhow::Result<HttpClient> {
        HttpClientBuilder::default()
            .build(&self.rpc)
            .with_context(|| format!("bad RPC URL {}", self.rpc))
    }
}

#[derive(Debug, Subcommand)]
enum TxCommand {
    /// Transfer an amount to an address.
    Transfer {
        /// The sender's key file.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        to: Address,
        #[arg(long)]
        amount: u128,
        #[arg(long, default_value_t = 1)]
        fee: u128,
        /// Default: the account's next nonce.
        #[arg(long)]
        nonce: Option<u64>,
        #[arg(long, default_value = "")]
        memo: String,
        /// Wait until the transfer is committed.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        rpc: RpcArg,
    },
    /// Propose or approve a change of the validator set (validators only).
    Validator {
        #[command(subcommand)]
        command: tally_node::cli::validator::ValidatorCommand,
        /// The validator's key file.
        #[arg(long, global = true)]
        key: Option<PathBuf>,
        #[arg(long, global = true, default_value_t = 1)]
        fee: u128,
        /// Default: the account's next nonce.
        #[arg(long, global = true)]
        nonce: Option<u64>,
        /// Wait until the transaction is committed.
        #[arg(long, global = true)]
        wait: bool,
        /// The node's JSON-RPC URL.
        #[arg(long, global = true, default_value = "http://127.0.0.1:8545")]
        rpc: String,
    },
}

#[derive(Debug, Subcommand)]
enum QueryCommand {
    /// An account's balance and nonce. With --prove, checked against a
    /// header certified by the genesis validators instead of trusted.
    Account {
        address: String,
        /// Ask for a Merkle proof and check it, and the header's
        /// certificate, against the chain's genesis.
        #[arg(long)]
        prove: bool,
        /// The chain's genesis.json (for --prove): the validator set the
        /// certificate must come from.
        #[arg(long, required_if_eq("prove", "true"))]
        genesis: Option<PathBuf>,
        /// The height to read at (for --prove; default: the latest).
        #[arg(long, requires = "prove")]
        height: Option<u64>,
        #[command(flatten)]
        rpc: RpcArg,
    },
    /// A block by height or hash (default: the latest).
    Block {
        id: Option<String>,
        #[command(flatten)]
        rpc: RpcArg,
    },
    Tx {
        hash: String,
        #[command(flatten)]
        rpc: RpcArg,
    },
    Status {
        #[command(flatten)]
        rpc: RpcArg,
    },
    /// The validator set of a height (default: the next to decide).
    Validators {
        #[arg(long)]
        height: Option<u64>,
        #[command(flatten)]
        rpc: RpcArg,
    },
    /// Validator-set proposals: pending with their approvals, and the latest
    /// enacted, expired or failed.
    Proposals {
        #[command(flatten)]
        rpc: RpcArg,
    },
    /// One transaction's path across nodes: where each first saw it, who
    /// gossiped it, the proposals that carried it, where it was committed
    /// or dropped.
    Trace {
        hash: String,
        /// A node's JSON-RPC URL (repeat for every node to ask).
        #[arg(long = "rpc", required = true)]
        rpcs: Vec<String>,
    },
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init {
            home,
            chain_id,
            genesis,
            full_node,
            moniker,
        } => {
            let home = Home::new(home);
            let genesis = genesis
                .map(|path| {
                    Genesis::load(&path).with_context(|| format!("loading {}", path.display()))
                })
                .transpose()?;
            let mut config = Config::default();
            config.node.moniker = moniker;
            let (genesis, key) = homes::init(&home, chain_id, genesis, full_node, config)?;
            println!("initialised {}", home.root.display());
            println!(
                "  chain:     {} (id {})",
                genesis.chain_name, genesis.chain_id
            );
            println!("  genesis:   {}", genesis.hash());
            println!("  peer id:   {}", homes::node_peer_id(&home)?);
            if let Some(key) = key {
                println!("  validator: {}", key.address());
            }
            println!("  config:    {}", home.config_file().display());
        }
        Command::Start {
            home,
            rpc_listen,
            p2p_listen,
            signing_state_lost,
        } => {
            let home = Home::new(home);
            tally_node::node::check_home(&home)?;
            let mut config = Config::load(&home.config_file())?;
            init_logging(config.log.format, &config.log.filter);
            if let Some(addr) = rpc_listen {
                config.rpc.listen = addr;
            }
            if let Some(addr) = p2p_listen {
                config.p2p.listen = vec![addr];
            }
            let options = tally_node::node::StartOptions { signing_state_lost };
            let node = Node::start_with(&home, &config, options).await?;
            node.run_until(shutdown_signal()).await?;
        }
        Command::Dev {
            home,
            rpc_listen,
            metrics_listen,
            no_metrics,
            chain_id,
            params,
        } => {
            init_logging(LogFormat::Plain, "info");
            let temp;
            let home = match home {
                Some(home) => Home::new(home),
                None => {
                    temp = tempfile::Builder::new().prefix("tally-dev-").tempdir()?;
                    Home::new(temp.path())
                }
            };
            if !home.config_file().exists() {
                let key = SecretKey::generate()?;
                let mut genesis = tally_genesis::dev_genesis(chain_id, &key);
                genesis.consensus = params.params();
                let mut config = Config::default();
                config.node.moniker = "dev".into();
                config.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
                key.save(&home.resolve(config.node.validator_key.as_ref()))?;
                genesis.save(&home.genesis_file())?;
                config.save_new(&home.config_file())?;
            }
            let mut config = Config::load(&home.config_file())?;
            config.rpc.listen = rpc_listen;
            // Browser wallets and dapps on any local page may call a dev
            // chain (it listens on loopback unless told otherwise).
            if config.rpc.cors_allowed_origins.is_empty() {
                config.rpc.cors_allowed_origins = vec!["*".into()];
            }
            config.metrics.enabled = !no_metrics;
            config.metrics.listen = metrics_listen;
            let node = Node::start(&home, &config).await?;
            let rpc = node.rpc_addr.context("RPC is disabled")?;
            println!();
            println!("Tally dev chain running (home {})", home.root.display());
            println!("JSON-RPC: http://{rpc}  (WebSocket ws://{rpc})");
            let chain_id = Genesis::load(&home.genesis_file())?.chain_id;
            println!(
                "Ethereum wallets: RPC URL http://{rpc}, chain id {chain_id} ({chain_id:#x}), \
                 currency TALLY (18 decimals); the dev keys below import as they are"
            );
            if let Some(metrics) = node.metrics_addr {
                println!("Metrics:  http://{metrics}/metrics");
                println!("Dashboard: http://{metrics}/dashboard  (open it in a browser)");
            }
            println!(
                "Dev accounts (each funded in genesis; keys are public, never use them elsewhere):"
            );
            for key in dev_keys() {
                println!("  {}  key 0x{}", key.address(), hex::encode(key.to_bytes()));
            }
            println!(
                "Try: curl -s -X POST -H 'content-type: application/json' \
                 -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tally_status\",\"params\":[]}}' http://{rpc}"
            );
            println!();
            node.run_until(shutdown_signal()).await?;
        }
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
        Command::Keys(KeysCommand::Import { secret, out }) => {
            let bytes = hex::decode(secret.trim().trim_start_matches("0x"))
                .context("the secret key must be hex")?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("the secret key must be 32 bytes"))?;
            let key = SecretKey::from_bytes(&bytes)?;
            key.save(&out)?;
            println!("address:    {}", key.address());
            println!("key file:   {}", out.display());
        }
        Command::Keys(KeysCommand::PeerId { home }) => {
            println!("{}", homes::node_peer_id(&Home::new(home))?);
        }
        Command::Testnet {
            validators,
            out,
            chain_id,
            host,
            rpc_host,
            p2p_port,
            rpc_port,
            metrics_port,
            free_ports,
            params,
        } => {
            let ports = if free_ports {
                Ports::free(&host, &rpc_host, validators)?
            } else {
                Ports::sequential(
                    &host,
                    &rpc_host,
                    validators,
                    p2p_port,
                    rpc_port,
                    metrics_port,
                )
            };
            let (genesis, nodes) =
                homes::testnet(validators, chain_id, params.params(), &out, &ports)?;
            print_testnet(&genesis, &nodes);
        }
        Command::Localnet {
            validators,
            dir,
            chain_id,
            rpc_port,
            params,
        } => {
            init_logging(LogFormat::Plain, "info");
            let temp;
            let dir = match dir {
                Some(dir) => dir,
                None => {
                    temp = tempfile::Builder::new()
                        .prefix("tally-localnet-")
                        .tempdir()?;
                    temp.path().to_path_buf()
                }
            };
            let host = "127.0.0.1";
            let ports = match rpc_port {
                Some(base) => {
                    let mut p2p = homes::free_ports(host, 2 * validators)?;
                    let metrics = p2p.split_off(validators);
                    Ports {
                        host: host.into(),
                        rpc_host: host.into(),
                        p2p,
                        rpc: (0..validators as u16).map(|i| base + i).collect(),
                        metrics,
                    }
                }
                None => Ports::free(host, host, validators)?,
            };
            let (genesis, nodes) =
                homes::testnet(validators, chain_id, params.params(), &dir, &ports)?;
            print_testnet(&genesis, &nodes);
            println!(
                "Dashboard of the whole network: {}",
                homes::dashboard_url(&nodes)
            );
            let exe = std::env::current_exe().context("locating the tally binary")?;
            let homes: Vec<PathBuf> = nodes.iter().map(|n| n.home.clone()).collect();
            let children = localnet::spawn_nodes(&exe, &homes)?;
            localnet::supervise(children, shutdown_signal()).await?;
        }
        Command::Tx(TxCommand::Transfer {
            key,
            to,
            amount,
            fee,
            nonce,
            memo,
            wait,
            rpc,
        }) => {
            let key = SecretKey::load(&key)?;
            let client = rpc.client()?;
            let status = client
                .status()
                .await
                .context("asking the node for its status")?;
            let nonce = match nonce {
                Some(nonce) => nonce,
                None => {
                    client
                        .get_account(key.address().to_string())
                        .await
                        .context("reading the sender's nonce")?
                        .nonce
                }
            };
            let tx = Transaction {
                chain_id: status.chain_id,
                nonce,
                to,
                amount,
                fee,
                memo: memo.into_bytes(),
            }
            .sign(&key);
            let raw = hex::encode(tx.encode());
            if wait {
                print_json(&client.send_transaction_and_wait(raw, None).await?)?;
            } else {
                println!("{}", client.send_raw_transaction(raw).await?);
            }
        }
        Command::Tx(TxCommand::Validator {
            command,
            key,
            fee,
            nonce,
            wait,
            rpc,
        }) => {
            let path = key.context("--key FILE: the validator's key signs the transaction")?;
            let key = SecretKey::load(&path)?;
            let client = RpcArg { rpc }.client()?;
            let tx =
                tally_node::cli::validator::transaction(&client, &key, command, fee, nonce).await?;
            let raw = hex::encode(tx.encode());
            if wait {
                print_json(&client.send_transaction_and_wait(raw, None).await?)?;
            } else {
                println!("{}", client.send_raw_transaction(raw).await?);
            }
        }
        Command::Query(query) => match query {
            QueryCommand::Account {
                address,
                prove: false,
                rpc,
                ..
            } => print_json(&rpc.client()?.get_account(address).await?)?,
            QueryCommand::Account {
                address,
                genesis,
                height,
                rpc,
                ..
            } => {
                let parsed: tally_ledger::Address = address
                    .parse()
                    .with_context(|| format!("bad address {address:?}"))?;
                let path = genesis.context("--prove needs --genesis FILE")?;
                let genesis = tally_genesis::Genesis::load(&path)
                    .with_context(|| format!("loading {}", path.display()))?;
                let info = rpc.client()?.get_account_proof(address, height).await?;
                let proven = tally_node::cli::prove::check(&genesis, &parsed, height, &info)
                    .context("the node's answer does not prove the account")?;
                print_json(&proven)?
            }
            QueryCommand::Block { id, rpc } => {
                let client = rpc.client()?;
                let block = match id.as_deref() {
                    None | Some("latest") => client.get_latest_block().await?,
                    Some(id) if id.starts_with("0x") => {
                        Hash::from_str(id).context("bad block hash")?;
                        client.get_block_by_hash(id.into()).await?
                    }
                    Some(id) => {
                        let height = id
                            .parse()
                            .context("expected a height, a 0x hash or latest")?;
                        client.get_block_by_height(height).await?
                    }
                };
                match block {
                    Some(block) => print_json(&block)?,
                    None => bail!("no such block"),
                }
            }
            QueryCommand::Tx { hash, rpc } => {
                print_json(&rpc.client()?.get_transaction(hash).await?)?
            }
            QueryCommand::Status { rpc } => print_json(&rpc.client()?.status().await?)?,
            QueryCommand::Validators { height, rpc } => {
                print_json(&rpc.client()?.validators(height).await?)?
            }
            QueryCommand::Proposals { rpc } => {
                print_json(&rpc.client()?.governance_proposals().await?)?
            }
            QueryCommand::Trace { hash, rpcs } => {
                print!("{}", tally_node::cli::trace::timeline(&hash, &rpcs).await?);
            }
        },
        Command::Bench(BenchCli {
            command:
                Some(BenchCommand::Sync {
                    validators,
                    txs,
                    senders,
                    rate,
                    dir,
                    timeout_s,
                    state_sync,
                    out,
                }),
            ..
        }) => {
            use tally_node::cli::bench::sync;
            let report = sync::run(
                sync::SyncBenchConfig {
                    exe: std::env::current_exe()?,
                    validators,
                    txs,
                    senders,
                    rate,
                    dir,
                    timeout: std::time::Duration::from_secs(timeout_s),
                    state_sync,
                },
                shutdown_signal(),
            )
            .await?;
            sync::print(&report);
            if let Some(out) = out {
                write_json(&out, &serde_json::to_string_pretty(&report)?)?;
            }
        }
        Command::Bench(BenchCli { load: args, .. }) => {
            use tally_node::cli::bench;
            let json = if let Some(accounts) = args.lockout {
                let client = bench::http(&args.endpoints[0])?;
                let report = bench::lockout::run(&client, accounts, args.batch).await?;
                bench::lockout::print(&report);
                serde_json::to_string_pretty(&report)?
            } else {
                let report = bench::run(args.config()).await?;
                bench::print(&report);
                serde_json::to_string_pretty(&report)?
            };
            if let Some(out) = args.out {
                write_json(&out, &json)?;
            }
        }
        Command::Netns(command) => command.run()?,
        Command::Reset {
            home,
            yes_delete_chain_data,
            signing_state,
        } => {
            let home = Home::new(home);
            if !yes_delete_chain_data {
                bail!(
                    "this deletes the chain data in {}; pass --yes-delete-chain-data to confirm",
                    home.store_dir().display()
                );
            }
            refuse_if_running(&home)?;
            remove_if_exists(&home.store_dir())?;
            println!("deleted {}", home.store_dir().display());
            if signing_state {
                for file in [home.signing_state_file(), home.signed_blocks_file()] {
                    remove_if_exists(&file)?;
                    println!("deleted {}", file.display());
                }
            }
        }
    }
    Ok(())
}

/// A running node holds RocksDB's lock on its store: opening the store
/// fails then, and deleting under the node would corrupt nothing but its
/// own view of the chain (and leave it running on deleted files).
fn refuse_if_running(home: &Home) -> anyhow::Result<()> {
    if !home.store_dir().exists() {
        return Ok(());
    }
    let genesis = Genesis::load(&home.genesis_file())?;
    match tally_ledger::Store::open(&home.store_dir(), &genesis.state()) {
        Err(e) if e.to_string().to_lowercase().contains("lock") => bail!(
            "the store in {} is in use: stop the node first ({e})",
            home.store_dir().display()
        ),
        // Any other failure (a corrupt store) is what reset is for.
        _ => Ok(()),
    }
}

fn remove_if_exists(path: &Path) -> anyhow::Result<()> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("deleting {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn print_testnet(genesis: &Genesis, nodes: &[homes::TestnetNode]) {
    println!(
        "chain {} (id {}), genesis {}",
        genesis.chain_name,
        genesis.chain_id,
        genesis.hash()
    );
    for node in nodes {
        println!(
            "  {}  validator {}  rpc {}  metrics {}",
            node.home.display(),
            node.validator,
            node.rpc,
            node.metrics
        );
    }
}

fn write_json(out: &std::path::Path, json: &str) -> anyhow::Result<()> {
    std::fs::write(out, format!("{json}\n"))
        .with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}
