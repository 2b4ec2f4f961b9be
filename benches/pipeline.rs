//! Hot-path benchmarks over the real pipeline functions (no copies): trust check, visitor
//! resolution, and the whole decision with header rewriting, on a realistic Cloudflare request.
//!
//! Run: `cargo bench --bench pipeline`. Targets: `decide/cloudflare_flexible` and
//! `hot_path/decide_and_json_log_line` (trust + visitor + access decision + header rewrite +
//! access-log formatting) under 1 µs median; rate limits (`rate/…`): < 100 ns for a request under
//! a rule, nothing measurable for the others. Allocations per request are counted and printed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark set-up panics loudly by design

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::request::Parts;
use http::Request;
use origin_gate::config::{Config, Source};
use origin_gate::decide::pipeline::{self, ConnContext, PipelineConfig};
use origin_gate::decide::rate::{ClientKey, RateLimiter};
use origin_gate::decide::trust::TrustedRanges;
use origin_gate::decide::visitor::{self, Scheme};
use origin_gate::observe::access_log::AccessRecord;
use origin_gate::serve::state::access_rules;

/// A request head as Cloudflare delivers it to the origin in Flexible mode: 20 headers.
fn cloudflare_request() -> Parts {
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
const CONFIG: &str = r#"
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

fn config() -> PipelineConfig {
    let config = Config::parse(CONFIG, Source::Embedded).unwrap();
    let trusted = TrustedRanges::from_config(&config.trust).unwrap();
    let (rules, _) = access_rules(&config).unwrap();
    PipelineConfig::new(&config, trusted, rules)
}

/// The access-log record of a decided request, built by the real constructor the handler uses,
/// then finished the way the response's end finishes it.
fn record(conn: &ConnContext, head: &Parts, d: &pipeline::Decision) -> AccessRecord {
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

fn benches(c: &mut Criterion) {
    let cfg = config();
    // A Cloudflare edge address near the end of the list (worst case for the scan).
    let peer: SocketAddr = "[2c0f:f248::17]:40000".parse().unwrap();
    let local: SocketAddr = "192.0.2.10:80".parse().unwrap();
    let conn = ConnContext::new(peer, local, Scheme::Http, None);
    assert!(cfg.peer_in_ranges(&conn));

    c.bench_function("trust/contains_cloudflare_v4", |b| {
        let ip = "172.70.1.1".parse().unwrap();
        b.iter(|| cfg.trusted.contains(black_box(ip)))
    });
    c.bench_function("visitor/resolve_cloudflare", |b| {
        let head = cloudflare_request();
        b.iter(|| {
            visitor::resolve(
                black_box(peer.ip()),
                true,
                Scheme::Http,
                &cfg.trusted,
                black_box(&head.headers),
            )
        })
    });
    c.bench_function("forwarded/sanitize_cloudflare", |b| {
        b.iter_batched_ref(
            cloudflare_request,
            |head| {
                black_box(origin_gate::decide::forwarded::sanitize(
                    &mut head.headers,
                    true,
                    false,
                    None,
                ))
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("decide/cloudflare_flexible", |b| {
        b.iter_batched_ref(
            cloudflare_request,
            |head| {
                let d = pipeline::decide(&cfg, &conn, head);
                black_box(d);
            },
            BatchSize::SmallInput,
        )
    });
    let direct = ConnContext::new(
        "198.51.100.7:5555".parse().unwrap(),
        local,
        Scheme::Http,
        None,
    );
    let mut open = cfg.clone();
    open.only_trusted_peers = false;
    open.https_redirect = false;
    c.bench_function("decide/untrusted_spoofed", |b| {
        b.iter_batched_ref(
            cloudflare_request,
            |head| {
                let d = pipeline::decide(&open, &direct, head);
                black_box(d);
            },
            BatchSize::SmallInput,
        )
    });
}

/// Allocations per request on the hot path, counted (not timed) and printed with the benches.
fn allocations(c: &mut Criterion) {
    let cfg = config();
    let conn = ConnContext::new(
        "[2c0f:f248::17]:40000".parse().unwrap(),
        "192.0.2.10:80".parse().unwrap(),
        Scheme::Http,
        None,
    );
    // One call first: lazily built tables (the forgeable-name index) are not per-request costs.
    black_box(pipeline::decide(&cfg, &conn, &mut cloudflare_request()));
    let mut head = cloudflare_request();
    let decide_allocs = allocation_counter::measure(|| {
        black_box(pipeline::decide(&cfg, &conn, &mut head));
    });
    let mut head = cloudflare_request();
    let d = pipeline::decide(&cfg, &conn, &mut head);
    let json_allocs = allocation_counter::measure(|| {
        black_box(record(&conn, &head, &d).to_json(false));
    });
    eprintln!(
        "allocations per request: decide {} (bytes {}), access record + JSON line {} (bytes {})",
        decide_allocs.count_total,
        decide_allocs.bytes_total,
        json_allocs.count_total,
        json_allocs.bytes_total
    );
    c.bench_function("hot_path/decide_and_json_log_line", |b| {
        b.iter_batched_ref(
            cloudflare_request,
            |head| {
                let d = pipeline::decide(&cfg, &conn, head);
                black_box(record(&conn, head, &d).to_json(false));
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("hot_path/combined_log_line", |b| {
        b.iter(|| black_box(record(&conn, &head, &d).to_combined(false)))
    });
}

/// The README's WordPress rule set, with the login rule loose enough that every benchmarked
/// request is allowed (the refused path is benchmarked on its own).
const RATE_RULES: &str = r#"
[[limits.rate]]
prefix = "/wp-login.php"
per_ip = "1000000/s"
burst = 100000
methods = ["POST"]
[[limits.rate]]
prefix = "/xmlrpc.php"
per_ip = "10/m"
burst = 5
[[limits.rate]]
prefix = "/wp-json/wp/v2/users"
per_ip = "30/m"
burst = 10
"#;

/// A login POST through Cloudflare from one of `visitors` visitors (the next one each call).
fn login_request(n: &mut u32, visitors: u32) -> Parts {
    *n = (*n + 1) % visitors;
    let mut head = cloudflare_request();
    head.method = http::Method::POST;
    head.uri = "/wp-login.php".parse().unwrap();
    let ip = format!("203.0.{}.{}", *n / 250, *n % 250);
    head.headers.insert("cf-connecting-ip", ip.parse().unwrap());
    head
}

/// Target: a path no rule covers pays nothing measurable (`decide/cloudflare_flexible` vs
/// `rate/decide_post_no_rule_path`); a request under a rule pays < 100 ns
/// (`rate/decide_login_with_rule` minus `rate/decide_login_without_rules`, 100 visitors; with
/// 10,000 visitors cycling, cache misses in the table add a few hundred ns).
fn rate_limits(c: &mut Criterion) {
    let plain = config();
    let rated = {
        let config = Config::parse(&format!("{CONFIG}{RATE_RULES}"), Source::Embedded).unwrap();
        let trusted = TrustedRanges::from_config(&config.trust).unwrap();
        let (rules, _) = access_rules(&config).unwrap();
        PipelineConfig::new(&config, trusted, rules)
    };
    let conn = ConnContext::new(
        "[2c0f:f248::17]:40000".parse().unwrap(),
        "192.0.2.10:80".parse().unwrap(),
        Scheme::Http,
        None,
    );
    c.bench_function("rate/decide_post_no_rule_path", |b| {
        b.iter_batched_ref(
            cloudflare_request,
            |head| black_box(pipeline::decide(&rated, &conn, head)),
            BatchSize::SmallInput,
        )
    });
    // 100 visitors logging in at once (their buckets stay in cache), and 10,000 (they do not:
    // the LRU's move-to-front touches two neighbouring nodes per request).
    for (name, cfg, visitors) in [
        ("rate/decide_login_without_rules", &plain, 100),
        ("rate/decide_login_with_rule", &rated, 100),
        ("rate/decide_login_with_rule_10k_visitors", &rated, 10_000),
    ] {
        let mut n = 0;
        c.bench_function(name, |b| {
            b.iter_batched_ref(
                || login_request(&mut n, visitors),
                |head| {
                    let d = pipeline::decide(cfg, &conn, head);
                    assert_eq!(d.route, pipeline::Route::Proxy);
                    black_box(d)
                },
                BatchSize::SmallInput,
            )
        });
    }
    let limiter = rated.rate.clone().unwrap();
    let mut n = 0u32;
    c.bench_function("rate/check_allowed", |b| {
        b.iter(|| {
            n = (n + 1) % 10_000;
            let key = ClientKey::of(std::net::IpAddr::from([
                203,
                0,
                (n / 250) as u8,
                (n % 250) as u8,
            ]));
            black_box(limiter.check_at(0, key, std::time::Instant::now())).unwrap()
        })
    });
    // An hourly rule, so no refill happens during the measurement.
    let hourly = Config::parse(
        "[backend]\nurl = \"http://127.0.0.1:8080\"\n[[limits.rate]]\nprefix = \"/\"\nper_ip = \"1/h\"\n",
        Source::Embedded,
    )
    .unwrap();
    let hourly = RateLimiter::new(&hourly.limits.rate, 65_536, None).unwrap();
    let spent = ClientKey::of("198.51.100.1".parse().unwrap());
    assert!(hourly.check_at(0, spent, std::time::Instant::now()).is_ok());
    c.bench_function("rate/check_refused", |b| {
        b.iter(|| black_box(hourly.check_at(0, spent, std::time::Instant::now())).unwrap_err())
    });
}

criterion_group!(pipeline_benches, benches, allocations, rate_limits);
criterion_main!(pipeline_benches);
