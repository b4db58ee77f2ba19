//! The adversarial suite: real misbehaving libp2p peers (built from the p2p
//! crate and the node's wire types) join a network of real `tally`
//! validator processes under a steady stream of transfers. Each scenario
//! measures the block rate before, during and after its attack, from the
//! chain itself, and checks that commits go on (at least half the
//! undisturbed rate during the attack, close to full rate soon after it),
//! that every accepted transfer is committed, that the nodes agree, that
//! their memory stays bounded, and that the attacker is disconnected where
//! the protocol can tell it misbehaves.
//!
//! The attacker rotates identities: when every node has dropped one, it
//! comes back with a fresh key, as a real attacker would (identities are
//! free). `lives > 1` means it was banned at least once.

mod byzantine;
mod keyless;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jsonrpsee_http_client::HttpClient;
use tally_genesis::Genesis;
use tally_ledger::{Hash, SecretKey};
use tally_node::config::{Config, Home};
use tally_p2p::{Event, Multiaddr, PeerId};
use tally_rpc::TallyApiClient;
use tempfile::TempDir;
use tokio::sync::mpsc;

use crate::harness::{
    Load, NodeProc, assert_agreement, client, committed, height, rpc_url, run, wait_for,
    wait_height,
};

const LONG: Duration = Duration::from_secs(90);
/// How long the undisturbed rate is measured, and each attack lasts.
const BASELINE: Duration = Duration::from_secs(6);
const ATTACK: Duration = Duration::from_secs(12);
/// Peak resident memory allowed per node (about 170 MB under load).
const MAX_RSS: u64 = 600 << 20;

/// Where the attacker connects, and the chain it pretends to belong to.
#[derive(Clone, Debug)]
pub struct Target {
    pub addrs: Vec<Multiaddr>,
    pub peers: Vec<PeerId>,
    pub chain_id: u64,
    pub genesis: Arc<Genesis>,
}

/// Validator processes of a testnet, with a stream of transfers.
pub struct Net {
    pub homes: Vec<PathBuf>,
    pub nodes: Vec<NodeProc>,
    pub clients: Vec<HttpClient>,
    pub target: Target,
    load: Option<Load>,
    /// What failed so far: every scenario runs, and the test fails at the
    /// end with all of them (so one run against an old build shows which
    /// defences it lacks).
    problems: std::sync::Mutex<Vec<String>>,
    // Last: the nodes (and their logs) go before their directory does.
    _dir: TempDir,
}

impl Net {
    /// A testnet of `validators`, of which the first `running` are started
    /// (the others' keys are the test's, for Byzantine scenarios).
    pub async fn start(validators: usize, running: usize) -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("net");
        run(&[
            "testnet",
            "--validators",
            &validators.to_string(),
            "--out",
            &out.display().to_string(),
            "--free-ports",
            "--block-interval-ms",
            "100",
            // Blocks keep coming when idle, so rates are steady.
            "--empty-block-interval-ms",
            "0",
        ]);
        let homes: Vec<PathBuf> = (0..validators)
            .map(|i| out.join(format!("node{i}")))
            .collect();
        // Every attacker comes from 127.0.0.1: refusing the host after three
        // banned identities would end each scenario after its first bans
        // (p2p's `a_host_whose_identities_keep_getting_banned_is_refused`
        // shows that defence). Here every life must meet the defences that
        // judge its messages.
        for home in &homes {
            let file = Home::new(home).config_file();
            let mut config = Config::load(&file).expect("config");
            config.p2p.banned_identities_per_host = 0;
            std::fs::write(&file, config.documented()).expect("write config");
        }
        let nodes: Vec<NodeProc> = homes[..running]
            .iter()
            .enumerate()
            .map(|(i, h)| NodeProc::start(&format!("node{i}"), h, &[]))
            .collect();
        let urls: Vec<String> = homes[..running].iter().map(|h| rpc_url(h)).collect();
        let clients: Vec<HttpClient> = urls.iter().map(|u| client(u)).collect();
        for c in &clients {
            wait_height(c, 2, LONG).await;
        }
        let genesis = Genesis::load(&Home::new(&homes[0]).genesis_file()).expect("genesis");
        let mut addrs = Vec::new();
        let mut peers = Vec::new();
        for h in &homes[..running] {
            let config = Config::load(&Home::new(h).config_file()).expect("config");
            let peer = run(&["keys", "peer-id", "--home", &h.display().to_string()]);
            let peer: PeerId = peer.trim().parse().expect("peer id");
            addrs.push(
                format!("{}/p2p/{peer}", config.p2p.listen[0])
                    .parse()
                    .expect("multiaddr"),
            );
            peers.push(peer);
        }
        let target = Target {
            addrs,
            peers,
            chain_id: genesis.chain_id,
            genesis: Arc::new(genesis),
        };
        let load = Some(Load::start(urls, target.chain_id));
        Net {
            homes,
            nodes,
            clients,
            target,
            load,
            problems: std::sync::Mutex::new(Vec::new()),
            _dir: dir,
        }
    }

    /// Records a failed expectation (printed at once, failed at the end).
    pub fn expect(&self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            let problem = problem();
            eprintln!("PROBLEM: {problem}");
            self.problems
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(problem);
        }
    }

    /// The key of validator `i` (for a Byzantine validator run by the test).
    pub fn validator_key(&self, i: usize) -> SecretKey {
        SecretKey::load(&self.homes[i].join("config/validator_key.json")).expect("validator key")
    }

    /// Blocks per second committed at node0 over `span`.
    pub async fn rate(&self, span: Duration) -> f64 {
        let start = height(&self.clients[0]).await.expect("node0 answers");
        let began = Instant::now();
        tokio::time::sleep(span).await;
        let end = height(&self.clients[0]).await.expect("node0 answers");
        (end - start) as f64 / began.elapsed().as_secs_f64()
    }

    /// Runs `attack` (given the target and a stop flag; it returns its
    /// report when the flag is set) for [`ATTACK`] and checks the chain
    /// around it.
    pub async fn survive<F, Fut>(&self, name: &str, attack: F) -> Report
    where
        F: FnOnce(Target, Arc<AtomicBool>) -> Fut,
        Fut: Future<Output = Report> + Send + 'static,
    {
        let running = self.begin(attack).await;
        tokio::time::sleep(ATTACK).await;
        self.end(name, running).await
    }

    /// Measures the undisturbed rate, then starts `attack`.
    pub async fn begin<F, Fut>(&self, attack: F) -> Running
    where
        F: FnOnce(Target, Arc<AtomicBool>) -> Fut,
        Fut: Future<Output = Report> + Send + 'static,
    {
        let baseline = self.rate(BASELINE).await;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(attack(self.target.clone(), stop.clone()));
        // Let the attack get going before measuring under it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        Running {
            baseline,
            stop,
            task,
            from: (
                height(&self.clients[0]).await.expect("node0"),
                Instant::now(),
            ),
        }
    }

    /// Stops the attack and checks the rates during and after it.
    pub async fn end(&self, name: &str, running: Running) -> Report {
        let (from, began) = running.from;
        let now = height(&self.clients[0]).await.expect("node0");
        let during = (now - from) as f64 / began.elapsed().as_secs_f64();
        running.stop.store(true, Ordering::Relaxed);
        let mut report = running.task.await.expect("attack task");
        // Full rate again soon after: measured over the 10 s that follow.
        let after = self.rate(Duration::from_secs(10)).await;
        let baseline = running.baseline;
        report.rates = (baseline, during, after);
        let peak = self
            .nodes
            .iter()
            .filter_map(|n| n.memory())
            .map(|(_, peak)| peak >> 20)
            .max()
            .unwrap_or(0);
        eprintln!(
            "{name}: {baseline:.1} blocks/s undisturbed, {during:.1} under attack, \
             {after:.1} after; attacker lives {}, messages sent {}; peak RSS {peak} MB",
            report.lives, report.sent
        );
        self.expect(during >= 0.5 * baseline, || {
            format!(
                "{name}: the attack cut the block rate from {baseline:.1} to {during:.1} blocks/s"
            )
        });
        self.expect(after >= 0.7 * baseline, || {
            format!(
                "{name}: the block rate did not recover: {after:.1} against {baseline:.1} blocks/s"
            )
        });
        self.check_memory(name);
        report
    }

    pub fn check_memory(&self, name: &str) {
        for node in &self.nodes {
            if let Some((rss, peak)) = node.memory() {
                self.expect(peak <= MAX_RSS, || {
                    format!(
                        "{name}: {} peaked at {} MB resident ({} MB now)",
                        node.name,
                        peak >> 20,
                        rss >> 20
                    )
                });
            }
        }
    }

    /// Stops the load, waits until every accepted transfer is committed
    /// and checks that the running nodes agree.
    pub async fn finish(mut self) {
        let (all, origins) = self.load.take().expect("load").finish_with_origins().await;
        assert!(!all.is_empty(), "no transfer was accepted");
        // A transfer only in the mempool of a node killed with kill -9
        // before it gossiped it is lost with that mempool, as in any chain:
        // those accepted by a node less than 2 s before it was killed are
        // excused.
        let lost_with = |origin: &crate::harness::Origin| {
            self.nodes[origin.node].killed_at.iter().any(|killed| {
                *killed >= origin.at && killed.duration_since(origin.at) < Duration::from_secs(2)
            })
        };
        let accepted: Vec<Hash> = all
            .iter()
            .zip(&origins)
            .filter(|(_, origin)| !lost_with(origin))
            .map(|(hash, _)| *hash)
            .collect();
        eprintln!(
            "{} transfers accepted, {} of them by a node just before it was killed",
            all.len(),
            all.len() - accepted.len()
        );
        for c in &self.clients {
            wait_for("mempool to drain", LONG, || async {
                c.status().await.ok().filter(|s| s.mempool_size == 0)
            })
            .await;
        }
        // The load may sign a nonce twice (it goes back to the chain's nonce
        // when a sender's transfers stall): both copies can be accepted by
        // different nodes, and only one can commit. An uncommitted transfer
        // whose nonce the chain has used since is such a replaced one; one
        // whose nonce is still free was lost.
        let done = committed(&self.clients[0], &accepted).await;
        let mut replaced = std::collections::HashSet::new();
        for (hash, origin) in all.iter().zip(&origins) {
            if accepted.contains(hash) && !done.contains_key(hash) {
                let account = self.clients[0]
                    .get_account(origin.sender.to_string())
                    .await
                    .expect("account");
                if account.nonce > origin.nonce {
                    replaced.insert(*hash);
                }
            }
        }
        let accepted: Vec<Hash> = accepted
            .into_iter()
            .filter(|h| !replaced.contains(h))
            .collect();
        eprintln!(
            "{} accepted transfers replaced by another of the same nonce",
            replaced.len()
        );
        for (i, c) in self.clients.iter().enumerate() {
            let done = committed(c, &accepted).await;
            self.expect(done.len() == accepted.len(), || {
                format!(
                    "node{i}: {} of {} accepted transfers were never committed",
                    accepted.len() - done.len(),
                    accepted.len()
                )
            });
        }
        assert_agreement(&self.clients).await;
        self.check_memory("end");
        let problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

/// An attack under way.
pub struct Running {
    baseline: f64,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Report>,
    from: (u64, Instant),
}

/// What an attack did.
#[derive(Debug, Default)]
pub struct Report {
    /// Identities used (each after every node dropped the previous one).
    pub lives: usize,
    /// Messages or requests sent.
    pub sent: u64,
    /// Block rates undisturbed, during and after.
    pub rates: (f64, f64, f64),
}

/// One identity of the attacker: a real libp2p peer of the chain.
pub struct Attacker {
    pub handle: tally_p2p::Handle,
    pub events: mpsc::Receiver<Event>,
    _dir: TempDir,
}

impl Attacker {
    /// Joins with a fresh identity, connected to every node.
    pub async fn join(target: &Target) -> Attacker {
        let dir = tempfile::tempdir().expect("tempdir");
        let (handle, events) = tally_p2p::spawn(tally_p2p::Config {
            key_file: dir.path().join("node_key"),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
            bootstrap: target.addrs.clone(),
            chain_id: target.chain_id,
            genesis_hash: target.genesis.hash().0,
            // Big enough for what the attacks send; the nodes' limits apply.
            max_message_bytes: 8 << 20,
            ..tally_p2p::Config::default()
        })
        .await
        .expect("attacker starts");
        let attacker = Attacker {
            handle,
            events,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while attacker.connected().await < target.peers.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        attacker
    }

    /// Nodes still connected to this identity.
    pub async fn connected(&self) -> usize {
        self.handle.peers().await.map_or(0, |p| p.len())
    }

    pub async fn leave(self) {
        let _ = self.handle.shutdown().await;
    }
}

/// What an attacker does with one identity: react to what the network
/// hands it, and act on a timer.
pub trait Behaviour: Send {
    /// How often `on_tick` runs.
    fn every(&self) -> Duration;
    /// Returns the number of messages or requests sent.
    fn on_event(&mut self, attacker: &Attacker, event: Event) -> impl Future<Output = u64> + Send;
    fn on_tick(&mut self, attacker: &Attacker) -> impl Future<Output = u64> + Send;
}

/// Runs `behaviour` with one identity after another until `stop`: a life
/// ends when every node has dropped the identity.
pub async fn with_identities<B: Behaviour>(
    target: Target,
    stop: Arc<AtomicBool>,
    mut behaviour: B,
) -> Report {
    let mut report = Report::default();
    while !stop.load(Ordering::Relaxed) {
        let mut attacker = Attacker::join(&target).await;
        report.lives += 1;
        let mut tick = tokio::time::interval(behaviour.every());
        let mut checked = Instant::now();
        loop {
            tokio::select! {
                event = attacker.events.recv() => match event {
                    Some(event) => report.sent += behaviour.on_event(&attacker, event).await,
                    None => break,
                },
                _ = tick.tick() => report.sent += behaviour.on_tick(&attacker).await,
            }
            if checked.elapsed() > Duration::from_millis(300) {
                checked = Instant::now();
                if stop.load(Ordering::Relaxed) || attacker.connected().await == 0 {
                    break;
                }
            }
        }
        attacker.leave().await;
    }
    report
}

/// Runs several identities at once, one per behaviour; their reports add up.
pub async fn with_many<B: Behaviour + 'static>(
    target: Target,
    stop: Arc<AtomicBool>,
    behaviours: Vec<B>,
) -> Report {
    let tasks: Vec<_> = behaviours
        .into_iter()
        .map(|b| tokio::spawn(with_identities(target.clone(), stop.clone(), b)))
        .collect();
    let mut report = Report::default();
    for task in tasks {
        let one = task.await.expect("attacker task");
        report.lives += one.lives;
        report.sent += one.sent;
    }
    report
}

/// A hash no block has.
pub fn junk_hash(tag: u64) -> Hash {
    tally_ledger::keccak256(&tag.to_le_bytes())
}

/// A validator node's own view of the chain height.
pub async fn tip(net: &Net, i: usize) -> u64 {
    net.clients[i].status().await.expect("status").latest_height
}
