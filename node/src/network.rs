//! Routes what the p2p network delivers: consensus messages to the
//! consensus driver, transaction batches (verified on the blocking pool, so
//! every core recovers signatures) to the mempool, sync requests to the sync
//! server. Undecodable or invalid gossip is rejected, which lowers the
//! sender's score until the network bans it.

use std::sync::Arc;

use tally_ledger::{SignedTransaction, VerifiedTransaction};
use tally_p2p::{Event, Topic, Verdict};
use tokio::sync::{Semaphore, mpsc};
use tracing::debug;

use crate::consensus::Inbound;
use crate::mempool::MempoolHandle;
use crate::sync::ServeRequest;
use crate::wire::{ConsensusEnvelope, TxBatch, decode};

/// Most transactions in one gossiped batch.
pub const MAX_GOSSIP_BATCH: usize = 10_000;

pub fn spawn(
    mut events: mpsc::Receiver<Event>,
    network: tally_p2p::Handle,
    consensus: mpsc::Sender<Inbound>,
    mempool: MempoolHandle,
    requests: mpsc::Sender<ServeRequest>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    // Batches being verified at once: enough to keep every core busy.
    let verifying = Arc::new(Semaphore::new(
        std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
    ));
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Message {
                    topic: Topic::Consensus,
                    source,
                    id,
                    data,
                    ..
                } => match decode::<ConsensusEnvelope>(&data) {
                    Ok(envelope) => {
                        let inbound = Inbound {
                            envelope,
                            id: id.clone(),
                            source,
                        };
                        if consensus.try_send(inbound).is_err() {
                            let _ = network.report(id, source, Verdict::Ignore).await;
                        }
                    }
                    Err(_) => {
                        let _ = network.report(id, source, Verdict::Reject).await;
                    }
                },
                Event::Message {
                    topic: Topic::Txs,
                    source,
                    id,
                    data,
                    ..
                } => {
                    let Ok(permit) = verifying.clone().acquire_owned().await else {
                        return Ok(());
                    };
                    let (network, mempool) = (network.clone(), mempool.clone());
                    tokio::spawn(async move {
                        let verified = tokio::task::spawn_blocking(move || verify_batch(&data))
                            .await
                            .ok()
                            .flatten();
                        drop(permit);
                        let verdict = if verified.is_some() {
                            Verdict::Accept
                        } else {
                            Verdict::Reject
                        };
                        let _ = network.report(id, source, verdict).await;
                        if let Some(txs) = verified {
                            let _ = mempool.add(txs, false).await;
                        }
                    });
                }
                Event::Message {
                    topic, source, id, ..
                } => {
                    debug!(?topic, %source, "gossip on an unused topic");
                    let _ = network.report(id, source, Verdict::Ignore).await;
                }
                Event::Request { peer, id, data } => {
                    if requests
                        .send(ServeRequest { peer, id, data })
                        .await
                        .is_err()
                    {
                        anyhow::bail!("the sync server stopped");
                    }
                }
                Event::PeerConnected { peer, addr } => debug!(%peer, %addr, "peer connected"),
                Event::PeerDisconnected { peer } => debug!(%peer, "peer disconnected"),
            }
        }
        Ok(())
    })
}

/// Decodes a gossiped batch and checks every signature; `None` if anything
/// in it is malformed or forged (the whole batch is then rejected).
fn verify_batch(data: &[u8]) -> Option<Vec<VerifiedTransaction>> {
    let batch: TxBatch = decode(data).ok()?;
    if batch.txs.is_empty() || batch.txs.len() > MAX_GOSSIP_BATCH {
        return None;
    }
    batch
        .txs
        .iter()
        .map(|bytes| {
            SignedTransaction::decode(bytes)
                .and_then(SignedTransaction::verify)
                .ok()
        })
        .collect()
}
