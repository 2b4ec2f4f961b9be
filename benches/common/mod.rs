//! What the benches share: a Cloudflare request head as it arrives, the pipeline built from a
//! usual WordPress configuration, and the access record the handler would write for it.
#![allow(dead_code)] // each bench uses its own part

use http::request::Parts;
use http::Request;
use origin_gate::config::{Config, Source};
use origin_gate::decide::pipeline::{self, ConnContext, PipelineConfig};
use origin_gate::decide::trust::TrustedRanges;
use origin_gate::decide::visitor::Scheme;
use origin_gate::observe::access_log::AccessRecord;
use origin_gate::serve::state::access_rules;

/// A request head as Cloudflare delivers it to the origin in Flexible mode: 20 headers, built the
/// way hyper's parser builds it — the target and every value are slices of one shared buffer (so
/// cloning one is a reference count, as in the server), the map reserved for the fields it holds.
pub fn cloudflare_request() -> Parts {
    const HEAD: &str = "GET /2026/11/24/hello-world/?utm_source=newsletter HTTP/1.1\r\n\
host: blog.example.com\r\n\
accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
accept-encoding: gzip, br\r\n\
accept-language: en-GB,en;q=0.9,de;q=0.8\r\n\
cache-control: no-cache\r\n\
cdn-loop: cloudflare\r\n\
cf-connecting-ip: 203.0.113.195\r\n\
cf-ipcountry: GB\r\n\
cf-ray: 8e4f0b2a9c3d1e2f-LHR\r\n\
cf-visitor: {\"scheme\":\"https\"}\r\n\
connection: Keep-Alive\r\n\
cookie: wordpress_test_cookie=WP%20Cookie%20check; wp-settings-time-1=1732406400\r\n\
priority: u=0, i\r\n\
referer: https://www.google.com/\r\n\
sec-fetch-dest: document\r\n\
sec-fetch-mode: navigate\r\n\
upgrade-insecure-requests: 1\r\n\
user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\r\n\
x-forwarded-for: 203.0.113.195\r\n\
x-forwarded-proto: https\r\n\r\n";
    // One binding: every use of a `const` may be a copy of its own (debug builds), and the
    // offsets below are taken against this one.
    let text: &str = HEAD;
    // Not 'static in the server: a shared buffer, like hyper's frozen read buffer.
    let raw = bytes::Bytes::from(text.as_bytes().to_vec());
    let at = |part: &str| {
        let start = part.as_ptr() as usize - text.as_ptr() as usize;
        raw.slice(start..start + part.len())
    };
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap();
    let target = request_line.split(' ').nth(1).unwrap();
    let fields: Vec<&str> = lines.take_while(|l| !l.is_empty()).collect();
    let (mut head, ()) = Request::new(()).into_parts();
    head.uri = http::Uri::from_maybe_shared(at(target)).unwrap();
    head.headers = http::HeaderMap::with_capacity(fields.len());
    for field in fields {
        let (name, value) = field.split_once(": ").unwrap();
        head.headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_maybe_shared(at(value)).unwrap(),
        );
    }
    head
}

/// The connection it arrives on: from a Cloudflare edge address near the end of the list (the
/// worst case for the range scan), to the plain-http listener (Flexible mode).
pub fn cloudflare_conn() -> ConnContext {
    ConnContext::new(
        "[2c0f:f248::17]:40000".parse().unwrap(),
        "192.0.2.10:80".parse().unwrap(),
        Scheme::Http,
        None,
    )
}

/// The pipeline as origin-gate builds it from this configuration: the usual WordPress rules
/// (wp-admin for one office network, xmlrpc.php closed, admin-ajax.php open for front-end
/// plugins), lockdown and the https redirect, Cloudflare's built-in ranges.
pub const CONFIG: &str = r#"
server_names = ["blog.example.com", "www.blog.example.com"]
[backend]
url = "http://127.0.0.1:8080"
[trust]
only_trusted_peers = true
[https]
redirect = true
[[access]]
prefix = "/wp-admin/"
allow = ["203.0.113.0/24"]
[[access]]
prefix = "/wp-admin/admin-ajax.php"
[[access]]
prefix = "/xmlrpc.php"
deny = ["0.0.0.0/0", "::/0"]
"#;

pub fn config() -> PipelineConfig {
    let config = Config::parse(CONFIG, Source::Embedded).unwrap();
    let trusted = TrustedRanges::from_config(&config.trust).unwrap();
    let (rules, _) = access_rules(&config).unwrap();
    PipelineConfig::new(&config, trusted, rules)
}

/// The access-log record of a decided request, built by the real constructor the handler uses,
/// then finished the way the response's end finishes it.
pub fn record(conn: &ConnContext, head: &Parts, d: &pipeline::Decision) -> AccessRecord {
    let mut r = AccessRecord::begin(
        std::time::Instant::now(),
        conn,
        head,
        d,
        Some(&http::HeaderValue::from_static("8e4f0b2a9c3d1e2f-LHR")),
    );
    r.status = 200;
    r.bytes_out = 31_337;
    r.duration = std::time::Duration::from_micros(1834);
    r.upstream = Some(std::time::Duration::from_micros(1602));
    r.upstream_status = Some(200);
    r
}
