//! First-install slips caught before they hurt: a backend that is origin-gate itself (refused by
//! `check` and at start, answered 508 at run time when it slips through), and a second instance
//! on the same address (refused like nginx's "Address already in use").
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_backend_that_is_origin_gate_itself_is_refused_by_check_and_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    for (listen, backend) in [
        (
            format!("0.0.0.0:{port}"),
            format!("http://localhost:{port}"),
        ),
        (
            format!("127.0.0.1:{port}"),
            format!("http://127.0.0.1:{port}"),
        ),
    ] {
        let (ok, text) = check(dir.path(), &listen, &backend);
        let path = dir.path().join("loop.toml");
        assert!(!ok, "{text}");
        assert!(
            text.contains("loop.toml:5:7 backend.url: ")
                && text.contains("is origin-gate itself")
                && text.contains("move WordPress to 127.0.0.1:8080 and point backend.url there"),
            "{text}"
        );
        let out = Command::new(binary())
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("loop.toml:5:7 backend.url: ") && text.contains("is origin-gate itself"),
            "{text}"
        );
    }
}

fn check(dir: &std::path::Path, listen: &str, backend: &str) -> (bool, String) {
    let path = dir.join("loop.toml");
    std::fs::write(
        &path,
        format!("[listen]\nhttp = [\"{listen}\"]\nhttps = []\n[backend]\nurl = \"{backend}\"\n"),
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

/// A wildcard listener covers only its own address family (IPv6 sockets are IPV6_V6ONLY), and
/// the rooted `localhost.` is `localhost`.
#[test]
fn the_loop_check_knows_address_families_and_rooted_names() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    for (listen, backend) in [
        (format!("0.0.0.0:{port}"), format!("http://[::1]:{port}")),
        (format!("[::]:{port}"), format!("http://127.0.0.1:{port}")),
        (format!("127.0.0.1:{port}"), format!("http://[::]:{port}")),
    ] {
        let (ok, text) = check(dir.path(), &listen, &backend);
        assert!(ok, "{listen} -> {backend}: {text}");
    }
    for (listen, backend) in [
        (
            format!("0.0.0.0:{port}"),
            format!("http://localhost.:{port}"),
        ),
        (format!("[::]:{port}"), format!("http://[::1]:{port}")),
    ] {
        let (ok, text) = check(dir.path(), &listen, &backend);
        assert!(
            !ok && text.contains("is origin-gate itself"),
            "{listen} -> {backend}: {text}"
        );
    }
    // An ACME responder on origin-gate's own port: the fix names the responder, not WordPress.
    let path = dir.path().join("acme.toml");
    std::fs::write(&path, format!("[listen]\nhttp = [\"127.0.0.1:{port}\"]\nhttps = []\n[backend]\nurl = \"http://127.0.0.1:9\"\n[acme]\nbackend = \"http://127.0.0.1:{port}\"\n")).unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("acme.backend: ")
            && text.contains("point acme.backend there")
            && !text.contains("WordPress"),
        "{text}"
    );
}

/// A loop the static check cannot see (two origin-gates pointing at each other, or a backend
/// that forwards back): the request carries this process's Via token and comes back as 508 at
/// once — not thousands of requests and a descriptor exhaustion.
#[tokio::test]
async fn a_loop_at_run_time_is_a_508_not_a_flood() {
    let port_b = free_port();
    let a = Gate::start(&format!("http://127.0.0.1:{port_b}"), "").await;
    let b = Gate::start_raw(&format!(
        "[listen]\nhttp = [\"127.0.0.1:{port_b}\"]\nhttps = []\n[backend]\nurl = \"http://{}\"\n",
        a.http
    ))
    .await;
    let started = Instant::now();
    let answer = get(UNTRUSTED_SRC, a.http, "/", &[]).await;
    assert_eq!(answer.status.as_u16(), 508, "{:?}", answer.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(b);
}

#[test]
fn a_second_instance_on_the_same_address_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("first.toml");
    std::fs::write(
        &path,
        format!("[listen]\nhttp = [\"127.0.0.1:{port}\"]\nhttps = []\n[backend]\nurl = \"http://127.0.0.1:9\"\n"),
    )
    .unwrap();
    let first = GateProcess::spawn(&path);
    let out = Command::new(binary())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port}: Address already in use"
        )),
        "{stderr}"
    );
    drop(first);
}
