//! Trust and HTTPS semantics over real sockets: the config trusts 127.0.0.2/32, clients bind
//! their source to 127.0.0.2 (trusted, stands in for Cloudflare) or 127.0.0.3 (anyone else).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::*;
use http::StatusCode;

const TRUST: &str = "[trust]\nextra = [\"127.0.0.2/32\"]\n";

/// The headers whose exact values the table asserts (absent = None).
const WATCHED: [&str; 12] = [
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-ssl",
    "forwarded",
    "cf-connecting-ip",
    "cf-visitor",
    "true-client-ip",
    "x-forwarded-server",
    "cf-ray",
];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Listener {
    Plain,
    Tls,
}

struct Case {
    name: &'static str,
    src: &'static str,
    listener: Listener,
    sent: &'static [(&'static str, &'static str)],
    expect: &'static [(&'static str, &'static str)],
}

async fn received(
    gate: &Gate,
    src: &str,
    listener: Listener,
    sent: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let a = match listener {
        Listener::Plain => get(src, gate.http, "/", sent).await,
        Listener::Tls => {
            let mut c = h1_tls(src, gate.https()).await;
            send(&mut c, request("GET", "/", sent, empty())).await
        }
    };
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    WATCHED
        .iter()
        .filter_map(|h| a.seen(h).map(|v| (h.to_string(), v)))
        .collect()
}

#[tokio::test]
async fn backend_receives_exactly_the_right_forwarding_headers() {
    use Listener::*;
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), TRUST).await;
    const U: &str = UNTRUSTED_SRC;
    const T: &str = TRUSTED_SRC;
    let spoof: &[(&str, &str)] = &[
        ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-server", "evil"),
        ("x-real-ip", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6;proto=https"),
        ("cf-connecting-ip", "203.0.113.7"),
        ("true-client-ip", "203.0.113.7"),
        ("cf-visitor", "{\"scheme\":\"https\"}"),
        ("cf-ray", "8a1b2c3d4e5f-AMS"),
    ];
    let cases = [
        Case {
            name: "untrusted, plain, no headers",
            src: U,
            listener: Plain,
            sent: &[],
            expect: &[
                ("x-forwarded-for", U),
                ("x-real-ip", U),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "example.com"),
                ("x-forwarded-port", "80"),
                ("forwarded", "for=127.0.0.3;proto=http;host=example.com"),
            ],
        },
        Case {
            name: "untrusted, TLS, no headers",
            src: U,
            listener: Tls,
            sent: &[],
            expect: &[
                ("x-forwarded-for", U),
                ("x-real-ip", U),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "example.com"),
                ("x-forwarded-port", "443"),
                ("x-forwarded-ssl", "on"),
                ("forwarded", "for=127.0.0.3;proto=https;host=example.com"),
            ],
        },
        Case {
            name: "untrusted, plain, every header spoofed",
            src: U,
            listener: Plain,
            sent: spoof,
            expect: &[
                ("x-forwarded-for", U),
                ("x-real-ip", U),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "example.com"),
                ("x-forwarded-port", "80"),
                ("forwarded", "for=127.0.0.3;proto=http;host=example.com"),
            ],
        },
        Case {
            name: "untrusted, TLS, spoofed X-Forwarded-Proto: http is ignored",
            src: U,
            listener: Tls,
            sent: &[("x-forwarded-proto", "http"), ("x-forwarded-ssl", "off")],
            expect: &[
                ("x-forwarded-for", U),
                ("x-real-ip", U),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "example.com"),
                ("x-forwarded-port", "443"),
                ("x-forwarded-ssl", "on"),
                ("forwarded", "for=127.0.0.3;proto=https;host=example.com"),
            ],
        },
        Case {
            name: "trusted, plain, no headers: the peer and the listener",
            src: T,
            listener: Plain,
            sent: &[],
            expect: &[
                ("x-forwarded-for", T),
                ("x-real-ip", T),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "example.com"),
                ("x-forwarded-port", "80"),
                ("forwarded", "for=127.0.0.2;proto=http;host=example.com"),
            ],
        },
        Case {
            name: "trusted, plain (Flexible): Cloudflare headers believed and passed on",
            src: T,
            listener: Plain,
            sent: spoof,
            expect: &[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-real-ip", "203.0.113.7"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "example.com"),
                ("x-forwarded-port", "443"),
                ("x-forwarded-ssl", "on"),
                ("forwarded", "for=203.0.113.7;proto=https;host=example.com"),
                ("cf-connecting-ip", "203.0.113.7"),
                ("cf-visitor", "{\"scheme\":\"https\"}"),
                ("true-client-ip", "203.0.113.7"),
                // Not Cloudflare's: relayed from the visitor, so dropped even from the edge.
                ("cf-ray", "8a1b2c3d4e5f-AMS"),
            ],
        },
        Case {
            name: "trusted, TLS (Full), CF-Visitor http: the visitor's scheme wins over the hop's",
            src: T,
            listener: Tls,
            sent: &[
                ("cf-visitor", "{\"scheme\":\"http\"}"),
                ("cf-connecting-ip", "198.51.100.4"),
            ],
            expect: &[
                ("x-forwarded-for", "198.51.100.4"),
                ("x-real-ip", "198.51.100.4"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "example.com"),
                ("x-forwarded-port", "80"),
                ("forwarded", "for=198.51.100.4;proto=http;host=example.com"),
                ("cf-connecting-ip", "198.51.100.4"),
                ("cf-visitor", "{\"scheme\":\"http\"}"),
            ],
        },
        Case {
            name: "trusted, malformed CF-Visitor falls back to X-Forwarded-Proto",
            src: T,
            listener: Plain,
            sent: &[
                ("cf-visitor", "{\"scheme\":"),
                ("x-forwarded-proto", "https"),
            ],
            expect: &[
                ("x-forwarded-for", T),
                ("x-real-ip", T),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "example.com"),
                ("x-forwarded-port", "443"),
                ("x-forwarded-ssl", "on"),
                ("forwarded", "for=127.0.0.2;proto=https;host=example.com"),
                ("cf-visitor", "{\"scheme\":\"https\"}"), // what was believed, not the junk
            ],
        },
        Case {
            name: "trusted, malformed CF-Visitor alone: the listener's scheme",
            src: T,
            listener: Plain,
            sent: &[("cf-visitor", "garbage")],
            expect: &[
                ("x-forwarded-for", T),
                ("x-real-ip", T),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "example.com"),
                ("x-forwarded-port", "80"),
                ("forwarded", "for=127.0.0.2;proto=http;host=example.com"),
                ("cf-visitor", "{\"scheme\":\"http\"}"),
            ],
        },
        Case {
            name: "trusted, several X-Forwarded-For lines: right-most untrusted entry",
            src: T,
            listener: Plain,
            sent: &[
                ("x-forwarded-for", "6.6.6.6, 198.51.100.9"),
                ("x-forwarded-for", "127.0.0.2"),
            ],
            expect: &[
                ("x-forwarded-for", "198.51.100.9"),
                ("x-real-ip", "198.51.100.9"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "example.com"),
                ("x-forwarded-port", "80"),
                ("forwarded", "for=198.51.100.9;proto=http;host=example.com"),
            ],
        },
        Case {
            name: "untrusted, several X-Forwarded-For lines: all dropped",
            src: U,
            listener: Plain,
            sent: &[
                ("x-forwarded-for", "6.6.6.6, 198.51.100.9"),
                ("x-forwarded-for", "127.0.0.2"),
            ],
            expect: &[
                ("x-forwarded-for", U),
                ("x-real-ip", U),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "example.com"),
                ("x-forwarded-port", "80"),
                ("forwarded", "for=127.0.0.3;proto=http;host=example.com"),
            ],
        },
        Case {
            name: "trusted, IPv6 client: Forwarded quotes and brackets it",
            src: T,
            listener: Tls,
            sent: &[
                ("cf-connecting-ip", "2001:db8::5"),
                ("host", "example.com:8443"),
            ],
            expect: &[
                ("x-forwarded-for", "2001:db8::5"),
                ("x-real-ip", "2001:db8::5"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "example.com:8443"),
                ("x-forwarded-port", "8443"),
                ("x-forwarded-ssl", "on"),
                (
                    "forwarded",
                    "for=\"[2001:db8::5]\";proto=https;host=\"example.com:8443\"",
                ),
                ("cf-connecting-ip", "2001:db8::5"),
            ],
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let got = received(&gate, case.src, case.listener, case.sent).await;
        let want: BTreeMap<String, String> = case
            .expect
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if got != want {
            failures.push(format!("{}:\n  want {want:?}\n  got  {got:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Follows redirects the way Cloudflare in Flexible mode would deliver them: every hop arrives
/// on origin-gate's plain listener, with `CF-Visitor` saying which scheme the visitor used.
/// Returns the number of redirects followed and the final status; bounded at 10 hops.
async fn follow_like_cloudflare_flexible(
    gate: &Gate,
    src: &str,
    mut url: String,
) -> (usize, StatusCode) {
    for redirects in 0..10 {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let visitor = format!("{{\"scheme\":\"{scheme}\"}}");
        let a = get(
            src,
            gate.http,
            if path.is_empty() { "/" } else { path },
            &[("host", host), ("cf-visitor", &visitor)],
        )
        .await;
        if !a.status.is_redirection() {
            return (redirects, a.status);
        }
        url = a.header("location").unwrap().to_string();
    }
    (10, StatusCode::LOOP_DETECTED)
}

#[tokio::test]
async fn flexible_mode_does_not_loop_behind_force_ssl_admin() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), TRUST).await;
    // An https visitor through Cloudflare reaches wp-admin without any redirect.
    let (hops, status) =
        follow_like_cloudflare_flexible(&gate, TRUSTED_SRC, "https://example.com/wp-admin/".into())
            .await;
    assert_eq!((hops, status), (0, StatusCode::OK));
    // An http visitor is sent to https by WordPress once, then served.
    let (hops, status) =
        follow_like_cloudflare_flexible(&gate, TRUSTED_SRC, "http://example.com/wp-admin/".into())
            .await;
    assert_eq!((hops, status), (1, StatusCode::OK));
    // The same requests from a peer that is not trusted: CF-Visitor is a forgery, WordPress sees
    // http every time and loops. This is the loop origin-gate ends for real Cloudflare traffic.
    let (hops, status) = follow_like_cloudflare_flexible(
        &gate,
        UNTRUSTED_SRC,
        "https://example.com/wp-admin/".into(),
    )
    .await;
    assert_eq!((hops, status), (10, StatusCode::LOOP_DETECTED));
}

#[tokio::test]
async fn https_redirect_is_decided_on_the_visitor_scheme_and_happens_once() {
    let backend = Backend::start().await;
    let gate = Gate::start(
        &backend.url(),
        &format!("{TRUST}[https]\nredirect = true\nhsts = \"max-age=31536000\"\n"),
    )
    .await;
    let (hops, status) = follow_like_cloudflare_flexible(
        &gate,
        TRUSTED_SRC,
        "http://example.com/wp-admin/?a=1".into(),
    )
    .await;
    assert_eq!((hops, status), (1, StatusCode::OK));
    // The redirect itself: 301 for GET to the same path and query, 308 for POST.
    let a = get(
        TRUSTED_SRC,
        gate.http,
        "/blog/?p=1",
        &[("cf-visitor", "{\"scheme\":\"http\"}")],
    )
    .await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(a.header("location"), Some("https://example.com/blog/?p=1"));
    let mut c = h1_plain(TRUSTED_SRC, gate.http).await;
    let a = send(
        &mut c,
        request(
            "POST",
            "/wp-login.php",
            &[("content-length", "3")],
            full("a=b"),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::PERMANENT_REDIRECT);
    // Flexible: an https visitor on the plain listener is not redirected, and gets HSTS.
    let a = get(
        TRUSTED_SRC,
        gate.http,
        "/",
        &[("cf-visitor", "{\"scheme\":\"https\"}")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    // ACME challenges are never redirected.
    let a = get(
        TRUSTED_SRC,
        gate.http,
        "/.well-known/acme-challenge/abc_DEF-123",
        &[("cf-visitor", "{\"scheme\":\"http\"}")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("strict-transport-security"), None);
}

#[tokio::test]
async fn backend_redirects_to_http_same_host_are_rewritten_for_https_visitors() {
    let backend = Backend::start().await;
    let gate = Gate::start(&backend.url(), TRUST).await;
    let https_visitor = [("cf-visitor", "{\"scheme\":\"https\"}")];
    let a = get(TRUSTED_SRC, gate.http, "/redirect-http", &https_visitor).await;
    assert_eq!(a.header("location"), Some("https://example.com/landed"));
    assert_eq!(
        a.header("refresh"),
        Some("0; url=https://example.com/landed")
    );
    let a = get(TRUSTED_SRC, gate.http, "/redirect-http", &[]).await;
    assert_eq!(a.header("location"), Some("http://example.com/landed"));

    let gate = Gate::start(
        &backend.url(),
        &format!("{TRUST}[https]\nrewrite_location = false\n"),
    )
    .await;
    let a = get(TRUSTED_SRC, gate.http, "/redirect-http", &https_visitor).await;
    assert_eq!(a.header("location"), Some("http://example.com/landed"));
}

#[tokio::test]
async fn lockdown_refuses_untrusted_peers_except_acme_challenges() {
    let backend = Backend::start().await;
    let gate = Gate::start(
        &backend.url(),
        "[trust]\nextra = [\"127.0.0.2/32\"]\nonly_trusted_peers = true\n",
    )
    .await;
    assert_eq!(
        get(UNTRUSTED_SRC, gate.http, "/", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let mut c = h1_tls(UNTRUSTED_SRC, gate.https()).await;
    assert_eq!(
        send(&mut c, request("GET", "/wp-login.php", &[], empty()))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(TRUSTED_SRC, gate.http, "/", &[]).await.status,
        StatusCode::OK
    );
    let a = get(
        UNTRUSTED_SRC,
        gate.http,
        "/.well-known/acme-challenge/tok3n",
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["uri"], "/.well-known/acme-challenge/tok3n");
    assert_eq!(
        backend
            .stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[tokio::test]
async fn missing_malformed_and_foreign_hosts_are_refused() {
    let backend = Backend::start().await;
    let gate = Gate::start_raw(&format!(
        "server_names = [\"example.com\", \"www.example.com\"]\n[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = []\n[backend]\nurl = \"{}\"\n",
        backend.url()
    ))
    .await;
    let http: SocketAddr = gate.http;
    let raw = |host: Option<&str>| {
        let mut b = http::Request::builder().uri("/");
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(empty()).unwrap()
    };
    let mut c = h1_plain(UNTRUSTED_SRC, http).await;
    assert_eq!(
        send(&mut c, raw(None)).await.status,
        StatusCode::BAD_REQUEST
    );
    let mut c = h1_plain(UNTRUSTED_SRC, http).await;
    assert_eq!(
        send(&mut c, raw(Some("exa mple.com"))).await.status,
        StatusCode::BAD_REQUEST
    );
    let mut c = h1_plain(UNTRUSTED_SRC, http).await;
    assert_eq!(
        send(&mut c, raw(Some("user@example.com"))).await.status,
        StatusCode::BAD_REQUEST
    );
    let mut c = h1_plain(UNTRUSTED_SRC, http).await;
    let mut two = raw(Some("example.com"));
    two.headers_mut()
        .append("host", http::HeaderValue::from_static("evil.com"));
    assert_eq!(send(&mut c, two).await.status, StatusCode::BAD_REQUEST);
    let mut c = h1_plain(UNTRUSTED_SRC, http).await;
    assert_eq!(
        send(&mut c, raw(Some("other.example.net"))).await.status,
        StatusCode::MISDIRECTED_REQUEST
    );
    let mut c = h1_plain(UNTRUSTED_SRC, http).await;
    assert_eq!(
        send(&mut c, raw(Some("WWW.Example.com:80"))).await.status,
        StatusCode::OK
    );
    assert_eq!(
        backend
            .stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn https_visitors_use_the_tls_backend_when_https_url_is_set() {
    let plain = Backend::start().await;
    let cert = TestCert::new(&["localhost"]);
    let tls_backend = Backend::start_tls(&cert).await;
    let gate = Gate::start(
        &plain.url(),
        &format!(
            "https_url = \"https://{}\"\ntls_verify = false\n{TRUST}",
            tls_backend.addr
        ),
    )
    .await;
    let a = get(
        TRUSTED_SRC,
        gate.http,
        "/",
        &[("cf-visitor", "{\"scheme\":\"https\"}")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = get(
        TRUSTED_SRC,
        gate.http,
        "/",
        &[("cf-visitor", "{\"scheme\":\"http\"}")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let mut c = h1_tls(UNTRUSTED_SRC, gate.https()).await;
    assert_eq!(
        send(&mut c, request("GET", "/", &[], empty())).await.status,
        StatusCode::OK
    );
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(
        tls_backend.stats.requests.load(SeqCst),
        2,
        "https visitors go to https_url"
    );
    assert_eq!(
        plain.stats.requests.load(SeqCst),
        1,
        "http visitors go to url"
    );
}

#[tokio::test]
async fn a_verified_https_backend_with_an_unknown_ca_is_a_502() {
    let plain = Backend::start().await;
    let cert = TestCert::new(&["localhost"]);
    let tls_backend = Backend::start_tls(&cert).await;
    let gate = Gate::start(
        &plain.url(),
        &format!(
            "https_url = \"https://localhost:{}\"\n{TRUST}",
            tls_backend.addr.port()
        ),
    )
    .await;
    let a = get(
        TRUSTED_SRC,
        gate.http,
        "/",
        &[("cf-visitor", "{\"scheme\":\"https\"}")],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
}
