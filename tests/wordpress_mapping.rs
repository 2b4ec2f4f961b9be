//! The shipped wp-config.php mapping (`deploy/wordpress/wp-config-https.php`) running in real
//! PHP behind origin-gate: WordPress's `is_ssl()` logic concludes https exactly when the visitor
//! used https, and never because somebody outside the trusted ranges said so.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// `php -S` running a router that loads the shipped snippet, then answers with what WordPress's
/// `is_ssl()` would return (it reads only `$_SERVER['HTTPS']`, or `SERVER_PORT` 443 when HTTPS
/// is unset) and `REMOTE_ADDR`.
struct PhpBackend {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl PhpBackend {
    fn start() -> PhpBackend {
        let snippet =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/wordpress/wp-config-https.php");
        let dir = tempfile::tempdir().unwrap();
        let router = dir.path().join("router.php");
        std::fs::write(
            &router,
            format!(
                r#"<?php
require {snippet:?};
function wp_is_ssl() {{
    if (isset($_SERVER['HTTPS'])) {{
        return strtolower($_SERVER['HTTPS']) === 'on' || (string) $_SERVER['HTTPS'] === '1';
    }}
    return isset($_SERVER['SERVER_PORT']) && (string) $_SERVER['SERVER_PORT'] === '443';
}}
header('Content-Type: application/json');
echo json_encode(['is_ssl' => wp_is_ssl(), 'remote_addr' => $_SERVER['REMOTE_ADDR']]);
"#
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("php")
            .arg("-S")
            .arg(format!("127.0.0.1:{port}"))
            .arg(&router)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("php not found: run the test command in the README (.ci/run), which installs php-cli");
        // Readiness: PHP's built-in server announces itself on stderr.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let started = (0..50).find_map(|_| {
            rx.recv_timeout(Duration::from_secs(10))
                .ok()
                .filter(|l| l.contains("started"))
        });
        assert!(started.is_some(), "php -S did not start");
        PhpBackend {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for PhpBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn wordpress_concludes_https_exactly_when_the_visitor_used_https() {
    let php = PhpBackend::start();
    let gate = Gate::start(&php.url, "[trust]\nextra = [\"127.0.0.2/32\"]\n").await;

    // Cloudflare Flexible, https visitor: plain hop, CF-Visitor https.
    let a = get(
        TRUSTED_SRC,
        gate.http,
        "/",
        &[
            ("cf-visitor", "{\"scheme\":\"https\"}"),
            ("cf-connecting-ip", "203.0.113.7"),
        ],
    )
    .await;
    assert_eq!(a.json()["is_ssl"], true, "{:?}", a.body);
    assert_eq!(a.json()["remote_addr"], "203.0.113.7");

    // Cloudflare, http visitor.
    let a = get(
        TRUSTED_SRC,
        gate.http,
        "/",
        &[("cf-visitor", "{\"scheme\":\"http\"}")],
    )
    .await;
    assert_eq!(a.json()["is_ssl"], false);

    // Somebody connecting directly and claiming https: not believed.
    let a = get(
        UNTRUSTED_SRC,
        gate.http,
        "/",
        &[
            ("x-forwarded-proto", "https"),
            ("cf-visitor", "{\"scheme\":\"https\"}"),
        ],
    )
    .await;
    assert_eq!(a.json()["is_ssl"], false);
    assert_eq!(a.json()["remote_addr"], UNTRUSTED_SRC);

    // A direct TLS visitor is https.
    let mut c = h1_tls(UNTRUSTED_SRC, gate.https()).await;
    let a = send(
        &mut c,
        request("GET", "/", &[("x-forwarded-proto", "http")], empty()),
    )
    .await;
    assert_eq!(a.json()["is_ssl"], true);
}
