//! `origin-gate doctor` against a healthy setup and against the classic broken ones: a looping
//! backend, a backend that protects or redirects the challenge path, an expired certificate, a
//! certificate without the www. name.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::process::Command;

use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Setup {
    dir: tempfile::TempDir,
    _backend: Backend,
    _gate: Option<GateProcess>,
}

/// A backend in `mode`, a certificate for `names` with `days_left`, and origin-gate running
/// on fixed loopback ports (doctor reads the addresses from the config).
async fn setup(
    mode: BackendMode,
    names: &[&str],
    days_left: i64,
    extra: &str,
    run_gate: bool,
) -> Setup {
    let backend = Backend::start_mode(mode).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("doctor test CA");
    let cert = ca.issue(names, 0x7777_0000_0000_0001, days_left);
    std::fs::write(dir.path().join("fullchain.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("privkey.pem"), &cert.key_pem).unwrap();
    std::fs::write(
        dir.path().join("og.toml"),
        format!(
            "server_names = [\"example.com\", \"www.example.com\"]\n\
             [listen]\nhttp = [\"127.0.0.1:{}\"]\nhttps = [\"127.0.0.1:{}\"]\n\
             [backend]\nurl = \"{}\"\n\
             [log]\naccess = \"off\"\n\
             {extra}\
             [[tls.certs]]\ncert = \"fullchain.pem\"\nkey = \"privkey.pem\"\n",
            free_port(),
            free_port(),
            backend.url()
        ),
    )
    .unwrap();
    let gate = run_gate.then(|| GateProcess::spawn(&dir.path().join("og.toml")));
    Setup {
        dir,
        _backend: backend,
        _gate: gate,
    }
}

async fn doctor(s: &Setup) -> (i32, String) {
    let path = s.dir.path().join("og.toml");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .arg("doctor")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn a_healthy_setup_passes_every_check() {
    let s = setup(
        BackendMode::Normal,
        &["example.com", "www.example.com"],
        80,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    eprintln!("{out}");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("✓ configuration"), "{out}");
    assert!(out.contains("is served by origin-gate"), "{out}");
    assert!(
        out.contains("answers an https visitor's /wp-admin/ with 200 OK (no loop)"),
        "{out}"
    );
    assert!(
        out.contains("✓ certificate") && out.contains("key matches, 80 days left"),
        "{out}"
    );
    assert!(out.contains("✓ ACME challenge path through"), "{out}");
    assert!(
        out.contains("trusted ranges (built-in Cloudflare list from 2026-11-24"),
        "{out}"
    );
    assert!(out.contains("all checks passed"), "{out}");
    assert!(!out.contains('✗'), "{out}");
}

#[tokio::test]
async fn a_backend_without_the_forwarded_proto_mapping_is_a_loop() {
    let s = setup(
        BackendMode::Unmapped,
        &["example.com", "www.example.com"],
        80,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "✗ backend redirects an https visitor's /wp-admin/ to https://example.com/wp-admin/"
        ),
        "{out}"
    );
    assert!(
        out.contains("deploy/wordpress/wp-config-https.php"),
        "the fix names the file: {out}"
    );
}

#[tokio::test]
async fn a_backend_that_protects_the_challenge_path_fails_the_acme_check() {
    let s = setup(
        BackendMode::ProtectsEverything,
        &["example.com", "www.example.com"],
        80,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("got 401 Unauthorized: certificate renewals will fail"),
        "{out}"
    );
    assert!(out.contains("set acme.webroot"), "{out}");
}

#[tokio::test]
async fn a_backend_that_redirects_the_challenge_path_fails_the_acme_check() {
    let s = setup(
        BackendMode::RedirectsEverything,
        &["example.com", "www.example.com"],
        80,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("was redirected to https://example.com/.well-known/acme-challenge/"),
        "{out}"
    );
}

/// WordPress forcing https sends the CA's http fetch to https on 443: Let's Encrypt follows that,
/// so doctor follows it too (through this origin-gate's https listener) and reports ◐ with the
/// rule, not ✗.
#[tokio::test]
async fn a_challenge_redirect_the_ca_follows_is_partial_not_a_failure() {
    let s = setup(
        BackendMode::RedirectsToHttps,
        &["example.com", "www.example.com"],
        80,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("ACME challenge"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.starts_with("◐ "), "{out}");
    assert!(
        line.contains("after redirects to https://example.com/.well-known/acme-challenge/"),
        "{line}"
    );
    assert!(line.contains("ports 80 and 443"), "{line}");
}

#[tokio::test]
async fn a_challenge_redirect_to_port_8080_fails_with_the_rule() {
    let s = setup(
        BackendMode::RedirectsToPort8080,
        &["example.com", "www.example.com"],
        80,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✗ ACME challenge")
            && out.contains("http://example.com:8080/.well-known/acme-challenge/")
            && out.contains("Let's Encrypt follows redirects only to ports 80 and 443"),
        "{out}"
    );
}

/// The loop check stands in for Cloudflare: with the zone proven by an edge secret (and
/// lockdown on) it must still see the backend's real answer, not a 403 or an unbelieved
/// X-Forwarded-Proto.
#[tokio::test]
async fn the_loop_check_works_when_an_edge_secret_proves_the_zone() {
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("edge.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").unwrap();
    let s = setup(
        BackendMode::Normal,
        &["example.com", "www.example.com"],
        80,
        &format!(
            "[trust]\nonly_trusted_peers = true\nedge_header = \"X-Origin-Auth\"\nedge_secret_file = \"{}\"\n",
            secret.display()
        ),
        true,
    )
    .await;
    let (_, out) = doctor(&s).await;
    assert!(
        out.contains("✓ backend")
            && out.contains("answers an https visitor's /wp-admin/ with 200 OK (no loop)"),
        "{out}"
    );
    assert!(!out.contains("✗ backend"), "{out}");
    assert!(out.contains("✓ edge secret configured"), "{out}");
}

#[tokio::test]
async fn acme_webroot_is_checked_with_a_real_token_file() {
    // The protecting backend does not matter: origin-gate answers challenges from disk.
    let s = setup(
        BackendMode::ProtectsEverything,
        &["example.com", "www.example.com"],
        80,
        "[acme]\nwebroot = \"webroot\"\n",
        true,
    )
    .await;
    let (_, out) = doctor(&s).await;
    assert!(
        out.contains("✓ ACME challenge path through") && out.contains("answers 200 OK"),
        "{out}"
    );
    let left = std::fs::read_dir(s.dir.path().join("webroot/.well-known/acme-challenge"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "the test token was not removed");
}

#[tokio::test]
async fn an_expired_certificate_fails() {
    let s = setup(
        BackendMode::Normal,
        &["example.com", "www.example.com"],
        -2,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✗ certificate") && out.contains("EXPIRED"),
        "{out}"
    );
}

#[tokio::test]
async fn a_certificate_without_the_www_name_fails() {
    let s = setup(BackendMode::Normal, &["example.com"], 80, "", true).await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not cover www.example.com"), "{out}");
    assert!(
        out.contains("certbot certonly ... -d example.com -d www.example.com"),
        "{out}"
    );
}

#[tokio::test]
async fn without_a_running_origin_gate_the_ports_are_free_and_the_acme_check_says_so() {
    let s = setup(
        BackendMode::Normal,
        &["example.com", "www.example.com"],
        80,
        "",
        false,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("is free to bind (origin-gate is not running yet)"),
        "{out}"
    );
    assert!(out.contains("start origin-gate"), "{out}");
}

/// doctor's probes are marked; the running instance logs them at debug (no 421 access line, no
/// renewal WARN) and answers with its configuration's fingerprint, so doctor tells "this
/// configuration's origin-gate" from another origin-gate and from another program.
#[tokio::test]
async fn doctor_leaves_a_clean_log_and_knows_who_answers() {
    let backend = Backend::start_mode(BackendMode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let (http, https) = (free_port(), free_port());
    let path = dir.path().join("og.toml");
    let text = format!(
        "server_names = [\"example.com\"]\n[listen]\nhttp = [\"127.0.0.1:{http}\"]\nhttps = [\"127.0.0.1:{https}\"]\n[backend]\nurl = \"{}\"\n[log]\naccess = \"json\"\n",
        backend.url()
    );
    std::fs::write(&path, &text).unwrap();
    let gate = GateProcess::spawn(&path);
    let run = |path: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            let out = Command::new(binary())
                .args(["doctor", "--config"])
                .arg(&path)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .await
        .unwrap()
    };
    let out = run(path.clone()).await;
    for addr in [
        format!("http listen address 127.0.0.1:{http}"),
        format!("https listen address 127.0.0.1:{https}"),
    ] {
        assert!(
            out.contains(&format!(
                "✓ {addr} is served by origin-gate with this configuration"
            )),
            "{out}"
        );
    }
    // A marker request after doctor: everything logged before it is doctor's.
    let marker = get(UNTRUSTED_SRC, gate.http, "/marker", &[]).await;
    assert_eq!(marker.status.as_u16(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .expect("the marker's access line within 10 s");
        let line = gate.access.recv_timeout(left).unwrap();
        assert!(
            !line.contains("doctor.invalid")
                && !line.contains("\"status\":421")
                && !line.contains("acme-challenge"),
            "doctor's probe reached the access log: {line}"
        );
        if line.contains("/marker") {
            break;
        }
    }
    let mut s = connect_from(UNTRUSTED_SRC, gate.http).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let _ = s.read(&mut buf).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .expect("the bad-request line within 10 s");
        let line = gate.log.recv_timeout(left).unwrap();
        assert!(
            !line.contains("ACME challenge"),
            "doctor's probe logged as a renewal: {line}"
        );
        if line.contains("bad request") {
            break;
        }
    }
    // The file changed since the instance started: another configuration answers.
    std::fs::write(&path, format!("{text}# edited\n")).unwrap();
    let out = run(path.clone()).await;
    assert!(
        out.contains(&format!("✗ http listen address 127.0.0.1:{http} is served by an origin-gate with another configuration")),
        "{out}"
    );
    drop(gate);
    // Another program on the port.
    let other = Backend::start_on(format!("127.0.0.1:{http}").parse().unwrap()).await;
    let out = run(path).await;
    assert!(
        out.contains(&format!(
            "✗ http listen address 127.0.0.1:{http} is taken by another program"
        )),
        "{out}"
    );
    drop(other);
}
