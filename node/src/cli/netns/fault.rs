//! The faults `tally netns` puts on a running testnet: partitions and
//! packet loss (nftables tables in the nodes' namespaces), bandwidth limits
//! (tbf), links down and up, and the node processes killed, stopped,
//! paused, resumed, restarted or started with their wall clock shifted.
//!
//! Traffic to and from the root namespace (the operator's RPC and
//! metrics) is never dropped, so a partitioned node can still be asked
//! what it sees.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{NetNode, Testnet, start_node, sys};

const PARTITION_TABLE: &str = "tally_partition";
const LOSS_TABLE: &str = "tally_loss";

/// One fault command.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Split the nodes into these groups (node names or indices); nodes in
    /// no group form one more group. Replaces any earlier partition.
    Partition(Vec<Vec<String>>),
    /// Remove every network fault: partitions, loss, limits, links down.
    Heal,
    /// Drop `percent` of the packets a node sends and of those it receives
    /// (only those to and from the nodes `to`, if any). 0 removes it.
    Loss {
        node: String,
        percent: u8,
        to: Vec<String>,
    },
    /// Limit what a node sends and what it receives to `rate` (tc units:
    /// `100mbit`, `512kbit`), or remove the limit (`off`).
    Limit {
        node: String,
        rate: String,
    },
    /// Take the node's link to the hub down or up.
    Link {
        node: String,
        up: bool,
    },
    /// Take the link down and up `times` times.
    Flap {
        node: String,
        times: u32,
        down: Duration,
        up: Duration,
    },
    Kill(String),
    /// SIGTERM, waiting up to 10 s (then SIGKILL).
    Stop(String),
    Pause(String),
    Resume(String),
    /// Start a stopped node, its wall clock shifted by `clock_offset`.
    Start {
        node: String,
        clock_offset: Option<String>,
    },
    /// Stop (SIGTERM) and start again.
    Restart {
        node: String,
        clock_offset: Option<String>,
    },
}

/// Applies `fault` to the testnet; returns what it did, for people.
pub fn apply(net: &Testnet, fault: &Fault) -> anyhow::Result<String> {
    match fault {
        Fault::Partition(groups) => partition(net, groups),
        Fault::Heal => heal(net),
        Fault::Loss { node, percent, to } => loss(net, net.node(node)?, *percent, to),
        Fault::Limit { node, rate } => limit(net, net.node(node)?, rate),
        Fault::Link { node, up } => {
            link(net, net.node(node)?, *up)?;
            Ok(format!("{node}: link {}", if *up { "up" } else { "down" }))
        }
        Fault::Flap {
            node,
            times,
            down,
            up,
        } => {
            let target = net.node(node)?;
            for _ in 0..*times {
                link(net, target, false)?;
                std::thread::sleep(*down);
                link(net, target, true)?;
                std::thread::sleep(*up);
            }
            Ok(format!("{node}: link flapped {times} times"))
        }
        Fault::Kill(node) => signal(net.node(node)?, Signal::SIGKILL)
            .map(|n| format!("{node}: killed ({n} processes)")),
        Fault::Pause(node) => {
            signal(net.node(node)?, Signal::SIGSTOP).map(|_| format!("{node}: paused"))
        }
        Fault::Resume(node) => {
            signal(net.node(node)?, Signal::SIGCONT).map(|_| format!("{node}: resumed"))
        }
        Fault::Stop(node) => {
            stop(net.node(node)?)?;
            Ok(format!("{node}: stopped"))
        }
        Fault::Start { node, clock_offset } => {
            start_node(net, net.node(node)?, clock_offset.as_deref())?;
            Ok(format!("{node}: started{}", offset_note(clock_offset)))
        }
        Fault::Restart { node, clock_offset } => {
            let target = net.node(node)?;
            stop(target)?;
            start_node(net, target, clock_offset.as_deref())?;
            Ok(format!("{node}: restarted{}", offset_note(clock_offset)))
        }
    }
}

fn offset_note(offset: &Option<String>) -> String {
    offset
        .as_ref()
        .map(|o| format!(" with its clock at {o}"))
        .unwrap_or_default()
}

/// The addresses the other nodes see `node` at, and its own.
fn addresses(node: &NetNode) -> BTreeSet<Ipv4Addr> {
    BTreeSet::from([node.ip, node.seen_as])
}

fn set_of(addrs: &BTreeSet<Ipv4Addr>) -> String {
    let list: Vec<String> = addrs.iter().map(Ipv4Addr::to_string).collect();
    format!("{{ {} }}", list.join(", "))
}

/// Replaces table `table` in the node's namespace with `body` (atomically:
/// one nft transaction), or removes it if `body` is None.
fn replace_table(node: &NetNode, table: &str, body: Option<&str>) -> anyhow::Result<()> {
    let mut rules = format!("table inet {table} {{}}\ndelete table inet {table}\n");
    if let Some(body) = body {
        rules.push_str(&format!("table inet {table} {{\n{body}}}\n"));
    }
    sys::nft_in(&node.namespace, &rules).with_context(|| format!("nftables rules in {}", node.name))
}

fn partition(net: &Testnet, groups: &[Vec<String>]) -> anyhow::Result<String> {
    sys::require(&["nft"])?;
    let mut group_of = vec![usize::MAX; net.nodes.len()];
    for (g, group) in groups.iter().enumerate() {
        for which in group {
            let node = net.node(which)?;
            let i = net
                .nodes
                .iter()
                .position(|n| n.name == node.name)
                .expect("found");
            if group_of[i] != usize::MAX {
                bail!("{} is in two groups", node.name);
            }
            group_of[i] = g;
        }
    }
    for g in &mut group_of {
        if *g == usize::MAX {
            *g = groups.len();
        }
    }
    for (i, node) in net.nodes.iter().enumerate() {
        let others: BTreeSet<Ipv4Addr> = net
            .nodes
            .iter()
            .enumerate()
            .filter(|&(j, _)| group_of[j] != group_of[i])
            .flat_map(|(_, n)| addresses(n))
            .collect();
        let body = (!others.is_empty()).then(|| {
            let set = set_of(&others);
            format!(
                "  chain input {{ type filter hook input priority filter; policy accept;
    ip saddr {set} drop
  }}
  chain output {{ type filter hook output priority filter; policy accept;
    ip daddr {set} drop
  }}
"
            )
        });
        replace_table(node, PARTITION_TABLE, body.as_deref())?;
    }
    let mut names: Vec<Vec<&str>> = vec![Vec::new(); groups.len() + 1];
    for (i, node) in net.nodes.iter().enumerate() {
        names[group_of[i]].push(&node.name);
    }
    let described: Vec<String> = names
        .iter()
        .filter(|g| !g.is_empty())
        .map(|g| g.join(","))
        .collect();
    Ok(format!("partitioned: {}", described.join(" | ")))
}

fn loss(net: &Testnet, node: &NetNode, percent: u8, to: &[String]) -> anyhow::Result<String> {
    sys::require(&["nft"])?;
    if percent > 100 {
        bail!("a loss is a percentage (0-100), not {percent}");
    }
    if percent == 0 {
        replace_table(node, LOSS_TABLE, None)?;
        return Ok(format!("{}: no loss", node.name));
    }
    let peers: BTreeSet<Ipv4Addr> = to
        .iter()
        .map(|w| net.node(w).map(addresses))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let root = net.root_ip();
    let (from, towards) = if peers.is_empty() {
        (format!("ip saddr != {root}"), format!("ip daddr != {root}"))
    } else {
        let set = set_of(&peers);
        (format!("ip saddr {set}"), format!("ip daddr {set}"))
    };
    let body = format!(
        "  chain input {{ type filter hook input priority filter; policy accept;
    {from} numgen random mod 100 < {percent} drop
  }}
  chain output {{ type filter hook output priority filter; policy accept;
    {towards} numgen random mod 100 < {percent} drop
  }}
"
    );
    replace_table(node, LOSS_TABLE, Some(&body))?;
    let scope = if to.is_empty() {
        String::new()
    } else {
        format!(" to and from {}", to.join(","))
    };
    Ok(format!(
        "{}: {percent}% of packets dropped each way{scope}",
        node.name
    ))
}

/// The link that carries what `node` receives: the hub's port for a public
/// node, the router's LAN side behind NAT.
fn inbound_link(net: &Testnet, node: &NetNode) -> (String, String) {
    match &node.router {
        Some(router) => (router.clone(), "lan".into()),
        None => (net.hub.clone(), node.hub_port.clone()),
    }
}

fn limit(net: &Testnet, node: &NetNode, rate: &str) -> anyhow::Result<String> {
    sys::require(&["tc"])?;
    let (ns, dev) = inbound_link(net, node);
    let sides = [
        (node.namespace.as_str(), "eth0"),
        (ns.as_str(), dev.as_str()),
    ];
    if rate == "off" {
        for (ns, dev) in sides {
            // Fails only when there was no limit.
            let _ = sys::run("tc", &["-n", ns, "qdisc", "del", "dev", dev, "root"]);
        }
        return Ok(format!("{}: no bandwidth limit", node.name));
    }
    let bits = rate_bits(rate)?;
    // The bucket holds 10 ms at the rate (at least 16 KiB): tbf needs at
    // least one timer tick's worth and no more, or bursts bypass the limit.
    let burst = (bits / 8 / 100).max(16 * 1024).to_string();
    for (ns, dev) in sides {
        sys::run(
            "tc",
            &[
                "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst",
                &burst, "latency", "100ms",
            ],
        )
        .with_context(|| format!("limiting {}", node.name))?;
    }
    Ok(format!("{}: {rate} each way", node.name))
}

/// `100mbit`, `512kbit`, `1gbit`, `2mbps` (bytes) as bits per second.
fn rate_bits(rate: &str) -> anyhow::Result<u64> {
    let split = rate
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rate.len());
    let (number, unit) = rate.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("a rate is like 100mbit, not {rate:?}"))?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        "bps" => 8,
        "kbps" => 8_000,
        "mbps" => 8_000_000,
        _ => bail!("a rate is like 100mbit or 512kbit, not {rate:?}"),
    };
    Ok(number * factor)
}

fn link(net: &Testnet, node: &NetNode, up: bool) -> anyhow::Result<()> {
    let state = if up { "up" } else { "down" };
    sys::ip_in(&net.hub, &format!("link set {} {state}", node.hub_port))
}

/// Sends `signal` to the node's processes; the number signalled.
fn signal(node: &NetNode, signal: Signal) -> anyhow::Result<usize> {
    let pids = sys::pids_in(&node.namespace);
    if pids.is_empty() {
        bail!("{} is not running", node.name);
    }
    for &pid in &pids {
        kill(Pid::from_raw(pid), signal)
            .with_context(|| format!("sending {signal} to {} (pid {pid})", node.name))?;
    }
    Ok(pids.len())
}

/// SIGTERM (and SIGCONT, in case it is paused), up to 10 s, then SIGKILL.
fn stop(node: &NetNode) -> anyhow::Result<()> {
    let pids = sys::pids_in(&node.namespace);
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    }
    let gone = || {
        pids.iter()
            .all(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    for _ in 0..500 {
        if gone() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    for _ in 0..250 {
        if gone() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{} did not stop", node.name)
}

/// Every network fault removed from every node.
fn heal(net: &Testnet) -> anyhow::Result<String> {
    let have_nft = sys::which("nft").is_some();
    for node in &net.nodes {
        if have_nft {
            replace_table(node, PARTITION_TABLE, None)?;
            replace_table(node, LOSS_TABLE, None)?;
        }
        if sys::which("tc").is_some() {
            limit(net, node, "off")?;
        }
        link(net, node, true)?;
    }
    Ok("healed: no partition, loss, limit or link down".into())
}

#[cfg(test)]
mod tests {
    use super::rate_bits;

    #[test]
    fn rates_parse_as_tc_reads_them() {
        assert_eq!(rate_bits("100mbit").expect("rate"), 100_000_000);
        assert_eq!(rate_bits("512kbit").expect("rate"), 512_000);
        assert_eq!(rate_bits("2mbps").expect("rate"), 16_000_000);
        assert!(rate_bits("fast").is_err());
        assert!(rate_bits("10furlongs").is_err());
    }
}
