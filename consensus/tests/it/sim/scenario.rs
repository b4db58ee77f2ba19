//! What a simulation run looks like: the cluster, the network, the faults.

use tally_consensus::TimeoutConfig;

use super::byzantine::Behavior;
use super::rng::Rng;

/// Nodes split into groups that cannot talk to each other during
/// `from_ms..until_ms` (messages across are lost).
#[derive(Debug, Clone)]
pub struct Partition {
    pub groups: Vec<Vec<usize>>,
    pub from_ms: u64,
    pub until_ms: u64,
}

impl Partition {
    pub fn separates(&self, a: usize, b: usize, now: u64) -> bool {
        if now < self.from_ms || now >= self.until_ms {
            return false;
        }
        let group = |n: usize| self.groups.iter().position(|g| g.contains(&n));
        group(a) != group(b)
    }
}

/// The network model. Before GST: delays from `pre_gst_delay_ms` with
/// occasional spikes, and loss on lossy links; after GST every message
/// arrives within `delay_ms.1`. Duplication and reordering (random delays)
/// always.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub delay_ms: (u64, u64),
    pub pre_gst_delay_ms: (u64, u64),
    pub spike_chance: f64,
    pub spike_ms: u64,
    pub loss: f64,
    pub lossy_links: f64,
    pub duplicate: f64,
    pub gst_ms: u64,
    /// Partitions, each active in its own time window (a schedule).
    pub partitions: Vec<Partition>,
}

impl NetConfig {
    pub fn separates(&self, a: usize, b: usize, now: u64) -> bool {
        self.partitions.iter().any(|p| p.separates(a, b, now))
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            delay_ms: (1, 20),
            pre_gst_delay_ms: (1, 60),
            spike_chance: 0.05,
            spike_ms: 400,
            loss: 0.0,
            lossy_links: 0.0,
            duplicate: 0.02,
            gst_ms: 0,
            partitions: Vec::new(),
        }
    }
}

/// One simulated node: which validator key it holds (`None` = observer,
/// a full node without a key) and whether it is Byzantine.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub key: Option<usize>,
    pub behavior: Option<Behavior>,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    /// Voting power of validator `i` (address `i`).
    pub powers: Vec<u64>,
    pub nodes: Vec<NodeSpec>,
    pub target_height: u64,
    pub timeouts: TimeoutConfig,
    pub net: NetConfig,
    /// (node, time): crashes and never comes back.
    pub crash_stop: Vec<(usize, u64)>,
    /// (node, time, downtime): crashes (possibly in the middle of executing
    /// an action list) and restarts from its persisted state.
    pub crash_restart: Vec<(usize, u64, u64)>,
    /// Restart from an empty signing state (negative control only).
    pub amnesia: bool,
    /// Drive the nodes without writing the bodies their signing state
    /// refers to (negative control: the liveness bug of a lost lock).
    pub forget_bodies: bool,
    /// A deliberate bug in every honest node's machine (mutation tests).
    pub mutation: Option<tally_consensus::Mutation>,
    /// A node whose height/round/step has not moved for this long re-gossips
    /// its catch-up messages.
    pub repair_ms: u64,
    /// Every correct live node must reach `target_height` this long after
    /// the network heals and the last restart.
    pub liveness_bound_ms: u64,
    pub check_liveness: bool,
    /// (height, members as (key, power)): from `height` on the set is this
    /// one, its rotation restarted. Keys beyond the genesis set belong to
    /// nodes that follow the chain without signing until a change adds them.
    pub set_changes: Vec<(u64, Vec<(usize, u64)>)>,
    /// Hard stop for runs that need not finish (negative controls).
    pub max_time_ms: u64,
    pub max_events: u64,
}

pub const CHAIN_ID: u64 = 7;

impl Scenario {
    /// `n` validators of power 1, one honest node each, a healthy network.
    pub fn base(name: &str, n: usize) -> Self {
        Self {
            name: name.to_string(),
            powers: vec![1; n],
            nodes: (0..n)
                .map(|i| NodeSpec {
                    key: Some(i),
                    behavior: None,
                })
                .collect(),
            target_height: 5,
            timeouts: TimeoutConfig {
                propose_ms: 150,
                propose_delta_ms: 50,
                prevote_ms: 60,
                prevote_delta_ms: 30,
                precommit_ms: 60,
                precommit_delta_ms: 30,
            },
            net: NetConfig::default(),
            crash_stop: Vec::new(),
            crash_restart: Vec::new(),
            amnesia: false,
            forget_bodies: false,
            mutation: None,
            repair_ms: 300,
            liveness_bound_ms: 30_000,
            check_liveness: true,
            set_changes: Vec::new(),
            max_time_ms: u64::MAX,
            max_events: 5_000_000,
        }
    }

    /// `base` with voting powers drawn from `rng` (see [`powers`]).
    pub fn weighted(name: &str, n: usize, rng: &mut Rng) -> Self {
        let mut s = Self::base(name, n);
        s.powers = powers(n, rng);
        s
    }

    /// A random set of validators holding less than 1/3 of the power, taken
    /// greedily in a random order: as many faults as the protocol tolerates
    /// (f of them with equal powers, possibly n - 1 small ones otherwise).
    pub fn pick_faulty(&self, rng: &mut Rng) -> Vec<usize> {
        let total: u64 = self.powers.iter().sum();
        let mut order: Vec<usize> = (0..self.validators()).collect();
        rng.shuffle(&mut order);
        let mut held = 0;
        let mut faulty = Vec::new();
        for i in order {
            if 3 * (held + self.powers[i]) < total {
                held += self.powers[i];
                faulty.push(i);
            }
        }
        faulty.sort_unstable();
        faulty
    }

    pub fn validators(&self) -> usize {
        self.powers.len()
    }

    /// When the network is healed and every crash and restart done.
    pub fn stable_from(&self) -> u64 {
        let heal = self
            .net
            .partitions
            .iter()
            .map(|p| p.until_ms)
            .max()
            .unwrap_or(0);
        let restarts = self
            .crash_restart
            .iter()
            .map(|(_, at, down)| at + down)
            .max()
            .unwrap_or(0);
        let crashes = self.crash_stop.iter().map(|(_, at)| *at).max().unwrap_or(0);
        self.net.gst_ms.max(heal).max(restarts).max(crashes)
    }

    pub fn add_observer(&mut self) {
        self.nodes.push(NodeSpec {
            key: None,
            behavior: None,
        });
    }
}

// -------------------------------------------------------------------------
// The scenarios of the issue, randomised by the seed.
// -------------------------------------------------------------------------

/// A healthy network (still with reordering and duplication) plus an observer.
pub fn no_faults(n: usize, rng: &mut Rng) -> Scenario {
    let mut s = Scenario::weighted("no_faults", n, rng);
    s.add_observer();
    s
}

/// Voting powers of a scenario: equal, random in 1..=10, or one validator
/// holding just under 1/3 of the total.
pub fn powers(n: usize, rng: &mut Rng) -> Vec<u64> {
    match rng.index(3) {
        0 => vec![1; n],
        1 => (0..n).map(|_| rng.range(1, 10)).collect(),
        _ => {
            // 3b < b + others, i.e. b < others / 2.
            let others = 10 * (n as u64 - 1);
            let mut powers = vec![10; n];
            powers[rng.index(n)] = (others - 1) / 2;
            powers
        }
    }
}

/// Validators holding under 1/3 of the power crash at random times and
/// never return.
pub fn f_crashed(n: usize, rng: &mut Rng) -> Scenario {
    let mut s = Scenario::weighted("f_crashed", n, rng);
    for node in s.pick_faulty(rng) {
        s.crash_stop.push((node, rng.range(0, 800)));
    }
    s
}

/// Cuts `side` off from every other node for a random window.
fn partition(mut s: Scenario, side: Vec<usize>, rng: &mut Rng) -> Scenario {
    let rest = (0..s.nodes.len()).filter(|i| !side.contains(i)).collect();
    let from = rng.range(0, 300);
    let until = from + rng.range(500, 2500);
    s.net.partitions.push(Partition {
        groups: vec![side, rest],
        from_ms: from,
        until_ms: until,
    });
    s.net.gst_ms = until;
    s
}

/// Split in two halves by head (2/2 at n = 4): with equal powers no side
/// has a quorum until it heals.
pub fn partition_even(n: usize, rng: &mut Rng) -> Scenario {
    let s = Scenario::weighted("partition_even", n, rng);
    let side = rng.pick(n, n / 2);
    partition(s, side, rng)
}

/// Validators holding under 1/3 of the power cut off: the rest goes on,
/// the minority catches up after the heal.
pub fn partition_minority(n: usize, rng: &mut Rng) -> Scenario {
    let s = Scenario::weighted("partition_minority", n, rng);
    let mut side = s.pick_faulty(rng);
    if side.is_empty() {
        side.push(rng.index(n));
    }
    partition(s, side, rng)
}

/// Every link loses half its messages until GST, with more reordering.
pub fn lossy_links(n: usize, rng: &mut Rng) -> Scenario {
    let mut s = Scenario::weighted("lossy_links", n, rng);
    s.net.loss = 0.5;
    s.net.lossy_links = 1.0;
    s.net.duplicate = 0.05;
    s.net.pre_gst_delay_ms = (1, 100);
    s.net.gst_ms = rng.range(1000, 3000);
    s.add_observer();
    s
}

/// Makes each of `nodes` Byzantine with a behaviour drawn from `rng`; an
/// amnesiac forgets its signing state at one or two restarts.
fn make_byzantine(s: &mut Scenario, nodes: &[usize], rng: &mut Rng) {
    for &node in nodes {
        let behavior = Behavior::ALL[rng.index(Behavior::ALL.len())];
        s.nodes[node].behavior = Some(behavior);
        if behavior == Behavior::Amnesiac {
            let at = rng.range(100, 1500);
            s.crash_restart.push((node, at, rng.range(20, 400)));
            if rng.chance(0.5) {
                s.crash_restart
                    .push((node, at + rng.range(500, 1500), rng.range(20, 400)));
            }
        }
    }
}

/// Validators under 1/3 of the power Byzantine, each with one behaviour of
/// [`Behavior::ALL`]; the network is asynchronous for a while.
pub fn f_byzantine(n: usize, rng: &mut Rng) -> Scenario {
    let mut s = Scenario::weighted("f_byzantine", n, rng);
    let byz = s.pick_faulty(rng);
    make_byzantine(&mut s, &byz, rng);
    s.net.gst_ms = rng.range(0, 1500);
    s
}

/// Byzantine validators under 1/3 of the power that attack through their
/// proposals (fresh values with made-up valid rounds, equivocation,
/// proposing out of turn) while every link loses messages until GST: the
/// conditions in which locks and valid rounds decide safety.
pub fn byzantine_proposers(n: usize, rng: &mut Rng) -> Scenario {
    const KINDS: [Behavior; 3] = [
        Behavior::FakePolka,
        Behavior::EquivocatingProposer,
        Behavior::OutOfTurnProposer,
    ];
    let mut s = Scenario::weighted("byzantine_proposers", n, rng);
    for node in s.pick_faulty(rng) {
        s.nodes[node].behavior = Some(KINDS[rng.index(KINDS.len())]);
    }
    s.net.loss = 0.4;
    s.net.lossy_links = 1.0;
    s.net.pre_gst_delay_ms = (1, 150);
    s.net.gst_ms = rng.range(1500, 4000);
    s.add_observer();
    s
}

/// Every node crashes (at a random point of an action list) and restarts
/// from its persisted signing state and ledger.
pub fn cluster_restart(n: usize, rng: &mut Rng) -> Scenario {
    let mut s = Scenario::weighted("cluster_restart", n, rng);
    for node in 0..n {
        let at = rng.range(100, 1200);
        s.crash_restart.push((node, at, rng.range(20, 800)));
        if rng.chance(0.5) {
            let again = at + 1000 + rng.range(0, 1000);
            s.crash_restart.push((node, again, rng.range(20, 500)));
        }
    }
    s
}

/// Everything at once: f Byzantine validators (of any kind), loss, a
/// partition, and honest nodes crashing and restarting.
pub fn chaos(n: usize, rng: &mut Rng) -> Scenario {
    let mut s = Scenario::weighted("chaos", n, rng);
    let byz = s.pick_faulty(rng);
    make_byzantine(&mut s, &byz, rng);
    s.net.loss = 0.3;
    s.net.lossy_links = 0.5;
    s.net.duplicate = 0.05;
    s.net.pre_gst_delay_ms = (1, 120);
    let mut nodes: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut nodes);
    let cut = 1 + rng.index(n - 1);
    let (a, b) = nodes.split_at(cut);
    let from = rng.range(0, 1000);
    let until = from + rng.range(200, 1500);
    s.net.partitions.push(Partition {
        groups: vec![a.to_vec(), b.to_vec()],
        from_ms: from,
        until_ms: until,
    });
    s.net.gst_ms = until + rng.range(0, 1000);
    for node in (0..n).filter(|i| !byz.contains(i)) {
        if rng.chance(0.4) {
            s.crash_restart
                .push((node, rng.range(0, 2500), rng.range(20, 600)));
        }
    }
    s.add_observer();
    s
}

/// The validator set changes every few heights, as governance changes it:
/// validators join (nodes holding keys no set had yet), leave (and follow
/// the chain without signing) and change power, no change moving more than
/// a third of the power; meanwhile nodes crash and restart and, in half the
/// runs, a partition cuts some off, all around the heights where the sets
/// change. Every node ends alive, so each final set has its quorum.
pub fn set_changes(n: usize, rng: &mut Rng) -> Scenario {
    let mut s = Scenario::weighted("set_changes", n, rng);
    let joiners = 2;
    for key in n..n + joiners {
        s.nodes.push(NodeSpec {
            key: Some(key),
            behavior: None,
        });
    }
    s.add_observer();
    s.target_height = 14;
    let mut members: Vec<(usize, u64)> = s.powers.iter().copied().enumerate().collect();
    let mut outside: Vec<usize> = (n..n + joiners).collect();
    let mut height = rng.range(2, 4);
    while height < s.target_height - 2 {
        let total: u64 = members.iter().map(|(_, p)| p).sum();
        let limit = (total / 3).max(1);
        let mut next = members.clone();
        match rng.index(3) {
            0 if !outside.is_empty() => {
                let key = outside.remove(rng.index(outside.len()));
                next.push((key, rng.range(1, limit)));
            }
            1 if members.len() > 1 => {
                // Only one that moves at most a third.
                let small: Vec<usize> = (0..members.len())
                    .filter(|i| 3 * members[*i].1 <= total)
                    .collect();
                if small.is_empty() {
                    height += 1;
                    continue;
                }
                let (key, _) = next.remove(small[rng.index(small.len())]);
                outside.push(key);
            }
            _ => {
                let i = rng.index(next.len());
                let old = next[i].1;
                let low = old.saturating_sub(limit).max(1);
                next[i].1 = rng.range(low, old + limit);
            }
        }
        s.set_changes.push((height, next.clone()));
        members = next;
        height += rng.range(1, 3);
    }
    // Faults while the sets change (heights come every ~50-300 ms).
    for node in 0..s.nodes.len() {
        if rng.chance(0.4) {
            s.crash_restart
                .push((node, rng.range(0, 2500), rng.range(20, 600)));
        }
    }
    if rng.chance(0.5) {
        let count = 1 + rng.index(s.nodes.len() / 2);
        let side = rng.pick(s.nodes.len(), count);
        s = partition(s, side, rng);
    }
    s
}

/// Twins (Bano et al., 2020): validator `twin`'s key runs on two honest
/// nodes (the last node is its copy), and the network goes through one
/// partition of all n + 1 nodes per phase of `phase_ms`, then heals. The
/// twins sign whatever their own view makes them sign: an equivocator built
/// from correct code, which every split must survive.
pub fn twins(n: usize, twin: usize, splits: &[Vec<usize>], phase_ms: u64) -> Scenario {
    let mut s = Scenario::base("twins", n);
    s.nodes.push(NodeSpec {
        key: Some(twin),
        behavior: None,
    });
    let all = s.nodes.len();
    for (i, side) in splits.iter().enumerate() {
        let rest = (0..all).filter(|x| !side.contains(x)).collect();
        let from = i as u64 * phase_ms;
        s.net.partitions.push(Partition {
            groups: vec![side.clone(), rest],
            from_ms: from,
            until_ms: from + phase_ms,
        });
    }
    s.net.gst_ms = splits.len() as u64 * phase_ms;
    s.net.spike_chance = 0.0;
    s
}

/// Every way to cut `nodes` nodes in two non-empty sides, each side named
/// by the set that holds node 0 (so no split appears twice).
pub fn two_way_splits(nodes: usize) -> Vec<Vec<usize>> {
    (1u32..(1 << nodes) - 1)
        .filter(|mask| mask & 1 == 1)
        .map(|mask| (0..nodes).filter(|i| mask & (1 << i) != 0).collect())
        .collect()
}
