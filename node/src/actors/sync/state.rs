//! State sync: a node with an empty store installs a recent snapshot of the
//! state from its peers instead of replaying every block, then block-syncs
//! from the snapshot's height.
//!
//! 1. **Discovery.** Every connected peer is asked which snapshots it
//!    offers. An offer is kept only if its parts agree and the genesis
//!    validators certified its header (a peer whose offer fails is banned);
//!    the highest height wins, a couple of seconds after the first good
//!    offer, so that a peer ahead of the rest gets heard. An offer whose
//!    header names a later validator set is passed over, not held against
//!    its peer: this node cannot yet follow the set changes that lead to
//!    it without their blocks (see docs/SECURITY.md), and replays blocks
//!    instead.
//! 2. **Chunks.** The snapshot is cut into `2^k` chunks ([`tally_ledger::snapshot`]);
//!    they are fetched from every peer at once, at most [`PER_PEER`] per
//!    peer and [`MAX_OUTSTANDING`] in all. Each is checked alone against
//!    the certified state root as it arrives and staged in the store; a
//!    peer whose chunk does not check is banned and the chunk asked of
//!    another. A refusal or timeout only rests the peer a while.
//! 3. **Install.** The tree is built from the staged chunks and the tip set
//!    to the snapshot in one last write.
//!
//! When no chunk arrives for [`STALL`] (the snapshot is no longer offered,
//! or its peers left) the snapshot is dropped and discovery starts over; a
//! staged chunk found damaged while installing is fetched again.
//!
//! The store records the snapshot before the first chunk is asked for, so a
//! node killed at any point resumes the same snapshot at restart with the
//! chunks it had, and never runs on a half-installed state.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tally_consensus::ValidatorSet;
use tally_ledger::governance::validators_hash;
use tally_ledger::snapshot::{SnapshotOffer, verify_chunk};
use tally_ledger::{Address, Hash, Store};
use tally_p2p::PeerId;
use tracing::{debug, info, warn};

use super::BAN;
use crate::actors::ledger::{ChainParams, check_certificate};
use crate::chain::consensus_set;
use crate::metrics::NetworkMetrics;
use crate::wire::{SyncRequest, SyncResponse, decode, encode};

/// Chunk requests in flight to one peer, and in all.
const PER_PEER: usize = 2;
const MAX_OUTSTANDING: usize = 8;
/// How long discovery goes on after the first good offer.
const SETTLE: Duration = Duration::from_secs(2);
/// Most offers a peer may make (a node offers a handful).
const MAX_OFFERS: usize = 16;
/// How long a peer that refused or timed out is not asked.
const REST: Duration = Duration::from_secs(5);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// With no chunk staged for this long, the snapshot is given up for
/// another one.
const STALL: Duration = Duration::from_secs(60);

/// What state sync works with.
#[derive(Debug)]
pub struct Links {
    pub store: Arc<Store>,
    pub network: tally_p2p::Handle,
    pub params: Arc<ChainParams>,
    pub metrics: NetworkMetrics,
}

/// Installs a snapshot if the store is empty (or resumes the one a
/// previous run began). Returns whether one was installed; `false` when no
/// peer offered one within `discovery` (the node then replays blocks).
pub async fn run(links: &Links, discovery: Duration) -> anyhow::Result<bool> {
    let store = &links.store;
    loop {
        let offer = match store.state_sync_target()? {
            Some(offer) => {
                info!(
                    height = offer.info.height,
                    "resuming the state sync an earlier run began"
                );
                offer
            }
            None => {
                if store.tip()?.height > 0 {
                    return Ok(false);
                }
                let Some(offer) = discover(links, discovery).await? else {
                    info!(
                        waited_ms = discovery.as_millis() as u64,
                        "no peer offered a snapshot: replaying blocks from genesis"
                    );
                    return Ok(false);
                };
                store.begin_state_sync(&offer)?;
                offer
            }
        };
        let started = Instant::now();
        info!(
            height = offer.info.height,
            state_root = %offer.info.state_root,
            accounts = offer.info.accounts,
            chunks = offer.info.chunks,
            "state sync: fetching the snapshot"
        );
        if !fetch_chunks(links, &offer).await? {
            // No peer served a chunk for a while (the snapshot is no longer
            // offered, or the peers that had it left): start over with
            // whatever is offered now, unless the state is being written.
            if store.abandon_state_sync()? {
                warn!(
                    height = offer.info.height,
                    "state sync: no chunk arrived for {STALL:?}; looking for another snapshot"
                );
            }
            continue;
        }
        let installer = store.clone();
        let Some(tip) =
            tokio::task::spawn_blocking(move || installer.finish_state_sync()).await??
        else {
            // A staged chunk was damaged and dropped: fetch it again.
            continue;
        };
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        links.metrics.sync_snapshot_height.set(gauge(tip.height));
        links
            .metrics
            .sync_snapshot_accounts
            .set(gauge(offer.info.accounts));
        info!(
            height = tip.height,
            accounts = offer.info.accounts,
            seconds = started.elapsed().as_secs_f64(),
            "state sync done: block-syncing from the snapshot"
        );
        return Ok(true);
    }
}

/// Why an offer cannot be trusted: its parts disagree, or the genesis
/// validators (`set`) did not certify its header.
fn check_offer(
    params: &ChainParams,
    set: &ValidatorSet<Address>,
    offer: &SnapshotOffer,
) -> Result<(), String> {
    offer.check_shape(params.exec.chain_id)?;
    check_certificate(
        params.exec.chain_id,
        set,
        &offer.commit,
        offer.info.height,
        &offer.header.hash(),
    )
    .map_err(|e| e.to_string())
}

async fn ban(links: &Links, peer: PeerId, why: &str) {
    warn!(%peer, why, "peer served bad state sync data: banning it");
    let _ = links.network.ban(peer, BAN).await;
}

/// Asks every peer for its snapshots until `discovery` has passed, or
/// [`SETTLE`] after the first good offer; the highest good offer.
async fn discover(links: &Links, discovery: Duration) -> anyhow::Result<Option<SnapshotOffer>> {
    let deadline = Instant::now() + discovery;
    let mut asked: HashSet<PeerId> = HashSet::new();
    // Headers and certificates that checked: other peers offer the same.
    let mut certified: HashSet<(Hash, Hash)> = HashSet::new();
    let mut best: Option<SnapshotOffer> = None;
    let mut settle_at: Option<Instant> = None;
    // An empty store knows the genesis set only.
    let genesis = links
        .store
        .validator_set_at(1)?
        .context("the genesis validator set")?;
    let genesis_hash = validators_hash(&genesis.members);
    let genesis_set = Arc::new(consensus_set(&genesis.members)?);
    loop {
        let now = Instant::now();
        if now >= deadline || settle_at.is_some_and(|at| now >= at) {
            return Ok(best);
        }
        let peers = links.network.peers().await?;
        let new: Vec<PeerId> = peers
            .into_iter()
            .map(|p| p.peer)
            .filter(|p| !asked.contains(p))
            .collect();
        if new.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        asked.extend(new.iter().copied());
        let request = encode(&SyncRequest::Snapshots);
        let answers = futures::future::join_all(
            new.iter()
                .map(|peer| links.network.request(*peer, request.clone())),
        )
        .await;
        for (peer, answer) in new.into_iter().zip(answers) {
            let offers = match answer.map(|bytes| decode::<SyncResponse>(&bytes)) {
                Ok(Ok(SyncResponse::Snapshots(offers))) => offers,
                Ok(Ok(SyncResponse::Error(why))) => {
                    debug!(%peer, why, "peer offers no snapshots");
                    continue;
                }
                Ok(_) => {
                    ban(
                        links,
                        peer,
                        "an undecodable or mismatched answer to a snapshot request",
                    )
                    .await;
                    continue;
                }
                Err(e) => {
                    debug!(%peer, error = %e, "snapshot request failed");
                    continue;
                }
            };
            if offers.len() > MAX_OFFERS {
                ban(links, peer, &format!("{} snapshot offers", offers.len())).await;
                continue;
            }
            for offer in offers {
                // The shape always (it ties the offer's height, root and
                // chunk count to the header); the signatures once per
                // header and certificate.
                if offer.header.validators_hash != genesis_hash {
                    debug!(%peer, height = offer.info.height, "a snapshot of a later validator set: passed over");
                    continue;
                }
                let checked = match offer.check_shape(links.params.exec.chain_id) {
                    Err(why) => Err(why),
                    Ok(()) if certified.contains(&(offer.header.hash(), offer.commit.hash())) => {
                        Ok(())
                    }
                    Ok(()) => {
                        let (params, set) = (links.params.clone(), genesis_set.clone());
                        let checked = offer.clone();
                        tokio::task::spawn_blocking(move || check_offer(&params, &set, &checked))
                            .await?
                    }
                };
                if let Err(why) = checked {
                    ban(links, peer, &format!("a snapshot offer: {why}")).await;
                    break;
                }
                certified.insert((offer.header.hash(), offer.commit.hash()));
                match &mut best {
                    // The account count (hence the cut) is the peer's word:
                    // the largest claimed for the same state wins, so a
                    // peer that understates it cannot make every chunk too
                    // big for the honest peers to serve.
                    Some(b)
                        if b.info.height == offer.info.height
                            && b.info.state_root == offer.info.state_root =>
                    {
                        if offer.info.accounts > b.info.accounts {
                            b.info.accounts = offer.info.accounts;
                            b.info.chunks = offer.info.chunks;
                        }
                    }
                    Some(b) if b.info.height >= offer.info.height => {}
                    _ => {
                        info!(%peer, height = offer.info.height, accounts = offer.info.accounts, "snapshot offered");
                        best = Some(offer);
                        settle_at.get_or_insert(Instant::now() + SETTLE);
                    }
                }
            }
        }
    }
}

/// Fetches every chunk not staged yet, from all peers at once; `false` if
/// none arrived for [`STALL`].
async fn fetch_chunks(links: &Links, offer: &SnapshotOffer) -> anyhow::Result<bool> {
    let info = offer.info;
    let staged: HashSet<u32> = links.store.staged_chunks()?.into_iter().collect();
    let mut missing: VecDeque<u32> = (0..info.chunks).filter(|i| !staged.contains(i)).collect();
    let total = info.chunks as usize;
    let mut have = total - missing.len();
    let mut busy: HashMap<PeerId, usize> = HashMap::new();
    let mut resting: HashMap<PeerId, Instant> = HashMap::new();
    let mut banned: HashSet<PeerId> = HashSet::new();
    let mut peers: Vec<PeerId> = Vec::new();
    let mut peers_read: Option<Instant> = None;
    let mut last_progress = Instant::now();
    let mut last_chunk = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    while !missing.is_empty() || !in_flight.is_empty() {
        if last_chunk.elapsed() >= STALL {
            return Ok(false);
        }
        if peers_read.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            peers = links
                .network
                .peers()
                .await?
                .into_iter()
                .map(|p| p.peer)
                .filter(|p| !banned.contains(p))
                .collect();
            peers_read = Some(Instant::now());
            resting.retain(|_, until| *until > Instant::now());
        }
        while in_flight.len() < MAX_OUTSTANDING {
            let Some(&index) = missing.front() else { break };
            let Some(&peer) = peers
                .iter()
                .filter(|p| !resting.contains_key(p))
                .filter(|p| busy.get(p).copied().unwrap_or(0) < PER_PEER)
                .min_by_key(|p| busy.get(p).copied().unwrap_or(0))
            else {
                break;
            };
            missing.pop_front();
            *busy.entry(peer).or_insert(0) += 1;
            let request = encode(&SyncRequest::Chunk {
                height: info.height,
                state_root: info.state_root,
                chunks: info.chunks,
                index,
            });
            let network = links.network.clone();
            in_flight.push(async move { (peer, index, network.request(peer, request).await) });
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            info!(
                have,
                total,
                peers = peers.len(),
                "state sync: fetching chunks"
            );
        }
        let Some((peer, index, answer)) = in_flight.next().await else {
            // No peer can be asked right now.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if let Some(n) = busy.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
        let why = match answer.map(|bytes| decode::<SyncResponse>(&bytes)) {
            Ok(Ok(SyncResponse::Chunk(chunk))) => {
                let checked = tokio::task::spawn_blocking(move || {
                    verify_chunk(&info, index, &chunk).map(|_| chunk)
                })
                .await?;
                match checked {
                    Ok(chunk) => {
                        links.store.stage_chunk(index, &chunk)?;
                        links.metrics.sync_chunks_received.inc();
                        have += 1;
                        last_chunk = Instant::now();
                        continue;
                    }
                    Err(why) => {
                        links.metrics.sync_chunks_refused.inc();
                        why
                    }
                }
            }
            Ok(Ok(SyncResponse::Error(why))) => {
                debug!(%peer, index, why, "peer refused a chunk");
                resting.insert(peer, Instant::now() + REST);
                missing.push_back(index);
                continue;
            }
            Ok(_) => "an undecodable or mismatched answer to a chunk request".to_string(),
            Err(e) => {
                debug!(%peer, index, error = %e, "chunk request failed");
                resting.insert(peer, Instant::now() + REST);
                missing.push_back(index);
                continue;
            }
        };
        ban(links, peer, &format!("chunk {index}: {why}")).await;
        banned.insert(peer);
        peers.retain(|p| *p != peer);
        missing.push_front(index);
    }
    Ok(true)
}

/// Answers peers' requests with a refusal (and drops their gossip) while
/// state sync runs and no other actor reads the network's events; returns
/// the events when `stop` fires.
pub async fn refuse_while_syncing(
    mut events: tokio::sync::mpsc::Receiver<tally_p2p::Event>,
    network: tally_p2p::Handle,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::sync::mpsc::Receiver<tally_p2p::Event> {
    let refusal = encode(&SyncResponse::Error("state sync under way".into()));
    loop {
        tokio::select! {
            _ = &mut stop => return events,
            event = events.recv() => match event {
                Some(tally_p2p::Event::Request { id, .. }) => {
                    let (network, refusal) = (network.clone(), refusal.clone());
                    tokio::spawn(async move { network.respond(id, refusal).await });
                }
                Some(_) => {}
                None => return events,
            },
        }
    }
}
