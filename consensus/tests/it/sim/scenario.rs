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
    pub partition: Option<Partition>,
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
            partition: None,
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
    /// A node whose height/round/step has not moved for this long re-gossips
    /// its catch-up messages.
    pub repair_ms: u64,
    /// Every correct live node must reach `target_height` this long after
    /// the network heals and the last restart.
    pub liveness_bound_ms: u64,
    pub check_liveness: bool,
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
            repair_ms: 300,
            liveness_bound_ms: 30_000,
            check_liveness: true,
            max_time_ms: u64::MAX,
            max_events: 5_000_000,
        }
    }

    pub fn validators(&self) -> usize {
        self.powers.len()
    }

    /// Faults tolerated with equal powers.
    pub fn f(&self) -> usize {
        (self.validators() - 1) / 3
    }

    /// When the network is healed and every crash and restart done.
    pub fn stable_from(&self) -> u64 {
        let heal = self.net.partition.as_ref().map_or(0, |p| p.until_ms);
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
pub fn no_faults(n: usize, _rng: &mut Rng) -> Scenario {
    let mut s = Scenario::base("no_faults", n);
    s.add_observer();
    s
}

/// f validators crash at random times and never return.
pub fn f_crashed(n: usize, rng: &mut Rng) -> Scenario {
    let mut s = Scenario::base("f_crashed", n);
    let f = s.f();
    for node in rng.pick(n, f) {
        s.crash_stop.push((node, rng.range(0, 800)));
    }
    s
}

fn partition(name: &str, n: usize, minority: usize, rng: &mut Rng) -> Scenario {
    let mut s = Scenario::base(name, n);
    let mut nodes: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut nodes);
    let (a, b) = nodes.split_at(minority);
    let from = rng.range(0, 300);
    let until = from + rng.range(500, 2500);
    s.net.partition = Some(Partition {
        groups: vec![a.to_vec(), b.to_vec()],
        from_ms: from,
        until_ms: until,
    });
    s.net.gst_ms = until;
    s
}

/// Split in two halves (2/2 at n = 4): no side has a quorum until it heals.
pub fn partition_even(n: usize, rng: &mut Rng) -> Scenario {
    partition("partition_even", n, n / 2, rng)
}

/// f validators cut off (3/1 at n = 4): the majority goes on, the minority
/// catches up after the heal.
pub fn partition_minority(n: usize, rng: &mut Rng) -> Scenario {
    let f = (n - 1) / 3;
    partition("partition_minority", n, f.max(1), rng)
}

/// Every link loses half its messages until GST, with more reordering.
pub fn lossy_links(n: usize, rng: &mut Rng) -> Scenario {
    let mut s = Scenario::base("lossy_links", n);
    s.net.loss = 0.5;
    s.net.lossy_links = 1.0;
    s.net.duplicate = 0.05;
    s.net.pre_gst_delay_ms = (1, 100);
    s.net.gst_ms = rng.range(1000, 3000);
    s.add_observer();
    s
}

/// f Byzantine validators, each an equivocating proposer, a double voter,
/// both, or silent; the network is asynchronous for a while.
pub fn f_byzantine(n: usize, rng: &mut Rng) -> Scenario {
    let mut s = Scenario::base("f_byzantine", n);
    let f = s.f();
    for node in rng.pick(n, f) {
        let behavior = match rng.index(4) {
            0 => Behavior::EquivocatingProposer,
            1 => Behavior::DoubleVoter,
            2 => Behavior::Equivocator,
            _ => Behavior::Silent,
        };
        s.nodes[node].behavior = Some(behavior);
    }
    s.net.gst_ms = rng.range(0, 1500);
    s
}

/// Every node crashes (at a random point of an action list) and restarts
/// from its persisted signing state and ledger.
pub fn cluster_restart(n: usize, rng: &mut Rng) -> Scenario {
    let mut s = Scenario::base("cluster_restart", n);
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
    let mut s = Scenario::base("chaos", n);
    let f = s.f();
    let byz = rng.pick(n, f);
    for &node in &byz {
        s.nodes[node].behavior = Some(match rng.index(4) {
            0 => Behavior::EquivocatingProposer,
            1 => Behavior::DoubleVoter,
            2 => Behavior::Equivocator,
            _ => Behavior::Silent,
        });
    }
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
    s.net.partition = Some(Partition {
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
