//! What a backend's response framing does to the visitor: origin-gate reads backend responses
//! itself on its direct path (`serve::direct`), so the hostile and the merely odd ones are here —
//! both Content-Length and Transfer-Encoding, bare line feeds in chunk lines, stray bytes after a
//! body — next to the plain keep-alive reuse that path exists for.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A backend that answers every request head with `reply`, keeping the connection open, and
/// counts the connections it accepted.
async fn scripted_backend(reply: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Bounded by the connection: ends when the proxy closes it.
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, conns)
}

async fn gate_for(addr: SocketAddr) -> Gate {
    Gate::start(&format!("http://{addr}"), "").await
}

#[tokio::test]
async fn keep_alive_backend_connections_are_reused_and_chunked_bodies_decoded() {
    let (addr, conns) = scripted_backend(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .await;
    let gate = gate_for(addr).await;
    let mut c = h1_plain(TRUSTED_SRC, gate.http).await;
    for _ in 0..5 {
        let a = send(&mut c, request("GET", "/", &[], empty())).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(&a.body[..], b"Wikipedia");
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "one backend connection, reused"
    );
}

/// RFC 9112 §6.3: with both, Transfer-Encoding decides; the Content-Length must not reach the
/// visitor, where it would cut the body (and a cache would keep the cut one).
#[tokio::test]
async fn content_length_beside_transfer_encoding_does_not_truncate_the_body() {
    let (addr, conns) = scripted_backend(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let gate = gate_for(addr).await;
    let mut c = h1_plain(TRUSTED_SRC, gate.http).await;
    for _ in 0..2 {
        let a = send(&mut c, request("GET", "/", &[], empty())).await;
        assert_eq!(&a.body[..], b"hello");
        assert_ne!(
            a.headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "a CL+TE connection is not reused"
    );
}

/// Bare LF in chunk lines is refused at once (not waited past until the backend closes), and the
/// next visitor is served normally.
#[tokio::test]
async fn a_bare_lf_chunked_body_fails_fast() {
    let (addr, _) =
        scripted_backend(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n")
            .await;
    let gate = gate_for(addr).await;
    let mut c = connect_from(TRUSTED_SRC, gate.http).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    // The visitor's connection ends (502 before the head, or a cut body) well within 5 s.
    let ended = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got)).await;
    assert!(ended.is_ok(), "the visitor waited on a broken body");
    assert!(
        !String::from_utf8_lossy(&got).contains("hello\r\n0\r\n\r\n"),
        "a broken body must not be completed: {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// Bytes after a complete response mean the backend's framing cannot be trusted: that
/// connection is not reused, so they are never served as the next request's answer.
#[tokio::test]
async fn stray_bytes_after_a_body_retire_the_backend_connection() {
    let (addr, conns) = scripted_backend(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON",
    )
    .await;
    let gate = gate_for(addr).await;
    let mut c = h1_plain(TRUSTED_SRC, gate.http).await;
    for _ in 0..3 {
        let a = send(&mut c, request("GET", "/", &[], empty())).await;
        assert_eq!(&a.body[..], b"hello");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 3);
}

/// An idle backend connection is closed after `backend.idle_timeout` even when no request comes
/// to take it (no stale sockets on a quiet site).
#[tokio::test]
async fn idle_backend_connections_are_closed_after_the_idle_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Bounded by the connection: one request, then wait for the proxy to close it.
        loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                let _ = closed_tx.send(());
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                buf.clear();
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await
                    .unwrap();
            }
        }
    });
    let gate = Gate::start_raw(&format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\n\n[backend]\nurl = \"http://{addr}\"\nidle_timeout = \"1s\"\n"
    ))
    .await;
    let a = get(TRUSTED_SRC, gate.http, "/", &[]).await;
    assert_eq!(&a.body[..], b"ok");
    tokio::time::timeout(Duration::from_secs(10), closed_rx)
        .await
        .expect("the idle backend connection was closed within 10 s")
        .unwrap();
}
