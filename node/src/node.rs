//! Starting a node: open the store, start the network, spawn the actors and
//! the JSON-RPC server, and watch them. If any actor stops, the node stops
//! with its reason rather than limp on without it.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use tally_genesis::Genesis;
use tally_ledger::{Address, SecretKey, Store};
use tally_p2p::Multiaddr;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::actors::ledger::ChainParams;
use crate::actors::priority::Priority;
use crate::actors::{consensus, ledger, mempool, network, sync};
use crate::chain::{Consensus, Secp256k1, ValidatorSigner, consensus_config, validator_set};
use crate::config::{Config, Home};
use crate::metrics::Metrics;
use crate::trace::TxTraces;
use crate::{rpc, signing};

/// How long shutdown waits for the ledger thread to finish its work.
const LEDGER_STOP: Duration = Duration::from_secs(5);

/// A running node.
#[derive(Debug)]
pub struct Node {
    pub rpc_addr: Option<SocketAddr>,
    /// Where `GET /metrics` is served, when `[metrics] enabled`.
    pub metrics_addr: Option<SocketAddr>,
    pub p2p_addrs: Vec<Multiaddr>,
    pub peer_id: tally_p2p::PeerId,
    pub validator: Option<Address>,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    rpc: Option<jsonrpsee::server::ServerHandle>,
    /// The metrics server and the store-size watch.
    metrics_tasks: Vec<JoinHandle<()>>,
    network: tally_p2p::Handle,
    /// Joined at shutdown, so that the store is closed before the process
    /// exits (RocksDB in use by a thread while the process tears down its
    /// statics aborts it).
    ledger_thread: Option<std::thread::JoinHandle<()>>,
}

fn parse_addrs(what: &str, addrs: &[String]) -> anyhow::Result<Vec<Multiaddr>> {
    addrs
        .iter()
        .map(|a| Multiaddr::from_str(a).with_context(|| format!("bad multiaddr {a:?} in {what}")))
        .collect()
}

/// A validator whose signing state is lost signs nothing below its store's
/// tip plus this many heights (with [`StartOptions::signing_state_lost`]).
pub const SIGNING_MARGIN: u64 = 100;

/// Fault injection for tests: with this environment variable set, a
/// validator signs and records its precommits for a value but never sends
/// them (nil ones it sends, so rounds move on), so its locks stay without a
/// decision (how the tests put a whole cluster in that state before
/// restarting it).
pub const WITHHOLD_PRECOMMITS_VAR: &str = "TALLY_FAULT_WITHHOLD_PRECOMMITS";

/// What `tally start` can change for one run only.
#[derive(Clone, Copy, Debug, Default)]
pub struct StartOptions {
    /// The operator says the signing state is lost (`--signing-state-lost`):
    /// start a validator whose store holds blocks but which has no signing
    /// state, signing nothing below the tip plus [`SIGNING_MARGIN`].
    pub signing_state_lost: bool,
}

impl Node {
    /// Starts every part of the node in `home` with `config`.
    pub async fn start(home: &Home, config: &Config) -> anyhow::Result<Node> {
        Self::start_with(home, config, StartOptions::default()).await
    }

    /// [`Node::start`] with one-run options.
    pub async fn start_with(
        home: &Home,
        config: &Config,
        options: StartOptions,
    ) -> anyhow::Result<Node> {
        let genesis = Genesis::load(&home.genesis_file())
            .with_context(|| format!("loading the genesis of {}", home.root.display()))?;
        let genesis_hash = genesis.hash();
        validator_set(&genesis).context("genesis validator set")?;
        if let Some(admin) = genesis.governance_admin {
            warn!(%admin, "genesis names a governance admin: that key alone can change the validator set (dev chains only, never in production)");
        }

        let key = match config.node.validator_key.as_str() {
            "" => None,
            path => {
                let path = home.resolve(path.as_ref());
                Some(SecretKey::load(&path).with_context(|| {
                    format!(
                        "loading the validator key {} (set node.validator_key = \"\" to run a full node)",
                        path.display()
                    )
                })?)
            }
        };
        let validator = key.as_ref().map(SecretKey::address);

        std::fs::create_dir_all(home.data_dir())
            .with_context(|| format!("creating {}", home.data_dir().display()))?;
        let store = Arc::new(
            Store::open(&home.store_dir(), &genesis.state())
                .with_context(|| format!("opening the store in {}", home.store_dir().display()))?,
        );
        let tip = store.tip()?;
        info!(height = tip.height, hash = %tip.hash, chain = genesis.chain_name, "store open");
        if let Some(address) = validator {
            let in_set = store
                .validator_set_at(tip.height + 1)?
                .is_some_and(|set| set.members.iter().any(|m| m.address == address));
            if !in_set {
                warn!(%address, next_height = tip.height + 1, "this key is not in the validator set: following the chain as a full node, and signing from the height a change adds it");
            }
        }
        if config.storage.retain_blocks > 0 {
            store.enable_pruning();
        }
        let store_for_pruning = store.clone();

        let params = &genesis.consensus;
        let p2p_config = tally_p2p::Config {
            key_file: home.node_key_file(),
            listen: parse_addrs("p2p.listen", &config.p2p.listen)?,
            external: parse_addrs("p2p.external", &config.p2p.external)?,
            bootstrap: parse_addrs("p2p.bootstrap", &config.p2p.bootstrap)?,
            chain_id: genesis.chain_id,
            genesis_hash: genesis_hash.0,
            // A proposal carries its whole block.
            max_message_bytes: params.max_block_bytes as usize + 256 * 1024,
            max_response_bytes: 16 * 1024 * 1024,
            max_inbound: config.p2p.max_inbound,
            max_outbound: config.p2p.max_outbound,
            max_inbound_per_ip: config.p2p.max_inbound_per_ip,
            banned_identities_per_host: config.p2p.banned_identities_per_host,
            trusted_peers: config
                .p2p
                .trusted_peers
                .iter()
                .map(|p| {
                    tally_p2p::PeerId::from_str(p)
                        .with_context(|| format!("bad peer id {p:?} in p2p.trusted_peers"))
                })
                .collect::<anyhow::Result<_>>()?,
            relay_server: config.p2p.relay_server,
            use_relays: config.p2p.use_relays,
            ..tally_p2p::Config::default()
        };
        // Every family is registered before the registry is shared; the
        // handles work (unread) when the endpoint is off.
        let mut registry = tally_p2p::Registry::default();
        let metrics = Metrics::register(&mut registry);
        let (network, net_events) = if config.metrics.enabled {
            tally_p2p::spawn_with_metrics(p2p_config, &mut registry).await
        } else {
            tally_p2p::spawn(p2p_config).await
        }
        .context("starting the p2p network")?;
        let p2p_addrs = network.listen_addrs().await?;
        let peer_id = network.local_peer_id();
        info!(%peer_id, addrs = ?p2p_addrs, "p2p listening");

        let chain = ChainParams {
            exec: genesis.exec_params(),
            genesis_time_ms: genesis.genesis_time_ms(),
        };
        let sync_chain = Arc::new(chain.clone());
        let net_events = if config.sync.state_sync || store.state_sync_target()?.is_some() {
            if !config.sync.state_sync {
                bail!(
                    "the store in {} holds an unfinished state sync: set [sync] state_sync = true \
                     to finish it, or empty the store with `tally reset`",
                    home.store_dir().display()
                );
            }
            // A validator installing a snapshot has signed nothing on this
            // chain: its empty signing state is written before the store
            // holds a height, as for one that replays from genesis.
            if key.is_some() && tip.height == 0 {
                let path = home.signing_state_file();
                if signing::load(&path)?.is_none() {
                    signing::save(&path, &signing::SigningState::empty())?;
                }
            }
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let refusing = tokio::spawn(sync::state::refuse_while_syncing(
                net_events,
                network.clone(),
                stopped,
            ));
            let links = sync::state::Links {
                store: store.clone(),
                network: network.clone(),
                params: sync_chain.clone(),
                metrics: metrics.network.clone(),
            };
            let synced = sync::state::run(
                &links,
                Duration::from_millis(config.sync.state_sync_discovery_ms),
            )
            .await;
            let _ = stop.send(());
            let events = refusing.await?;
            synced.context("state sync")?;
            events
        } else {
            net_events
        };
        let tip = store.tip()?;

        let (blocks_tx, _) = broadcast::channel(1024);
        let (committed_tx, committed_rx) = mpsc::unbounded_channel();
        let tx_arrived = Arc::new(tokio::sync::Notify::new());
        let seen_txs = Arc::new(network::SeenTxs::default());
        let priority = Arc::new(Priority::default());
        let traces = Arc::new(TxTraces::default());
        let (mempool, mempool_task) = mempool::spawn(
            &config.mempool,
            config.mempool.journal.then(|| home.mempool_journal_file()),
            genesis.chain_id,
            params.min_fee,
            genesis.exec_params().governance,
            store.clone(),
            network.clone(),
            committed_rx,
            tx_arrived.clone(),
            seen_txs.clone(),
            metrics.mempool.clone(),
            traces.clone(),
        );
        let (ledger, ledger_task, ledger_thread) = ledger::spawn(
            store.clone(),
            chain,
            blocks_tx.clone(),
            committed_tx,
            priority.clone(),
            metrics.ledger.clone(),
            traces.clone(),
        )?;

        let signing_path = key.as_ref().map(|_| home.signing_state_file());
        let signer = key.map(|k| {
            Box::new(ValidatorSigner::new(k)) as Box<dyn tally_consensus::Signer<Secp256k1> + Send>
        });
        let restored = match &signing_path {
            Some(path) => match signing::load(path)? {
                Some(state) => Some(state),
                None if tip.height > 0
                    && validator.is_some_and(|v| ever_a_validator(&store, &v)) =>
                {
                    Some(lost_signing_state(path, tip.height, options)?)
                }
                None if tip.height == 0 => {
                    // Written before the first block can arrive: from now
                    // on a store with blocks and no signing state always
                    // means a lost file. (A validator that synced blocks
                    // but had not signed yet was refused at restart.)
                    signing::save(path, &signing::SigningState::empty())?;
                    None
                }
                None => None,
            },
            None => None,
        };
        let machine = match restored {
            Some(state) => {
                info!(
                    height = state.height,
                    round = state.round,
                    "restored the signing state"
                );
                Consensus::restore(consensus_config(&genesis), Secp256k1, signer, state)?
            }
            None => Consensus::new(consensus_config(&genesis), Secp256k1, signer),
        };
        let (consensus_tx, consensus_rx) = mpsc::channel(4096);
        let (queries_tx, queries_rx) = mpsc::channel(16);
        let peer_view = Arc::new(network::PeerView::default());
        let consensus_queue = network::ConsensusQueue {
            sender: consensus_tx,
            queued: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        };
        let stall_after = Duration::from_millis(
            params
                .timeout_propose_ms
                .saturating_add(params.timeout_prevote_ms)
                .saturating_add(params.timeout_precommit_ms),
        )
        .max(Duration::from_millis(500));
        let withhold_precommits = std::env::var_os(WITHHOLD_PRECOMMITS_VAR).is_some();
        if withhold_precommits {
            warn!(
                "{WITHHOLD_PRECOMMITS_VAR} is set: this validator sends none of its precommits for a block \
                 (fault injection for tests; the chain cannot decide while enough validators do this)"
            );
        }
        let consensus_task = consensus::spawn(
            consensus::Settings {
                withhold_precommits,
                chain_id: genesis.chain_id,
                block_interval: Duration::from_millis(params.block_interval_ms),
                max_block_txs: params.max_block_txs as usize,
                max_block_bytes: params.max_block_bytes as usize,
                signed_blocks: signing_path.as_ref().map(|_| home.signed_blocks_file()),
                signing_state: signing_path,
                stall_after,
                empty_block_interval: Duration::from_millis(params.empty_block_interval_ms),
            },
            consensus::Parts {
                machine,
                me: validator,
                store: store.clone(),
                network: network.clone(),
                ledger: ledger.clone(),
                mempool: mempool.clone(),
                inbox: consensus_rx,
                inbox_bytes: consensus_queue.queued.clone(),
                new_blocks: blocks_tx.subscribe(),
                tx_arrived,
                tip,
                priority: priority.clone(),
                metrics: metrics.clone(),
                peers: peer_view.clone(),
                queries: queries_rx,
            },
        )?;

        let (requests_tx, requests_rx) = mpsc::channel(256);
        let server_task = sync::spawn_server(
            store.clone(),
            network.clone(),
            requests_rx,
            sync::Serving {
                max_blocks: config.sync.batch_blocks,
                snapshot_interval: config.sync.snapshot_interval,
                snapshot_keep: config.sync.snapshot_keep,
            },
            metrics.network.clone(),
        );
        let syncing = Arc::new(AtomicBool::new(false));
        let client_task = sync::spawn_client(
            store.clone(),
            network.clone(),
            ledger,
            syncing.clone(),
            Duration::from_millis(config.sync.interval_ms.max(50)),
            config.sync.batch_blocks.max(1),
            metrics.network.clone(),
            metrics.ledger.recovery.clone(),
            peer_view.clone(),
            sync_chain,
        );
        let router_task = network::spawn(
            net_events,
            network.clone(),
            consensus_queue,
            mempool.clone(),
            requests_tx,
            network::TxRules {
                chain_id: genesis.chain_id,
                min_fee: params.min_fee,
                seen: seen_txs,
                priority: priority.clone(),
            },
            metrics.network.clone(),
        );

        // The RPC's view of the node serves the dashboard too, with or
        // without the JSON-RPC server.
        let context = {
            rpc::RpcContext {
                store,
                mempool,
                network: network.clone(),
                blocks: blocks_tx,
                syncing,
                chain_id: genesis.chain_id,
                exec: genesis.exec_params(),
                chain_name: genesis.chain_name.clone(),
                genesis_hash,
                genesis_time_ms: genesis.genesis_time_ms(),
                validator,
                p2p_addrs: p2p_addrs.iter().map(ToString::to_string).collect(),
                recovery: rpc::Recovery::new(metrics.mempool.recovery_queue.clone()),
                subscriptions: Arc::new(tokio::sync::Semaphore::new(
                    config.rpc.max_subscriptions as usize,
                )),
                priority,
                metrics: metrics.rpc.clone(),
                consensus: queries_tx,
                peer_view,
                traces,
            }
        };
        let (rpc_addr, rpc) = if config.rpc.enabled {
            let (addr, handle) = rpc::start(&config.rpc, context.clone()).await?;
            info!("JSON-RPC listening on http://{addr} (WebSocket: ws://{addr})");
            (Some(addr), Some(handle))
        } else {
            (None, None)
        };

        let (metrics_addr, metrics_tasks) = if config.metrics.enabled {
            let dashboard = Arc::new(crate::metrics::dashboard::Dashboard {
                context,
                moniker: config.node.moniker.clone(),
                txs_committed: metrics.ledger.txs_committed.clone(),
            });
            let (addr, server) = crate::metrics::server::start(
                config.metrics.listen,
                Arc::new(registry),
                Some(dashboard),
            )
            .await?;
            info!("metrics at http://{addr}/metrics (dashboard: http://{addr}/dashboard)");
            let watch = crate::metrics::watch_store_size(
                home.store_dir(),
                metrics.ledger.store_bytes.clone(),
            );
            (Some(addr), vec![server, watch])
        } else {
            (None, Vec::new())
        };

        let mut tasks = vec![
            ("mempool", mempool_task),
            ("ledger", ledger_task),
            ("consensus", consensus_task),
            ("sync server", server_task),
            ("sync client", client_task),
            ("network router", router_task),
        ];
        metrics
            .ledger
            .history_start
            .set(i64::try_from(store_for_pruning.history_start()?).unwrap_or(i64::MAX));
        if config.storage.retain_blocks > 0 {
            tasks.push((
                "pruner",
                crate::actors::prune::spawn(
                    store_for_pruning,
                    crate::actors::prune::Retention {
                        retain_blocks: config.storage.retain_blocks,
                        snapshot_interval: config.sync.snapshot_interval,
                        snapshot_keep: config.sync.snapshot_keep,
                    },
                    metrics.ledger.history_start.clone(),
                ),
            ));
        }
        Ok(Node {
            rpc_addr,
            metrics_addr,
            metrics_tasks,
            p2p_addrs,
            peer_id,
            validator,
            tasks,
            rpc,
            network,
            ledger_thread: Some(ledger_thread),
        })
    }

    /// Runs until `shutdown` completes (a clean stop) or an actor stops
    /// (an error naming it).
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let tasks = std::mem::take(&mut self.tasks);
        let aborts: Vec<tokio::task::AbortHandle> =
            tasks.iter().map(|(_, task)| task.abort_handle()).collect();
        let watch = futures::future::select_all(
            tasks
                .into_iter()
                .map(|(name, task)| Box::pin(async move { (name, task.await) })),
        );
        let result = tokio::select! {
            () = shutdown => {
                info!("shutting down");
                Ok(())
            }
            ((name, outcome), _, _) = watch => match outcome {
                Ok(Ok(())) => Err(anyhow::anyhow!("the {name} actor stopped")),
                Ok(Err(e)) => Err(e.context(format!("the {name} actor failed"))),
                Err(e) => Err(anyhow::anyhow!("the {name} actor panicked: {e}")),
            },
        };
        // The actors go first: with them go the last handles to the
        // ledger, whose thread then ends.
        for task in aborts {
            task.abort();
        }
        self.stop().await;
        result
    }

    async fn stop(&mut self) {
        if let Some(rpc) = self.rpc.take() {
            let _ = rpc.stop();
        }
        for task in self.metrics_tasks.drain(..) {
            task.abort();
        }
        let _ = self.network.shutdown().await;
        if let Some(thread) = self.ledger_thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            if tokio::time::timeout(LEDGER_STOP, joined).await.is_err() {
                warn!("the ledger thread did not stop within {LEDGER_STOP:?}");
            }
        }
    }
}

/// Whether `address` was in any validator set this store knows: then a
/// missing signing state means a lost file, not a node that never signed.
fn ever_a_validator(store: &Store, address: &Address) -> bool {
    store
        .validator_sets()
        .iter()
        .any(|set| set.members.iter().any(|m| m.address == *address))
}

/// A validator with blocks in its store but no signing state may have signed
/// at heights it no longer knows of (a lost file, a home copied without it,
/// a store restored from a backup): starting as if it never signed could
/// double-sign. Refuse, unless the operator says the state is lost; then
/// write a state that signs nothing below `tip + SIGNING_MARGIN`, so a
/// restart keeps the guard.
fn lost_signing_state(
    path: &std::path::Path,
    tip: u64,
    options: StartOptions,
) -> anyhow::Result<signing::SigningState> {
    if !options.signing_state_lost {
        bail!(
            "the store holds blocks up to height {tip} but there is no signing state at {}: \
             this validator may have signed at heights it no longer knows of, and starting \
             would risk signing twice. Restore the file, or start once with \
             --signing-state-lost to sign nothing below height {}",
            path.display(),
            tip + SIGNING_MARGIN
        );
    }
    let mut state = signing::SigningState::empty();
    state.height = tip + SIGNING_MARGIN;
    signing::save(path, &state)?;
    warn!(
        tip,
        resume = state.height,
        "signing state lost: this validator signs nothing below the resume height"
    );
    Ok(state)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            warn!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// Checks that `home` was initialised, so `start` fails with advice.
pub fn check_home(home: &Home) -> anyhow::Result<()> {
    if !home.genesis_file().exists() {
        bail!(
            "{} has no genesis; run `tally init --home {}` first",
            home.root.display(),
            home.root.display()
        );
    }
    Ok(())
}
