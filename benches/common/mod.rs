//! What the benches share: a Cloudflare request head as it arrives, the pipeline built from a
//! usual WordPress configuration, and the access record the handler would write for it.
#![allow(dead_code)] // each bench uses its own part

use http::request::Parts;
use http::Request;
use origin_gate::config::{Config, Source};
use origin_gate::decide::pipeline::{self, ConnContext, PipelineConfig};
use origin_gate::decide::trust::TrustedRanges;
use origin_gate::observe::access_log::AccessRecord;
use origin_gate::serve::state::access_rules;

/// A request head as Cloudflare delivers it to the origin in Flexible mode: 20 headers.
pub fn cloudflare_request() -> Parts {
    Request::builder()
        .method("GET")
        .uri("/2026/11/24/hello-world/?utm_source=newsletter")
        .header("host", "blog.example.com")
        .header("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
        .header("accept-encoding", "gzip, br")
        .header("accept-language", "en-GB,en;q=0.9,de;q=0.8")
        .header("cache-control", "no-cache")
        .header("cdn-loop", "cloudflare")
        .header("cf-connecting-ip", "203.0.113.195")
        .header("cf-ipcountry", "GB")
        .header("cf-ray", "8e4f0b2a9c3d1e2f-LHR")
        .header("cf-visitor", "{\"scheme\":\"https\"}")
        .header("connection", "Keep-Alive")
        .header("cookie", "wordpress_test_cookie=WP%20Cookie%20check; wp-settings-time-1=1732406400")
        .header("priority", "u=0, i")
        .header("referer", "https://www.google.com/")
        .header("sec-fetch-dest", "document")
        .header("sec-fetch-mode", "navigate")
        .header("upgrade-insecure-requests", "1")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36")
        .header("x-forwarded-for", "203.0.113.195")
        .header("x-forwarded-proto", "https")
        .body(())
        .unwrap()
        .into_parts()
        .0
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
        Some("8e4f0b2a9c3d1e2f-LHR".into()),
    );
    r.status = 200;
    r.bytes_out = 31_337;
    r.duration = std::time::Duration::from_micros(1834);
    r.upstream = Some(std::time::Duration::from_micros(1602));
    r.upstream_status = Some(200);
    r
}
