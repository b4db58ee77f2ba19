//! State sync against real nodes: a fresh full node installs a snapshot
//! from two honest peers while liars offer a snapshot with a forged
//! certificate, relabel a certified header, serve corrupt chunks or none; a node
//! killed during state sync resumes; a pruned node survives kills.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tally_genesis::{Genesis, GenesisAccount};
use tally_ledger::{Address, CommitSig, SecretKey, keccak256};
use tally_node::cli::{homes, prove};
use tally_node::config::{Config, Home};
use tally_node::node::Node;
use tally_node::wire::{SyncRequest, SyncResponse, decode, encode};
use tally_p2p::{Event, PeerId};
use tally_rpc::TallyApiClient;

use crate::harness::{NodeProc, client, loopback_config, raw, transfer, wait_height};

/// Accounts in genesis besides the dev ones: enough for four chunks.
const EXTRA_ACCOUNTS: u64 = 12_000;

fn extra(i: u64) -> Address {
    Address(
        keccak256(format!("state-sync-test-{i}").as_bytes()).0[..20]
            .try_into()
            .expect("20 bytes"),
    )
}

/// What a liar's answer says to mean "do not answer".
const MUTE: &str = "mute";

/// A peer built from the p2p crate, answering sync requests its own way.
struct Liar {
    handle: tally_p2p::Handle,
    addr: String,
    /// Answers it made up (or withheld).
    lied: Arc<AtomicUsize>,
    /// Peers that dropped it.
    dropped_by: Arc<std::sync::Mutex<std::collections::HashSet<PeerId>>>,
}

async fn liar(
    dir: &std::path::Path,
    genesis: &Genesis,
    honest: String,
    respond: impl Fn(&SyncRequest, &Option<SyncResponse>) -> Option<SyncResponse> + Send + 'static,
) -> Liar {
    let (handle, mut events) = tally_p2p::spawn(tally_p2p::Config {
        key_file: dir.join("node_key"),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        bootstrap: vec![honest.parse().expect("addr")],
        chain_id: genesis.chain_id,
        genesis_hash: genesis.hash().0,
        ..tally_p2p::Config::default()
    })
    .await
    .expect("liar starts");
    let addr = format!(
        "{}/p2p/{}",
        handle.listen_addrs().await.expect("addrs")[0],
        handle.local_peer_id()
    );
    let honest_peer: PeerId = honest
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("peer id");
    let lied = Arc::new(AtomicUsize::new(0));
    let dropped_by = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    {
        let (handle, lied, dropped) = (handle.clone(), lied.clone(), dropped_by.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    Event::Request { id, data, .. } => {
                        let Ok(request) = decode::<SyncRequest>(&data) else {
                            continue;
                        };
                        // What the honest validator answers, to lie from.
                        let truth = handle
                            .request(honest_peer, data.clone())
                            .await
                            .ok()
                            .and_then(|bytes| decode::<SyncResponse>(&bytes).ok());
                        let made_up = respond(&request, &truth);
                        if made_up.is_some() {
                            lied.fetch_add(1, Ordering::Relaxed);
                        }
                        let answer = made_up.or(truth).unwrap_or(SyncResponse::Error("?".into()));
                        if matches!(&answer, SyncResponse::Error(why) if why == MUTE) {
                            // No answer at all: the request times out.
                            continue;
                        }
                        let _ = handle.respond(id, encode(&answer)).await;
                    }
                    Event::PeerDisconnected { peer } => {
                        dropped.lock().expect("lock").insert(peer);
                    }
                    _ => {}
                }
            }
        });
    }
    Liar {
        handle,
        addr,
        lied,
        dropped_by,
    }
}

/// A validator in this process on a chain of `extra_accounts` more genesis
/// accounts, making a block every 100 ms: its genesis, RPC client,
/// multiaddr and running task.
struct InProcess {
    genesis: Genesis,
    rpc: jsonrpsee_http_client::HttpClient,
    addr: String,
    running: Running,
}

/// A node running in this process until [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn spawn(node: Node) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(node.run_until(async {
            let _ = stopped.await;
        }));
        Running { stop, task }
    }

    /// A clean stop (the store closed), failing if the node stopped before.
    async fn stop(self) {
        assert!(!self.task.is_finished(), "a node stopped");
        let _ = self.stop.send(());
        self.task
            .await
            .expect("node task")
            .expect("the node ran until told to stop");
    }
}

async fn start_validator(
    home: &Home,
    chain_id: u64,
    config: &Config,
    extra_accounts: u64,
) -> InProcess {
    let (mut genesis, _) = homes::init(home, chain_id, None, false, config.clone()).expect("init");
    genesis.consensus.empty_block_interval_ms = 0;
    genesis
        .accounts
        .extend((0..extra_accounts).map(|i| GenesisAccount {
            address: extra(i),
            balance: 1_000 + u128::from(i),
        }));
    genesis.save(&home.genesis_file()).expect("save genesis");
    let node = Node::start(home, config).await.expect("validator starts");
    InProcess {
        genesis,
        rpc: client(&format!("http://{}", node.rpc_addr.expect("rpc"))),
        addr: format!("{}/p2p/{}", node.p2p_addrs[0], node.peer_id),
        running: Running::spawn(node),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_node_installs_a_snapshot_from_honest_peers_and_bans_the_liars() {
    let _heavy = crate::harness::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let validator = Home::new(dir.path().join("validator"));
    let mut config: Config = loopback_config();
    config.sync.interval_ms = 200;
    config.sync.snapshot_interval = 10;
    // A snapshot stays offered for 200 heights (20 s at this chain's pace).
    config.sync.snapshot_keep = 20;
    let InProcess {
        genesis,
        rpc,
        addr: validator_addr,
        running: validator_running,
    } = start_validator(&validator, 4245, &config, EXTRA_ACCOUNTS).await;

    // Some transfers, so that the state is not genesis.
    let payer = tally_genesis::dev_keys().remove(0);
    for nonce in 0..20u64 {
        let tx = transfer(
            &payer,
            genesis.chain_id,
            nonce,
            extra(nonce * 7),
            5 + u128::from(nonce),
        );
        TallyApiClient::send_raw_transaction(&rpc, raw(&tx))
            .await
            .expect("accepted");
    }
    wait_height(&rpc, 25, Duration::from_secs(60)).await;

    // A second honest peer: a full node that replayed the blocks.
    let full = Home::new(dir.path().join("full"));
    let mut full_config = config.clone();
    full_config.node.validator_key = String::new();
    full_config.p2p.bootstrap = vec![validator_addr.clone()];
    homes::init(
        &full,
        4245,
        Some(genesis.clone()),
        true,
        full_config.clone(),
    )
    .expect("init");
    let node = Node::start(&full, &full_config)
        .await
        .expect("full node starts");
    let full_rpc = client(&format!("http://{}", node.rpc_addr.expect("rpc")));
    let full_addr = format!("{}/p2p/{}", node.p2p_addrs[0], node.peer_id);
    let full_running = Running::spawn(node);
    let at = rpc.status().await.expect("status").latest_height;
    wait_height(&full_rpc, at, Duration::from_secs(60)).await;

    // One liar offers a snapshot far ahead whose certificate no validator
    // signed; the other offers the true snapshot and corrupts its chunks.
    let forger_dir = tempfile::tempdir().expect("tempdir");
    let forger = liar(
        forger_dir.path(),
        &genesis,
        validator_addr.clone(),
        |request, truth| {
            let (SyncRequest::Snapshots, Some(SyncResponse::Snapshots(offers))) = (request, truth)
            else {
                return None;
            };
            let mut offer = offers.first()?.clone();
            offer.info.height += 1_000;
            offer.header.height = offer.info.height;
            offer.commit.height = offer.info.height;
            offer.commit.block_hash = offer.header.hash();
            let outsider = SecretKey::from_seed("state-sync-outsider");
            offer.commit.signatures = vec![CommitSig {
                validator: outsider.address(),
                signature: outsider.sign_prehash(&offer.header.hash()),
            }];
            Some(SyncResponse::Snapshots(vec![offer]))
        },
    )
    .await;
    // A third passes the true offer first, then the same certified header
    // relabelled: a higher height, another state root, one chunk.
    let relabeller_dir = tempfile::tempdir().expect("tempdir");
    let relabeller = liar(
        relabeller_dir.path(),
        &genesis,
        validator_addr.clone(),
        |request, truth| {
            let (SyncRequest::Snapshots, Some(SyncResponse::Snapshots(offers))) = (request, truth)
            else {
                return None;
            };
            let honest = offers.first()?.clone();
            let mut relabelled = honest.clone();
            relabelled.info.height += 1;
            relabelled.info.state_root = tally_ledger::Hash([3; 32]);
            relabelled.info.accounts = 1;
            relabelled.info.chunks = 1;
            Some(SyncResponse::Snapshots(vec![honest, relabelled]))
        },
    )
    .await;
    // A fourth offers the true snapshot and never answers a chunk request.
    let mute_dir = tempfile::tempdir().expect("tempdir");
    let muted = Arc::new(AtomicUsize::new(0));
    let mute = {
        let muted = muted.clone();
        liar(
            mute_dir.path(),
            &genesis,
            validator_addr.clone(),
            move |request, _| {
                let chunk = matches!(request, SyncRequest::Chunk { .. });
                if chunk {
                    muted.fetch_add(1, Ordering::Relaxed);
                }
                chunk.then(|| SyncResponse::Error(MUTE.into()))
            },
        )
        .await
    };
    let corrupter_dir = tempfile::tempdir().expect("tempdir");
    let corrupter = liar(
        corrupter_dir.path(),
        &genesis,
        validator_addr.clone(),
        |_, truth| {
            let Some(SyncResponse::Chunk(chunk)) = truth else {
                return None;
            };
            let mut chunk = chunk.clone();
            if let Some((_, account)) = chunk.accounts.first_mut() {
                account.balance += 1_000_000;
            }
            Some(SyncResponse::Chunk(chunk))
        },
    )
    .await;

    let fresh = Home::new(dir.path().join("fresh"));
    let mut fresh_config = config.clone();
    fresh_config.node.validator_key = String::new();
    fresh_config.sync.state_sync = true;
    fresh_config.p2p.bootstrap = vec![
        validator_addr,
        full_addr,
        forger.addr.clone(),
        corrupter.addr.clone(),
        relabeller.addr.clone(),
        mute.addr.clone(),
    ];
    homes::init(
        &fresh,
        4245,
        Some(genesis.clone()),
        true,
        fresh_config.clone(),
    )
    .expect("init");
    let started = std::time::Instant::now();
    let node = Node::start(&fresh, &fresh_config)
        .await
        .expect("the fresh node state-syncs and starts");
    println!("state sync took {:?}", started.elapsed());
    let fresh_rpc = client(&format!("http://{}", node.rpc_addr.expect("rpc")));
    let fresh_id = node.peer_id;
    let fresh_running = Running::spawn(node);
    let target = rpc.status().await.expect("status").latest_height;
    wait_height(&fresh_rpc, target, Duration::from_secs(60)).await;

    // It installed a snapshot (it holds no early block) and follows the
    // same chain: the same block at the target, the same balances.
    let error = fresh_rpc
        .get_block_by_height(1)
        .await
        .expect_err("no early block is held");
    assert!(error.to_string().contains("1012"), "{error}");
    let ours = fresh_rpc.get_block_by_height(target).await.expect("read");
    let theirs = rpc.get_block_by_height(target).await.expect("read");
    assert_eq!(ours.map(|b| b.hash), theirs.map(|b| b.hash));
    let mut sampled = vec![payer.address()];
    sampled.extend((0..EXTRA_ACCOUNTS).step_by(997).map(extra));
    sampled.extend((0..20).map(|n| extra(n * 7)));
    for address in sampled {
        let ours = fresh_rpc
            .get_account(address.to_string())
            .await
            .expect("read");
        let theirs = rpc.get_account(address.to_string()).await.expect("read");
        assert_eq!(ours.balance, theirs.balance, "{address}");
        assert_eq!(ours.nonce, theirs.nonce, "{address}");
    }
    // Accounts proven against certified headers, by the node that joined
    // from a snapshot: the latest height, and the snapshot's own.
    let snapshot_height = fresh_rpc
        .get_account_proof(payer.address().to_string(), None)
        .await
        .expect("proof")
        .height;
    for height in [None, Some(snapshot_height)] {
        let info = fresh_rpc
            .get_account_proof(payer.address().to_string(), height)
            .await
            .expect("proof");
        let proven =
            prove::check(&genesis, &payer.address(), height, &info).expect("the proof checks");
        let truth = rpc
            .get_account(payer.address().to_string())
            .await
            .expect("read");
        assert!(proven.exists);
        assert_eq!(proven.nonce, truth.nonce);
        assert_eq!(proven.height, info.height);
        // Any change to what the node said is caught.
        let mut bad = info.clone();
        bad.account.as_mut().expect("exists").balance += 1;
        assert!(prove::check(&genesis, &payer.address(), height, &bad).is_err());
        let mut bad = info.clone();
        bad.account.as_mut().expect("exists").nonce += 1;
        assert!(prove::check(&genesis, &payer.address(), height, &bad).is_err());
        assert!(prove::check(&genesis, &extra(1), height, &info).is_err());
        let mut bad = info.clone();
        bad.header.state_root = tally_ledger::Hash([7; 32]);
        assert!(prove::check(&genesis, &payer.address(), height, &bad).is_err());
        let mut bad = info.clone();
        bad.commit.signatures.clear();
        assert!(prove::check(&genesis, &payer.address(), height, &bad).is_err());
        // An answer for another height than the one asked for.
        assert!(prove::check(&genesis, &payer.address(), Some(info.height + 1), &info).is_err());
        let mut bad = info;
        bad.account = None;
        assert!(prove::check(&genesis, &payer.address(), height, &bad).is_err());
    }
    // An account that does not exist is proven absent.
    let stranger = SecretKey::from_seed("state-sync-stranger").address();
    let info = fresh_rpc
        .get_account_proof(stranger.to_string(), None)
        .await
        .expect("proof");
    let proven = prove::check(&genesis, &stranger, None, &info).expect("absence checks");
    assert!(!proven.exists && proven.balance == 0);
    // Heights below the snapshot are not held there.
    let error = fresh_rpc
        .get_account_proof(payer.address().to_string(), Some(1))
        .await
        .expect_err("not held");
    assert!(error.to_string().contains("1012"), "{error}");

    // Every liar that was heard (one that connects after discovery, or
    // after the last chunk, is not asked) was dropped.
    let peers = fresh_rpc.peers().await.expect("peers");
    let mut caught = 0;
    for (name, liar) in [
        ("forger", &forger),
        ("corrupter", &corrupter),
        ("relabeller", &relabeller),
    ] {
        let lies = liar.lied.load(Ordering::Relaxed);
        if lies == 0 {
            println!("the {name} was not asked");
            continue;
        }
        assert!(
            liar.dropped_by.lock().expect("lock").contains(&fresh_id),
            "the {name} told {lies} lies and was not banned"
        );
        let id = liar.handle.local_peer_id().to_string();
        assert!(
            peers.iter().all(|p| p.peer_id != id),
            "the {name} is still connected"
        );
        caught += 1;
    }
    assert!(caught > 0, "no liar was heard");
    // The mute one was asked and left to time out: silence is no proof of
    // malice (an overloaded honest peer looks the same), so it is rested,
    // not banned, and its chunks went to the others.
    println!(
        "the mute peer let {} chunk requests time out",
        muted.load(Ordering::Relaxed)
    );
    for liar in [forger, corrupter, relabeller, mute] {
        let _ = liar.handle.shutdown().await;
    }
    for running in [fresh_running, full_running, validator_running] {
        running.stop().await;
    }
}

/// `kill -9` of a node in the middle of its state sync: at restart it
/// resumes the same snapshot with the chunks it had and ends in the
/// validator's state.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_during_state_sync_resumes_and_ends_in_the_same_state() {
    let _heavy = crate::harness::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = homes::free_ports("127.0.0.1", 4).expect("ports");
    let validator = Home::new(dir.path().join("validator"));
    let mut config: Config = loopback_config();
    config.p2p.listen = vec![format!("/ip4/127.0.0.1/tcp/{}", ports[0])];
    config.rpc.listen = format!("127.0.0.1:{}", ports[1]).parse().expect("addr");
    config.sync.interval_ms = 200;
    config.sync.snapshot_interval = 10;
    // A snapshot stays offered for 200 heights (20 s at this chain's pace).
    config.sync.snapshot_keep = 20;
    let (mut genesis, _) =
        homes::init(&validator, 4246, None, false, config.clone()).expect("init");
    genesis.consensus.empty_block_interval_ms = 0;
    // Enough state that installing it takes a while: 16 chunks.
    genesis.accounts.extend((0..50_000).map(|i| GenesisAccount {
        address: extra(i),
        balance: 7 + u128::from(i),
    }));
    genesis
        .save(&validator.genesis_file())
        .expect("save genesis");
    let mut validator_proc = NodeProc::start("validator", &validator.root, &[]);
    let rpc = client(&format!("http://127.0.0.1:{}", ports[1]));
    wait_height(&rpc, 12, Duration::from_secs(120)).await;
    let peer = homes::node_peer_id(&validator).expect("peer id");

    let fresh = Home::new(dir.path().join("fresh"));
    let mut fresh_config = config.clone();
    fresh_config.node.validator_key = String::new();
    fresh_config.sync.state_sync = true;
    fresh_config.p2p.listen = vec![format!("/ip4/127.0.0.1/tcp/{}", ports[2])];
    fresh_config.rpc.listen = format!("127.0.0.1:{}", ports[3]).parse().expect("addr");
    fresh_config.p2p.bootstrap = vec![format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", ports[0])];
    homes::init(&fresh, 4246, Some(genesis), true, fresh_config).expect("init");
    let mut fresh_proc = NodeProc::start("fresh", &fresh.root, &[]);
    // Killed as soon as it has chosen the snapshot and begun fetching.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !fresh_proc
        .log_text()
        .contains("state sync: fetching the snapshot")
    {
        assert!(std::time::Instant::now() < deadline, "no state sync began");
        std::thread::sleep(Duration::from_millis(2));
    }
    fresh_proc.kill9();
    let first = fresh_proc.log_text();
    assert!(
        !first.contains("state sync done"),
        "the kill came after the install: {first}"
    );
    fresh_proc.restart();
    let fresh_rpc = client(&format!("http://127.0.0.1:{}", ports[3]));
    let target = rpc.status().await.expect("status").latest_height;
    wait_height(&fresh_rpc, target, Duration::from_secs(120)).await;
    let log = fresh_proc.log_text();
    assert!(
        log.contains("resuming the state sync an earlier run began"),
        "{log}"
    );
    assert!(log.contains("state sync done"), "{log}");
    let ours = fresh_rpc.get_block_by_height(target).await.expect("read");
    let theirs = rpc.get_block_by_height(target).await.expect("read");
    assert_eq!(ours.map(|b| b.hash), theirs.map(|b| b.hash));
    for i in (0..50_000).step_by(4999) {
        let address = extra(i).to_string();
        let ours = fresh_rpc.get_account(address.clone()).await.expect("read");
        let theirs = rpc.get_account(address).await.expect("read");
        assert_eq!(ours.balance, theirs.balance);
    }
    fresh_proc.kill9();
    validator_proc.kill9();
}

/// A full node that keeps only its latest heights: killed again and again
/// while it prunes under load, it ends in the validator's state, and asked
/// for a pruned block (over RPC, over sync) it says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_pruned_node_survives_kills_and_says_what_it_no_longer_holds() {
    let _heavy = crate::harness::heavy().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let validator = Home::new(dir.path().join("validator"));
    let mut config: Config = loopback_config();
    config.sync.interval_ms = 200;
    let InProcess {
        genesis,
        rpc,
        addr: validator_addr,
        running: validator_running,
    } = start_validator(&validator, 4247, &config, 0).await;

    let ports = homes::free_ports("127.0.0.1", 2).expect("ports");
    let pruned = Home::new(dir.path().join("pruned"));
    let mut pruned_config = config.clone();
    pruned_config.node.validator_key = String::new();
    pruned_config.storage.retain_blocks = 5;
    pruned_config.sync.snapshot_keep = 0;
    pruned_config.p2p.listen = vec![format!("/ip4/127.0.0.1/tcp/{}", ports[0])];
    pruned_config.rpc.listen = format!("127.0.0.1:{}", ports[1]).parse().expect("addr");
    pruned_config.p2p.bootstrap = vec![validator_addr];
    homes::init(&pruned, 4247, Some(genesis.clone()), true, pruned_config).expect("init");
    let mut proc = NodeProc::start("pruned", &pruned.root, &[]);
    let pruned_rpc = client(&format!("http://127.0.0.1:{}", ports[1]));

    // Transfers all along, and three kills while it prunes.
    let payer = tally_genesis::dev_keys().remove(2);
    let mut nonce = 0u64;
    for round in 0..3 {
        for _ in 0..20 {
            let tx = transfer(&payer, genesis.chain_id, nonce, extra(nonce % 50), 1);
            TallyApiClient::send_raw_transaction(&rpc, raw(&tx))
                .await
                .expect("accepted");
            nonce += 1;
        }
        let at = rpc.status().await.expect("status").latest_height;
        wait_height(&pruned_rpc, at, Duration::from_secs(60)).await;
        // The pruner looks every 2 s.
        tokio::time::sleep(Duration::from_millis(2_000 + 700 * round)).await;
        proc.kill9();
        proc.restart();
    }
    let target = rpc.status().await.expect("status").latest_height + 5;
    wait_height(&rpc, target, Duration::from_secs(60)).await;
    wait_height(&pruned_rpc, target, Duration::from_secs(60)).await;
    let ours = pruned_rpc.get_block_by_height(target).await.expect("read");
    let theirs = rpc.get_block_by_height(target).await.expect("read");
    assert_eq!(ours.map(|b| b.hash), theirs.map(|b| b.hash));
    for n in 0..50 {
        let address = extra(n).to_string();
        let ours = pruned_rpc.get_account(address.clone()).await.expect("read");
        let theirs = rpc.get_account(address).await.expect("read");
        assert_eq!(ours.balance, theirs.balance);
    }
    // Old heights are gone, with a clear answer; recent ones are proven.
    let error = pruned_rpc.get_block_by_height(1).await.expect_err("pruned");
    assert!(error.to_string().contains("1012"), "{error}");
    let proof = pruned_rpc
        .get_account_proof(payer.address().to_string(), None)
        .await
        .expect("a recent state is proven");
    prove::check(&genesis, &payer.address(), None, &proof).expect("the proof checks");
    let error = pruned_rpc
        .get_account_proof(payer.address().to_string(), Some(1))
        .await
        .expect_err("pruned");
    assert!(error.to_string().contains("1012"), "{error}");

    // Over sync: a peer asking for block 1 is told it is not held.
    let peer_dir = tempfile::tempdir().expect("tempdir");
    let pruned_peer = homes::node_peer_id(&pruned).expect("peer id");
    let (asker, _events) = tally_p2p::spawn(tally_p2p::Config {
        key_file: peer_dir.path().join("node_key"),
        bootstrap: vec![
            format!("/ip4/127.0.0.1/tcp/{}/p2p/{pruned_peer}", ports[0])
                .parse()
                .expect("addr"),
        ],
        chain_id: genesis.chain_id,
        genesis_hash: genesis.hash().0,
        ..tally_p2p::Config::default()
    })
    .await
    .expect("asker starts");
    let answer = loop {
        let request = encode(&SyncRequest::Blocks { from: 1, count: 4 });
        if let Ok(bytes) = asker.request(pruned_peer, request).await {
            break decode::<SyncResponse>(&bytes).expect("decodes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    match answer {
        SyncResponse::Error(why) => assert!(why.contains("not held"), "{why}"),
        other => panic!("{other:?}"),
    }
    let _ = asker.shutdown().await;
    proc.kill9();
    validator_running.stop().await;
}
