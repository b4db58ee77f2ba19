//! `GET /metrics` in the OpenMetrics text format, on its own listener
//! (`[metrics] listen`). Small on purpose: a few scrapers read it, so it
//! holds few connections (one beyond is closed at once), serves one request
//! per connection within a deadline (a client that sends slowly or never
//! reads loses its slot), encodes the registry at most once a second
//! whatever the number of scrapes, and answers nothing but the one path.

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

use super::dashboard::{Dashboard, PAGE};

/// What Prometheus asks for and this encoder writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Scrapers served at once; a connection beyond is closed.
const MAX_CONNECTIONS: usize = 16;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole exchange, request to the last byte of the answer.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Scrapes within this of an encoding get the same text.
const REUSE_FOR: Duration = Duration::from_secs(1);

/// The last encoding and when it was made.
#[derive(Default)]
struct Cache {
    text: std::sync::Mutex<Option<(std::time::Instant, Bytes)>>,
}

impl Cache {
    fn get(&self, registry: &Registry) -> Result<Bytes, std::fmt::Error> {
        let mut cached = self.text.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, text)) = cached.as_ref()
            && at.elapsed() < REUSE_FOR
        {
            return Ok(text.clone());
        }
        let mut text = String::new();
        encode(&mut text, registry)?;
        let text = Bytes::from(text);
        *cached = Some((std::time::Instant::now(), text.clone()));
        Ok(text)
    }
}

type Body = http_body_util::Full<Bytes>;

/// Binds `listen` and serves `registry` until the task is dropped. Returns
/// the bound address (the port may have been 0).
pub async fn start(
    listen: SocketAddr,
    registry: Arc<Registry>,
    dashboard: Option<Arc<Dashboard>>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics listener on {listen}"))?;
    let addr = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let cache = Arc::new(Cache::default());
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                debug!(%peer, "metrics: every connection slot is taken; closing");
                continue;
            };
            let (registry, cache, dashboard) = (registry.clone(), cache.clone(), dashboard.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let (registry, cache, dashboard) =
                        (registry.clone(), cache.clone(), dashboard.clone());
                    async move {
                        let answer = match dashboard {
                            Some(d) if request.uri().path().starts_with("/dashboard") => {
                                answer_dashboard(&request, &d).await
                            }
                            _ => answer(&request, &registry, &cache),
                        };
                        Ok::<_, Infallible>(answer)
                    }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                match tokio::time::timeout(CONNECTION_DEADLINE, connection).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(%peer, error = %e, "metrics connection ended"),
                    Err(_) => debug!(%peer, "metrics connection over its deadline: closed"),
                }
                drop(slot);
            });
        }
    });
    Ok((addr, task))
}

/// The dashboard's page and its read-only JSON, for any origin.
async fn answer_dashboard(request: &Request<Incoming>, dashboard: &Dashboard) -> Response<Body> {
    let reply = |status: StatusCode, kind: &str, body: Bytes| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, kind)
            .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::new(body))
            .unwrap_or_default()
    };
    if request.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", Bytes::new());
    }
    let json = |value: serde_json::Value| {
        reply(
            StatusCode::OK,
            "application/json",
            Bytes::from(value.to_string()),
        )
    };
    match request.uri().path() {
        "/dashboard" | "/dashboard/" => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(PAGE.as_bytes()),
        ),
        "/dashboard/state.json" => json(dashboard.state().await),
        "/dashboard/trace" => {
            let hash = request
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("hash=")))
                .unwrap_or_default();
            json(dashboard.trace(hash).await)
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", Bytes::new()),
    }
}

fn answer(request: &Request<Incoming>, registry: &Registry, cache: &Cache) -> Response<Body> {
    let reply = |status: StatusCode, kind: &str, body: Bytes| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, kind)
            .body(Body::new(body))
            .unwrap_or_default()
    };
    if request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"Tally metrics are at /metrics\n"),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", Bytes::new());
    }
    match cache.get(registry) {
        Ok(text) => reply(StatusCode::OK, OPENMETRICS, text),
        Err(e) => {
            warn!(error = %e, "could not encode the metrics");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                Bytes::new(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    fn get(addr: SocketAddr) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// Sixteen clients that never send a request hold every slot only
    /// until the header deadline; one more is closed at once; afterwards a
    /// scrape is served again, and one connection serves one request.
    #[tokio::test(flavor = "multi_thread")]
    async fn idle_clients_cannot_keep_the_scrapers_out() {
        let (addr, task) = start(
            "127.0.0.1:0".parse().expect("addr"),
            Arc::new(Registry::default()),
            None,
        )
        .await
        .expect("start");
        let answer = tokio::task::spawn_blocking(move || get(addr))
            .await
            .expect("join");
        let answer = answer.expect("a scrape");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );

        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let refused = tokio::task::spawn_blocking(move || get(addr))
            .await
            .expect("join");
        assert!(
            refused.as_ref().map_or(true, |a| a.is_empty()),
            "a 17th connection is closed unanswered: {refused:?}"
        );
        tokio::time::sleep(HEADER_TIMEOUT + Duration::from_secs(1)).await;
        let answer = tokio::task::spawn_blocking(move || get(addr))
            .await
            .expect("join");
        assert!(answer.expect("a scrape").starts_with("HTTP/1.1 200"));
        drop(idle);
        task.abort();
    }
}
