//! Creating node homes: one for `tally init` and `tally dev`, N with one
//! genesis and their peers wired to each other for `tally testnet` and
//! `tally localnet`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::Context;
use tally_genesis::{ConsensusParams, Genesis, generate_testnet};
use tally_ledger::SecretKey;
use tally_p2p::PeerId;

use crate::config::{Config, Home};

/// The node key of a home (created if missing) as a peer id.
pub fn node_peer_id(home: &Home) -> anyhow::Result<PeerId> {
    let key = tally_p2p::load_or_create_key(&home.node_key_file())
        .with_context(|| format!("node key in {}", home.root.display()))?;
    Ok(key.public().to_peer_id())
}

/// Free TCP ports on `host`, found by binding them all at once (so they
/// differ) and releasing them.
pub fn free_ports(host: &str, n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((host, 0)))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("finding free ports on {host}"))?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Where the nodes of a testnet listen: p2p on `host`, JSON-RPC on
/// `rpc_host` (loopback unless asked: the RPC is for the operator, not for
/// the network the peers meet on).
#[derive(Clone, Debug)]
pub struct Ports {
    pub host: String,
    pub rpc_host: String,
    pub p2p: Vec<u16>,
    pub rpc: Vec<u16>,
    /// Prometheus metrics (on `rpc_host`, as private as the RPC).
    pub metrics: Vec<u16>,
}

impl Ports {
    /// `base`, `base + 1`, ... for p2p, `rpc_base`, ... for JSON-RPC and
    /// `metrics_base`, ... for metrics.
    pub fn sequential(
        host: &str,
        rpc_host: &str,
        n: usize,
        p2p_base: u16,
        rpc_base: u16,
        metrics_base: u16,
    ) -> Ports {
        let run = |base: u16| (0..n as u16).map(|i| base + i).collect();
        Ports {
            host: host.into(),
            rpc_host: rpc_host.into(),
            p2p: run(p2p_base),
            rpc: run(rpc_base),
            metrics: run(metrics_base),
        }
    }

    /// Ports free right now.
    pub fn free(host: &str, rpc_host: &str, n: usize) -> anyhow::Result<Ports> {
        let (p2p, mut rpc) = if host == rpc_host {
            let mut ports = free_ports(host, 3 * n)?;
            let rpc = ports.split_off(n);
            (ports, rpc)
        } else {
            (free_ports(host, n)?, free_ports(rpc_host, 2 * n)?)
        };
        let metrics = rpc.split_off(n);
        Ok(Ports {
            host: host.into(),
            rpc_host: rpc_host.into(),
            p2p,
            rpc,
            metrics,
        })
    }
}

/// Where one node of a testnet listens and is dialled.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The IP address the node's p2p listens on and the others dial.
    pub host: String,
    pub p2p_port: u16,
    pub rpc: SocketAddr,
    pub metrics: SocketAddr,
    /// Whether the others can dial it (false behind a NAT): only those go
    /// into the others' bootstrap lists.
    pub dialable: bool,
}

impl Endpoint {
    /// The address the others dial it at.
    pub fn p2p_addr(&self, peer: &PeerId) -> String {
        format!("/ip4/{}/tcp/{}/p2p/{peer}", self.host, self.p2p_port)
    }
}

impl Ports {
    /// One endpoint per node.
    pub fn endpoints(&self) -> anyhow::Result<Vec<Endpoint>> {
        let addr = |port: u16| -> anyhow::Result<SocketAddr> {
            format!("{}:{port}", self.rpc_host)
                .parse()
                .with_context(|| format!("bad RPC host {:?}", self.rpc_host))
        };
        (0..self.p2p.len())
            .map(|i| {
                Ok(Endpoint {
                    host: self.host.clone(),
                    p2p_port: self.p2p[i],
                    rpc: addr(self.rpc[i])?,
                    metrics: addr(self.metrics[i])?,
                    dialable: true,
                })
            })
            .collect()
    }
}

/// A generated testnet node.
#[derive(Clone, Debug)]
pub struct TestnetNode {
    pub home: PathBuf,
    pub peer_id: PeerId,
    pub rpc: String,
    pub metrics: String,
    pub validator: tally_ledger::Address,
}

/// Generates `n` validator homes under `out` sharing one genesis, each with
/// a node key and a config.toml listing every other node as a peer.
pub fn testnet(
    n: usize,
    chain_id: u64,
    params: ConsensusParams,
    out: &Path,
    ports: &Ports,
) -> anyhow::Result<(Genesis, Vec<TestnetNode>)> {
    testnet_at(chain_id, params, out, &ports.endpoints()?[..n])
}

/// Generates one validator home per endpoint under `out` sharing one
/// genesis, each with a node key and a config.toml listing every other
/// dialable node as a peer.
pub fn testnet_at(
    chain_id: u64,
    params: ConsensusParams,
    out: &Path,
    endpoints: &[Endpoint],
) -> anyhow::Result<(Genesis, Vec<TestnetNode>)> {
    let n = endpoints.len();
    let generated = generate_testnet(n, chain_id, params, out)
        .with_context(|| format!("generating a testnet in {}", out.display()))?;
    let homes: Vec<Home> = generated.homes.iter().map(Home::new).collect();
    let peer_ids = homes
        .iter()
        .map(node_peer_id)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut nodes = Vec::with_capacity(n);
    for (i, (home, at)) in homes.iter().zip(endpoints).enumerate() {
        let mut config = Config::default();
        config.node.moniker = format!("node{i}");
        config.p2p.listen = vec![format!("/ip4/{}/tcp/{}", at.host, at.p2p_port)];
        config.p2p.bootstrap = (0..n)
            .filter(|&j| j != i && endpoints[j].dialable)
            .map(|j| endpoints[j].p2p_addr(&peer_ids[j]))
            .collect();
        // Fellow validators may relay for it and punch holes with it (a
        // bootstrap peer is trusted anyway; those behind NAT are not one).
        config.p2p.trusted_peers = (0..n)
            .filter(|&j| j != i && !endpoints[j].dialable)
            .map(|j| peer_ids[j].to_string())
            .collect();
        config.rpc.listen = at.rpc;
        config.metrics.enabled = true;
        config.metrics.listen = at.metrics;
        config.save_new(&home.config_file())?;
        nodes.push(TestnetNode {
            home: home.root.clone(),
            peer_id: peer_ids[i],
            rpc: format!("http://{}", at.rpc),
            metrics: format!("http://{}/metrics", at.metrics),
            validator: generated.validator_keys[i].address(),
        });
    }
    Ok((generated.genesis, nodes))
}

/// The dashboard of `nodes[0]` showing every node (their metrics origins
/// in `?nodes=`).
pub fn dashboard_url(nodes: &[TestnetNode]) -> String {
    let origins: Vec<&str> = nodes
        .iter()
        .map(|n| n.metrics.trim_end_matches("/metrics"))
        .collect();
    format!(
        "{}/dashboard?nodes={}",
        origins.first().copied().unwrap_or_default(),
        origins.join(",")
    )
}

/// Initialises a home: validator key (unless `full_node`), node key,
/// genesis (the given one, or a new one-validator chain with the dev
/// accounts funded) and a documented config.toml. Refuses to overwrite.
pub fn init(
    home: &Home,
    chain_id: u64,
    genesis: Option<Genesis>,
    full_node: bool,
    config: Config,
) -> anyhow::Result<(Genesis, Option<SecretKey>)> {
    if home.config_file().exists() || home.genesis_file().exists() {
        anyhow::bail!(
            "{} is already initialised (remove it or choose another --home)",
            home.root.display()
        );
    }
    let key = if full_node {
        None
    } else {
        let key = SecretKey::generate()?;
        key.save(&home.resolve(config.node.validator_key.as_ref()))?;
        Some(key)
    };
    let genesis = match (genesis, &key) {
        (Some(genesis), _) => genesis,
        (None, Some(key)) => tally_genesis::dev_genesis(chain_id, key),
        (None, None) => anyhow::bail!("a full node needs the chain's genesis (--genesis FILE)"),
    };
    genesis.save(&home.genesis_file())?;
    node_peer_id(home)?;
    let mut config = config;
    if full_node {
        config.node.validator_key = String::new();
    }
    config.save_new(&home.config_file())?;
    Ok((genesis, key))
}
