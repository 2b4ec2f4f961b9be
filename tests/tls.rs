//! TLS on the origin: SNI selection, the self-signed fallback, reload on renewal (certbot's
//! symlink swap), broken renewals, expiry alarms, client certificates — with real TLS clients,
//! including `openssl s_client`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;

/// The serial of a certificate, upper-case hex without separators (as `openssl x509 -serial`).
fn serial(der: &CertificateDer<'_>) -> String {
    origin_gate::serve::tls::summarize(der)
        .unwrap()
        .serial
        .replace(':', "")
        .to_uppercase()
}

/// The leaf certificate origin-gate presents for `sni` (None: no SNI extension at all).
async fn served(addr: SocketAddr, sni: Option<&str>) -> CertificateDer<'static> {
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).unwrap(),
        // rustls sends no SNI for an IP address.
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(insecure_client(&[b"http/1.1"]))
        .connect(name, stream)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// certbot's layout: `live/<name>/{fullchain,privkey}.pem` are symlinks into `archive/<name>/`,
/// and a renewal writes `fullchainN.pem` and swaps the links.
struct CertbotDir {
    dir: tempfile::TempDir,
    name: String,
}

impl CertbotDir {
    fn new(name: &str, first: &Issued) -> CertbotDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("archive").join(name)).unwrap();
        std::fs::create_dir_all(dir.path().join("live").join(name)).unwrap();
        let c = CertbotDir {
            dir,
            name: name.into(),
        };
        c.install(1, &first.cert_pem, &first.key_pem);
        c
    }

    fn live(&self, file: &str) -> PathBuf {
        self.dir.path().join("live").join(&self.name).join(file)
    }

    /// Writes archive version `n` and atomically re-points the live symlinks at it.
    fn install(&self, n: u32, cert_pem: &str, key_pem: &str) {
        let archive = self.dir.path().join("archive").join(&self.name);
        for (file, content) in [("fullchain", cert_pem), ("privkey", key_pem)] {
            let target = archive.join(format!("{file}{n}.pem"));
            std::fs::write(&target, content).unwrap();
            let tmp = self.live(&format!("{file}.pem.new"));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(
                Path::new("../../archive")
                    .join(&self.name)
                    .join(format!("{file}{n}.pem")),
                &tmp,
            )
            .unwrap();
            std::fs::rename(&tmp, self.live(&format!("{file}.pem"))).unwrap();
        }
    }

    fn toml(&self) -> String {
        format!(
            "[[tls.certs]]\ncert = {:?}\nkey = {:?}\n",
            self.live("fullchain.pem"),
            self.live("privkey.pem")
        )
    }
}

/// A certificate for example.com (`days_left`), its renewal, and certbot's layout holding the
/// first one.
fn renewal_setup(days_left: i64) -> (Issued, Issued, CertbotDir) {
    let ca = TestCa::new("test CA");
    let v1 = ca.issue(&["example.com"], 0x1111_0000_0000_0001, days_left);
    let v2 = ca.issue(&["example.com"], 0x1111_0000_0000_0002, 90);
    let certbot = CertbotDir::new("example.com", &v1);
    (v1, v2, certbot)
}

/// The real binary serving `certbot`'s certificate, re-reading files every `reload_interval`.
fn spawn_with_certbot(
    backend: &Backend,
    certbot: &CertbotDir,
    reload_interval: &str,
) -> GateProcess {
    let path = certbot.dir.path().join("og.toml");
    std::fs::write(
        &path,
        format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n[backend]\nurl = \"{}\"\n[tls]\nreload_interval = \"{reload_interval}\"\n{}",
            backend.url(),
            certbot.toml()
        ),
    )
    .unwrap();
    GateProcess::spawn(&path)
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_default_then_fallback() {
    let backend = Backend::start().await;
    let ca = TestCa::new("test CA");
    let site = ca.issue(
        &["example.com", "www.example.com"],
        0x1111_0000_0000_0001,
        60,
    );
    let wild = ca.issue(&["*.example.net"], 0x2222_0000_0000_0002, 60);
    let shop = ca.issue(&["shop.example.net"], 0x3333_0000_0000_0003, 60);
    let dir = tempfile::tempdir().unwrap();
    let mut certs = String::new();
    for (i, c) in [&site, &wild, &shop].iter().enumerate() {
        std::fs::write(dir.path().join(format!("c{i}.pem")), &c.cert_pem).unwrap();
        std::fs::write(dir.path().join(format!("k{i}.pem")), &c.key_pem).unwrap();
        certs.push_str(&format!(
            "[[tls.certs]]\ncert = \"c{i}.pem\"\nkey = \"k{i}.pem\"\n"
        ));
    }
    let base = format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n[backend]\nurl = \"{}\"\n",
        backend.url()
    );
    let gate = Gate::start_in(dir, &format!("{base}{certs}")).await;
    let s = |c: &Issued| serial(&c.chain[0]);
    let https = gate.https();
    assert_eq!(serial(&served(https, Some("example.com")).await), s(&site));
    assert_eq!(
        serial(&served(https, Some("WWW.example.com")).await),
        s(&site)
    );
    assert_eq!(
        serial(&served(https, Some("blog.example.net")).await),
        s(&wild)
    );
    assert_eq!(
        serial(&served(https, Some("shop.example.net")).await),
        s(&shop),
        "exact beats wildcard"
    );
    // One label only: a.b.example.net is not covered by *.example.net.
    let fallback = served(https, Some("a.b.example.net")).await;
    let summary = origin_gate::serve::tls::summarize(&fallback).unwrap();
    assert!(
        summary.issuer.contains("rcgen self signed cert"),
        "{}",
        summary.issuer
    );
    let no_sni = served(https, None).await;
    assert_eq!(
        serial(&no_sni),
        serial(&fallback),
        "no SNI gets the fallback"
    );

    // With tls.default, no SNI and unknown names get that certificate instead.
    let dir2 = tempfile::tempdir().unwrap();
    for (i, c) in [&site, &wild, &shop].iter().enumerate() {
        std::fs::write(dir2.path().join(format!("c{i}.pem")), &c.cert_pem).unwrap();
        std::fs::write(dir2.path().join(format!("k{i}.pem")), &c.key_pem).unwrap();
    }
    let gate = Gate::start_in(
        dir2,
        &format!("{base}[tls]\ndefault = \"www.example.com\"\n{certs}"),
    )
    .await;
    assert_eq!(serial(&served(gate.https(), None).await), s(&site));
    assert_eq!(
        serial(&served(gate.https(), Some("unknown.org")).await),
        s(&site)
    );
}

#[tokio::test]
async fn certbot_symlink_swap_is_served_after_reload_without_restart() {
    let backend = Backend::start().await;
    let (v1, v2, certbot) = renewal_setup(20);
    let gate = Gate::start(&backend.url(), &certbot.toml()).await;
    assert_eq!(
        serial(&served(gate.https(), Some("example.com")).await),
        serial(&v1.chain[0])
    );

    // Same content: nothing to do (content is compared, not modification times).
    assert_eq!(gate.reloader.reload().await.certs_reloaded, 0);

    // An open connection keeps working across the swap.
    let mut open = h1_tls("127.0.0.1", gate.https()).await;
    certbot.install(2, &v2.cert_pem, &v2.key_pem);
    let outcome = gate.reloader.reload().await;
    assert_eq!((outcome.certs_reloaded, outcome.certs_refused), (1, 0));
    assert_eq!(
        serial(&served(gate.https(), Some("example.com")).await),
        serial(&v2.chain[0])
    );
    assert_eq!(
        send(&mut open, request("GET", "/", &[], empty()))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_corrupt_or_mismatched_renewal_keeps_the_old_certificate() {
    let backend = Backend::start().await;
    let (v1, v2, certbot) = renewal_setup(60);
    let gate = Gate::start(&backend.url(), &certbot.toml()).await;

    certbot.install(2, "-----BEGIN CERTIFICATE-----\ntruncated\n", &v2.key_pem);
    let outcome = gate.reloader.reload().await;
    assert_eq!((outcome.certs_reloaded, outcome.certs_refused), (0, 1));
    assert_eq!(
        serial(&served(gate.https(), Some("example.com")).await),
        serial(&v1.chain[0])
    );

    // The new certificate with the old key: refused too.
    certbot.install(3, &v2.cert_pem, &v1.key_pem);
    let outcome = gate.reloader.reload().await;
    assert_eq!((outcome.certs_reloaded, outcome.certs_refused), (0, 1));
    assert_eq!(
        serial(&served(gate.https(), Some("example.com")).await),
        serial(&v1.chain[0])
    );

    // The files deleted: still the old certificate.
    std::fs::remove_file(certbot.live("fullchain.pem")).unwrap();
    assert_eq!(gate.reloader.reload().await.certs_refused, 1);
    assert_eq!(
        serial(&served(gate.https(), Some("example.com")).await),
        serial(&v1.chain[0])
    );

    // And a good pair afterwards is picked up.
    certbot.install(4, &v2.cert_pem, &v2.key_pem);
    assert_eq!(gate.reloader.reload().await.certs_reloaded, 1);
    assert_eq!(
        serial(&served(gate.https(), Some("example.com")).await),
        serial(&v2.chain[0])
    );
}

fn openssl_serial(addr: SocketAddr, sni: &str) -> String {
    let s_client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            sni,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl not found: run the README's test command (.ci/run), which installs it");
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    x509.stdin
        .take()
        .unwrap()
        .write_all(&s_client.stdout)
        .unwrap();
    let out = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_string()
}

#[tokio::test]
async fn sighup_reload_seen_by_openssl_s_client_and_broken_renewal_logged_as_error() {
    let backend = Backend::start().await;
    let (v1, v2, certbot) = renewal_setup(60);
    let gate = spawn_with_certbot(&backend, &certbot, "1h");
    let https = gate.https.unwrap();
    assert_eq!(openssl_serial(https, "example.com"), serial(&v1.chain[0]));

    certbot.install(2, &v2.cert_pem, &v2.key_pem);
    gate.signal("HUP");
    let line = gate
        .wait_log("certificate reloaded", Duration::from_secs(10))
        .expect("no reload log line");
    assert!(line.contains(" INFO "), "{line}");
    assert_eq!(openssl_serial(https, "example.com"), serial(&v2.chain[0]));

    certbot.install(3, &v1.cert_pem, &v2.key_pem);
    gate.signal("HUP");
    let line = gate
        .wait_log("certificate reload refused", Duration::from_secs(10))
        .expect("no refusal log line");
    assert!(line.contains(" ERROR "), "{line}");
    assert!(line.contains("does not match the certificate"), "{line}");
    assert_eq!(openssl_serial(https, "example.com"), serial(&v2.chain[0]));
}

#[tokio::test]
async fn renewal_is_picked_up_by_the_reload_timer() {
    let backend = Backend::start().await;
    let (_v1, v2, certbot) = renewal_setup(60);
    let gate = spawn_with_certbot(&backend, &certbot, "200ms");
    certbot.install(2, &v2.cert_pem, &v2.key_pem);
    gate.wait_log("certificate reloaded", Duration::from_secs(10))
        .expect("the timer did not reload");
    assert_eq!(
        serial(&served(gate.https.unwrap(), Some("example.com")).await),
        serial(&v2.chain[0])
    );
}

#[tokio::test]
async fn expiry_and_coverage_alarms_are_logged_at_start() {
    let backend = Backend::start().await;
    let ca = TestCa::new("test CA");
    // A 90-day certificate with 10 days left: renewal (due with 30 days left) has failed for
    // 20 days. A fresh 6-day certificate is healthy, however few days it has.
    let soon = ca.issue_lifetime(&["soon.example.com"], 0x1111_0000_0000_0001, 90, 10);
    let short = ca.issue_lifetime(&["short.example.com"], 0x1111_0000_0000_0004, 6, 5);
    let expired = ca.issue(&["old.example.com"], 0x1111_0000_0000_0002, -3);
    let healthy = ca.issue(&["example.com"], 0x1111_0000_0000_0003, 80);
    let dir = tempfile::tempdir().unwrap();
    for (n, c) in [
        ("soon", &soon),
        ("expired", &expired),
        ("healthy", &healthy),
        ("short", &short),
    ] {
        std::fs::write(dir.path().join(format!("{n}.pem")), &c.cert_pem).unwrap();
        std::fs::write(dir.path().join(format!("{n}.key")), &c.key_pem).unwrap();
    }
    let path = dir.path().join("og.toml");
    std::fs::write(
        &path,
        format!(
            "server_names = [\"example.com\", \"www.example.com\", \"soon.example.com\"]\n[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n[backend]\nurl = \"{}\"\n\
             [[tls.certs]]\ncert = \"soon.pem\"\nkey = \"soon.key\"\n\
             [[tls.certs]]\ncert = \"expired.pem\"\nkey = \"expired.key\"\n\
             [[tls.certs]]\ncert = \"healthy.pem\"\nkey = \"healthy.key\"\nhosts = [\"example.com\", \"www.example.com\"]\n\
             [[tls.certs]]\ncert = \"short.pem\"\nkey = \"short.key\"\n",
            backend.url()
        ),
    )
    .unwrap();
    // Alarms are logged before the listeners report "listening".
    let gate = GateProcess::spawn(&path);
    let lines = gate.startup.clone();
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", lines.join("\n")))
    };
    let l = find("certificate renewal overdue, under a quarter of its lifetime: 10 days left of a 90-day lifetime");
    assert!(l.contains(" WARN ") && l.contains("soon.pem"), "{l}");
    // Due with 30 days left, 20 days ago: about 40 tries at twice a day.
    assert!(
        l.contains("about 39 twice-daily") || l.contains("about 40 twice-daily"),
        "{l}"
    );
    let l = find("certificate valid, 5 days left of a 6-day lifetime");
    assert!(
        l.contains(" INFO ") && l.contains("certificate valid, 5 days left of a 6-day lifetime"),
        "{l}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("short.pem") && (l.contains(" WARN ") || l.contains(" ERROR "))),
        "{}",
        lines.join("\n")
    );
    let l = find("certificate EXPIRED");
    assert!(l.contains(" ERROR ") && l.contains("expired.pem"), "{l}");
    let l = find("does not cover the configured host \"www.example.com\"");
    assert!(l.contains(" ERROR ") && l.contains("healthy.pem"), "{l}");
    let l = find("certificate valid, 80 days left");
    assert!(l.contains(" INFO "), "{l}");

    // `check` lists each certificate with its figures and problems.
    let out = Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("soon.pem: names [soon.example.com], issuer CN=test CA"),
        "{stdout}"
    );
    assert!(
        stdout.contains("9 days left") || stdout.contains("10 days left"),
        "{stdout}"
    );
    assert!(
        stdout.contains("WARN")
            && stdout.contains("EXPIRED")
            && stdout.contains("(doctor fails on this)"),
        "{stdout}"
    );
    drop(gate);
}

/// Sends one request over TLS presenting `identity` (or none); Err when the server refused.
async fn mtls_get(
    addr: SocketAddr,
    identity: Option<&TestCa>,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let builder = rustls::ClientConfig::builder_with_provider(origin_gate::serve::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(insecure_verifier());
    let cfg = match identity {
        Some(client_ca) => {
            let (chain, key) = client_ca.client_identity(0x4444_0000_0000_0001);
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let stream = connect_from(TRUSTED_SRC, addr).await;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("example.com").unwrap(), stream)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(request("GET", "/", headers, empty()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(collect(resp).await)
}

fn insecure_verifier() -> Arc<dyn rustls::client::danger::ServerCertVerifier> {
    Arc::new(AnyCert)
}

#[tokio::test]
async fn authenticated_origin_pulls_required_optional_and_forged_headers() {
    let backend = Backend::start().await;
    let client_ca = TestCa::new("origin-pull CA");
    let stranger_ca = TestCa::new("some other CA");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("origin-pull-ca.pem"), client_ca.pem()).unwrap();
    let base = format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n[backend]\nurl = \"{}\"\n",
        backend.url()
    );
    let forged = [("cf-connecting-ip", "203.0.113.50")];

    // required: no certificate, or one from another CA, gets no answer at all.
    let gate = Gate::start_in(dir, &format!("{base}[trust]\nextra = [\"127.0.0.2/32\"]\n[tls]\nclient_ca = \"origin-pull-ca.pem\"\nclient_auth = \"required\"\n")).await;
    assert!(mtls_get(gate.https(), None, &[]).await.is_err());
    assert!(mtls_get(gate.https(), Some(&stranger_ca), &[])
        .await
        .is_err());
    let a = mtls_get(gate.https(), Some(&client_ca), &forged)
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.seen("x-real-ip").as_deref(), Some("203.0.113.50"));

    // optional + require_client_cert: without a certificate the trusted address alone is not
    // enough, forged headers are dropped; with one they are believed.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("origin-pull-ca.pem"), client_ca.pem()).unwrap();
    let gate = Gate::start_in(
        dir,
        &format!("{base}[trust]\nextra = [\"127.0.0.2/32\"]\nrequire_client_cert = true\n[tls]\nclient_ca = \"origin-pull-ca.pem\"\nclient_auth = \"optional\"\n"),
    )
    .await;
    let a = mtls_get(gate.https(), None, &forged).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.seen("x-real-ip").as_deref(), Some(TRUSTED_SRC));
    assert_eq!(a.seen("cf-connecting-ip"), None);
    let a = mtls_get(gate.https(), Some(&client_ca), &forged)
        .await
        .unwrap();
    assert_eq!(a.seen("x-real-ip").as_deref(), Some("203.0.113.50"));
    // The plain listener cannot carry a client certificate: never trusted under require_client_cert.
    let a = get(TRUSTED_SRC, gate.http, "/", &forged).await;
    assert_eq!(a.seen("x-real-ip").as_deref(), Some(TRUSTED_SRC));

    // absent: no client_ca, client certificates are not asked for; address trust as usual.
    let gate = Gate::start(&backend.url(), "[trust]\nextra = [\"127.0.0.2/32\"]\n").await;
    let a = mtls_get(gate.https(), None, &forged).await.unwrap();
    assert_eq!(a.seen("x-real-ip").as_deref(), Some("203.0.113.50"));
}

#[tokio::test]
async fn a_silent_tls_client_is_dropped_after_the_handshake_timeout() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), "[tls]\nhandshake_timeout = \"300ms\"\n").await;
    let mut silent = tokio::net::TcpStream::connect(gate.https()).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("connection not closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        started.elapsed()
    );
    // Others are served meanwhile.
    assert!(!serial(&served(gate.https(), Some("localhost")).await).is_empty());
}

#[tokio::test]
async fn curl_resolve_reaches_the_right_site_over_tls() {
    // A real external client with certificate verification against the test CA.
    let backend = Backend::start().await;
    let cert = TestCert::new(&["example.com"]);
    let ca = cert.dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.ca_pem).unwrap();
    let gate = Gate::start(&backend.url(), &cert.toml()).await;
    let port = gate.https().port();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-s", "--http1.1", "--cacert"])
            .arg(&ca)
            .args([
                "--resolve",
                &format!("example.com:{port}:127.0.0.1"),
                &format!("https://example.com:{port}/via-curl"),
            ])
            .output()
            .expect("curl not found: run the README's test command (.ci/run)")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["uri"], "/via-curl");
    assert_eq!(v["headers"]["x-forwarded-proto"][0], "https");
}

#[tokio::test]
async fn tls_sessions_resume() {
    let backend = Backend::start().await;
    let cert = TestCert::new(&["example.com"]);
    let gate = Gate::start(&backend.url(), &cert.toml()).await;
    // One client configuration (and so one session cache) for both connections.
    let client = cert.client(&[b"http/1.1"]);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let mut tls = tls_connect("127.0.0.1", gate.https(), client.clone(), "example.com").await;
        // TLS 1.3 tickets arrive after the handshake: read a response so the client stores one.
        use tokio::io::AsyncWriteExt;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf).await;
        assert!(
            buf.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        kinds.push(tls.get_ref().1.handshake_kind());
    }
    assert_eq!(
        kinds,
        vec![
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}
