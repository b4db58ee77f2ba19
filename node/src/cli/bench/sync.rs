//! `tally bench sync`: how fast a fresh full node catches up by block sync.
//!
//! It builds a chain on a localnet of validators (child processes of this
//! one) with the load generator, or reuses one built earlier in `--dir`,
//! measures this machine's signature-recovery rate (the bound: a synced
//! block's transactions are all recovered again), then starts a fresh full
//! node that knows every validator and times it from its start until its
//! tip reaches the height the validators had then. Where the time went
//! comes from the full node's own metrics: recovering signatures (ahead of
//! the ledger, on every core), checking certificates, executing and
//! committing (the ledger's thread), and the ledger waiting for its next
//! block.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tally_genesis::Genesis;
use tally_rpc::TallyApiClient;
use tokio::process::{Child, Command};

use super::{BenchConfig, calibrate, http};
use crate::cli::homes::{self, Ports};
use crate::cli::localnet::{ChildNode, stop_all};
use crate::config::{Config, Home};

/// What to run.
#[derive(Clone, Debug)]
pub struct SyncBenchConfig {
    /// The `tally` binary to run the nodes with.
    pub exe: PathBuf,
    pub validators: usize,
    /// Transfers the chain is built with.
    pub txs: usize,
    pub senders: usize,
    /// Rate of the load that builds the chain (transfers/s; 0: as fast as
    /// accepted).
    pub rate: u64,
    /// Keep the chain here; a chain already built here is reused.
    pub dir: Option<PathBuf>,
    /// Give up if the full node has not reached the tip by then.
    pub timeout: Duration,
    /// The full node installs a snapshot by state sync instead of
    /// replaying every block.
    pub state_sync: bool,
}

/// The validators' snapshot interval in a state sync run: the full node
/// starts once a snapshot past the end of the load exists, so what it
/// block-syncs after the snapshot is at most this many empty blocks.
const SNAPSHOT_INTERVAL: u64 = 20;

/// The chain a run built, recorded beside it for later runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Built {
    validators: usize,
    /// Transfers the load generator got committed.
    transfers: u64,
    height: u64,
    build_s: f64,
}

/// Everything measured, as printed and written to `--out`.
#[derive(Clone, Debug, Serialize)]
pub struct SyncBenchReport {
    pub validators: usize,
    /// Whether the full node state-synced (else it replayed every block).
    pub state_sync: bool,
    /// The height of the snapshot it installed (0: none).
    pub snapshot_height: u64,
    /// Accounts in the snapshot it installed.
    pub snapshot_accounts: u64,
    /// From its start until its RPC answered (state sync runs before the
    /// node starts serving).
    pub install_s: f64,
    /// Whether this run built the chain (false: reused from `--dir`).
    pub built: bool,
    pub build_s: f64,
    /// The validators' tip when the full node started: the target.
    pub target_height: u64,
    /// Transactions the full node committed on its way to the target.
    pub txs_synced: u64,
    /// From the full node's start to its tip reaching the target.
    pub time_to_tip_s: f64,
    /// From its first block to the target.
    pub sync_s: f64,
    pub blocks_per_s: f64,
    pub txs_per_s: f64,
    /// Signature recoveries per second with one thread per core.
    pub recover_per_s: f64,
    /// txs_per_s / recover_per_s: a synced block's transactions are all
    /// recovered, so recovery on every core is the bound.
    pub ratio_to_bound: f64,
    /// Seconds of the full node's time by stage, from its metrics.
    pub profile_s: BTreeMap<String, f64>,
    /// The full node's block hash at the target equals the validators'.
    pub same_chain: bool,
}

/// Runs the benchmark until it is done or `shutdown` resolves; nodes it
/// started are stopped when it returns, and a temporary directory is
/// removed.
pub async fn run(
    config: SyncBenchConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<SyncBenchReport> {
    let temp;
    let dir = match &config.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("tally-bench-sync")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir)?;
    let built_file = dir.join("built.json");
    let previous: Option<Built> = match std::fs::read(&built_file) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).context("reading built.json")?),
        Err(_) => None,
    };
    let validators = previous
        .as_ref()
        .map_or(config.validators, |b| b.validators);
    if previous.is_none() {
        let ports = Ports::free("127.0.0.1", "127.0.0.1", validators)?;
        homes::testnet(
            validators,
            1337,
            tally_genesis::ConsensusParams::default(),
            &dir,
            &ports,
        )
        .with_context(|| {
            format!(
                "{} holds no finished chain (no built.json): remove it or choose another --dir",
                dir.display()
            )
        })?;
    }
    let homes: Vec<PathBuf> = (0..validators)
        .map(|i| dir.join(format!("node{i}")))
        .collect();
    if config.state_sync {
        for home in &homes {
            let path = Home::new(home).config_file();
            let mut node_config = Config::load(&path)?;
            node_config.sync.snapshot_interval = SNAPSHOT_INTERVAL;
            std::fs::write(&path, node_config.documented())?;
        }
    }
    let mut nodes = Vec::new();
    let result = tokio::select! {
        result = measure(&config, &dir, &homes, previous, &mut nodes) => result,
        () = shutdown => Err(anyhow::anyhow!("interrupted")),
    };
    stop_all(&mut nodes).await;
    let (report, built) = result?;
    if report.built {
        std::fs::write(&built_file, serde_json::to_vec_pretty(&built)?)?;
    }
    Ok(report)
}

async fn measure(
    config: &SyncBenchConfig,
    dir: &Path,
    homes: &[PathBuf],
    previous: Option<Built>,
    nodes: &mut Vec<ChildNode>,
) -> anyhow::Result<(SyncBenchReport, Built)> {
    let mut rpcs = Vec::new();
    for (i, home) in homes.iter().enumerate() {
        let name = format!("node{i}");
        nodes.push(spawn_logged(&config.exe, &name, home)?);
        let listen = Config::load(&Home::new(home).config_file())?.rpc.listen;
        rpcs.push(format!("http://{listen}"));
    }
    for rpc in &rpcs {
        wait_height(rpc, 1, Duration::from_secs(60)).await?;
    }
    let fresh = previous.is_none();
    let built = match previous {
        Some(built) => {
            println!(
                "reusing the chain in {} ({} transfers, {} blocks)",
                dir.display(),
                built.transfers,
                built.height
            );
            built
        }
        None => {
            println!(
                "building a chain of {} transfers on {} validator(s)",
                config.txs,
                homes.len()
            );
            let started = Instant::now();
            let load = super::run(BenchConfig {
                endpoints: rpcs.clone(),
                senders: config.senders,
                txs: Some(config.txs),
                duration: None,
                rate: config.rate,
                window: 64,
                overload: None,
                connections: 4,
                batch: 500,
                nodes_on_machine: homes.len(),
                calibrate: false,
                drain_timeout: Duration::from_secs(120),
                eth: false,
            })
            .await?;
            let height = http(&rpcs[0])?.status().await?.latest_height;
            let built = Built {
                validators: homes.len(),
                transfers: load.committed,
                height,
                build_s: started.elapsed().as_secs_f64(),
            };
            println!(
                "built: {} transfers committed in {:.0} s, tip {height}",
                built.transfers, built.build_s
            );
            built
        }
    };
    let recover_per_s = tokio::task::spawn_blocking(calibrate).await?;
    if config.state_sync {
        let tip = http(&rpcs[0])?.status().await?.latest_height;
        let snapshot = (tip / SNAPSHOT_INTERVAL + 1) * SNAPSHOT_INTERVAL;
        println!("waiting for the snapshot at height {snapshot}");
        wait_height(&rpcs[0], snapshot + 1, Duration::from_secs(600)).await?;
    }

    // A fresh full node that knows every validator.
    let genesis = Genesis::load(&Home::new(&homes[0]).genesis_file())?;
    let mut bootstrap = Vec::new();
    for home in homes {
        let home = Home::new(home);
        let listen = Config::load(&home.config_file())?.p2p.listen;
        let peer = homes::node_peer_id(&home)?;
        bootstrap.extend(listen.iter().map(|a| format!("{a}/p2p/{peer}")));
    }
    let follower = Home::new(dir.join("follower"));
    if follower.root.exists() {
        std::fs::remove_dir_all(&follower.root)?;
    }
    let ports = homes::free_ports("127.0.0.1", 3)?;
    let mut fconfig = Config::default();
    fconfig.node.moniker = "follower".into();
    fconfig.p2p.listen = vec![format!("/ip4/127.0.0.1/tcp/{}", ports[0])];
    fconfig.p2p.bootstrap = bootstrap;
    fconfig.rpc.listen = format!("127.0.0.1:{}", ports[1]).parse()?;
    fconfig.metrics.enabled = true;
    fconfig.metrics.listen = format!("127.0.0.1:{}", ports[2]).parse()?;
    fconfig.sync.state_sync = config.state_sync;
    homes::init(&follower, genesis.chain_id, Some(genesis), true, fconfig)?;
    let follower_rpc = format!("http://127.0.0.1:{}", ports[1]);
    let follower_metrics = format!("127.0.0.1:{}", ports[2]);

    let source = http(&rpcs[0])?;
    let target = source.status().await?.latest_height;
    println!("syncing a fresh full node to height {target}");
    let started = Instant::now();
    nodes.push(spawn_logged(&config.exe, "follower", &follower.root)?);
    let client = http(&follower_rpc)?;
    let mut first_block = None;
    let mut install_s = None;
    let mut last_print = Instant::now();
    loop {
        if started.elapsed() > config.timeout {
            bail!(
                "the full node did not reach height {target} within {:?}",
                config.timeout
            );
        }
        if let Ok(status) = client.status().await {
            let height = status.latest_height;
            install_s.get_or_insert_with(|| started.elapsed().as_secs_f64());
            if height > 0 && first_block.is_none() {
                first_block = Some(Instant::now());
            }
            if height >= target {
                break;
            }
            if last_print.elapsed() >= Duration::from_secs(10) {
                last_print = Instant::now();
                println!(
                    "  height {height} of {target} after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let time_to_tip_s = started.elapsed().as_secs_f64();
    let sync_s = first_block.map_or(time_to_tip_s, |t| t.elapsed().as_secs_f64());
    let metrics = scrape(&follower_metrics)?;
    let ours = client.get_block_by_height(target).await?.map(|b| b.hash);
    let theirs = source.get_block_by_height(target).await?.map(|b| b.hash);

    let txs_synced = metrics
        .get("tally_ledger_txs_committed_total")
        .copied()
        .unwrap_or(0.0) as u64;
    let mut profile_s = BTreeMap::new();
    for (stage, series) in [
        ("ledger waiting", "tally_sync_wait_seconds_total"),
        ("block checks", "tally_ledger_certificate_seconds_sum"),
        ("signature recovery", "tally_ledger_recovery_seconds_sum"),
        ("execution", "tally_ledger_execution_seconds_sum"),
        ("commit", "tally_ledger_commit_seconds_sum"),
    ] {
        profile_s.insert(
            stage.to_string(),
            metrics.get(series).copied().unwrap_or(0.0),
        );
    }
    let txs_per_s = txs_synced as f64 / sync_s;
    let report = SyncBenchReport {
        validators: homes.len(),
        state_sync: config.state_sync,
        snapshot_height: metrics
            .get("tally_sync_snapshot_height")
            .copied()
            .unwrap_or(0.0) as u64,
        snapshot_accounts: metrics
            .get("tally_sync_snapshot_accounts")
            .copied()
            .unwrap_or(0.0) as u64,
        install_s: install_s.unwrap_or(time_to_tip_s),
        built: fresh,
        build_s: built.build_s,
        target_height: target,
        txs_synced,
        time_to_tip_s,
        sync_s,
        blocks_per_s: target as f64 / sync_s,
        txs_per_s,
        recover_per_s,
        ratio_to_bound: txs_per_s / recover_per_s,
        profile_s,
        same_chain: ours.is_some() && ours == theirs,
    };
    Ok((report, built))
}

/// Starts `tally start --home <home>` with its output in `<home>/node.log`.
fn spawn_logged(exe: &Path, name: &str, home: &Path) -> anyhow::Result<ChildNode> {
    let log = std::fs::File::create(home.join("node.log"))?;
    let child: Child = Command::new(exe)
        .arg("start")
        .arg("--home")
        .arg(home)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(ChildNode {
        name: name.into(),
        child,
    })
}

/// Waits until the node at `rpc` answers with a tip of at least `height`.
async fn wait_height(rpc: &str, height: u64, timeout: Duration) -> anyhow::Result<()> {
    let client = http(rpc)?;
    let started = Instant::now();
    loop {
        if let Ok(status) = client.status().await
            && status.latest_height >= height
        {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("{rpc} did not reach height {height} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One scrape of `/metrics` at `addr`: each series with its value.
fn scrape(addr: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (_, body) = response
        .split_once("\r\n\r\n")
        .context("not an HTTP response")?;
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect())
}

pub fn print(report: &SyncBenchReport) {
    if report.state_sync {
        println!(
            "state sync of a fresh full node from {} validator(s)",
            report.validators
        );
        println!(
            "  snapshot     height {} of {}, {} accounts, installed in {:.1} s",
            report.snapshot_height,
            report.target_height,
            report.snapshot_accounts,
            report.install_s
        );
        println!(
            "  time         {:.1} s to the tip ({} transactions block-synced after the snapshot)",
            report.time_to_tip_s, report.txs_synced
        );
        println!(
            "  same chain   {}",
            if report.same_chain { "yes" } else { "NO" }
        );
        return;
    }
    println!(
        "block sync of a fresh full node from {} validator(s)",
        report.validators
    );
    println!(
        "  chain        {} blocks, {} transactions synced",
        report.target_height, report.txs_synced
    );
    println!(
        "  time         {:.1} s to the tip ({:.1} s from the first block)",
        report.time_to_tip_s, report.sync_s
    );
    println!(
        "  rate         {:.0} blocks/s, {:.0} transactions/s",
        report.blocks_per_s, report.txs_per_s
    );
    println!(
        "  bound        {:.0} recoveries/s on every core: {:.0}% of it",
        report.recover_per_s,
        100.0 * report.ratio_to_bound
    );
    println!("  profile (seconds of the full node's time, stages may overlap)");
    for (stage, s) in &report.profile_s {
        println!(
            "    {stage:<20} {s:>7.1} s  {:>3.0}% of the sync",
            100.0 * s / report.sync_s
        );
    }
    println!(
        "  same chain   {}",
        if report.same_chain { "yes" } else { "NO" }
    );
}
