//! Block sync. The server answers peers' requests for our height and for
//! committed blocks with their certificates. The client asks peers for their
//! height every interval and, when one is ahead, fetches the missing blocks
//! and hands each to the ledger, which checks its certificate against the
//! validator set and re-executes it before committing. A peer that serves
//! something that fails those checks is banned.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tally_ledger::Store;
use tally_p2p::{PeerId, RequestId};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::ledger::{LedgerError, LedgerHandle};
use crate::wire::{SyncRequest, SyncResponse, decode, encode};

/// How long a peer that served invalid blocks stays banned.
const BAN: Duration = Duration::from_secs(600);
/// Largest response we build (the network's limit is above it).
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Peers asked for their height each round.
const STATUS_FANOUT: usize = 4;

/// A request from a peer, to answer with [`tally_p2p::Handle::respond`].
#[derive(Debug)]
pub struct ServeRequest {
    pub peer: PeerId,
    pub id: RequestId,
    pub data: Vec<u8>,
}

/// Answers peers' sync requests from the store.
pub fn spawn_server(
    store: Arc<Store>,
    network: tally_p2p::Handle,
    mut requests: mpsc::Receiver<ServeRequest>,
    max_blocks: u64,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let store = store.clone();
            let response = tokio::task::spawn_blocking(move || {
                serve(&store, &request.data, max_blocks).map(|r| (request, r))
            })
            .await?;
            match response {
                Ok((request, response)) => {
                    let _ = network.respond(request.id, encode(&response)).await;
                }
                Err(e) => anyhow::bail!("sync server: {e}"),
            }
        }
        Ok(())
    })
}

fn serve(
    store: &Store,
    data: &[u8],
    max_blocks: u64,
) -> Result<SyncResponse, tally_ledger::StoreError> {
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
                bytes += block.encode().len();
                blocks.push((block, commit));
                if bytes >= MAX_RESPONSE_BYTES {
                    break;
                }
            }
            SyncResponse::Blocks(blocks)
        }
    })
}

/// Fetches blocks when peers are ahead.
pub fn spawn_client(
    store: Arc<Store>,
    network: tally_p2p::Handle,
    ledger: LedgerHandle,
    syncing: Arc<AtomicBool>,
    interval: Duration,
    batch: u64,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_peer = 0usize;
        // Our height at the previous round.
        let mut last_seen: Option<u64> = None;
        loop {
            tick.tick().await;
            let Ok(peers) = network.peers().await else {
                return Ok(());
            };
            if peers.is_empty() {
                continue;
            }
            // Ask a rotating few for their height.
            let asked: Vec<PeerId> = (0..peers.len().min(STATUS_FANOUT))
                .map(|i| peers[(next_peer + i) % peers.len()].peer)
                .collect();
            next_peer = next_peer.wrapping_add(1);
            let status = encode(&SyncRequest::Status);
            let answers = futures::future::join_all(
                asked
                    .iter()
                    .map(|peer| network.request(*peer, status.clone())),
            )
            .await;
            let mut best: Option<(u64, PeerId)> = None;
            for (peer, answer) in asked.iter().zip(answers) {
                let height = match answer.map(|bytes| decode::<SyncResponse>(&bytes)) {
                    Ok(Ok(SyncResponse::Status { height, .. })) => height,
                    _ => continue,
                };
                if best.is_none_or(|(h, _)| height > h) {
                    best = Some((height, *peer));
                }
            }
            let Some((their_height, peer)) = best else {
                continue;
            };
            let ours = store.tip()?.height;
            // One block behind is usually consensus deciding it right now;
            // two or more, or one for a whole interval without progress
            // (the rest moved on without us), means we missed heights.
            let stuck = last_seen == Some(ours);
            last_seen = Some(ours);
            if their_height <= ours || (their_height == ours + 1 && !stuck) {
                syncing.store(false, Ordering::Relaxed);
                continue;
            }
            syncing.store(true, Ordering::Relaxed);
            info!(ours, theirs = their_height, %peer, "behind: fetching blocks");
            fetch(&store, &network, &ledger, peer, their_height, batch).await?;
        }
    })
}

/// Fetches and applies blocks from `peer` up to `target`. Returns early when
/// the peer misbehaves (it is banned) or stops answering.
async fn fetch(
    store: &Store,
    network: &tally_p2p::Handle,
    ledger: &LedgerHandle,
    peer: PeerId,
    target: u64,
    batch: u64,
) -> anyhow::Result<()> {
    loop {
        let from = store.tip()?.height + 1;
        if from > target {
            return Ok(());
        }
        let count = u32::try_from((target - from + 1).min(batch)).unwrap_or(u32::MAX);
        let request = encode(&SyncRequest::Blocks { from, count });
        let blocks = match network.request(peer, request).await {
            Ok(bytes) => match decode::<SyncResponse>(&bytes) {
                Ok(SyncResponse::Blocks(blocks)) => blocks,
                Ok(SyncResponse::Error(e)) => {
                    debug!(%peer, error = e, "peer could not serve blocks");
                    return Ok(());
                }
                _ => {
                    warn!(%peer, "peer sent an undecodable sync response: banning it");
                    let _ = network.ban(peer, BAN).await;
                    return Ok(());
                }
            },
            Err(e) => {
                debug!(%peer, error = %e, "block request failed");
                return Ok(());
            }
        };
        if blocks.is_empty() {
            return Ok(());
        }
        for (block, commit) in blocks {
            let height = block.height();
            match ledger.apply_synced(block, commit).await {
                Ok(_) => {}
                Err(e) if e.is_invalid_data() => {
                    warn!(%peer, height, error = %e, "peer served an invalid block: banning it");
                    let _ = network.ban(peer, BAN).await;
                    return Ok(());
                }
                Err(LedgerError::Stopped) => anyhow::bail!("the ledger actor stopped"),
                Err(e) => {
                    warn!(height, error = %e, "could not apply a synced block");
                    return Ok(());
                }
            }
        }
    }
}
