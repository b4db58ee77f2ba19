//! The JSON-RPC transport: our own accept loop around jsonrpsee's service,
//! because jsonrpsee's `Server` reads headers and bodies without a deadline
//! and bounds requests in flight, not sockets. Here every TCP connection
//! takes a slot (`max_connections`; beyond, it is closed at once), must send
//! its request headers within `header_read_timeout_ms` (also between
//! requests), and each part of a body within `body_read_timeout_ms`.
//! HTTP/1.1 only (HTTP/2's connection preface would be read with no
//! deadline); WebSocket upgrades on the same port, pinged every
//! `ws_ping_interval_ms`. A client that stops reading what it is sent for
//! `header_read_timeout_ms` is closed too, so a finished response cannot sit
//! in memory for a client that never takes it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::collections::HashSet;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use jsonrpsee::core::middleware::RpcServiceBuilder;
use jsonrpsee::server::middleware::http::HostFilterLayer;
use jsonrpsee::server::{Methods, Server, ServerHandle, stop_channel};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tracing::debug;

use super::metered::Metered;
use crate::config::RpcConfig;
use crate::metrics::RpcMetrics;

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Starts serving `methods` on `config.listen`; it runs until the handle is
/// stopped.
pub async fn start(
    config: &RpcConfig,
    methods: impl Into<Methods>,
    metrics: RpcMetrics,
) -> anyhow::Result<(SocketAddr, ServerHandle)> {
    let methods: Methods = methods.into();
    let known: Arc<HashSet<&'static str>> = Arc::new(methods.method_names().collect());
    let metered = metrics.clone();
    let rpc = RpcServiceBuilder::new().layer_fn(move |service| Metered {
        service,
        metrics: metered.clone(),
        known: known.clone(),
    });
    let http = tower::ServiceBuilder::new()
        .option_layer(host_filter(&config.allowed_hosts)?)
        .option_layer(cors_layer(&config.cors_allowed_origins)?)
        .layer(RequestBodyTimeoutLayer::new(ms(config
            .body_read_timeout_ms
            .max(1))));
    let service = Server::builder()
        .set_config(tally_rpc::server_config(config))
        .set_http_middleware(http)
        .set_rpc_middleware(rpc)
        .to_service_builder();
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for JSON-RPC on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let (stop, handle) = stop_channel();
    let slots = Arc::new(Semaphore::new(config.max_connections as usize));
    let header_timeout = ms(config.header_read_timeout_ms.max(1));
    tokio::spawn(async move {
        loop {
            let (socket, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: back off a little.
                        debug!(error = %e, "JSON-RPC: accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                () = stop.clone().shutdown() => return,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                debug!(%peer, "JSON-RPC: every connection slot is taken; closing");
                continue;
            };
            let _ = socket.set_nodelay(true);
            // The slot lives with the socket, also after a WebSocket upgrade
            // (hyper's connection future ends at the upgrade).
            let socket = Slotted::new(socket, slot, header_timeout, metrics.connections.clone());
            let service =
                TowerToHyperService::new(service.clone().build(methods.clone(), stop.clone()));
            let stop = stop.clone();
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(socket), service)
                    .with_upgrades();
                tokio::pin!(connection);
                let result = tokio::select! {
                    result = connection.as_mut() => result,
                    () = stop.shutdown() => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(e) = result {
                    debug!(%peer, error = %e, "JSON-RPC connection ended");
                }
            });
        }
    });
    Ok((addr, handle))
}

impl Drop for Slotted {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A connection's socket with its slot, failing writes that make no
/// progress for `write_timeout` (a client that does not read).
struct Slotted {
    socket: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Open connections (this one counted until it is dropped).
    open: Gauge,
    write_timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Slotted {
    fn new(
        socket: TcpStream,
        slot: OwnedSemaphorePermit,
        write_timeout: Duration,
        open: Gauge,
    ) -> Slotted {
        open.inc();
        Slotted {
            socket,
            _slot: slot,
            open,
            write_timeout,
            stalled: None,
        }
    }

    /// A pending write: starts the stall clock, or fails once it ran out.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let timeout = self.write_timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Slotted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.socket).poll_write(cx, buf) {
            Poll::Pending => self.stalled(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.socket).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.stalled(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

/// `None` serves any Host.
fn host_filter(hosts: &[String]) -> anyhow::Result<Option<HostFilterLayer>> {
    if hosts.is_empty() {
        return Ok(None);
    }
    HostFilterLayer::new(hosts.iter().map(String::as_str))
        .map(Some)
        .map_err(|e| anyhow::anyhow!("bad host in rpc.allowed_hosts: {e}"))
}

fn cors_layer(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        let parsed = origins
            .iter()
            .map(|o| http::HeaderValue::from_str(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("bad CORS origin in rpc.cors_allowed_origins: {e}"))?;
        AllowOrigin::list(parsed)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([http::Method::POST, http::Method::GET, http::Method::OPTIONS])
            .allow_headers([http::header::CONTENT_TYPE]),
    ))
}
