//! `config.toml`: the node's settings, and the home directory layout.
//!
//! Every field has a default, so a config file only needs what differs; the
//! file `tally init` writes lists every option with its documentation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tally_genesis::layout;

/// Paths inside a node home.
#[derive(Clone, Debug)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config/config.toml")
    }
    pub fn genesis_file(&self) -> PathBuf {
        self.root.join(layout::GENESIS_FILE)
    }
    pub fn node_key_file(&self) -> PathBuf {
        self.root.join("config/node_key")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir().join("store")
    }
    pub fn mempool_journal_file(&self) -> PathBuf {
        self.data_dir().join("mempool.journal")
    }
    pub fn signing_state_file(&self) -> PathBuf {
        self.data_dir().join("signing_state.bin")
    }
    /// The bodies of the blocks the signing state refers to.
    pub fn signed_blocks_file(&self) -> PathBuf {
        self.data_dir().join("signed_blocks.bin")
    }
    /// A path from the config, relative to the home unless absolute.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub p2p: P2pConfig,
    pub rpc: RpcConfig,
    pub mempool: MempoolSection,
    pub sync: SyncConfig,
    pub storage: StorageConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// A name for logs.
    pub moniker: String,
    /// Validator key file (relative to the home). Empty: run as a full node.
    pub validator_key: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pConfig {
    pub listen: Vec<String>,
    pub external: Vec<String>,
    pub bootstrap: Vec<String>,
    /// Inbound peer connections (bootstrap peers are not counted).
    #[serde(alias = "max_connections")]
    pub max_inbound: u32,
    /// Outbound peer connections (bootstrap peers are not counted).
    pub max_outbound: u32,
    /// Inbound peer connections from one IP address.
    pub max_inbound_per_ip: u32,
    /// Banned identities after which a host is refused (0: off).
    pub banned_identities_per_host: usize,
    /// Peer ids, besides the bootstrap peers', trusted with relaying, hole
    /// punching and AutoNAT.
    pub trusted_peers: Vec<String>,
    /// Relay traffic (circuit relay v2) for trusted peers behind NAT.
    pub relay_server: bool,
    /// Behind a NAT that lets nothing in: be reachable through relays.
    pub use_relays: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub max_request_body_bytes: u32,
    pub max_response_body_bytes: u32,
    pub max_batch_len: u32,
    pub max_connections: u32,
    pub max_subscriptions_per_connection: u32,
    pub max_subscriptions: u32,
    pub cors_allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub ws_ping_interval_ms: u64,
    pub ws_idle_timeout_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolSection {
    pub max_txs: usize,
    pub max_bytes: usize,
    pub max_nonce_gap: u64,
    pub ttl_ms: u64,
    pub max_queued: usize,
    pub max_queued_per_sender: usize,
    pub price_bump_percent: u64,
    pub gossip_batch_max: usize,
    pub gossip_batch_interval_ms: u64,
    pub journal: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    pub interval_ms: u64,
    pub batch_blocks: u64,
    /// A node with an empty store installs a recent snapshot from peers
    /// before it block-syncs.
    pub state_sync: bool,
    /// How long (ms) an empty node waits for snapshot offers before it
    /// block-syncs from genesis instead.
    pub state_sync_discovery_ms: u64,
    /// Heights that are multiples of this are offered as snapshots.
    pub snapshot_interval: u64,
    /// How many of the latest snapshot heights are offered.
    pub snapshot_keep: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Keep the blocks and states of only the latest this many heights (and
    /// the snapshots offered); 0 keeps everything (an archive node).
    pub retain_blocks: u64,
}

/// The Prometheus endpoint (`GET /metrics`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 26660)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            moniker: "tally".into(),
            validator_key: layout::VALIDATOR_KEY_FILE.into(),
        }
    }
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: vec!["/ip4/0.0.0.0/tcp/26656".into()],
            external: Vec::new(),
            bootstrap: Vec::new(),
            max_inbound: 48,
            max_outbound: 16,
            max_inbound_per_ip: 8,
            banned_identities_per_host: 3,
            trusted_peers: Vec::new(),
            relay_server: false,
            use_relays: false,
        }
    }
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8545)),
            max_request_body_bytes: 8 * 1024 * 1024,
            max_response_body_bytes: 16 * 1024 * 1024,
            max_batch_len: 1000,
            max_connections: 256,
            max_subscriptions_per_connection: 1024,
            max_subscriptions: 16_384,
            cors_allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 10_000,
            ws_ping_interval_ms: 30_000,
            ws_idle_timeout_ms: 60_000,
        }
    }
}

impl Default for MempoolSection {
    fn default() -> Self {
        let m = tally_ledger::MempoolConfig::default();
        MempoolSection {
            max_txs: m.max_txs,
            max_bytes: m.max_bytes,
            max_nonce_gap: m.max_nonce_gap,
            ttl_ms: m.ttl_ms,
            max_queued: m.max_queued,
            max_queued_per_sender: m.max_queued_per_sender,
            price_bump_percent: m.price_bump_percent,
            gossip_batch_max: 1000,
            gossip_batch_interval_ms: 20,
            journal: true,
        }
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            interval_ms: 1000,
            batch_blocks: 32,
            state_sync: false,
            state_sync_discovery_ms: 10_000,
            snapshot_interval: 1000,
            snapshot_keep: 2,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Plain,
            filter: "info".into(),
        }
    }
}

impl MempoolSection {
    pub fn ledger_config(&self) -> tally_ledger::MempoolConfig {
        tally_ledger::MempoolConfig {
            max_txs: self.max_txs,
            max_bytes: self.max_bytes,
            max_nonce_gap: self.max_nonce_gap,
            ttl_ms: self.ttl_ms,
            max_queued: self.max_queued,
            max_queued_per_sender: self.max_queued_per_sender,
            price_bump_percent: self.price_bump_percent,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    /// Parses a config from its TOML text (unknown options are errors).
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        Ok(toml::from_str(text)?)
    }

    /// Writes the config with every option documented. Refuses to overwrite.
    pub fn save_new(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        std::io::Write::write_all(&mut file, self.documented().as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The config as TOML with a comment above every option.
    pub fn documented(&self) -> String {
        let list = |items: &[String]| toml_value(&items.to_vec());
        let n = &self.node;
        let p = &self.p2p;
        let r = &self.rpc;
        let m = &self.mempool;
        let s = &self.sync;
        let x = &self.metrics;
        let l = &self.log;
        let format = match l.format {
            LogFormat::Plain => "plain",
            LogFormat::Json => "json",
        };
        format!(
            r#"# Tally node configuration. Paths are relative to the node home.
# Every option is optional: a missing one takes the default shown by `tally init`.

[node]
# A name for this node in logs.
moniker = {moniker}
# The validator key file (secp256k1, mode 0600). Empty: run as a full node
# that follows the chain without voting.
validator_key = {validator_key}

[p2p]
# Multiaddrs to listen on for peers (TCP). Port 0 picks a free port.
listen = {listen}
# Addresses other nodes should dial to reach this one (behind NAT).
external = {external}
# Peers dialled at start and redialled when they drop:
# "/ip4/<ip>/tcp/<port>/p2p/<peer id>" (`tally keys peer-id --home <home>` prints a node's id).
bootstrap = {bootstrap}
# Most inbound and outbound peer connections, and inbound ones from one IP
# address. Bootstrap peers are reserved: never counted, never refused, so a
# validator always reaches the validators it lists even when strangers hold
# every other slot.
max_inbound = {max_inbound}
max_outbound = {max_outbound}
max_inbound_per_ip = {max_inbound_per_ip}
# Identities are free, hosts are not: once this many peer identities seen at
# one IP address (IPv6: its /64) are banned, new inbound peers from there are
# refused until those bans expire (bootstrap peers still get in). 0: off.
banned_identities_per_host = {banned_identities_per_host}
# Peer ids (besides the bootstrap peers') this node relays for, punches
# holes with and runs AutoNAT with: list the other validators. Strangers get
# none of these services (they cost bandwidth, slots and dials).
trusted_peers = {trusted_peers}
# Serve circuit relay v2 (and AutoNAT) to trusted peers behind NAT. It
# forwards their traffic: at most 64 reservations (2 per peer) and 128
# circuits (16 per source peer) of at most 4 GiB and a day each.
relay_server = {relay_server}
# This node is behind a NAT that lets no connection in: reserve a slot on
# up to two trusted relays among its peers so that others reach it, and
# punch holes (DCUtR) to turn relayed connections into direct ones where
# the NAT allows.
use_relays = {use_relays}

[rpc]
# Serve JSON-RPC (HTTP and WebSocket on the same port).
enabled = {rpc_enabled}
# Listen address. Keep it on localhost unless a proxy guards it.
listen = "{rpc_listen}"
# Largest request and response bodies, in bytes.
max_request_body_bytes = {max_request_body_bytes}
max_response_body_bytes = {max_response_body_bytes}
# Most calls in one JSON-RPC batch.
max_batch_len = {max_batch_len}
# Most simultaneous HTTP/WebSocket connections.
max_connections = {rpc_max_connections}
# Most subscriptions one WebSocket connection may hold (error -32006
# beyond), and all connections together (error 1011 beyond).
max_subscriptions_per_connection = {max_subscriptions_per_connection}
max_subscriptions = {max_subscriptions}
# Origins browsers may call from (CORS), e.g. ["http://localhost:3000"];
# ["*"] allows any; empty sends no CORS headers.
cors_allowed_origins = {cors}
# Host headers served, e.g. ["localhost:*", "rpc.example.org"] (a port of
# "*" matches any); others get HTTP 403. Empty serves any Host. Set it when
# the port is reachable from a browser, against DNS rebinding.
allowed_hosts = {allowed_hosts}
# A connection must send a request's headers within this many ms (also
# between requests on a kept-alive connection), and each part of its body
# within body_read_timeout_ms of the last, or it is closed.
header_read_timeout_ms = {header_read_timeout_ms}
body_read_timeout_ms = {body_read_timeout_ms}
# WebSocket connections are pinged this often (ms); one that sends nothing,
# not even a pong, for ws_idle_timeout_ms is closed. 0 turns pings off.
ws_ping_interval_ms = {ws_ping_interval_ms}
ws_idle_timeout_ms = {ws_idle_timeout_ms}

[mempool]
# Most transactions and bytes held; beyond them submissions are refused.
max_txs = {max_txs}
max_bytes = {max_bytes}
# How far above an account's nonce a transaction may wait.
max_nonce_gap = {max_nonce_gap}
# Transactions pending longer than this (ms) are dropped.
ttl_ms = {ttl_ms}
# Transactions behind a nonce gap (an earlier nonce of the sender is
# missing) cannot execute yet: at most this many are held in all, and per
# sender. They are evicted first when the pool is full.
max_queued = {max_queued}
max_queued_per_sender = {max_queued_per_sender}
# A transaction with the sender and nonce of a pending one replaces it when
# its fee is at least this many percent higher.
price_bump_percent = {price_bump_percent}
# Transactions submitted here are gossiped in batches of at most this many,
# at least every gossip_batch_interval_ms.
gossip_batch_max = {gossip_batch_max}
gossip_batch_interval_ms = {gossip_batch_interval_ms}
# Keep the transactions this node's clients submitted in data/mempool.journal,
# so that a crash or restart loses none: they are admitted and gossiped again
# at start, and any that can no longer apply are reported dropped.
journal = {journal}

[sync]
# How often (ms) to ask peers for their height and fetch blocks when behind.
interval_ms = {sync_interval}
# Most blocks fetched in one request.
batch_blocks = {batch_blocks}
# A node whose store is empty installs the state of a recent snapshot from
# its peers (checked chunk by chunk against a header certified by the
# genesis validators), then block-syncs from there: it holds no blocks
# below the snapshot. Off: it replays every block from genesis.
state_sync = {state_sync}
# How long (ms) an empty node waits for a snapshot offer before it replays
# from genesis instead (a young chain has none).
state_sync_discovery_ms = {state_sync_discovery_ms}
# This node offers the state at the latest snapshot_keep heights that are
# multiples of snapshot_interval (they cost nothing to keep: every height's
# state tree is in the store).
snapshot_interval = {snapshot_interval}
snapshot_keep = {snapshot_keep}

[storage]
# Keep the blocks, receipts and states of only the latest retain_blocks
# heights; older ones are deleted in the background. The snapshots this node
# offers are always kept. 0: keep everything (an archive node). Turn it on
# from the start: what went stale while it was off is never deleted.
retain_blocks = {retain_blocks}

[metrics]
# Serve Prometheus metrics at http://<listen>/metrics (OpenMetrics text).
# Off unless asked; `tally dev` and `tally localnet` turn it on.
enabled = {metrics_enabled}
# Listen address. The metrics tell anyone who reads them about this node's
# peers and load: keep it on localhost or a private network.
listen = "{metrics_listen}"

[log]
# "plain" or "json" (one JSON object per line).
format = "{format}"
# tracing filter, e.g. "info" or "info,tally_node=debug". RUST_LOG overrides it.
filter = {filter}
"#,
            moniker = toml_value(&n.moniker),
            validator_key = toml_value(&n.validator_key),
            listen = list(&p.listen),
            external = list(&p.external),
            bootstrap = list(&p.bootstrap),
            max_inbound = p.max_inbound,
            max_outbound = p.max_outbound,
            max_inbound_per_ip = p.max_inbound_per_ip,
            banned_identities_per_host = p.banned_identities_per_host,
            trusted_peers = list(&p.trusted_peers),
            relay_server = p.relay_server,
            use_relays = p.use_relays,
            rpc_enabled = r.enabled,
            rpc_listen = r.listen,
            max_request_body_bytes = r.max_request_body_bytes,
            max_response_body_bytes = r.max_response_body_bytes,
            max_batch_len = r.max_batch_len,
            rpc_max_connections = r.max_connections,
            max_subscriptions_per_connection = r.max_subscriptions_per_connection,
            max_subscriptions = r.max_subscriptions,
            cors = list(&r.cors_allowed_origins),
            allowed_hosts = list(&r.allowed_hosts),
            header_read_timeout_ms = r.header_read_timeout_ms,
            body_read_timeout_ms = r.body_read_timeout_ms,
            ws_ping_interval_ms = r.ws_ping_interval_ms,
            ws_idle_timeout_ms = r.ws_idle_timeout_ms,
            max_txs = m.max_txs,
            max_bytes = m.max_bytes,
            max_nonce_gap = m.max_nonce_gap,
            ttl_ms = m.ttl_ms,
            max_queued = m.max_queued,
            max_queued_per_sender = m.max_queued_per_sender,
            price_bump_percent = m.price_bump_percent,
            gossip_batch_max = m.gossip_batch_max,
            gossip_batch_interval_ms = m.gossip_batch_interval_ms,
            journal = m.journal,
            sync_interval = s.interval_ms,
            batch_blocks = s.batch_blocks,
            state_sync = s.state_sync,
            state_sync_discovery_ms = s.state_sync_discovery_ms,
            snapshot_interval = s.snapshot_interval,
            snapshot_keep = s.snapshot_keep,
            retain_blocks = self.storage.retain_blocks,
            metrics_enabled = x.enabled,
            metrics_listen = x.listen,
            filter = toml_value(&l.filter),
        )
    }
}

fn toml_value<T: Serialize>(value: &T) -> String {
    toml::Value::try_from(value)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "\"\"".into())
}
