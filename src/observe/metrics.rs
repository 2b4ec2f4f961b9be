//! Prometheus metrics (prometheus-client, OpenMetrics text) for the admin listener's `/metrics`.
//! Names are prefixed `origin_gate_`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::decide::pipeline::Route;
use crate::decide::visitor::Scheme;
use crate::observe::health::now_unix;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    pub cert: String,
}

/// All metrics of one process (kept across reloads).
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    pub upstream_errors: Family<KindLabels, Counter>,
    pub open_connections: Family<ListenerLabels, Gauge>,
    pub tls_handshakes: Family<ResultLabels, Counter>,
    pub cert_days_left: Family<CertLabels, Gauge>,
    pub cert_lifetime: Family<CertLabels, Gauge>,
    pub cert_remaining: Family<CertLabels, Gauge>,
    pub reloads: Family<ResultLabels, Counter>,
    pub access_log_dropped: Counter,
    /// Request header names dropped as invalid (underscores, dots …).
    pub dropped_request_headers: Counter,
    /// Idle connections closed at `limits.max_connections` to make room for new ones.
    pub shed_connections: Counter,
    /// Age in days of the Cloudflare list in use, by source (built-in, trust.ranges_file).
    pub cloudflare_list_age: Family<SourceLabels, Gauge>,
    /// 429s by `[[limits.rate]]` rule (`/wp-login.php POST`).
    pub rate_limited: Family<RuleLabels, Counter>,
    /// Keys the rate limiter remembers (bounded by limits.rate_table_size).
    pub rate_keys: Gauge,
    /// Unix time of the last response head the backend sent (health check).
    pub backend_last_ok: AtomicI64,
    /// The `requests` counters by route and status class, looked up once each: the hot path
    /// increments an atomic instead of hashing its labels under the family's lock.
    request_counters: Vec<[OnceLock<Counter>; 5]>,
}

/// Routes counted through `request_counters` (the last variant's index + 1); a route beyond
/// it still counts, through the family.
const ROUTES: usize = Route::RateLimited as usize + 1;

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("origin_gate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by route and status class",
            requests.clone(),
        );
        // 0.5 ms … ~16 s.
        let request_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "request_duration_seconds",
            "Time from request head to the end of the response body",
            request_duration.clone(),
        );
        let upstream_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "upstream_duration_seconds",
            "Time until the backend's response head",
            upstream_duration.clone(),
        );
        let upstream_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed backend requests by kind",
            upstream_errors.clone(),
        );
        let open_connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "open_connections",
            "Open client connections by listener",
            open_connections.clone(),
        );
        let tls_handshakes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes by result (ok, failed, timeout)",
            tls_handshakes.clone(),
        );
        let cert_days_left = Family::<CertLabels, Gauge>::default();
        registry.register(
            "certificate_days_left",
            "Days until each configured certificate expires",
            cert_days_left.clone(),
        );
        let cert_lifetime = Family::<CertLabels, Gauge>::default();
        registry.register(
            "certificate_lifetime_seconds",
            "Each configured certificate's whole validity period (notAfter - notBefore)",
            cert_lifetime.clone(),
        );
        let cert_remaining = Family::<CertLabels, Gauge>::default();
        registry.register(
            "certificate_remaining_seconds",
            "Seconds until each configured certificate expires (alert below a quarter of the lifetime)",
            cert_remaining.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result (reloaded, refused)",
            reloads.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped (queue full or write failed)",
            access_log_dropped.clone(),
        );
        let dropped_request_headers = Counter::default();
        registry.register(
            "dropped_request_headers",
            "Request header fields dropped because their names are not letters, digits and hyphens (limits.allow_underscores_in_headers)",
            dropped_request_headers.clone(),
        );
        let shed_connections = Counter::default();
        registry.register(
            "shed_connections",
            "Idle (keep-alive or silent) connections closed at limits.max_connections to make room for new ones",
            shed_connections.clone(),
        );
        let cloudflare_list_age = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "cloudflare_list_age_days",
            "Age in days of the Cloudflare address list in use, by source (built-in, trust.ranges_file); refresh with origin-gate ranges update",
            cloudflare_list_age.clone(),
        );
        let rate_limited = Family::<RuleLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused with 429 by [[limits.rate]] rule",
            rate_limited.clone(),
        );
        let rate_keys = Gauge::default();
        registry.register(
            "rate_limit_keys",
            "Visitors (rule, IP or IPv6 /64) the rate limiter remembers; at most limits.rate_table_size",
            rate_keys.clone(),
        );
        Metrics {
            rate_limited,
            rate_keys,
            cloudflare_list_age,
            shed_connections,
            dropped_request_headers,
            registry,
            requests,
            request_duration,
            upstream_duration,
            upstream_errors,
            open_connections,
            tls_handshakes,
            cert_days_left,
            cert_lifetime,
            cert_remaining,
            reloads,
            access_log_dropped,
            backend_last_ok: AtomicI64::new(0),
            request_counters: (0..ROUTES).map(|_| Default::default()).collect(),
        }
    }

    pub fn observe_request(&self, route: Route, status: u16, duration: Duration) {
        let labels = || RequestLabels {
            route: route.as_str(),
            status: status_class(status),
        };
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        match self.request_counters.get(route as usize) {
            Some(by_class) => by_class[class]
                .get_or_init(|| self.requests.get_or_create(&labels()).clone())
                .inc(),
            None => self.requests.get_or_create(&labels()).inc(),
        };
        self.request_duration.observe(duration.as_secs_f64());
    }

    pub fn observe_upstream(&self, duration: Duration) {
        self.upstream_duration.observe(duration.as_secs_f64());
        self.backend_last_ok.store(now_unix(), Ordering::Relaxed);
    }

    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    pub fn connection(&self, listener: Scheme) -> ConnectionGuard {
        let gauge = self
            .open_connections
            .get_or_create(&ListenerLabels {
                listener: listener.as_str(),
            })
            .clone();
        gauge.inc();
        ConnectionGuard(gauge)
    }

    pub fn handshake(&self, result: &'static str) {
        self.tls_handshakes
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn rate_limited(&self, rule: &str) {
        self.rate_limited
            .get_or_create(&RuleLabels {
                rule: rule.to_string(),
            })
            .inc();
    }

    pub fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// The OpenMetrics text, after refreshing the gauges that are computed at scrape time.
    /// `certs`: (file, days left, lifetime seconds, remaining seconds).
    pub fn encode(
        &self,
        certs: &[(String, i64, i64, i64)],
        list: (&'static str, i64),
        access_log_dropped: u64,
        rate_keys: usize,
    ) -> String {
        self.rate_keys
            .set(i64::try_from(rate_keys).unwrap_or(i64::MAX));
        self.cloudflare_list_age.clear();
        self.cloudflare_list_age
            .get_or_create(&SourceLabels { source: list.0 })
            .set(list.1);
        self.cert_days_left.clear();
        self.cert_lifetime.clear();
        self.cert_remaining.clear();
        for (cert, days, lifetime, remaining) in certs {
            let labels = CertLabels { cert: cert.clone() };
            self.cert_days_left.get_or_create(&labels).set(*days);
            self.cert_lifetime.get_or_create(&labels).set(*lifetime);
            self.cert_remaining.get_or_create(&labels).set(*remaining);
        }
        let seen = self.access_log_dropped.get();
        if access_log_dropped > seen {
            self.access_log_dropped.inc_by(access_log_dropped - seen);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Decrements the open-connection gauge when the connection ends.
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
