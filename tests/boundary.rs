//! The trust boundary, as PHP sees it: a raw-socket backend records every request exactly as it
//! arrived (name case and underscores kept), and each row asserts what WordPress would find in
//! `$_SERVER['HTTP_…']` — or that the backend saw nothing at all. HTTP/1.1 rows are written as
//! raw bytes so nothing normalises the attack on the way in; HTTP/2 rows go through TLS + h2.
//!
//! The config trusts 127.0.0.2/32 (standing in for Cloudflare); 127.0.0.3 is anybody else.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::process::Command;
use std::time::Duration;

use common::raw_backend::{raw_http1, RawBackend, RawReply, Seen};
use common::*;
use http::Request;

const T: &str = TRUSTED_SRC;
const U: &str = UNTRUSTED_SRC;
const TOKEN: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
const ACME: &str = "/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
const TRUST: &str = "[trust]\nextra = [\"127.0.0.2/32\"]\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    /// Raw HTTP/1.1 bytes on the plain listener.
    H1,
    /// HTTP/2 over TLS (the TLS listener: the hop is https).
    H2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// Trust 127.0.0.2, nothing else configured.
    Plain,
    /// Lockdown, `https.redirect`, and a password on `prefix = "/"`.
    Locked,
    /// `limits.allow_underscores_in_headers = true`.
    Underscores,
    /// A password on `prefix = "/"` for `host = "staging.example.com"` only.
    HostRule,
}

/// What the backend must have received.
enum Want {
    /// Exactly these values under this CGI variable (empty: none at all).
    Cgi(&'static str, &'static [&'static str]),
    /// The request target, byte for byte.
    Target(&'static str),
    /// Exactly these header names (lower-cased, sorted), nothing else.
    Names(&'static [&'static str]),
    /// The body.
    Body(&'static str),
    /// A header with exactly this name (case and underscores as forwarded) and value.
    Raw(&'static str, &'static str),
}

struct Row {
    name: &'static str,
    setup: Setup,
    proto: Proto,
    src: &'static str,
    method: &'static str,
    target: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    status: u16,
    /// None: the backend must see nothing.
    backend: Option<&'static [Want]>,
}

const fn row(name: &'static str, setup: Setup, proto: Proto, src: &'static str) -> Row {
    Row {
        name,
        setup,
        proto,
        src,
        method: "GET",
        target: "/",
        headers: &[],
        body: "",
        status: 200,
        backend: Some(&[]),
    }
}

use Proto::*;
use Setup::*;
use Want::*;

/// The minimal ACME request: what a CA sends plus origin-gate's own forwarding headers.
const ACME_NAMES: &[&str] = &[
    "accept",
    "forwarded",
    "host",
    "user-agent",
    "via",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-real-ip",
];

fn rows() -> Vec<Row> {
    vec![
        // 1. Underscore (and dot) twins of forwarding headers, from anybody.
        Row {
            headers: &[("X_Forwarded_Proto", "https")],
            backend: Some(&[Cgi("HTTP_X_FORWARDED_PROTO", &["http"])]),
            ..row("X_Forwarded_Proto from an untrusted peer", Plain, H1, U)
        },
        Row {
            headers: &[("x_forwarded_proto", "https"), ("X-Forwarded-Proto", "https")],
            backend: Some(&[Cgi("HTTP_X_FORWARDED_PROTO", &["http"])]),
            ..row("both spellings of X-Forwarded-Proto, untrusted", Plain, H1, U)
        },
        Row {
            headers: &[("CF_CONNECTING_IP", "6.6.6.6"), ("X_Real_IP", "6.6.6.6")],
            backend: Some(&[
                Cgi("HTTP_CF_CONNECTING_IP", &[]),
                Cgi("HTTP_X_REAL_IP", &["127.0.0.3"]),
                Cgi("HTTP_X_FORWARDED_FOR", &["127.0.0.3"]),
            ]),
            ..row("CF_CONNECTING_IP and X_Real_IP, untrusted", Plain, H1, U)
        },
        Row {
            headers: &[
                ("X_FORWARDED_SSL", "on"),
                ("True_Client_IP", "6.6.6.6"),
                ("X-Forwarded_Host", "evil.example"),
                ("X_Forwarded_For", "6.6.6.6"),
                ("X_Forwarded_Port", "443"),
            ],
            backend: Some(&[
                Cgi("HTTP_X_FORWARDED_SSL", &[]),
                Cgi("HTTP_TRUE_CLIENT_IP", &[]),
                Cgi("HTTP_X_FORWARDED_HOST", &["example.com"]),
                Cgi("HTTP_X_FORWARDED_FOR", &["127.0.0.3"]),
                Cgi("HTTP_X_FORWARDED_PORT", &["80"]),
            ]),
            ..row("the rest of the family, untrusted", Plain, H1, U)
        },
        Row {
            headers: &[
                ("CF-Connecting-IP", "203.0.113.7"),
                ("CF-Visitor", "{\"scheme\":\"https\"}"),
                ("X_Forwarded_Proto", "http"),
                ("CF_Connecting_IP", "6.6.6.6"),
            ],
            backend: Some(&[
                Cgi("HTTP_X_FORWARDED_PROTO", &["https"]),
                Cgi("HTTP_CF_CONNECTING_IP", &["203.0.113.7"]),
                Cgi("HTTP_X_FORWARDED_FOR", &["203.0.113.7"]),
            ]),
            ..row("underscore twins dropped from the trusted edge too", Plain, H1, T)
        },
        Row {
            headers: &[("X.Forwarded.Proto", "https"), ("X-Forwarded.For", "6.6.6.6")],
            backend: Some(&[
                Cgi("HTTP_X_FORWARDED_PROTO", &["http"]),
                Cgi("HTTP_X_FORWARDED_FOR", &["127.0.0.3"]),
            ]),
            ..row("dot twins (PHP folds dots as well)", Plain, H1, U)
        },
        Row {
            headers: &[
                ("Client-IP", "6.6.6.6"),
                ("X-Client-IP", "6.6.6.6"),
                ("X-Cluster-Client-IP", "6.6.6.6"),
                ("Front-End-Https", "on"),
                ("X-Forwarded-Server", "evil"),
                ("CF-Connecting-IP", "203.0.113.7"),
            ],
            backend: Some(&[
                Cgi("HTTP_CLIENT_IP", &[]),
                Cgi("HTTP_X_CLIENT_IP", &[]),
                Cgi("HTTP_X_CLUSTER_CLIENT_IP", &[]),
                Cgi("HTTP_FRONT_END_HTTPS", &[]),
                Cgi("HTTP_X_FORWARDED_SERVER", &[]),
                Cgi("HTTP_X_REAL_IP", &["203.0.113.7"]),
            ]),
            ..row("client-IP claims Cloudflare relays are dropped", Plain, H1, T)
        },
        Row {
            headers: &[("Proxy", "http://evil.example:3128"), ("Content_Length", "10")],
            backend: Some(&[Cgi("HTTP_PROXY", &[]), Cgi("HTTP_CONTENT_LENGTH", &[])]),
            ..row("httpoxy and a Content_Length twin", Plain, H1, U)
        },
        Row {
            headers: &[("x_forwarded_for", "6.6.6.6"), ("cf_connecting_ip", "6.6.6.6")],
            backend: Some(&[
                Cgi("HTTP_X_FORWARDED_FOR", &["127.0.0.3"]),
                Cgi("HTTP_CF_CONNECTING_IP", &[]),
            ]),
            ..row("underscore twins over HTTP/2", Plain, H2, U)
        },
        Row {
            headers: &[("x_forwarded_proto", "http"), ("cf-visitor", "{\"scheme\":\"http\"}")],
            backend: Some(&[Cgi("HTTP_X_FORWARDED_PROTO", &["http"])]),
            ..row("HTTP/2 from the edge: the edge's scheme, not the twin", Plain, H2, T)
        },
        Row {
            headers: &[("X_Custom_Plugin", "1"), ("X_Forwarded_Proto", "https")],
            backend: Some(&[
                Raw("x_custom_plugin", "1"),
                Cgi("HTTP_X_FORWARDED_PROTO", &["http"]),
            ]),
            ..row("allowed underscores keep others, never the twins", Underscores, H1, U)
        },
        Row {
            headers: &[("X.Custom", "1"), ("CF_Visitor", "{\"scheme\":\"https\"}")],
            backend: Some(&[Cgi("HTTP_X_CUSTOM", &[]), Cgi("HTTP_CF_VISITOR", &[])]),
            ..row("allowed underscores: dots and edge twins still go", Underscores, H1, T)
        },
        // 2. The ACME exemption carries nothing but the challenge.
        Row {
            target: "/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0?rest_route=/wp/v2/users&_method=DELETE",
            status: 404,
            backend: None,
            ..row("ACME with a query: 404, nothing forwarded", Locked, H1, U)
        },
        Row {
            target: "/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0?",
            status: 404,
            backend: None,
            ..row("ACME with an empty query", Locked, H1, U)
        },
        Row {
            target: ACME,
            headers: &[
                ("User-Agent", "Mozilla/5.0 (compatible; Let's Encrypt validation server)"),
                ("Accept", "*/*"),
                ("Cookie", "wordpress_logged_in_abc=admin"),
                ("Authorization", "Basic YWRtaW46YWRtaW4="),
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("X-HTTP-Method-Override", "DELETE"),
                ("Content-Type", "application/json"),
            ],
            body: "{\"id\":1}",
            backend: Some(&[Target(ACME), Names(ACME_NAMES), Body("")]),
            ..row("ACME GET: rebuilt minimal, body dropped", Locked, H1, U)
        },
        Row {
            method: "HEAD",
            target: ACME,
            headers: &[("Cookie", "a=1")],
            backend: Some(&[Target(ACME), Cgi("HTTP_COOKIE", &[])]),
            ..row("ACME HEAD", Locked, H1, U)
        },
        Row {
            method: "POST",
            target: ACME,
            body: "x",
            status: 403,
            backend: None,
            ..row("ACME path with POST is no challenge: lockdown", Locked, H1, U)
        },
        Row {
            target: "/.well-known/acme-challenge/%2e%2e/wp-admin/",
            status: 404,
            backend: None,
            ..row("ACME path traversal", Locked, H1, U)
        },
        Row {
            target: ACME,
            headers: &[("cookie", "a=1"), ("authorization", "Basic YTpi")],
            backend: Some(&[
                Target(ACME),
                Names(&[
                    "forwarded",
                    "host",
                    "via",
                    "x-forwarded-for",
                    "x-forwarded-host",
                    "x-forwarded-port",
                    "x-forwarded-proto",
                    "x-forwarded-ssl",
                    "x-real-ip",
                ]),
            ]),
            ..row("ACME over HTTP/2 (TLS hop)", Locked, H2, U)
        },
        // 3. Upgrades: websocket only.
        Row {
            headers: &[
                ("Connection", "Upgrade, HTTP2-Settings"),
                ("Upgrade", "h2c"),
                ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ],
            backend: Some(&[
                Cgi("HTTP_UPGRADE", &[]),
                Cgi("HTTP_HTTP2_SETTINGS", &[]),
                Cgi("HTTP_CONNECTION", &[]),
            ]),
            ..row("h2c upgrade is dropped", Plain, H1, U)
        },
        Row {
            headers: &[("Connection", "Upgrade"), ("Upgrade", "h2c, websocket")],
            backend: Some(&[Cgi("HTTP_UPGRADE", &["websocket"])]),
            ..row("only the allowed protocol of a list", Plain, H1, U)
        },
        Row {
            headers: &[("Upgrade", "websocket")],
            backend: Some(&[Cgi("HTTP_UPGRADE", &[])]),
            ..row("Upgrade without Connection: upgrade is no upgrade", Plain, H1, U)
        },
        // 4. Cookie crumbs.
        Row {
            headers: &[("cookie", "a=1"), ("cookie", "wordpress_logged_in_x=y"), ("cookie", "b=2")],
            backend: Some(&[Cgi("HTTP_COOKIE", &["a=1; wordpress_logged_in_x=y; b=2"])]),
            ..row("HTTP/2 cookie crumbs are joined", Plain, H2, U)
        },
        Row {
            headers: &[("Cookie", "a=1"), ("Cookie", "b=2")],
            backend: Some(&[Cgi("HTTP_COOKIE", &["a=1; b=2"])]),
            ..row("two HTTP/1.1 Cookie lines are joined", Plain, H1, U)
        },
        // 5. Duplicate or junk client addresses from the edge.
        Row {
            headers: &[
                ("CF-Connecting-IP", "203.0.113.7"),
                ("CF-Connecting-IP", "6.6.6.6"),
                ("X-Forwarded-For", "192.0.2.44"),
            ],
            backend: Some(&[
                Cgi("HTTP_CF_CONNECTING_IP", &["192.0.2.44"]),
                Cgi("HTTP_X_FORWARDED_FOR", &["192.0.2.44"]),
            ]),
            ..row("two different CF-Connecting-IP: neither believed", Plain, H1, T)
        },
        Row {
            headers: &[("CF-Connecting-IP", "not-an-ip'; DROP TABLE wp_users")],
            backend: Some(&[
                Cgi("HTTP_CF_CONNECTING_IP", &["127.0.0.2"]),
                Cgi("HTTP_X_REAL_IP", &["127.0.0.2"]),
            ]),
            ..row("junk CF-Connecting-IP is not forwarded verbatim", Plain, H1, T)
        },
        Row {
            headers: &[
                ("CF-Connecting-IP", "203.0.113.7"),
                ("True-Client-IP", "6.6.6.6"),
                ("True-Client-IP", "203.0.113.7"),
            ],
            backend: Some(&[
                Cgi("HTTP_CF_CONNECTING_IP", &["203.0.113.7"]),
                Cgi("HTTP_TRUE_CLIENT_IP", &["203.0.113.7"]),
            ]),
            ..row("True-Client-IP carries the believed address once", Plain, H1, T)
        },
        Row {
            headers: &[("cf-connecting-ip", "203.0.113.7"), ("cf-connecting-ip", "198.51.100.1")],
            backend: Some(&[Cgi("HTTP_CF_CONNECTING_IP", &["127.0.0.2"])]),
            ..row("duplicate CF-Connecting-IP over HTTP/2", Plain, H2, T)
        },
        // Found by an outside attack: variants of the same classes.
        Row {
            headers: &[
                ("X-Sucuri-ClientIP", "6.6.6.6"),
                ("Incap-Client-IP", "6.6.6.6"),
                ("Proxy-Client-IP", "6.6.6.6"),
                ("WL-Proxy-Client-IP", "6.6.6.6"),
                ("Remote-Addr", "6.6.6.6"),
                ("X-Arr-Ssl", "on"),
                ("Proxy-Anything", "x"),
            ],
            backend: Some(&[
                Cgi("HTTP_X_SUCURI_CLIENTIP", &[]),
                Cgi("HTTP_INCAP_CLIENT_IP", &[]),
                Cgi("HTTP_PROXY_CLIENT_IP", &[]),
                Cgi("HTTP_WL_PROXY_CLIENT_IP", &[]),
                Cgi("HTTP_REMOTE_ADDR", &[]),
                Cgi("HTTP_X_ARR_SSL", &[]),
                Cgi("HTTP_PROXY_ANYTHING", &[]),
            ]),
            ..row("more client-IP and https claims, and any Proxy-*", Plain, H1, T)
        },
        Row {
            headers: &[
                ("X-Country-Code", "KP"),
                ("X-SP-Forwarded-IP", "6.6.6.6"),
                ("X-SP-Edge-Scheme", "https"),
                ("SSL", "on"),
                ("HTTPS", "on"),
                ("Fly-Client-IP", "6.6.6.6"),
                ("X-Real-Client-IP", "6.6.6.6"),
                ("CF-IPCountry", "KP"),
            ],
            backend: Some(&[
                Cgi("HTTP_X_COUNTRY_CODE", &[]),
                Cgi("HTTP_X_SP_FORWARDED_IP", &[]),
                Cgi("HTTP_X_SP_EDGE_SCHEME", &[]),
                Cgi("HTTP_SSL", &[]),
                Cgi("HTTP_HTTPS", &[]),
                Cgi("HTTP_FLY_CLIENT_IP", &[]),
                Cgi("HTTP_X_REAL_CLIENT_IP", &[]),
                Cgi("HTTP_CF_IPCOUNTRY", &[]),
            ]),
            ..row("country and https claims from a visitor (second outside round)", Plain, H1, U)
        },
        Row {
            headers: &[("Host", "example.com:443")],
            backend: Some(&[
                Cgi("HTTP_HOST", &["example.com"]),
                Cgi("HTTP_X_FORWARDED_PORT", &["80"]),
                Cgi("HTTP_X_FORWARDED_PROTO", &["http"]),
            ]),
            ..row("Host :443 on plain http cannot become SERVER_PORT 443", Plain, H1, U)
        },
        Row {
            headers: &[("Host", "example.com.:8443")],
            backend: Some(&[
                Cgi("HTTP_HOST", &["example.com:8443"]),
                Cgi("HTTP_X_FORWARDED_PORT", &["8443"]),
            ]),
            ..row("other ports stay, the trailing dot goes", Plain, H1, U)
        },
        Row {
            headers: &[("Host", "staging.example.com.")],
            status: 401,
            backend: None,
            ..row("a host rule is not bypassed with a trailing dot", HostRule, H1, U)
        },
        Row {
            headers: &[("Host", "STAGING.Example.com.:80")],
            status: 401,
            backend: None,
            ..row("nor with case and :80", HostRule, H1, U)
        },
        Row {
            target: "https://staging.example.com./wp-admin/",
            status: 401,
            backend: None,
            ..row("nor over HTTP/2 (:authority)", HostRule, H2, U)
        },
        Row {
            headers: &[("Host", "example.com.")],
            backend: Some(&[Cgi("HTTP_HOST", &["example.com"])]),
            ..row("other hosts are not asked for the password", HostRule, H1, U)
        },
        Row {
            headers: &[("Host", "staging..example.com")],
            status: 400,
            backend: None,
            ..row("empty labels are malformed", HostRule, H1, U)
        },
        // 6. Smaller holes.
        Row {
            headers: &[("Host", "example.com:99999")],
            status: 400,
            backend: None,
            ..row("Host with a port over 65535", Plain, H1, U)
        },
        Row {
            headers: &[("Host", "example.com:abc")],
            status: 400,
            backend: None,
            ..row("Host with a non-numeric port", Plain, H1, U)
        },
        Row {
            headers: &[("Host", "example.com:")],
            status: 400,
            backend: None,
            ..row("Host with an empty port", Plain, H1, U)
        },
        Row {
            headers: &[("Host", "example.com!$&'()*+,;=")],
            status: 400,
            backend: None,
            ..row("Host with sub-delimiters", Plain, H1, U)
        },
        Row {
            method: "OPTIONS",
            target: "*",
            status: 200,
            backend: None,
            ..row("OPTIONS * is answered, never sent as /*", Plain, H1, U)
        },
        Row {
            method: "TRACE",
            status: 405,
            backend: None,
            ..row("TRACE", Plain, H1, U)
        },
        Row {
            target: "/wp-admin\\..\\wp-config.php",
            status: 400,
            backend: None,
            ..row("raw backslash in the path", Plain, H1, U)
        },
        Row {
            target: "/wp-admin%5c..%5cwp-config.php",
            status: 400,
            backend: None,
            ..row("encoded backslash, no access rules configured", Plain, H1, U)
        },
        Row {
            target: "/index.php%00.jpg",
            status: 400,
            backend: None,
            ..row("encoded NUL", Plain, H1, U)
        },
    ]
}

/// Big header values (built at run time) checked against the exact limit.
fn big(n: usize) -> &'static str {
    Box::leak("x".repeat(n).into_boxed_str())
}

struct Gates {
    plain: (Gate, RawBackend),
    locked: (Gate, RawBackend),
    underscores: (Gate, RawBackend),
    host_rule: (Gate, RawBackend),
}

async fn gates() -> Gates {
    let plain_backend = RawBackend::start(RawReply::Ok).await;
    let plain = Gate::start(&plain_backend.url(), TRUST).await;
    let locked_backend = RawBackend::start(RawReply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let line = Command::new("htpasswd")
        .args(["-nbB", "admin", "correct horse"])
        .output()
        .expect("htpasswd not found: run the README's test command (.ci/run), which installs apache2-utils");
    std::fs::write(dir.path().join("htpasswd"), &line.stdout).unwrap();
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("htpasswd"), &line.stdout).unwrap();
    let locked = Gate::start_in(
        dir,
        &format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n[backend]\nurl = \"{}\"\n[trust]\nextra = [\"127.0.0.2/32\"]\nonly_trusted_peers = true\n[https]\nredirect = true\n[[access]]\nprefix = \"/\"\nhtpasswd = \"htpasswd\"\n",
            locked_backend.url()
        ),
    )
    .await;
    let underscores_backend = RawBackend::start(RawReply::Ok).await;
    let underscores = Gate::start(
        &underscores_backend.url(),
        &format!("{TRUST}[limits]\nallow_underscores_in_headers = true\n"),
    )
    .await;
    let host_backend = RawBackend::start(RawReply::Ok).await;
    let host_rule = Gate::start_in(
        host_dir,
        &format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n[backend]\nurl = \"{}\"\n[[access]]\nprefix = \"/\"\nhost = \"staging.example.com\"\nhtpasswd = \"htpasswd\"\n",
            host_backend.url()
        ),
    )
    .await;
    Gates {
        host_rule: (host_rule, host_backend),
        plain: (plain, plain_backend),
        locked: (locked, locked_backend),
        underscores: (underscores, underscores_backend),
    }
}

/// Sends one row's request; returns the status.
async fn send_row(gate: &Gate, r: &Row) -> u16 {
    match r.proto {
        H1 => {
            let mut text = format!("{} {} HTTP/1.1\r\n", r.method, r.target);
            if !r
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("host"))
            {
                text.push_str("Host: example.com\r\n");
            }
            for (n, v) in r.headers {
                text.push_str(&format!("{n}: {v}\r\n"));
            }
            if !r.body.is_empty() {
                text.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
            }
            text.push_str("\r\n");
            text.push_str(r.body);
            let mut s = connect_from(r.src, gate.http).await;
            raw_http1(&mut s, text.as_bytes()).await.0
        }
        H2 => {
            let mut sender =
                h2_tls(r.src, gate.https(), insecure_client(&[b"h2"]), "localhost").await;
            let uri = if r.target.starts_with("https://") {
                r.target.to_string()
            } else {
                format!("https://example.com{}", r.target)
            };
            let mut b = Request::builder().method(r.method).uri(uri);
            for (n, v) in r.headers {
                b = b.header(*n, *v);
            }
            let body = if r.body.is_empty() {
                empty()
            } else {
                full(r.body)
            };
            let resp = sender.send_request(b.body(body).unwrap()).await.unwrap();
            collect(resp).await.status.as_u16()
        }
    }
}

fn check(r: &Row, seen: &[Seen]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(wants) = r.backend else {
        if !seen.is_empty() {
            problems.push(format!("backend must see nothing, saw {seen:?}"));
        }
        return problems;
    };
    let [req] = seen else {
        problems.push(format!(
            "backend must see exactly one request, saw {seen:?}"
        ));
        return problems;
    };
    for want in wants {
        match want {
            Cgi(var, values) => {
                let got = req.cgi(var);
                if got != *values {
                    problems.push(format!("{var}: want {values:?}, got {got:?}"));
                }
            }
            Target(t) => {
                if req.target != *t {
                    problems.push(format!("target: want {t}, got {}", req.target));
                }
            }
            Names(names) => {
                if req.names() != *names {
                    problems.push(format!("names: want {names:?}, got {:?}", req.names()));
                }
            }
            Body(b) => {
                if req.body != b.as_bytes() {
                    problems.push(format!("body: want {b:?}, got {:?}", req.body));
                }
            }
            Raw(n, v) => {
                if !req.headers.iter().any(|(hn, hv)| hn == n && hv == v) {
                    problems.push(format!("want header {n}: {v}, got {:?}", req.headers));
                }
            }
        }
    }
    problems
}

#[tokio::test]
async fn what_reaches_php_is_never_forgeable() {
    let g = gates().await;
    let mut rows = rows();
    // The configured head limit is 64 KiB: 70 KiB in one field is refused exactly, by HTTP/1.1
    // and HTTP/2 alike, and a head just under the limit passes.
    rows.push(Row {
        headers: Box::leak(vec![("X-Big", big(70 * 1024))].into_boxed_slice()),
        status: 431,
        backend: None,
        ..row("a 70 KiB header over the 64 KiB limit", Plain, H1, U)
    });
    rows.push(Row {
        headers: Box::leak(vec![("x-big", big(70 * 1024))].into_boxed_slice()),
        status: 431,
        backend: None,
        ..row("a 70 KiB header over HTTP/2", Plain, H2, U)
    });
    rows.push(Row {
        headers: Box::leak(vec![("X-Big", big(60 * 1024))].into_boxed_slice()),
        ..row("a 60 KiB header under the limit", Plain, H1, U)
    });
    rows.push(Row {
        headers: Box::leak(vec![("x-big", big(60 * 1024))].into_boxed_slice()),
        ..row("a 60 KiB header under the limit over HTTP/2", Plain, H2, U)
    });
    rows.push(Row {
        headers: Box::leak(vec![("X_Pad", big(70 * 1024))].into_boxed_slice()),
        status: 431,
        backend: None,
        ..row(
            "a dropped field still counts toward the head limit",
            Plain,
            H1,
            U,
        )
    });
    let mut failures = Vec::new();
    for r in &rows {
        let (gate, backend) = match r.setup {
            Plain => &g.plain,
            Locked => &g.locked,
            Underscores => &g.underscores,
            HostRule => &g.host_rule,
        };
        backend.take();
        let status = send_row(gate, r).await;
        let mut problems = check(r, &backend.take());
        if status != r.status {
            problems.insert(0, format!("status: want {}, got {status}", r.status));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({:?}):\n    {}",
                r.name,
                r.proto,
                problems.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A backend that answers `101 Switching Protocols` to h2c when websocket was asked (or when
/// nothing was asked) gets no tunnel: the visitor gets 502 and the connection closes, and no
/// byte the visitor sends afterwards reaches the backend.
#[tokio::test]
async fn an_unrequested_switch_is_a_502_and_no_tunnel() {
    for upgrade in [
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        "",
    ] {
        let backend = RawBackend::start(RawReply::SwitchTo("h2c")).await;
        let gate = Gate::start(&backend.url(), TRUST).await;
        let mut s = connect_from(U, gate.http).await;
        let req = format!("GET /ws HTTP/1.1\r\nHost: example.com\r\n{upgrade}\r\n");
        let (status, head, _) = raw_http1(&mut s, req.as_bytes()).await;
        assert_eq!(status, 502, "{head}");
        assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
        // What would have been HTTP/2 frames on the smuggled tunnel.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the connection must be closed after the 502");
        let seen = backend.take();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].method, "GET");
    }
}

/// An HTTP/1.0 backend does not turn the visitor's connection into HTTP/1.0: the answer says
/// HTTP/1.1 and the connection stays open for the next request.
#[tokio::test]
async fn an_http10_backend_keeps_the_visitor_on_http11_keep_alive() {
    let backend = RawBackend::start(RawReply::Http10).await;
    let gate = Gate::start(&backend.url(), TRUST).await;
    let mut s = connect_from(U, gate.http).await;
    for i in 0..2 {
        let (status, head, body) =
            raw_http1(&mut s, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").await;
        assert_eq!(status, 200, "request {i}: {head}");
        assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        assert_eq!(body, b"ok");
    }
    assert_eq!(backend.take().len(), 2);
}

/// `OPTIONS *` is answered with the methods origin-gate passes on; TRACE and CONNECT get 405
/// with the same `Allow`.
#[tokio::test]
async fn asterisk_options_and_refused_methods_say_what_is_allowed() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let gate = Gate::start(&backend.url(), TRUST).await;
    for (req, status) in [
        ("OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n", 200),
        ("TRACE / HTTP/1.1\r\nHost: example.com\r\n\r\n", 405),
        (
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            405,
        ),
    ] {
        let mut s = connect_from(U, gate.http).await;
        let (got, head, _) = raw_http1(&mut s, req.as_bytes()).await;
        assert_eq!(got, status, "{req}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("allow: get, head, post, put, patch, delete, options"),
            "{head}"
        );
    }
    assert!(backend.take().is_empty());
}

/// `acme.webroot` is usually WordPress's document root, which PHP can write: only a small regular
/// file that really lies in the challenge directory is served.
#[tokio::test]
async fn acme_webroot_serves_only_small_regular_files_and_follows_no_links() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let root = tempfile::tempdir().unwrap();
    let challenges = root.path().join(".well-known/acme-challenge");
    std::fs::create_dir_all(&challenges).unwrap();
    let key = format!("{TOKEN}.thumbprint");
    std::fs::write(challenges.join(TOKEN), &key).unwrap();
    let secret = root.path().join("wp-config.php");
    std::fs::write(&secret, "define('DB_PASSWORD', 'hunter2');").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", challenges.join("passwdlink")).unwrap();
    std::os::unix::fs::symlink(&secret, challenges.join("configlink")).unwrap();
    std::fs::write(challenges.join("big"), "x".repeat(4097)).unwrap();
    std::fs::write(challenges.join("fits"), "y".repeat(4096)).unwrap();
    std::fs::create_dir(challenges.join("adir")).unwrap();
    let fifo = challenges.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // A second webroot whose challenge directory itself is a link to elsewhere.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join(".well-known")).unwrap();
    std::os::unix::fs::symlink(&challenges, other.path().join(".well-known/acme-challenge"))
        .unwrap();

    for (webroot, name, want, body) in [
        (root.path(), TOKEN, 200, Some(key.as_str())),
        (root.path(), "fits", 200, None),
        (root.path(), "passwdlink", 404, None),
        (root.path(), "configlink", 404, None),
        (root.path(), "big", 404, None),
        (root.path(), "adir", 404, None),
        (root.path(), "fifo", 404, None),
        (root.path(), "missing", 404, None),
        (other.path(), TOKEN, 404, None),
    ] {
        let gate = Gate::start(
            &backend.url(),
            &format!("{TRUST}[acme]\nwebroot = \"{}\"\n", webroot.display()),
        )
        .await;
        let a = get(
            U,
            gate.http,
            &format!("/.well-known/acme-challenge/{name}"),
            &[],
        )
        .await;
        assert_eq!(a.status.as_u16(), want, "{name} in {}", webroot.display());
        if let Some(body) = body {
            assert_eq!(a.body, body.as_bytes());
        }
        assert!(
            !String::from_utf8_lossy(&a.body).contains("root:"),
            "{name}"
        );
        assert!(
            !String::from_utf8_lossy(&a.body).contains("hunter2"),
            "{name}"
        );
    }
    assert!(
        backend.take().is_empty(),
        "webroot mode never asks the backend"
    );
}

/// The real binary: a trusted edge that keeps sending conflicting CF-Connecting-IP values gets one
/// WARN naming the problem (not one per request), and dropped header names are counted in
/// `/metrics`.
#[tokio::test]
async fn suspicious_edge_headers_warn_once_and_dropped_names_are_counted() {
    let backend = RawBackend::start(RawReply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("origin-gate.toml");
    std::fs::write(
        &path,
        format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n{TRUST}[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n",
            backend.url()
        ),
    )
    .unwrap();
    let gate = GateProcess::spawn(&path);
    let mut s = connect_from(T, gate.http).await;
    for _ in 0..5 {
        let (status, _, _) = raw_http1(
            &mut s,
            b"GET / HTTP/1.1\r\nHost: example.com\r\nCF-Connecting-IP: 203.0.113.7\r\nCF-Connecting-IP: 6.6.6.6\r\nX_Forwarded_Proto: https\r\n\r\n",
        )
        .await;
        assert_eq!(status, 200);
    }
    // A marker from the same connection (same worker thread, so its lines stay in order).
    let (status, _, _) = raw_http1(&mut s, b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n").await;
    assert_eq!(status, 400);
    let mut warnings = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .expect("the bad-request line within 10 s");
        let line = gate.log.recv_timeout(left).unwrap();
        if line.contains("suspicious client-address headers") {
            warnings.push(line);
        } else if line.contains("bad request") {
            break;
        }
    }
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("WARN")
            && warnings[0].contains("several different CF-Connecting-IP values")
    );
    let metrics = get(U, gate.admin.unwrap(), "/metrics", &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines()
            .any(|l| l == "origin_gate_dropped_request_headers_total 5"),
        "{text}"
    );
    let seen = backend.take();
    assert_eq!(seen.len(), 5);
    assert!(seen
        .iter()
        .all(|r| r.cgi("HTTP_CF_CONNECTING_IP") == ["127.0.0.2"]));
}
