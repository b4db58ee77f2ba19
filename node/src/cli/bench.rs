//! `tally bench`: a load generator that measures a running chain from the
//! outside, through the typed JSON-RPC client.
//!
//! It funds K sender accounts from the dev accounts (once per chain; reruns
//! reuse them), pre-signs every transfer before the clock starts, submits
//! them in batches over several HTTP connections (at a target rate or as
//! fast as the nodes accept), and measures from the chain itself: committed
//! transfers per second over the steady-state window, submit-to-commit
//! latency percentiles (blocks arrive by WebSocket subscription), rejected
//! submissions by reason, block interval and transfers per block. In the
//! same run it measures this machine's signature-recovery rate with one
//! thread per core, so results compare across machines as a ratio to the
//! bound (that rate / nodes sharing the machine).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee_ws_client::WsClientBuilder;
use serde::Serialize;
use tally_genesis::dev_keys;
use tally_ledger::{Address, Hash, SecretKey, SignedTransaction, Transaction};
use tally_rpc::TallyApiClient;

use crate::par_map;
use tokio::sync::Mutex;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// JSON-RPC endpoints (http://...); submissions go round-robin.
    pub endpoints: Vec<String>,
    /// Sender accounts (each holds at most `per_sender_window` pending).
    pub senders: usize,
    /// Transfers to submit in all.
    pub txs: usize,
    /// Target submission rate (transfers/s); 0: as fast as accepted.
    pub rate: u64,
    /// Concurrent submitting connections.
    pub connections: usize,
    /// Transfers per `tally_sendRawTransactions` call.
    pub batch: usize,
    /// Nodes sharing this machine (for the bound).
    pub nodes_on_machine: usize,
    /// Measure the signature-recovery rate of this machine.
    pub calibrate: bool,
    /// Stop waiting for commits this long after the last submission.
    pub drain_timeout: Duration,
}

/// Everything measured, as printed and written to `--out`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub endpoints: Vec<String>,
    pub senders: usize,
    pub submitted: u64,
    pub accepted: u64,
    /// Refused for good (after retries), by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Submissions sent again after a refusal for now (pool full, busy, or
    /// behind a nonce gap while an earlier nonce was on its way).
    pub retried: u64,
    pub committed: u64,
    pub submit_rate_tps: f64,
    /// Committed transfers per second from the first submission to the
    /// last commit: the figure compared with the bound.
    pub committed_tps: f64,
    pub end_to_end_s: f64,
    /// Committed per second over the middle 80% of the blocks that carried
    /// bench transfers (a peak: commits can lag submissions and burst).
    pub middle_tps: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
    pub blocks: u64,
    pub block_interval_ms_median: f64,
    pub txs_per_block_median: f64,
    pub txs_per_block_max: u64,
    /// Signature recoveries per second with one thread per core.
    pub recover_per_s: Option<f64>,
    pub nodes_on_machine: usize,
    /// recover_per_s / nodes_on_machine.
    pub bound_tps: Option<f64>,
    /// committed_tps / bound_tps.
    pub ratio_to_bound: Option<f64>,
}

fn http(url: &str) -> anyhow::Result<HttpClient> {
    HttpClientBuilder::default()
        .max_request_size(64 * 1024 * 1024)
        .max_response_size(64 * 1024 * 1024)
        .request_timeout(Duration::from_secs(60))
        .build(url)
        .with_context(|| format!("bad RPC URL {url}"))
}

fn bench_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&format!("tally-bench-sender-{i}"))
}

fn raw(tx: &SignedTransaction) -> String {
    hex::encode(tx.encode())
}

/// Signs `txs` on every core.
fn sign_all(txs: Vec<(SecretKey, Transaction)>) -> Vec<SignedTransaction> {
    par_map(&txs, |(key, tx)| tx.clone().sign(key))
}

/// Signature recoveries per second using every core, over about a second.
pub fn calibrate() -> f64 {
    let key = SecretKey::from_seed("tally-bench-calibration");
    let txs: Vec<SignedTransaction> = (0..512)
        .map(|nonce| {
            Transaction {
                chain_id: 1,
                nonce,
                to: Address([7; 20]),
                amount: 1,
                fee: 1,
                memo: Vec::new(),
            }
            .sign(&key)
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while start.elapsed() < Duration::from_secs(1) {
                    for tx in &txs[..64] {
                        let _ = tx.clone().verify();
                    }
                    done.fetch_add(64, Ordering::Relaxed);
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn median_u64(values: &mut [u64]) -> f64 {
    values.sort_unstable();
    percentile(&values.iter().map(|v| *v as f64).collect::<Vec<_>>(), 0.5)
}

/// Funds the bench senders that need it from the dev accounts and waits
/// until every one can pay for its share of the run.
async fn fund(
    client: &HttpClient,
    chain_id: u64,
    senders: &[SecretKey],
    need: u128,
) -> anyhow::Result<Vec<u64>> {
    let mut nonces = Vec::with_capacity(senders.len());
    let mut unfunded = Vec::new();
    for (i, key) in senders.iter().enumerate() {
        let account = client.get_account(key.address().to_string()).await?;
        nonces.push(account.nonce);
        if account.balance < need {
            unfunded.push(i);
        }
    }
    if unfunded.is_empty() {
        return Ok(nonces);
    }
    println!(
        "funding {} sender accounts from the dev accounts...",
        unfunded.len()
    );
    let dev = dev_keys();
    let mut dev_nonces = Vec::new();
    for key in &dev {
        dev_nonces.push(client.get_account(key.address().to_string()).await?.nonce);
    }
    // At most 60 pending per dev account (the mempool's nonce window is 64).
    for round in unfunded.chunks(dev.len() * 60) {
        let txs: Vec<(SecretKey, Transaction)> = round
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let d = j % dev.len();
                let nonce = dev_nonces[d];
                dev_nonces[d] += 1;
                (
                    dev[d].clone(),
                    Transaction {
                        chain_id,
                        nonce,
                        to: senders[i].address(),
                        amount: need * 2,
                        fee: 1,
                        memo: Vec::new(),
                    },
                )
            })
            .collect();
        let signed = sign_all(txs);
        let results = client
            .send_raw_transactions(signed.iter().map(raw).collect())
            .await?;
        if let Some(e) = results.iter().find_map(|r| r.error.as_ref()) {
            bail!("funding transfer refused: {}", e.message);
        }
        let last = signed.last().map(SignedTransaction::hash);
        if let Some(last) = last {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !client
                .get_transaction(last.to_string())
                .await?
                .is_committed()
            {
                if Instant::now() > deadline {
                    bail!("funding transfers did not commit within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(nonces)
}

/// A committed block as the bench saw it.
#[derive(Clone, Debug)]
struct SeenBlock {
    time: u64,
    tx_count: u64,
    arrived: Instant,
    tx_hashes: Vec<Hash>,
}

struct Shared {
    submitted_at: Mutex<HashMap<Hash, Instant>>,
    rejected: Mutex<BTreeMap<String, u64>>,
    accepted: AtomicU64,
    submitted: AtomicU64,
    /// Refused for now (pool full, busy, or behind a nonce gap because an
    /// earlier nonce is still on its way): sent again after a backoff, so
    /// that no sender is left with a gap.
    retry: Mutex<Vec<(Hash, String)>>,
    attempts: Mutex<HashMap<Hash, u32>>,
    retried: AtomicU64,
    in_flight: AtomicU64,
}

/// Pause before sending refused-for-now transfers again, and how often.
const RETRY_BACKOFF: Duration = Duration::from_millis(50);
const MAX_ATTEMPTS: u32 = 200;

/// Whether a refusal is the node's state of the moment, worth a retry.
fn retryable(code: i32, message: &str) -> bool {
    code == tally_rpc::codes::MEMPOOL_FULL
        || code == tally_rpc::codes::BUSY
        || (code == tally_rpc::codes::BAD_NONCE && message.contains("behind a nonce gap"))
}

impl Shared {
    /// Queues `tx` for another attempt unless it has had enough; false if
    /// it gives up.
    async fn again(&self, hash: Hash, raw: String) -> bool {
        let mut attempts = self.attempts.lock().await;
        let n = attempts.entry(hash).or_default();
        *n += 1;
        if *n > MAX_ATTEMPTS {
            return false;
        }
        self.retried.fetch_add(1, Ordering::Relaxed);
        self.retry.lock().await.push((hash, raw));
        true
    }

    async fn reject(&self, why: String, count: u64) {
        *self.rejected.lock().await.entry(why).or_default() += count;
    }
}

/// The reason of a rejection without its specifics (addresses, numbers).
fn reason(message: &str) -> String {
    message
        .split(':')
        .next()
        .unwrap_or(message)
        .trim()
        .to_string()
}

pub async fn run(config: BenchConfig) -> anyhow::Result<BenchReport> {
    if config.endpoints.is_empty() {
        bail!("no RPC endpoint");
    }
    let recover_per_s = if config.calibrate {
        println!("calibrating: signature recoveries per second on every core...");
        let rate = tokio::task::spawn_blocking(calibrate).await?;
        println!("  {rate:.0} recoveries/s");
        Some(rate)
    } else {
        None
    };

    let clients: Vec<HttpClient> = config
        .endpoints
        .iter()
        .map(|u| http(u))
        .collect::<anyhow::Result<_>>()?;
    let status = clients[0]
        .status()
        .await
        .context("asking the node for its status")?;
    let chain_id = status.chain_id;
    let senders: Vec<SecretKey> = (0..config.senders.max(1)).map(bench_key).collect();
    let per_sender = config.txs.div_ceil(senders.len()) as u64;
    let nonces = fund(
        &clients[0],
        chain_id,
        &senders,
        u128::from(per_sender) * 2 + 1_000,
    )
    .await?;

    // Pre-sign, interleaving senders so that each sender's nonces go out
    // in order and far apart.
    println!("signing {} transfers...", config.txs);
    let mut plan = Vec::with_capacity(config.txs);
    'outer: for k in 0..per_sender {
        for (i, key) in senders.iter().enumerate() {
            if plan.len() == config.txs {
                break 'outer;
            }
            plan.push((
                key.clone(),
                Transaction {
                    chain_id,
                    nonce: nonces[i] + k,
                    to: senders[(i + 1) % senders.len()].address(),
                    amount: 1,
                    fee: 1,
                    memo: Vec::new(),
                },
            ));
        }
    }
    let signed = tokio::task::spawn_blocking(move || sign_all(plan)).await?;
    let batches: Vec<Vec<(Hash, String)>> = signed
        .chunks(config.batch.max(1))
        .map(|c| c.iter().map(|tx| (tx.hash(), raw(tx))).collect())
        .collect();
    let bench_txs: std::collections::HashSet<Hash> = signed.iter().map(|t| t.hash()).collect();
    drop(signed);

    // Follow the chain by WebSocket: every block, with its arrival time.
    let ws_url = config.endpoints[0].replacen("http", "ws", 1);
    let ws = WsClientBuilder::default()
        .max_response_size(64 * 1024 * 1024)
        .build(&ws_url)
        .await
        .with_context(|| format!("WebSocket connection to {ws_url}"))?;
    let mut subscription = ws.subscribe_new_blocks().await?;
    let block_client = clients[0].clone();
    let blocks: Arc<Mutex<Vec<SeenBlock>>> = Arc::default();
    let follower = {
        let blocks = blocks.clone();
        tokio::spawn(async move {
            while let Some(Ok(block)) = subscription.next().await {
                let arrived = Instant::now();
                let hashes = match block_client.get_block_by_height(block.height).await {
                    Ok(Some(info)) => info.tx_hashes,
                    _ => Vec::new(),
                };
                blocks.lock().await.push(SeenBlock {
                    time: block.time,
                    tx_count: u64::from(block.tx_count),
                    arrived,
                    tx_hashes: hashes,
                });
            }
        })
    };

    let shared = Arc::new(Shared {
        submitted_at: Mutex::new(HashMap::with_capacity(config.txs)),
        rejected: Mutex::default(),
        accepted: AtomicU64::new(0),
        submitted: AtomicU64::new(0),
        retry: Mutex::default(),
        attempts: Mutex::default(),
        retried: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
    });
    let queue = Arc::new(Mutex::new(batches.into_iter()));
    let start = Instant::now();
    let rate = config.rate;
    println!(
        "submitting {} transfers from {} senders over {} connections (batches of {}, rate {})",
        config.txs,
        senders.len(),
        config.connections,
        config.batch,
        if rate == 0 {
            "max".to_string()
        } else {
            format!("{rate}/s")
        }
    );
    let workers: Vec<_> = (0..config.connections.max(1))
        .map(|w| {
            let client = clients[w % clients.len()].clone();
            let (queue, shared) = (queue.clone(), shared.clone());
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().await.next();
                    let (batch, fresh) = match next {
                        Some(batch) => (batch, true),
                        None => {
                            let retry = std::mem::take(&mut *shared.retry.lock().await);
                            if retry.is_empty() {
                                if shared.in_flight.load(Ordering::SeqCst) == 0 {
                                    return;
                                }
                                tokio::time::sleep(RETRY_BACKOFF / 2).await;
                                continue;
                            }
                            tokio::time::sleep(RETRY_BACKOFF).await;
                            (retry, false)
                        }
                    };
                    shared.in_flight.fetch_add(1, Ordering::SeqCst);
                    if rate > 0 && fresh {
                        // Hold the batch until the target rate allows it.
                        let due = Duration::from_secs_f64(
                            shared.submitted.load(Ordering::Relaxed) as f64 / rate as f64,
                        );
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            tokio::time::sleep(wait).await;
                        }
                    }
                    if fresh {
                        shared
                            .submitted
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    }
                    let sent = Instant::now();
                    let (hashes, raws): (Vec<Hash>, Vec<String>) = batch.into_iter().unzip();
                    match client.send_raw_transactions(raws.clone()).await {
                        Ok(results) => {
                            let mut accepted = 0;
                            for ((hash, raw), result) in hashes.iter().zip(raws).zip(&results) {
                                match &result.error {
                                    None => {
                                        shared.submitted_at.lock().await.insert(*hash, sent);
                                        accepted += 1;
                                    }
                                    Some(e) if retryable(e.code, &e.message) => {
                                        if !shared.again(*hash, raw).await {
                                            shared.reject(reason(&e.message), 1).await;
                                        }
                                    }
                                    Some(e) => shared.reject(reason(&e.message), 1).await,
                                }
                            }
                            shared.accepted.fetch_add(accepted, Ordering::Relaxed);
                        }
                        Err(jsonrpsee::core::ClientError::Call(e))
                            if retryable(e.code(), e.message()) =>
                        {
                            for (hash, raw) in hashes.into_iter().zip(raws) {
                                if !shared.again(hash, raw).await {
                                    shared.reject(reason(e.message()), 1).await;
                                }
                            }
                        }
                        Err(e) => {
                            shared
                                .reject(
                                    format!("rpc error: {}", reason(&e.to_string())),
                                    hashes.len() as u64,
                                )
                                .await;
                        }
                    }
                    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // Progress until every worker is done, then until every accepted
    // transfer committed (or the drain timeout).
    let committed_of = |blocks: &[SeenBlock]| -> u64 {
        blocks
            .iter()
            .map(|b| b.tx_hashes.iter().filter(|h| bench_txs.contains(h)).count() as u64)
            .sum()
    };
    let mut submit_done: Option<Instant> = None;
    let mut last_print = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if submit_done.is_none() && workers.iter().all(|w| w.is_finished()) {
            submit_done = Some(Instant::now());
        }
        let committed = committed_of(&blocks.lock().await);
        let accepted = shared.accepted.load(Ordering::Relaxed);
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let t = start.elapsed().as_secs_f64();
            println!(
                "  {t:6.1}s  submitted {:>8}  accepted {:>8}  committed {:>8}  ({:.0} committed/s)",
                shared.submitted.load(Ordering::Relaxed),
                accepted,
                committed,
                committed as f64 / t
            );
        }
        if let Some(done) = submit_done {
            if committed >= accepted || done.elapsed() > config.drain_timeout {
                break;
            }
        }
    }
    let submit_elapsed = submit_done.map_or(start.elapsed(), |d| d - start);
    follower.abort();

    let blocks = blocks.lock().await.clone();
    let submitted_at = shared.submitted_at.lock().await;
    // Latency of every committed bench transfer.
    let mut latencies = Vec::new();
    // Blocks that carried bench transfers: the measured span.
    let mut span: Vec<(Instant, u64)> = Vec::new();
    for block in &blocks {
        let mut ours = 0u64;
        for hash in &block.tx_hashes {
            if let Some(sent) = submitted_at.get(hash) {
                latencies.push(block.arrived.duration_since(*sent).as_secs_f64() * 1000.0);
                ours += 1;
            }
        }
        if ours > 0 {
            span.push((block.arrived, ours));
        }
    }
    latencies.sort_by(f64::total_cmp);
    let committed: u64 = span.iter().map(|(_, n)| n).sum();
    let end_to_end_s = span.last().map_or(0.0, |(arrived, _)| {
        arrived.duration_since(start).as_secs_f64()
    });
    let committed_tps = if end_to_end_s > 0.0 {
        committed as f64 / end_to_end_s
    } else {
        0.0
    };
    // The middle 80% of the span's blocks; transfers of its first block
    // committed before the window opened.
    let cut = span.len() / 10;
    let middle = &span[cut..span.len() - cut];
    let middle_tps = match (middle.first(), middle.last()) {
        (Some(first), Some(last)) if middle.len() >= 2 => {
            let window = last.0.duration_since(first.0).as_secs_f64();
            let txs: u64 = middle[1..].iter().map(|(_, n)| n).sum();
            if window > 0.0 {
                txs as f64 / window
            } else {
                0.0
            }
        }
        _ => 0.0,
    };
    let mut intervals: Vec<u64> = blocks
        .windows(2)
        .map(|w| w[1].time.saturating_sub(w[0].time))
        .collect();
    let mut per_block: Vec<u64> = blocks.iter().map(|b| b.tx_count).collect();
    let bound_tps = recover_per_s.map(|r| r / config.nodes_on_machine.max(1) as f64);
    Ok(BenchReport {
        endpoints: config.endpoints.clone(),
        senders: senders.len(),
        submitted: shared.submitted.load(Ordering::Relaxed),
        accepted: shared.accepted.load(Ordering::Relaxed),
        rejected: shared.rejected.lock().await.clone(),
        retried: shared.retried.load(Ordering::Relaxed),
        committed,
        submit_rate_tps: shared.submitted.load(Ordering::Relaxed) as f64
            / submit_elapsed.as_secs_f64(),
        committed_tps,
        end_to_end_s,
        middle_tps,
        latency_ms_p50: percentile(&latencies, 0.50),
        latency_ms_p95: percentile(&latencies, 0.95),
        latency_ms_p99: percentile(&latencies, 0.99),
        blocks: blocks.len() as u64,
        block_interval_ms_median: median_u64(&mut intervals),
        txs_per_block_median: median_u64(&mut per_block),
        txs_per_block_max: per_block.iter().copied().max().unwrap_or(0),
        recover_per_s,
        nodes_on_machine: config.nodes_on_machine,
        bound_tps,
        ratio_to_bound: bound_tps.map(|b| committed_tps / b),
    })
}

/// The report as a table.
pub fn print(report: &BenchReport) {
    let row = |name: &str, value: String| println!("  {name:<34} {value}");
    println!();
    println!("tally bench results");
    row("endpoints", report.endpoints.join(", "));
    row("senders", report.senders.to_string());
    row(
        "submitted / accepted",
        format!("{} / {}", report.submitted, report.accepted),
    );
    if report.retried > 0 {
        row("  retried (refused for now)", report.retried.to_string());
    }
    for (reason, count) in &report.rejected {
        row("  rejected", format!("{count}  {reason}"));
    }
    row("committed", report.committed.to_string());
    row(
        "submission rate",
        format!("{:.0} tx/s", report.submit_rate_tps),
    );
    row(
        "committed throughput",
        format!(
            "{:.0} tx/s (first submission to last commit, {:.1} s)",
            report.committed_tps, report.end_to_end_s
        ),
    );
    row(
        "  middle 80% of blocks",
        format!("{:.0} tx/s", report.middle_tps),
    );
    row(
        "submit-to-commit latency",
        format!(
            "p50 {:.0} ms  p95 {:.0} ms  p99 {:.0} ms",
            report.latency_ms_p50, report.latency_ms_p95, report.latency_ms_p99
        ),
    );
    row(
        "blocks",
        format!(
            "{}  (interval median {:.0} ms, txs/block median {:.0}, max {})",
            report.blocks,
            report.block_interval_ms_median,
            report.txs_per_block_median,
            report.txs_per_block_max
        ),
    );
    if let (Some(rate), Some(bound), Some(ratio)) = (
        report.recover_per_s,
        report.bound_tps,
        report.ratio_to_bound,
    ) {
        row("signature recoveries (all cores)", format!("{rate:.0} /s"));
        row(
            "bound",
            format!(
                "{bound:.0} tx/s ({} node(s) on this machine)",
                report.nodes_on_machine
            ),
        );
        row("achieved / bound", format!("{:.0}%", ratio * 100.0));
    }
}
