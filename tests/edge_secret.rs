//! "From Cloudflare's ranges" is not "from my zone": with `trust.edge_header` and
//! `trust.edge_secret_file`, a peer in the trusted ranges (127.0.0.2 here) is believed only when
//! it presents the secret its owner's Transform Rule adds. The secret never reaches the backend
//! and never appears in a log; a changed secret is picked up on reload with an overlap.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::raw_backend::{raw_http1, RawBackend, RawReply, Seen};
use common::*;

const T: &str = TRUSTED_SRC;
const U: &str = UNTRUSTED_SRC;
const SECRET: &str = "9f2c41d7b0e85a63c1d4e7f0a2b5c8d1";
const ACME: &str = "/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";

fn config(backend: &str, extra: &str) -> String {
    format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{backend}\"\n[trust]\nextra = [\"127.0.0.2/32\"]\nedge_header = \"X-Origin-Auth\"\nedge_secret_file = \"edge.secret\"\n{extra}"
    )
}

async fn gate(backend: &RawBackend, extra: &str) -> (Gate, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("edge.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let gate = Gate::start_in(dir, &config(&backend.url(), extra)).await;
    (gate, secret)
}

/// Sends `GET path` from `src` with these raw header lines; returns the status and what the
/// backend saw (at most one request).
async fn exchange(
    gate: &Gate,
    backend: &RawBackend,
    src: &str,
    path: &str,
    lines: &[(&str, &str)],
) -> (u16, Option<Seen>) {
    backend.take();
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n");
    for (n, v) in lines {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    text.push_str("\r\n");
    let mut s = connect_from(src, gate.http).await;
    let (status, _, _) = raw_http1(&mut s, text.as_bytes()).await;
    let mut seen = backend.take();
    assert!(seen.len() <= 1, "{seen:?}");
    (status, seen.pop())
}

fn no_secret_reached(seen: &Seen) {
    assert!(seen.cgi("HTTP_X_ORIGIN_AUTH").is_empty(), "{seen:?}");
    assert!(
        !seen.headers.iter().any(|(_, v)| v.contains(SECRET)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn only_peers_presenting_the_secret_are_believed() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let (gate, _) = gate(&backend, "").await;
    let cf = ("CF-Connecting-IP", "203.0.113.7");
    let wrong = "9f2c41d7b0e85a63c1d4e7f0a2b5c8d2";
    for (name, src, lines, believed) in [
        ("in the ranges, no secret", T, vec![cf], false),
        (
            "in the ranges, the secret",
            T,
            vec![cf, ("X-Origin-Auth", SECRET)],
            true,
        ),
        (
            "header name in another case",
            T,
            vec![cf, ("x-origin-auth", SECRET)],
            true,
        ),
        (
            "in the ranges, a wrong secret",
            T,
            vec![cf, ("X-Origin-Auth", wrong)],
            false,
        ),
        (
            "a prefix of the secret",
            T,
            vec![cf, ("X-Origin-Auth", &SECRET[..16])],
            false,
        ),
        (
            "the secret twice",
            T,
            vec![cf, ("X-Origin-Auth", SECRET), ("X-Origin-Auth", SECRET)],
            false,
        ),
        (
            "the secret and a wrong one",
            T,
            vec![cf, ("X-Origin-Auth", wrong), ("X-Origin-Auth", SECRET)],
            false,
        ),
        (
            "the underscore twin",
            T,
            vec![cf, ("X_Origin_Auth", SECRET)],
            false,
        ),
        (
            "outside the ranges, the secret",
            U,
            vec![cf, ("X-Origin-Auth", SECRET)],
            false,
        ),
    ] {
        let (status, seen) = exchange(&gate, &backend, src, "/", &lines).await;
        assert_eq!(status, 200, "{name}");
        let seen = seen.unwrap();
        let want = if believed { "203.0.113.7" } else { src };
        assert_eq!(seen.cgi("HTTP_X_FORWARDED_FOR"), [want], "{name}");
        assert_eq!(seen.cgi("HTTP_X_REAL_IP"), [want], "{name}");
        let cf_passed = seen.cgi("HTTP_CF_CONNECTING_IP");
        assert_eq!(cf_passed.is_empty(), !believed, "{name}: {cf_passed:?}");
        no_secret_reached(&seen);
    }
}

#[tokio::test]
async fn lockdown_refuses_the_ranges_without_the_secret_except_acme() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let (gate, _) = gate(&backend, "only_trusted_peers = true\n").await;
    let (status, seen) = exchange(&gate, &backend, T, "/wp-login.php", &[]).await;
    assert_eq!((status, seen.is_none()), (403, true), "no secret: lockdown");
    let with = [("X-Origin-Auth", SECRET)];
    let (status, seen) = exchange(&gate, &backend, T, "/wp-login.php", &with).await;
    assert_eq!(status, 200);
    no_secret_reached(&seen.unwrap());
    let (status, seen) = exchange(&gate, &backend, U, ACME, &[]).await;
    assert_eq!(
        status, 200,
        "the CA fetches the challenge without any secret"
    );
    assert_eq!(seen.unwrap().target, ACME);
}

#[tokio::test]
async fn a_changed_secret_is_reloaded_and_the_old_one_overlaps() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let (gate, file) = gate(&backend, "only_trusted_peers = true\n").await;
    let new = "0123456789abcdef0123456789abcdef-new";
    std::fs::write(&file, new).unwrap();
    let outcome = gate.reloader.reload().await;
    assert!(outcome.edge_reloaded, "{outcome:?}");
    for secret in [new, SECRET] {
        let (status, seen) = exchange(&gate, &backend, T, "/", &[("X-Origin-Auth", secret)]).await;
        assert_eq!(status, 200, "{secret} during the overlap");
        no_secret_reached(&seen.unwrap());
    }
    let (status, _) = exchange(
        &gate,
        &backend,
        T,
        "/",
        &[("X-Origin-Auth", "x".repeat(32).as_str())],
    )
    .await;
    assert_eq!(status, 403);
    // A broken file keeps what is in force.
    std::fs::write(&file, "short").unwrap();
    let outcome = gate.reloader.reload().await;
    assert!(outcome.edge_refused, "{outcome:?}");
    let (status, _) = exchange(&gate, &backend, T, "/", &[("X-Origin-Auth", new)]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_config_reload_with_a_new_secret_file_keeps_the_old_secret_for_the_overlap() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let (gate, file) = gate(&backend, "only_trusted_peers = true\n").await;
    let dir = file.parent().unwrap();
    std::fs::write(dir.join("next.secret"), "fedcba9876543210fedcba9876543210").unwrap();
    let text = config(&backend.url(), "only_trusted_peers = true\n")
        .replace("edge.secret", "next.secret")
        + "edge_secret_overlap = \"10m\"\n[log]\naccess = \"off\"\n";
    std::fs::write(dir.join("origin-gate.toml"), text).unwrap();
    let outcome = gate.reloader.reload_config().await;
    assert!(outcome.config_reloaded, "{outcome:?}");
    for secret in ["fedcba9876543210fedcba9876543210", SECRET] {
        let (status, _) = exchange(&gate, &backend, T, "/", &[("X-Origin-Auth", secret)]).await;
        assert_eq!(status, 200, "{secret}");
    }
}

/// After a leak: `edge_secret_overlap = "0s"` revokes the previous secret the moment the new
/// one is read.
#[tokio::test]
async fn a_zero_overlap_revokes_the_old_secret_at_once() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let (gate, file) = gate(
        &backend,
        "only_trusted_peers = true\nedge_secret_overlap = \"0s\"\n",
    )
    .await;
    std::fs::write(&file, "fresh-secret-0123456789abcdef").unwrap();
    assert!(gate.reloader.reload().await.edge_reloaded);
    let (status, _) = exchange(&gate, &backend, T, "/", &[("X-Origin-Auth", SECRET)]).await;
    assert_eq!(status, 403, "the leaked secret must be refused at once");
    let (status, _) = exchange(
        &gate,
        &backend,
        T,
        "/",
        &[("X-Origin-Auth", "fresh-secret-0123456789abcdef")],
    )
    .await;
    assert_eq!(status, 200);
}

/// The real binary at debug level with a JSON access log: the secret appears in no line.
#[tokio::test]
async fn the_secret_is_never_logged() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("edge.secret"), SECRET).unwrap();
    let path = dir.path().join("origin-gate.toml");
    std::fs::write(
        &path,
        config(
            &backend.url(),
            "[log]\nlevel = \"debug\"\naccess = \"json\"\n",
        ),
    )
    .unwrap();
    let gate = GateProcess::spawn(&path);
    assert!(gate.startup.iter().all(|l| !l.contains(SECRET)));
    let mut s = connect_from(T, gate.http).await;
    for lines in [
        format!("X-Origin-Auth: {SECRET}\r\n"),
        "X-Origin-Auth: wrong-wrong-wrong-wrong\r\n".to_string(),
        format!("X_Origin_Auth: {SECRET}\r\nReferer: https://example.com/\r\n"),
    ] {
        let req = format!("GET /?q=1 HTTP/1.1\r\nHost: example.com\r\n{lines}\r\n");
        assert_eq!(raw_http1(&mut s, req.as_bytes()).await.0, 200);
    }
    let (status, _, _) = raw_http1(&mut s, b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n").await;
    assert_eq!(status, 400);
    for line in gate.access_lines(4) {
        assert!(!line.contains(SECRET), "{line}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .expect("the bad-request line within 10 s");
        let line = gate.log.recv_timeout(left).unwrap();
        assert!(!line.contains(SECRET), "{line}");
        if line.contains("bad request") {
            break;
        }
    }
}

fn check(dir: &Path, toml: &str) -> (bool, String) {
    let path = dir.join("origin-gate.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_validates_the_secret_and_warns_when_the_ranges_are_the_only_proof() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"http://127.0.0.1:9\"\n[trust]\n";
    // Missing file, too short, header without file, reserved header name.
    let (ok, out) = check(
        d,
        &format!("{base}edge_header = \"X-Origin-Auth\"\nedge_secret_file = \"missing.secret\"\n"),
    );
    assert!(
        !ok && out.contains("trust.edge_secret_file: ")
            && out.contains("missing.secret: cannot read the edge secret"),
        "{out}"
    );
    std::fs::write(d.join("short.secret"), "abc\n").unwrap();
    let (ok, out) = check(
        d,
        &format!("{base}edge_header = \"X-Origin-Auth\"\nedge_secret_file = \"short.secret\"\n"),
    );
    assert!(!ok && out.contains("openssl rand -hex 32"), "{out}");
    let (ok, out) = check(d, &format!("{base}edge_header = \"X-Origin-Auth\"\n"));
    assert!(
        !ok && out.contains("trust.edge_header: needs trust.edge_secret_file"),
        "{out}"
    );
    std::fs::write(d.join("good.secret"), SECRET).unwrap();
    let (ok, out) = check(
        d,
        &format!("{base}edge_header = \"CF-Connecting-IP\"\nedge_secret_file = \"good.secret\"\n"),
    );
    assert!(
        !ok && out.contains("trust.edge_header: \"CF-Connecting-IP\" cannot carry"),
        "{out}"
    );

    // Lockdown on the ranges alone: valid, with a WARN that names the fix.
    let (ok, out) = check(d, &format!("{base}only_trusted_peers = true\n"));
    assert!(ok, "{out}");
    assert!(
        out.contains("WARN trust.only_trusted_peers relies on Cloudflare's address ranges alone"),
        "{out}"
    );
    assert!(out.contains("trust.edge_header"), "{out}");
    let (ok, out) = check(
        d,
        &format!("{base}[[access]]\nprefix = \"/wp-admin/\"\nallow = [\"203.0.113.0/24\"]\n"),
    );
    assert!(
        ok && out.contains("WARN [[access]] IP allow/deny lists rely"),
        "{out}"
    );
    // Cloudflare's ranges listed by hand instead of the built-in list: the same warning.
    let cf_by_hand = "cloudflare = false\nextra = [\"173.245.48.0/20\", \"104.16.0.0/13\"]\nonly_trusted_peers = true\n";
    let (ok, out) = check(d, &format!("{base}{cf_by_hand}"));
    assert!(
        ok && out.contains("WARN trust.only_trusted_peers relies"),
        "{out}"
    );
    // With the secret: no warning, and the report says the secret is required.
    let (ok, out) = check(d, &format!("{base}only_trusted_peers = true\nedge_header = \"X-Origin-Auth\"\nedge_secret_file = \"good.secret\"\n"));
    assert!(ok, "{out}");
    assert!(!out.contains("WARN"), "{out}");
    assert!(
        out.contains("edge secret: peers in the trusted ranges must send x-origin-auth"),
        "{out}"
    );
    assert!(!out.contains(SECRET), "{out}");

    // Your own Authenticated Origin Pulls CA, required for trust, proves the zone too; Cloudflare's
    // shared origin-pull CA (every account's edge presents it) does not.
    for (ca_name, warned) in [
        ("Example Zone AOP CA", false),
        ("origin-pull.cloudflare.net", true),
    ] {
        std::fs::write(d.join("client-ca.pem"), TestCa::new(ca_name).pem()).unwrap();
        let (ok, out) = check(
            d,
            &format!(
                "{base}only_trusted_peers = true
require_client_cert = true
[tls]
client_ca = \"client-ca.pem\"
"
            ),
        );
        assert!(ok, "{out}");
        assert_eq!(out.contains("WARN"), warned, "{ca_name}: {out}");
    }
}
