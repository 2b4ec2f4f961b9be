//! What operators see: access-log lines per route (JSON and combined), diagnostics with the fix,
//! reload under traffic, metrics and health, a failing access-log disk.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("og.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// GET over a fresh connection from `src`, with Host example.com.
async fn get_h(
    src: &str,
    to: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    get(src, to, path, headers).await
}

#[tokio::test]
async fn json_access_lines_carry_the_fields_for_each_route() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("htpasswd"),
        "editor:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n",
    )
    .unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            "server_names = [\"example.com\"]\n[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n[backend]\nurl = \"{}\"\n\
             [trust]\nextra = [\"127.0.0.2/32\"]\nonly_trusted_peers = true\n[https]\nredirect = true\n\
             [[access]]\nprefix = \"/wp-admin/\"\nhtpasswd = \"htpasswd\"\n[[access]]\nprefix = \"/xmlrpc.php\"\ndeny = [\"0.0.0.0/0\"]\n\
             [log]\naccess = \"json\"\n",
            backend.url()
        ),
    );
    let gate = GateProcess::spawn(&path);
    let https_visitor = [
        ("cf-visitor", "{\"scheme\":\"https\"}"),
        ("cf-connecting-ip", "203.0.113.7"),
        ("cf-ray", "8e4f0b2a-LHR"),
        ("user-agent", "test-agent/1"),
        ("referer", "https://example.com/"),
    ];
    let t = TRUSTED_SRC;
    let cases: Vec<(&str, Answer)> = vec![
        (
            "proxy",
            get_h(t, gate.http, "/hello?p=1", &https_visitor).await,
        ),
        (
            "acme",
            get_h(
                UNTRUSTED_SRC,
                gate.http,
                "/.well-known/acme-challenge/tok3n",
                &[],
            )
            .await,
        ),
        ("redirect", get_h(t, gate.http, "/", &[]).await),
        (
            "auth_denied",
            get_h(t, gate.http, "/wp-admin/", &https_visitor).await,
        ),
        (
            "ip_denied",
            get_h(t, gate.http, "/xmlrpc.php", &https_visitor).await,
        ),
        ("lockdown", get_h(UNTRUSTED_SRC, gate.http, "/", &[]).await),
        (
            "misdirected",
            get_h(t, gate.http, "/", &[("host", "other.org")]).await,
        ),
    ];
    // A request without Host.
    let mut c = h1_plain(t, gate.http).await;
    let no_host = send(
        &mut c,
        http::Request::builder().uri("/").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(no_host.status, StatusCode::BAD_REQUEST);

    let lines = gate.access_lines(cases.len() + 1);
    for ((route, answer), line) in cases.iter().zip(&lines) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(v["route"], *route, "{line}");
        assert_eq!(v["status"], answer.status.as_u16(), "{line}");
        for field in [
            "ts",
            "client_ip",
            "peer_ip",
            "trusted",
            "scheme",
            "listener",
            "tls",
            "method",
            "host",
            "path",
            "query",
            "bytes_in",
            "bytes_out",
            "duration_ms",
            "upstream_ms",
            "user",
            "cf_ray",
            "user_agent",
            "referer",
        ] {
            assert!(v.get(field).is_some(), "{route}: no {field} in {line}");
        }
        assert!(time::OffsetDateTime::parse(
            v["ts"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok());
        assert_eq!(v["listener"], "http");
        assert_eq!(v["method"], "GET");
    }
    let proxy: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(proxy["client_ip"], "203.0.113.7");
    assert_eq!(proxy["peer_ip"], TRUSTED_SRC);
    assert_eq!(proxy["trusted"], true);
    assert_eq!(proxy["scheme"], "https");
    assert_eq!(proxy["path"], "/hello");
    assert_eq!(proxy["query"], "p=1");
    assert_eq!(proxy["upstream_status"], 200);
    assert_eq!(proxy["cf_ray"], "8e4f0b2a-LHR");
    assert_eq!(proxy["user_agent"], "test-agent/1");
    assert_eq!(proxy["referer"], "https://example.com/");
    assert!(proxy["bytes_out"].as_u64().unwrap() > 0);
    let lockdown: serde_json::Value = serde_json::from_str(&lines[5]).unwrap();
    assert_eq!(lockdown["trusted"], false);
    assert_eq!(lockdown["client_ip"], UNTRUSTED_SRC);
    let bad: serde_json::Value = serde_json::from_str(&lines[7]).unwrap();
    assert_eq!(bad["route"], "bad_request");
    assert_eq!(bad["status"], 400);

    // Over TLS the line says so.
    let mut c = h1_tls(t, gate.https.unwrap()).await;
    send(&mut c, request("GET", "/tls", &[], empty())).await;
    let v: serde_json::Value = serde_json::from_str(&gate.access_lines(1)[0]).unwrap();
    assert_eq!(v["listener"], "https");
    assert_eq!(v["tls"]["version"], "TLSv1.3");
    assert_eq!(v["tls"]["sni"], "localhost");
}

#[tokio::test]
async fn combined_lines_match_the_format_goaccess_and_fail2ban_parse() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!("[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n[trust]\nextra = [\"127.0.0.2/32\"]\n[log]\naccess = \"combined\"\n", backend.url()),
    );
    let gate = GateProcess::spawn(&path);
    get(
        TRUSTED_SRC,
        gate.http,
        "/2026/11/hello/?utm=1",
        &[
            ("cf-connecting-ip", "198.51.100.23"),
            ("user-agent", "Mozilla/5.0 (X11)"),
            ("referer", "https://news.example/"),
        ],
    )
    .await;
    get(UNTRUSTED_SRC, gate.http, "/missing\"quote", &[]).await;
    // goaccess's COMBINED: %h %^[%d:%t %^] "%r" %s %b "%R" "%u"
    let re = regex::Regex::new(r#"^(\S+) \S+ (\S+) \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "(\S+) (\S+) (HTTP/\d\.\d)" (\d{3}) (\d+|-) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"$"#).unwrap();
    let lines = gate.access_lines(2);
    let c = re
        .captures(&lines[0])
        .unwrap_or_else(|| panic!("not combined: {}", lines[0]));
    assert_eq!(&c[1], "198.51.100.23", "the real client IP comes first");
    assert_eq!(&c[4], "GET");
    assert_eq!(&c[5], "/2026/11/hello/?utm=1");
    assert_eq!(&c[7], "200");
    assert_eq!(&c[9], "https://news.example/");
    assert_eq!(&c[10], "Mozilla/5.0 (X11)");
    assert!(re.is_match(&lines[1]), "not combined: {}", lines[1]);
}

#[tokio::test]
async fn a_looping_backend_triggers_the_loop_warning_and_a_correct_one_does_not() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!("[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n[trust]\nextra = [\"127.0.0.2/32\"]\n", backend.url()),
    );
    let gate = GateProcess::spawn(&path);
    let https_visitor = [("cf-visitor", "{\"scheme\":\"https\"}")];
    // Correct: the backend maps X-Forwarded-Proto and serves wp-admin to the https visitor.
    assert_eq!(
        get(TRUSTED_SRC, gate.http, "/wp-admin/", &https_visitor)
            .await
            .status,
        StatusCode::OK
    );
    // Looping: the backend sends the https visitor to the https URL they asked for.
    assert_eq!(
        get(TRUSTED_SRC, gate.http, "/loop", &https_visitor)
            .await
            .status,
        StatusCode::FOUND
    );
    let line = gate
        .wait_log("redirect loop", Duration::from_secs(5))
        .expect("no loop warning");
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("url=https://example.com/loop"), "{line}");
    assert!(
        line.contains("deploy/wordpress/wp-config-https.php"),
        "the warning names the fix: {line}"
    );
    // Exactly one loop warning so far: the correct request raised none.
    let all: Vec<String> = gate
        .startup
        .iter()
        .cloned()
        .chain(std::iter::once(line))
        .collect();
    assert_eq!(
        all.iter().filter(|l| l.contains("redirect loop")).count(),
        1
    );
}

#[tokio::test]
async fn spoofed_cloudflare_headers_and_the_flexible_mode_are_reported() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!("[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n[trust]\nextra = [\"127.0.0.2/32\"]\n", backend.url()),
    );
    let gate = GateProcess::spawn(&path);
    get(
        TRUSTED_SRC,
        gate.http,
        "/",
        &[("cf-visitor", "{\"scheme\":\"https\"}")],
    )
    .await;
    let line = gate
        .wait_log(
            "Cloudflare SSL mode looks like \"Flexible\"",
            Duration::from_secs(5),
        )
        .expect("no mode line");
    assert!(line.contains(" INFO "), "{line}");
    get(
        UNTRUSTED_SRC,
        gate.http,
        "/",
        &[("cf-connecting-ip", "1.2.3.4")],
    )
    .await;
    let line = gate
        .wait_log(
            "outside the trusted ranges sent Cloudflare headers",
            Duration::from_secs(5),
        )
        .expect("no spoof warning");
    assert!(
        line.contains(" WARN ") && line.contains("peer=127.0.0.3"),
        "{line}"
    );
}

#[tokio::test]
async fn sighup_with_a_good_then_a_broken_config_under_traffic_loses_no_request() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = format!("[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n[log]\naccess = \"off\"\n", backend.url());
    let path = write_config(dir.path(), &base);
    let gate = GateProcess::spawn(&path);
    let http = gate.http;
    // Continuous traffic: a bounded number of requests, keep-alive connections renewed every 25.
    let traffic = tokio::spawn(async move {
        let (mut ok, mut failed, mut believed) = (0u32, 0u32, 0u32);
        let mut c = h1_plain("127.0.0.1", http).await;
        for i in 0..1500u32 {
            if i % 25 == 0 {
                c = h1_plain("127.0.0.1", http).await;
            }
            c.ready().await.unwrap();
            match c
                .send_request(request(
                    "GET",
                    "/",
                    &[("cf-connecting-ip", "203.0.113.77")],
                    empty(),
                ))
                .await
            {
                Ok(resp) => {
                    let a = collect(resp).await;
                    if a.status == StatusCode::OK {
                        ok += 1;
                        if a.seen("x-real-ip").as_deref() == Some("203.0.113.77") {
                            believed += 1;
                        }
                    } else {
                        failed += 1;
                    }
                }
                Err(_) => failed += 1,
            }
        }
        (ok, failed, believed)
    });
    // A good change: trust loopback, so CF-Connecting-IP is believed from now on.
    std::fs::write(&path, format!("{base}[trust]\nextra = [\"127.0.0.0/8\"]\n")).unwrap();
    gate.signal("HUP");
    gate.wait_log("configuration reloaded", Duration::from_secs(10))
        .expect("good config not reloaded");
    // A broken change: refused with every reason; the running configuration stays.
    std::fs::write(
        &path,
        format!("{base}[trust]\nextra = [\"127.0.0.0/33\"]\n[https]\nhsts = \"forever\"\n"),
    )
    .unwrap();
    gate.signal("HUP");
    let line = gate
        .wait_log("configuration reload refused", Duration::from_secs(10))
        .expect("broken config not refused");
    assert!(
        line.contains(" ERROR ") && line.contains("trust.extra"),
        "{line}"
    );
    let line = gate
        .wait_log("configuration reload refused", Duration::from_secs(10))
        .expect("second problem not listed");
    assert!(line.contains("https.hsts"), "{line}");
    let (ok, failed, believed) = traffic.await.unwrap();
    assert_eq!(failed, 0, "{failed} requests failed during reloads");
    assert_eq!(ok, 1500);
    assert!(believed > 0, "the good reload never took effect");
    // After the broken reload the good configuration is still the one in force.
    let a = get(
        "127.0.0.1",
        gate.http,
        "/",
        &[("cf-connecting-ip", "203.0.113.77")],
    )
    .await;
    assert_eq!(a.seen("x-real-ip").as_deref(), Some("203.0.113.77"));
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn admin_get(addr: std::net::SocketAddr, path: &str) -> Answer {
    get("127.0.0.1", addr, path, &[]).await
}

#[tokio::test]
async fn metrics_expose_certificate_days_and_move_with_traffic() {
    let backend = Backend::start().await;
    let cert = TestCert::new(&["example.com"]);
    let path = write_config(
        cert.dir.path(),
        &format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n[backend]\nurl = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n{}",
            backend.url(),
            cert.toml()
        ),
    );
    let gate = GateProcess::spawn(&path);
    let admin = gate.admin.unwrap();
    let before = String::from_utf8(admin_get(admin, "/metrics").await.body.to_vec()).unwrap();
    let days = metric(
        &before,
        &format!(
            "origin_gate_certificate_days_left{{cert=\"{}\"}}",
            cert.cert_path.display()
        ),
    );
    assert!(
        (89.0..=90.0).contains(&days),
        "certificate gauge: {days}\n{before}"
    );
    let lifetime = metric(
        &before,
        &format!(
            "origin_gate_certificate_lifetime_seconds{{cert=\"{}\"}}",
            cert.cert_path.display()
        ),
    );
    let remaining = metric(
        &before,
        &format!(
            "origin_gate_certificate_remaining_seconds{{cert=\"{}\"}}",
            cert.cert_path.display()
        ),
    );
    assert!(
        remaining > 89.0 * 86_400.0 && remaining < lifetime,
        "lifetime {lifetime}, remaining {remaining}"
    );
    for _ in 0..5 {
        get("127.0.0.1", gate.http, "/", &[]).await;
    }
    get("127.0.0.1", gate.http, "/", &[("host", "bad host")]).await;
    let mut c = h1_tls("127.0.0.1", gate.https.unwrap()).await;
    send(&mut c, request("GET", "/", &[], empty())).await;
    let after = String::from_utf8(admin_get(admin, "/metrics").await.body.to_vec()).unwrap();
    let proxied = |t: &str| {
        metric(
            t,
            "origin_gate_requests_total{route=\"proxy\",status=\"2xx\"}",
        )
    };
    assert_eq!(proxied(&after) - proxied(&before), 6.0, "{after}");
    assert_eq!(
        metric(
            &after,
            "origin_gate_requests_total{route=\"bad_request\",status=\"4xx\"}"
        ),
        1.0
    );
    assert!(metric(&after, "origin_gate_tls_handshakes_total{result=\"ok\"}") >= 1.0);
    assert!(metric(&after, "origin_gate_upstream_duration_seconds_count") >= 6.0);
    assert!(after.contains("origin_gate_open_connections{listener=\"https\"}"));
    assert!(after.contains("origin_gate_access_log_dropped_total 0"));

    let health = admin_get(admin, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "ok");
}

#[tokio::test]
async fn healthz_is_503_with_the_reason_when_the_backend_is_down() {
    let dead = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!("[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"http://{dead}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n"),
    );
    let gate = GateProcess::spawn(&path);
    let health = admin_get(gate.admin.unwrap(), "/healthz").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    let reason = health.json()["backend"].as_str().unwrap().to_string();
    assert!(
        reason.contains(&dead.to_string()) && reason.contains("refused"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_full_disk_drops_log_lines_but_requests_keep_succeeding() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    // /dev/full answers every write with ENOSPC, like a full disk.
    let path = write_config(
        dir.path(),
        &format!("[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"json\"\naccess_file = \"/dev/full\"\n", backend.url()),
    );
    let gate = GateProcess::spawn(&path);
    let mut c = h1_plain("127.0.0.1", gate.http).await;
    for _ in 0..50 {
        assert_eq!(
            send(&mut c, request("GET", "/", &[], empty())).await.status,
            StatusCode::OK
        );
    }
    let line = gate
        .wait_log("access log write failed", Duration::from_secs(10))
        .expect("no write-failure warning");
    assert!(line.contains(" WARN "), "{line}");
    // The counter reaches the metrics (bounded wait: the writer counts after each failed flush).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8(
            admin_get(gate.admin.unwrap(), "/metrics")
                .await
                .body
                .to_vec(),
        )
        .unwrap();
        if metric(&text, "origin_gate_access_log_dropped_total") >= 50.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dropped lines not counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        send(&mut c, request("GET", "/", &[], empty())).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn sigusr1_reopens_the_access_log_after_rotation() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let path = write_config(
        dir.path(),
        &format!("[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n[log]\naccess = \"combined\"\naccess_file = \"access.log\"\n", backend.url()),
    );
    let gate = GateProcess::spawn(&path);
    get("127.0.0.1", gate.http, "/before", &[]).await;
    let wait_for = |file: &Path, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::fs::read_to_string(file)
                .unwrap_or_default()
                .contains(needle)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{needle} never reached {}",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(&log, "/before");
    // logrotate: move the file away, then signal.
    std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    gate.signal("USR1");
    gate.wait_log("reopening the access log", Duration::from_secs(5))
        .unwrap();
    get("127.0.0.1", gate.http, "/after", &[]).await;
    wait_for(&log, "/after");
    assert!(!std::fs::read_to_string(&log).unwrap().contains("/before"));
}

/// A challenge redirect is judged like the CA follows it: to https on 443 is an INFO (the CA
/// follows it), to port 8080 a WARN naming the rule.
#[tokio::test]
async fn challenge_redirects_are_judged_by_the_cas_rules_in_the_log() {
    for (mode, level, needle) in [
        (
            BackendMode::RedirectsToHttps,
            " INFO ",
            "ACME challenge redirected; Let's Encrypt follows this",
        ),
        (
            BackendMode::RedirectsToPort8080,
            " WARN ",
            "Let's Encrypt follows redirects only to ports 80 and 443",
        ),
    ] {
        let backend = Backend::start_mode(mode).await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            &format!(
                "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n[log]\naccess = \"off\"\n",
                backend.url()
            ),
        );
        let gate = GateProcess::spawn(&path);
        let a = get(
            UNTRUSTED_SRC,
            gate.http,
            "/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0",
            &[],
        )
        .await;
        assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
        let line = gate
            .wait_log("ACME challenge", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{mode:?}: no ACME challenge line"));
        assert!(
            line.contains(level) && line.contains(needle),
            "{mode:?}: {line}"
        );
    }
}

/// A visitor who leaves before the backend answered still leaves a line (status 499, like
/// nginx): a password guess that reached WordPress must be in the log fail2ban reads. Both
/// lanes: a bodiless GET (express) and a POST with a body (hyper), each closed by the visitor.
#[tokio::test]
async fn a_visitor_leaving_before_the_answer_is_logged_as_499() {
    use tokio::io::AsyncWriteExt;
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\n[backend]\nurl = \"{}\"\n[log]\naccess = \"json\"\n",
            backend.url()
        ),
    );
    let gate = GateProcess::spawn(&path);
    // (head, bytes sent after the backend has it: a visitor's next bytes must not hide its close)
    let cases: [(&[u8], &[u8]); 3] = [
        (b"GET /slow?ms=30000 HTTP/1.1\r\nHost: example.com\r\n\r\n", b""),
        (b"POST /slow?ms=30000 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 21\r\n\r\nlog=admin&pwd=guess0&", b""),
        (b"GET /slow?ms=30000 HTTP/1.1\r\nHost: example.com\r\n\r\n", b"G"),
    ];
    for (head, more) in cases {
        let mut c = connect_from(TRUSTED_SRC, gate.http).await;
        c.write_all(head).await.unwrap();
        // Bounded wait until the backend has it, then hang up.
        let seen = backend
            .stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while backend
            .stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
            == seen
        {
            assert!(Instant::now() < deadline, "backend never saw the request");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !more.is_empty() {
            c.write_all(more).await.unwrap();
        }
        drop(c);
        let line = gate.access_lines(1).remove(0);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], 499, "{line}");
        assert_eq!(v["path"], "/slow", "{line}");
    }
}
