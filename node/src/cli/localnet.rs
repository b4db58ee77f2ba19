//! `tally localnet`: runs the nodes of a generated testnet as child
//! processes of this one, prefixes their log lines with their name, and
//! stops them all (SIGTERM, then SIGKILL after a grace period) on Ctrl-C or
//! SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// How long children get to stop after SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

/// A node running as a child process.
#[derive(Debug)]
pub struct ChildNode {
    pub name: String,
    pub child: Child,
}

/// Starts `tally start --home <home>` for each home, forwarding output.
pub fn spawn_nodes(exe: &Path, homes: &[PathBuf]) -> anyhow::Result<Vec<ChildNode>> {
    homes
        .iter()
        .enumerate()
        .map(|(i, home)| {
            let name = format!("node{i}");
            let mut child = Command::new(exe)
                .arg("start")
                .arg("--home")
                .arg(home)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {name}"))?;
            if let Some(out) = child.stdout.take() {
                forward(name.clone(), out);
            }
            if let Some(err) = child.stderr.take() {
                forward(name.clone(), err);
            }
            Ok(ChildNode { name, child })
        })
        .collect()
}

fn forward(name: String, stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            println!("[{name}] {line}");
        }
    });
}

/// Runs until `shutdown`, reporting children that exit on their own, then
/// stops the rest.
pub async fn supervise(
    mut nodes: Vec<ChildNode>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = poll.tick() => {
                nodes.retain_mut(|node| match node.child.try_wait() {
                    Ok(Some(status)) => {
                        warn!(node = node.name, %status, "node exited");
                        false
                    }
                    _ => true,
                });
                if nodes.is_empty() {
                    anyhow::bail!("every node has exited");
                }
            }
        }
    }
    info!("stopping {} nodes", nodes.len());
    stop_all(&mut nodes).await;
    Ok(())
}

/// SIGTERM to every node, then SIGKILL to those still running after the
/// grace period.
pub async fn stop_all(nodes: &mut [ChildNode]) {
    for node in nodes.iter() {
        if let Some(pid) = node.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for node in nodes.iter_mut() {
        if tokio::time::timeout(GRACE, node.child.wait())
            .await
            .is_err()
        {
            warn!(node = node.name, "did not stop in time: killing it");
            let _ = node.child.kill().await;
        }
    }
}
