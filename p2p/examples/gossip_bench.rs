//! Gossip benchmark among 4 in-process nodes on loopback: node 0 publishes,
//! nodes 1 to 3 accept every message. Reports fully delivered messages per
//! second, payload MB/s and publish-to-deliver latency (p50/p99) at 200-byte
//! and 64-KiB payloads, once under load (a window of messages in flight, so
//! latency includes queueing) and once unloaded (one message at a time).
//! Bounded: a fixed message count per case and a stall timeout.
//!
//! `cargo run -p tally-p2p --example gossip_bench [small_count] [large_count]`

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use tally_p2p::{Config, Event, Handle, Topic, Verdict};
use tokio::sync::mpsc;

const NODES: usize = 4;
const STALL: Duration = Duration::from_secs(10);

struct Delivery {
    seq: u64,
    latency: Duration,
}

struct Node {
    handle: Handle,
}

async fn start_nodes(
    dir: &tempfile::TempDir,
    base: Instant,
    deliveries: &mpsc::UnboundedSender<Delivery>,
) -> Result<Vec<Node>, Box<dyn std::error::Error>> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut bootstrap = Vec::new();
    for i in 0..NODES {
        let config = Config {
            key_file: dir.path().join(format!("node{i}")),
            chain_id: 1,
            genesis_hash: [9; 32],
            bootstrap: bootstrap.clone(),
            discovery_interval: Duration::from_secs(2),
            ..Config::default()
        };
        let (handle, mut events) = tally_p2p::spawn(config).await?;
        if i == 0 {
            bootstrap = handle.listen_addrs().await?;
        }
        let reporter = handle.clone();
        let tx = deliveries.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Event::Message {
                    id, source, data, ..
                } = event
                {
                    let now = base.elapsed();
                    if reporter.report(id, source, Verdict::Accept).await.is_err() {
                        break;
                    }
                    let (Some(seq), Some(sent)) = (read_u64(&data, 0), read_u64(&data, 8)) else {
                        continue;
                    };
                    let latency = now.saturating_sub(Duration::from_nanos(sent));
                    let _ = tx.send(Delivery { seq, latency });
                }
            }
        });
        nodes.push(Node { handle });
    }
    Ok(nodes)
}

fn read_u64(data: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = data.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

async fn wait_for_mesh(nodes: &[Node]) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ready = true;
        for node in nodes {
            let peers = node.handle.peers().await?.len();
            let mesh = node.handle.mesh_peers(Topic::Txs).await?.len();
            ready &= peers == NODES - 1 && mesh == NODES - 1;
        }
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("mesh did not form in 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Outcome {
    complete: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// Publishes `count` messages of `size` bytes from node 0, keeping at most
/// `window` not yet delivered to every other node.
async fn run(
    publisher: &Handle,
    deliveries: &mut mpsc::UnboundedReceiver<Delivery>,
    base: Instant,
    first_seq: u64,
    count: u64,
    size: usize,
    window: u64,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let receivers = (NODES - 1) as u32;
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let mut latencies = Vec::with_capacity(count as usize * (NODES - 1));
    let mut next = 0u64;
    let mut complete = 0u64;
    let started = Instant::now();
    while complete < count {
        while next < count && next - complete < window {
            let seq = first_seq + next;
            let mut data = vec![0u8; size.max(16)];
            data[..8].copy_from_slice(&seq.to_be_bytes());
            let sent = u64::try_from(base.elapsed().as_nanos())?;
            data[8..16].copy_from_slice(&sent.to_be_bytes());
            publisher.publish(Topic::Txs, data).await?;
            next += 1;
        }
        let Ok(Some(delivery)) = tokio::time::timeout(STALL, deliveries.recv()).await else {
            eprintln!("stalled: {complete} of {count} delivered to all");
            break;
        };
        if delivery.seq < first_seq {
            continue;
        }
        latencies.push(delivery.latency);
        let n = seen.entry(delivery.seq).or_default();
        *n += 1;
        if *n == receivers {
            complete += 1;
        }
    }
    Ok(Outcome {
        complete,
        elapsed: started.elapsed(),
        latencies,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let small: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let large: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);

    let dir = tempfile::tempdir()?;
    let base = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let nodes = start_nodes(&dir, base, &tx).await?;
    wait_for_mesh(&nodes).await?;
    let publisher = nodes[0].handle.clone();

    // Warm-up: connections, streams and caches settle.
    run(&publisher, &mut rx, base, 0, 200, 200, 64).await?;

    println!("4 nodes on 127.0.0.1, node 0 publishes, 3 receivers accept every message");
    println!(
        "| payload | messages | msgs/s (to all 3) | MB/s payload | deliveries/s | p50 | p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    let cases = [
        (200usize, small, 256u64),
        (64 * 1024, large, 32),
        (200, 500, 1),
        (64 * 1024, 200, 1),
    ];
    let mut first_seq = 1_000_000;
    for (size, count, window) in cases {
        let mut outcome = run(&publisher, &mut rx, base, first_seq, count, size, window).await?;
        first_seq += 1_000_000;
        outcome.latencies.sort();
        let secs = outcome.elapsed.as_secs_f64();
        let msgs = outcome.complete as f64 / secs;
        println!(
            "| {} B, window {window} | {}/{} | {:.0} | {:.2} | {:.0} | {:.2} ms | {:.2} ms |",
            size,
            outcome.complete,
            count,
            msgs,
            msgs * size as f64 / 1e6,
            outcome.latencies.len() as f64 / secs,
            percentile(&outcome.latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&outcome.latencies, 0.99).as_secs_f64() * 1e3,
        );
    }
    for node in &nodes {
        let stats = node.handle.stats().await?;
        if stats.gossip_dropped_backpressure > 0 {
            println!(
                "node dropped {} messages (backpressure)",
                stats.gossip_dropped_backpressure
            );
        }
        node.handle.shutdown().await?;
    }
    Ok(())
}
