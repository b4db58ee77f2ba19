//! `tally query trace <hash> --rpc URL ...`: every node's record of one
//! transaction (`tally_traceTransaction`) on one timeline, so that a user
//! sees where a transfer got stuck: which node first had it, who gossiped
//! it, which proposals carried it, where it was committed or dropped.

use jsonrpsee_http_client::HttpClientBuilder;
use tally_rpc::{TallyApiClient, TxTrace};

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub at_ms: u64,
    pub node: String,
    pub what: String,
}

/// The steps of `trace` as seen by `node`.
pub fn steps(node: &str, trace: &TxTrace) -> Vec<Step> {
    let step = |at_ms: u64, what: String| Step {
        at_ms,
        node: node.to_string(),
        what,
    };
    let mut out = vec![step(
        trace.first_seen_ms,
        format!("first seen ({})", trace.source),
    )];
    if let Some(at) = trace.gossiped_ms {
        out.push(step(at, "gossiped it on".into()));
    }
    for p in &trace.proposals {
        out.push(step(
            p.at_ms,
            format!(
                "in the proposal of height {} round {} by {}",
                p.height, p.round, p.proposer
            ),
        ));
    }
    if let (Some(height), Some(at)) = (trace.committed_height, trace.committed_ms) {
        out.push(step(at, format!("committed at height {height}")));
    }
    if let (Some(reason), Some(at)) = (&trace.dropped_reason, trace.dropped_ms) {
        out.push(step(at, format!("dropped: {reason}")));
    }
    out
}

/// Asks every node in `urls` and renders one timeline (times relative to
/// the earliest event; each node's own clock).
pub async fn timeline(hash: &str, urls: &[String]) -> anyhow::Result<String> {
    let mut all = Vec::new();
    let mut silent = Vec::new();
    for url in urls {
        let client = HttpClientBuilder::default().build(url)?;
        match client.trace_transaction(hash.to_string()).await {
            Ok(Some(trace)) => all.extend(steps(url, &trace)),
            Ok(None) => silent.push(format!("{url}: has no record of it")),
            Err(e) => silent.push(format!("{url}: {e}")),
        }
    }
    all.sort_by(|a, b| (a.at_ms, &a.node).cmp(&(b.at_ms, &b.node)));
    let start = all.first().map_or(0, |s| s.at_ms);
    let width = urls.iter().map(String::len).max().unwrap_or(0);
    let mut out = format!("transaction {hash} (ms after the first event; each node's clock)\n");
    for s in &all {
        out.push_str(&format!(
            "{:>8}  {:<width$}  {}\n",
            format!("+{}", s.at_ms.saturating_sub(start)),
            s.node,
            printable(&s.what)
        ));
    }
    for line in silent {
        out.push_str(&format!("  {}\n", printable(&line)));
    }
    Ok(out)
}

/// What a node answered, without control characters (a hostile node could
/// send terminal escapes).
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}
