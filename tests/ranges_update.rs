//! `origin-gate ranges update` against a local HTTPS server (rustls, a test CA passed with
//! `--ca-file`) serving good, unchanged, shrunken, garbage and empty lists: exit codes for cron
//! and systemd, the file written atomically with the previous one kept, the diff printed, and a
//! running instance picking the new list up on its reload timer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::{Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const V4: &str = include_str!("../src/decide/trust/cloudflare-ips-v4.txt");
const V6: &str = include_str!("../src/decide/trust/cloudflare-ips-v6.txt");

type Lists = Arc<Mutex<HashMap<String, (u16, String)>>>;

/// An HTTPS server answering `/ips-v4` and `/ips-v6` with whatever the test put there.
async fn list_server(cert: &TestCert, lists: Lists) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, lists) = (acceptor.clone(), lists.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (status, body) = lists
                        .lock()
                        .unwrap()
                        .get(req.uri().path())
                        .cloned()
                        .unwrap_or((404, String::new()));
                    let mut resp = Response::new(full(body));
                    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

fn update(config: &Path, addr: SocketAddr, ca: &Path, force: bool) -> (i32, String) {
    let mut cmd = Command::new(binary());
    cmd.args(["ranges", "update", "--config"])
        .arg(config)
        .arg("--v4-url")
        .arg(format!("https://localhost:{}/ips-v4", addr.port()))
        .arg("--v6-url")
        .arg(format!("https://localhost:{}/ips-v6", addr.port()))
        .arg("--ca-file")
        .arg(ca);
    if force {
        cmd.arg("--force");
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    )
}

#[tokio::test]
async fn ranges_update_fetches_checks_and_writes_atomically() {
    let cert = TestCert::new(&["localhost"]);
    let ca = cert.dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.ca_pem).unwrap();
    let lists: Lists = Arc::default();
    let set = |v4: &str, v6: &str| {
        let mut l = lists.lock().unwrap();
        l.insert("/ips-v4".into(), (200, v4.to_string()));
        l.insert("/ips-v6".into(), (200, v6.to_string()));
    };
    let addr = list_server(&cert, lists.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ranges = dir.path().join("cloudflare-ranges.txt");
    let config = dir.path().join("origin-gate.toml");
    std::fs::write(
        &config,
        "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"http://127.0.0.1:9\"\n[trust]\nranges_file = \"cloudflare-ranges.txt\"\n[tls]\nreload_interval = \"1s\"\n",
    )
    .unwrap();

    // The published lists: written, every range printed as added.
    set(V4, V6);
    let (code, out) = tokio::task::spawn_blocking({
        let (config, ca) = (config.clone(), ca.clone());
        move || update(&config, addr, &ca, false)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("+ 173.245.48.0/20")
            && out.contains("updated, 22 ranges (22 added, 0 removed)"),
        "{out}"
    );
    let written = std::fs::read_to_string(&ranges).unwrap();
    assert!(
        written.starts_with("# Cloudflare's edge ranges, written by `origin-gate ranges update`")
    );
    assert_eq!(written.lines().filter(|l| !l.starts_with('#')).count(), 22);

    // A running instance uses the file, and picks a changed one up on its reload timer.
    let gate = GateProcess::spawn(&config);
    let run = |force: bool| {
        let (config, ca) = (config.clone(), ca.clone());
        tokio::task::spawn_blocking(move || update(&config, addr, &ca, force))
    };
    let (code, out) = run(false).await.unwrap();
    assert_eq!(
        (code, out.contains("unchanged, 22 ranges")),
        (0, true),
        "{out}"
    );
    set(&format!("{V4}198.51.100.0/24\n"), V6);
    let (code, out) = run(false).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("+ 198.51.100.0/24") && out.contains("(1 added, 0 removed)"),
        "{out}"
    );
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !seen
        .iter()
        .any(|l: &String| l.contains("trusted ranges reloaded"))
    {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .unwrap_or_else(|| panic!("not picked up:\n{}", seen.join("\n")));
        match gate.log.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("not picked up:\n{}", seen.join("\n")),
        }
    }
    let previous =
        std::fs::read_to_string(dir.path().join("cloudflare-ranges.txt.previous")).unwrap();
    assert_eq!(previous, written);

    // Refused, file untouched, exit 1: a list that shrank by more than half, garbage, empty,
    // a wrong family, an error status.
    let before = std::fs::read_to_string(&ranges).unwrap();
    let shrunk: String = V4.lines().take(5).map(|l| format!("{l}\n")).collect();
    let cases = [
        (
            shrunk.clone(),
            V6.lines()
                .take(2)
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
            "more than half would go",
        ),
        (
            "<html>Service unavailable</html>\n".to_string(),
            V6.to_string(),
            "is not an IPv4 CIDR range",
        ),
        (
            String::new(),
            V6.to_string(),
            "0 ranges, expected between 5",
        ),
        (V6.to_string(), V6.to_string(), "is not an IPv4 CIDR range"),
    ];
    for (v4, v6, why) in &cases {
        set(v4, v6);
        let (code, out) = run(false).await.unwrap();
        assert_eq!(code, 1, "{why}: {out}");
        assert!(out.contains(why), "{why}: {out}");
        assert_eq!(std::fs::read_to_string(&ranges).unwrap(), before, "{why}");
    }
    lists
        .lock()
        .unwrap()
        .insert("/ips-v4".into(), (503, String::new()));
    let (code, out) = run(false).await.unwrap();
    assert_eq!(code, 1);
    assert!(out.contains("answered 503"), "{out}");
    // With --force the shrunken list is taken (a deliberate choice).
    set(
        &shrunk,
        &V6.lines()
            .take(2)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    let (code, out) = run(true).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("updated, 7 ranges"), "{out}");
    drop(gate);
}

#[test]
fn ranges_update_without_a_ranges_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("origin-gate.toml");
    std::fs::write(&config, "[backend]\nurl = \"http://127.0.0.1:9\"\n").unwrap();
    let out = Command::new(binary())
        .args(["ranges", "update", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("trust.ranges_file is not set"));
}
