//! Block sync. The server answers peers' requests for our height and for
//! committed blocks with their certificates. The client asks peers for their
//! height every interval and, when some are ahead, fetches the missing
//! blocks from all of them at once ([`fetch`]) and hands each to the
//! ledger, which checks its certificate against the validator set and
//! re-executes it before committing.
//!
//! Nothing a peer says is trusted before it is checked, cheapest first: a
//! response must start at the height asked for, be contiguous and hold no
//! more blocks than asked (else the peer is banned, before any signature
//! work); every block must move our tip. A claimed height is only a hint: a
//! peer is asked only for heights up to its own claim, so a modest claim
//! slows nobody down and an inflated one comes back empty; a peer that
//! claims to be ahead and then serves no blocks gets a strike and is not
//! asked for a while ([`COOLDOWN`], after three strikes [`LONG_COOLDOWN`]).
//! Timeouts and refusals are no strike: an overloaded honest peer looks the
//! same. One catch-up lasts at most 20 s before the peers are asked again.
//! So a peer that claims `u64::MAX` and serves old blocks costs us one cheap
//! check per response.
//!
//! The server answers height requests at once and block requests a few at
//! a time, at most [`SERVE_PER_PEER`] per peer, so one peer cannot take
//! every slot.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod fetch;
pub mod state;

use prometheus_client::metrics::histogram::Histogram;
use tally_ledger::snapshot::SnapshotOffer;
use tally_ledger::{Block, Commit, Store};
use tally_p2p::{PeerId, RequestId};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use crate::actors::ledger::{ChainParams, LedgerHandle};
use crate::actors::network::PeerView;
use crate::metrics::NetworkMetrics;
use crate::wire::{SyncRequest, SyncResponse, decode, encode};
use fetch::Fetched;

/// Blocks caught up at once at which the node warns, and how often.
const FAR_BEHIND: u64 = 20;
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How long a peer that served invalid blocks stays banned.
const BAN: Duration = Duration::from_secs(600);
/// Largest response we build (the network's limit is above it).
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Peers asked for their height each round.
const STATUS_FANOUT: usize = 4;
/// Requests served at once (each reads up to `MAX_RESPONSE_BYTES`).
const SERVE_CONCURRENCY: usize = 4;
/// Block requests of one peer served at once; more are refused.
const SERVE_PER_PEER: usize = 2;
/// How long a peer whose claim was not backed is not asked.
const COOLDOWN: Duration = Duration::from_secs(30);
/// After this many unbacked claims, it is not asked for `LONG_COOLDOWN`.
const MAX_STRIKES: u32 = 3;
const LONG_COOLDOWN: Duration = Duration::from_secs(600);

/// What the server serves.
#[derive(Clone, Copy, Debug)]
pub struct Serving {
    /// Most blocks in one response.
    pub max_blocks: u64,
    /// Heights that are multiples of this are offered as snapshots.
    pub snapshot_interval: u64,
    /// How many of the latest such heights are offered.
    pub snapshot_keep: u64,
}

/// A request from a peer, to answer with [`tally_p2p::Handle::respond`].
#[derive(Debug)]
pub struct ServeRequest {
    pub peer: PeerId,
    pub id: RequestId,
    pub data: Vec<u8>,
}

/// Answers peers' sync requests from the store, a few at a time. A store
/// error is answered as an error and logged: a peer's request must never
/// stop the node (a local store failure stops it through the ledger, the
/// only writer).
pub fn spawn_server(
    store: Arc<Store>,
    network: tally_p2p::Handle,
    mut requests: mpsc::Receiver<ServeRequest>,
    serving: Serving,
    metrics: NetworkMetrics,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(SERVE_CONCURRENCY));
        let per_peer = Arc::new(std::sync::Mutex::new(HashMap::<PeerId, usize>::new()));
        while let Some(ServeRequest { peer, id, data }) = requests.recv().await {
            metrics.sync_requests_served.inc();
            // A height request is one read: answered at once, never queued
            // behind block reads.
            if matches!(decode::<SyncRequest>(&data), Ok(SyncRequest::Status)) {
                let response = serve(&store, &data, &serving).unwrap_or_else(|e| {
                    warn!(%peer, error = %e, "could not serve a sync request");
                    SyncResponse::Error("the request could not be served".into())
                });
                let network = network.clone();
                tokio::spawn(async move { network.respond(id, encode(&response)).await });
                continue;
            }
            let busy = {
                let mut per_peer = per_peer.lock().unwrap_or_else(|e| e.into_inner());
                let serving = per_peer.entry(peer).or_insert(0);
                *serving += 1;
                *serving > SERVE_PER_PEER
            };
            // Never wait for a slot here: this loop also answers height
            // requests, which slow requests must not hold up.
            let permit = if busy {
                None
            } else {
                slots.clone().try_acquire_owned().ok()
            };
            let (store, network, per_peer) = (store.clone(), network.clone(), per_peer.clone());
            tokio::spawn(async move {
                let response = match permit {
                    None => SyncResponse::Error("busy: too many requests".into()),
                    Some(permit) => {
                        let response =
                            tokio::task::spawn_blocking(move || serve(&store, &data, &serving))
                                .await
                                .unwrap_or_else(|e| Err(anyhow::anyhow!("panicked: {e}")))
                                .unwrap_or_else(|e| {
                                    warn!(%peer, error = %e, "could not serve a sync request");
                                    SyncResponse::Error("the request could not be served".into())
                                });
                        drop(permit);
                        response
                    }
                };
                {
                    let mut per_peer = per_peer.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(serving) = per_peer.get_mut(&peer) {
                        *serving -= 1;
                        if *serving == 0 {
                            per_peer.remove(&peer);
                        }
                    }
                }
                let _ = network.respond(id, encode(&response)).await;
            });
        }
        Ok(())
    })
}

fn serve(store: &Store, data: &[u8], serving: &Serving) -> anyhow::Result<SyncResponse> {
    let max_blocks = serving.max_blocks;
    let Ok(request) = decode::<SyncRequest>(data) else {
        return Ok(SyncResponse::Error("undecodable request".into()));
    };
    Ok(match request {
        SyncRequest::Status => {
            let tip = store.tip()?;
            SyncResponse::Status {
                height: tip.height,
                hash: tip.hash,
            }
        }
        SyncRequest::Blocks { from, count } => {
            let start = store.history_start()?;
            if from.max(1) < start {
                return Ok(SyncResponse::Error(format!(
                    "blocks below {start} are not held here (pruned, or state-synced)"
                )));
            }
            let tip = store.tip()?.height;
            let last = from
                .saturating_add(u64::from(count).min(max_blocks))
                .saturating_sub(1)
                .min(tip);
            let mut blocks = Vec::new();
            let mut bytes = 0;
            for height in from.max(1)..=last {
                let (Some(block), Some(commit)) =
                    (store.block_by_height(height)?, store.seen_commit(height)?)
                else {
                    break;
                };
                // A block that would take the response past the budget waits
                // for the next request, unless it is the first: so a response
                // is at most one block (8 MiB at most, by the genesis rules)
                // or the budget, within the 16 MiB the network allows.
                let size = block.encode().len();
                if !blocks.is_empty() && bytes + size > MAX_RESPONSE_BYTES {
                    break;
                }
                bytes += size;
                blocks.push((block, commit));
            }
            SyncResponse::Blocks(blocks)
        }
        SyncRequest::Snapshots => SyncResponse::Snapshots(snapshot_offers(store, serving)?),
        SyncRequest::Chunk {
            height,
            state_root,
            chunks,
            index,
        } => {
            // Only the snapshots offered, cut at least as fine as this node
            // would: a request costs at most one chunk of about the target
            // size, and never reaches a height being pruned.
            let offered = offered_heights(store.tip()?.height, serving).contains(&height);
            match store.snapshot_info(height)? {
                Some(info) if offered && info.state_root == state_root && chunks >= info.chunks => {
                    match store.state_chunk(height, chunks, index) {
                        Ok(chunk) => SyncResponse::Chunk(chunk),
                        Err(tally_ledger::StoreError::Snapshot(why)) => SyncResponse::Error(why),
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => SyncResponse::Error(format!(
                    "no snapshot with root {state_root} at height {height} cut in {chunks} is offered here"
                )),
            }
        }
    })
}

/// The heights this node offers snapshots at: the latest `snapshot_keep`
/// multiples of `snapshot_interval` at or below `tip`, newest first.
fn offered_heights(tip: u64, serving: &Serving) -> Vec<u64> {
    let interval = serving.snapshot_interval.max(1);
    let latest = tip - tip % interval;
    (0..serving.snapshot_keep)
        .map_while(|i| latest.checked_sub(i.checked_mul(interval)?))
        .filter(|h| *h > 0)
        .collect()
}

/// The snapshots this node offers, newest first: those of the offered
/// heights whose header, certificate and state it holds (none from a store
/// that predates key preimages).
fn snapshot_offers(store: &Store, serving: &Serving) -> anyhow::Result<Vec<SnapshotOffer>> {
    if !store.serves_snapshots()? {
        return Ok(Vec::new());
    }
    let start = store.state_start()?;
    let mut offers = Vec::new();
    for height in offered_heights(store.tip()?.height, serving) {
        if height < start {
            break;
        }
        if let (Some((header, _)), Some(commit), Some(info)) = (
            store.header_by_height(height)?,
            store.seen_commit(height)?,
            store.snapshot_info(height)?,
        ) {
            offers.push(SnapshotOffer {
                info,
                header,
                commit,
            });
        }
    }
    Ok(offers)
}

/// Why a response was refused before any of its blocks was looked at.
pub fn check_range(blocks: &[(Block, Commit)], from: u64, count: u32) -> Result<(), String> {
    if blocks.len() > count as usize {
        return Err(format!("{} blocks for a request of {count}", blocks.len()));
    }
    for (i, (block, commit)) in blocks.iter().enumerate() {
        let expected = from.saturating_add(i as u64);
        if block.height() != expected || commit.height != expected {
            return Err(format!(
                "block {} (certificate {}) where {expected} was asked for",
                block.height(),
                commit.height
            ));
        }
    }
    Ok(())
}

/// What the client remembers of peers whose claims were not backed.
#[derive(Debug, Default)]
struct Strikes {
    peers: HashMap<PeerId, (u32, Instant)>,
}

impl Strikes {
    fn cooling(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|(strikes, at)| {
            let cooldown = if *strikes >= MAX_STRIKES {
                LONG_COOLDOWN
            } else {
                COOLDOWN
            };
            at.elapsed() < cooldown
        })
    }

    /// One more strike; returns how many the peer has.
    fn add(&mut self, peer: PeerId) -> u32 {
        // Strikes are forgotten once the long cooldown has passed.
        self.peers.retain(|_, (_, at)| at.elapsed() < LONG_COOLDOWN);
        let entry = self.peers.entry(peer).or_insert((0, Instant::now()));
        entry.0 += 1;
        entry.1 = Instant::now();
        entry.0
    }

    fn forget(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }
}

/// Fetches blocks when peers are ahead.
// Each argument is one of the actor's links, passed once at start.
#[allow(clippy::too_many_arguments)]
pub fn spawn_client(
    store: Arc<Store>,
    network: tally_p2p::Handle,
    ledger: LedgerHandle,
    syncing: Arc<AtomicBool>,
    interval: Duration,
    batch: u64,
    metrics: NetworkMetrics,
    recovery: Histogram,
    view: Arc<PeerView>,
    params: Arc<ChainParams>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_peer = 0usize;
        // Our height at the previous round.
        let mut last_seen: Option<u64> = None;
        let mut strikes = Strikes::default();
        let mut last_warned = None;
        loop {
            tick.tick().await;
            let Ok(peers) = network.peers().await else {
                return Ok(());
            };
            let connected: Vec<PeerId> = peers.into_iter().map(|p| p.peer).collect();
            view.retain(&connected);
            let peers: Vec<PeerId> = connected
                .into_iter()
                .filter(|p| !strikes.cooling(p))
                .collect();
            if peers.is_empty() {
                syncing.store(false, Ordering::Relaxed);
                continue;
            }
            // Ask a rotating few for their height.
            let asked: Vec<PeerId> = (0..peers.len().min(STATUS_FANOUT))
                .map(|i| peers[(next_peer + i) % peers.len()])
                .collect();
            next_peer = next_peer.wrapping_add(1);
            let status = encode(&SyncRequest::Status);
            metrics.sync_requests_made.inc_by(asked.len() as u64);
            let answers = futures::future::join_all(
                asked
                    .iter()
                    .map(|peer| network.request(*peer, status.clone())),
            )
            .await;
            let ours = store.tip()?.height;
            // One block behind is usually consensus deciding it right now;
            // two or more, or one for a whole interval without progress
            // (the rest moved on without us), means we missed heights.
            let stuck = last_seen == Some(ours);
            last_seen = Some(ours);
            let behind_by = if stuck { 1 } else { 2 };
            // The peers ahead, each to be asked for what it claims to have.
            let mut ahead: Vec<(PeerId, u64)> = Vec::new();
            let mut highest = ours;
            for (peer, answer) in asked.iter().zip(answers) {
                let height = match answer.map(|bytes| decode::<SyncResponse>(&bytes)) {
                    Ok(Ok(SyncResponse::Status { height, .. })) => height,
                    _ => continue,
                };
                highest = highest.max(height);
                view.saw_height(*peer, height);
                if height >= ours.saturating_add(behind_by) {
                    ahead.push((*peer, height));
                }
            }
            // A claim, not a fact (a peer may inflate it); block sync
            // itself trusts only certificates.
            metrics
                .sync_lag
                .set(i64::try_from(highest - ours).unwrap_or(i64::MAX));
            if ahead.is_empty() {
                syncing.store(false, Ordering::Relaxed);
                continue;
            }
            syncing.store(true, Ordering::Relaxed);
            info!(
                ours,
                theirs = highest,
                peers = ahead.len(),
                "behind: fetching blocks"
            );
            let links = fetch::Links {
                store: &store,
                params: &params,
                network: &network,
                ledger: &ledger,
                batch,
                metrics: &metrics,
                recovery: &recovery,
            };
            let outcomes = fetch::fetch(&links, ahead).await?;
            let now = store.tip()?.height;
            let gained = now.saturating_sub(ours);
            metrics.sync_blocks_received.inc_by(gained);
            // Far behind is worth an operator's attention (a few blocks is
            // ordinary catching up), once certified blocks proved it, at
            // most once a minute: a peer's claim alone says nothing.
            if gained >= FAR_BEHIND
                && last_warned.is_none_or(|t: Instant| t.elapsed() >= WARN_EVERY)
            {
                last_warned = Some(Instant::now());
                warn!(
                    from = ours,
                    to = now,
                    gained,
                    "this node was far behind its peers: caught up by block sync"
                );
            }
            for (peer, fetched) in outcomes {
                match fetched {
                    Fetched::Progress => strikes.forget(&peer),
                    Fetched::Unbacked(why) => {
                        let count = strikes.add(peer);
                        if count >= MAX_STRIKES {
                            warn!(%peer, why, strikes = count, "peer keeps claiming blocks it does not serve: not asking it for 10 minutes");
                        } else {
                            debug!(%peer, why, "peer did not back its claimed height");
                        }
                    }
                    Fetched::Stopped | Fetched::Banned => {}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use tally_ledger::{Address, Hash, Header};

    use super::*;

    fn at(height: u64) -> (Block, Commit) {
        let block = Block {
            header: Header {
                chain_id: 1,
                height,
                time: 0,
                prev_hash: Hash::ZERO,
                tx_root: Hash::ZERO,
                state_root: Hash::ZERO,
                proposer: Address([0; 20]),
                validators_hash: Hash::ZERO,
                next_validators_hash: Hash::ZERO,
                last_commit_hash: Hash::ZERO,
            },
            txs: Vec::new(),
            last_commit: None,
        };
        let commit = Commit {
            height,
            round: 0,
            block_hash: block.hash(),
            signatures: Vec::new(),
        };
        (block, commit)
    }

    #[test]
    fn a_response_must_be_the_range_asked_for() {
        assert!(check_range(&[at(5), at(6)], 5, 2).is_ok());
        assert!(check_range(&[], 5, 2).is_ok());
        // Old blocks, a gap, too many, a certificate of another height.
        assert!(check_range(&[at(1)], 5, 2).is_err());
        assert!(check_range(&[at(5), at(7)], 5, 2).is_err());
        assert!(check_range(&[at(5), at(6), at(7)], 5, 2).is_err());
        let (block, mut commit) = at(5);
        commit.height = 4;
        assert!(check_range(&[(block, commit)], 5, 1).is_err());
    }
}
