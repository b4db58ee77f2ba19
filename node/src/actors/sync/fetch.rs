//! One catch-up: blocks fetched from every peer ahead of us at once and
//! applied in height order, so that the ledger never waits for the network
//! while blocks are on their way.
//!
//! Three stages run at once, linked by bounded channels:
//! 1. **Requests**: up to [`MAX_OUTSTANDING`] ranges of `batch` blocks are
//!    asked for at once, spread over the peers ahead (at most [`PER_PEER`]
//!    each, what the server grants one peer), each of a peer that claims to
//!    have it. Each response is checked as it arrives (the range asked for)
//!    and put back in height order; the rest of a short response is asked
//!    for again, of any peer. The range the ledger waits for is asked of a
//!    second peer too once the first has been slow for [`HEDGE_AFTER`].
//! 2. **Checks, then recovery**: each block's certificate and body are
//!    checked ([`check_synced_block`]: no signature work on a forged block
//!    beyond its certificate's), then its transactions' signatures are
//!    recovered on every core, one block ahead of the ledger.
//! 3. **The ledger** checks the block again, executes it with the recovered
//!    transactions and commits it.
//!
//! A peer that serves something provably wrong is banned (its ranges go to
//! the others); one that fails, refuses or times out is left out of the rest
//! of this catch-up; one that serves nothing while claiming to be ahead
//! gets a strike from the caller. Memory is bounded by the ranges
//! outstanding (each response at most the network's 16 MiB) and the two
//! blocks between the stages.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prometheus_client::metrics::histogram::Histogram;
use tally_ledger::governance::ACTIVATION_DELAY;
use tally_ledger::{Block, Commit, Store, VerifiedTransaction};
use tally_p2p::PeerId;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{BAN, check_range};
use crate::actors::ledger::{ChainParams, LedgerError, LedgerHandle, check_synced_block};
use crate::metrics::NetworkMetrics;
use crate::par_map;
use crate::wire::{SyncRequest, SyncResponse, decode, encode};

/// Ranges asked for and not yet handed on, in all.
const MAX_OUTSTANDING: usize = 8;
/// Requests in flight to one peer (the server answers two at once).
const PER_PEER: usize = 2;
/// Longest catch-up before the peers ahead are asked again.
const MAX_FETCH: Duration = Duration::from_secs(20);
/// How long the range the ledger waits for may be in flight before it is
/// asked of a second peer too.
const HEDGE_AFTER: Duration = Duration::from_secs(3);

/// A range asked for.
struct Asked {
    count: u32,
    /// Requests for it in flight (2 once hedged).
    copies: u32,
    at: Instant,
    /// The peer first asked.
    by: PeerId,
    hedged: bool,
}

/// How a catch-up ended for one peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Blocks it served were applied.
    Progress,
    /// It claimed to be ahead but served no block.
    Unbacked(String),
    /// It did not answer, or refused (busy): no fault of its own.
    Stopped,
    /// It sent something provably wrong and was banned.
    Banned,
}

/// What a catch-up works with.
pub struct Links<'a> {
    pub store: &'a Arc<Store>,
    pub params: &'a Arc<ChainParams>,
    pub network: &'a tally_p2p::Handle,
    pub ledger: &'a LedgerHandle,
    pub batch: u64,
    pub metrics: &'a NetworkMetrics,
    /// Time spent recovering synced blocks' signatures.
    pub recovery: &'a Histogram,
}

/// A block on its way to the ledger, with the peer that served it.
type Incoming = (PeerId, Block, Commit);

/// What the recovery stage hands the ledger.
enum Checked {
    /// The block passed the checks before signature work and its
    /// transactions are recovered (none, if it was committed meanwhile).
    Apply(PeerId, Block, Commit, Vec<Option<Arc<VerifiedTransaction>>>),
    /// The block the peer served failed them.
    Invalid(PeerId, String),
}

/// Why the ledger stopped taking blocks.
enum Halt {
    /// The block `peer` served is invalid.
    Invalid(PeerId, String),
    /// It could not be applied for another reason (a store error).
    Failed(PeerId, String),
    /// The ledger actor is gone.
    Stopped,
}

/// Fetches blocks from `peers`, each claiming to have blocks up to the
/// height beside it, and applies them in order. A peer is only asked for
/// heights up to its own claim: an inflated claim comes back empty (a
/// strike for its maker), a modest one holds nobody back. Returns how it
/// went with each peer.
pub async fn fetch(
    links: &Links<'_>,
    peers: Vec<(PeerId, u64)>,
) -> anyhow::Result<HashMap<PeerId, Fetched>> {
    let mut outcome: HashMap<PeerId, Fetched> =
        peers.iter().map(|(p, _)| (*p, Fetched::Stopped)).collect();
    let mut usable = peers;
    let began = Instant::now();

    let (to_recover, mut recover_rx) = mpsc::channel::<Incoming>(1);
    let (to_apply, mut apply_rx) = mpsc::channel::<Checked>(1);
    let (store, params, recovery) = (
        links.store.clone(),
        links.params.clone(),
        links.recovery.clone(),
    );
    let recoverer = tokio::spawn(async move {
        while let Some((peer, block, commit)) = recover_rx.recv().await {
            // A block's certificate is checked against the set of its
            // height, which the store knows once it holds the block two
            // below: the applier is at most that far behind.
            while store.tip()?.height + ACTIVATION_DELAY < block.height() {
                if to_apply.is_closed() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let (store, params, recovery) = (store.clone(), params.clone(), recovery.clone());
            let checked = tokio::task::spawn_blocking(move || {
                // Committed by consensus meanwhile: nothing to recover (the
                // ledger compares it with the one it has).
                if store.tip().is_ok_and(|tip| block.height() <= tip.height) {
                    return Checked::Apply(peer, block, commit, Vec::new());
                }
                // No signature work on a block before its certificate and
                // body are checked: a peer's forged block costs us those
                // few checks.
                if let Err(e) = check_synced_block(&params, &store, &block, &commit) {
                    return Checked::Invalid(peer, e.to_string());
                }
                let started = Instant::now();
                let known = par_map(&block.txs, |tx| tx.clone().verify().ok().map(Arc::new));
                if !block.txs.is_empty() {
                    recovery.observe(started.elapsed().as_secs_f64());
                }
                Checked::Apply(peer, block, commit, known)
            })
            .await?;
            if to_apply.send(checked).await.is_err() {
                break;
            }
        }
        anyhow::Ok(())
    });
    let (ledger, wait) = (links.ledger.clone(), links.metrics.sync_wait.clone());
    let mut applier = tokio::spawn(async move {
        let mut applied: HashMap<PeerId, u64> = HashMap::new();
        let mut idle = Instant::now();
        while let Some(checked) = apply_rx.recv().await {
            wait.inc_by(idle.elapsed().as_secs_f64());
            let (peer, block, commit, known) = match checked {
                Checked::Apply(peer, block, commit, known) => (peer, block, commit, known),
                Checked::Invalid(peer, why) => return (applied, Some(Halt::Invalid(peer, why))),
            };
            let height = block.height();
            let halt = match ledger.apply_synced(block, commit, known).await {
                Ok(_) => {
                    *applied.entry(peer).or_default() += 1;
                    idle = Instant::now();
                    continue;
                }
                Err(e) if e.is_invalid_data() => {
                    Halt::Invalid(peer, format!("invalid block {height}: {e}"))
                }
                Err(LedgerError::Stopped) => Halt::Stopped,
                Err(e) => Halt::Failed(peer, format!("could not apply block {height}: {e}")),
            };
            return (applied, Some(halt));
        }
        (applied, None)
    });

    let mut next_from = links.store.tip()?.height + 1;
    let mut next_deliver = next_from;
    // Ranges to ask for again (the rest of short responses, and those of
    // peers that failed), and responses waiting for their turn.
    let mut retry: BTreeSet<(u64, u32)> = BTreeSet::new();
    let mut ready: BTreeMap<u64, (PeerId, VecDeque<(Block, Commit)>)> = BTreeMap::new();
    let mut busy: HashMap<PeerId, usize> = HashMap::new();
    // Ranges asked for and not yet served, by first height; `in_flight`
    // also holds the copies of a range asked of a second peer, whose
    // answers are dropped once one has served it.
    let mut asked: HashMap<u64, Asked> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    let mut finished = None;
    let request = |peer: PeerId, from: u64, count: u32| {
        let request = encode(&SyncRequest::Blocks { from, count });
        let network = links.network.clone();
        async move { (peer, from, count, network.request(peer, request).await) }
    };

    loop {
        // Ask for more while there is room, lowest heights first (the rest
        // of short responses, then new ranges), each of the least busy peer
        // that claims to have it.
        while asked.len() + ready.len() < MAX_OUTSTANDING && began.elapsed() < MAX_FETCH {
            let target = usable.iter().map(|(_, claim)| *claim).max().unwrap_or(0);
            let fresh = retry.is_empty();
            let (from, count) = match retry.first() {
                Some(range) => *range,
                None if next_from <= target => (
                    next_from,
                    u32::try_from((target - next_from + 1).min(links.batch)).unwrap_or(u32::MAX),
                ),
                None => break,
            };
            let load = |p: &PeerId| busy.get(p).copied().unwrap_or(0);
            let Some((peer, claim)) = usable
                .iter()
                .filter(|(p, claim)| *claim >= from && load(p) < PER_PEER)
                .min_by_key(|(p, _)| load(p))
                .copied()
            else {
                // Nobody left claims it, or those who do are busy.
                break;
            };
            if fresh {
                next_from += u64::from(count);
            } else {
                retry.remove(&(from, count));
            }
            // Only what this peer claims to have; the rest for the others.
            let count = match u32::try_from(claim - from + 1) {
                Ok(within) if within < count => {
                    retry.insert((from + u64::from(within), count - within));
                    within
                }
                _ => count,
            };
            *busy.entry(peer).or_default() += 1;
            asked.insert(
                from,
                Asked {
                    count,
                    copies: 1,
                    at: Instant::now(),
                    by: peer,
                    hedged: false,
                },
            );
            in_flight.push(request(peer, from, count));
        }
        let deliverable = ready
            .first_key_value()
            .is_some_and(|(from, _)| *from == next_deliver);
        if !deliverable && asked.is_empty() {
            // Nothing more will come: every range is handed on, the time is
            // up, or no peer is left to ask.
            break;
        }
        // The range the ledger waits for, asked of a second peer once the
        // first has been slow for HEDGE_AFTER: a peer that holds a range
        // until its request times out costs seconds, not the catch-up.
        let mut hedge_at = None;
        if !deliverable && let Some(slow) = asked.get_mut(&next_deliver).filter(|a| !a.hedged) {
            let last = next_deliver + u64::from(slow.count) - 1;
            let load = |p: &PeerId| busy.get(p).copied().unwrap_or(0);
            let other = usable
                .iter()
                .filter(|(p, claim)| *p != slow.by && *claim >= last && load(p) < PER_PEER)
                .min_by_key(|(p, _)| load(p))
                .map(|(p, _)| *p);
            match other {
                Some(peer) if slow.at.elapsed() >= HEDGE_AFTER => {
                    slow.hedged = true;
                    slow.copies += 1;
                    *busy.entry(peer).or_default() += 1;
                    in_flight.push(request(peer, next_deliver, slow.count));
                }
                Some(_) => hedge_at = Some(slow.at + HEDGE_AFTER),
                None => {}
            }
        }
        tokio::select! {
            () = tokio::time::sleep_until(hedge_at.unwrap_or_else(Instant::now).into()), if hedge_at.is_some() => {}
            permit = to_recover.reserve(), if deliverable => {
                let Ok(permit) = permit else { break };
                let (from, (peer, mut blocks)) = ready.pop_first().expect("deliverable");
                let (block, commit) = blocks.pop_front().expect("never empty");
                permit.send((peer, block, commit));
                next_deliver = from + 1;
                if !blocks.is_empty() {
                    ready.insert(next_deliver, (peer, blocks));
                }
            }
            Some((peer, from, count, answer)) = in_flight.next() => {
                if let Some(n) = busy.get_mut(&peer) {
                    *n = n.saturating_sub(1);
                }
                // A copy of a range another peer has served already.
                let Some(range) = asked.get_mut(&from).filter(|a| a.count == count) else {
                    continue;
                };
                let served = match answer.map(|bytes| decode::<SyncResponse>(&bytes)) {
                    Ok(Ok(SyncResponse::Blocks(blocks))) if blocks.is_empty() => {
                        Err(Fetched::Unbacked("no blocks".into()))
                    }
                    Ok(Ok(SyncResponse::Blocks(blocks))) => match check_range(&blocks, from, count) {
                        Ok(()) => Ok(blocks),
                        Err(why) => {
                            ban(links, peer, &why).await;
                            Err(Fetched::Banned)
                        }
                    },
                    Ok(Ok(SyncResponse::Error(e))) => {
                        debug!(%peer, error = e, "peer could not serve blocks");
                        Err(Fetched::Stopped)
                    }
                    Ok(Ok(
                        SyncResponse::Status { .. }
                        | SyncResponse::Snapshots(_)
                        | SyncResponse::Chunk(_),
                    )
                    | Err(_)) => {
                        ban(links, peer, "an undecodable or mismatched response").await;
                        Err(Fetched::Banned)
                    }
                    Err(e) => {
                        debug!(%peer, error = %e, "block request failed");
                        Err(Fetched::Stopped)
                    }
                };
                match served {
                    Ok(blocks) => {
                        asked.remove(&from);
                        let n = u32::try_from(blocks.len()).expect("at most count");
                        if n < count {
                            retry.insert((from + u64::from(n), count - n));
                        }
                        ready.insert(from, (peer, blocks.into()));
                    }
                    Err(why) => {
                        // Left out of the rest of this catch-up; its range
                        // goes to the others.
                        usable.retain(|(p, _)| *p != peer);
                        range.copies -= 1;
                        if range.copies == 0 {
                            asked.remove(&from);
                            retry.insert((from, count));
                        }
                        if outcome.get(&peer) != Some(&Fetched::Banned) {
                            outcome.insert(peer, why);
                        }
                    }
                }
            }
            done = &mut applier => {
                // The ledger stopped early: a bad block, or it is gone.
                finished = Some(done?);
                break;
            }
        }
    }
    // Let the blocks handed on so far be applied.
    drop(to_recover);
    let (applied, halted) = match finished {
        Some(finished) => finished,
        None => applier.await?,
    };
    recoverer.await??;
    for peer in applied.keys() {
        if outcome.get(peer) != Some(&Fetched::Banned) {
            outcome.insert(*peer, Fetched::Progress);
        }
    }
    match halted {
        Some(Halt::Invalid(peer, why)) => {
            ban(links, peer, &why).await;
            outcome.insert(peer, Fetched::Banned);
        }
        Some(Halt::Failed(peer, why)) => debug!(%peer, why, "block sync stopped"),
        Some(Halt::Stopped) => anyhow::bail!("the ledger actor stopped"),
        None => {}
    }
    Ok(outcome)
}

async fn ban(links: &Links<'_>, peer: PeerId, why: &str) {
    warn!(%peer, why, "peer served bad sync data: banning it");
    let _ = links.network.ban(peer, BAN).await;
}
