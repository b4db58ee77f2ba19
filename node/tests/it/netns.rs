//! Validators on separate emulated hosts (`tally netns`: one network
//! namespace each, on a bridge) under a steady stream of transfers, through
//! the faults real networks have: partitions, packet loss, a flapping link,
//! a shifted clock, kill -9 of one and of all. After each fault heals,
//! every node advances within 20 s; at the end the CometBFT e2e invariants
//! hold (no fork, every accepted transfer committed once or reported
//! dropped, balances agree, no double sign).
//!
//! Needs root, `ip`, `nft` and `tc` (scripts/ensure-deps.sh installs them
//! when run as root); skipped with a message otherwise, or when
//! `TALLY_NETNS_TESTS=0`.

use std::time::{Duration, Instant};

use jsonrpsee_http_client::HttpClient;
use tally_node::cli::netns::Testnet;
use tally_rpc::TallyApiClient;

use crate::harness::{
    Load, assert_agreement, assert_settled, client, height, scrape, tally, wait_for,
};

/// How long a healed network has to make progress again (the bound).
const RESUME: Duration = Duration::from_secs(20);
const LONG: Duration = Duration::from_secs(90);

/// A `tally netns` testnet for one test: brought down when dropped (also
/// when the test fails, after printing the tail of every node's log).
struct Net {
    state: Testnet,
    clients: Vec<HttpClient>,
}

/// Why netns tests cannot run here, if they cannot.
fn unsupported() -> Option<String> {
    if std::env::var("TALLY_NETNS_TESTS").as_deref() == Ok("0") {
        return Some("TALLY_NETNS_TESTS=0".into());
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
    if !root {
        return Some("not running as root".into());
    }
    for tool in ["ip", "nft", "tc"] {
        let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(tool).exists());
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

impl Net {
    /// `tally netns up` with these extra arguments, or None (and a message)
    /// where netns tests cannot run.
    fn up(test: &str, extra: &[&str]) -> Option<Net> {
        if let Some(why) = unsupported() {
            eprintln!("SKIPPED {test}: {why} (netns tests need root, iproute2, nftables)");
            return None;
        }
        sweep_stale();
        let name = format!("it{}", std::process::id());
        let mut args = vec![
            "netns",
            "up",
            "--name",
            &name,
            "--json",
            "--block-interval-ms",
            "100",
            "--empty-block-interval-ms",
            "0",
        ];
        args.extend(extra);
        let out = tally().args(&args).output().expect("run tally netns up");
        if !out.status.success() {
            let _ = tally().args(["netns", "down", "--name", &name]).output();
            panic!(
                "tally netns up failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let state: Testnet = serde_json::from_slice(&out.stdout).expect("netns state");
        let clients = state.nodes.iter().map(|n| client(&n.rpc)).collect();
        Some(Net { state, clients })
    }

    fn urls(&self, nodes: std::ops::Range<usize>) -> Vec<String> {
        self.state.nodes[nodes]
            .iter()
            .map(|n| n.rpc.clone())
            .collect()
    }

    /// `tally netns <args> --name <this one>`; its output.
    fn fault(&self, args: &[&str]) -> String {
        let mut all = vec!["netns"];
        all.extend(args);
        all.extend(["--name", &self.state.name]);
        let out = tally().args(&all).output().expect("run tally netns");
        assert!(
            out.status.success(),
            "tally {all:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        eprintln!("[netns] {text}");
        text
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.state.nodes[i].home.join("node.log")).unwrap_or_default()
    }

    fn logs(&self, nodes: std::ops::Range<usize>) -> Vec<(String, String)> {
        nodes
            .map(|i| (self.state.nodes[i].name.clone(), self.log(i)))
            .collect()
    }

    /// Heights of `nodes` (None: not answering).
    async fn heights(&self, nodes: std::ops::Range<usize>) -> Vec<Option<u64>> {
        let mut out = Vec::new();
        for c in &self.clients[nodes] {
            out.push(height(c).await);
        }
        out
    }

    /// Waits until every node of `nodes` is past `above`, within `within`;
    /// how long it took.
    async fn advance(
        &self,
        nodes: std::ops::Range<usize>,
        above: u64,
        within: Duration,
    ) -> Duration {
        let start = Instant::now();
        for i in nodes {
            let c = &self.clients[i];
            let left = within.saturating_sub(start.elapsed());
            wait_for(&format!("node{i} past height {above}"), left, || async {
                height(c).await.filter(|h| *h > above)
            })
            .await;
        }
        start.elapsed()
    }

    /// The highest height among `nodes`.
    async fn top(&self, nodes: std::ops::Range<usize>) -> u64 {
        self.heights(nodes)
            .await
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The homes go with the testnet: keep the logs, and show the
            // end of each (and any panic of a node).
            let keep = std::env::temp_dir().join(format!("tally-netns-logs-{}", self.state.name));
            let _ = std::fs::create_dir_all(&keep);
            for i in 0..self.state.nodes.len() {
                let log = self.log(i);
                let _ = std::fs::write(keep.join(format!("node{i}.log")), &log);
                let lines: Vec<&str> = log.lines().collect();
                let end = lines
                    .iter()
                    .position(|l| l.contains("panicked at"))
                    .map_or(lines.len(), |p| p + 2);
                eprintln!("--- node{i} log (to line {end}) ---");
                for line in &lines[end.saturating_sub(25)..end.min(lines.len())] {
                    eprintln!("{line}");
                }
            }
            eprintln!("the nodes' whole logs are in {}", keep.display());
        }
        let _ = tally()
            .args(["netns", "down", "--name", &self.state.name])
            .output();
    }
}

/// Brings down testnets an earlier test process left behind (killed before
/// its Drop ran): those named `it<pid>` whose process is gone.
fn sweep_stale() {
    let Ok(out) = tally().args(["netns", "list"]).output() else {
        return;
    };
    for name in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(pid) = name.strip_prefix("it") else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("removing the stale netns testnet {name}");
            let _ = tally().args(["netns", "down", "--name", name]).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn four_hosts_survive_partitions_loss_flaps_clock_skew_and_kills() {
    let _heavy = crate::harness::heavy().await;
    let Some(net) = Net::up("four_hosts", &["--validators", "4"]) else {
        return;
    };
    let all = 0..4;
    net.advance(all.clone(), 2, LONG).await;
    let chain_id = net.clients[0].status().await.expect("status").chain_id;
    let load = Load::start(net.urls(all.clone()), chain_id);
    net.advance(all.clone(), 8, LONG).await;
    assert_agreement(&net.clients).await;

    // 2/2: no side has 2/3 of the power; the chain halts (at most the
    // height in flight completes) and nobody forks.
    net.fault(&["partition", "0,1", "2,3"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let halted = net.top(all.clone()).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = net.top(all.clone()).await;
    assert!(
        after <= halted + 1,
        "a 2/2 split committed: {halted} -> {after}"
    );
    assert_agreement(&net.clients).await;
    net.fault(&["heal"]);
    let took = net.advance(all.clone(), after + 1, RESUME).await;
    eprintln!("2/2 partition healed: every node advanced in {took:?}");

    // 3/1: the three keep committing; the one catches up after the heal.
    net.fault(&["partition", "3"]);
    let cut = net.top(0..3).await;
    net.advance(0..3, cut + 5, RESUME).await;
    let alone = net.heights(3..4).await[0].expect("node3 answers");
    assert!(alone <= cut + 1, "the isolated node committed alone");
    net.fault(&["heal"]);
    let tip = net.top(0..3).await;
    let took = net.advance(3..4, tip, RESUME).await;
    eprintln!(
        "3/1 partition healed: node3 caught up {} heights in {took:?}",
        tip - alone
    );

    // 30% of node0's packets lost each way for 30 s: commits continue.
    net.fault(&["loss", "0", "30"]);
    let before = net.top(all.clone()).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = net.top(all.clone()).await;
    eprintln!("30% loss on node0: {} heights in 30 s", during - before);
    assert!(
        during >= before + 10,
        "commits stalled under loss: {before} -> {during}"
    );
    net.fault(&["loss", "0", "0"]);
    let top = net.top(all.clone()).await;
    net.advance(all.clone(), top, RESUME).await;

    // node1's link flaps (down 2 s, up 2 s, three times), then its clock
    // runs 20 s ahead: the others go on, and it follows.
    net.fault(&["flap", "1", "--times", "3", "--down", "2s", "--up", "2s"]);
    let top = net.top(all.clone()).await;
    net.advance(all.clone(), top, RESUME).await;
    net.fault(&["restart", "1", "--clock-offset", "+20s"]);
    let top = net.top(all.clone()).await;
    net.advance(all.clone(), top + 3, RESUME).await;

    // kill -9 of one: the others go on; restarted, it catches up.
    net.fault(&["kill", "2"]);
    let top = net.top(0..2).await;
    net.advance(0..2, top + 3, RESUME).await;
    net.fault(&["start", "2"]);
    let top = net.top(0..2).await;
    net.advance(all.clone(), top, RESUME).await;

    // kill -9 of all four at once, under load; all started again, they go on.
    let top = net.top(all.clone()).await;
    for i in ["0", "1", "2", "3"] {
        net.fault(&["kill", i]);
    }
    for i in ["0", "1", "2", "3"] {
        net.fault(&["start", i]);
    }
    let took = net.advance(all.clone(), top + 1, RESUME).await;
    eprintln!("kill -9 of all four: every node advanced again in {took:?}");

    let (accepted, origins) = load.finish_with_origins().await;
    let committed = assert_settled(&net.clients, &accepted, &origins, &net.logs(all.clone())).await;
    assert!(committed > 0);
    assert_agreement(&net.clients).await;
    for node in &net.state.nodes {
        let m = scrape(&node.metrics);
        assert_eq!(
            m.sum("tally_consensus_equivocations_total"),
            0.0,
            "{}",
            node.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn seven_hosts_survive_two_crashes_and_an_isolated_proposer() {
    let _heavy = crate::harness::heavy().await;
    let Some(net) = Net::up("seven_hosts", &["--validators", "7"]) else {
        return;
    };
    let all = 0..7;
    net.advance(all.clone(), 2, LONG).await;
    let chain_id = net.clients[0].status().await.expect("status").chain_id;
    let load = Load::start(net.urls(all.clone()), chain_id);

    // f = 2 crashed: the other five (5 of 7 > 2/3) keep committing.
    net.fault(&["kill", "5"]);
    net.fault(&["kill", "6"]);
    let top = net.top(0..5).await;
    net.advance(0..5, top + 5, RESUME).await;
    net.fault(&["start", "5"]);
    net.fault(&["start", "6"]);
    let top = net.top(0..5).await;
    net.advance(all.clone(), top, RESUME).await;

    // The proposer of the height in progress is cut off. The other six go
    // on: eight heights later (proposers rotate through all seven) the
    // isolated one was the proposer at least once more, and its rounds
    // timed out into the next proposer's.
    let state = net.clients[0]
        .consensus_state()
        .await
        .expect("consensusState");
    let proposer = state.proposer.expect("a proposer");
    let mut isolated = None;
    for (i, c) in net.clients.iter().enumerate() {
        if c.status().await.expect("status").validator == Some(proposer) {
            isolated = Some(i);
        }
    }
    let isolated = isolated.expect("the proposer is one of the nodes");
    let others: Vec<usize> = all.clone().filter(|&i| i != isolated).collect();
    let watcher = others[0];
    let mark = net.log(watcher).len();
    net.fault(&["partition", &isolated.to_string()]);
    let start = Instant::now();
    for &i in &others {
        net.advance(i..i + 1, state.height + 8, RESUME).await;
    }
    let late_rounds = net.log(watcher)[mark..]
        .lines()
        .filter(|l| l.contains("decided height=") && !l.contains(" round=0 "))
        .count();
    eprintln!(
        "proposer node{isolated} of height {} isolated: the other six made 8 heights in {:?} \
         (node{watcher} decided {late_rounds} of them after round 0)",
        state.height,
        start.elapsed()
    );
    assert!(
        late_rounds > 0,
        "no height needed a second round with its proposer cut off"
    );
    net.fault(&["heal"]);
    let top = net.top(all.clone()).await;
    net.advance(all.clone(), top, RESUME).await;

    let (accepted, origins) = load.finish_with_origins().await;
    assert_settled(&net.clients, &accepted, &origins, &net.logs(all.clone())).await;
    assert_agreement(&net.clients).await;
}

/// The peer ids each node is connected to.
async fn peers_of(c: &HttpClient) -> Vec<String> {
    c.net_info()
        .await
        .map(|peers| peers.into_iter().map(|p| p.peer_id).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn full_nodes_find_every_validator_from_one_address_and_churn_leaves_validators_connected() {
    let _heavy = crate::harness::heavy().await;
    // node4..node6 are full nodes that know only node0's address.
    let Some(net) = Net::up("discovery", &["--validators", "4", "--full-nodes", "3"]) else {
        return;
    };
    let validators = 0..4;
    let ids: Vec<String> = net.state.nodes.iter().map(|n| n.peer_id.clone()).collect();
    // node6 joins late, from genesis.
    net.fault(&["kill", "6"]);
    net.advance(validators.clone(), 30, LONG).await;
    net.fault(&["start", "6"]);
    for i in 4..7 {
        let c = &net.clients[i];
        let found = wait_for(
            &format!("node{i} connected to every validator"),
            LONG,
            || async {
                let peers = peers_of(c).await;
                ids[..4].iter().all(|v| peers.contains(v)).then_some(peers)
            },
        )
        .await;
        eprintln!(
            "node{i} (bootstrap: node0 only) is connected to {} peers",
            found.len()
        );
    }
    let tip = net.top(validators.clone()).await;
    net.advance(6..7, tip, LONG).await;
    assert_agreement(&net.clients).await;

    // Churn: every 3 s a full node leaves (kill -9 or stop) or comes back,
    // for TALLY_CHURN_SECS (default 60). The validators keep committing and
    // stay connected to each other throughout.
    let secs: u64 = std::env::var("TALLY_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let chain_id = net.clients[0].status().await.expect("status").chain_id;
    let load = Load::start(net.urls(validators.clone()), chain_id);
    let until = Instant::now() + Duration::from_secs(secs);
    let mut down = [false; 3];
    let mut step = 0usize;
    while Instant::now() < until {
        let f = step % 3;
        let node = (4 + f).to_string();
        if down[f] {
            net.fault(&["start", &node]);
        } else if step % 2 == 0 {
            net.fault(&["kill", &node]);
        } else {
            net.fault(&["stop", &node]);
        }
        down[f] = !down[f];
        step += 1;
        let top = net.top(validators.clone()).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        net.advance(validators.clone(), top, RESUME).await;
        for v in validators.clone() {
            let peers = peers_of(&net.clients[v]).await;
            for (w, id) in ids[..4].iter().enumerate() {
                assert!(
                    w == v || peers.contains(id),
                    "validator node{v} lost node{w} under churn"
                );
            }
        }
    }
    for (f, down) in down.iter().enumerate() {
        if *down {
            net.fault(&["start", &(4 + f).to_string()]);
        }
    }
    let (accepted, origins) = load.finish_with_origins().await;
    let tip = net.top(validators.clone()).await;
    net.advance(4..7, tip, LONG).await;
    eprintln!("{step} churn steps in {secs} s; validators at {tip}");
    assert_settled(&net.clients[..4], &accepted, &origins, &net.logs(0..7)).await;
    assert_agreement(&net.clients).await;
}

/// A small seeded generator (xorshift), so a soak run can be replayed with
/// its seed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Opt-in: `TALLY_SOAK=600` cycles random faults on four validators and a
/// full node for 600 s under load, checking after each heal that every
/// node advances within 20 s and that they agree, and the settle invariants
/// at the end. `TALLY_SOAK_SEED` replays a run.
#[tokio::test(flavor = "multi_thread")]
async fn soak_random_faults() {
    let Some(secs) = std::env::var("TALLY_SOAK")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        eprintln!("soak_random_faults: set TALLY_SOAK=<seconds> to run it");
        return;
    };
    let _heavy = crate::harness::heavy().await;
    let Some(net) = Net::up("soak", &["--validators", "4", "--full-nodes", "1"]) else {
        return;
    };
    let seed = std::env::var("TALLY_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("soak: {secs} s, seed {seed} (TALLY_SOAK_SEED={seed} replays it)");
    let mut dice = Dice(seed);
    let nodes = 0..5;
    net.advance(nodes.clone(), 2, LONG).await;
    let chain_id = net.clients[0].status().await.expect("status").chain_id;
    let load = Load::start(net.urls(0..4), chain_id);
    let until = Instant::now() + Duration::from_secs(secs);
    let mut rounds = 0;
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        let a = dice.below(5).to_string();
        let b = ((dice.below(4) + 1 + a.parse::<u64>().expect("index")) % 5).to_string();
        let percent = (10 + dice.below(40)).to_string();
        // A fault, and what undoes it.
        let (fault, undo): (Vec<&str>, Vec<&str>) = match dice.below(9) {
            0 => (vec!["partition", &a, &b], vec!["heal"]),
            1 => (vec!["partition", &a], vec!["heal"]),
            2 => (vec!["loss", &a, &percent], vec!["heal"]),
            3 => (vec!["loss", &a, "50", "--to", &b], vec!["heal"]),
            4 => (vec!["limit", &a, "1mbit"], vec!["heal"]),
            5 => (vec!["link", &a, "down"], vec!["heal"]),
            6 => (vec!["pause", &a], vec!["resume", &a]),
            7 => (vec!["kill", &a], vec!["start", &a]),
            _ => (
                vec!["restart", &a, "--clock-offset", "+5s"],
                vec!["restart", &a],
            ),
        };
        net.fault(&fault);
        tokio::time::sleep(Duration::from_secs(3 + dice.below(10))).await;
        net.fault(&undo);
        let top = net.top(nodes.clone()).await;
        let took = net.advance(nodes.clone(), top, RESUME).await;
        slowest = slowest.max(took);
        assert_agreement(&net.clients).await;
        rounds += 1;
    }
    let (accepted, origins) = load.finish_with_origins().await;
    let committed = assert_settled(
        &net.clients[..4],
        &accepted,
        &origins,
        &net.logs(nodes.clone()),
    )
    .await;
    for node in &net.state.nodes {
        assert_eq!(
            scrape(&node.metrics).sum("tally_consensus_equivocations_total"),
            0.0
        );
    }
    eprintln!(
        "soak: {rounds} faults in {secs} s (seed {seed}), every node past the tip within {slowest:?} of each heal, \
         {committed} transfers committed, invariants held"
    );
}

/// How `c` is connected to `peer`: "direct", "relayed" or None.
async fn link_kind(c: &HttpClient, peer: &str) -> Option<&'static str> {
    let peers = c.net_info().await.ok()?;
    let p = peers.into_iter().find(|p| p.peer_id == peer)?;
    Some(if p.addrs.iter().any(|a| !a.contains("p2p-circuit")) {
        "direct"
    } else {
        "relayed"
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn validators_behind_nat_take_part_through_relays_and_hole_punching() {
    let _heavy = crate::harness::heavy().await;
    // node2 and node3 each sit behind their own masquerading NAT that lets
    // nothing in; node0 and node1 are public and relay for them.
    let Some(net) = Net::up("nat", &["--validators", "4", "--nat", "2"]) else {
        return;
    };
    let all = 0..4;
    net.advance(all.clone(), 3, LONG).await;
    let chain_id = net.clients[0].status().await.expect("status").chain_id;
    let load = Load::start(net.urls(all.clone()), chain_id);
    let ids: Vec<String> = net.state.nodes.iter().map(|n| n.peer_id.clone()).collect();
    // Each NATed node got a relay slot, and the two found each other
    // (through a relay's routing table) and connected.
    for i in 2..4 {
        wait_for(&format!("node{i} holding a relay slot"), LONG, || {
            let found = net.log(i).contains("reserved a slot on a relay");
            async move { found.then_some(()) }
        })
        .await;
    }
    wait_for("node2 and node3 connected to each other", LONG, || async {
        link_kind(&net.clients[2], &ids[3]).await
    })
    .await;
    // Give a hole punch its moment, then report every link.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut report = Vec::new();
    for i in all.clone() {
        for j in all.clone().filter(|&j| j > i) {
            let kind = link_kind(&net.clients[i], &ids[j]).await.unwrap_or("none");
            report.push(format!("node{i}-node{j} {kind}"));
        }
    }
    eprintln!("NAT links (node2, node3 behind NAT): {}", report.join(", "));
    let punched = (2..4).any(|i| net.log(i).contains("hole punched: direct connection"));
    let failed = (2..4).any(|i| net.log(i).contains("hole punch failed"));
    eprintln!(
        "hole punch between the NATed nodes: succeeded {punched}, a failed attempt logged {failed}"
    );
    // The public ones are reached directly by the NATed ones (they dial
    // out); nobody could dial a NATed node directly.
    for i in 2..4 {
        for (j, id) in ids.iter().enumerate().take(2) {
            assert_eq!(
                link_kind(&net.clients[i], id).await,
                Some("direct"),
                "node{i}-node{j}"
            );
        }
    }
    let top = net.top(all.clone()).await;
    net.advance(all.clone(), top + 5, RESUME).await;
    let (accepted, origins) = load.finish_with_origins().await;
    assert_settled(&net.clients, &accepted, &origins, &net.logs(all.clone())).await;
    assert_agreement(&net.clients).await;
}
