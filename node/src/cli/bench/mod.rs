//! `tally bench`: a load generator that measures a running chain from the
//! outside, through the typed JSON-RPC client.
//!
//! It funds K sender accounts from the dev accounts (once per chain; reruns
//! reuse them), pre-signs every transfer before the clock starts, and
//! submits them in batches over several HTTP connections under closed-loop
//! flow control (at most `window` unconfirmed transfers per sender; a
//! transfer refused for now is retried after a backoff, so no sender ever
//! has a gap). It runs for `--txs` transfers (a burst) or for `--duration`
//! (sustained load), optionally at a rate, or in `--overload F` mode: first
//! closed-loop to measure what the chain commits, then F times that offered
//! open-loop. It measures from the chain itself: committed transfers per
//! second (over the steady-state window of a sustained run), submit-to-
//! commit latency percentiles (blocks arrive by WebSocket subscription),
//! refusals by reason, transfers stranded (accepted but neither committed
//! nor reported dropped: must be 0), an unrelated probe transfer's time to
//! commit, and the peak RSS of the `tally` processes on this machine. In the
//! same run it measures this machine's signature-recovery rate with one
//! thread per core, so results compare across machines as a ratio to the
//! bound (that rate / nodes sharing the machine).

mod load;
pub mod lockout;
mod rss;
pub mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee_ws_client::WsClientBuilder;
use serde::Serialize;
use tally_genesis::dev_keys;
use tally_ledger::{
    Address, EthTransfer, EthTxKind, SecretKey, SignedTransaction, TRANSFER_GAS, Transaction,
};
use tally_rpc::{TallyApiClient, TxStatusInfo};
use tokio::sync::Mutex;

use crate::par_map;
use load::{Accepted, Planned, Scheduler};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// JSON-RPC endpoints (http://...); submissions go round-robin.
    pub endpoints: Vec<String>,
    /// Sender accounts.
    pub senders: usize,
    /// Transfers to submit in all (a burst, default 50,000); with
    /// `duration`, the most to sign.
    pub txs: Option<usize>,
    /// Submit for this long (sustained load) instead of `txs` transfers.
    pub duration: Option<Duration>,
    /// Target rate of new transfers (transfers/s); 0: as fast as the
    /// windows allow.
    pub rate: u64,
    /// Most unconfirmed transfers per sender.
    pub window: usize,
    /// Measure the committed rate closed-loop, then offer this many times it.
    pub overload: Option<f64>,
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
    /// Sign Ethereum-format (EIP-1559) transfers instead of native ones.
    pub eth: bool,
}

/// Everything measured, as printed and written to `--out`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub endpoints: Vec<String>,
    pub senders: usize,
    /// "burst" (`--txs`), "sustained" (`--duration`) or "overload".
    pub mode: String,
    /// "native" or "ethereum" (`--eth`) transfers.
    pub tx_kind: String,
    pub window: usize,
    pub duration_s: Option<f64>,
    /// Distinct transfers sent (first attempts).
    pub submitted: u64,
    pub accepted: u64,
    /// Refused for good (after retries), by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Sends again after a refusal for now (pool full, busy, or behind a
    /// nonce gap while an earlier nonce was on its way).
    pub retried: u64,
    /// Refusals for now, by reason.
    pub refused_for_now: BTreeMap<String, u64>,
    pub committed: u64,
    /// Accepted, then reported dropped by the node, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Accepted, and neither committed nor reported dropped at the end.
    pub stranded: u64,
    /// Planned transfers not sent because an earlier one of their sender
    /// was refused for good.
    pub abandoned: u64,
    pub submit_rate_tps: f64,
    /// Committed transfers per second from the first submission to the
    /// last commit.
    pub committed_tps: f64,
    pub end_to_end_s: f64,
    /// Committed per second over the middle 80% of the blocks that carried
    /// bench transfers (a peak: commits can lag submissions and burst).
    pub middle_tps: f64,
    /// Sustained runs: committed per second over the steady-state window
    /// (after the warm-up, until submission stops).
    pub steady_tps: Option<f64>,
    pub steady_window_s: Option<f64>,
    /// Overload: what the closed-loop phase committed per second, and the
    /// rate of new transfers then offered.
    pub capacity_tps: Option<f64>,
    pub offered_tps: Option<f64>,
    /// Submit-to-commit latency (of the steady window in sustained runs).
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
    /// An unrelated account's transfer sent mid-run: ms from its acceptance
    /// to its commit, paying the load's fee and one more.
    pub probe_same_fee_ms: Option<f64>,
    pub probe_higher_fee_ms: Option<f64>,
    pub blocks: u64,
    pub block_interval_ms_median: f64,
    pub txs_per_block_median: f64,
    pub txs_per_block_max: u64,
    /// Peak resident memory of each `tally` node process on this machine
    /// during the run (MiB).
    pub peak_rss_mib: BTreeMap<u32, f64>,
    /// Signature recoveries per second with one thread per core.
    pub recover_per_s: Option<f64>,
    pub nodes_on_machine: usize,
    /// recover_per_s / nodes_on_machine.
    pub bound_tps: Option<f64>,
    /// The headline figure (steady_tps of a sustained run, committed_tps of
    /// a burst) / bound_tps.
    pub ratio_to_bound: Option<f64>,
}

pub fn http(url: &str) -> anyhow::Result<HttpClient> {
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

fn probe_key() -> SecretKey {
    SecretKey::from_seed("tally-bench-probe")
}

/// Signs `txs` on every core.
fn sign_all(txs: Vec<(SecretKey, Transaction)>) -> Vec<SignedTransaction> {
    par_map(&txs, |(key, tx)| tx.clone().sign(key))
}

/// Signs `txs` on every core as EIP-1559 transfers paying `gas_price` per
/// gas (no tip), as a wallet would: the same sender, nonce, recipient and
/// amount, the fee in Ethereum's terms.
fn sign_all_eth(txs: Vec<(SecretKey, Transaction)>, gas_price: u128) -> Vec<SignedTransaction> {
    par_map(&txs, |(key, tx)| {
        EthTransfer {
            kind: EthTxKind::DynamicFee,
            chain_id: tx.chain_id,
            nonce: tx.nonce,
            max_priority_fee_per_gas: 0,
            max_fee_per_gas: gas_price,
            gas_limit: TRANSFER_GAS,
            to: tx.to,
            value: tx.amount,
        }
        .sign(key)
        .into()
    })
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
    /// Bench transfers in it.
    ours: u64,
}

/// Counters the submitters share.
#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    accepted: AtomicU64,
    retried: AtomicU64,
    rejected: std::sync::Mutex<BTreeMap<String, u64>>,
    refused_for_now: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    fn count(map: &std::sync::Mutex<BTreeMap<String, u64>>, why: String, n: u64) {
        *map.lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(why)
            .or_default() += n;
    }
}

/// Whether a refusal is the node's state of the moment, worth a retry.
fn retryable(code: i32, message: &str) -> bool {
    code == tally_rpc::codes::MEMPOOL_FULL
        || code == tally_rpc::codes::BUSY
        || (code == tally_rpc::codes::BAD_NONCE && message.contains("behind a nonce gap"))
}

/// The reason of a rejection without its specifics (addresses, numbers),
/// so that refusals group by kind.
fn reason(message: &str) -> String {
    let head = message.split(':').next().unwrap_or(message).trim();
    head.split_whitespace()
        .map(|word| {
            let bare = word.trim_end_matches([';', ',', '.']);
            if bare.starts_with("0x") {
                "<address>"
            } else if !bare.is_empty() && bare.chars().all(|c| c.is_ascii_digit()) {
                "<n>"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Pre-signed transfers: `per_sender` from each sender, in nonce order.
/// `eth_gas_price`: sign Ethereum transfers at this price (else native ones).
fn plan(
    chain_id: u64,
    senders: &[SecretKey],
    nonces: &[u64],
    per_sender: u64,
    eth_gas_price: Option<u128>,
) -> Vec<Vec<Planned>> {
    let mut txs = Vec::with_capacity(senders.len() * per_sender as usize);
    for (i, key) in senders.iter().enumerate() {
        for k in 0..per_sender {
            txs.push((
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
    let signed = match eth_gas_price {
        Some(price) => sign_all_eth(txs, price),
        None => sign_all(txs),
    };
    signed
        .chunks(per_sender.max(1) as usize)
        .map(|line| {
            line.iter()
                .map(|tx| Planned {
                    hash: tx.hash(),
                    bytes: tx.encode(),
                    attempts: 0,
                })
                .collect()
        })
        .collect()
}

/// Puts transfers refused for now back in their senders' lines, counting
/// the retries and those given up.
fn send_again(scheduler: &Scheduler, counters: &Counters, items: Vec<(usize, Planned)>) {
    counters
        .retried
        .fetch_add(items.len() as u64, Ordering::Relaxed);
    let given_up = scheduler.refused_for_now(items, Instant::now());
    if given_up > 0 {
        Counters::count(
            &counters.rejected,
            format!("gave up after {} attempts", load::MAX_ATTEMPTS),
            given_up as u64,
        );
    }
}

/// One submitting connection: takes what the windows allow, sends it, and
/// sorts the answers into accepted, refused for now and refused.
async fn submitter(
    client: HttpClient,
    endpoint: usize,
    batch: usize,
    scheduler: Arc<Scheduler>,
    counters: Arc<Counters>,
) {
    loop {
        let taken = scheduler.take(batch, Instant::now());
        if taken.is_empty() {
            if scheduler.exhausted() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        let fresh = taken.iter().filter(|(_, p)| p.attempts == 0).count() as u64;
        counters.submitted.fetch_add(fresh, Ordering::Relaxed);
        let raws: Vec<String> = taken.iter().map(|(_, p)| hex::encode(&p.bytes)).collect();
        let sent = Instant::now();
        match client.send_raw_transactions(raws).await {
            Ok(results) => {
                let mut again = Vec::new();
                let mut accepted = 0;
                for ((sender, planned), result) in taken.into_iter().zip(results) {
                    match result.error {
                        Some(e) if retryable(e.code, &e.message) => {
                            Counters::count(&counters.refused_for_now, reason(&e.message), 1);
                            again.push((sender, planned));
                        }
                        // Already known: a retry of one the node took (its
                        // answer was lost to a transport error).
                        Some(e) if e.code != tally_rpc::codes::ALREADY_KNOWN => {
                            scheduler.failed(sender, &planned.hash);
                            Counters::count(&counters.rejected, reason(&e.message), 1);
                        }
                        _ => {
                            accepted += 1;
                            let at = Accepted {
                                sender,
                                endpoint,
                                sent,
                            };
                            scheduler.accepted(planned.hash, at);
                        }
                    }
                }
                counters.accepted.fetch_add(accepted, Ordering::Relaxed);
                send_again(&scheduler, &counters, again);
            }
            Err(jsonrpsee::core::ClientError::Call(e)) if retryable(e.code(), e.message()) => {
                let why = reason(e.message());
                Counters::count(&counters.refused_for_now, why, taken.len() as u64);
                send_again(&scheduler, &counters, taken);
            }
            // A transport error (timeout, connection reset): the node may
            // or may not have them, so they are sent again (a second copy
            // of one it took is answered "already known").
            Err(e) => {
                let why = format!("rpc error: {}", reason(&e.to_string()));
                Counters::count(&counters.refused_for_now, why, taken.len() as u64);
                send_again(&scheduler, &counters, taken);
            }
        }
    }
}

/// Follows the chain by WebSocket: every block (fetching any the
/// subscription skipped), its arrival time, and the latency of each bench
/// transfer in it (by the time it was sent).
async fn follow(
    ws_url: String,
    client: HttpClient,
    from: u64,
    scheduler: Arc<Scheduler>,
    blocks: Arc<Mutex<Vec<SeenBlock>>>,
    latencies: Arc<Mutex<Vec<(Instant, f64)>>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let ws = WsClientBuilder::default()
        .max_response_size(64 * 1024 * 1024)
        .build(&ws_url)
        .await
        .with_context(|| format!("WebSocket connection to {ws_url}"))?;
    let mut subscription = ws.subscribe_new_blocks().await?;
    Ok(tokio::spawn(async move {
        let _ws = ws;
        let mut next = from + 1;
        while let Some(Ok(head)) = subscription.next().await {
            let arrived = Instant::now();
            while next <= head.height {
                let Ok(Some(block)) = client.get_block_by_height(next).await else {
                    break;
                };
                next += 1;
                let mut ours = 0;
                let mut lat = Vec::new();
                for hash in &block.tx_hashes {
                    if let Some(accepted) = scheduler.committed(hash) {
                        ours += 1;
                        lat.push((
                            accepted.sent,
                            arrived.duration_since(accepted.sent).as_secs_f64() * 1000.0,
                        ));
                    }
                }
                latencies.lock().await.extend(lat);
                blocks.lock().await.push(SeenBlock {
                    time: block.header.time,
                    tx_count: block.tx_hashes.len() as u64,
                    arrived,
                    ours,
                });
            }
        }
    }))
}

/// Sends one transfer from the probe account (retrying while the pool has
/// no room) and returns the ms from its acceptance to its commit.
async fn probe(client: &HttpClient, chain_id: u64, fee: u128) -> anyhow::Result<f64> {
    let key = probe_key();
    let nonce = client.get_account(key.address().to_string()).await?.nonce;
    let tx = Transaction {
        chain_id,
        nonce,
        to: Address([0x77; 20]),
        amount: 1,
        fee,
        memo: b"tally bench probe".to_vec(),
    }
    .sign(&key);
    let deadline = Instant::now() + Duration::from_secs(30);
    let hash = loop {
        match client.send_raw_transaction(raw(&tx)).await {
            Ok(hash) => break hash,
            Err(jsonrpsee::core::ClientError::Call(e))
                if retryable(e.code(), e.message()) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => bail!("probe transfer refused: {e}"),
        }
    };
    let accepted = Instant::now();
    while accepted.elapsed() < Duration::from_secs(60) {
        if client
            .get_transaction(hash.to_string())
            .await?
            .is_committed()
        {
            return Ok(accepted.elapsed().as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("probe transfer {hash} not committed within 60 s")
}

/// Committed bench transfers per second in blocks that arrived in
/// `[from, to)`.
fn rate_in(blocks: &[SeenBlock], from: Instant, to: Instant) -> f64 {
    let window = to.saturating_duration_since(from).as_secs_f64();
    if window <= 0.0 {
        return 0.0;
    }
    let txs: u64 = blocks
        .iter()
        .filter(|b| b.arrived >= from && b.arrived < to)
        .map(|b| b.ours)
        .sum();
    txs as f64 / window
}

pub async fn run(config: BenchConfig) -> anyhow::Result<BenchReport> {
    if config.endpoints.is_empty() {
        bail!("no RPC endpoint");
    }
    if config.overload.is_some_and(|f| f.is_nan() || f <= 0.0) {
        bail!("--overload takes a positive factor, e.g. 2");
    }
    if config.overload.is_some() && config.duration.is_none() {
        bail!("--overload needs --duration (how long to offer the overload)");
    }
    let recover_per_s = if config.calibrate {
        println!("calibrating: signature recoveries per second on every core...");
        let rate = tokio::task::spawn_blocking(calibrate).await?;
        println!("  {rate:.0} recoveries/s");
        Some(rate)
    } else {
        None
    };
    let bound_tps = recover_per_s.map(|r| r / config.nodes_on_machine.max(1) as f64);

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

    // How many transfers to sign: `txs`, or what the chain could commit at
    // most in the run (the bound), for each phase.
    let ceiling = bound_tps.unwrap_or(20_000.0 / config.nodes_on_machine.max(1) as f64);
    let measure = config
        .duration
        .map(|d| (d / 3).clamp(Duration::from_secs(5), Duration::from_secs(20)));
    let (mode, estimate) = match (config.duration, config.overload) {
        (None, _) => ("burst", config.txs.unwrap_or(50_000)),
        (Some(d), None) => {
            let rate = if config.rate > 0 {
                (config.rate as f64).min(ceiling * 1.2)
            } else {
                ceiling
            };
            ("sustained", (rate * d.as_secs_f64()) as usize)
        }
        (Some(d), Some(factor)) => {
            let measure = measure.unwrap_or_default().as_secs_f64();
            (
                "overload",
                (ceiling * 0.8 * (measure + factor * d.as_secs_f64())) as usize,
            )
        }
    };
    let total = config.txs.map_or(estimate, |cap| cap.min(estimate));
    let mut senders: Vec<SecretKey> = (0..config.senders.max(1)).map(bench_key).collect();
    let per_sender = total.div_ceil(senders.len()).max(1) as u64;
    // Native transfers pay a fee of 1; Ethereum ones 21,000 gas at the
    // node's gas price.
    let eth_gas_price = match config.eth {
        true => Some(
            tally_rpc::eth::EthApiClient::gas_price(&clients[0])
                .await
                .context("asking the node for eth_gasPrice")?
                .0,
        ),
        false => None,
    };
    let fee = eth_gas_price.map_or(1, |price| price * u128::from(TRANSFER_GAS));
    senders.push(probe_key());
    let mut nonces = fund(
        &clients[0],
        chain_id,
        &senders,
        u128::from(per_sender) * (1 + fee) + 1_000,
    )
    .await?;
    senders.pop();
    nonces.pop();

    println!(
        "signing {} transfers ({per_sender} per sender)...",
        per_sender * senders.len() as u64
    );
    let lines = {
        let (senders, nonces) = (senders.clone(), nonces.clone());
        tokio::task::spawn_blocking(move || {
            plan(chain_id, &senders, &nonces, per_sender, eth_gas_price)
        })
        .await?
    };
    let scheduler = Arc::new(Scheduler::new(lines, config.window));
    let counters = Arc::new(Counters::default());
    let blocks: Arc<Mutex<Vec<SeenBlock>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<(Instant, f64)>>> = Arc::default();
    let tip = clients[0].status().await?.latest_height;
    let follower = follow(
        config.endpoints[0].replacen("http", "ws", 1),
        clients[0].clone(),
        tip,
        scheduler.clone(),
        blocks.clone(),
        latencies.clone(),
    )
    .await?;
    let rss = rss::Sampler::start();

    // Overload needs more calls in flight than the node answers, so that
    // the excess is offered (and refused) rather than never sent.
    let connections = match config.overload {
        Some(factor) => (config.connections.max(1) as f64 * factor * 2.0).ceil() as usize,
        None => config.connections.max(1),
    };
    let start = Instant::now();
    if mode != "overload" && config.rate > 0 {
        scheduler.set_pace(Some(config.rate as f64), config.window);
    }
    println!(
        "{mode}: {} senders, window {} per sender, {} connections, batches of {}{}",
        senders.len(),
        config.window,
        connections,
        config.batch,
        match (config.duration, config.rate) {
            (Some(d), _) => format!(", for {} s", d.as_secs()),
            (None, 0) => format!(", {total} transfers as fast as accepted"),
            (None, r) => format!(", {total} transfers at {r}/s"),
        }
    );
    let workers: Vec<_> = (0..connections)
        .map(|w| {
            let endpoint = w % clients.len();
            tokio::spawn(submitter(
                clients[endpoint].clone(),
                endpoint,
                config.batch.max(1),
                scheduler.clone(),
                counters.clone(),
            ))
        })
        .collect();

    // The phases of a sustained or overload run.
    let mut phase_start = start;
    let mut capacity_tps = None;
    let mut offered_tps = None;
    let mut end_at = config.duration.map(|d| start + d);
    if let (Some(d), Some(_), Some(measure)) = (config.duration, config.overload, measure) {
        end_at = Some(start + measure + d);
        println!(
            "  measuring capacity closed-loop for {} s...",
            measure.as_secs()
        );
    }
    let mut probes: Option<tokio::task::JoinHandle<(Option<f64>, Option<f64>)>> = None;
    let mut submit_done: Option<Instant> = None;
    let mut last_print = Instant::now();
    let mut last_progress = ((0u64, 0u64), Instant::now());
    let mut last_drop_check = Instant::now();
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    let mut late_commits = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        if let (Some(factor), Some(measure), None) = (config.overload, measure, capacity_tps) {
            if now >= start + measure {
                let seen = blocks.lock().await;
                let capacity = rate_in(&seen, start + measure / 2, now);
                drop(seen);
                let offered = capacity * factor;
                println!(
                    "  capacity {capacity:.0} tx/s; offering {offered:.0} tx/s ({factor}x) open-loop"
                );
                // Windows up to the pool's nonce reach, so the offered load
                // is not capped by them.
                scheduler.set_pace(Some(offered), config.window.max(60));
                capacity_tps = Some(capacity);
                offered_tps = Some(offered);
                phase_start = now;
            }
        }
        let in_phase = config.overload.is_none() || capacity_tps.is_some();
        if let (Some(end), None) = (end_at, &probes) {
            let middle = phase_start + end.saturating_duration_since(phase_start) / 2;
            if in_phase && now >= middle {
                let client = clients[0].clone();
                probes = Some(tokio::spawn(async move {
                    let same = probe(&client, chain_id, 1).await;
                    let higher = probe(&client, chain_id, 2).await;
                    if let Err(e) = same.as_ref().and(higher.as_ref()) {
                        println!("  probe: {e}");
                    }
                    (same.ok(), higher.ok())
                }));
            }
        }
        if end_at.is_some_and(|end| now >= end) && submit_done.is_none() {
            scheduler.close();
        }
        if submit_done.is_none() && workers.iter().all(|w| w.is_finished()) {
            submit_done = Some(now);
            scheduler.close();
        }
        let accepted = counters.accepted.load(Ordering::Relaxed);
        let committed = accepted.saturating_sub(scheduler.pending_len() as u64);
        if (accepted, committed) != last_progress.0 {
            last_progress = ((accepted, committed), now);
        }
        // Transfers the node dropped free their window slots (else their
        // senders would wait for them for good): a look at the oldest
        // pending ones every few seconds.
        if now.duration_since(last_drop_check) >= Duration::from_secs(3) {
            last_drop_check = now;
            let old = now.checked_sub(Duration::from_secs(5));
            for (hash, at) in scheduler.pending(old, 500) {
                let status = clients[at.endpoint]
                    .get_transaction(hash.to_string())
                    .await
                    .map(|info| info.status);
                match status {
                    Ok(TxStatusInfo::Dropped { reason }) => {
                        scheduler.dropped(&hash);
                        *dropped.entry(reason).or_default() += 1;
                    }
                    // Seen in a block the follower missed.
                    Ok(TxStatusInfo::Committed { .. }) if scheduler.committed(&hash).is_some() => {
                        late_commits += 1;
                    }
                    _ => {}
                }
            }
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = now;
            let t = start.elapsed().as_secs_f64();
            println!(
                "  {t:6.1}s  submitted {:>8}  accepted {:>8}  committed {:>8}  pending {:>6}",
                counters.submitted.load(Ordering::Relaxed),
                counters.accepted.load(Ordering::Relaxed),
                committed,
                scheduler.pending_len(),
            );
        }
        // Nothing accepted or committed for the drain timeout: stop, and
        // say what is left.
        let idle = now.duration_since(last_progress.1);
        if idle > config.drain_timeout {
            println!("  no progress for {} s: stopping", idle.as_secs());
            scheduler.close();
            break;
        }
        if let Some(done) = submit_done {
            if scheduler.pending_len() == 0 || done.elapsed() > config.drain_timeout {
                break;
            }
        }
    }
    let submit_end = submit_done.unwrap_or_else(Instant::now);
    let (probe_same_fee_ms, probe_higher_fee_ms) = match probes {
        Some(task) => task.await.unwrap_or((None, None)),
        None => (None, None),
    };
    // Give the follower a moment for the last block, then classify what
    // is still pending by asking the node that accepted it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    follower.abort();
    for worker in &workers {
        worker.abort();
    }
    let peak_rss_mib = rss.stop().await;
    let mut stranded = 0u64;
    for (hash, accepted) in scheduler.pending(None, usize::MAX) {
        let status = clients[accepted.endpoint]
            .get_transaction(hash.to_string())
            .await
            .map(|info| info.status);
        match status {
            Ok(TxStatusInfo::Committed { .. }) => late_commits += 1,
            Ok(TxStatusInfo::Dropped { reason }) => *dropped.entry(reason).or_default() += 1,
            _ => stranded += 1,
        }
    }

    let blocks = blocks.lock().await.clone();
    let latencies = latencies.lock().await.clone();
    let committed: u64 = blocks.iter().map(|b| b.ours).sum::<u64>() + late_commits;
    let ours: Vec<&SeenBlock> = blocks.iter().filter(|b| b.ours > 0).collect();
    let end_to_end_s = ours
        .last()
        .map_or(0.0, |b| b.arrived.duration_since(start).as_secs_f64());
    let committed_tps = if end_to_end_s > 0.0 {
        committed as f64 / end_to_end_s
    } else {
        0.0
    };
    // The middle 80% of the blocks with bench transfers; transfers of the
    // first block committed before the window opened.
    let cut = ours.len() / 10;
    let middle = &ours[cut..ours.len() - cut];
    let middle_tps = match (middle.first(), middle.last()) {
        (Some(first), Some(last)) if middle.len() >= 2 => {
            let window = last.arrived.duration_since(first.arrived).as_secs_f64();
            let txs: u64 = middle[1..].iter().map(|b| b.ours).sum();
            if window > 0.0 {
                txs as f64 / window
            } else {
                0.0
            }
        }
        _ => 0.0,
    };
    // A sustained run's steady window: after a warm-up, until submission
    // stopped.
    let steady = config.duration.map(|d| {
        let warmup = (d / 6).clamp(Duration::from_secs(2), Duration::from_secs(10));
        (
            phase_start + warmup,
            submit_end.min(end_at.unwrap_or(submit_end)),
        )
    });
    let steady_tps = steady.map(|(from, to)| rate_in(&blocks, from, to));
    let mut window_latencies: Vec<f64> = latencies
        .iter()
        .filter(|(sent, _)| steady.is_none_or(|(from, to)| *sent >= from && *sent < to))
        .map(|(_, ms)| *ms)
        .collect();
    window_latencies.sort_by(f64::total_cmp);
    let mut intervals: Vec<u64> = blocks
        .windows(2)
        .map(|w| w[1].time.saturating_sub(w[0].time))
        .collect();
    let mut per_block: Vec<u64> = blocks.iter().map(|b| b.tx_count).collect();
    let headline = steady_tps.unwrap_or(committed_tps);
    let submitted = counters.submitted.load(Ordering::Relaxed);
    let unsent = scheduler.unsent();
    if unsent == 0 && config.duration.is_some() {
        println!("  note: every signed transfer was sent before the end; the run was cut short");
    }
    let rejected = counters
        .rejected
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let refused_for_now = counters
        .refused_for_now
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(BenchReport {
        endpoints: config.endpoints.clone(),
        senders: senders.len(),
        mode: mode.into(),
        tx_kind: if config.eth { "ethereum" } else { "native" }.into(),
        window: config.window,
        duration_s: config.duration.map(|d| d.as_secs_f64()),
        submitted,
        accepted: counters.accepted.load(Ordering::Relaxed),
        rejected,
        retried: counters.retried.load(Ordering::Relaxed),
        refused_for_now,
        committed,
        dropped,
        stranded,
        abandoned: scheduler.abandoned() as u64,
        submit_rate_tps: submitted as f64 / submit_end.duration_since(start).as_secs_f64(),
        committed_tps,
        end_to_end_s,
        middle_tps,
        steady_tps,
        steady_window_s: steady.map(|(from, to)| to.saturating_duration_since(from).as_secs_f64()),
        capacity_tps,
        offered_tps,
        latency_ms_p50: percentile(&window_latencies, 0.50),
        latency_ms_p95: percentile(&window_latencies, 0.95),
        latency_ms_p99: percentile(&window_latencies, 0.99),
        probe_same_fee_ms,
        probe_higher_fee_ms,
        blocks: blocks.len() as u64,
        block_interval_ms_median: median_u64(&mut intervals),
        txs_per_block_median: median_u64(&mut per_block),
        txs_per_block_max: per_block.iter().copied().max().unwrap_or(0),
        peak_rss_mib,
        recover_per_s,
        nodes_on_machine: config.nodes_on_machine,
        bound_tps,
        ratio_to_bound: bound_tps.map(|b| headline / b),
    })
}

/// The report as a table.
pub fn print(report: &BenchReport) {
    let row = |name: &str, value: String| println!("  {name:<34} {value}");
    println!();
    println!(
        "tally bench results ({}, {} transfers)",
        report.mode, report.tx_kind
    );
    row("endpoints", report.endpoints.join(", "));
    row(
        "senders",
        format!("{} (window {} each)", report.senders, report.window),
    );
    row(
        "submitted / accepted",
        format!("{} / {}", report.submitted, report.accepted),
    );
    if report.retried > 0 {
        row("  retried (refused for now)", report.retried.to_string());
        for (reason, count) in &report.refused_for_now {
            row("    refused for now", format!("{count}  {reason}"));
        }
    }
    for (reason, count) in &report.rejected {
        row("  rejected", format!("{count}  {reason}"));
    }
    row("committed", report.committed.to_string());
    for (reason, count) in &report.dropped {
        row("  dropped", format!("{count}  {reason}"));
    }
    row("stranded (accepted, neither)", report.stranded.to_string());
    if report.abandoned > 0 {
        row("  not sent (sender refused)", report.abandoned.to_string());
    }
    row(
        "submission rate",
        format!("{:.0} tx/s", report.submit_rate_tps),
    );
    if let (Some(capacity), Some(offered)) = (report.capacity_tps, report.offered_tps) {
        row(
            "measured capacity / offered",
            format!("{capacity:.0} / {offered:.0} tx/s"),
        );
    }
    if let (Some(steady), Some(window)) = (report.steady_tps, report.steady_window_s) {
        row(
            "committed throughput (steady)",
            format!("{steady:.0} tx/s (over {window:.0} s after the warm-up)"),
        );
    }
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
    if let (Some(same), Some(higher)) = (report.probe_same_fee_ms, report.probe_higher_fee_ms) {
        row(
            "unrelated transfer committed in",
            format!("{same:.0} ms at the load's fee, {higher:.0} ms paying more"),
        );
    }
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
    for (pid, mib) in &report.peak_rss_mib {
        row("peak RSS", format!("{mib:.0} MiB (tally pid {pid})"));
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn refusals_group_by_kind() {
        assert_eq!(
            super::reason(
                "account 0x3b4AAc5Eb947DF009111642357c6E09f9D7C28be already has 16 transactions \
                 waiting behind a nonce gap; send nonce 296 first"
            ),
            "account <address> already has <n> transactions waiting behind a nonce gap; send nonce <n> first"
        );
        assert_eq!(
            super::reason("mempool full: 100000 transactions"),
            "mempool full"
        );
    }
}
