//! Running real `tally` processes from tests: homes in a temporary
//! directory, logs in files (scanned by the tests, printed on failure),
//! every process killed and every directory removed when dropped.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};
use tally_ledger::{Address, SecretKey, SignedTransaction, Transaction};
use tally_rpc::TallyApiClient;

pub fn tally() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tally"))
}

/// Runs a `tally` command to completion and returns its stdout.
pub fn run(args: &[&str]) -> String {
    let output = tally().args(args).output().expect("run tally");
    assert!(
        output.status.success(),
        "tally {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// A `tally start` process.
#[derive(Debug)]
pub struct NodeProc {
    pub name: String,
    pub log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl NodeProc {
    /// `tally start --home <home> <extra>`.
    pub fn start(name: &str, home: &Path, extra: &[&str]) -> NodeProc {
        Self::spawn(name, home, "start", extra)
    }

    /// `tally <command> --home <home> <extra>`, logging to `<home>/../<name>.log`.
    pub fn spawn(name: &str, home: &Path, command: &str, extra: &[&str]) -> NodeProc {
        let log = home
            .parent()
            .expect("home has a parent")
            .join(format!("{name}.log"));
        let mut args = vec![
            command.to_string(),
            "--home".into(),
            home.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut node = NodeProc {
            name: name.into(),
            log,
            args,
            child: None,
        };
        node.restart();
        node
    }

    /// Starts the process again with the same arguments (appending to the
    /// same log).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let child = tally()
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn tally start");
        self.child = Some(child);
    }

    /// SIGKILL: no chance to clean up, like a power cut.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON-RPC URL the node printed ("JSON-RPC listening on http://...").
    pub async fn rpc_url(&self) -> String {
        wait_for(
            &format!("{}'s RPC address", self.name),
            Duration::from_secs(60),
            || async {
                let text = self.log_text();
                let start = text.find("JSON-RPC listening on http://")?;
                let rest = &text[start + "JSON-RPC listening on ".len()..];
                Some(rest.split_whitespace().next()?.to_string())
            },
        )
        .await
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- last log lines of {} ----", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

pub fn client(url: &str) -> HttpClient {
    HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(10))
        .build(url)
        .expect("rpc client")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node's latest height, or `None` while it does not answer.
pub async fn height(client: &HttpClient) -> Option<u64> {
    client.status().await.ok().map(|s| s.latest_height)
}

pub async fn wait_height(client: &HttpClient, target: u64, timeout: Duration) -> u64 {
    wait_for(&format!("height {target}"), timeout, || async {
        height(client).await.filter(|h| *h >= target)
    })
    .await
}

/// A signed transfer, hex encoded for `tally_sendRawTransaction`.
pub fn transfer(
    key: &SecretKey,
    chain_id: u64,
    nonce: u64,
    to: Address,
    amount: u128,
) -> SignedTransaction {
    Transaction {
        chain_id,
        nonce,
        to,
        amount,
        fee: 1,
        memo: Vec::new(),
    }
    .sign(key)
}

pub fn raw(tx: &SignedTransaction) -> String {
    format!("0x{}", hex::encode(tx.encode()))
}
