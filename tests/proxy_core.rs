//! The core proxy over real sockets: bodies, streaming, keep-alive, HTTP/2, failures, WebSocket,
//! shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode, Version};
use tokio_tungstenite::tungstenite::Message;

const SRC: &str = "127.0.0.1";

#[tokio::test]
async fn get_and_post_with_bodies_reach_the_backend() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), "").await;

    let a = get(SRC, gate.http, "/hello?x=1", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["method"], "GET");
    assert_eq!(a.json()["uri"], "/hello?x=1");

    let mut c = h1_plain(SRC, gate.http).await;
    let a = send(
        &mut c,
        request(
            "POST",
            "/upload",
            &[("content-length", "11")],
            full("hello world"),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"11");
}

#[tokio::test]
async fn chunked_upload_is_streamed_through() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), "").await;
    let mut c = h1_plain(SRC, gate.http).await;
    // A body of unknown length goes out chunked.
    let a = send(&mut c, request("POST", "/upload", &[], streamed(1_000_003))).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"1000003");
}

#[tokio::test]
async fn keep_alive_connections_to_the_backend_are_reused() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), "").await;
    // Sequential requests on one client connection: one worker, one backend connection.
    let mut c = h1_plain(SRC, gate.http).await;
    for i in 0..20 {
        let a = send(&mut c, request("GET", &format!("/k{i}"), &[], empty())).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    assert_eq!(backend.stats.connections.load(Ordering::SeqCst), 1);
    // A fresh client connection each time: reuse comes from origin-gate's pools, one per worker
    // thread (the kernel spreads client connections over the workers).
    for i in 0..40 {
        let a = get(SRC, gate.http, &format!("/n{i}"), &[]).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(backend.stats.requests.load(Ordering::SeqCst), 60);
    assert!(
        backend.stats.connections.load(Ordering::SeqCst) <= workers,
        "{} backend connections for {workers} workers",
        backend.stats.connections.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn http2_over_tls_with_a_verifying_rustls_client() {
    let backend = Backend::start().await;
    let cert = TestCert::new(&["example.com"]);
    let gate = Gate::start(&backend.url(), &cert.toml()).await;
    let mut h2 = h2_tls(
        SRC,
        gate.https(),
        cert.client(&[b"h2", b"http/1.1"]),
        "example.com",
    )
    .await;
    for _ in 0..3 {
        let req = Request::builder()
            .uri("https://example.com/h2-path")
            .version(Version::HTTP_2)
            .body(empty())
            .unwrap();
        let resp = h2.send_request(req).await.unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        let a = collect(resp).await;
        assert_eq!(a.status, StatusCode::OK);
        // The backend is HTTP/1.1 and must get a Host header built from :authority.
        assert_eq!(a.seen("host").as_deref(), Some("example.com"));
        assert_eq!(a.json()["uri"], "/h2-path");
    }
    // A TLS listener also speaks HTTP/1.1 to clients that do not offer h2.
    let tls = tls_connect(
        SRC,
        gate.https(),
        cert.client(&[b"http/1.1"]),
        "example.com",
    )
    .await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn backend_down_gives_502_quickly() {
    let dead = closed_port().await;
    let gate = Gate::start(&format!("http://{dead}"), "").await;
    let started = Instant::now();
    let a = get(SRC, gate.http, "/", &[]).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "502 took {:?}",
        started.elapsed()
    );
    // The process keeps serving.
    assert_eq!(
        get(SRC, gate.http, "/", &[]).await.status,
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test]
async fn slow_backend_gives_504_after_response_timeout() {
    let backend = Backend::start().await;
    // Lines before any [section] in `extra` belong to [backend].
    let gate = Gate::start(&backend.url(), "response_timeout = \"300ms\"\n").await;
    let started = Instant::now();
    let a = get(SRC, gate.http, "/slow?ms=5000", &[]).await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "504 after {took:?}"
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways_and_host_is_kept() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), "").await;
    let a = get(
        SRC,
        gate.http,
        "/",
        &[
            ("host", "blog.example.com"),
            ("connection", "keep-alive, x-private-hop"),
            ("x-private-hop", "secret"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-connection", "keep-alive"),
            ("x-end-to-end", "kept"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.seen("host").as_deref(), Some("blog.example.com"));
    assert_eq!(a.seen("x-end-to-end").as_deref(), Some("kept"));
    for gone in [
        "x-private-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert_eq!(a.seen(gone), None, "{gone} reached the backend");
    }
    // The backend's own hop-by-hop headers do not reach the visitor either.
    assert_eq!(a.header("x-backend-private"), None);
    assert_eq!(a.header("keep-alive"), None);
}

#[tokio::test]
async fn websocket_upgrade_is_echoed_end_to_end() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), "").await;
    let stream = tokio::net::TcpStream::connect(gate.http).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{}/ws", gate.http), stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "through origin-gate"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::binary(vec![0u8, 1, 2, 255]));
}

#[tokio::test]
async fn client_disconnect_cancels_the_backend_request() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), "").await;
    let mut c = h1_plain(SRC, gate.http).await;
    let pending = tokio::spawn(async move {
        let _ = c
            .send_request(request("GET", "/slow?ms=30000", &[], empty()))
            .await;
    });
    // Wait (bounded) until the backend has the request, then hang up.
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.stats.requests.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "backend never saw the request");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pending.abort();
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.stats.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "backend request was not cancelled after the client left"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let backend = Backend::start().await;
    let mut gate = Gate::start(&backend.url(), "").await;
    let mut c = h1_plain(SRC, gate.http).await;
    let in_flight =
        tokio::spawn(
            async move { send(&mut c, request("GET", "/slow?ms=700", &[], empty())).await },
        );
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.stats.requests.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let exited = gate.shutdown();
    // New connections are refused once the listeners are closed.
    let a = in_flight.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"slow done");
    tokio::time::timeout(Duration::from_secs(5), exited)
        .await
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(gate.http).await.is_err());
}
