//! A real node started in this process (`Node::start`) facing a hostile
//! peer built from the p2p crate, plus the config and signing-state files.

use std::time::Duration;

use tally_ledger::{Address, Block, Commit, CommitSig, Hash, Header, SecretKey};
use tally_node::cli::homes;
use tally_node::config::{Config, Home};
use tally_node::node::Node;
use tally_node::wire::{SyncRequest, SyncResponse, decode, encode};
use tally_p2p::{Event, Multiaddr};
use tally_rpc::TallyApiClient;

use crate::harness::{client, loopback_config, wait_for, wait_height};

#[test]
fn the_documented_config_reads_back_as_written() {
    let mut config = Config::default();
    config.p2p.bootstrap = vec!["/ip4/10.0.0.2/tcp/26656/p2p/12D3KooWExample".into()];
    config.rpc.cors_allowed_origins = vec!["*".into()];
    config.node.moniker = "quote \" and backslash \\".into();
    let text = config.documented();
    let parsed: Config = toml::from_str(&text).expect("documented config parses");
    assert_eq!(parsed, config);
    // Every option is optional, and unknown ones are refused.
    assert_eq!(
        toml::from_str::<Config>("").expect("empty"),
        Config::default()
    );
    assert!(toml::from_str::<Config>("[rpc]\nlisten_typo = 1\n").is_err());
}

#[test]
fn the_signing_state_survives_a_round_trip_and_corruption_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("signing_state.bin");
    assert!(tally_node::signing::load(&path).expect("load").is_none());
    let mut state = tally_node::signing::SigningState::empty();
    state.height = 7;
    state.round = 2;
    tally_node::signing::save(&path, &state).expect("save");
    assert_eq!(tally_node::signing::load(&path).expect("load"), Some(state));
    std::fs::write(&path, b"\x01garbage").expect("write");
    let error = tally_node::signing::load(&path).expect_err("corrupt state refused");
    assert!(format!("{error:#}").contains("corrupt"), "{error:#}");
}

/// A block and certificate that look right but are signed by no validator.
fn forged(chain_id: u64, height: u64) -> (Block, Commit) {
    let block = Block {
        header: Header {
            chain_id,
            height,
            time: 1,
            prev_hash: Hash::ZERO,
            tx_root: Hash::ZERO,
            state_root: Hash::ZERO,
            proposer: Address([9; 20]),
            validators_hash: Hash::ZERO,
            next_validators_hash: Hash::ZERO,
            last_commit_hash: Hash::ZERO,
        },
        txs: Vec::new(),
        last_commit: None,
    };
    let outsider = SecretKey::from_seed("tally-test-outsider");
    let commit = Commit {
        height,
        round: 0,
        block_hash: block.hash(),
        signatures: vec![CommitSig {
            validator: outsider.address(),
            signature: outsider.sign_prehash(&block.hash()),
        }],
    };
    (block, commit)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_serving_forged_blocks_is_banned_and_the_node_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = Home::new(dir.path().join("node"));
    let mut config = loopback_config();
    config.sync.interval_ms = 200;
    let (genesis, _) = homes::init(&home, 4242, None, false, config.clone()).expect("init");
    let node = Node::start(&home, &config).await.expect("node starts");
    let rpc = client(&format!("http://{}", node.rpc_addr.expect("rpc")));
    let node_addr: Multiaddr = node.p2p_addrs[0].clone();
    let node_peer = node.peer_id;
    let running = tokio::spawn(node.run_until(std::future::pending()));
    wait_height(&rpc, 1, Duration::from_secs(30)).await;

    // The hostile peer: claims to be far ahead and serves forged blocks.
    let peer_dir = tempfile::tempdir().expect("tempdir");
    let (hostile, mut events) = tally_p2p::spawn(tally_p2p::Config {
        key_file: peer_dir.path().join("node_key"),
        bootstrap: vec![node_addr],
        chain_id: genesis.chain_id,
        genesis_hash: genesis.hash().0,
        ..tally_p2p::Config::default()
    })
    .await
    .expect("hostile peer starts");
    let hostile_id = hostile.local_peer_id();
    let chain_id = genesis.chain_id;
    let served = tokio::spawn(async move {
        let mut forged_served = 0;
        let mut disconnected = false;
        while let Some(event) = events.recv().await {
            match event {
                Event::Request { id, data, .. } => {
                    let response = match decode::<SyncRequest>(&data) {
                        Ok(SyncRequest::Status) => SyncResponse::Status {
                            height: 1_000,
                            hash: Hash::ZERO,
                        },
                        Ok(SyncRequest::Blocks { from, .. }) => {
                            forged_served += 1;
                            SyncResponse::Blocks(vec![forged(chain_id, from)])
                        }
                        Ok(_) | Err(_) => SyncResponse::Error("?".into()),
                    };
                    let _ = hostile.respond(id, encode(&response)).await;
                }
                Event::PeerDisconnected { peer } if peer == node_peer && forged_served > 0 => {
                    disconnected = true;
                    break;
                }
                _ => {}
            }
        }
        (forged_served, disconnected, hostile)
    });

    let (forged_served, disconnected, hostile) =
        tokio::time::timeout(Duration::from_secs(60), served)
            .await
            .expect("the node never dropped the hostile peer")
            .expect("hostile task");
    assert!(forged_served > 0 && disconnected);
    // Banned: it is not among the node's peers, and stays out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peers = rpc.peers().await.expect("peers");
    assert!(
        peers.iter().all(|p| p.peer_id != hostile_id.to_string()),
        "the hostile peer is still connected: {peers:?}"
    );
    // Nothing forged was committed, and the chain goes on.
    let status = rpc.status().await.expect("status");
    assert!(status.latest_height < 1_000);
    let before = status.latest_height;
    wait_for("the chain to go on", Duration::from_secs(30), || async {
        rpc.status()
            .await
            .ok()
            .filter(|s| s.latest_height > before + 2)
    })
    .await;
    assert!(!running.is_finished(), "the node stopped");
    let _ = hostile.shutdown().await;
    running.abort();
}

/// A full node catches up by block sync from an honest validator while a
/// second peer claims a far higher tip and serves no block: that peer is
/// asked only for heights within its claim, its empty answers cost the node
/// nothing but a retry elsewhere, and the node reaches the honest tip with
/// the validator's blocks. Several small ranges are in flight at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_node_catches_up_past_a_peer_that_claims_blocks_it_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let validator = Home::new(dir.path().join("validator"));
    let mut config = loopback_config();
    config.sync.interval_ms = 200;
    config.sync.batch_blocks = 4;
    homes::init(&validator, 4243, None, false, config.clone()).expect("init");
    // A block every 100 ms, with or without transactions.
    let mut genesis = tally_genesis::Genesis::load(&validator.genesis_file()).expect("genesis");
    genesis.consensus.empty_block_interval_ms = 0;
    genesis
        .save(&validator.genesis_file())
        .expect("save genesis");
    let node = Node::start(&validator, &config)
        .await
        .expect("validator starts");
    let rpc = client(&format!("http://{}", node.rpc_addr.expect("rpc")));
    let validator_addr = format!("{}/p2p/{}", node.p2p_addrs[0], node.peer_id);
    let validator_running = tokio::spawn(node.run_until(std::future::pending()));
    let target = wait_height(&rpc, 60, Duration::from_secs(60)).await;

    // The liar: listens, claims a million blocks, serves none.
    let liar_dir = tempfile::tempdir().expect("tempdir");
    let (liar, mut events) = tally_p2p::spawn(tally_p2p::Config {
        key_file: liar_dir.path().join("node_key"),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        chain_id: genesis.chain_id,
        genesis_hash: genesis.hash().0,
        ..tally_p2p::Config::default()
    })
    .await
    .expect("liar starts");
    let liar_addr = format!(
        "{}/p2p/{}",
        liar.listen_addrs().await.expect("listen addrs")[0],
        liar.local_peer_id()
    );
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u64, u32)>::new()));
    let liar_task = {
        let (liar, asked) = (liar.clone(), asked.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Event::Request { id, data, .. } = event {
                    let response = match decode::<SyncRequest>(&data) {
                        Ok(SyncRequest::Status) => SyncResponse::Status {
                            height: 1_000_000,
                            hash: Hash::ZERO,
                        },
                        Ok(SyncRequest::Blocks { from, count }) => {
                            asked.lock().expect("lock").push((from, count));
                            SyncResponse::Blocks(Vec::new())
                        }
                        Ok(_) | Err(_) => SyncResponse::Error("?".into()),
                    };
                    let _ = liar.respond(id, encode(&response)).await;
                }
            }
        })
    };

    let follower = Home::new(dir.path().join("follower"));
    let mut follower_config = config.clone();
    follower_config.p2p.bootstrap = vec![validator_addr, liar_addr];
    follower_config.node.validator_key = String::new();
    homes::init(
        &follower,
        4243,
        Some(genesis),
        true,
        follower_config.clone(),
    )
    .expect("init");
    let node = Node::start(&follower, &follower_config)
        .await
        .expect("full node starts");
    let follower_rpc = client(&format!("http://{}", node.rpc_addr.expect("rpc")));
    let follower_running = tokio::spawn(node.run_until(std::future::pending()));
    wait_height(&follower_rpc, target, Duration::from_secs(30)).await;
    // The same blocks as the validator's.
    for height in [1, target / 2, target] {
        let ours = follower_rpc
            .get_block_by_height(height)
            .await
            .expect("block");
        let theirs = rpc.get_block_by_height(height).await.expect("block");
        assert_eq!(
            ours.map(|b| b.hash),
            theirs.map(|b| b.hash),
            "height {height}"
        );
    }
    // Whatever the liar was asked (it may have connected after the
    // catch-up began) lay within the heights the follower lacked.
    let asked = asked.lock().expect("lock").clone();
    println!("the liar was asked for {asked:?}");
    assert!(asked.iter().all(|(from, count)| *from >= 1 && *count <= 4));
    assert!(!follower_running.is_finished() && !validator_running.is_finished());
    liar_task.abort();
    let _ = liar.shutdown().await;
    follower_running.abort();
    validator_running.abort();
}
