//! Running real `tally` processes from tests: homes in a temporary
//! directory, logs in files (scanned by the tests, printed on failure),
//! every process killed and every directory removed when dropped.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};
use tally_genesis::dev_keys;
use tally_ledger::{Address, Hash, SecretKey, SignedTransaction, Transaction, TxLocation};
use tally_node::config::{Config, Home};
use tally_rpc::TallyApiClient;
use tokio::sync::Mutex;

/// Tests that run several nodes take this, so that two of them never share
/// the two cores (their timing assertions compare rates within one run).
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::const_new(());
    HEAVY.lock().await
}

/// The `tally` binary under test: this build's, or `TALLY_BIN` (to run
/// the same tests against another build, e.g. the code before a fix).
pub fn tally() -> Command {
    Command::new(std::env::var_os("TALLY_BIN").unwrap_or(env!("CARGO_BIN_EXE_tally").into()))
}

/// Runs a `tally` command to completion and returns its stdout.
pub fn run(args: &[&str]) -> String {
    let output = tally().args(args).output().expect("run tally");
    assert!(
        output.status.success(),
        "tally {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// `tally testnet` of four validators under `dir` (every port free, 100 ms
/// blocks, empty blocks whenever due, so heights keep coming): the homes.
pub fn four_validator_homes(dir: &Path) -> Vec<PathBuf> {
    let out = dir.join("net");
    let out_s = out.display().to_string();
    run(&[
        "testnet",
        "--validators",
        "4",
        "--out",
        &out_s,
        "--free-ports",
        "--block-interval-ms",
        "100",
        "--empty-block-interval-ms",
        "0",
    ]);
    (0..4).map(|i| out.join(format!("node{i}"))).collect()
}

/// A home at `dir/name` for a node that joins the chain of `homes` (a
/// full node, or one with a validator key of its own that no set holds
/// yet), on free loopback ports, bootstrapping from all of them.
pub fn joining_home(dir: &Path, name: &str, homes: &[PathBuf], full_node: bool) -> PathBuf {
    let home = dir.join(name);
    let genesis = homes[0].join("config/genesis.json");
    let home_s = home.display().to_string();
    let genesis_s = genesis.display().to_string();
    let mut args = vec!["init", "--home", &home_s, "--genesis", &genesis_s];
    if full_node {
        args.push("--full-node");
    }
    run(&args);
    let joining = Home::new(&home);
    let mut config = Config::load(&joining.config_file()).expect("config");
    config.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    config.rpc.listen = "127.0.0.1:0".parse().expect("addr");
    config.p2p.bootstrap = homes
        .iter()
        .map(|h| {
            let c = Config::load(&Home::new(h).config_file()).expect("config");
            let peer = run(&["keys", "peer-id", "--home", &h.display().to_string()]);
            format!("{}/p2p/{}", c.p2p.listen[0], peer.trim())
        })
        .collect();
    std::fs::remove_file(joining.config_file()).expect("remove config");
    config
        .save_new(&joining.config_file())
        .expect("save config");
    home
}

/// The validator key file of the node in `home`.
pub fn validator_key_file(home: &Path) -> PathBuf {
    let home = Home::new(home);
    let config = Config::load(&home.config_file()).expect("config");
    home.resolve(config.node.validator_key.as_ref())
}

/// A `tally start` process.
#[derive(Debug)]
pub struct NodeProc {
    pub name: String,
    pub log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// When it was killed with `kill9`.
    pub killed_at: Vec<Instant>,
    /// The log's length when the running process started.
    log_start: usize,
    /// Environment variables of the next starts (beside `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl NodeProc {
    /// `tally start --home <home> <extra>`.
    pub fn start(name: &str, home: &Path, extra: &[&str]) -> NodeProc {
        Self::spawn(name, home, "start", extra)
    }

    /// `tally <command> --home <home> <extra>`, logging to `<home>/../<name>.log`.
    pub fn spawn(name: &str, home: &Path, command: &str, extra: &[&str]) -> NodeProc {
        let mut node = Self::new(name, home, command, extra);
        node.restart();
        node
    }

    /// Like [`NodeProc::start`], with environment variables for this and
    /// later starts (until `env` is changed).
    pub fn start_with_env(name: &str, home: &Path, env: &[(&str, &str)]) -> NodeProc {
        let mut node = Self::new(name, home, "start", &[]);
        node.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        node.restart();
        node
    }

    /// Not started yet.
    fn new(name: &str, home: &Path, command: &str, extra: &[&str]) -> NodeProc {
        let log = home
            .parent()
            .expect("home has a parent")
            .join(format!("{name}.log"));
        let mut args = vec![
            command.to_string(),
            "--home".into(),
            home.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        NodeProc {
            name: name.into(),
            log,
            args,
            child: None,
            killed_at: Vec::new(),
            log_start: 0,
            env: Vec::new(),
        }
    }

    /// Starts the process again with the same arguments (appending to the
    /// same log).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        self.log_start = log.metadata().map_or(0, |m| m.len() as usize);
        let child = tally()
            .args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn tally start");
        self.child = Some(child);
    }

    /// SIGKILL: no chance to clean up, like a power cut.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.killed_at.push(Instant::now());
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident and peak resident memory in bytes (`VmRSS`, `VmHWM`).
    pub fn memory(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON-RPC URL the running process printed ("JSON-RPC listening on
    /// http://...").
    pub async fn rpc_url(&self) -> String {
        self.printed_url("RPC address", "JSON-RPC listening on ")
            .await
    }

    /// The metrics URL the running process printed ("metrics at
    /// http://.../metrics").
    pub async fn metrics_url(&self) -> String {
        self.printed_url("metrics address", "metrics at ").await
    }

    /// The first word after `marker` in this run's log, once it is there.
    async fn printed_url(&self, what: &str, marker: &str) -> String {
        wait_for(
            &format!("{}'s {what}", self.name),
            Duration::from_secs(60),
            || async {
                let text = self.log_text();
                let text = text.get(self.log_start..)?;
                let start = text.find(&format!("{marker}http://"))?;
                let rest = &text[start + marker.len()..];
                Some(rest.split_whitespace().next()?.to_string())
            },
        )
        .await
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- last log lines of {} ----", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// `tally dev` as the tests run it: every port picked free, 50 ms blocks.
pub const DEV_ARGS: &[&str] = &[
    "--rpc-listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "127.0.0.1:0",
    "--block-interval-ms",
    "50",
];

/// A node config for a node started in this process: p2p and JSON-RPC on
/// free loopback ports.
pub fn loopback_config() -> Config {
    let mut config = Config::default();
    config.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    config.rpc.listen = "127.0.0.1:0".parse().expect("addr");
    config
}

pub fn client(url: &str) -> HttpClient {
    HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(10))
        .build(url)
        .expect("rpc client")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node's latest height, or `None` while it does not answer.
pub async fn height(client: &HttpClient) -> Option<u64> {
    client.status().await.ok().map(|s| s.latest_height)
}

pub async fn wait_height(client: &HttpClient, target: u64, timeout: Duration) -> u64 {
    wait_for(&format!("height {target}"), timeout, || async {
        height(client).await.filter(|h| *h >= target)
    })
    .await
}

/// A signed transfer, hex encoded for `tally_sendRawTransaction`.
pub fn transfer(
    key: &SecretKey,
    chain_id: u64,
    nonce: u64,
    to: Address,
    amount: u128,
) -> SignedTransaction {
    Transaction {
        chain_id,
        nonce,
        to,
        amount,
        fee: 1,
        memo: Vec::new(),
    }
    .sign(key)
}

pub fn raw(tx: &SignedTransaction) -> String {
    format!("0x{}", hex::encode(tx.encode()))
}

pub fn rpc_url(home: &Path) -> String {
    let config = Config::load(&Home::new(home).config_file()).expect("config");
    format!("http://{}", config.rpc.listen)
}

/// Block hashes of heights `1..=to` as `client` has them.
pub async fn hashes(client: &HttpClient, to: u64) -> Vec<Hash> {
    let mut out = Vec::with_capacity(to as usize);
    for h in 1..=to {
        let block = client
            .get_block_by_height(h)
            .await
            .expect("rpc")
            .unwrap_or_else(|| panic!("block {h} missing"));
        out.push(block.hash);
    }
    out
}

/// Every node has the same block at every height up to the lowest tip.
pub async fn assert_agreement(clients: &[HttpClient]) -> Vec<Hash> {
    let mut tips = Vec::new();
    for c in clients {
        tips.push(height(c).await.expect("node answers"));
    }
    let common = *tips.iter().min().expect("nodes");
    let reference = hashes(&clients[0], common).await;
    for (i, c) in clients.iter().enumerate().skip(1) {
        assert_eq!(hashes(c, common).await, reference, "node{i} disagrees");
    }
    reference
}

/// Where and when the load's transfer was accepted.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    pub node: usize,
    pub at: Instant,
    pub sender: Address,
    pub nonce: u64,
}

/// Submits transfers from the dev accounts round-robin over the nodes
/// until stopped, and remembers what was accepted.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub accepted: Arc<Mutex<Vec<Hash>>>,
    /// For each accepted transfer, the node (index into the URLs) that
    /// accepted it and when, its sender and nonce.
    pub origins: Arc<Mutex<Vec<Origin>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub fn start(urls: Vec<String>, chain_id: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let origins = Arc::new(Mutex::new(Vec::new()));
        let (stop2, accepted2, origins2) = (stop.clone(), accepted.clone(), origins.clone());
        let task = tokio::spawn(async move {
            let clients: Vec<HttpClient> = urls.iter().map(|u| client(u)).collect();
            let keys = dev_keys();
            let senders = &keys[..8];
            let sink = Address([0x42; 20]);
            let mut nonces: HashMap<Address, u64> = HashMap::new();
            // The chain's nonce of each sender at the last look.
            let mut seen_on_chain: HashMap<Address, u64> = HashMap::new();
            let mut round = 0usize;
            while !stop2.load(Ordering::Relaxed) {
                round += 1;
                for (i, key) in senders.iter().enumerate() {
                    let index = (round + i) % clients.len();
                    let node = &clients[index];
                    // Every few rounds take the chain's nonce again: a node
                    // killed with our transactions in its mempool lost them.
                    // The highest any node reports: one that is still
                    // syncing has an old nonce, and a transfer signed with
                    // it could never commit.
                    if round % 10 == 1 || !nonces.contains_key(&key.address()) {
                        let mut best = None;
                        for c in &clients {
                            if let Ok(account) = c.get_account(key.address().to_string()).await {
                                best = best.max(Some(account.nonce));
                            }
                        }
                        // Only back to the chain's nonce when it has stood
                        // still since the last look (our transfers were
                        // lost): while it moves, ours are still pending, and
                        // signing their nonces again would make two
                        // transfers of one nonce, of which one must fail.
                        if let Some(chain) = best {
                            let stalled = seen_on_chain.insert(key.address(), chain) == Some(chain);
                            let ours = nonces.get(&key.address()).copied().unwrap_or(0);
                            let nonce = if stalled || ours < chain { chain } else { ours };
                            nonces.insert(key.address(), nonce);
                        }
                    }
                    let Some(nonce) = nonces.get(&key.address()).copied() else {
                        continue;
                    };
                    let tx = transfer(key, chain_id, nonce, sink, round as u128);
                    if let Ok(hash) = node.send_raw_transaction(raw(&tx)).await {
                        nonces.insert(key.address(), nonce + 1);
                        accepted2.lock().await.push(hash);
                        origins2.lock().await.push(Origin {
                            node: index,
                            at: Instant::now(),
                            sender: key.address(),
                            nonce,
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Load {
            stop,
            accepted,
            origins,
            task,
        }
    }

    /// The accepted hashes, and for each the node and time it was accepted.
    pub async fn finish_with_origins(self) -> (Vec<Hash>, Vec<Origin>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let accepted = self.accepted.lock().await.clone();
        let origins = self.origins.lock().await.clone();
        (accepted, origins)
    }
}

/// The invariants after a load under faults, once the load has stopped:
/// the mempools drain; every transfer that got a hash back is committed,
/// at the same place on every node, or reported dropped by the node that
/// accepted it (none stranded); the load's accounts have the same balance
/// and nonce everywhere; no node saw a validator sign two conflicting
/// messages (`logs`: each node's name and log). Returns how many were
/// committed.
pub async fn assert_settled(
    clients: &[HttpClient],
    accepted: &[Hash],
    origins: &[Origin],
    logs: &[(String, String)],
) -> usize {
    assert!(
        accepted.len() > 50,
        "only {} transfers accepted",
        accepted.len()
    );
    for c in clients {
        wait_for("mempool to drain", Duration::from_secs(90), || async {
            c.status().await.ok().filter(|s| s.mempool_size == 0)
        })
        .await;
    }
    let on_chain = committed(&clients[0], accepted).await;
    for (i, c) in clients.iter().enumerate().skip(1) {
        let theirs = committed(c, accepted).await;
        assert!(theirs == on_chain, "node{i} has other transfers committed");
    }
    let mut dropped = 0;
    let mut stranded = Vec::new();
    for (hash, origin) in accepted.iter().zip(origins) {
        if on_chain.contains_key(hash) {
            continue;
        }
        let info = clients[origin.node]
            .get_transaction(hash.to_string())
            .await
            .expect("rpc");
        match info.status {
            tally_rpc::TxStatusInfo::Dropped { .. } => dropped += 1,
            other => stranded.push((*hash, origin.node, other)),
        }
    }
    eprintln!(
        "{} transfers accepted: {} committed, {dropped} reported dropped, {} stranded",
        accepted.len(),
        on_chain.len(),
        stranded.len()
    );
    assert!(stranded.is_empty(), "accepted but lost: {stranded:?}");
    let keys = dev_keys();
    let mut watched: Vec<Address> = keys[..8].iter().map(|k| k.address()).collect();
    watched.push(Address([0x42; 20]));
    for address in &watched {
        let mut balances = Vec::new();
        for c in clients {
            let a = c.get_account(address.to_string()).await.expect("account");
            balances.push((a.balance, a.nonce));
        }
        assert!(
            balances.windows(2).all(|w| w[0] == w[1]),
            "balances of {address} differ: {balances:?}"
        );
    }
    for (name, log) in logs {
        assert!(
            !log.contains("signed conflicting messages"),
            "{name} saw a double sign"
        );
    }
    on_chain.len()
}

/// Which of `hashes` are committed, and where, according to `client`.
pub async fn committed(client: &HttpClient, hashes: &[Hash]) -> BTreeMap<Hash, TxLocation> {
    let mut out = BTreeMap::new();
    for hash in hashes {
        if let Some(location) = client
            .get_transaction(hash.to_string())
            .await
            .expect("rpc")
            .location()
        {
            out.insert(*hash, location);
        }
    }
    out
}

/// One scrape of a node's `/metrics`: each series (`name{labels}`) with
/// its value, parsed from the OpenMetrics text.
#[derive(Debug, Default)]
pub struct Scrape(
    pub std::collections::BTreeMap<String, f64>,
    /// Every metric family named by a `# TYPE` line.
    pub Vec<String>,
);

impl Scrape {
    /// The value of one series, e.g. `tally_mempool_admitted_total{kind="local"}`
    /// (0 if absent: a counter not touched yet).
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The sum over every label set of metric `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }

    /// Whether any series of `name` (any suffix) is exported.
    pub fn has(&self, name: &str) -> bool {
        self.0.keys().any(|k| k.starts_with(name))
    }
}

/// GETs `url` (`http://host:port/metrics`) and parses the text format.
pub fn scrape(url: &str) -> Scrape {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (addr, path) = rest.split_once('/').expect("a path");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(
        body.trim_end().ends_with("# EOF"),
        "an OpenMetrics body ends with # EOF"
    );
    let families = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let mut series = std::collections::BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (key, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number in {line:?}")),
        };
        series.insert(key.to_string(), value);
    }
    Scrape(series, families)
}
