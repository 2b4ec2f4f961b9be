//! `origin-gate ranges update` against a local HTTPS server (rustls, a test CA passed with
//! `--ca-file`) serving good, unchanged, shrunken (per list), garbage and empty lists: exit codes
//! for cron and systemd, the file written atomically with the previous one kept (and claimed only
//! when there was one), the diff printed, URLs that cannot work refused as usage errors, and a
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

/// Runs `origin-gate ranges update --config <config>` with these arguments: (exit code, output).
fn ranges_update(config: &Path, args: &[String]) -> (i32, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(binary())
        .args(["ranges", "update", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    )
}

/// `ranges update` against the list server, trusting its test CA.
fn update(config: &Path, addr: SocketAddr, ca: &Path, force: bool) -> (i32, String) {
    let mut args = vec![
        "--v4-url".to_string(),
        format!("https://localhost:{}/ips-v4", addr.port()),
        "--v6-url".to_string(),
        format!("https://localhost:{}/ips-v6", addr.port()),
        "--ca-file".to_string(),
        ca.display().to_string(),
    ];
    if force {
        args.push("--force".into());
    }
    ranges_update(config, &args)
}

/// The first `n` lines of a list.
fn first(list: &str, n: usize) -> String {
    list.lines().take(n).map(|l| format!("{l}\n")).collect()
}

/// A list server with its CA written out, and a config whose `trust.ranges_file` is
/// `cloudflare-ranges.txt` beside it.
struct Fixture {
    _cert: TestCert,
    ca: std::path::PathBuf,
    lists: Lists,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    ranges: std::path::PathBuf,
    previous: std::path::PathBuf,
}

impl Fixture {
    async fn new() -> Fixture {
        let cert = TestCert::new(&["localhost"]);
        let ca = cert.dir.path().join("ca.pem");
        std::fs::write(&ca, &cert.ca_pem).unwrap();
        let lists: Lists = Arc::default();
        let addr = list_server(&cert, lists.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("origin-gate.toml");
        std::fs::write(
            &config,
            "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"http://127.0.0.1:9\"\n[trust]\nranges_file = \"cloudflare-ranges.txt\"\n[tls]\nreload_interval = \"1s\"\n",
        )
        .unwrap();
        Fixture {
            _cert: cert,
            ca,
            lists,
            addr,
            ranges: dir.path().join("cloudflare-ranges.txt"),
            previous: dir.path().join("cloudflare-ranges.txt.previous"),
            config,
            _dir: dir,
        }
    }

    fn set(&self, v4: &str, v6: &str) {
        let mut l = self.lists.lock().unwrap();
        l.insert("/ips-v4".into(), (200, v4.to_string()));
        l.insert("/ips-v6".into(), (200, v6.to_string()));
    }

    async fn run(&self, force: bool) -> (i32, String) {
        let (config, addr, ca) = (self.config.clone(), self.addr, self.ca.clone());
        tokio::task::spawn_blocking(move || update(&config, addr, &ca, force))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn ranges_update_fetches_checks_and_writes_atomically() {
    let f = Fixture::new().await;

    // The first write: no file before, so it is compared with the built-in list it replaces,
    // and no .previous is claimed (there is none).
    f.set(V4, V6);
    let (code, out) = f.run(false).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("written, 22 ranges; the file replaces the built-in list of")
            && out.contains("(0 added, 0 removed against it)"),
        "{out}"
    );
    assert!(!out.contains(".previous"), "{out}");
    assert!(!f.previous.exists());
    let written = std::fs::read_to_string(&f.ranges).unwrap();
    assert!(
        written.starts_with("# Cloudflare's edge ranges, written by `origin-gate ranges update`")
    );
    assert!(!written.contains(".previous"), "{written}");
    assert_eq!(written.lines().filter(|l| !l.starts_with('#')).count(), 22);

    // A running instance uses the file, and picks a changed one up on its reload timer.
    let gate = GateProcess::spawn(&f.config);
    // An unchanged list renews the file's age (what the 90-day WARN and doctor read).
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(100 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&f.ranges)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (code, out) = f.run(false).await;
    assert_eq!(
        (code, out.contains("unchanged, 22 ranges")),
        (0, true),
        "{out}"
    );
    let age = std::fs::metadata(&f.ranges)
        .unwrap()
        .modified()
        .unwrap()
        .elapsed()
        .unwrap();
    assert!(age < std::time::Duration::from_secs(3600), "{age:?}");
    f.set(&format!("{V4}198.51.100.0/24\n"), V6);
    let (code, out) = f.run(false).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("+ 198.51.100.0/24")
            && out.contains("updated, 23 ranges (1 added, 0 removed)")
            && out.contains(&format!(
                "the previous list is kept as {}",
                f.previous.display()
            )),
        "{out}"
    );
    assert!(
        gate.wait_log("trusted ranges reloaded", Duration::from_secs(10))
            .is_some(),
        "the running instance did not pick the new file up"
    );
    assert_eq!(std::fs::read_to_string(&f.previous).unwrap(), written);
    assert!(std::fs::read_to_string(&f.ranges)
        .unwrap()
        .contains("kept beside it as cloudflare-ranges.txt.previous"));

    // Refused, file untouched, exit 1: a list that shrank by more than half (both lists, or
    // only one of them while the total has not halved), garbage, empty, a wrong family.
    let before = std::fs::read_to_string(&f.ranges).unwrap();
    let cases = [
        (first(V4, 5), first(V6, 2), "more than half would go"),
        // IPv4 16 -> 6 with IPv6 unchanged: 23 -> 13 in total.
        (
            first(V4, 6),
            V6.to_string(),
            "the new IPv4 list has 6 ranges where",
        ),
        // IPv6 7 -> 3 with IPv4 unchanged.
        (
            V4.to_string(),
            first(V6, 3),
            "the new IPv6 list has 3 ranges where",
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
        f.set(v4, v6);
        let (code, out) = f.run(false).await;
        assert_eq!(code, 1, "{why}: {out}");
        assert!(out.contains(why), "{why}: {out}");
        assert_eq!(std::fs::read_to_string(&f.ranges).unwrap(), before, "{why}");
    }
    f.lists
        .lock()
        .unwrap()
        .insert("/ips-v4".into(), (503, String::new()));
    let (code, out) = f.run(false).await;
    assert_eq!(code, 1);
    assert!(out.contains("answered 503"), "{out}");
    // With --force a shrunken list is taken (a deliberate choice).
    f.set(&first(V4, 6), V6);
    let (code, out) = f.run(true).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("updated, 13 ranges"), "{out}");
    drop(gate);
}

#[tokio::test]
async fn a_first_write_that_would_halve_the_built_in_list_is_refused() {
    // With no file yet, the list is compared with the built-in one it is about to replace.
    let f = Fixture::new().await;
    f.set(&first(V4, 6), V6);
    let (code, out) = f.run(false).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the new IPv4 list has 6 ranges where the built-in list of")
            && out.contains("has 15: more than half would go"),
        "{out}"
    );
    assert!(!f.ranges.exists() && !f.previous.exists());
    let (code, out) = f.run(true).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("written, 13 ranges; the file replaces the built-in list of")
            && out.contains("(0 added, 9 removed against it)")
            && out.contains("- 198.41.128.0/17")
            && !out.contains("- 2405:8100::/32"),
        "{out}"
    );
    assert!(f.ranges.exists() && !f.previous.exists());
    assert!(!out.contains(".previous"), "{out}");
}

#[test]
fn urls_that_cannot_work_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("origin-gate.toml");
    std::fs::write(
        &config,
        "[backend]\nurl = \"http://127.0.0.1:9\"\n[trust]\nranges_file = \"cloudflare-ranges.txt\"\n",
    )
    .unwrap();
    let https = "https://127.0.0.1:9/ok";
    let rows = [
        (
            "--v4-url",
            "http://127.0.0.1:18099/v4",
            "--v4-url must be an https:// URL: the list decides whom origin-gate trusts",
        ),
        (
            "--v6-url",
            "http://127.0.0.1:18099/v6",
            "--v6-url must be an https:// URL: the list decides whom origin-gate trusts",
        ),
        (
            "--v4-url",
            "notaurl",
            "--v4-url \"notaurl\" is not a URL; give an absolute https:// URL",
        ),
        ("--v6-url", "www.cloudflare.com/ips-v6", "is not a URL"),
    ];
    for (flag, url, says) in rows {
        let other = if flag == "--v4-url" {
            "--v6-url"
        } else {
            "--v4-url"
        };
        let args = [flag, url, other, https].map(String::from);
        let (code, out) = ranges_update(&config, &args);
        assert_eq!(code, 2, "{flag} {url}: {out}");
        assert!(out.contains(says), "{flag} {url}: {out}");
        assert!(!out.contains("cannot fetch"), "{flag} {url}: {out}");
        assert!(!dir.path().join("cloudflare-ranges.txt").exists());
        // Found before the configuration is read.
        let (code, out) = ranges_update(&dir.path().join("missing.toml"), &args);
        assert_eq!(code, 2, "{flag} {url}: {out}");
        assert!(out.contains(says), "{flag} {url}: {out}");
    }
}

#[test]
fn ranges_update_without_a_ranges_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("origin-gate.toml");
    std::fs::write(&config, "[backend]\nurl = \"http://127.0.0.1:9\"\n").unwrap();
    let (code, out) = ranges_update(&config, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("trust.ranges_file is not set")
            && out.contains("ranges_file = \"/var/lib/origin-gate/cloudflare-ranges.txt\""),
        "{out}"
    );
}
