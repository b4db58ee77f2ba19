//! The JSON-RPC server's limits, against a real node in this process: socket
//! slots, header and body deadlines, the Host allow-list, subscription caps
//! per connection and in all, WebSocket pings, and a transaction
//! subscription that ends by itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use jsonrpsee::core::ClientError;
use jsonrpsee::core::client::Subscription;
use jsonrpsee_ws_client::{WsClient, WsClientBuilder};
use tally_genesis::dev_keys;
use tally_node::cli::homes;
use tally_node::config::Home;
use tally_node::node::Node;
use tally_rpc::{BlockSummary, TallyApiClient, TxInfo, TxStatusInfo, codes};

use crate::harness::{client, loopback_config, raw, transfer, wait_for, wait_height};

/// Reads until the server closes the connection (or `within` passes);
/// returns what it sent and whether it closed in time.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // Reset by the server: closed too.
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

fn http_status(addr: SocketAddr, host: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tally_health","params":[]}"#;
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let (response, _) = read_until_closed(&mut stream, Duration::from_secs(5));
    response.lines().next().unwrap_or_default().to_string()
}

fn call_code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> i32 {
    match result {
        Err(ClientError::Call(e)) => e.code(),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

async fn ws(addr: SocketAddr) -> WsClient {
    WsClientBuilder::default()
        .build(format!("ws://localhost:{}", addr.port()))
        .await
        .expect("ws connect")
}

async fn blocks(ws: &WsClient) -> Result<Subscription<BlockSummary>, ClientError> {
    ws.subscribe_new_blocks().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rpc_server_holds_its_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = Home::new(dir.path().join("node"));
    let mut config = loopback_config();
    config.rpc.max_connections = 6;
    config.rpc.max_subscriptions_per_connection = 2;
    config.rpc.max_subscriptions = 3;
    config.rpc.header_read_timeout_ms = 1_500;
    config.rpc.body_read_timeout_ms = 1_000;
    config.rpc.ws_ping_interval_ms = 200;
    config.rpc.ws_idle_timeout_ms = 800;
    config.rpc.allowed_hosts = vec!["localhost:*".into(), "127.0.0.1:*".into()];
    let (genesis, _) = homes::init(&home, 4343, None, false, config.clone()).expect("init");
    let node = Node::start(&home, &config).await.expect("node starts");
    let addr = node.rpc_addr.expect("rpc");
    let running = tokio::spawn(node.run_until(std::future::pending()));
    let url = format!("http://{addr}");
    wait_height(&client(&url), 1, Duration::from_secs(30)).await;

    // Host allow-list: a name the operator did not list is refused (DNS
    // rebinding), the listed ones are served.
    assert!(http_status(addr, "evil.example").contains("403"));
    assert!(http_status(addr, &format!("localhost:{}", addr.port())).contains("200"));
    assert!(http_status(addr, &addr.to_string()).contains("200"));

    // Socket slots: six idle sockets hold every slot (each is kept: the
    // header deadline is far off); a seventh is closed at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut idle: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    for stream in &mut idle {
        let (_, closed) = read_until_closed(stream, Duration::from_millis(50));
        assert!(!closed, "a connection within max_connections was closed");
    }
    let mut seventh = TcpStream::connect(addr).expect("connect");
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut seventh, Duration::from_millis(500));
    assert!(closed, "a connection beyond max_connections was kept");
    assert!(started.elapsed() < Duration::from_millis(500));

    // Header deadline: the idle sockets (which never sent a byte) are
    // closed, so is one that sends half its headers and stops.
    for mut stream in idle {
        let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(3));
        assert!(
            closed,
            "a silent connection was kept past the header deadline"
        );
    }
    let mut slow = TcpStream::connect(addr).expect("connect");
    slow.write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\n")
        .expect("write");
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(3));
    assert!(closed, "half a header was waited on forever");

    // Body deadline: a body that stops arriving is given up on.
    let mut stalled = TcpStream::connect(addr).expect("connect");
    stalled
        .write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\":")
        .expect("write");
    let started = Instant::now();
    let (response, closed) = read_until_closed(&mut stalled, Duration::from_secs(3));
    assert!(closed || response.starts_with("HTTP/1.1 5"), "{response}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Subscriptions: two per connection, three in all.
    let first = ws(addr).await;
    let a1 = blocks(&first).await.expect("first");
    let _a2 = blocks(&first).await.expect("second");
    assert_eq!(
        call_code(blocks(&first).await),
        -32006,
        "per-connection cap"
    );
    let second = ws(addr).await;
    let _b1 = blocks(&second).await.expect("third in all");
    assert_eq!(
        call_code(blocks(&second).await),
        codes::TOO_MANY_SUBSCRIPTIONS,
        "global cap"
    );
    // Ending one frees its slot.
    a1.unsubscribe().await.expect("unsubscribe");
    wait_for(
        "a freed subscription slot",
        Duration::from_secs(5),
        || async { blocks(&second).await.ok() },
    )
    .await;
    drop(first);
    drop(second);

    // WebSocket ping: a client that never answers is closed.
    let mut silent = TcpStream::connect(addr).expect("connect");
    silent
        .write_all(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .expect("write");
    let (response, closed) = read_until_closed(&mut silent, Duration::from_secs(5));
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    assert!(closed, "a WebSocket that answers no ping was kept");

    // A transaction subscription reports each status, the final one, and
    // is then ended by the server.
    let ws_client = ws(addr).await;
    let rpc = client(&url);
    let dev = dev_keys();
    let tx = transfer(&dev[2], genesis.chain_id, 0, dev[3].address(), 7);
    let hash = rpc.send_raw_transaction(raw(&tx)).await.expect("submit");
    let mut sub: Subscription<TxInfo> = ws_client
        .subscribe_transaction(hash.to_string())
        .await
        .expect("subscribe");
    let mut statuses = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(item) = sub.next().await {
            statuses.push(item.expect("notification").status);
        }
    })
    .await;
    assert!(ended.is_ok(), "the subscription never ended: {statuses:?}");
    assert!(
        matches!(statuses.last(), Some(TxStatusInfo::Committed { .. })),
        "{statuses:?}"
    );
    running.abort();
}
