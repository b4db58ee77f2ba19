//! Validator-set changes on a running chain of real `tally` processes: a
//! fifth validator joins and an original one leaves under load, with no
//! restart; a re-weighted validator's loss is survived and a second one's
//! halts the chain; a full node syncs across the changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonrpsee_http_client::HttpClient;
use tally_ledger::governance::ProposalStatus;
use tally_ledger::{Address, SecretKey};
use tally_rpc::TallyApiClient;

use crate::harness::{
    Load, NodeProc, assert_agreement, assert_settled, client, height, joining_home, raw, run,
    transfer, validator_key_file, wait_for, wait_height,
};

const LONG: Duration = Duration::from_secs(90);

/// Gives each of `addresses` enough to pay governance fees, from a dev
/// account the load does not use, and waits until every node of `clients`
/// has the funds (a node a block behind would refuse their fees).
async fn fund(clients: &[HttpClient], addresses: &[Address]) {
    let client = &clients[0];
    let chain_id = client.status().await.expect("status").chain_id;
    let bank = tally_genesis::dev_keys().remove(15);
    for (nonce, to) in addresses.iter().enumerate() {
        let tx = transfer(&bank, chain_id, nonce as u64, *to, 1_000_000);
        client
            .send_transaction_and_wait(raw(&tx), None)
            .await
            .expect("funding transfer committed");
    }
    in_step(clients).await;
}

/// `tally tx validator <args>` signed by the validator of `home`, sent to
/// `url` and waited for.
fn governance(home: &Path, url: &str, args: &[&str]) {
    let key = validator_key_file(home).display().to_string();
    let mut all = vec!["tx", "validator"];
    all.extend_from_slice(args);
    all.extend(["--key", &key, "--rpc", url, "--wait"]);
    let out = run(&all);
    assert!(out.contains("committed"), "{out}");
}

/// Waits until every node of `clients` has the highest block any of them
/// has: what one node committed, the next node asked must know.
async fn in_step(clients: &[HttpClient]) {
    let mut tip = 0;
    for c in clients {
        tip = tip.max(height(c).await.unwrap_or(0));
    }
    for c in clients {
        wait_height(c, tip, LONG).await;
    }
}

/// The id of the newest pending proposal.
async fn newest_pending(client: &HttpClient) -> u64 {
    let info = client.governance_proposals().await.expect("proposals");
    info.pending
        .iter()
        .map(|p| p.id)
        .max()
        .expect("a pending proposal")
}

/// Waits until proposal `id` is enacted; the height its set signs from.
async fn enacted(client: &HttpClient, id: u64) -> u64 {
    wait_for("the proposal enacted", LONG, || async {
        let info = client.governance_proposals().await.ok()?;
        info.finished
            .iter()
            .find(|p| p.id == id)
            .map(|p| match &p.status {
                ProposalStatus::Enacted { effective, .. } => *effective,
                other => panic!("proposal {id} ended {other:?}"),
            })
    })
    .await
}

/// Validators whose precommits certify block `h` (they are in block `h + 1`).
async fn signers_of(client: &HttpClient, h: u64) -> Vec<Address> {
    let block = wait_for("the next block", LONG, || async {
        client.get_block_by_height(h + 1).await.ok()?
    })
    .await;
    block
        .last_commit
        .map(|c| c.signatures.iter().map(|s| s.validator).collect())
        .unwrap_or_default()
}

fn address_of(home: &Path) -> Address {
    SecretKey::load(&validator_key_file(home))
        .expect("key")
        .address()
}

fn public_key_of(home: &Path) -> String {
    SecretKey::load(&validator_key_file(home))
        .expect("key")
        .public_key()
        .to_string()
}

fn start_all(homes: &[PathBuf]) -> Vec<NodeProc> {
    homes
        .iter()
        .enumerate()
        .map(|(i, h)| NodeProc::start(&format!("node{i}"), h, &[]))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifth_validator_joins_and_an_original_one_leaves_without_a_restart() {
    let _heavy = crate::harness::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let homes = crate::harness::four_validator_homes(dir.path());
    let urls: Vec<String> = homes.iter().map(|h| crate::harness::rpc_url(h)).collect();
    let nodes = start_all(&homes);
    let clients: Vec<HttpClient> = urls.iter().map(|u| client(u)).collect();
    for c in &clients {
        wait_height(c, 2, LONG).await;
    }
    let chain_id = clients[0].status().await.expect("status").chain_id;
    let originals: Vec<Address> = homes.iter().map(|h| address_of(h)).collect();

    // A fifth node with a key of its own follows the chain as a full node.
    let fifth_home = joining_home(dir.path(), "node4", &homes, false);
    let fifth = NodeProc::start("node4", &fifth_home, &[]);
    let fifth_client = client(&fifth.rpc_url().await);
    let newcomer = address_of(&fifth_home);
    wait_height(&fifth_client, height(&clients[0]).await.expect("tip"), LONG).await;
    assert!(fifth.log_text().contains("not in the validator set"));
    let mut all_homes = homes.clone();
    all_homes.push(fifth_home.clone());
    let mut all_clients = clients.clone();
    all_clients.push(fifth_client.clone());
    fund(
        &all_clients,
        &all_homes.iter().map(|h| address_of(h)).collect::<Vec<_>>(),
    )
    .await;

    let load = Load::start(urls.clone(), chain_id);
    wait_height(
        &clients[0],
        height(&clients[0]).await.expect("tip") + 5,
        LONG,
    )
    .await;

    // node0 proposes the newcomer; node1 and node2 approve: 30 of 40.
    let key = public_key_of(&fifth_home);
    governance(
        &homes[0],
        &urls[0],
        &[
            "propose",
            "add",
            "--name",
            "node4",
            "--public-key",
            &key,
            "--power",
            "10",
        ],
    );
    in_step(&all_clients).await;
    let id = newest_pending(&clients[1]).await;
    // A stranger's approval is refused at once, with the rule it breaks.
    run(&[
        "keys",
        "generate",
        "--out",
        &dir.path().join("stranger.key").display().to_string(),
    ]);
    let stranger = crate::harness::tally()
        .args([
            "tx",
            "validator",
            "approve",
            &id.to_string(),
            "--rpc",
            &urls[1],
            "--key",
        ])
        .arg(dir.path().join("stranger.key"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&stranger.stderr);
    assert!(
        !stranger.status.success() && stderr.contains("not a validator"),
        "{stderr}"
    );
    for i in [1, 2] {
        governance(&homes[i], &urls[i], &["approve", &id.to_string()]);
    }
    let joins = enacted(&clients[0], id).await;
    eprintln!("the fifth validator signs from height {joins}");
    let set = clients[0]
        .validators(Some(joins))
        .await
        .expect("validators");
    assert_eq!(set.validators.len(), 5);
    assert_eq!(set.since, joins);
    assert_eq!(
        clients[0]
            .validators(Some(joins - 1))
            .await
            .expect("validators")
            .validators
            .len(),
        4
    );
    // From its activation height it signs, without a restart.
    let signed_at = wait_for(
        "the newcomer's precommit in a certificate",
        LONG,
        || async {
            let tip = height(&clients[0]).await?;
            for h in joins..tip {
                if signers_of(&clients[0], h).await.contains(&newcomer) {
                    return Some(h);
                }
            }
            None
        },
    )
    .await;
    assert!(signed_at >= joins);
    for h in joins.saturating_sub(3)..joins {
        assert!(!signers_of(&clients[0], h).await.contains(&newcomer));
    }
    assert!(
        fifth
            .log_text()
            .contains("in the validator set from this height")
    );

    // Then node3 leaves: four approvals of the five (40 of 50).
    let leaving = originals[3].to_string();
    governance(&homes[0], &urls[0], &["propose", "remove", &leaving]);
    in_step(&all_clients).await;
    let id = newest_pending(&clients[0]).await;
    for (home, url) in [(&homes[1], &urls[1]), (&homes[2], &urls[2])] {
        governance(home, url, &["approve", &id.to_string()]);
    }
    let fifth_url = fifth.rpc_url().await;
    governance(&fifth_home, &fifth_url, &["approve", &id.to_string()]);
    let leaves = enacted(&clients[0], id).await;
    eprintln!("node3 leaves the set at height {leaves}");
    wait_height(&clients[0], leaves + 8, LONG).await;
    for h in leaves..leaves + 6 {
        let signers = signers_of(&clients[0], h).await;
        assert!(!signers.contains(&originals[3]), "node3 signed block {h}");
        assert!(signers.iter().all(|s| *s != originals[3]));
    }
    assert!(nodes[3].log_text().contains("left the validator set"));
    // It keeps running as a full node, at the tip.
    wait_height(&clients[3], leaves + 8, LONG).await;

    // Every accepted transfer committed (or reported dropped), no fork.
    let (accepted, origins) = load.finish_with_origins().await;
    let mut logs: Vec<(String, String)> = nodes
        .iter()
        .map(|n| (n.name.clone(), n.log_text()))
        .collect();
    logs.push((fifth.name.clone(), fifth.log_text()));
    assert_settled(&clients, &accepted, &origins, &logs).await;
    assert_agreement(&all_clients).await;

    // A full node started now syncs from height 1 across both changes,
    // checking every certificate against the set of its height.
    let late_home = joining_home(dir.path(), "late", &all_homes, true);
    let late = NodeProc::start("late", &late_home, &[]);
    let late_client = client(&late.rpc_url().await);
    let tip = height(&clients[0]).await.expect("tip");
    wait_height(&late_client, tip, LONG).await;
    assert_agreement(&[clients[0].clone(), late_client.clone()]).await;
    assert_eq!(
        late_client.validators(Some(tip)).await.expect("validators"),
        clients[0].validators(Some(tip)).await.expect("validators"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_validator_just_under_a_third_may_fail_and_a_second_one_halts_the_chain() {
    let _heavy = crate::harness::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let homes = crate::harness::four_validator_homes(dir.path());
    let urls: Vec<String> = homes.iter().map(|h| crate::harness::rpc_url(h)).collect();
    let mut nodes = start_all(&homes);
    let clients: Vec<HttpClient> = urls.iter().map(|u| client(u)).collect();
    for c in &clients {
        wait_height(c, 2, LONG).await;
    }
    fund(
        &clients,
        &homes.iter().map(|h| address_of(h)).collect::<Vec<_>>(),
    )
    .await;

    // node0 to power 14: 14 of 44 is just under a third.
    let heavy = address_of(&homes[0]).to_string();
    governance(&homes[1], &urls[1], &["propose", "power", &heavy, "14"]);
    in_step(&clients).await;
    let id = newest_pending(&clients[1]).await;
    for i in [2, 3] {
        governance(&homes[i], &urls[i], &["approve", &id.to_string()]);
    }
    let from = enacted(&clients[1], id).await;
    wait_height(&clients[1], from, LONG).await;
    let set = clients[1].validators(Some(from)).await.expect("validators");
    assert_eq!(set.total_power, 44);

    // Without node0 the other three hold 30 of 44, more than 2/3.
    nodes[0].kill9();
    let at = height(&clients[1]).await.expect("tip");
    wait_height(&clients[1], at + 5, LONG).await;
    // Without node1 as well, 20 of 44: no height is decided.
    nodes[1].kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stuck = height(&clients[2]).await.expect("tip");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        height(&clients[2]).await,
        Some(stuck),
        "decided without a quorum"
    );
    // node1 back: 30 of 44 again, and the chain resumes.
    nodes[1].restart();
    wait_height(&clients[2], stuck + 3, LONG).await;
    wait_height(&clients[1], stuck + 3, LONG).await;
    assert_agreement(&clients[1..]).await;
}
