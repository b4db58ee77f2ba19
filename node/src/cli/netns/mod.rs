//! `tally netns`: a testnet whose nodes each run on their own emulated
//! host, a Linux network namespace, so that links between them can fail.
//!
//! The layout of a testnet called NAME on subnet K (10.K.0.0/16):
//! - `tally-NAME-hub` holds the bridge `br0`, the "internet" every public
//!   host is plugged into, at 10.K.0.0/24;
//! - `tally-NAME-nI` is node I's host: `eth0` at 10.K.0.(I+1), plugged into
//!   the bridge by the hub's `nI`;
//! - a node behind NAT sits at 10.K.(I+1).2 behind the router
//!   `tally-NAME-rI`, whose WAN side is 10.K.0.(I+101) on the bridge (hub
//!   port `wI`) and which masquerades its LAN, refuses every connection
//!   from outside and forwards none in, as a home router does;
//! - the root namespace (the operator's shell) gets 10.K.0.254 on the link
//!   `tn-NAME`, and a route to each NAT LAN through its router, which lets
//!   the root namespace (and only it) in: JSON-RPC and metrics of every
//!   node are reachable from the root namespace at the node's address.
//!
//! Every node's p2p, RPC and metrics listen on its own address, at the
//! same ports in every namespace. The state of a testnet is a JSON file
//! in `/run/tally-netns/NAME.json`; `down` also finds what a failed `up`
//! left by the namespaces' names.

mod command;
mod fault;
mod sys;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tally_genesis::ConsensusParams;

pub use command::NetnsCommand;
pub use fault::{Fault, apply as fault};

use super::homes::{self, Endpoint};
use crate::config::{Config, Home};

/// The ports every node listens on, inside its own namespace.
pub const P2P_PORT: u16 = 26656;
pub const RPC_PORT: u16 = 8545;
pub const METRICS_PORT: u16 = 26660;

/// What `tally netns up` builds.
#[derive(Clone, Debug)]
pub struct UpOptions {
    pub name: String,
    pub validators: usize,
    pub full_nodes: usize,
    /// The last this many validators sit behind a NAT each.
    pub nat: usize,
    /// K of 10.K.0.0/16; default: the first unused from 200.
    pub subnet: Option<u8>,
    /// Homes go here (default: /tmp/tally-netns-NAME, removed by `down`).
    pub dir: Option<PathBuf>,
    pub chain_id: u64,
    pub params: ConsensusParams,
    /// The `tally` binary the nodes run.
    pub exe: PathBuf,
}

/// A running testnet, as saved in its state file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Testnet {
    pub name: String,
    pub subnet: u8,
    pub dir: PathBuf,
    /// Whether `down` removes `dir` (it was made by `up`).
    pub owns_dir: bool,
    pub exe: PathBuf,
    pub hub: String,
    pub root_link: String,
    pub nodes: Vec<NetNode>,
}

/// One node and its host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetNode {
    /// `node0`, `node1`, ...
    pub name: String,
    pub validator: bool,
    pub namespace: String,
    /// Its own address (on its NAT's LAN if behind one).
    pub ip: Ipv4Addr,
    /// The address the other nodes see its connections come from.
    pub seen_as: Ipv4Addr,
    /// The NAT router's namespace, if behind one.
    pub router: Option<String>,
    /// Its port on the hub's bridge (the router's WAN port behind NAT):
    /// what `link down` takes down.
    pub hub_port: String,
    pub home: PathBuf,
    pub peer_id: String,
    /// The multiaddr others dial (only reachable if not behind NAT).
    pub p2p: String,
    pub rpc: String,
    pub metrics: String,
}

impl Testnet {
    /// The node called `node3` or `3`.
    pub fn node(&self, which: &str) -> anyhow::Result<&NetNode> {
        let name = if which.starts_with("node") {
            which.to_owned()
        } else {
            format!("node{which}")
        };
        self.nodes.iter().find(|n| n.name == name).with_context(|| {
            format!(
                "no node {which:?} in testnet {} (it has node0..node{})",
                self.name,
                self.nodes.len().saturating_sub(1)
            )
        })
    }

    /// The root namespace's address on the hub.
    pub fn root_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, 254)
    }

    /// Loads the state of testnet `name`.
    pub fn load(name: &str) -> anyhow::Result<Testnet> {
        let path = state_file(name);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no testnet {name:?} ({} not found; `tally netns up` makes one)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
    }

    fn save(&self) -> anyhow::Result<()> {
        let path = state_file(&self.name);
        std::fs::create_dir_all(path.parent().expect("state dir"))?;
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Where testnet states live: tmpfs, gone at reboot with the namespaces.
fn state_dir() -> PathBuf {
    std::env::var_os("TALLY_NETNS_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/tally-netns"))
}

fn state_file(name: &str) -> PathBuf {
    state_dir().join(format!("{name}.json"))
}

fn hub_ns(name: &str) -> String {
    format!("tally-{name}-hub")
}

/// Names are short (the root link `tn-NAME` must fit in 15 bytes) and
/// plain (they become namespace and file names).
fn check_name(name: &str) -> anyhow::Result<()> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.is_empty() || name.len() > 10 || !plain {
        bail!("a testnet name is 1-10 lowercase letters or digits, not {name:?}");
    }
    Ok(())
}

/// The first K from 200 whose 10.K.0.0/16 no route of the root namespace
/// touches.
fn free_subnet() -> anyhow::Result<u8> {
    let routes = sys::run("ip", &["-4", "route", "show", "table", "all"])?;
    (200..=250u8)
        .find(|k| !routes.contains(&format!("10.{k}.")))
        .context("no free 10.K.0.0/16 subnet between 10.200 and 10.250: pass --subnet")
}

/// Creates the namespaces, links and homes, starts every node and waits
/// until each one's RPC port accepts connections.
pub fn up(options: &UpOptions) -> anyhow::Result<Testnet> {
    check_name(&options.name)?;
    sys::require(&["ip"])?;
    if options.nat > 0 {
        sys::require(&["nft"])?;
    }
    let (v, f, nat) = (options.validators, options.full_nodes, options.nat);
    if v == 0 || v + f > 99 {
        bail!("a netns testnet has 1 to 99 nodes, at least one a validator");
    }
    if nat > v {
        bail!("--nat {nat} is more than the {v} validators");
    }
    if nat == v && f == 0 {
        bail!("every node behind NAT: nobody could dial anybody");
    }
    let hub = hub_ns(&options.name);
    if sys::namespaces()?.contains(&hub) {
        bail!(
            "testnet {} exists (tally netns down --name {})",
            options.name,
            options.name
        );
    }
    let subnet = match options.subnet {
        Some(k) => k,
        None => free_subnet()?,
    };
    let (dir, owns_dir) = match &options.dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("tally-netns-{}", options.name)),
            true,
        ),
    };
    if owns_dir && dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let mut net = Testnet {
        name: options.name.clone(),
        subnet,
        dir: dir.clone(),
        owns_dir,
        exe: options.exe.clone(),
        hub: hub.clone(),
        root_link: format!("tn-{}", options.name),
        nodes: Vec::new(),
    };
    // Saved before anything exists, so that `down` finds a half-built one.
    net.save()?;
    let built = build(&mut net, options);
    if let Err(error) = built {
        let _ = down(&options.name);
        return Err(error);
    }
    Ok(net)
}

fn build(net: &mut Testnet, options: &UpOptions) -> anyhow::Result<()> {
    let k = net.subnet;
    let hub = net.hub.clone();
    sys::ip(&format!("netns add {hub}"))?;
    sys::ip_in(&hub, "link set lo up")?;
    sys::ip_in(&hub, "link add br0 type bridge")?;
    sys::ip_in(&hub, "link set br0 up")?;
    let root = &net.root_link;
    sys::ip(&format!(
        "link add {root} type veth peer name root netns {hub}"
    ))?;
    sys::ip_in(&hub, "link set root master br0 up")?;
    sys::ip(&format!("addr add 10.{k}.0.254/24 dev {root}"))?;
    sys::ip(&format!("link set {root} up"))?;

    let n = options.validators + options.full_nodes;
    let first_nat = options.validators - options.nat;
    let mut endpoints = Vec::with_capacity(n);
    let mut layout = Vec::with_capacity(n);
    for i in 0..n {
        let ns = format!("tally-{}-n{i}", net.name);
        sys::ip(&format!("netns add {ns}"))?;
        sys::ip_in(&ns, "link set lo up")?;
        let behind_nat = i >= first_nat && i < options.validators;
        let (ip, seen_as, router, hub_port) = if behind_nat {
            let router = format!("tally-{}-r{i}", net.name);
            nat_router(&hub, &router, &ns, k, i)?;
            (
                Ipv4Addr::new(10, k, i as u8 + 1, 2),
                Ipv4Addr::new(10, k, 0, i as u8 + 101),
                Some(router),
                format!("w{i}"),
            )
        } else {
            let port = format!("n{i}");
            let ip = Ipv4Addr::new(10, k, 0, i as u8 + 1);
            sys::ip_in(
                &hub,
                &format!("link add {port} type veth peer name eth0 netns {ns}"),
            )?;
            sys::ip_in(&hub, &format!("link set {port} master br0 up"))?;
            sys::ip_in(&ns, &format!("addr add {ip}/24 dev eth0"))?;
            sys::ip_in(&ns, "link set eth0 up")?;
            (ip, ip, None, port)
        };
        endpoints.push(Endpoint {
            host: ip.to_string(),
            p2p_port: P2P_PORT,
            rpc: SocketAddr::from((ip, RPC_PORT)),
            metrics: SocketAddr::from((ip, METRICS_PORT)),
            dialable: !behind_nat,
        });
        layout.push((ns, ip, seen_as, router, hub_port));
    }

    let (genesis, validators) = homes::testnet_at(
        options.chain_id,
        options.params.clone(),
        &net.dir,
        &endpoints[..options.validators],
    )?;
    if options.nat > 0 {
        // Public validators relay for those behind NAT (and say where
        // they are reachable, which a relay needs); those behind NAT
        // reserve slots on them.
        for (v, at) in validators.iter().zip(&endpoints) {
            edit_config(&v.home, |config| {
                if at.dialable {
                    config.p2p.external = config.p2p.listen.clone();
                    config.p2p.relay_server = true;
                } else {
                    config.p2p.use_relays = true;
                }
            })?;
        }
    }
    let mut homes: Vec<(PathBuf, String)> = validators
        .iter()
        .map(|v| (v.home.clone(), v.peer_id.to_string()))
        .collect();
    // Full nodes know one address, node0's: they find the rest themselves.
    let bootstrap = endpoints[0].p2p_addr(&validators[0].peer_id);
    for (i, at) in endpoints.iter().enumerate().skip(options.validators) {
        let home = Home::new(net.dir.join(format!("node{i}")));
        let mut config = Config::default();
        config.node.moniker = format!("node{i}");
        config.p2p.listen = vec![format!("/ip4/{}/tcp/{}", at.host, at.p2p_port)];
        config.p2p.bootstrap = vec![bootstrap.clone()];
        config.rpc.listen = at.rpc;
        config.metrics.enabled = true;
        config.metrics.listen = at.metrics;
        homes::init(&home, options.chain_id, Some(genesis.clone()), true, config)?;
        homes.push((home.root.clone(), homes::node_peer_id(&home)?.to_string()));
    }

    for (i, ((ns, ip, seen_as, router, hub_port), (home, peer_id))) in
        layout.into_iter().zip(homes).enumerate()
    {
        let at = &endpoints[i];
        net.nodes.push(NetNode {
            name: format!("node{i}"),
            validator: i < options.validators,
            namespace: ns,
            ip,
            seen_as,
            router,
            hub_port,
            home,
            p2p: format!("/ip4/{ip}/tcp/{P2P_PORT}/p2p/{peer_id}"),
            peer_id,
            rpc: format!("http://{}", at.rpc),
            metrics: format!("http://{}/metrics", at.metrics),
        });
    }
    net.save()?;
    for node in &net.nodes {
        start_node(net, node, None)?;
    }
    wait_ready(net, Duration::from_secs(30))
}

/// Changes a generated home's config.toml.
fn edit_config(home: &Path, change: impl FnOnce(&mut Config)) -> anyhow::Result<()> {
    let file = Home::new(home).config_file();
    let mut config = Config::load(&file)?;
    change(&mut config);
    std::fs::remove_file(&file)?;
    config.save_new(&file)
}

/// A NAT router namespace between the hub and node `i`'s namespace `ns`.
fn nat_router(hub: &str, router: &str, ns: &str, k: u8, i: usize) -> anyhow::Result<()> {
    let (wan, lan_net) = (
        Ipv4Addr::new(10, k, 0, i as u8 + 101),
        format!("10.{k}.{}", i + 1),
    );
    sys::ip(&format!("netns add {router}"))?;
    sys::ip_in(router, "link set lo up")?;
    sys::ip_in(
        hub,
        &format!("link add w{i} type veth peer name wan netns {router}"),
    )?;
    sys::ip_in(hub, &format!("link set w{i} master br0 up"))?;
    sys::ip_in(router, &format!("addr add {wan}/24 dev wan"))?;
    sys::ip_in(router, "link set wan up")?;
    sys::ip_in(
        router,
        &format!("link add lan type veth peer name eth0 netns {ns}"),
    )?;
    sys::ip_in(router, &format!("addr add {lan_net}.1/24 dev lan"))?;
    sys::ip_in(router, "link set lan up")?;
    sys::ip_in(ns, &format!("addr add {lan_net}.2/24 dev eth0"))?;
    sys::ip_in(ns, "link set eth0 up")?;
    sys::ip_in(ns, &format!("route add default via {lan_net}.1"))?;
    sys::exec_in(router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"], None)?;
    // A home router: masquerade the LAN (port-preserving, so that hole
    // punching can work), drop unsolicited connections on the WAN side
    // without an answer, forward nothing in but replies and the root
    // namespace's (the operator's RPC and metrics).
    let rules = format!(
        "table ip nat {{
  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
    ip saddr {lan_net}.0/24 oifname \"wan\" masquerade
  }}
}}
table ip filter {{
  chain input {{ type filter hook input priority filter; policy accept;
    iifname \"wan\" ct state new drop
  }}
  chain forward {{ type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"lan\" oifname \"wan\" accept
    iifname \"wan\" ip saddr 10.{k}.0.254 oifname \"lan\" accept
  }}
}}
"
    );
    sys::nft_in(router, &rules)?;
    sys::ip(&format!("route add {lan_net}.0/24 via {wan}"))
}

/// Starts `tally start` for `node` inside its namespace, detached (its own
/// process group, so the shell's Ctrl-C does not reach it), appending its
/// output to `node.log` in its home. `clock_offset` (e.g. `+30s`, `-2m`)
/// shifts the wall clock it sees, through libfaketime.
pub fn start_node(net: &Testnet, node: &NetNode, clock_offset: Option<&str>) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    if !sys::pids_in(&node.namespace).is_empty() {
        bail!("{} is already running", node.name);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.home.join("node.log"))
        .with_context(|| format!("opening {}/node.log", node.home.display()))?;
    let ip = sys::which("ip").context("`ip` is not installed")?;
    let mut command = Command::new(ip);
    command
        .args(["netns", "exec", &node.namespace])
        .arg(&net.exe)
        .arg("start")
        .arg("--home")
        .arg(&node.home)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    if let Some(offset) = clock_offset {
        let lib = sys::libfaketime()
            .context("a clock offset needs libfaketime (apt-get install faketime)")?;
        let offset = parse_offset(offset)?;
        // Only the wall clock moves: timers and timeouts (monotonic) run
        // as they do on any host whose clock is off.
        command
            .env("LD_PRELOAD", lib)
            .env("FAKETIME", format!("{offset:+}s"))
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("FAKETIME_DONT_RESET", "1");
    }
    command
        .spawn()
        .with_context(|| format!("starting {}", node.name))?;
    Ok(())
}

/// `+30s`, `-2m`, `90` (seconds) as seconds.
fn parse_offset(text: &str) -> anyhow::Result<i64> {
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    };
    let secs = if rest.bytes().all(|b| b.is_ascii_digit()) {
        rest.parse::<u64>().ok()
    } else {
        humantime::parse_duration(rest).ok().map(|d| d.as_secs())
    }
    .with_context(|| format!("a clock offset is like +30s or -2m, not {text:?}"))?;
    Ok(sign * secs as i64)
}

/// Waits until every running node's RPC port accepts connections.
pub fn wait_ready(net: &Testnet, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    for node in &net.nodes {
        let addr = SocketAddr::from((node.ip, RPC_PORT));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if sys::pids_in(&node.namespace).is_empty() {
                bail!(
                    "{} exited at start; its log: {}/node.log",
                    node.name,
                    node.home.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{}'s RPC at {addr} did not open within {within:?}",
                    node.name
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Stops every node of testnet `name` and removes its namespaces, links,
/// routes, state file and (if `up` made it) its directory. Also cleans up
/// after an `up` that failed half-way.
pub fn down(name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    sys::require(&["ip"])?;
    let prefix = format!("tally-{name}-");
    let namespaces: Vec<String> = sys::namespaces()?
        .into_iter()
        .filter(|ns| ns.starts_with(&prefix))
        .collect();
    let mut pids = Vec::new();
    for ns in &namespaces {
        pids.extend(sys::pids_in(ns));
    }
    for &pid in &pids {
        // A paused node gets the kill too (SIGKILL needs no SIGCONT).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids
        .iter()
        .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut failed = Vec::new();
    for ns in &namespaces {
        if let Err(e) = sys::ip(&format!("netns del {ns}")) {
            failed.push(e.to_string());
        }
    }
    let root_link = format!("tn-{name}");
    if sys::link_exists(&root_link) {
        // Gone with the hub namespace, unless something still holds it.
        let _ = sys::ip(&format!("link del {root_link}"));
    }
    if let Ok(net) = Testnet::load(name) {
        if net.owns_dir && net.dir.exists() {
            std::fs::remove_dir_all(&net.dir)
                .with_context(|| format!("removing {}", net.dir.display()))?;
        }
    }
    let _ = std::fs::remove_file(state_file(name));
    if !failed.is_empty() {
        bail!("some namespaces were not removed: {}", failed.join("; "));
    }
    Ok(())
}

/// The names of every netns testnet on this machine (by their hub
/// namespaces, so also those whose state file is gone).
pub fn list() -> anyhow::Result<Vec<String>> {
    Ok(sys::namespaces()?
        .iter()
        .filter_map(|ns| ns.strip_prefix("tally-")?.strip_suffix("-hub"))
        .map(str::to_owned)
        .collect())
}

/// Whether a node's process runs, is paused or is stopped.
pub fn process_state(node: &NetNode) -> &'static str {
    let pids = sys::pids_in(&node.namespace);
    let Some(pid) = pids.first() else {
        return "stopped";
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state letter follows the parenthesised command name.
    match stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
    {
        Some('T') | Some('t') => "paused",
        Some(_) => "running",
        None => "stopped",
    }
}

/// A table of the nodes, for people.
pub fn describe(net: &Testnet) -> String {
    let mut out = format!(
        "testnet {} on 10.{}.0.0/16 (homes in {}; the root namespace is {} on {})\n",
        net.name,
        net.subnet,
        net.dir.display(),
        net.root_ip(),
        net.root_link
    );
    for node in &net.nodes {
        let role = if node.validator {
            "validator"
        } else {
            "full node"
        };
        let nat = match &node.router {
            Some(router) => format!(" behind NAT {} (seen as {})", router, node.seen_as),
            None => String::new(),
        };
        out.push_str(&format!(
            "{:7} {role:9} {:8} ns {:18} {}{nat}\n        rpc {}  metrics {}\n        p2p {}\n",
            node.name,
            process_state(node),
            node.namespace,
            node.ip,
            node.rpc,
            node.metrics,
            node.p2p,
        ));
    }
    out
}
