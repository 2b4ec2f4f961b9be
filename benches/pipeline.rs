//! Hot-path benchmarks over the real pipeline functions (no copies): trust check, visitor
//! resolution, and the whole decision with header rewriting, on a realistic Cloudflare request.
//!
//! Run: `cargo bench --bench pipeline`. Targets: `decide/cloudflare_flexible` and
//! `hot_path/decide_and_json_log_line` (trust + visitor + access decision + header rewrite +
//! access-log formatting) under 1 µs median; rate limits (`rate/…`): < 100 ns for a request under
//! a rule, nothing measurable for the others. Timed with mimalloc, the binary's allocator;
//! allocations per request are counted by `cargo bench --bench allocations`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark set-up panics loudly by design

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::request::Parts;
use origin_gate::config::{Config, Source};
use origin_gate::decide::pipeline::{self, ConnContext, PipelineConfig};
use origin_gate::decide::rate::{ClientKey, RateLimiter};
use origin_gate::decide::trust::TrustedRanges;
use origin_gate::decide::visitor::{self, Scheme};
use origin_gate::serve::state::access_rules;

/// The allocator the binary runs with (`src/main.rs`): allocation costs measured here are the
/// ones production pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Inputs built 64 at a time: criterion's `SmallInput` keeps thousands of decided heads (each with
/// its grown header map) alive until a batch ends, and the fresh pages that costs showed up as
/// page faults inside the timed routine (~20 % of `decide`'s samples) — a cost the server, which
/// frees each request's memory when it is done, does not pay.
const BATCH: BatchSize = BatchSize::NumIterations(64);

/// A request head and the time it arrived: the handler reads the clock when a request starts and
/// the decision counts rate limits from that reading (`decide_at`), so the timed part does not
/// read it again.
fn arriving() -> (Parts, Instant) {
    (cloudflare_request(), Instant::now())
}

mod common;
use common::{cloudflare_conn, cloudflare_request, config, record, CONFIG};

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
            BATCH,
        )
    });
    c.bench_function("decide/cloudflare_flexible", |b| {
        b.iter_batched_ref(
            arriving,
            |(head, now)| {
                let d = pipeline::decide_at(&cfg, &conn, head, *now);
                black_box(d);
            },
            BATCH,
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
            arriving,
            |(head, now)| {
                let d = pipeline::decide_at(&open, &direct, head, *now);
                black_box(d);
            },
            BATCH,
        )
    });
}

/// The decision plus its access-log line, timed (allocations are counted by
/// `cargo bench --bench allocations`, which needs a counting allocator of its own).
fn hot_path(c: &mut Criterion) {
    let cfg = config();
    let conn = cloudflare_conn();
    let mut head = cloudflare_request();
    let d = pipeline::decide(&cfg, &conn, &mut head);
    c.bench_function("hot_path/decide_and_json_log_line", |b| {
        b.iter_batched_ref(
            arriving,
            |(head, now)| {
                let d = pipeline::decide_at(&cfg, &conn, head, *now);
                black_box(record(&conn, head, &d).to_json(false));
            },
            BATCH,
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

/// Target: a request under a rule pays < 100 ns (`rate/step_login_under_rule`, the rate-limit
/// step alone), a path no rule covers next to nothing (`rate/step_path_without_rule`). The
/// whole-decision pairs (`rate/decide_login_with_rule` minus `…_without_rules`, 100 and 10,000
/// visitors) show the same in context, within the decision's run-to-run noise.
fn rate_limits(c: &mut Criterion) {
    let plain = config();
    let rated = {
        let config = Config::parse(&format!("{CONFIG}{RATE_RULES}"), Source::Embedded).unwrap();
        let trusted = TrustedRanges::from_config(&config.trust).unwrap();
        let (rules, _) = access_rules(&config).unwrap();
        PipelineConfig::new(&config, trusted, rules)
    };
    let conn = cloudflare_conn();
    c.bench_function("rate/decide_post_no_rule_path", |b| {
        b.iter_batched_ref(
            arriving,
            |(head, now)| black_box(pipeline::decide_at(&rated, &conn, head, *now)),
            BATCH,
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
                || (login_request(&mut n, visitors), Instant::now()),
                |(head, now)| {
                    let d = pipeline::decide_at(cfg, &conn, head, *now);
                    assert_eq!(d.route, pipeline::Route::Proxy);
                    black_box(d)
                },
                BATCH,
            )
        });
    }
    let limiter = rated.rate.clone().unwrap();
    // The rate-limit step of the decision alone — which rules a request reaches, and counting it
    // against them — so its price is not lost in the whole decision's run-to-run noise: a login
    // POST under the rule (100 visitors), and the blog post no rule covers.
    let mut n = 0u32;
    c.bench_function("rate/step_login_under_rule", |b| {
        b.iter_batched_ref(
            || {
                let head = login_request(&mut n, 100);
                let ip: std::net::IpAddr = head.headers["cf-connecting-ip"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                (head, ClientKey::of(ip), Instant::now())
            },
            |(head, key, now)| {
                let rules = limiter.matching_rules(
                    head.uri.path(),
                    head.uri.query(),
                    &head.method,
                    &head.headers,
                );
                assert!(!rules.is_empty());
                black_box(limiter.check(&rules, *key, *now)).unwrap()
            },
            BATCH,
        )
    });
    c.bench_function("rate/step_path_without_rule", |b| {
        b.iter_batched_ref(
            cloudflare_request,
            |head| {
                let rules = limiter.matching_rules(
                    head.uri.path(),
                    head.uri.query(),
                    &head.method,
                    &head.headers,
                );
                black_box(rules.is_empty())
            },
            BATCH,
        )
    });
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

criterion_group!(pipeline_benches, benches, hot_path, rate_limits);
criterion_main!(pipeline_benches);
