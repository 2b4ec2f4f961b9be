//! Rate limits by the real visitor (`[[limits.rate]]`): which rule a request falls under, and a
//! bounded table of token buckets keyed on (rule, real client IP).
//!
//! **The key is the visitor, never the edge.** The client IP is the one the pipeline resolved
//! (`CF-Connecting-IP` from a trusted peer, else the peer), IPv6 grouped by /64 — one
//! subscriber's whole allocation, as nginx's and Cloudflare's own limiters group it — so that one
//! abusive visitor cannot lock out everyone who reaches the origin through the same Cloudflare
//! address, and an untrusted client cannot rotate keys by sending `CF-Connecting-IP`. A trusted
//! peer that names no visitor is not limited at all (its own address would be everybody's key).
//!
//! **One table shared by every worker**, split into [`SHARDS`] shards each behind its own mutex;
//! a key always lands in the same shard, so a visitor's limit is the configured one whichever
//! core the kernel hands the connection to (Cloudflare multiplexes many visitors on one
//! connection and one visitor over several, so routing by key is impossible, and dividing the
//! rate by the number of workers would wrongly tighten it for a visitor whose requests all reach
//! one worker). The lock covers one hash lookup and a few stores; uncontended it costs ~20 ns.
//!
//! **Bounded.** Each shard is an LRU of at most `rate_table_size / SHARDS` keys: a flood of
//! distinct addresses (IPv6!) evicts the least recently seen visitors instead of growing memory.
//! An evicted visitor comes back with a fresh burst, which is what a visitor idle long enough
//! gets anyway.
//!
//! **The algorithm** is GCRA (the generic cell rate algorithm, a token bucket kept as one
//! timestamp): a visitor may send `burst` requests at once, then one every `interval`; a refused
//! request does not use up anything, and `Retry-After` says when the next one is allowed.
//!
//! **What counts as the path.** WordPress reaches its REST API not only at `/wp-json/…` but also
//! through `?rest_route=/…` on any path and through `/index.php/wp-json/…` (PATH_INFO), and its
//! REST method can be overridden by `_method=` or `X-HTTP-Method-Override`. A rule for
//! `/wp-json/wp/v2/users` or for `GET` must hold for those spellings too, so the matcher looks at
//! every route the request reaches (see [`wordpress_routes`]) and every method it may be
//! treated as.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use lru::LruCache;

use crate::config::path::form_decode;
use crate::config::RateRule;
use crate::decide::access::{normalize_path, starts_with_ci};
use crate::decide::forwarded::cgi_eq;
use crate::decide::trust::canonical;

/// Shards of the table; a power of two, comfortably above any worker count this runs with.
pub const SHARDS: usize = 64;

/// Memory per remembered visitor, measured (RSS over 65,536 keys, docs/configuration.md): the
/// LRU node (key, bucket, two links) and its share of the hash table.
pub const BYTES_PER_KEY: usize = 100;

/// At most one WARN per rule in this period (the first refusal is reported at once).
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// A visitor as the limiter counts it: an IPv4 address, or an IPv6 /64. IPv4 addresses are kept
/// under the `ffff:ffff::/32` prefix, which is multicast space no visitor can come from, so the
/// two never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u64);

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match canonical(ip) {
            IpAddr::V4(v4) => ClientKey(0xffff_ffff_0000_0000 | u64::from(u32::from(v4))),
            IpAddr::V6(v6) => ClientKey((u128::from(v6) >> 64) as u64),
        }
    }

    /// The address or /64 this key stands for, for the WARN line.
    pub fn describe(self) -> String {
        if self.0 >> 32 == 0xffff_ffff {
            std::net::Ipv4Addr::from(self.0 as u32).to_string()
        } else {
            format!("{}/64", std::net::Ipv6Addr::from(u128::from(self.0) << 64))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    client: ClientKey,
    rule: u16,
}

/// One bucket: the GCRA "theoretical arrival time" in nanoseconds since the table's epoch, and
/// the refusals this key collected in the current report window (for the top offender).
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    tat: u64,
    window: u32,
    refused: u32,
}

/// A rule in force, with what its WARN needs.
#[derive(Debug)]
struct RuleState {
    spec: RateRule,
    label: String,
    interval: u64,
    /// `(burst - 1) * interval`: how far ahead of now a visitor may run.
    tolerance: u64,
    report: Mutex<Report>,
}

/// Refusals since the last WARN for one rule.
#[derive(Debug, Default)]
struct Report {
    window: u32,
    /// Nanoseconds since the epoch of the last WARN; `None` before the first.
    last: Option<u64>,
    refused: u64,
    top: Option<(ClientKey, u32)>,
}

/// What the WARN for a rule says: refusals since the previous one, and who sent most of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateReport {
    pub rule: String,
    pub per_ip: String,
    pub burst: u32,
    pub refused: u64,
    pub since: Duration,
    pub top_client: String,
    pub top_refused: u32,
}

/// A refusal: which rule, when to come back, and the WARN to write (at most one per rule every
/// [`REPORT_EVERY`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: usize,
    pub retry_after: Duration,
    pub report: Option<Box<RateReport>>,
}

/// The rules and their shared, bounded table of buckets.
#[derive(Debug)]
pub struct RateLimiter {
    rules: Vec<RuleState>,
    shards: Box<[Mutex<LruCache<Key, Bucket>>]>,
    hasher: std::hash::RandomState,
    epoch: Instant,
    keys_per_shard: usize,
    refused_total: AtomicU64,
}

impl RateLimiter {
    /// `None` when there are no rules: the pipeline then skips rate limiting entirely.
    pub fn new(rules: &[RateRule], table_size: usize) -> Option<RateLimiter> {
        if rules.is_empty() {
            return None;
        }
        let keys_per_shard = table_size.div_ceil(SHARDS).max(1);
        let cap = NonZeroUsize::new(keys_per_shard).unwrap_or(NonZeroUsize::MIN);
        let shards = (0..SHARDS)
            // Sparse: memory grows with the visitors actually seen, up to the bound.
            .map(|_| Mutex::new(LruCache::sparse(cap)))
            .collect();
        let rules = rules
            .iter()
            .map(|r| {
                let interval = duration_ns(r.interval).max(1);
                RuleState {
                    label: r.label(),
                    interval,
                    tolerance: interval.saturating_mul(u64::from(r.burst.max(1) - 1)),
                    spec: r.clone(),
                    report: Mutex::new(Report::default()),
                }
            })
            .collect();
        Some(RateLimiter {
            rules,
            shards,
            hasher: std::hash::RandomState::new(),
            epoch: Instant::now(),
            keys_per_shard,
            refused_total: AtomicU64::new(0),
        })
    }

    /// The rules as configured (a reload keeps the table when they are unchanged).
    pub fn same_rules(&self, rules: &[RateRule], table_size: usize) -> bool {
        self.rules.len() == rules.len()
            && self.rules.iter().zip(rules).all(|(a, b)| &a.spec == b)
            && self.keys_per_shard == table_size.div_ceil(SHARDS).max(1)
    }

    /// The label of rule `i` (`/wp-login.php POST`), for the metric.
    pub fn label(&self, i: usize) -> &str {
        self.rules.get(i).map_or("", |r| r.label.as_str())
    }

    /// Keys remembered now (at most `rate_table_size`, rounded up to a multiple of [`SHARDS`]).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys the table holds.
    pub fn capacity(&self) -> usize {
        self.keys_per_shard * SHARDS
    }

    /// The rule this request falls under, if any: among the rules whose methods include one the
    /// request may be treated as, the longest prefix matching any route it reaches.
    pub fn matching_rule(
        &self,
        path: &str,
        query: Option<&str>,
        method: &http::Method,
        headers: &HeaderMap,
    ) -> Option<usize> {
        // The common case — no rule's prefix matches the path and nothing reroutes it — costs
        // one comparison per rule.
        // (`%` and `+`: a parameter name may be encoded, `rest%5Froute`, or spelled with a
        // space.)
        let rerouted = query.is_some_and(|q| q.contains("route") || q.contains('%'))
            || contains_ci(path.as_bytes(), b"/index.php/");
        if !rerouted
            && !self
                .rules
                .iter()
                .any(|r| starts_with_ci(path, &r.spec.prefix))
        {
            return None;
        }
        let routes = if rerouted {
            wordpress_routes(path, query)
        } else {
            Vec::new()
        };
        let mut methods: Option<Vec<String>> = None;
        let mut best: Option<(usize, usize)> = None;
        for (i, r) in self.rules.iter().enumerate() {
            let prefix = r.spec.prefix.as_str();
            let hit =
                starts_with_ci(path, prefix) || routes.iter().any(|p| starts_with_ci(p, prefix));
            if !hit || best.is_some_and(|(_, len)| len >= prefix.len()) {
                continue;
            }
            // The request's own method first; the REST overrides only when that does not fit.
            if !r.spec.methods.is_empty() && !r.spec.methods.iter().any(|m| m == method.as_str()) {
                let overrides = methods.get_or_insert_with(|| method_overrides(query, headers));
                if !r.spec.methods.iter().any(|m| overrides.contains(m)) {
                    continue;
                }
            }
            best = Some((i, prefix.len()));
        }
        best.map(|(i, _)| i)
    }

    /// Counts one request from `client` under rule `rule`: `Ok` when it may go on, else when to
    /// come back.
    pub fn check(&self, rule: usize, client: ClientKey) -> Result<(), Refusal> {
        self.check_at(rule, client, Instant::now())
    }

    /// [`check`](RateLimiter::check) at a given time (tests).
    pub fn check_at(&self, rule: usize, client: ClientKey, now: Instant) -> Result<(), Refusal> {
        let Some(r) = self.rules.get(rule) else {
            return Ok(());
        };
        let now = duration_ns(now.saturating_duration_since(self.epoch));
        let key = Key {
            client,
            rule: rule as u16,
        };
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        let Ok(mut table) = self.shards[shard].lock() else {
            // A panic while holding this lock cannot leave a bucket half-written in a way that
            // matters; failing open keeps the site up.
            return Ok(());
        };
        let window = r.report.lock().map_or(0, |rep| rep.window);
        let bucket = table.get_or_insert_mut(key, Bucket::default);
        let tat = bucket.tat.max(now);
        if tat - now <= r.tolerance {
            bucket.tat = tat + r.interval;
            return Ok(());
        }
        let wait = tat - now - r.tolerance;
        if bucket.window != window {
            bucket.window = window;
            bucket.refused = 0;
        }
        bucket.refused = bucket.refused.saturating_add(1);
        let refused = bucket.refused;
        drop(table);
        self.refused_total.fetch_add(1, Ordering::Relaxed);
        Err(Refusal {
            rule,
            retry_after: Duration::from_nanos(wait),
            report: self.note_refusal(r, client, refused, now),
        })
    }

    /// Adds a refusal to the rule's report and hands the report out when it is time for a WARN.
    fn note_refusal(
        &self,
        r: &RuleState,
        client: ClientKey,
        refused: u32,
        now: u64,
    ) -> Option<Box<RateReport>> {
        let mut rep = r.report.lock().ok()?;
        rep.refused += 1;
        if rep.top.is_none_or(|(_, n)| refused > n) {
            rep.top = Some((client, refused));
        }
        let due = rep
            .last
            .is_none_or(|last| now.saturating_sub(last) >= duration_ns(REPORT_EVERY));
        if !due {
            return None;
        }
        let since = Duration::from_nanos(rep.last.map_or(0, |last| now.saturating_sub(last)));
        let (top, top_refused) = rep.top.take()?;
        let report = RateReport {
            rule: r.label.clone(),
            per_ip: r.spec.per_ip.clone(),
            burst: r.spec.burst,
            refused: std::mem::take(&mut rep.refused),
            since,
            top_client: top.describe(),
            top_refused,
        };
        rep.last = Some(now);
        rep.window = rep.window.wrapping_add(1);
        Some(Box::new(report))
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The other routes WordPress serves a request at, besides its (normalised) path:
/// `/wp-json/<route>` for a `rest_route` query parameter (as PHP names it: `rest.route` and
/// `rest route` are `rest_route` to PHP too, and percent-encoding is decoded), and the part after
/// `/index.php` for `/index.php/wp-json/…` (PATH_INFO, which WordPress routes like the path).
pub fn wordpress_routes(path: &str, query: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(i) = find_ci(path.as_bytes(), b"/index.php/") {
        out.push(path[i + "/index.php".len()..].to_string());
    }
    for (name, value) in query.map(php_query_pairs).unwrap_or_default() {
        if name == "rest_route" {
            let route = format!("/wp-json/{}", value.trim_start_matches('/'));
            out.push(normalize_path(&route).unwrap_or(route));
        }
    }
    out
}

/// The methods the REST API may treat a request as besides its own: `_method` in the query and
/// `X-HTTP-Method-Override` (also under the names PHP folds onto it).
fn method_overrides(query: Option<&str>, headers: &HeaderMap) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in query.map(php_query_pairs).unwrap_or_default() {
        if name == "_method" {
            out.push(value.trim().to_ascii_uppercase());
        }
    }
    for (name, value) in headers {
        if cgi_eq(name.as_str().as_bytes(), "x-http-method-override") {
            if let Ok(v) = value.to_str() {
                out.push(v.trim().to_ascii_uppercase());
            }
        }
    }
    out
}

fn find_ci(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// Query parameters as PHP's `$_GET` names them: percent-decoded (`+` is a space), leading
/// spaces dropped, and `.`, ` ` and an unmatched `[` turned into `_`.
fn php_query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = form_decode(name);
            let name = name.trim_start_matches(' ');
            let mut php = String::with_capacity(name.len());
            for (i, c) in name.char_indices() {
                match c {
                    '.' | ' ' => php.push('_'),
                    // `a[b]` is an array element of `a`; a `[` without its `]` becomes `_`.
                    '[' if name[i..].contains(']') => {
                        break;
                    }
                    '[' => php.push('_'),
                    c => php.push(c),
                }
            }
            (php, form_decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, per_ip: &str, burst: u32, methods: &[&str]) -> RateRule {
        RateRule {
            prefix: prefix.into(),
            per_ip: per_ip.into(),
            interval: crate::config::parse_rate(per_ip).unwrap(),
            burst,
            methods: methods.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn ip(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap())
    }

    #[test]
    fn a_visitor_gets_exactly_the_burst_then_one_per_interval() {
        let l = RateLimiter::new(&[rule("/wp-login.php", "30/m", 3, &[])], 65_536).unwrap();
        let t0 = Instant::now();
        let v = ip("203.0.113.9");
        for _ in 0..3 {
            assert!(l.check_at(0, v, t0).is_ok());
        }
        let refused = l.check_at(0, v, t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(2));
        // A refusal uses nothing up: still refused just before the interval, allowed at it.
        assert!(l.check_at(0, v, t0 + Duration::from_millis(1999)).is_err());
        assert!(l.check_at(0, v, t0 + Duration::from_secs(2)).is_ok());
        assert!(l.check_at(0, v, t0 + Duration::from_secs(2)).is_err());
        // Idle long enough, the whole burst is back (and no more).
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(l.check_at(0, v, later).is_ok());
        }
        assert!(l.check_at(0, v, later).is_err());
    }

    #[test]
    fn visitors_are_counted_apart_and_ipv6_by_slash_64() {
        let l = RateLimiter::new(&[rule("/", "1/h", 1, &[])], 65_536).unwrap();
        let t0 = Instant::now();
        assert!(l.check_at(0, ip("203.0.113.9"), t0).is_ok());
        assert!(l.check_at(0, ip("203.0.113.9"), t0).is_err());
        assert!(l.check_at(0, ip("203.0.113.10"), t0).is_ok());
        // An IPv4-mapped IPv6 address is the same visitor as the IPv4 one.
        assert!(l.check_at(0, ip("::ffff:203.0.113.10"), t0).is_err());
        // One /64 is one visitor; the next /64 is another.
        assert!(l.check_at(0, ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(l
            .check_at(0, ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), t0)
            .is_err());
        assert!(l.check_at(0, ip("2001:db8:1:3::1"), t0).is_ok());
        // IPv4 keys cannot collide with any IPv6 /64 a visitor can come from.
        assert_eq!(ip("0.0.0.0").describe(), "0.0.0.0");
        assert_eq!(ip("2001:db8:1:2::7").describe(), "2001:db8:1:2::/64");
        assert_ne!(ip("1.2.3.4"), ip("::1.2.3.4"));
    }

    #[test]
    fn each_rule_has_its_own_buckets() {
        let rules = [
            rule("/wp-login.php", "1/h", 1, &[]),
            rule("/xmlrpc.php", "1/h", 1, &[]),
        ];
        let l = RateLimiter::new(&rules, 65_536).unwrap();
        let t0 = Instant::now();
        let v = ip("203.0.113.9");
        assert!(l.check_at(0, v, t0).is_ok());
        assert!(l.check_at(1, v, t0).is_ok());
        assert!(l.check_at(0, v, t0).is_err());
        assert!(l.check_at(1, v, t0).is_err());
    }

    #[test]
    fn the_table_never_holds_more_than_its_bound() {
        let l = RateLimiter::new(&[rule("/", "1/h", 1, &[])], 1024).unwrap();
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            let v6 = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(i) << 64));
            assert!(l.check_at(0, ClientKey::of(v6.into()), t0).is_ok());
        }
        assert_eq!(l.capacity(), 1024);
        assert!(l.len() <= 1024 && l.len() > 900, "{}", l.len());
        // The least recently seen went first: the last visitor is still limited, the first
        // one was forgotten and has its burst again.
        let last = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | (99_999u128 << 64));
        assert!(l.check_at(0, ClientKey::of(last.into()), t0).is_err());
        let first = std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96);
        assert!(l.check_at(0, ClientKey::of(first.into()), t0).is_ok());
    }

    #[test]
    fn one_warn_per_rule_per_period_naming_the_top_offender() {
        let l = RateLimiter::new(&[rule("/wp-login.php", "1/h", 1, &["POST"])], 65_536).unwrap();
        let t0 = Instant::now();
        let (a, b) = (ip("203.0.113.1"), ip("203.0.113.2"));
        assert!(l.check_at(0, a, t0).is_ok());
        assert!(l.check_at(0, b, t0).is_ok());
        let first = l.check_at(0, a, t0).unwrap_err().report.unwrap();
        assert_eq!(
            (first.refused, first.top_client.as_str()),
            (1, "203.0.113.1")
        );
        assert_eq!(first.rule, "/wp-login.php POST");
        // Within the period: counted, not reported.
        for _ in 0..5 {
            assert!(l
                .check_at(0, b, t0 + Duration::from_secs(1))
                .unwrap_err()
                .report
                .is_none());
        }
        assert!(l
            .check_at(0, a, t0 + Duration::from_secs(2))
            .unwrap_err()
            .report
            .is_none());
        let next = l
            .check_at(0, a, t0 + Duration::from_secs(11))
            .unwrap_err()
            .report
            .unwrap();
        assert_eq!(next.refused, 7);
        assert_eq!(
            (next.top_client.as_str(), next.top_refused),
            ("203.0.113.2", 5)
        );
        assert_eq!(next.since, Duration::from_secs(11));
    }

    fn limiter(rules: &[RateRule]) -> RateLimiter {
        RateLimiter::new(rules, 65_536).unwrap()
    }

    fn matches(
        l: &RateLimiter,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Option<usize> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        l.matching_rule(path, query, &method.parse().unwrap(), &h)
    }

    #[test]
    fn the_longest_prefix_whose_methods_fit_wins() {
        let l = limiter(&[
            rule("/", "100/m", 10, &[]),
            rule("/wp-login.php", "30/m", 10, &["POST"]),
            rule("/wp-login.php", "60/m", 10, &["GET"]),
        ]);
        assert_eq!(matches(&l, "POST", "/wp-login.php", &[]), Some(1));
        assert_eq!(
            matches(&l, "GET", "/wp-login.php?action=lostpassword", &[]),
            Some(2)
        );
        assert_eq!(matches(&l, "PUT", "/wp-login.php", &[]), Some(0));
        // Case and PATH_INFO spellings run the same file.
        assert_eq!(matches(&l, "POST", "/WP-Login.PHP", &[]), Some(1));
        assert_eq!(matches(&l, "POST", "/wp-login.php/x", &[]), Some(1));
        let only = limiter(&[rule("/xmlrpc.php", "10/m", 5, &[])]);
        assert_eq!(matches(&only, "GET", "/", &[]), None);
        assert_eq!(matches(&only, "POST", "/xmlrpc.php?rsd", &[]), Some(0));
    }

    #[test]
    fn every_spelling_of_a_rest_route_is_the_route() {
        let l = limiter(&[rule("/wp-json/wp/v2/users", "30/m", 10, &[])]);
        for target in [
            "/wp-json/wp/v2/users",
            "/wp-json/wp/v2/users/1",
            "/?rest_route=/wp/v2/users",
            "/?rest_route=wp/v2/users",
            "/index.php?rest_route=/wp/v2/users&per_page=100",
            "/?rest_route=%2Fwp%2Fv2%2Fusers",
            "/?rest%5Froute=/wp/v2/users",
            "/?rest.route=/wp/v2/users",
            "/?rest+route=/wp/v2/users",
            "/?rest[route=/wp/v2/users",
            "/?a=1&rest_route=/WP/V2/Users/",
            "/?rest_route=//wp//v2/./users",
            "/any/page/?rest_route=/wp/v2/users",
            "/index.php/wp-json/wp/v2/users",
            "/INDEX.PHP/wp-json/wp/v2/users",
        ] {
            assert_eq!(matches(&l, "GET", target, &[]), Some(0), "{target}");
        }
        for target in [
            "/wp-json/wp/v2/posts",
            "/?rest_route=/wp/v2/posts",
            "/?not_rest_route=/wp/v2/users",
            "/?route=/wp/v2/users",
        ] {
            assert_eq!(matches(&l, "GET", target, &[]), None, "{target}");
        }
    }

    #[test]
    fn method_overrides_count_as_the_method() {
        let l = limiter(&[rule("/wp-json/wp/v2/users", "30/m", 10, &["GET"])]);
        assert_eq!(matches(&l, "GET", "/wp-json/wp/v2/users", &[]), Some(0));
        assert_eq!(matches(&l, "POST", "/wp-json/wp/v2/users", &[]), None);
        assert_eq!(
            matches(&l, "POST", "/wp-json/wp/v2/users?_method=GET", &[]),
            Some(0)
        );
        assert_eq!(
            matches(&l, "POST", "/wp-json/wp/v2/users?_method=get", &[]),
            Some(0)
        );
        assert_eq!(
            matches(&l, "POST", "/wp-json/wp/v2/users?%5Fmethod=GET", &[]),
            Some(0)
        );
        assert_eq!(
            matches(&l, "POST", "/wp-json/wp/v2/users?.method=GET", &[]),
            Some(0)
        );
        for name in [
            "x-http-method-override",
            "X_HTTP_METHOD_OVERRIDE",
            "x.http-method_override",
        ] {
            assert_eq!(
                matches(&l, "POST", "/wp-json/wp/v2/users", &[(name, "GET")]),
                Some(0),
                "{name}"
            );
        }
    }
}
