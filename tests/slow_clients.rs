//! Slow and silent clients must not cost PHP workers: small bodies are buffered before the
//! backend is contacted, a stalled body ends in 408 with the backend connection released, and
//! `backend.response_timeout` counts from the end of the body, not its start. The client's
//! pauses below are the scenario (a trickling visitor), not synchronisation: every assertion
//! waits on a signal (a response, the backend's record, its open-connection count).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::raw_backend::{raw_http1, RawBackend, RawReply};
use common::*;
use tokio::io::AsyncWriteExt;

const U: &str = UNTRUSTED_SRC;

async fn gate(backend: &RawBackend, limits: &str) -> Gate {
    Gate::start(&backend.url(), &format!("[limits]\n{limits}")).await
}

#[tokio::test]
async fn a_trickled_small_body_reaches_the_backend_whole_after_its_last_byte() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let gate = gate(&backend, "").await;
    let mut s = connect_from(U, gate.http).await;
    let body = b"log=admin&pwd=x";
    s.write_all(
        format!(
            "POST /wp-login.php HTTP/1.1\r\nHost: example.com\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Over ~1.4 s, one byte at a time: a PHP worker would wait all that time for it.
    for b in &body[..body.len() - 1] {
        s.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        *backend.open.borrow(),
        0,
        "the backend must not be contacted before the body is complete"
    );
    let last_byte = Instant::now();
    let (status, _, _) = raw_http1(&mut s, &body[body.len() - 1..]).await;
    assert_eq!(status, 200);
    let seen = backend.take();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].head_at.unwrap() >= last_byte,
        "head sent before the last body byte"
    );
    assert_eq!(seen[0].body, body);
}

#[tokio::test]
async fn a_stalled_buffered_body_is_408_and_the_backend_never_sees_it() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let gate = gate(&backend, "body_read_timeout = \"1s\"\n").await;
    let mut s = connect_from(U, gate.http).await;
    let started = Instant::now();
    let (status, head, _) = raw_http1(
        &mut s,
        b"POST /wp-comments-post.php HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100\r\n\r\ncomment=fi",
    )
    .await;
    assert_eq!(status, 408, "{head}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(head.to_ascii_lowercase().contains("connection: close"));
    assert!(backend.take().is_empty());
    assert_eq!(*backend.open.borrow(), 0);
}

#[tokio::test]
async fn a_client_stalling_mid_stream_is_cut_and_the_backend_connection_released() {
    let backend = RawBackend::start(RawReply::Ok).await;
    // Buffering off: the body streams, and the stall happens while the backend waits for it.
    let gate = gate(
        &backend,
        "body_read_timeout = \"1s\"\nrequest_buffer = \"0\"\n",
    )
    .await;
    let mut s = connect_from(U, gate.http).await;
    let started = Instant::now();
    let (status, head, _) = raw_http1(
        &mut s,
        b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100000\r\n\r\npartial",
    )
    .await;
    assert_eq!(status, 408, "{head}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        backend.wait_all_closed(Duration::from_secs(5)).await,
        "the backend connection must be released"
    );
}

#[tokio::test]
async fn a_long_steady_upload_is_not_a_slow_backend() {
    let backend = RawBackend::start(RawReply::Ok).await;
    // 200 KiB over ~2.5 s, larger than the buffer so it streams, with a 1 s response timeout.
    let gate = Gate::start_raw(&format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\nresponse_timeout = \"1s\"\n[limits]\nrequest_buffer = \"64KiB\"\n",
        backend.url()
    ))
    .await;
    let mut s = connect_from(U, gate.http).await;
    let chunk = vec![b'u'; 8 * 1024];
    s.write_all(
        b"POST /wp-admin/async-upload.php HTTP/1.1\r\nHost: example.com\r\nContent-Length: 204800\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..24 {
        s.write_all(&chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, head, _) = raw_http1(&mut s, &chunk).await;
    assert_eq!(status, 200, "{head}");
    let seen = backend.take();
    assert_eq!(seen[0].body.len(), 204_800);
}

#[tokio::test]
async fn a_backend_that_stops_reading_the_body_is_still_a_504() {
    // The backend never answers; the body is complete: the response timeout starts at its end.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hang.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            held.push(s);
        }
    });
    let gate = Gate::start_raw(&format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"http://{addr}\"\nresponse_timeout = \"1s\"\n"
    ))
    .await;
    let mut s = connect_from(U, gate.http).await;
    let started = Instant::now();
    let (status, _, _) = raw_http1(
        &mut s,
        b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(status, 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    holder.abort();
}
