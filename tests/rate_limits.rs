//! Rate limits by the real visitor (`[[limits.rate]]`): keyed on the client IP origin-gate
//! believes (CF-Connecting-IP from a trusted peer, 127.0.0.2 here; else the peer), IPv6 by /64;
//! 429 with Retry-After; never on the ACME challenge; a bounded table under a flood of keys.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: &str = TRUSTED_SRC;
const U: &str = UNTRUSTED_SRC;
const ACME: &str = "/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";

const LOGIN_RULE: &str = "[[limits.rate]]\nprefix = \"/wp-login.php\"\nper_ip = \"1/m\"\nburst = 5\nmethods = [\"POST\"]\n";

fn trust_local_edge(rules: &str) -> String {
    format!("[trust]\ncloudflare = false\nextra = [\"127.0.0.2/32\"]\n{rules}")
}

/// Sends `n` requests one after another on one keep-alive connection from `src`; returns the
/// answers.
async fn burst(
    src: &str,
    gate: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> Vec<Answer> {
    let mut c = h1_plain(src, gate).await;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(send(&mut c, request(method, path, headers, empty())).await);
    }
    out
}

fn statuses(answers: &[Answer]) -> Vec<u16> {
    answers.iter().map(|a| a.status.as_u16()).collect()
}

/// How many answers came from the backend before the first 429, and that every one after it
/// is a 429 from origin-gate saying when to come back.
fn allowed_then_refused(answers: &[Answer]) -> usize {
    let allowed = answers.iter().take_while(|a| a.status == 200).count();
    for a in &answers[allowed..] {
        assert_eq!(a.status, 429, "{:?}", statuses(answers));
        let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        assert_eq!(a.header("server"), Some("origin-gate"));
        assert!(String::from_utf8_lossy(&a.body).starts_with("Too many requests"));
    }
    allowed
}

#[tokio::test]
async fn a_burst_gets_exactly_burst_answers_then_429_and_other_visitors_are_unaffected() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), &trust_local_edge(LOGIN_RULE)).await;
    let answers = burst(U, gate.http, "POST", "/wp-login.php", &[], 8).await;
    // 5 at once (one more only if a whole 60 s refill happened during the test).
    let allowed = allowed_then_refused(&answers);
    assert!((5..=6).contains(&allowed), "{:?}", statuses(&answers));
    assert_eq!(answers.len() - allowed, 8 - allowed);
    // Another address is another visitor.
    let other = burst("127.0.0.4", gate.http, "POST", "/wp-login.php", &[], 1).await;
    assert_eq!(other[0].status, 200);
    // The limited visitor may still read the login page and the rest of the site.
    let page = burst(U, gate.http, "GET", "/wp-login.php", &[], 1).await;
    assert_eq!(page[0].status, 200);
    // PATH_INFO and case spellings of the same file count against the same bucket.
    // Appending a REST route does not move a login into another rule's bucket.
    for path in [
        "/wp-login.php?rest_route=/wp/v2/users",
        "/wp-login.php/index.php/wp-json/wp/v2/users",
        "/wp-login.php/x",
        "/WP-LOGIN.PHP",
        "//wp-login.php",
        "/%77p-login.php",
    ] {
        let again = burst(U, gate.http, "POST", path, &[], 1).await;
        assert_eq!(again[0].status, 429, "{path}");
    }
}

#[tokio::test]
async fn visitors_behind_one_edge_address_are_limited_apart() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), &trust_local_edge(LOGIN_RULE)).await;
    let a = [("cf-connecting-ip", "203.0.113.1")];
    let answers = burst(T, gate.http, "POST", "/wp-login.php", &a, 7).await;
    assert!((5..=6).contains(&allowed_then_refused(&answers)));
    // Same edge address, another visitor: a full burst of its own.
    let b = [("cf-connecting-ip", "203.0.113.2")];
    let answers = burst(T, gate.http, "POST", "/wp-login.php", &b, 5).await;
    assert_eq!(statuses(&answers), [200; 5]);
    // IPv6 visitors count by /64: the neighbour in the same /64 shares the bucket, the next
    // /64 does not.
    let v6 = [("cf-connecting-ip", "2001:db8:1:2::1")];
    let answers = burst(T, gate.http, "POST", "/wp-login.php", &v6, 6).await;
    assert!((5..=6).contains(&allowed_then_refused(&answers)));
    let same64 = [("cf-connecting-ip", "2001:db8:1:2:abcd::9")];
    let answers = burst(T, gate.http, "POST", "/wp-login.php", &same64, 1).await;
    assert_eq!(statuses(&answers), [429]);
    let next64 = [("cf-connecting-ip", "2001:db8:1:3::1")];
    let answers = burst(T, gate.http, "POST", "/wp-login.php", &next64, 1).await;
    assert_eq!(statuses(&answers), [200]);
    // The edge naming no believable visitor is counted under its own address (one bucket for
    // all such requests, not a way around the limit), and real visitors keep theirs.
    let answers = burst(T, gate.http, "POST", "/wp-login.php", &[], 4).await;
    assert_eq!(statuses(&answers), [200; 4]);
    for odd in [
        "garbage",
        "203.0.113.9:443",
        "203.0.113.9, 203.0.113.10",
        "127.0.0.2",
    ] {
        let answers = burst(
            T,
            gate.http,
            "POST",
            "/wp-login.php",
            &[("cf-connecting-ip", odd)],
            1,
        )
        .await;
        let expected: &[u16] = if odd == "garbage" { &[200] } else { &[429] };
        assert_eq!(statuses(&answers), expected, "{odd}");
    }
    let c = [("cf-connecting-ip", "203.0.113.3")];
    assert_eq!(
        statuses(&burst(T, gate.http, "POST", "/wp-login.php", &c, 1).await),
        [200]
    );
}

#[tokio::test]
async fn a_spoofed_cf_connecting_ip_from_an_untrusted_peer_does_not_rotate_keys() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), &trust_local_edge(LOGIN_RULE)).await;
    let mut c = h1_plain(U, gate.http).await;
    let mut got = Vec::new();
    for i in 0..8 {
        let ip = format!("198.51.100.{i}");
        let spoof = [
            ("cf-connecting-ip", ip.as_str()),
            ("x-forwarded-for", ip.as_str()),
            ("x-real-ip", ip.as_str()),
            ("true-client-ip", ip.as_str()),
        ];
        got.push(send(&mut c, request("POST", "/wp-login.php", &spoof, empty())).await);
    }
    assert!(
        (5..=6).contains(&allowed_then_refused(&got)),
        "{:?}",
        statuses(&got)
    );
}

#[tokio::test]
async fn the_acme_challenge_is_never_limited() {
    let backend = Backend::start().await;
    let everything = "[[limits.rate]]\nprefix = \"/\"\nper_ip = \"1/h\"\n";
    let gate = Gate::start(&backend.url(), &trust_local_edge(everything)).await;
    let site = burst(U, gate.http, "GET", "/", &[], 2).await;
    assert_eq!(statuses(&site), [200, 429]);
    let challenges = burst(U, gate.http, "GET", ACME, &[], 20).await;
    assert!(
        challenges.iter().all(|a| a.status != 429),
        "{:?}",
        statuses(&challenges)
    );
    // The limit still holds for everything else.
    assert_eq!(
        statuses(&burst(U, gate.http, "GET", "/", &[], 1).await),
        [429]
    );
}

#[tokio::test]
async fn rest_api_spellings_and_method_overrides_share_the_rule() {
    let backend = Backend::start().await;
    let users = "[[limits.rate]]\nprefix = \"/wp-json/wp/v2/users\"\nper_ip = \"1/h\"\nburst = 2\nmethods = [\"GET\"]\n";
    let gate = Gate::start(&backend.url(), &trust_local_edge(users)).await;
    let first = burst(U, gate.http, "GET", "/wp-json/wp/v2/users", &[], 2).await;
    assert_eq!(statuses(&first), [200, 200]);
    for (method, target, headers) in [
        ("GET", "/?rest_route=/wp/v2/users", &[][..]),
        ("GET", "/index.php?rest%5Froute=%2Fwp%2Fv2%2Fusers", &[]),
        ("GET", "/index.php/wp-json/wp/v2/users", &[]),
        ("POST", "/wp-json/wp/v2/users?_method=GET", &[]),
        (
            "POST",
            "/wp-json/wp/v2/users",
            &[("x-http-method-override", "GET")],
        ),
        ("GET", "/?rest_route%00=/wp/v2/users", &[]),
        ("POST", "/wp-json/wp/v2/users?_method%00=GET", &[]),
        ("GET", "/wp-blog-header.php/wp-json/wp/v2/users", &[]),
        ("GET", "/wp-trackback.php/wp-json/wp/v2/users", &[]),
    ] {
        let got = burst(U, gate.http, method, target, headers, 1).await;
        assert_eq!(statuses(&got), [429], "{method} {target} {headers:?}");
    }
    // Other REST routes are not this rule's business.
    let posts = burst(U, gate.http, "GET", "/?rest_route=/wp/v2/posts", &[], 3).await;
    assert_eq!(statuses(&posts), [200; 3]);
}

#[tokio::test]
async fn a_reload_with_a_changed_rule_applies_to_new_requests() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("origin-gate.toml");
    let base = format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n{}",
        backend.url(),
        trust_local_edge("")
    );
    let login = "[[limits.rate]]\nprefix = \"/wp-login.php\"\nper_ip = \"1/h\"\n";
    let strict =
        format!("{base}{login}[[limits.rate]]\nprefix = \"/xmlrpc.php\"\nper_ip = \"1/h\"\n");
    let gate = Gate::start_in(dir, &strict).await;
    assert_eq!(
        statuses(&burst(U, gate.http, "POST", "/xmlrpc.php", &[], 2).await),
        [200, 429]
    );
    assert_eq!(
        statuses(&burst(U, gate.http, "POST", "/wp-login.php", &[], 2).await),
        [200, 429]
    );
    // Same rules re-read: the buckets are kept (a reload is no fresh burst for a guesser).
    std::fs::write(&path, format!("{strict}\n[log]\naccess = \"off\"\n")).unwrap();
    gate.reloader.reload_config().await;
    assert_eq!(
        statuses(&burst(U, gate.http, "POST", "/xmlrpc.php", &[], 1).await),
        [429]
    );
    // A looser rule applies to the next request.
    let loose = format!("{base}{login}[[limits.rate]]\nprefix = \"/xmlrpc.php\"\nper_ip = \"1/h\"\nburst = 3\n[log]\naccess = \"off\"\n");
    std::fs::write(&path, loose).unwrap();
    gate.reloader.reload_config().await;
    assert_eq!(
        statuses(&burst(U, gate.http, "POST", "/xmlrpc.php", &[], 4).await),
        [200, 200, 200, 429]
    );
    // … while the unchanged login rule kept its buckets through that reload.
    assert_eq!(
        statuses(&burst(U, gate.http, "POST", "/wp-login.php", &[], 1).await),
        [429]
    );
    // And a rule removed limits nothing.
    std::fs::write(&path, format!("{base}[log]\naccess = \"off\"\n")).unwrap();
    gate.reloader.reload_config().await;
    assert_eq!(
        statuses(&burst(U, gate.http, "POST", "/xmlrpc.php", &[], 5).await),
        [200; 5]
    );
}

/// The real binary: the access log says `rate_limited`, `/metrics` counts per rule, and one
/// WARN names the rule and the top offender — not one line per refused request.
#[test]
fn refusals_are_logged_counted_per_rule_and_warned_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt.block_on(Backend::start());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("og.toml");
    std::fs::write(
        &path,
        format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
            backend.url(),
            trust_local_edge(LOGIN_RULE)
        ),
    )
    .unwrap();
    let gate = GateProcess::spawn(&path);
    let guesser = [("cf-connecting-ip", "203.0.113.66")];
    let answers = rt.block_on(burst(T, gate.http, "POST", "/wp-login.php", &guesser, 30));
    let allowed = allowed_then_refused(&answers);
    let refused = 30 - allowed;
    let lines = gate.access_lines(30);
    let limited: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"route\":\"rate_limited\""))
        .collect();
    assert_eq!(limited.len(), refused, "{lines:?}");
    assert!(
        limited[0].contains("\"client_ip\":\"203.0.113.66\"")
            && limited[0].contains("\"status\":429")
    );
    let warn = gate
        .wait_log(
            "rate limit: [[limits.rate]] /wp-login.php POST",
            Duration::from_secs(5),
        )
        .expect("a WARN for the rule");
    // The rule's first refusal, named at once (no "in the last 0 s").
    assert!(
        warn.contains("WARN")
            && warn.contains("refused a request from 203.0.113.66")
            && !warn.contains(" 0 s"),
        "{warn}"
    );
    // One WARN for the whole burst (the next comes 10 s later at the earliest).
    assert!(gate
        .wait_log("rate limit: [[limits.rate]]", Duration::from_millis(300))
        .is_none());
    let metrics = rt.block_on(get("127.0.0.1", gate.admin.unwrap(), "/metrics", &[]));
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(&format!(
            "origin_gate_rate_limited_total{{rule=\"/wp-login.php POST\"}} {refused}"
        )),
        "{text}"
    );
    assert!(text.contains("origin_gate_rate_limit_keys 1"), "{text}");
}

/// Writes `n` pipelined requests from the trusted edge, each naming a new IPv6 /64 visitor, and
/// reads `n` answers (every one a 403 from the deny rule, after the rate limiter counted it).
async fn flood(gate: SocketAddr, from: u64, n: u64) {
    const STATUS_LINE: &[u8] = b"HTTP/1.1 ";
    let mut s = connect_from(T, gate).await;
    let mut buf = vec![0u8; 1 << 16];
    let mut answers = 0u64;
    let mut tail: Vec<u8> = Vec::new();
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(500) {
        let mut out = String::new();
        for i in chunk {
            out.push_str(&format!(
                "POST /wp-login.php HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nCF-Connecting-IP: 2001:db8:{:x}:{:x}::1\r\n\r\n",
                i >> 16,
                i & 0xffff
            ));
        }
        s.write_all(out.as_bytes()).await.unwrap();
        let want = answers + chunk.len() as u64;
        // Bounded: every read makes progress or the timeout fails the test.
        while answers < want {
            let got = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
                .await
                .expect("answers stalled")
                .unwrap();
            assert!(got > 0, "connection closed after {answers} answers");
            tail.extend_from_slice(&buf[..got]);
            let mut at = 0;
            while let Some(p) = tail[at..]
                .windows(STATUS_LINE.len())
                .position(|w| w == STATUS_LINE)
            {
                answers += 1;
                at += p + STATUS_LINE.len();
            }
            // Keep what could be the start of a status line split across reads.
            let keep = at.max(tail.len().saturating_sub(STATUS_LINE.len() - 1));
            tail.drain(..keep);
        }
    }
}

#[test]
fn a_flood_of_new_ipv6_visitors_stays_within_the_table_and_frees_no_guesser() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("og.toml");
    // The deny rule answers locally after the rate limiter has counted the visitor, so the flood
    // exercises the table without a backend in the way.
    std::fs::write(
        &path,
        format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"http://127.0.0.1:9\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n[[access]]\nprefix = \"/wp-login.php\"\ndeny = [\"0.0.0.0/0\", \"::/0\"]\n{}",
            trust_local_edge(LOGIN_RULE)
        ),
    )
    .unwrap();
    let gate = GateProcess::spawn(&path);
    let metric = |rt: &tokio::runtime::Runtime, name: &str| -> u64 {
        let m = rt.block_on(get("127.0.0.1", gate.admin.unwrap(), "/metrics", &[]));
        let text = String::from_utf8_lossy(&m.body).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    // A guesser spends its burst first.
    let guesser = [("cf-connecting-ip", "203.0.113.66")];
    let answers = rt.block_on(burst(T, gate.http, "POST", "/wp-login.php", &guesser, 6));
    assert_eq!(statuses(&answers), [403, 403, 403, 403, 403, 429]);
    let before = gate.status_kib("VmRSS");
    rt.block_on(async {
        let a = tokio::spawn(flood(gate.http, 0, 50_000));
        let b = tokio::spawn(flood(gate.http, 50_000, 50_000));
        a.await.unwrap();
        b.await.unwrap();
    });
    let after_100k = gate.status_kib("VmRSS");
    assert_eq!(
        metric(&rt, "origin_gate_rate_limit_keys "),
        65_536,
        "the table is full, and no fuller"
    );
    // Another 100,000 new visitors: memory stays where it was.
    rt.block_on(async {
        let a = tokio::spawn(flood(gate.http, 100_000, 50_000));
        let b = tokio::spawn(flood(gate.http, 150_000, 50_000));
        a.await.unwrap();
        b.await.unwrap();
    });
    let after_200k = gate.status_kib("VmRSS");
    assert_eq!(metric(&rt, "origin_gate_rate_limit_keys "), 65_536);
    eprintln!(
        "RSS before {before} KiB, after 100k keys {after_100k} KiB, after 200k {after_200k} KiB"
    );
    // 65,536 keys cost about 6.5 MiB (README); a table that grew with the keys would be past
    // 10 MiB here.
    assert!(
        after_100k - before < 10 * 1024,
        "{before} -> {after_100k} KiB"
    );
    assert!(
        after_200k.saturating_sub(after_100k) < 2 * 1024,
        "{after_100k} -> {after_200k} KiB"
    );
    // The table was full of visitors still in debt, so the newest were refused rather than the
    // guesser forgotten: it is still limited, with no fresh burst.
    let refused = metric(
        &rt,
        "origin_gate_rate_limited_total{rule=\"/wp-login.php POST\"} ",
    );
    assert!(refused >= 200_000 - 65_536, "{refused}");
    let again = rt.block_on(burst(T, gate.http, "POST", "/wp-login.php", &guesser, 1));
    assert_eq!(statuses(&again), [429]);
}
