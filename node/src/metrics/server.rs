//! `GET /metrics` in the OpenMetrics text format, on its own listener
//! (`[metrics] listen`). Small on purpose: a few scrapers read it, so it
//! holds few connections, gives each a deadline for its request head, and
//! answers nothing but the one path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// What Prometheus asks for and this encoder writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Scrapers served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 16;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

type Body = http_body_util::Full<Bytes>;

/// Binds `listen` and serves `registry` until the task is dropped. Returns
/// the bound address (the port may have been 0).
pub async fn start(
    listen: SocketAddr,
    registry: Arc<Registry>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics listener on {listen}"))?;
    let addr = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let registry = registry.clone();
                    async move { Ok::<_, Infallible>(answer(&request, &registry)) }
                });
                let served = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    debug!(%peer, error = %e, "metrics connection ended");
                }
                drop(slot);
            });
        }
    });
    Ok((addr, task))
}

fn answer(request: &Request<Incoming>, registry: &Registry) -> Response<Body> {
    let reply = |status: StatusCode, kind: &str, body: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, kind)
            .body(Body::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "Tally metrics are at /metrics\n".into(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", String::new());
    }
    let mut text = String::new();
    match encode(&mut text, registry) {
        Ok(()) => reply(StatusCode::OK, OPENMETRICS, text),
        Err(e) => {
            warn!(error = %e, "could not encode the metrics");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                String::new(),
            )
        }
    }
}
