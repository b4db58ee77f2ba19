//! Attacks by peers without a validator key, against four honest
//! validators: one network, one scenario after another.

use std::sync::Arc;
use std::time::Duration;

use tally_ledger::{Address, Block, Commit, SecretKey, Transaction};
use tally_node::wire::{
    ConsensusEnvelope, ConsensusMessage, SyncRequest, SyncResponse, TxBatch, decode, encode,
};
use tally_p2p::{Event, PeerId, Topic, Verdict};

use tokio::sync::Semaphore;

use super::{Attacker, Behaviour, Net, Target, junk_hash, tip, with_identities, with_many};
use crate::harness::wait_height;

/// Answers what the network hands an attacker: every gossip message is
/// Ignored (never forwarded by us), every request refused. Returns the
/// gossip payload for the caller to abuse.
async fn absorb(attacker: &Attacker, event: Event) -> Option<(Topic, Vec<u8>)> {
    match event {
        Event::Message {
            topic,
            source,
            id,
            data,
            ..
        } => {
            let _ = attacker.handle.report(id, source, Verdict::Ignore).await;
            Some((topic, data))
        }
        Event::Request { id, .. } => {
            let _ = attacker
                .handle
                .respond(id, encode(&SyncResponse::Error("no".into())))
                .await;
            None
        }
        _ => None,
    }
}

async fn publish(attacker: &Attacker, topic: Topic, data: Vec<u8>) -> u64 {
    u64::from(attacker.handle.publish(topic, data).await.is_ok())
}

/// Garbage on every topic, messages over the size limit, and correctly
/// signed transactions of another chain.
struct Junk {
    n: u64,
    wrong_chain: Vec<Vec<u8>>,
}

impl Junk {
    fn new(target: &Target) -> Junk {
        let key = SecretKey::from_seed("hostile-wrong-chain");
        let wrong_chain = (0..256)
            .map(|nonce| {
                Transaction {
                    chain_id: target.chain_id + 1,
                    nonce,
                    to: Address([7; 20]),
                    amount: 1,
                    fee: 1_000,
                    memo: Vec::new(),
                }
                .sign(&key)
                .encode()
            })
            .collect();
        Junk { n: 0, wrong_chain }
    }
}

impl Behaviour for Junk {
    fn every(&self) -> Duration {
        Duration::from_millis(20)
    }

    async fn on_event(&mut self, a: &Attacker, e: Event) -> u64 {
        absorb(a, e).await;
        0
    }

    async fn on_tick(&mut self, a: &Attacker) -> u64 {
        self.n += 1;
        let n = self.n;
        let mut garbage = n.to_le_bytes().to_vec();
        garbage.extend_from_slice(&[0xff; 64]);
        let mut sent = publish(a, Topic::Consensus, garbage.clone()).await;
        sent += publish(a, Topic::Txs, garbage).await;
        let mut txs = self.wrong_chain.clone();
        txs.rotate_left((n % 256) as usize);
        sent += publish(a, Topic::Txs, encode(&TxBatch { txs })).await;
        if n % 25 == 0 {
            let mut huge = vec![0u8; 5 << 20];
            huge[..8].copy_from_slice(&n.to_le_bytes());
            sent += publish(a, Topic::Consensus, huge).await;
        }
        sent
    }
}

/// Honest proposals with their body swapped under the signed header.
struct BodySwap;

impl Behaviour for BodySwap {
    fn every(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn on_event(&mut self, a: &Attacker, e: Event) -> u64 {
        let Some((Topic::Consensus, data)) = absorb(a, e).await else {
            return 0;
        };
        let Ok(ConsensusEnvelope {
            sent_ms,
            message:
                ConsensusMessage::Proposal {
                    proposal,
                    mut block,
                },
        }) = decode::<ConsensusEnvelope>(&data)
        else {
            return 0;
        };
        if block.txs.is_empty() {
            block.last_commit = match block.last_commit {
                Some(_) => None,
                None => Some(Commit {
                    height: 0,
                    round: 0,
                    block_hash: junk_hash(sent_ms),
                    signatures: Vec::new(),
                }),
            };
        } else {
            block.txs.clear();
        }
        let swapped = ConsensusEnvelope {
            sent_ms: sent_ms + 1,
            message: ConsensusMessage::Proposal { proposal, block },
        };
        publish(a, Topic::Consensus, encode(&swapped)).await
    }

    async fn on_tick(&mut self, _: &Attacker) -> u64 {
        0
    }
}

/// Every consensus message seen, re-wrapped ten times with new `sent_ms`.
struct Rewrap;

impl Behaviour for Rewrap {
    fn every(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn on_event(&mut self, a: &Attacker, e: Event) -> u64 {
        let Some((Topic::Consensus, data)) = absorb(a, e).await else {
            return 0;
        };
        let Ok(envelope) = decode::<ConsensusEnvelope>(&data) else {
            return 0;
        };
        let mut sent = 0;
        for i in 1..=10 {
            let copy = ConsensusEnvelope {
                sent_ms: envelope.sent_ms + i,
                message: envelope.message.clone(),
            };
            sent += publish(a, Topic::Consensus, encode(&copy)).await;
        }
        sent
    }

    async fn on_tick(&mut self, _: &Attacker) -> u64 {
        0
    }
}

/// Transactions seen on gossip (soon committed), replayed in new orders:
/// each batch is new bytes, but nothing in it is new.
#[derive(Default)]
struct TxReplay {
    pool: Vec<Vec<u8>>,
    n: usize,
}

impl Behaviour for TxReplay {
    fn every(&self) -> Duration {
        Duration::from_millis(50)
    }

    async fn on_event(&mut self, a: &Attacker, e: Event) -> u64 {
        if let Some((Topic::Txs, data)) = absorb(a, e).await {
            if let Ok(batch) = decode::<TxBatch>(&data) {
                self.pool.extend(batch.txs);
                self.pool.truncate(4_000);
            }
        }
        0
    }

    async fn on_tick(&mut self, a: &Attacker) -> u64 {
        if self.pool.len() < 16 {
            return 0;
        }
        self.n += 1;
        let mut txs = self.pool.clone();
        let shift = self.n % txs.len();
        txs.rotate_left(shift);
        publish(a, Topic::Txs, encode(&TxBatch { txs })).await
    }
}

/// Claims to be at height `u64::MAX` and answers every block request with
/// old, validly certified blocks fetched from an honest node.
struct SyncTrap {
    honest: PeerId,
    old: Vec<(Block, Commit)>,
}

impl Behaviour for SyncTrap {
    fn every(&self) -> Duration {
        Duration::from_millis(500)
    }

    async fn on_event(&mut self, a: &Attacker, e: Event) -> u64 {
        match e {
            Event::Request { id, data, .. } if !self.old.is_empty() => {
                let response = match decode::<SyncRequest>(&data) {
                    Ok(SyncRequest::Status) => SyncResponse::Status {
                        height: u64::MAX,
                        hash: junk_hash(1),
                    },
                    _ => SyncResponse::Blocks(self.old.clone()),
                };
                u64::from(a.handle.respond(id, encode(&response)).await.is_ok())
            }
            other => {
                absorb(a, other).await;
                0
            }
        }
    }

    async fn on_tick(&mut self, a: &Attacker) -> u64 {
        if self.old.is_empty() {
            let request = encode(&SyncRequest::Blocks { from: 1, count: 8 });
            if let Ok(Ok(SyncResponse::Blocks(blocks))) = a
                .handle
                .request(self.honest, request)
                .await
                .map(|bytes| decode::<SyncResponse>(&bytes))
            {
                self.old = blocks;
            }
        }
        0
    }
}

/// Whole-chain block requests, up to 64 in flight per identity, again and
/// again (run with several identities at once).
struct SyncFlood {
    peers: Vec<PeerId>,
    in_flight: Arc<Semaphore>,
}

impl SyncFlood {
    fn new(target: &Target) -> SyncFlood {
        SyncFlood {
            peers: target.peers.clone(),
            in_flight: Arc::new(Semaphore::new(64)),
        }
    }
}

impl Behaviour for SyncFlood {
    fn every(&self) -> Duration {
        Duration::from_millis(5)
    }

    async fn on_event(&mut self, a: &Attacker, e: Event) -> u64 {
        absorb(a, e).await;
        0
    }

    async fn on_tick(&mut self, a: &Attacker) -> u64 {
        let mut sent = 0;
        for peer in &self.peers {
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                break;
            };
            let (handle, peer) = (a.handle.clone(), *peer);
            tokio::spawn(async move {
                let request = encode(&SyncRequest::Blocks {
                    from: 1,
                    count: u32::MAX,
                });
                let _ = handle.request(peer, request).await;
                drop(permit);
            });
            sent += 1;
        }
        sent
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_peers_cannot_stop_slow_or_exhaust_four_validators() {
    let _heavy = crate::harness::heavy().await;
    let mut net = Net::start(4, 4).await;

    let report = net
        .survive("junk and wrong-chain floods", |t, stop| {
            let junk = Junk::new(&t);
            with_identities(t, stop, junk)
        })
        .await;
    net.expect(report.lives > 1, || {
        "the junk sender was never dropped".into()
    });

    let report = net
        .survive("proposal body swap", |t, stop| {
            with_identities(t, stop, BodySwap)
        })
        .await;
    net.expect(report.sent > 0, || "no proposal was swapped".into());
    net.expect(report.lives > 1, || {
        "the body swapper was never dropped".into()
    });

    let report = net
        .survive("consensus re-wrap", |t, stop| {
            with_identities(t, stop, Rewrap)
        })
        .await;
    net.expect(report.sent > 0, || "nothing was re-wrapped".into());

    let report = net
        .survive("tx gossip replay", |t, stop| {
            with_identities(t, stop, TxReplay::default())
        })
        .await;
    net.expect(report.sent > 0, || "no batch was replayed".into());

    // The sync trap, while a node that missed many blocks comes back.
    net.nodes[3].kill9();
    let at = tip(&net, 0).await;
    wait_height(&net.clients[0], at + 40, Duration::from_secs(60)).await;
    let running = net
        .begin(|t, stop| {
            let trap = SyncTrap {
                honest: t.peers[0],
                old: Vec::new(),
            };
            with_identities(t, stop, trap)
        })
        .await;
    net.nodes[3].restart();
    let target = tip(&net, 0).await;
    let caught_up = eventually(Duration::from_secs(30), || async {
        crate::harness::height(&net.clients[3])
            .await
            .is_some_and(|h| h >= target)
    })
    .await;
    net.expect(caught_up, || {
        "the restarted node did not catch up past the sync trap".into()
    });
    // Caught up, it asks the trap too (now the only peer "ahead") and bans
    // it: status requests go to a rotating few peers once a second, so give
    // the rotation time to reach the trap on a loaded machine.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let report = net.end("sync trap", running).await;
    net.expect(report.sent > 0, || "nobody asked the trap".into());
    net.expect(report.lives > 1, || "the sync trap was never banned".into());

    // Eight identities at once (all from one address).
    let report = net
        .survive("sync request flood", |t, stop| {
            let floods = (0..8).map(|_| SyncFlood::new(&t)).collect();
            with_many(t, stop, floods)
        })
        .await;
    net.expect(report.sent > 0, || "no sync request was sent".into());
    net.finish().await;
}

/// Polls `check` every 100 ms until it holds or `timeout` passes.
async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
