//! `tally bench --lockout N`: the mempool-lockout attack, measured. N funded
//! accounts each send 64 transfers that skip their next nonce (so none can
//! ever execute), as an attacker would to fill every pool for free; then an
//! unrelated account sends one normal transfer, and the time from its
//! acceptance to its commit is what counts (the target: within 2 s).

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use jsonrpsee_http_client::HttpClient;
use serde::Serialize;
use tally_ledger::{Address, SecretKey, Transaction};
use tally_rpc::TallyApiClient;

use super::{fund, probe, probe_key, raw, reason, sign_all};

/// Gapped transfers per account: the mempool's whole nonce reach.
const GAPPED_PER_ACCOUNT: u64 = 64;

#[derive(Clone, Debug, Serialize)]
pub struct LockoutReport {
    pub accounts: usize,
    pub gapped_sent: u64,
    pub gapped_accepted: u64,
    /// Refusals of gapped transfers, by reason.
    pub gapped_refused: BTreeMap<String, u64>,
    pub submit_s: f64,
    /// The pool after the flood, as the node reports it.
    pub mempool_size: u32,
    pub mempool_queued: u32,
    /// An unrelated normal transfer: ms from its acceptance to its commit.
    pub normal_transfer_ms: f64,
}

fn gapped_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&format!("tally-bench-gapped-{i}"))
}

pub async fn run(
    client: &HttpClient,
    accounts: usize,
    batch: usize,
) -> anyhow::Result<LockoutReport> {
    let chain_id = client
        .status()
        .await
        .context("asking for the status")?
        .chain_id;
    // The normal transfer comes from the probe account: funded with them.
    let mut keys: Vec<SecretKey> = (0..accounts).map(gapped_key).collect();
    keys.push(probe_key());
    let mut nonces = fund(
        client,
        chain_id,
        &keys,
        u128::from(GAPPED_PER_ACCOUNT) * 2 + 1_000,
    )
    .await?;
    keys.pop();
    nonces.pop();
    println!(
        "signing {} gapped transfers ({GAPPED_PER_ACCOUNT} per account, each skipping its next nonce)...",
        accounts as u64 * GAPPED_PER_ACCOUNT
    );
    let txs: Vec<(SecretKey, Transaction)> = keys
        .iter()
        .zip(&nonces)
        .flat_map(|(key, &next)| {
            (1..=GAPPED_PER_ACCOUNT).map(move |ahead| {
                (
                    key.clone(),
                    Transaction {
                        chain_id,
                        nonce: next + ahead,
                        to: Address([0x66; 20]),
                        amount: 1,
                        fee: 1,
                        memo: Vec::new(),
                    },
                )
            })
        })
        .collect();
    let signed = tokio::task::spawn_blocking(move || sign_all(txs)).await?;
    let started = Instant::now();
    let (mut accepted, mut refused) = (0u64, BTreeMap::<String, u64>::new());
    for chunk in signed.chunks(batch.max(1)) {
        let results = client
            .send_raw_transactions(chunk.iter().map(raw).collect())
            .await?;
        for result in results {
            match result.error {
                None => accepted += 1,
                Some(e) => *refused.entry(reason(&e.message)).or_default() += 1,
            }
        }
    }
    let submit_s = started.elapsed().as_secs_f64();
    let status = client.status().await?;
    println!(
        "flood sent in {submit_s:.1} s: {accepted} accepted, pool {} ({} queued); now a normal transfer...",
        status.mempool_size, status.mempool_queued
    );
    let normal_transfer_ms = probe(client, chain_id, 1).await?;
    Ok(LockoutReport {
        accounts,
        gapped_sent: signed.len() as u64,
        gapped_accepted: accepted,
        gapped_refused: refused,
        submit_s,
        mempool_size: status.mempool_size,
        mempool_queued: status.mempool_queued,
        normal_transfer_ms,
    })
}

pub fn print(report: &LockoutReport) {
    println!(
        "lockout attack: {} accounts x {GAPPED_PER_ACCOUNT} gapped transfers",
        report.accounts
    );
    println!(
        "  sent {} in {:.1} s, accepted {}, refused {:?}",
        report.gapped_sent, report.submit_s, report.gapped_accepted, report.gapped_refused
    );
    println!(
        "  pool after the flood: {} transactions, {} queued behind gaps",
        report.mempool_size, report.mempool_queued
    );
    println!(
        "  a normal transfer then committed {:.0} ms after it was accepted",
        report.normal_transfer_ms
    );
}
