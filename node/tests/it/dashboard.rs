//! The live dashboard in a real browser: a 4-validator localnet, node0's
//! page showing all four, opened in headless Chromium twice a few seconds
//! apart; the DOM must list every node with its height and a block count
//! that rises. A screenshot is kept under the test's output for people to
//! look at. Skipped (with a message) when no Chromium is installed; the
//! scripts install Debian's `chromium` when they run as root, as CI does.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::{NodeProc, client, rpc_url, wait_height};

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_string)
}

/// The page after it ran a few seconds of its polling, as HTML.
fn render(browser: &str, url: &str, screenshot: Option<&PathBuf>) -> String {
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
        "--virtual-time-budget=6000",
    ]);
    match screenshot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The numbers in `<td class="height">N</td>` cells.
fn heights(dom: &str) -> Vec<u64> {
    dom.split("<td class=\"height\">")
        .skip(1)
        .filter_map(|rest| rest.split('<').next()?.trim().parse().ok())
        .collect()
}

fn highest(dom: &str) -> u64 {
    dom.split("data-highest=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_every_node_live_in_a_browser() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no chromium installed (the scripts install it when run as root)");
        return;
    };
    let _heavy = crate::harness::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let homes = crate::harness::four_validator_homes(dir.path());
    let nodes: Vec<NodeProc> = homes
        .iter()
        .enumerate()
        .map(|(i, h)| NodeProc::start(&format!("node{i}"), h, &[]))
        .collect();
    for h in &homes {
        wait_height(&client(&rpc_url(h)), 3, Duration::from_secs(90)).await;
    }
    let mut origins = Vec::new();
    for node in &nodes {
        let metrics = node.metrics_url().await;
        origins.push(metrics.trim_end_matches("/metrics").to_string());
    }
    let url = format!("{}/dashboard?nodes={}", origins[0], origins.join(","));

    let first = tokio::task::spawn_blocking({
        let (browser, url) = (browser.clone(), url.clone());
        move || render(&browser, &url, None)
    })
    .await
    .expect("join");
    assert_eq!(
        first.matches("<tr data-node=").count(),
        4,
        "four node rows: {first}"
    );
    let seen = heights(&first);
    assert_eq!(seen.len(), 4, "every node answered with a height: {first}");
    assert!(seen.iter().all(|h| *h >= 3), "{seen:?}");
    assert!(
        first.contains("node0") && first.contains("node3"),
        "monikers shown"
    );
    assert!(first.contains("block-height"), "recent blocks listed");

    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = tokio::task::spawn_blocking({
        let (browser, url) = (browser.clone(), url.clone());
        move || render(&browser, &url, None)
    })
    .await
    .expect("join");
    assert!(
        highest(&second) > highest(&first),
        "the block count rises: {} then {}",
        highest(&first),
        highest(&second)
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    tokio::task::spawn_blocking({
        let (browser, url, shot) = (browser.clone(), url.clone(), shot.clone());
        move || render(&browser, &url, Some(&shot))
    })
    .await
    .expect("join");
    assert!(shot.exists(), "a screenshot at {}", shot.display());
    eprintln!("dashboard screenshot: {}", shot.display());
}
