use std::time::Duration;

use tally_p2p::{Config, RequestError};

use crate::common::{Node, Seen, config, start};

/// Answers every request with its bytes reversed, except those starting
/// with "slow", which it never answers.
fn serve(mut node: Node) -> (tally_p2p::Handle, tokio::task::JoinHandle<()>) {
    let handle = node.handle.clone();
    let server = handle.clone();
    let task = tokio::spawn(async move {
        while let Some(seen) = node.seen.recv().await {
            if let Seen::Request { id, data, .. } = seen {
                if data.starts_with(b"slow") {
                    continue;
                }
                let reply: Vec<u8> = data.iter().rev().copied().collect();
                let _ = server.respond(id, reply).await;
            }
        }
    });
    (handle, task)
}

/// Request-response round trip, timeout, the per-peer in-flight bound, and
/// oversized requests refused locally and by the remote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_round_trip_timeout_and_limits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(Config {
        max_request_bytes: 1024,
        ..config(&dir, "server")
    })
    .await;
    let server_id = server.id();
    let server_addr = server.addr.clone();
    let (server_handle, server_task) = serve(server);
    let client = start(Config {
        bootstrap: vec![server_addr],
        request_timeout: Duration::from_millis(500),
        max_inflight_requests_per_peer: 2,
        max_request_bytes: 64 * 1024,
        ..config(&dir, "client")
    })
    .await;
    client.wait_connected_to(&[server_id]).await;

    let reply = client
        .handle
        .request(server_id, b"status?".to_vec())
        .await
        .expect("round trip");
    assert_eq!(reply, b"?sutats");

    let started = tokio::time::Instant::now();
    let err = client
        .handle
        .request(server_id, b"slow".to_vec())
        .await
        .expect_err("unanswered request");
    assert_eq!(err, RequestError::Timeout);
    assert!(started.elapsed() >= Duration::from_millis(400));

    // Two slow requests fill the window; a third is refused at once.
    let slow1 = tokio::spawn({
        let h = client.handle.clone();
        async move { h.request(server_id, b"slow 1".to_vec()).await }
    });
    let slow2 = tokio::spawn({
        let h = client.handle.clone();
        async move { h.request(server_id, b"slow 2".to_vec()).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        client.handle.request(server_id, b"third".to_vec()).await,
        Err(RequestError::TooManyInFlight)
    );
    assert_eq!(slow1.await.expect("task"), Err(RequestError::Timeout));
    assert_eq!(slow2.await.expect("task"), Err(RequestError::Timeout));

    // Over the client's own limit: refused before anything is sent.
    assert!(matches!(
        client.handle.request(server_id, vec![1; 65 * 1024]).await,
        Err(RequestError::TooLarge { .. })
    ));
    // Within the client's limit but over the server's: the server drops it
    // and counts it, the client gets an error, and the next request works.
    let err = client
        .handle
        .request(server_id, vec![1; 4096])
        .await
        .expect_err("oversized for the server");
    assert!(matches!(err, RequestError::Failed(_)), "{err:?}");
    let malformed = server_handle
        .stats()
        .await
        .expect("stats")
        .malformed_requests;
    assert_eq!(malformed, 1, "the server counts the oversized request");
    assert_eq!(
        client
            .handle
            .request(server_id, b"again".to_vec())
            .await
            .expect("still works"),
        b"niaga"
    );

    client.handle.shutdown().await.expect("shutdown");
    server_handle.shutdown().await.expect("shutdown");
    server_task.await.expect("server task");
}
