//! A seeded, single-threaded, virtual-time simulator of a Tally cluster.
//!
//! Each node is what the real node will be around its [`Consensus`]: it
//! executes the machine's actions in order, keeps a "disk" (the last
//! persisted signing state, the bodies that state refers to, and the
//! committed decisions), answers build and verify requests against a
//! validity oracle once it holds the value's body (gossiped beside the
//! proposal, fetched from peers when missing, "invalid" when no peer has it
//! in time), re-gossips catch-up messages when its height stalls, and syncs
//! decided heights from peers with certificates checked by
//! `verify_certificate`. The network delays, loses,
//! duplicates and reorders messages, and partitions nodes until GST. Every
//! random choice comes from one seeded [`Rng`], and all collections iterate
//! in a fixed order, so a seed replays exactly.

pub mod byzantine;
pub mod checker;
pub mod rng;
pub mod scenario;
pub mod scheme;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use tally_consensus::{
    Action, Config, Consensus, Event, Message, Mutation, Proposal, SigningState, Validator,
    ValidatorSet, VoteType, verify_certificate,
};

use byzantine::Behavior;
use checker::{Content, DecisionRecord, Trace};
use rng::Rng;
use scenario::{CHAIN_ID, Scenario};
use scheme::{Addr, TAction, TCert, TEvent, TMessage, TestScheme, TestSigner, Val};

/// Most decided heights sent in one sync response.
const SYNC_BATCH: usize = 16;
/// Heights to decide after the network is stable, beyond the highest one
/// decided by then.
const EXTRA_HEIGHTS: u64 = 3;
/// A node asks a peer for decided heights at most this often.
const SYNC_INTERVAL_MS: u64 = 100;
/// A value's body asked of peers and not received in this long: "invalid"
/// for now (the machine asks again in the next round).
const BODY_TIMEOUT_MS: u64 = 200;
/// Rounds ahead of its own that a round flooder signs votes for, and one
/// far beyond any a node keeps.
const FLOOD_ROUNDS: [u32; 5] = [1, 2, 3, 4, 1000];

#[derive(Debug, Clone)]
enum NetMsg {
    Consensus(TMessage),
    SyncRequest {
        from_height: u64,
    },
    SyncResponse {
        entries: Vec<(Val, TCert)>,
    },
    /// A value's body (here the value itself: the oracle knows validity).
    Body(Val),
    BodyRequest(Val),
}

#[derive(Debug)]
enum SimEvent {
    Deliver {
        from: usize,
        to: usize,
        msg: NetMsg,
    },
    Input {
        node: usize,
        epoch: u64,
        event: TEvent,
    },
    StartHeight {
        node: usize,
        epoch: u64,
        height: u64,
    },
    Crash {
        node: usize,
        restart_after: Option<u64>,
    },
    Restart {
        node: usize,
    },
    Tick {
        node: usize,
        epoch: u64,
    },
    BodyTimeout {
        node: usize,
        epoch: u64,
        value: Val,
    },
    /// All faults are over: fix the goal height.
    Stable,
}

struct Queued {
    time: u64,
    seq: u64,
    event: SimEvent,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // Reversed: BinaryHeap pops the earliest (time, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

struct SimNode {
    key: Option<usize>,
    behavior: Option<Behavior>,
    machine: Option<Consensus<TestScheme, Val>>,
    epoch: u64,
    /// What survives a crash.
    disk_signing: SigningState<Addr, Val, scheme::Sig>,
    /// Bodies on disk: those the signing state refers to and committed ones.
    disk_bodies: BTreeSet<Val>,
    ledger: Vec<(Val, TCert)>,
    /// Bodies in memory.
    bodies: BTreeSet<Val>,
    /// Verify requests waiting for a body: value -> height.
    awaiting_body: BTreeMap<Val, u64>,
    /// A decision whose body is still missing.
    pending_decision: Option<TCert>,
    stopped: bool,
    crash_armed: Option<Option<u64>>,
    progress_mark: Option<(u64, bool)>,
    last_sync_request: Option<u64>,
}

impl SimNode {
    fn alive(&self) -> bool {
        self.machine.is_some()
    }
    fn honest(&self) -> bool {
        self.behavior.is_none()
    }
}

/// One simulation run.
pub struct Sim {
    sc: Scenario,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Queued>,
    nodes: Vec<SimNode>,
    lossy: Vec<Vec<bool>>,
    config: Config,
    next_value: u64,
    proposed_at: BTreeMap<u64, Vec<Val>>,
    /// What a fake-polka proposer proposed: (node, height, round) -> value.
    fake_values: BTreeMap<(usize, u64, u32), Val>,
    /// `TALLY_SIM_VERBOSE=1` prints every event fed and the actions it gave.
    verbose: bool,
    /// The height every correct live node must reach: set when the network
    /// is stable (all faults over), a few heights above the highest reached
    /// by then, so that recovery from every fault is part of the run.
    goal: Option<u64>,
    pub trace: Trace,
}

impl Sim {
    pub fn new(sc: Scenario, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let genesis = ValidatorSet::new(
            sc.powers
                .iter()
                .enumerate()
                .map(|(i, p)| Validator {
                    address: i as Addr,
                    power: *p,
                })
                .collect(),
        )
        .expect("scenario validator set is valid");
        let mut config = Config::new(CHAIN_ID);
        config.timeouts = sc.timeouts.clone();
        config.mutation = sc.mutation;
        let lock_breaker = Config {
            mutation: Some(Mutation::IgnoreLock),
            ..config.clone()
        };
        let n = sc.nodes.len();
        let lossy = (0..n)
            .map(|a| {
                (0..n)
                    .map(|b| a != b && rng.chance(sc.net.lossy_links))
                    .collect()
            })
            .collect();
        let mut trace = Trace {
            chain_id: CHAIN_ID,
            stable_from: sc.stable_from(),
            ..Trace::default()
        };
        trace.validator_sets.push(genesis);
        let mut holders = std::collections::BTreeMap::<usize, usize>::new();
        for spec in &sc.nodes {
            if let Some(k) = spec.key {
                *holders.entry(k).or_default() += 1;
            }
        }
        for (i, spec) in sc.nodes.iter().enumerate() {
            if spec.behavior.is_some() {
                trace.byzantine_nodes.insert(i);
                if let Some(k) = spec.key {
                    trace.faulty_keys.insert(k);
                }
            }
            if spec.key.is_some_and(|k| holders[&k] > 1) {
                trace.faulty_keys.insert(spec.key.unwrap_or_default());
            }
            let crash_stopped = sc.crash_stop.iter().any(|(node, _)| *node == i);
            if spec.behavior.is_none() && !crash_stopped {
                trace.must_finish.insert(i);
            }
        }
        let nodes = sc
            .nodes
            .iter()
            .map(|spec| SimNode {
                key: spec.key,
                behavior: spec.behavior,
                machine: Some(Consensus::new(
                    if spec.behavior == Some(Behavior::LockBreaker) {
                        lock_breaker.clone()
                    } else {
                        config.clone()
                    },
                    TestScheme,
                    signer(spec.key),
                )),
                epoch: 0,
                disk_signing: SigningState::empty(),
                disk_bodies: BTreeSet::new(),
                ledger: Vec::new(),
                bodies: BTreeSet::new(),
                awaiting_body: BTreeMap::new(),
                pending_decision: None,
                stopped: false,
                crash_armed: None,
                progress_mark: None,
                last_sync_request: None,
            })
            .collect();
        let mut sim = Self {
            sc,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            lossy,
            config,
            next_value: 1,
            proposed_at: Default::default(),
            fake_values: BTreeMap::new(),
            verbose: std::env::var_os("TALLY_SIM_VERBOSE").is_some(),
            goal: None,
            trace,
        };
        for node in 0..n {
            let at = sim.rng.range(0, 10);
            sim.push(
                at,
                SimEvent::StartHeight {
                    node,
                    epoch: 0,
                    height: 1,
                },
            );
            let tick = sim.sc.repair_ms + sim.rng.range(0, 50);
            sim.push(tick, SimEvent::Tick { node, epoch: 0 });
        }
        let stable = sim.sc.stable_from();
        sim.push(stable, SimEvent::Stable);
        for (node, at) in sim.sc.crash_stop.clone() {
            sim.push(
                at,
                SimEvent::Crash {
                    node,
                    restart_after: None,
                },
            );
        }
        for (node, at, down) in sim.sc.crash_restart.clone() {
            sim.push(
                at,
                SimEvent::Crash {
                    node,
                    restart_after: Some(down),
                },
            );
        }
        sim
    }

    fn push(&mut self, time: u64, event: SimEvent) {
        self.seq += 1;
        self.queue.push(Queued {
            time,
            seq: self.seq,
            event,
        });
    }

    fn after(&mut self, delay: u64, event: SimEvent) {
        let at = self.now.saturating_add(delay);
        self.push(at, event);
    }

    /// Runs to the end and returns the trace.
    pub fn run(mut self) -> Trace {
        let deadline = if self.sc.check_liveness {
            self.sc.stable_from() + self.sc.liveness_bound_ms
        } else {
            self.sc.max_time_ms
        };
        while let Some(q) = self.queue.pop() {
            if q.time > deadline {
                break;
            }
            self.now = q.time;
            self.trace.events += 1;
            if self.trace.events > self.sc.max_events {
                self.trace.event_limit_hit = true;
                break;
            }
            self.process(q.event);
            if self.sc.check_liveness
                && self
                    .trace
                    .must_finish
                    .iter()
                    .all(|n| self.trace.reached_target_at.contains_key(n))
            {
                break;
            }
        }
        self.trace.end_time = self.now;
        self.trace.final_heights = self.nodes.iter().map(|n| n.ledger.len() as u64).collect();
        self.trace.final_states = self
            .nodes
            .iter()
            .map(|n| format!("{:?} behavior={:?}", n.machine, n.behavior))
            .collect();
        self.trace
    }

    fn process(&mut self, event: SimEvent) {
        match event {
            SimEvent::Deliver { from, to, msg } => self.deliver(from, to, msg),
            SimEvent::Input { node, epoch, event } => {
                if self.nodes[node].alive() && self.nodes[node].epoch == epoch {
                    self.feed(node, event);
                }
            }
            SimEvent::StartHeight {
                node,
                epoch,
                height,
            } => {
                let n = &self.nodes[node];
                let behind = n
                    .machine
                    .as_ref()
                    .is_some_and(|m| m.height().is_none_or(|h| h < height));
                if n.epoch == epoch && behind && n.ledger.len() as u64 + 1 == height {
                    self.start_height(node, height);
                }
            }
            SimEvent::Crash {
                node,
                restart_after,
            } => {
                if !self.nodes[node].alive() {
                    return;
                }
                if restart_after.is_none() {
                    self.crash(node, None);
                } else {
                    // Crash in the middle of the next action list it executes.
                    self.nodes[node].crash_armed = Some(restart_after);
                }
            }
            SimEvent::Restart { node } => self.restart(node),
            SimEvent::Tick { node, epoch } => self.tick(node, epoch),
            SimEvent::BodyTimeout { node, epoch, value } => {
                let n = &mut self.nodes[node];
                if n.alive() && n.epoch == epoch {
                    if let Some(height) = n.awaiting_body.remove(&value) {
                        self.trace.bodies_missing += 1;
                        self.answer_verify(node, height, value, false);
                    }
                }
            }
            SimEvent::Stable => {
                let highest = self.nodes.iter().map(|n| n.ledger.len() as u64).max();
                let goal = self
                    .sc
                    .target_height
                    .max(highest.unwrap_or(0) + EXTRA_HEIGHTS);
                self.goal = Some(goal);
                self.trace.goal_height = goal;
            }
        }
    }

    fn start_height(&mut self, node: usize, height: u64) {
        let Some(validators) = self.validator_set(height) else {
            return;
        };
        self.feed(node, Event::StartHeight { height, validators });
    }

    /// The set of `height`: the previous height's advanced one rotation
    /// step, or from a height where the scenario changes the set, the new
    /// set with its rotation restarted (as the node does).
    fn validator_set(&mut self, height: u64) -> Option<ValidatorSet<Addr>> {
        let index = usize::try_from(height.checked_sub(1)?).ok()?;
        let sets = &mut self.trace.validator_sets;
        while sets.len() <= index {
            let at = sets.len() as u64 + 1;
            let next = match self.sc.set_changes.iter().find(|(h, _)| *h == at) {
                Some((_, members)) => ValidatorSet::new(
                    members
                        .iter()
                        .map(|(key, power)| Validator {
                            address: *key as Addr,
                            power: *power,
                        })
                        .collect(),
                )
                .expect("scenario validator set is valid"),
                None => sets.last()?.next_height(),
            };
            sets.push(next);
        }
        sets.get(index).cloned()
    }

    fn feed(&mut self, node: usize, event: TEvent) {
        let Some(machine) = self.nodes[node].machine.as_mut() else {
            return;
        };
        let print = self.verbose.then(|| format!("{event:?}"));
        let actions = machine.handle(event);
        if let Some(event) = print {
            eprintln!(
                "[{:>6} ms] node {node} h{:?} r{:?} {:?} <- {event}\n{:>16}-> {actions:?}",
                self.now,
                machine.height(),
                machine.round(),
                machine.step(),
                ""
            );
        }
        self.execute(node, actions);
    }

    fn execute(&mut self, node: usize, actions: Vec<TAction>) {
        let armed = self.nodes[node].crash_armed;
        let cut = match armed {
            Some(_) => self.rng.range(0, actions.len() as u64) as usize,
            None => actions.len(),
        };
        for action in actions.into_iter().take(cut) {
            self.apply(node, action);
        }
        if let Some(restart_after) = armed {
            self.crash(node, restart_after);
        }
    }

    fn apply(&mut self, node: usize, action: TAction) {
        let epoch = self.nodes[node].epoch;
        match action {
            Action::PersistSigningState(state) => {
                // The bodies the state refers to go to disk first (as the
                // node's signed_blocks.bin), unless the run is the negative
                // control of a node that forgets them.
                let n = &mut self.nodes[node];
                if !self.sc.forget_bodies {
                    let refs = [
                        state.last_proposal.as_ref().map(|r| r.value),
                        state.locked.as_ref().map(|r| r.value),
                        state.valid.as_ref().map(|r| r.value),
                    ];
                    for v in refs.into_iter().flatten() {
                        if n.bodies.contains(&v) {
                            n.disk_bodies.insert(v);
                        }
                    }
                }
                n.disk_signing = state;
            }
            Action::BroadcastProposal(p) => {
                let m = &p.message;
                let content = Content::Proposal(m.value, m.pol_round);
                self.trace.proposed.insert(m.value);
                self.proposed_at.entry(m.height).or_default().push(m.value);
                self.record_signed(node, m.height, m.round, 0, content);
                let key = self.nodes[node].key.unwrap_or_default() as Addr;
                match self.nodes[node].behavior {
                    Some(b) if b.silent() => {}
                    Some(b) if b.equivocates_proposals() => {
                        let alt = self.byzantine_value(node, m.height, 0.5);
                        let peers = self.peers(node);
                        let sends = byzantine::equivocate_proposal(
                            &p,
                            alt,
                            key,
                            CHAIN_ID,
                            &peers,
                            &mut self.rng,
                        );
                        self.send_split(node, sends);
                    }
                    Some(Behavior::FakePolka) => {
                        let value = self.byzantine_value(node, m.height, 0.9);
                        self.fake_values.insert((node, m.height, m.round), value);
                        let claim = m.round > 0 && self.rng.chance(0.5);
                        let fake = Proposal {
                            value,
                            pol_round: claim.then(|| m.round - 1),
                            ..m.clone()
                        };
                        let fake = byzantine::sign_proposal(fake, key, CHAIN_ID);
                        self.send_proposal_all(node, fake);
                    }
                    _ => self.send_proposal_all(node, p),
                }
            }
            Action::BroadcastVote(v) => {
                let m = &v.message;
                let step = match m.vote_type {
                    VoteType::Prevote => 1,
                    VoteType::Precommit => 2,
                };
                self.record_signed(node, m.height, m.round, step, Content::Vote(m.value));
                let key = self.nodes[node].key.unwrap_or_default() as Addr;
                match self.nodes[node].behavior {
                    Some(b) if b.silent() => {}
                    Some(Behavior::FakePolka) => {
                        let own = self.fake_values.get(&(node, m.height, m.round));
                        let vote = match own {
                            Some(&value) => {
                                let mut own = m.clone();
                                own.value = Some(value);
                                byzantine::sign_vote(own, key, CHAIN_ID)
                            }
                            None => v,
                        };
                        self.send_all(node, &Message::Vote(vote));
                    }
                    Some(Behavior::OutOfTurnProposer) if m.vote_type == VoteType::Prevote => {
                        let value = self.byzantine_value(node, m.height, 0.5);
                        let own = Proposal {
                            height: m.height,
                            round: m.round,
                            value,
                            pol_round: None,
                            proposer: key,
                        };
                        let own = byzantine::sign_proposal(own, key, CHAIN_ID);
                        self.send_all(node, &Message::Vote(v));
                        self.send_proposal_all(node, own);
                    }
                    Some(Behavior::RoundFlooder) => {
                        let rounds: Vec<u32> = FLOOD_ROUNDS
                            .iter()
                            .map(|r| m.round.saturating_add(*r))
                            .collect();
                        let proposed = self.proposed_at.get(&m.height).cloned().unwrap_or_default();
                        let rng = &mut self.rng;
                        let flood = byzantine::flood_rounds(
                            &v,
                            &rounds,
                            || {
                                (!proposed.is_empty() && rng.chance(0.7))
                                    .then(|| proposed[rng.index(proposed.len())])
                            },
                            key,
                            CHAIN_ID,
                        );
                        self.send_all(node, &Message::Vote(v));
                        for message in flood {
                            self.send_all(node, &message);
                        }
                    }
                    Some(b) if b.double_votes() => {
                        let others: Vec<Val> = self
                            .proposed_at
                            .get(&m.height)
                            .map(|vs| vs.iter().copied().filter(|x| Some(*x) != m.value).collect())
                            .unwrap_or_default();
                        let alt = if m.value.is_some() && self.rng.chance(0.5) {
                            None
                        } else if others.is_empty() {
                            Some(self.fresh_value())
                        } else {
                            Some(others[self.rng.index(others.len())])
                        };
                        let peers = self.peers(node);
                        let sends =
                            byzantine::double_vote(&v, alt, key, CHAIN_ID, &peers, &mut self.rng);
                        self.send_split(node, sends);
                    }
                    _ => self.send_all(node, &Message::Vote(v)),
                }
            }
            Action::ScheduleTimeout {
                timeout,
                duration_ms,
            } => self.after(
                duration_ms,
                SimEvent::Input {
                    node,
                    epoch,
                    event: Event::TimeoutElapsed(timeout),
                },
            ),
            Action::BuildBlock { height, round } => {
                let value = self.fresh_value();
                self.trace.valid.insert(value);
                self.nodes[node].bodies.insert(value);
                if self.nodes[node].honest() {
                    self.trace.verified_by_correct.insert(value);
                }
                self.answer_soon(
                    node,
                    Event::BlockBuilt {
                        height,
                        round,
                        value,
                    },
                );
            }
            Action::VerifyBlock { height, value, .. } => {
                if self.nodes[node].bodies.contains(&value) {
                    let valid = self.trace.valid.contains(&value);
                    self.answer_verify(node, height, value, valid);
                } else if self.nodes[node]
                    .awaiting_body
                    .insert(value, height)
                    .is_none()
                {
                    self.trace.bodies_fetched += 1;
                    self.send_all_net(node, &NetMsg::BodyRequest(value));
                    self.after(
                        BODY_TIMEOUT_MS,
                        SimEvent::BodyTimeout { node, epoch, value },
                    );
                }
            }
            Action::Decide(certificate) => {
                if self.nodes[node].bodies.contains(&certificate.value) {
                    self.commit_decided(node, certificate);
                } else {
                    // Committing needs the body: fetch it, and retry at each
                    // tick until it (or block sync) brings it.
                    let value = certificate.value;
                    self.nodes[node].pending_decision = Some(certificate);
                    self.send_all_net(node, &NetMsg::BodyRequest(value));
                }
            }
            Action::ReportEvidence(evidence) => self.trace.evidence.push((node, evidence)),
        }
    }

    /// Answers a verify request after a short delay.
    fn answer_verify(&mut self, node: usize, height: u64, value: Val, valid: bool) {
        if valid && self.nodes[node].honest() {
            self.trace.verified_by_correct.insert(value);
        }
        self.answer_soon(
            node,
            Event::BlockVerified {
                height,
                value,
                valid,
            },
        );
    }

    /// Feeds `event` (the ledger's answer) to `node` 1-5 ms from now, if it
    /// has not restarted meanwhile.
    fn answer_soon(&mut self, node: usize, event: TEvent) {
        let epoch = self.nodes[node].epoch;
        let delay = self.rng.range(1, 5);
        self.after(delay, SimEvent::Input { node, epoch, event });
    }

    /// Commits a decision whose body the node holds and starts the next
    /// height.
    fn commit_decided(&mut self, node: usize, certificate: TCert) {
        let height = certificate.height;
        let epoch = self.nodes[node].epoch;
        if self.commit(node, certificate, false) {
            let delay = self.rng.range(0, 5);
            self.after(
                delay,
                SimEvent::StartHeight {
                    node,
                    epoch,
                    height: height + 1,
                },
            );
        }
    }

    /// A body arrived: answer what waited for it.
    fn receive_body(&mut self, node: usize, value: Val) {
        let n = &mut self.nodes[node];
        if !n.bodies.insert(value) {
            return;
        }
        if let Some(height) = n.awaiting_body.remove(&value) {
            let valid = self.trace.valid.contains(&value);
            self.answer_verify(node, height, value, valid);
        }
        let n = &mut self.nodes[node];
        if n.pending_decision
            .as_ref()
            .is_some_and(|c| c.value == value)
        {
            if let Some(certificate) = n.pending_decision.take() {
                self.commit_decided(node, certificate);
            }
        }
    }

    /// A value a Byzantine node makes up (valid with probability `valid`),
    /// with its body in the node's hands.
    fn byzantine_value(&mut self, node: usize, height: u64, valid: f64) -> Val {
        let value = self.fresh_value();
        if self.rng.chance(valid) {
            self.trace.valid.insert(value);
        }
        self.trace.proposed.insert(value);
        self.proposed_at.entry(height).or_default().push(value);
        self.nodes[node].bodies.insert(value);
        value
    }

    fn fresh_value(&mut self) -> Val {
        let v = Val::new(self.next_value);
        self.next_value += 1;
        v
    }

    /// Records what a correct node signed, and checks that the persisted
    /// signing state already covers it (persist before broadcast).
    fn record_signed(&mut self, node: usize, height: u64, round: u32, step: u8, content: Content) {
        let n = &self.nodes[node];
        if !n.honest() {
            return;
        }
        let Some(key) = n.key else {
            self.trace
                .persist_violations
                .push(format!("observer node {node} signed a message"));
            return;
        };
        let disk = &n.disk_signing;
        let covered = if disk.height > height {
            true
        } else if disk.height < height {
            false
        } else {
            match (&content, step) {
                (Content::Proposal(v, pol), _) => disk.last_proposal.as_ref().is_some_and(|r| {
                    r.round > round || (r.round == round && r.value == *v && r.pol_round == *pol)
                }),
                (Content::Vote(v), s) => {
                    let rec = if s == 1 {
                        &disk.last_prevote
                    } else {
                        &disk.last_precommit
                    };
                    rec.as_ref()
                        .is_some_and(|r| r.round > round || (r.round == round && r.value == *v))
                }
            }
        };
        if !covered {
            self.trace.persist_violations.push(format!(
                "node {node} broadcast {content:?} at {height}/{round}/{step} \
                 not covered by its persisted state {disk:?}"
            ));
        }
        let entry = self
            .trace
            .signed
            .entry((key, height, round, step))
            .or_default();
        if !entry.iter().any(|(c, _)| *c == content) {
            entry.push((content, node));
        }
    }

    /// Commits a decided height to the node's ledger; false if it was not
    /// the next height.
    fn commit(&mut self, node: usize, certificate: TCert, via_sync: bool) -> bool {
        let n = &mut self.nodes[node];
        if n.ledger.len() as u64 + 1 != certificate.height {
            return false;
        }
        n.bodies.insert(certificate.value);
        n.disk_bodies.insert(certificate.value);
        if n.pending_decision
            .as_ref()
            .is_some_and(|c| c.height <= certificate.height)
        {
            n.pending_decision = None;
        }
        n.ledger.push((certificate.value, certificate.clone()));
        let height = certificate.height;
        self.trace.decisions.push(DecisionRecord {
            time: self.now,
            node,
            height,
            round: certificate.round,
            value: certificate.value,
            certificate,
            via_sync,
        });
        self.validator_set(height);
        if self.goal.is_some_and(|goal| height >= goal) {
            self.trace.reached_target_at.entry(node).or_insert(self.now);
        }
        true
    }

    fn peers(&self, node: usize) -> Vec<usize> {
        (0..self.nodes.len()).filter(|p| *p != node).collect()
    }

    fn send_all(&mut self, from: usize, msg: &TMessage) {
        for to in 0..self.nodes.len() {
            if to != from {
                self.send(from, to, NetMsg::Consensus(msg.clone()));
            }
        }
    }

    fn send_all_net(&mut self, from: usize, msg: &NetMsg) {
        for to in 0..self.nodes.len() {
            if to != from {
                self.send(from, to, msg.clone());
            }
        }
    }

    /// A proposal to every peer, with its body when the sender holds it.
    fn send_proposal_all(
        &mut self,
        from: usize,
        proposal: tally_consensus::SignedProposal<Addr, Val, scheme::Sig>,
    ) {
        let value = proposal.message.value;
        self.send_all(from, &Message::Proposal(proposal));
        if self.nodes[from].bodies.contains(&value) {
            self.send_all_net(from, &NetMsg::Body(value));
        }
    }

    /// Each message to its peers, each proposal with its body.
    fn send_split(&mut self, from: usize, sends: Vec<(TMessage, Vec<usize>)>) {
        for (msg, peers) in sends {
            let body = match &msg {
                Message::Proposal(p) if self.nodes[from].bodies.contains(&p.message.value) => {
                    Some(p.message.value)
                }
                _ => None,
            };
            for to in peers {
                self.send(from, to, NetMsg::Consensus(msg.clone()));
                if let Some(value) = body {
                    self.send(from, to, NetMsg::Body(value));
                }
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: NetMsg) {
        let net = &self.sc.net;
        if net.separates(from, to, self.now) {
            return;
        }
        let pre_gst = self.now < net.gst_ms;
        if pre_gst && self.lossy[from][to] && self.rng.chance(net.loss) {
            return;
        }
        let (lo, hi) = if pre_gst {
            net.pre_gst_delay_ms
        } else {
            net.delay_ms
        };
        let mut delay = self.rng.range(lo, hi);
        if pre_gst && self.rng.chance(net.spike_chance) {
            delay += self.rng.range(0, net.spike_ms);
        }
        let duplicate = self.rng.chance(net.duplicate);
        let (dlo, dhi) = net.delay_ms;
        if duplicate {
            let d = self.rng.range(dlo, dhi * 2);
            self.after(
                d,
                SimEvent::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
        self.after(delay, SimEvent::Deliver { from, to, msg });
    }

    fn deliver(&mut self, from: usize, to: usize, msg: NetMsg) {
        if !self.nodes[to].alive() {
            return;
        }
        match msg {
            NetMsg::Consensus(m) => {
                let next = self.nodes[to].ledger.len() as u64 + 1;
                if m.height() > next {
                    self.request_sync(to, from);
                }
                self.feed(to, m.into());
            }
            NetMsg::SyncRequest { from_height } => {
                if self.nodes[to].behavior.is_some_and(Behavior::silent) {
                    return;
                }
                let ledger = &self.nodes[to].ledger;
                let start = usize::try_from(from_height.saturating_sub(1)).unwrap_or(usize::MAX);
                if start < ledger.len() {
                    let end = ledger.len().min(start + SYNC_BATCH);
                    let entries = ledger[start..end].to_vec();
                    self.send(to, from, NetMsg::SyncResponse { entries });
                }
            }
            NetMsg::SyncResponse { entries } => self.apply_sync(to, from, entries),
            NetMsg::Body(value) => self.receive_body(to, value),
            NetMsg::BodyRequest(value) => {
                let n = &self.nodes[to];
                if n.bodies.contains(&value) && !n.behavior.is_some_and(Behavior::silent) {
                    self.send(to, from, NetMsg::Body(value));
                }
            }
        }
    }

    fn request_sync(&mut self, node: usize, peer: usize) {
        let n = &mut self.nodes[node];
        if n.last_sync_request
            .is_some_and(|t| self.now < t + SYNC_INTERVAL_MS)
        {
            return;
        }
        n.last_sync_request = Some(self.now);
        let from_height = n.ledger.len() as u64 + 1;
        self.send(node, peer, NetMsg::SyncRequest { from_height });
    }

    /// Block sync: commit decided heights whose certificates check out
    /// against the height's validator set, then start the next height.
    fn apply_sync(&mut self, node: usize, peer: usize, entries: Vec<(Val, TCert)>) {
        let mut advanced = None;
        for (value, certificate) in entries {
            let height = certificate.height;
            if self.nodes[node].ledger.len() as u64 + 1 != height {
                continue;
            }
            let Some(set) = self.validator_set(height) else {
                return;
            };
            if let Err(e) =
                verify_certificate(&TestScheme, CHAIN_ID, &set, height, &value, &certificate)
            {
                self.trace.sync_failures.push(format!(
                    "node {node} got a bad certificate for height {height} from {peer}: {e}"
                ));
                return;
            }
            if self.commit(node, certificate, true) {
                advanced = Some(height + 1);
            }
        }
        if let Some(height) = advanced {
            self.start_height(node, height);
        }
    }

    fn crash(&mut self, node: usize, restart_after: Option<u64>) {
        if self.verbose {
            eprintln!("[{:>6} ms] node {node} crashes", self.now);
        }
        let n = &mut self.nodes[node];
        n.machine = None;
        n.epoch += 1;
        n.crash_armed = None;
        n.progress_mark = None;
        n.bodies = n.disk_bodies.clone();
        n.awaiting_body.clear();
        n.pending_decision = None;
        match restart_after {
            None => n.stopped = true,
            Some(down) => self.after(down, SimEvent::Restart { node }),
        }
    }

    fn restart(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let amnesia = self.sc.amnesia || n.behavior == Some(Behavior::Amnesiac);
        if n.alive() || n.stopped {
            return;
        }
        let state = if amnesia {
            SigningState::empty()
        } else {
            n.disk_signing.clone()
        };
        let config = if n.behavior == Some(Behavior::LockBreaker) {
            Config {
                mutation: Some(Mutation::IgnoreLock),
                ..self.config.clone()
            }
        } else {
            self.config.clone()
        };
        n.machine = Some(
            Consensus::restore(config, TestScheme, signer(n.key), state)
                .expect("the simulated disk holds a sane signing state"),
        );
        let epoch = n.epoch;
        let height = n.ledger.len() as u64 + 1;
        self.start_height(node, height);
        let tick = self.sc.repair_ms;
        self.after(tick, SimEvent::Tick { node, epoch });
    }

    /// Gossip repair: a node whose height has not moved since the last tick
    /// sends its catch-up messages again.
    fn tick(&mut self, node: usize, epoch: u64) {
        let n = &self.nodes[node];
        if !n.alive() || n.epoch != epoch {
            return;
        }
        let Some(machine) = n.machine.as_ref() else {
            return;
        };
        // Rounds move on by timeouts even while messages are missing, so only
        // a new height counts as progress.
        let mark = (n.ledger.len() as u64, machine.decision().is_some());
        let stuck = n.progress_mark == Some(mark);
        let silent = n.behavior.is_some_and(Behavior::silent);
        let messages = if stuck && !silent {
            machine.catch_up_messages()
        } else {
            Vec::new()
        };
        self.nodes[node].progress_mark = Some(mark);
        for m in messages {
            self.send_all(node, &m);
        }
        // A stuck node also asks a random peer for blocks, as the node's
        // sync polls its peers' heights: a peer that decided and then left
        // the set sends no consensus message of the next height to learn
        // it from.
        if stuck {
            let peers = self.peers(node);
            let peer = peers[self.rng.index(peers.len())];
            self.request_sync(node, peer);
        }
        if let Some(value) = self.nodes[node].pending_decision.as_ref().map(|c| c.value) {
            self.send_all_net(node, &NetMsg::BodyRequest(value));
        }
        let next = self.sc.repair_ms;
        self.after(next, SimEvent::Tick { node, epoch });
    }
}

fn signer(key: Option<usize>) -> Option<Box<dyn tally_consensus::Signer<TestScheme> + Send>> {
    key.map(|k| {
        Box::new(TestSigner(k as Addr)) as Box<dyn tally_consensus::Signer<TestScheme> + Send>
    })
}

/// Runs `scenario` with `seed` and checks it; `Err` carries a report.
pub fn run_and_check(scenario: Scenario, seed: u64) -> Result<Trace, String> {
    let target = scenario.target_height;
    let bound = scenario.liveness_bound_ms;
    let live = scenario.check_liveness;
    let name = scenario.name.clone();
    let trace = Sim::new(scenario, seed).run();
    let violations = checker::check(&trace, target, bound, live);
    if violations.is_empty() {
        Ok(trace)
    } else {
        Err(format!(
            "scenario {name}, seed {seed}: {} violation(s): {:#?}\nfinal heights {:?}, \
             states {:#?}, end time {} ms, events {}",
            violations.len(),
            violations,
            trace.final_heights,
            trace.final_states,
            trace.end_time,
            trace.events
        ))
    }
}
