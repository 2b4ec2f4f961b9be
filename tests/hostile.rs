//! A hostile internet at the origin: request smuggling, oversized input, slowloris, running out
//! of file descriptors, a hanging or restarting backend, HTTP/2 rapid reset.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes raw bytes on a fresh connection and reads until the server closes or goes quiet;
/// returns the status codes of the responses read.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u16> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

#[tokio::test]
async fn smuggling_attempts_are_refused_and_the_backend_never_sees_two_requests() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), "").await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n";
    // Content-Length with Transfer-Encoding: hyper applies RFC 9112 §6.3 before we see the head
    // (the chunked framing wins, Content-Length is removed, the connection closes after the
    // response), so the backend gets exactly one request, rebuilt, and never the smuggled one.
    let before = backend.stats.requests.load(SeqCst);
    let statuses = raw_exchange(
        gate.http,
        format!("POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}").as_bytes(),
    )
    .await;
    assert_eq!(
        statuses,
        vec![200],
        "CL+TE: one response, then the connection closes"
    );
    assert_eq!(
        backend.stats.requests.load(SeqCst) - before,
        1,
        "CL+TE: exactly one request reached the backend"
    );
    let cases: Vec<(&str, String, u16, usize)> = vec![
        (
            "conflicting Content-Length",
            format!("POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\nContent-Length: 48\r\n\r\nabcd{smuggled}"),
            400,
            0,
        ),
        // Identical repeats mean one length to every reader (RFC 9110 §8.6); hyper folds them.
        ("repeated identical Content-Length", "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd".into(), 200, 1),
        ("Content-Length list", "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4, 4\r\n\r\nabcd".into(), 400, 0),
        (
            "Transfer-Encoding other than chunked",
            format!("POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{smuggled}"),
            501,
            0,
        ),
        (
            "obfuscated Transfer-Encoding",
            format!("POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"),
            400, // hyper refuses a final coding other than chunked itself
            0,
        ),
        ("obs-folded header", "GET / HTTP/1.1\r\nHost: example.com\r\nX-Folded: a\r\n b\r\n\r\n".into(), 400, 0),
        ("NUL in a header value", "GET / HTTP/1.1\r\nHost: example.com\r\nX-Nul: a\0b\r\n\r\n".into(), 400, 0),
        ("bare CR in a header value", "GET / HTTP/1.1\r\nHost: example.com\r\nX-Cr: a\rb\r\n\r\n".into(), 400, 0),
        ("absolute-form target for another host", "GET http://evil.example/ HTTP/1.1\r\nHost: example.com\r\n\r\n".into(), 400, 0),
    ];
    for (name, bytes, status, seen) in cases {
        let before = backend.stats.requests.load(SeqCst);
        let statuses = raw_exchange(gate.http, bytes.as_bytes()).await;
        assert_eq!(statuses, vec![status], "{name}");
        assert_eq!(
            backend.stats.requests.load(SeqCst) - before,
            seen,
            "{name}: the backend saw a request"
        );
    }
    // A bad chunk size in an otherwise valid request: at most the one request reaches the
    // backend, never the smuggled second one; the visitor gets 400.
    let before = backend.stats.requests.load(SeqCst);
    let statuses = raw_exchange(gate.http, format!("POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n{smuggled}").as_bytes()).await;
    assert_eq!(statuses, vec![400], "bad chunk size");
    assert!(backend.stats.requests.load(SeqCst) - before <= 1);
    // And a legitimate pipelined pair is two requests, as sent.
    let before = backend.stats.requests.load(SeqCst);
    let statuses = raw_exchange(gate.http, b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\nGET /b HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n").await;
    assert_eq!(statuses, vec![200, 200]);
    assert_eq!(backend.stats.requests.load(SeqCst) - before, 2);
    // The process keeps serving.
    assert_eq!(
        get("127.0.0.1", gate.http, "/", &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn oversized_heads_get_431_and_oversized_bodies_413() {
    let backend = Backend::start().await;
    let gate = Gate::start(
        &backend.url(),
        "[limits]\nmax_header_bytes = 8192\nmax_headers = 20\n[[limits.body]]\nprefix = \"/\"\nmax = \"1KiB\"\n[[limits.body]]\nprefix = \"/wp-admin/async-upload.php\"\nmax = \"64KiB\"\n",
    )
    .await;
    let big = "x".repeat(9000);
    assert_eq!(
        raw_exchange(
            gate.http,
            format!("GET / HTTP/1.1\r\nHost: example.com\r\nX-Big: {big}\r\n\r\n").as_bytes()
        )
        .await,
        vec![431]
    );
    let many: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(
        raw_exchange(
            gate.http,
            format!("GET / HTTP/1.1\r\nHost: example.com\r\n{many}\r\n").as_bytes()
        )
        .await,
        vec![431]
    );

    let mut c = h1_plain("127.0.0.1", gate.http).await;
    let a = send(
        &mut c,
        request(
            "POST",
            "/upload",
            &[("content-length", "2048")],
            full(vec![b'a'; 2048]),
        ),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "declared length over the limit"
    );
    let mut c = h1_plain("127.0.0.1", gate.http).await;
    let a = send(&mut c, request("POST", "/upload", &[], streamed(4096))).await;
    assert_eq!(
        a.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "chunked body over the limit"
    );
    let mut c = h1_tls("127.0.0.1", gate.https()).await;
    let a = send(
        &mut c,
        request("POST", "/wp-admin/async-upload.php", &[], streamed(40_000)),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "the upload path has its own, larger limit"
    );
    let mut c = h1_plain("127.0.0.1", gate.http).await;
    let a = send(
        &mut c,
        request(
            "POST",
            "/upload",
            &[("content-length", "1000")],
            full(vec![b'a'; 1000]),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"1000");
}

fn process_config(dir: &Path, extra: &str, backend: &str) -> std::path::PathBuf {
    let path = dir.join("og.toml");
    std::fs::write(&path, format!("[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{backend}\"\n[log]\naccess = \"off\"\n{extra}")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_while_normal_requests_keep_completing() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gate = GateProcess::spawn(&process_config(
        dir.path(),
        "[limits]\nheader_read_timeout = \"2s\"\n",
        &backend.url(),
    ));
    let http = gate.http;
    // 300 connections that send a request head one byte at a time, never finishing.
    let mut slow = Vec::new();
    for _ in 0..300 {
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(http).await.unwrap();
            let head = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Slow: ";
            let started = Instant::now();
            for i in 0..40 {
                if s.write_all(&head[i % head.len()..i % head.len() + 1])
                    .await
                    .is_err()
                {
                    return started.elapsed(); // closed by the server
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Duration::MAX
        }));
    }
    // Meanwhile ordinary visitors are served promptly.
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(
            get("127.0.0.1", http, "/", &[]).await.status,
            StatusCode::OK
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a normal request took {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in slow {
        let lived = t.await.unwrap();
        assert!(
            lived < Duration::from_secs(6),
            "a slowloris connection stayed open {lived:?}"
        );
    }
}

#[test]
fn out_of_file_descriptors_pauses_accepting_then_recovers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let backend = Backend::start().await;
        let dir = tempfile::tempdir().unwrap();
        let config = process_config(dir.path(), "", &backend.url());
        // A shell lowers the descriptor limit, then becomes origin-gate.
        let script = dir.path().join("run.sh");
        std::fs::write(
            &script,
            format!(
                "ulimit -n 48\nexec {} --config {}\n",
                binary().display(),
                config.display()
            ),
        )
        .unwrap();
        let mut child = std::process::Command::new("bash")
            .arg(&script)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let http: SocketAddr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("no listening line");
            if line.contains(" listening ") {
                break line.rsplit("addr=").next().unwrap().trim().parse().unwrap();
            }
        };
        // Far more connections than descriptors: the kernel completes the handshakes, accept fails.
        let mut hogs = Vec::new();
        for _ in 0..80 {
            hogs.push(TcpStream::connect(http).await.unwrap());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let warned = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains("accept failed") => break line,
                _ => assert!(Instant::now() < deadline, "no accept-failure warning"),
            }
        };
        assert!(
            warned.contains("Too many open files") || warned.contains("os error 24"),
            "{warned}"
        );
        assert!(child.try_wait().unwrap().is_none(), "origin-gate died");
        drop(hogs);
        // Recovers once descriptors are free again (bounded retries while the backlog drains).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = tokio::time::timeout(Duration::from_secs(2), get("127.0.0.1", http, "/", &[]))
                .await;
            if ok.is_ok_and(|a| a.status == StatusCode::OK) {
                break;
            }
            assert!(Instant::now() < deadline, "did not recover");
        }
        // The warning is throttled: one line per interval, not one per failed accept.
        let warnings = std::iter::from_fn(|| rx.try_recv().ok())
            .filter(|l| l.contains("accept failed"))
            .count();
        assert!(warnings <= 2, "{warnings} accept warnings");
        let _ = child.kill();
        let _ = child.wait();
    });
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_hanging_backend_gives_504_and_leaks_no_descriptors() {
    // A backend that accepts and never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hang.local_addr().unwrap();
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let h = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = hang.accept().await {
            h.lock().await.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let gate = GateProcess::spawn(
        &process_config(dir.path(), "", &format!("http://{addr}"))
            .with_extra("response_timeout = \"300ms\"\n"),
    );
    let pid = gate.child.id();
    let baseline = fd_count(pid);
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(
            get("127.0.0.1", gate.http, "/", &[]).await.status,
            StatusCode::GATEWAY_TIMEOUT
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while fd_count(pid) > baseline {
        assert!(
            Instant::now() < deadline,
            "descriptors leaked: {} > {baseline}",
            fd_count(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

trait WithExtra {
    fn with_extra(self, backend_lines: &str) -> Self;
}

impl WithExtra for std::path::PathBuf {
    /// Adds lines to the config's [backend] section.
    fn with_extra(self, backend_lines: &str) -> Self {
        let text = std::fs::read_to_string(&self).unwrap();
        std::fs::write(
            &self,
            text.replacen("[backend]\n", &format!("[backend]\n{backend_lines}"), 1),
        )
        .unwrap();
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_restart_under_traffic_fails_only_in_flight_requests() {
    let backend = Backend::start().await;
    let addr = backend.addr;
    let gate = Gate::start(&backend.url(), "").await;
    let http = gate.http;
    let restarted_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let (halfway_tx, halfway_rx) = tokio::sync::oneshot::channel::<()>();
    // A steady, bounded stream of requests over fresh client connections.
    let traffic = tokio::spawn(async move {
        let mut halfway = Some(halfway_tx);
        let mut results = Vec::new();
        for i in 0..400u32 {
            if i == 150 {
                if let Some(tx) = halfway.take() {
                    let _ = tx.send(());
                }
            }
            let started = Instant::now();
            let status = get("127.0.0.1", http, "/", &[]).await.status;
            results.push((started, status));
        }
        results
    });
    halfway_rx.await.unwrap();
    // The restart, while requests keep coming: every connection closed, then the same address.
    let stopped = Instant::now();
    backend.stop().await;
    let backend = Backend::start_on(addr).await;
    *restarted_at.lock().unwrap() = Some(Instant::now());
    let results = traffic.await.unwrap();
    let restarted = restarted_at.lock().unwrap().unwrap();
    let failed = |from: Instant, to: Instant| {
        results
            .iter()
            .filter(|(t, s)| *t >= from && *t < to && *s != StatusCode::OK)
            .count()
    };
    let long_ago = stopped - Duration::from_secs(3600);
    let much_later = restarted + Duration::from_secs(3600);
    // Before the stop only the request in flight at that moment may fail; while the backend is
    // down requests get 502 at once (the backend's absence, not a proxy failure) ...
    assert!(
        failed(long_ago, stopped) <= 1,
        "{} requests failed before the backend stopped",
        failed(long_ago, stopped)
    );
    // ... and the pool recovers on the very next request after the restart.
    assert_eq!(
        failed(restarted, much_later),
        0,
        "requests failed after the backend was back"
    );
    assert!(
        results.iter().filter(|(t, _)| *t >= restarted).count() > 100,
        "the restart came too late to test recovery"
    );
    assert!(backend.stats.requests.load(SeqCst) > 100);
}

#[tokio::test]
async fn backend_refusing_connections_gives_502_within_100ms() {
    let dead = closed_port().await;
    let gate = Gate::start(&format!("http://{dead}"), "").await;
    let mut c = h1_plain("127.0.0.1", gate.http).await;
    for _ in 0..5 {
        let started = Instant::now();
        let a = send(&mut c, request("GET", "/", &[], empty())).await;
        assert_eq!(a.status, StatusCode::BAD_GATEWAY);
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "502 after {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn http2_rapid_reset_closes_that_connection_only() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), "").await;
    let tls = tls_connect(
        "127.0.0.1",
        gate.https(),
        insecure_client(&[b"h2"]),
        "localhost",
    )
    .await;
    let (mut client, conn) = h2::client::handshake(tls).await.unwrap();
    let conn_task = tokio::spawn(conn);
    // Open streams and cancel them at once, in bursts written back to back (CVE-2023-44487).
    let mut refused_after = None;
    let mut sent = 0;
    'bursts: for _ in 0..100 {
        let Ok(Ok(mut ready)) =
            tokio::time::timeout(Duration::from_secs(2), client.clone().ready()).await
        else {
            refused_after = Some(sent);
            break;
        };
        for _ in 0..50 {
            let req = http::Request::builder()
                .uri("https://localhost/")
                .body(())
                .unwrap();
            match ready.send_request(req, true) {
                Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
                Err(_) => {
                    refused_after = Some(sent);
                    break 'bursts;
                }
            }
            sent += 1;
        }
        client = ready;
        tokio::task::yield_now().await;
    }
    let n = refused_after.expect("the server never closed the resetting connection");
    assert!(n < 5000, "{n}");
    let closed = tokio::time::timeout(Duration::from_secs(5), conn_task)
        .await
        .expect("connection still open")
        .unwrap();
    assert!(closed.is_err(), "expected GOAWAY, got a clean close");
    // Everyone else is unaffected.
    let mut h2 = h2_tls(
        "127.0.0.1",
        gate.https(),
        insecure_client(&[b"h2"]),
        "localhost",
    )
    .await;
    let resp = h2
        .send_request(
            http::Request::builder()
                .uri("https://localhost/")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        get("127.0.0.1", gate.http, "/", &[]).await.status,
        StatusCode::OK
    );
}
