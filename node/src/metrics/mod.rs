//! Prometheus metrics: every family the node exports, registered once at
//! start under the `tally_` namespace (libp2p's own under `libp2p_`), and
//! the handles the actors update. Handles are cheap clones of shared
//! atomics; updating one never blocks and never allocates, except the first
//! time a label value is seen (label sets are small and bounded: message
//! kinds, outcomes, topics, RPC methods the server knows).
//!
//! `docs/OPERATIONS.md` lists every metric; [`server`] serves them.

pub mod dashboard;
pub mod server;

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Seconds, from 1 ms to about 65 s.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Counts and sizes, from 1 to about 1 million.
fn counts() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 4.0, 11))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicVerdictLabel {
    pub topic: &'static str,
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidatorLabel {
    pub validator: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodOutcomeLabel {
    pub method: &'static str,
    pub outcome: &'static str,
}

/// The consensus driver's view.
#[derive(Clone, Debug)]
pub struct ConsensusMetrics {
    pub height: Gauge,
    pub round: Gauge,
    /// 0 propose, 1 prevote, 2 precommit.
    pub step: Gauge,
    pub rounds_per_height: Histogram,
    pub block_interval: Histogram,
    pub height_duration: Histogram,
    pub proposals: Family<OutcomeLabel, Counter>,
    pub votes: Family<KindLabel, Counter>,
    pub validators: Gauge,
    pub validator_power: Family<ValidatorLabel, Gauge>,
    pub total_power: Gauge,
    pub missing_in_last_commit: Gauge,
    pub missing_power_in_last_commit: Gauge,
    pub equivocations: Family<KindLabel, Counter>,
    pub timeouts: Family<KindLabel, Counter>,
}

/// Execution and the store.
#[derive(Clone, Debug)]
pub struct LedgerMetrics {
    pub blocks_committed: Counter,
    pub txs_committed: Counter,
    pub block_bytes: Histogram,
    pub block_txs: Histogram,
    pub execution: Histogram,
    pub commit: Histogram,
    /// Recovering the signatures of a block's transactions not verified
    /// before (by the mempool, or by block sync ahead of the ledger).
    pub recovery: Histogram,
    /// Checking a synced block's certificate and body.
    pub certificate: Histogram,
    pub store_bytes: Gauge,
    /// The lowest height whose block the store holds (pruning moves it).
    pub history_start: Gauge,
}

#[derive(Clone, Debug, Default)]
pub struct MempoolMetrics {
    pub executable: Gauge,
    pub queued: Gauge,
    pub bytes: Gauge,
    pub admitted: Family<KindLabel, Counter>,
    pub refused: Family<ReasonLabel, Counter>,
    pub dropped: Family<ReasonLabel, Counter>,
    pub recovery_queue: Gauge,
}

/// The node's side of the network: verdicts on gossip and block sync (the
/// network's own counters are `tally_p2p_*`, registered by `tally-p2p`).
#[derive(Clone, Debug, Default)]
pub struct NetworkMetrics {
    pub gossip_verdicts: Family<TopicVerdictLabel, Counter>,
    pub sync_requests_served: Counter,
    pub sync_requests_made: Counter,
    pub sync_blocks_received: Counter,
    pub sync_lag: Gauge,
    /// Seconds the ledger had no synced block to apply while block sync ran.
    pub sync_wait: Counter<f64, AtomicU64>,
    /// State sync chunks that matched the state root, and ones that did not.
    pub sync_chunks_received: Counter,
    pub sync_chunks_refused: Counter,
    /// The height and account count of the snapshot state sync installed.
    pub sync_snapshot_height: Gauge,
    pub sync_snapshot_accounts: Gauge,
}

impl NetworkMetrics {
    pub fn verdict(&self, topic: &'static str, verdict: tally_p2p::Verdict) {
        let verdict = match verdict {
            tally_p2p::Verdict::Accept => "accept",
            tally_p2p::Verdict::Reject => "reject",
            tally_p2p::Verdict::Ignore => "ignore",
        };
        self.gossip_verdicts
            .get_or_create(&TopicVerdictLabel { topic, verdict })
            .inc();
    }
}

#[derive(Clone, Debug)]
pub struct RpcMetrics {
    pub requests: Family<MethodOutcomeLabel, Counter>,
    pub latency: Family<MethodLabel, Histogram, fn() -> Histogram>,
    pub connections: Gauge,
    pub subscriptions: Gauge,
}

/// Every handle, cloned into the actors that update it.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub consensus: ConsensusMetrics,
    pub ledger: LedgerMetrics,
    pub mempool: MempoolMetrics,
    pub network: NetworkMetrics,
    pub rpc: RpcMetrics,
}

impl Default for Metrics {
    /// Handles registered nowhere (a node without a metrics endpoint still
    /// updates them; nobody reads them).
    fn default() -> Self {
        Self {
            consensus: ConsensusMetrics {
                height: Gauge::default(),
                round: Gauge::default(),
                step: Gauge::default(),
                rounds_per_height: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
                block_interval: seconds(),
                height_duration: seconds(),
                proposals: Family::default(),
                votes: Family::default(),
                validators: Gauge::default(),
                validator_power: Family::default(),
                total_power: Gauge::default(),
                missing_in_last_commit: Gauge::default(),
                missing_power_in_last_commit: Gauge::default(),
                equivocations: Family::default(),
                timeouts: Family::default(),
            },
            ledger: LedgerMetrics {
                blocks_committed: Counter::default(),
                txs_committed: Counter::default(),
                block_bytes: Histogram::new(exponential_buckets(256.0, 4.0, 10)),
                block_txs: counts(),
                execution: seconds(),
                commit: seconds(),
                recovery: seconds(),
                certificate: seconds(),
                store_bytes: Gauge::default(),
                history_start: Gauge::default(),
            },
            mempool: MempoolMetrics::default(),
            network: NetworkMetrics::default(),
            rpc: RpcMetrics {
                requests: Family::default(),
                latency: Family::new_with_constructor(seconds),
                connections: Gauge::default(),
                subscriptions: Gauge::default(),
            },
        }
    }
}

impl Metrics {
    /// Fresh handles, registered in `registry` under `tally_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("tally");

        let c = &m.consensus;
        let reg = r.sub_registry_with_prefix("consensus");
        reg.register("height", "Height being decided", c.height.clone());
        reg.register("round", "Round of the current height", c.round.clone());
        reg.register(
            "step",
            "Step of the current round (0 propose, 1 prevote, 2 precommit)",
            c.step.clone(),
        );
        reg.register(
            "rounds_per_height",
            "Rounds it took to decide a height (1 = decided in round 0)",
            c.rounds_per_height.clone(),
        );
        reg.register_with_unit(
            "block_interval",
            "Time between two decisions",
            Unit::Seconds,
            c.block_interval.clone(),
        );
        reg.register_with_unit(
            "height_duration",
            "Time from a height's start to its decision",
            Unit::Seconds,
            c.height_duration.clone(),
        );
        reg.register(
            "proposals",
            "Proposals received from peers, by the gate's outcome (accepted, rejected, ignored)",
            c.proposals.clone(),
        );
        reg.register(
            "votes",
            "Votes received from peers and accepted by the gate, by kind",
            c.votes.clone(),
        );
        reg.register(
            "validators",
            "Validators of the current height",
            c.validators.clone(),
        );
        reg.register(
            "validator_power",
            "Voting power of each validator of the current height",
            c.validator_power.clone(),
        );
        reg.register(
            "total_power",
            "Total voting power of the current height",
            c.total_power.clone(),
        );
        reg.register(
            "missing_validators_last_commit",
            "Validators whose precommit is not in the last decided height's certificate",
            c.missing_in_last_commit.clone(),
        );
        reg.register(
            "missing_power_last_commit",
            "Voting power missing from the last decided height's certificate",
            c.missing_power_in_last_commit.clone(),
        );
        reg.register(
            "equivocations",
            "Conflicting messages of one validator detected, by kind (vote, proposal)",
            c.equivocations.clone(),
        );
        reg.register(
            "timeouts",
            "Timeouts fired, by step (propose, prevote, precommit)",
            c.timeouts.clone(),
        );

        let l = &m.ledger;
        let reg = r.sub_registry_with_prefix("ledger");
        reg.register(
            "blocks_committed",
            "Blocks committed to the store",
            l.blocks_committed.clone(),
        );
        reg.register(
            "txs_committed",
            "Transactions committed to the store",
            l.txs_committed.clone(),
        );
        reg.register_with_unit(
            "block_size",
            "Encoded size of each committed block",
            Unit::Bytes,
            l.block_bytes.clone(),
        );
        reg.register(
            "block_txs",
            "Transactions in each committed block",
            l.block_txs.clone(),
        );
        reg.register_with_unit(
            "execution",
            "Time to execute a block (state transition and state-tree update)",
            Unit::Seconds,
            l.execution.clone(),
        );
        reg.register_with_unit(
            "commit",
            "Time to write a decided block to the store",
            Unit::Seconds,
            l.commit.clone(),
        );
        reg.register_with_unit(
            "recovery",
            "Time to recover the signatures of a block's transactions not verified before (by the mempool, or by block sync ahead of the ledger)",
            Unit::Seconds,
            l.recovery.clone(),
        );
        reg.register_with_unit(
            "certificate",
            "Time to check a synced block's certificate and body",
            Unit::Seconds,
            l.certificate.clone(),
        );
        reg.register_with_unit(
            "store",
            "Size of the store's files on disk",
            Unit::Bytes,
            l.store_bytes.clone(),
        );
        reg.register(
            "history_start",
            "Lowest height whose block the store holds (above 1 once pruned, or after a state sync)",
            l.history_start.clone(),
        );

        let p = &m.mempool;
        let reg = r.sub_registry_with_prefix("mempool");
        reg.register(
            "executable",
            "Executable transactions held",
            p.executable.clone(),
        );
        reg.register(
            "queued",
            "Transactions held behind a nonce gap",
            p.queued.clone(),
        );
        reg.register_with_unit(
            "size",
            "Bytes of transactions held",
            Unit::Bytes,
            p.bytes.clone(),
        );
        reg.register(
            "admitted",
            "Transactions admitted, by where they came from (local, gossip)",
            p.admitted.clone(),
        );
        reg.register(
            "refused",
            "Transactions refused, by reason",
            p.refused.clone(),
        );
        reg.register(
            "dropped",
            "Transactions that left the pool uncommitted, by reason (evicted, expired, replaced, ...)",
            p.dropped.clone(),
        );
        reg.register(
            "recovery_queue",
            "Submitted transactions waiting for signature recovery",
            p.recovery_queue.clone(),
        );

        let n = &m.network;
        let reg = r.sub_registry_with_prefix("p2p");
        reg.register(
            "gossip_verdicts",
            "Verdicts on received gossip, by topic and verdict (accept, reject, ignore)",
            n.gossip_verdicts.clone(),
        );
        let reg = r.sub_registry_with_prefix("sync");
        reg.register(
            "requests_served",
            "Block sync requests answered",
            n.sync_requests_served.clone(),
        );
        reg.register(
            "requests_made",
            "Block sync requests sent",
            n.sync_requests_made.clone(),
        );
        reg.register(
            "blocks_received",
            "Blocks received by block sync and committed",
            n.sync_blocks_received.clone(),
        );
        reg.register(
            "lag",
            "Blocks between our tip and the highest tip a peer reported",
            n.sync_lag.clone(),
        );
        reg.register_with_unit(
            "wait",
            "Time the ledger waited for the next synced block (from peers, or from signature recovery)",
            Unit::Seconds,
            n.sync_wait.clone(),
        );
        reg.register(
            "chunks_received",
            "State sync chunks received that matched the snapshot's state root",
            n.sync_chunks_received.clone(),
        );
        reg.register(
            "chunks_refused",
            "State sync chunks refused (malformed or not matching the state root); their senders are banned",
            n.sync_chunks_refused.clone(),
        );
        reg.register(
            "snapshot_height",
            "Height of the snapshot this node installed by state sync at its start (0: none)",
            n.sync_snapshot_height.clone(),
        );
        reg.register(
            "snapshot_accounts",
            "Accounts in the snapshot this node installed by state sync at its start",
            n.sync_snapshot_accounts.clone(),
        );

        let q = &m.rpc;
        let reg = r.sub_registry_with_prefix("rpc");
        reg.register(
            "requests",
            "JSON-RPC calls, by method and outcome (ok, error)",
            q.requests.clone(),
        );
        reg.register_with_unit(
            "latency",
            "JSON-RPC call latency, by method",
            Unit::Seconds,
            q.latency.clone(),
        );
        reg.register(
            "connections",
            "Open JSON-RPC connections",
            q.connections.clone(),
        );
        reg.register(
            "subscriptions",
            "Open JSON-RPC subscriptions",
            q.subscriptions.clone(),
        );
        m
    }
}

/// Measures the store's size on disk every ten seconds, off the async
/// workers and off the ledger's commit path (a walk of its directory).
pub fn watch_store_size(dir: std::path::PathBuf, gauge: Gauge) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tick.tick().await;
            let dir = dir.clone();
            let bytes = tokio::task::spawn_blocking(move || dir_size(&dir))
                .await
                .unwrap_or(0);
            gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    })
}

/// Bytes of the files under `dir` (what cannot be read counts as nothing).
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
