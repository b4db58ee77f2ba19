//! The `tally netns` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{Fault, Testnet, UpOptions, describe, down, list, up};
use crate::cli::ParamArgs;

/// Which testnet a command is for.
#[derive(Debug, Args)]
pub struct NameArg {
    /// The testnet's name (1-10 lowercase letters or digits).
    #[arg(long, default_value = "net")]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum NetnsCommand {
    /// Create one network namespace per node, generate the homes, start
    /// every node in its namespace and print their addresses.
    Up {
        #[command(flatten)]
        name: NameArg,
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Full nodes (no vote), given only node0's address to find the rest.
        #[arg(long, default_value_t = 0)]
        full_nodes: usize,
        /// Put the last K validators behind a NAT each (masquerade, nothing
        /// forwarded in).
        #[arg(long, default_value_t = 0)]
        nat: usize,
        /// Use 10.K.0.0/16 (default: the first free K from 200).
        #[arg(long)]
        subnet: Option<u8>,
        /// Keep the homes here (default: a directory that `down` removes).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 1337)]
        chain_id: u64,
        /// Print the testnet's state as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        params: ParamArgs,
    },
    /// Stop every node and remove every namespace, link, route and rule
    /// the testnet made (also after a failed `up`).
    Down {
        #[command(flatten)]
        name: NameArg,
        /// Every netns testnet on this machine.
        #[arg(long)]
        all: bool,
    },
    /// The nodes, their addresses, URLs and whether they run.
    Status {
        #[command(flatten)]
        name: NameArg,
        #[arg(long)]
        json: bool,
    },
    /// The names of the netns testnets on this machine.
    List,
    /// Split the nodes into groups that cannot reach each other, e.g.
    /// `partition 0,1 2,3` or `partition 3` (node3 against the rest).
    Partition {
        #[command(flatten)]
        name: NameArg,
        /// Comma-separated nodes (`node2` or `2`); the rest form one more group.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Remove every partition, loss, limit and link down.
    Heal {
        #[command(flatten)]
        name: NameArg,
    },
    /// Drop a percentage of a node's packets, each way (0 removes it).
    Loss {
        #[command(flatten)]
        name: NameArg,
        node: String,
        percent: u8,
        /// Only on the link to these nodes (comma-separated).
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
    },
    /// Limit a node's bandwidth each way (tc rate: 100mbit, 512kbit; `off`).
    Limit {
        #[command(flatten)]
        name: NameArg,
        node: String,
        rate: String,
    },
    /// Take a node's link down or up.
    Link {
        #[command(flatten)]
        name: NameArg,
        node: String,
        #[arg(value_parser = ["up", "down"])]
        state: String,
    },
    /// Take a node's link down and up again, several times.
    Flap {
        #[command(flatten)]
        name: NameArg,
        node: String,
        #[arg(long, default_value_t = 5)]
        times: u32,
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        down: Duration,
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        up: Duration,
    },
    /// kill -9 a node.
    Kill {
        #[command(flatten)]
        name: NameArg,
        node: String,
    },
    /// Stop a node (SIGTERM; SIGKILL after 10 s).
    Stop {
        #[command(flatten)]
        name: NameArg,
        node: String,
    },
    /// Freeze a node (SIGSTOP).
    Pause {
        #[command(flatten)]
        name: NameArg,
        node: String,
    },
    /// Let a paused node run again (SIGCONT).
    Resume {
        #[command(flatten)]
        name: NameArg,
        node: String,
    },
    /// Start a stopped or killed node.
    Start {
        #[command(flatten)]
        name: NameArg,
        node: String,
        /// Shift the node's wall clock (+30s, -2m) through libfaketime.
        #[arg(long, allow_hyphen_values = true)]
        clock_offset: Option<String>,
    },
    /// Stop and start a node.
    Restart {
        #[command(flatten)]
        name: NameArg,
        node: String,
        /// Shift the node's wall clock (+30s, -2m) through libfaketime.
        #[arg(long, allow_hyphen_values = true)]
        clock_offset: Option<String>,
    },
}

impl NetnsCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let (name, fault) = match self {
            NetnsCommand::Up {
                name,
                validators,
                full_nodes,
                nat,
                subnet,
                dir,
                chain_id,
                json,
                params,
            } => {
                let net = up(&UpOptions {
                    name: name.name,
                    validators,
                    full_nodes,
                    nat,
                    subnet,
                    dir,
                    chain_id,
                    params: params.params(),
                    exe: std::env::current_exe().context("locating the tally binary")?,
                })?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&net)?);
                } else {
                    print!("{}", describe(&net));
                    println!(
                        "\nFaults: tally netns partition|heal|loss|limit|link|flap|kill|pause|restart --name {}\n\
                         A shell on a node's host: ip netns exec {} bash\n\
                         Remove it all: tally netns down --name {}",
                        net.name, net.nodes[0].namespace, net.name
                    );
                }
                return Ok(());
            }
            NetnsCommand::Down { name, all } => {
                let names = if all { list()? } else { vec![name.name] };
                for name in names {
                    down(&name)?;
                    println!("removed testnet {name}");
                }
                return Ok(());
            }
            NetnsCommand::Status { name, json } => {
                let net = Testnet::load(&name.name)?;
                if json {
                    let mut value = serde_json::to_value(&net)?;
                    for (node, entry) in net.nodes.iter().zip(
                        value["nodes"]
                            .as_array_mut()
                            .context("nodes in the state")?,
                    ) {
                        entry["process"] = super::process_state(node).into();
                    }
                    println!("{}", serde_json::to_string_pretty(&value)?);
                } else {
                    print!("{}", describe(&net));
                }
                return Ok(());
            }
            NetnsCommand::List => {
                for name in list()? {
                    println!("{name}");
                }
                return Ok(());
            }
            NetnsCommand::Partition { name, groups } => (
                name,
                Fault::Partition(
                    groups
                        .iter()
                        .map(|g| g.split(',').map(str::to_owned).collect())
                        .collect(),
                ),
            ),
            NetnsCommand::Heal { name } => (name, Fault::Heal),
            NetnsCommand::Loss {
                name,
                node,
                percent,
                to,
            } => (name, Fault::Loss { node, percent, to }),
            NetnsCommand::Limit { name, node, rate } => (name, Fault::Limit { node, rate }),
            NetnsCommand::Link { name, node, state } => (
                name,
                Fault::Link {
                    node,
                    up: state == "up",
                },
            ),
            NetnsCommand::Flap {
                name,
                node,
                times,
                down,
                up,
            } => (
                name,
                Fault::Flap {
                    node,
                    times,
                    down,
                    up,
                },
            ),
            NetnsCommand::Kill { name, node } => (name, Fault::Kill(node)),
            NetnsCommand::Stop { name, node } => (name, Fault::Stop(node)),
            NetnsCommand::Pause { name, node } => (name, Fault::Pause(node)),
            NetnsCommand::Resume { name, node } => (name, Fault::Resume(node)),
            NetnsCommand::Start {
                name,
                node,
                clock_offset,
            } => (name, Fault::Start { node, clock_offset }),
            NetnsCommand::Restart {
                name,
                node,
                clock_offset,
            } => (name, Fault::Restart { node, clock_offset }),
        };
        let net = Testnet::load(&name.name)?;
        println!("{}", super::fault(&net, &fault)?);
        Ok(())
    }
}
