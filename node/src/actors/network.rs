//! Routes what the p2p network delivers: consensus messages to the
//! consensus driver, transaction batches (checked, then verified on the
//! blocking pool so every core recovers signatures) to the mempool, sync
//! requests to the sync server. The router never waits: each kind of
//! traffic has its own bounded queue, and what does not fit is dropped as
//! Ignore (gossipsub neither forwards it nor penalises the sender), so a
//! flood of one kind never holds up another. Undecodable or invalid gossip
//! is rejected, which lowers the sender's score until the network bans it.
//!
//! Transaction batches are never forwarded as they came: a node gossips
//! only transactions its own mempool admitted, in batches of its own (the
//! mempool actor does), so junk riding along with one good transaction
//! goes no further than the first honest node, and an honest relay never
//! passes on, or is blamed for, what another peer made up. A batch costs
//! signature recoveries only for what is new: each transaction is decoded,
//! its chain id and fee checked and its hash looked up among those
//! recently seen (in the mempool, committed, or already being recovered)
//! before any recovery. Recoveries that admit nothing are charged to the
//! sending address; one over budget has its batches dropped unverified.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tally_ledger::{AddError, Address, Hash, MempoolError, SignedTransaction, VerifiedTransaction};
use tally_p2p::{Event, PeerId, Topic, Verdict};
use tokio::sync::{Semaphore, mpsc};
use tracing::debug;

use crate::actors::consensus::Inbound;
use crate::actors::mempool::MempoolHandle;
use crate::actors::priority::Priority;
use crate::actors::sync::ServeRequest;
use crate::metrics::NetworkMetrics;
use crate::wire::{ConsensusEnvelope, decode};

/// Most transactions in one gossiped batch.
pub const MAX_GOSSIP_BATCH: usize = 4_096;
/// Transaction hashes remembered as seen.
const SEEN_CAPACITY: usize = 1 << 17;
/// Recoveries one address may waste (recovered, not admitted) in a burst,
/// and per second after it.
const WASTE_BURST: f64 = 20_000.0;
const WASTE_PER_SEC: f64 = 2_000.0;
/// Budgets remembered; past this, those back at full are forgotten.
const MAX_BUDGETS: usize = 4_096;
/// Bytes of decoded consensus messages waiting for the driver.
pub const MAX_CONSENSUS_QUEUE_BYTES: usize = 64 << 20;

/// Hashes of transactions this node has seen recently: admitted to the
/// mempool, committed, or recovered and refused. A bounded ring: the oldest
/// are forgotten first.
#[derive(Debug, Default)]
pub struct SeenTxs {
    inner: Mutex<SeenInner>,
}

#[derive(Debug, Default)]
struct SeenInner {
    set: HashSet<Hash>,
    order: VecDeque<Hash>,
}

impl SeenTxs {
    pub fn contains(&self, hash: &Hash) -> bool {
        self.lock().set.contains(hash)
    }

    pub fn insert_all(&self, hashes: impl IntoIterator<Item = Hash>) {
        let mut inner = self.lock();
        for hash in hashes {
            if inner.set.insert(hash) {
                inner.order.push_back(hash);
                if inner.order.len() > SEEN_CAPACITY {
                    if let Some(old) = inner.order.pop_front() {
                        inner.set.remove(&old);
                    }
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SeenInner> {
        // The data stays consistent whatever panicked while holding it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A peer's allowance of wasted recoveries (a token bucket).
#[derive(Debug)]
struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn refill(&mut self) -> f64 {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * WASTE_PER_SEC).min(WASTE_BURST);
        self.at = now;
        self.tokens
    }
}

/// Who pays for wasted recoveries: the sender's IP address when known (new
/// identities are free, addresses are not), else its peer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Payer {
    Ip(std::net::IpAddr),
    Peer(PeerId),
}

#[derive(Debug, Default)]
struct Budgets {
    payers: Mutex<HashMap<Payer, Budget>>,
    addresses: Mutex<HashMap<PeerId, std::net::IpAddr>>,
}

impl Budgets {
    fn payer(&self, peer: PeerId) -> Payer {
        let addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        addresses
            .get(&peer)
            .map_or(Payer::Peer(peer), |ip| Payer::Ip(*ip))
    }

    fn with<T>(&self, peer: PeerId, f: impl FnOnce(&mut Budget) -> T) -> T {
        let payer = self.payer(peer);
        let mut payers = self.payers.lock().unwrap_or_else(|e| e.into_inner());
        if payers.len() >= MAX_BUDGETS {
            payers.retain(|_, b| b.refill() < WASTE_BURST);
        }
        let budget = payers.entry(payer).or_insert(Budget {
            tokens: WASTE_BURST,
            at: Instant::now(),
        });
        budget.refill();
        f(budget)
    }

    fn has_budget(&self, peer: PeerId) -> bool {
        self.with(peer, |b| b.tokens > 0.0)
    }

    fn charge(&self, peer: PeerId, wasted: usize) {
        if wasted > 0 {
            // Kept after a disconnect: a fresh identity from the same
            // address starts where the last one left off.
            self.with(peer, |b| {
                b.tokens = (b.tokens - wasted as f64).max(-WASTE_BURST);
            });
        }
    }

    fn connected(&self, peer: PeerId, addr: &tally_p2p::Multiaddr) {
        let ip = tally_p2p::ip_of(addr);
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = ip {
            addresses.insert(peer, ip);
        }
    }

    fn disconnected(&self, peer: &PeerId) {
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        addresses.remove(peer);
    }
}

/// What this node learnt about its peers, for `tally_netInfo`: the
/// validator whose votes each peer authors, and the height each reported
/// last. Kept for connected peers only (block sync prunes it every round),
/// and never more than [`PeerView::MAX`] in between.
#[derive(Debug, Default)]
pub struct PeerView {
    validators: Mutex<HashMap<PeerId, Address>>,
    heights: Mutex<HashMap<PeerId, u64>>,
}

impl PeerView {
    pub const MAX: usize = 1024;

    fn insert<V>(map: &Mutex<HashMap<PeerId, V>>, peer: PeerId, value: V) {
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX && !map.contains_key(&peer) {
            if let Some(any) = map.keys().next().copied() {
                map.remove(&any);
            }
        }
        map.insert(peer, value);
    }

    /// `peer` authored (gossipsub-signed) an accepted vote of `validator`.
    pub fn saw_vote(&self, peer: PeerId, validator: Address) {
        Self::insert(&self.validators, peer, validator);
    }

    /// `peer` answered a status request with `height`.
    pub fn saw_height(&self, peer: PeerId, height: u64) {
        Self::insert(&self.heights, peer, height);
    }

    /// Forgets every peer not in `connected`.
    pub fn retain(&self, connected: &[PeerId]) {
        let keep = |p: &PeerId| connected.contains(p);
        let mut validators = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        validators.retain(|p, _| keep(p));
        drop(validators);
        let mut heights = self.heights.lock().unwrap_or_else(|e| e.into_inner());
        heights.retain(|p, _| keep(p));
    }

    pub fn validator(&self, peer: &PeerId) -> Option<Address> {
        let map = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        map.get(peer).copied()
    }

    pub fn height(&self, peer: &PeerId) -> Option<u64> {
        let map = self.heights.lock().unwrap_or_else(|e| e.into_inner());
        map.get(peer).copied()
    }
}

/// What the router checks transactions against.
#[derive(Clone, Debug)]
pub struct TxRules {
    pub chain_id: u64,
    pub min_fee: u128,
    pub seen: Arc<SeenTxs>,
    /// Recovery steps aside while consensus works.
    pub priority: Arc<Priority>,
}

/// The consensus driver's queue: bounded in messages by the channel and in
/// bytes by `queued` (the driver subtracts what it takes).
#[derive(Clone, Debug)]
pub struct ConsensusQueue {
    pub sender: mpsc::Sender<Inbound>,
    pub queued: Arc<AtomicUsize>,
}

pub fn spawn(
    mut events: mpsc::Receiver<Event>,
    network: tally_p2p::Handle,
    consensus: ConsensusQueue,
    mempool: MempoolHandle,
    requests: mpsc::Sender<ServeRequest>,
    rules: TxRules,
    metrics: NetworkMetrics,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    // Batches being verified at once: enough to keep every core busy.
    let verifying = Arc::new(Semaphore::new(
        std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
    ));
    let budgets = Arc::new(Budgets::default());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Message {
                    topic: Topic::Consensus,
                    source,
                    author,
                    id,
                    data,
                } => {
                    let bytes = data.len();
                    // Room first: a full queue costs no decoding.
                    let queued = consensus.queued.fetch_add(bytes, Ordering::Relaxed);
                    let verdict = if queued + bytes > MAX_CONSENSUS_QUEUE_BYTES {
                        Verdict::Ignore
                    } else {
                        match decode::<ConsensusEnvelope>(&data) {
                            Ok(envelope) => {
                                let inbound = Inbound {
                                    envelope,
                                    id: id.clone(),
                                    source,
                                    author,
                                    bytes,
                                };
                                if consensus.sender.try_send(inbound).is_ok() {
                                    continue;
                                }
                                Verdict::Ignore
                            }
                            Err(_) => Verdict::Reject,
                        }
                    };
                    consensus.queued.fetch_sub(bytes, Ordering::Relaxed);
                    metrics.verdict("consensus", verdict);
                    let _ = network.report(id, source, verdict).await;
                }
                Event::Message {
                    topic: Topic::Txs,
                    source,
                    id,
                    data,
                    ..
                } => {
                    let permit = match verifying.clone().try_acquire_owned() {
                        Ok(permit) if budgets.has_budget(source) => permit,
                        _ => {
                            metrics.verdict("txs", Verdict::Ignore);
                            let _ = network.report(id, source, Verdict::Ignore).await;
                            continue;
                        }
                    };
                    let (network, mempool, rules, budgets, metrics) = (
                        network.clone(),
                        mempool.clone(),
                        rules.clone(),
                        budgets.clone(),
                        metrics.clone(),
                    );
                    tokio::spawn(async move {
                        // A panic while checking counts as a fault.
                        let checked =
                            tokio::task::spawn_blocking(move || check_batch(&data, &rules))
                                .await
                                .unwrap_or(Checked {
                                    fault: true,
                                    ..Checked::default()
                                });
                        drop(permit);
                        let recovered = checked.recovered;
                        let mut wasted = recovered;
                        if !checked.verified.is_empty() {
                            let results = mempool
                                .add(checked.verified, source)
                                .await
                                .unwrap_or_default();
                            // A full pool is our state, not the sender's fault.
                            let kept = results
                                .iter()
                                .filter(|r| {
                                    r.is_ok()
                                        || matches!(
                                            r,
                                            Err(AddError::Rejected(MempoolError::Full { .. }))
                                        )
                                })
                                .count();
                            wasted = recovered.saturating_sub(kept);
                        }
                        budgets.charge(source, wasted);
                        // Never forwarded as it came (see the module doc).
                        let verdict = if checked.fault {
                            Verdict::Reject
                        } else {
                            Verdict::Ignore
                        };
                        metrics.verdict("txs", verdict);
                        let _ = network.report(id, source, verdict).await;
                    });
                }
                Event::Request { peer, id, data } => {
                    if let Err(mpsc::error::TrySendError::Closed(_)) =
                        requests.try_send(ServeRequest { peer, id, data })
                    {
                        anyhow::bail!("the sync server stopped");
                    }
                    // Full: the request goes unanswered and times out at
                    // the peer, which asks another.
                }
                Event::PeerConnected { peer, addr } => {
                    budgets.connected(peer, &addr);
                    debug!(%peer, %addr, "peer connected");
                }
                Event::PeerDisconnected { peer } => {
                    budgets.disconnected(&peer);
                    debug!(%peer, "peer disconnected");
                }
            }
        }
        Ok(())
    })
}

/// What checking a gossiped batch found.
#[derive(Debug, Default)]
pub struct Checked {
    /// The transactions not seen before whose signatures recovered.
    pub verified: Vec<VerifiedTransaction>,
    /// Signature recoveries it cost.
    pub recovered: usize,
    /// Something in it no honest node sends: undecodable, over the size
    /// limit, another chain's, below the minimum fee, or a forged signature.
    pub fault: bool,
}

/// Checks a gossiped batch and recovers the senders of the transactions
/// not seen before. Their hashes are marked seen before the recovery, so
/// the same transaction in another batch is never recovered twice.
pub fn check_batch(data: &[u8], rules: &TxRules) -> Checked {
    let fault = Checked {
        fault: true,
        ..Checked::default()
    };
    // The entry count comes first: refuse a huge one before decoding it.
    let declared = match data.get(..4) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
        None => return fault,
    };
    if declared == 0 || declared > MAX_GOSSIP_BATCH {
        return fault;
    }
    let Ok(batch) = decode::<crate::wire::TxBatch>(data) else {
        return fault;
    };
    let mut fresh = Vec::new();
    for bytes in &batch.txs {
        let Ok(tx) = SignedTransaction::decode(bytes) else {
            return fault;
        };
        if tx.chain_id() != rules.chain_id || tx.fee(rules.min_fee).is_err() {
            return fault;
        }
        let hash = tx.hash();
        if !rules.seen.contains(&hash) {
            fresh.push((hash, tx));
        }
    }
    // A transaction's hash covers its signature: marking a forged one seen
    // never shadows the real one.
    rules.seen.insert_all(fresh.iter().map(|(hash, _)| *hash));
    let mut checked = Checked {
        recovered: fresh.len(),
        ..Checked::default()
    };
    for (_, tx) in fresh {
        rules.priority.step_aside();
        match tx.verify() {
            Ok(tx) => checked.verified.push(tx),
            Err(_) => checked.fault = true,
        }
    }
    checked
}
