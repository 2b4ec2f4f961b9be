//! Lean connections: plain HTTP/1.1 keep-alive connections park between requests (hyper's
//! state dropped, only the socket kept) and resume on the next byte — without losing or
//! misreading a byte — and at `limits.max_connections` the oldest idle connections are closed
//! to make room for new visitors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::raw_backend::{raw_http1, RawBackend, RawReply};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const U: &str = UNTRUSTED_SRC;
const GET: &[u8] = b"GET /page HTTP/1.1\r\nHost: example.com\r\n\r\n";

#[tokio::test]
async fn a_keep_alive_connection_parks_and_resumes_between_requests() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let gate = Gate::start(&backend.url(), "").await;
    let mut s = connect_from(U, gate.http).await;
    for i in 0..5 {
        let (status, head, body) = raw_http1(&mut s, GET).await;
        assert_eq!(status, 200, "request {i}: {head}");
        assert_eq!(body, b"ok");
        // An idle pause: the connection parks.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The next head split in two with a pause between the halves: the first half is read in
    // one session's buffer or the next's, and nothing of it is lost.
    s.write_all(b"GET /split HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, _) = raw_http1(&mut s, b"st: example.com\r\n\r\n").await;
    assert_eq!(status, 200);
    let seen = backend.take();
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[5].target, "/split");
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_in_order() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let gate = Gate::start(&backend.url(), "").await;
    let mut s = connect_from(U, gate.http).await;
    let mut three = Vec::new();
    for p in ["/one", "/two", "/three"] {
        three
            .extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: example.com\r\n\r\n").as_bytes());
    }
    s.write_all(&three).await.unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.windows(2).filter(|w| w == b"ok").count() < 3 {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("3 answers within 10 s");
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let targets: Vec<String> = backend.take().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/one", "/two", "/three"]);
}

/// A body origin-gate did not read (the request was answered locally) is never parsed as the
/// next request, whether hyper drains it or the connection closes.
#[tokio::test]
async fn an_unread_body_is_never_taken_for_the_next_request() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let gate = Gate::start_raw(&format!(
        "server_names = [\"example.com\"]\n[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n",
        backend.url()
    ))
    .await;
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n";
    for pause in [false, true] {
        let mut s = connect_from(U, gate.http).await;
        let head = format!(
            "POST /x HTTP/1.1\r\nHost: other.example\r\nContent-Length: {}\r\n\r\n",
            smuggled.len()
        );
        let (status, _, _) = raw_http1(&mut s, head.as_bytes()).await;
        assert_eq!(status, 421);
        if pause {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The body arrives after the answer; then a real request.
        let _ = s.write_all(smuggled).await;
        let _ = s.write_all(GET).await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await;
    }
    assert!(
        backend.take().iter().all(|r| r.target != "/smuggled"),
        "an unread body was parsed as a request"
    );
}

#[tokio::test]
async fn at_the_connection_limit_the_oldest_idle_connections_make_room() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("origin-gate.toml");
    std::fs::write(
        &path,
        format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_connections = 40\nheader_read_timeout = \"60s\"\n[log]\naccess = \"off\"\n",
            backend.url()
        ),
    )
    .unwrap();
    let gate = GateProcess::spawn(&path);
    // 20 silent connections (parked from their accept on) and 20 idle keep-alive ones (parked
    // once idle) fill the limit; the silent ones are the oldest parked.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(connect_from(U, gate.http).await);
    }
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut s = connect_from(U, gate.http).await;
        assert_eq!(raw_http1(&mut s, GET).await.0, 200);
        idle.push(s);
    }
    // Every one of them has been accepted before the newcomer arrives.
    let metrics = get(U, gate.admin.unwrap(), "/metrics", &[]).await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("origin_gate_open_connections"));
    // Newcomers stay connected, so each one needs room of its own.
    let mut newcomers = Vec::new();
    for i in 0..5 {
        let started = Instant::now();
        let mut s = connect_from(U, gate.http).await;
        let (status, _, _) = raw_http1(&mut s, GET).await;
        assert_eq!(status, 200, "newcomer {i}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "newcomer {i} waited {:?}",
            started.elapsed()
        );
        newcomers.push(s);
    }
    let line = gate
        .wait_log("limits.max_connections reached", Duration::from_secs(10))
        .expect("a WARN naming the limit");
    assert!(line.contains("WARN") && line.contains("closing the oldest idle connections"));
    let metrics = get(U, gate.admin.unwrap(), "/metrics", &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    let shed: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("origin_gate_shed_connections_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(shed >= 5.0, "{text}");
    // The oldest went first. "Oldest" is per worker (each sheds its own parked connections,
    // oldest first, and asks the others only when it has none), and the kernel spreads
    // connections over the workers, so which silent connection goes depends on the spread: the
    // closed ones are silent ones (every silent connection is older than every idle one on its
    // worker), never the newer idle ones while a worker still had a silent one.
    let closed = |s: &tokio::net::TcpStream| {
        let mut buf = [0u8; 16];
        let read = s.try_read(&mut buf);
        matches!(read, Ok(0) | Err(_))
            && !matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    };
    // The closes happened before the newcomers were answered; give the FINs a moment to land.
    let deadline = Instant::now() + Duration::from_secs(5);
    let closed_silent = loop {
        let n = silent.iter().filter(|s| closed(s)).count();
        if n >= 5 || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let closed_idle = idle.iter().filter(|s| closed(s)).count();
    assert!(
        closed_silent >= 5 && closed_idle == 0,
        "closed: {closed_silent} silent, {closed_idle} idle"
    );
    drop(idle);
}
