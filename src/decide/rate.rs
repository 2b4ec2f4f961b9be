//! Rate limits by the real visitor (`[[limits.rate]]`): which rules a request counts against, and
//! a bounded table of token buckets keyed on (rule, real client IP).
//!
//! **The key is the visitor, never the edge.** The client IP is the one the pipeline resolved
//! (`CF-Connecting-IP` from a trusted peer, else the peer), IPv6 grouped by /64 — one
//! subscriber's whole allocation, as nginx's and Cloudflare's own limiters group it — so that one
//! abusive visitor cannot lock out everyone who reaches the origin through the same Cloudflare
//! address, and an untrusted client cannot rotate keys by sending `CF-Connecting-IP`. A trusted
//! peer whose request names no believable visitor (no, a malformed or conflicting
//! `CF-Connecting-IP`: Cloudflare itself never sends that) is counted under its own address, so
//! such requests share one bucket instead of escaping the limit.
//!
//! **One table shared by every worker**, split into [`SHARDS`] shards each behind its own mutex;
//! a key always lands in the same shard, so a visitor's limit is the configured one whichever
//! core the kernel hands the connection to (Cloudflare multiplexes many visitors on one
//! connection and one visitor over several, so routing by key is impossible, and dividing the
//! rate by the number of workers would wrongly tighten it for a visitor whose requests all reach
//! one worker). The lock covers one hash lookup and a few stores; uncontended it costs ~20 ns.
//! The table outlives reloads; buckets belong to a rule's exact definition, so an unchanged rule
//! keeps its buckets and a changed one starts afresh.
//!
//! **Bounded, and not resettable by flooding.** Each shard is an LRU of at most
//! `rate_table_size / SHARDS` keys. A new visitor takes the place of the least recently seen one
//! only when that one's bucket is full again (forgetting it loses nothing); when the table is full
//! of visitors still in debt — a flood of fresh addresses — new visitors are refused until
//! entries expire (nginx's `limit_req` fails closed the same way), rather than evicting a guesser
//! who would come back with a fresh burst.
//!
//! **The algorithm** is GCRA (the generic cell rate algorithm, a token bucket kept as one
//! timestamp): a visitor may send `burst` requests at once, then one every `interval`; a refused
//! request does not use up anything, and `Retry-After` says when the next one is allowed.
//!
//! **What counts as the path.** WordPress reaches its REST API not only at `/wp-json/…` but also
//! through `?rest_route=/…` on any path and through PATH_INFO after any script that runs WordPress
//! (`/index.php/wp-json/…`, `/wp-blog-header.php/wp-json/…`), and its REST method can be
//! overridden by `_method=` or `X-HTTP-Method-Override`. So the matcher looks at every route the
//! request reaches ([`wordpress_routes`]), takes for each the longest prefix among the rules whose
//! methods fit (counting the overrides), and the request counts against *all* of those rules: a
//! login with `?rest_route=…` appended is still a login, and cannot move to another rule's bucket.

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
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

/// The most rules one request counts against (its path, PATH_INFO routes, REST routes).
const MAX_MATCHED: usize = 4;

/// A visitor as the limiter counts it: an IPv4 address, or an IPv6 /64 (IPv4-mapped IPv6 is the
/// IPv4 address). The family is part of the key, so no IPv6 prefix can stand for an IPv4 visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey {
    bits: u64,
    v6: bool,
}

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match canonical(ip) {
            IpAddr::V4(v4) => ClientKey {
                bits: u64::from(u32::from(v4)),
                v6: false,
            },
            IpAddr::V6(v6) => ClientKey {
                bits: (u128::from(v6) >> 64) as u64,
                v6: true,
            },
        }
    }

    /// The address or /64 this key stands for, for the WARN line.
    pub fn describe(self) -> String {
        if self.v6 {
            format!(
                "{}/64",
                std::net::Ipv6Addr::from(u128::from(self.bits) << 64)
            )
        } else {
            std::net::Ipv4Addr::from(self.bits as u32).to_string()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    client: ClientKey,
    /// The rule's identity: a hash of its whole definition (stable across reloads).
    rule: u32,
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
    id: u32,
    label: String,
    interval: u64,
    /// `(burst - 1) * interval`: how far ahead of now a visitor may run.
    tolerance: u64,
    /// The report window refusals are counted in (a bucket's count resets when it changes).
    window: AtomicU32,
    report: Mutex<Report>,
}

/// Refusals since the last WARN for one rule.
#[derive(Debug, Default)]
struct Report {
    /// Nanoseconds since the epoch of the last WARN; `None` before the first.
    last: Option<u64>,
    refused: u64,
    /// Refused because the table was full of visitors still in debt.
    table_full: u64,
    top: Option<(ClientKey, u32)>,
}

/// What the WARN for a rule says: refusals since the previous one, and who sent most of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateReport {
    pub rule: String,
    pub per_ip: String,
    pub burst: u32,
    pub refused: u64,
    /// Of those, new visitors refused because the table was full (a flood of addresses).
    pub table_full: u64,
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

/// The rules one request counts against (indexes into the limiter's rules), without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Matched {
    len: usize,
    rules: [usize; MAX_MATCHED],
}

impl Matched {
    fn add(&mut self, rule: usize) {
        if !self.rules[..self.len].contains(&rule) && self.len < MAX_MATCHED {
            self.rules[self.len] = rule;
            self.len += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[usize] {
        &self.rules[..self.len]
    }
}

/// The bucket table: shared by every worker and kept across reloads (same size).
#[derive(Debug)]
struct Table {
    shards: Box<[Mutex<LruCache<Key, Bucket>>]>,
    /// Picks the shard; seeded apart from the shards' own hash maps, so the keys in one shard are
    /// still spread over its map.
    hasher: lru::DefaultHasher,
    epoch: Instant,
    keys_per_shard: usize,
}

/// The rules and their shared, bounded table of buckets.
#[derive(Debug)]
pub struct RateLimiter {
    rules: Vec<RuleState>,
    table: Arc<Table>,
}

fn rule_id(rule: &RateRule) -> u32 {
    // std's DefaultHasher with its fixed keys: the same definition gets the same id in every
    // reload of this process.
    let mut h = std::hash::DefaultHasher::new();
    (&rule.prefix, &rule.per_ip, rule.burst, &rule.methods).hash(&mut h);
    h.finish() as u32
}

impl RateLimiter {
    /// `None` when there are no rules: the pipeline then skips rate limiting entirely. With
    /// `previous` (a reload), its table is kept when its size is unchanged, so unchanged rules
    /// keep their buckets.
    pub fn new(
        rules: &[RateRule],
        table_size: usize,
        previous: Option<&RateLimiter>,
    ) -> Option<RateLimiter> {
        if rules.is_empty() {
            return None;
        }
        let keys_per_shard = table_size.div_ceil(SHARDS).max(1);
        let table = match previous {
            Some(p) if p.table.keys_per_shard == keys_per_shard => p.table.clone(),
            _ => {
                let cap = NonZeroUsize::new(keys_per_shard).unwrap_or(NonZeroUsize::MIN);
                Arc::new(Table {
                    // Sparse: memory grows with the visitors actually seen, up to the bound.
                    shards: (0..SHARDS)
                        .map(|_| Mutex::new(LruCache::sparse(cap)))
                        .collect(),
                    hasher: lru::DefaultHasher::default(),
                    epoch: Instant::now(),
                    keys_per_shard,
                })
            }
        };
        let rules = rules
            .iter()
            .map(|r| {
                let interval = duration_ns(r.interval).max(1);
                RuleState {
                    id: rule_id(r),
                    label: r.label(),
                    interval,
                    tolerance: interval.saturating_mul(u64::from(r.burst.max(1) - 1)),
                    spec: r.clone(),
                    window: AtomicU32::new(0),
                    report: Mutex::new(Report::default()),
                }
            })
            .collect();
        Some(RateLimiter { rules, table })
    }

    /// The label of rule `i` (`/wp-login.php POST`), for the metric.
    pub fn label(&self, i: usize) -> &str {
        self.rules.get(i).map_or("", |r| r.label.as_str())
    }

    /// Keys remembered now (at most `rate_table_size`, rounded up to a multiple of [`SHARDS`]).
    pub fn len(&self) -> usize {
        self.table
            .shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys the table holds.
    pub fn capacity(&self) -> usize {
        self.table.keys_per_shard * SHARDS
    }

    /// The rules this request counts against: for each route it reaches (its path, and those of
    /// [`wordpress_routes`]), the longest prefix among the rules whose methods fit.
    pub fn matching_rules(
        &self,
        path: &str,
        query: Option<&str>,
        method: &http::Method,
        headers: &HeaderMap,
    ) -> Matched {
        let mut matched = Matched::default();
        // The common case — no rule's prefix matches the path and nothing reroutes it — costs
        // one comparison per rule. (`%`: a parameter name may be encoded, `rest%5Froute`.)
        // (A byte scan, not `str::contains`: building its substring searcher cost ~40 ns on
        // every request with a query.)
        let rerouted = query
            .is_some_and(|q| q.as_bytes().windows(5).any(|w| w == b"route") || q.contains('%'))
            || (path.contains('.') && contains_ci(path.as_bytes(), b".php/"));
        let on_path = self
            .rules
            .iter()
            .any(|r| starts_with_ci(path, &r.spec.prefix));
        if !rerouted && !on_path {
            return matched;
        }
        let mut overrides: Option<Vec<String>> = None;
        let mut longest = |route: &str, matched: &mut Matched| {
            let mut best: Option<(usize, usize)> = None;
            for (i, r) in self.rules.iter().enumerate() {
                let prefix = r.spec.prefix.as_str();
                if !starts_with_ci(route, prefix)
                    || best.is_some_and(|(_, len)| len >= prefix.len())
                {
                    continue;
                }
                // The request's own method first; the REST overrides only when that does not fit.
                if !r.spec.methods.is_empty()
                    && !r.spec.methods.iter().any(|m| m == method.as_str())
                {
                    let o = overrides.get_or_insert_with(|| method_overrides(query, headers));
                    if !r.spec.methods.iter().any(|m| o.contains(m)) {
                        continue;
                    }
                }
                best = Some((i, prefix.len()));
            }
            if let Some((i, _)) = best {
                matched.add(i);
            }
        };
        if on_path {
            longest(path, &mut matched);
        }
        if rerouted {
            for route in wordpress_routes(path, query) {
                longest(&route, &mut matched);
            }
        }
        matched
    }

    /// Counts one request from `client` against every rule in `rules`: `Ok` when each allows it,
    /// else the first refusal.
    pub fn check(&self, rules: &Matched, client: ClientKey, now: Instant) -> Result<(), Refusal> {
        rules
            .as_slice()
            .iter()
            .try_for_each(|&rule| self.check_at(rule, client, now))
    }

    /// Counts one request from `client` under rule `rule` at `now`.
    pub fn check_at(&self, rule: usize, client: ClientKey, now: Instant) -> Result<(), Refusal> {
        let Some(r) = self.rules.get(rule) else {
            return Ok(());
        };
        let table = &self.table;
        let now = duration_ns(now.saturating_duration_since(table.epoch));
        let key = Key { client, rule: r.id };
        let shard = (table.hasher.hash_one(key) as usize) % SHARDS;
        let Ok(mut lru) = table.shards[shard].lock() else {
            // A panic while holding this lock cannot leave a bucket half-written in a way that
            // matters; failing open keeps the site up.
            return Ok(());
        };
        let window = r.window.load(Ordering::Relaxed);
        // One lookup for a known visitor (the common case); a new one may have to make room.
        let bucket = match lru.get_mut(&key) {
            Some(b) => b,
            None => {
                if lru.len() >= lru.cap().get() {
                    // Full: the least recently seen visitor makes room only if forgetting it
                    // loses nothing (its bucket is full again); else this new visitor waits.
                    let busy_until = lru.peek_lru().map_or(0, |(_, b)| b.tat);
                    if busy_until > now {
                        drop(lru);
                        let wait = Duration::from_nanos(busy_until - now);
                        return Err(Refusal {
                            rule,
                            retry_after: wait.min(Duration::from_nanos(r.interval)),
                            report: self.note_refusal(r, client, 1, now, true),
                        });
                    }
                }
                lru.push(key, Bucket::default());
                match lru.get_mut(&key) {
                    Some(b) => b,
                    None => return Ok(()),
                }
            }
        };
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
        drop(lru);
        Err(Refusal {
            rule,
            retry_after: Duration::from_nanos(wait),
            report: self.note_refusal(r, client, refused, now, false),
        })
    }

    /// Adds a refusal to the rule's report and hands the report out when it is time for a WARN.
    fn note_refusal(
        &self,
        r: &RuleState,
        client: ClientKey,
        refused: u32,
        now: u64,
        table_full: bool,
    ) -> Option<Box<RateReport>> {
        let mut rep = r.report.lock().ok()?;
        rep.refused += 1;
        rep.table_full += u64::from(table_full);
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
            table_full: std::mem::take(&mut rep.table_full),
            since,
            top_client: top.describe(),
            top_refused,
        };
        rep.last = Some(now);
        r.window.fetch_add(1, Ordering::Relaxed);
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
/// - what follows each `.php` that is followed by `/` (PATH_INFO: `/index.php/wp-json/…`,
///   `/wp-blog-header.php/wp-json/…`; WordPress routes PATH_INFO like a path, and servers pass
///   it to any script);
/// - `/wp-json/<route>` for each `rest_route` query parameter, as PHP names parameters (see
///   [`php_params`]).
pub fn wordpress_routes(path: &str, query: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = path.as_bytes();
    let mut from = 0;
    // Bounded: each round moves past one `.php/`.
    while let Some(i) = find_ci(&bytes[from..], b".php/") {
        let after = from + i + ".php".len();
        out.push(path[after..].to_string());
        from = after;
        if out.len() >= 8 {
            break;
        }
    }
    for value in query
        .map(|q| php_params(q, "rest_route"))
        .unwrap_or_default()
    {
        let route = format!("/wp-json/{}", value.trim_start_matches('/'));
        out.push(normalize_path(&route).unwrap_or(route));
    }
    out
}

/// The methods the REST API may treat a request as besides its own: `_method` in the query and
/// `X-HTTP-Method-Override` (also under the names PHP folds onto it).
fn method_overrides(query: Option<&str>, headers: &HeaderMap) -> Vec<String> {
    let mut out: Vec<String> = query
        .map(|q| php_params(q, "_method"))
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.trim().to_ascii_uppercase())
        .collect();
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

/// The values of the query parameters PHP's `$_GET` files under `wanted`. PHP percent-decodes a
/// name (`+` is a space), cuts it at a NUL byte, drops leading spaces, turns `.` and ` ` into
/// `_`, and a `[` into `_` unless a `]` follows (then it is an array element of what came
/// before). Linear in the query's length; values are decoded only for matching names.
fn php_params(query: &str, wanted: &str) -> Vec<String> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_decode(name);
        let name = name.split('\0').next().unwrap_or("");
        let name = name.trim_start_matches(' ');
        let last_close = name.rfind(']');
        let mut php = String::with_capacity(name.len());
        for (i, c) in name.char_indices() {
            match c {
                '.' | ' ' => php.push('_'),
                '[' if last_close.is_some_and(|close| close > i) => break,
                '[' => php.push('_'),
                c => php.push(c),
            }
            if php.len() > wanted.len() {
                break;
            }
        }
        if php == wanted {
            out.push(form_decode(value));
        }
    }
    out
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
        let l = RateLimiter::new(&[rule("/wp-login.php", "30/m", 3, &[])], 65_536, None).unwrap();
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
        let l = RateLimiter::new(&[rule("/", "1/h", 1, &[])], 65_536, None).unwrap();
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
        // No IPv6 /64 stands for an IPv4 visitor (ffff:ffff:cb00:7109::/64 is not 203.0.113.9).
        assert_eq!(ip("0.0.0.0").describe(), "0.0.0.0");
        assert_eq!(ip("2001:db8:1:2::7").describe(), "2001:db8:1:2::/64");
        assert_ne!(ip("1.2.3.4"), ip("::1.2.3.4"));
        assert_ne!(ip("203.0.113.9"), ip("ffff:ffff:cb00:7109::1"));
        assert!(l.check_at(0, ip("ffff:ffff:cb00:710a::1"), t0).is_ok());
        assert!(l.check_at(0, ip("203.0.113.10"), t0).is_err());
    }

    #[test]
    fn each_rule_has_its_own_buckets() {
        let rules = [
            rule("/wp-login.php", "1/h", 1, &[]),
            rule("/xmlrpc.php", "1/h", 1, &[]),
        ];
        let l = RateLimiter::new(&rules, 65_536, None).unwrap();
        let t0 = Instant::now();
        let v = ip("203.0.113.9");
        assert!(l.check_at(0, v, t0).is_ok());
        assert!(l.check_at(1, v, t0).is_ok());
        assert!(l.check_at(0, v, t0).is_err());
        assert!(l.check_at(1, v, t0).is_err());
    }

    fn v6(i: u32) -> ClientKey {
        ClientKey::of(
            std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(i) << 64)).into(),
        )
    }

    #[test]
    fn the_table_never_holds_more_than_its_bound() {
        let l = RateLimiter::new(&[rule("/", "1/s", 1, &[])], 1024, None).unwrap();
        let t0 = Instant::now();
        // Visitors whose buckets are full again make room for new ones.
        for i in 0..100_000u32 {
            let at = t0 + Duration::from_millis(u64::from(i / 128) * 1100);
            assert!(l.check_at(0, v6(i), at).is_ok(), "{i}");
        }
        assert_eq!(l.capacity(), 1024);
        assert!(l.len() <= 1024 && l.len() > 900, "{}", l.len());
    }

    #[test]
    fn a_flood_of_new_visitors_cannot_evict_a_limited_one() {
        let l = RateLimiter::new(&[rule("/wp-login.php", "1/h", 1, &[])], 1024, None).unwrap();
        let t0 = Instant::now();
        let guesser = ip("203.0.113.66");
        assert!(l.check_at(0, guesser, t0).is_ok());
        assert!(l.check_at(0, guesser, t0).is_err());
        // 100,000 fresh addresses, each still in debt: the table fills, then new ones wait.
        let mut refused_new = 0;
        for i in 0..100_000u32 {
            if let Err(r) = l.check_at(0, v6(i), t0) {
                refused_new += 1;
                assert!(r.retry_after > Duration::ZERO);
            }
        }
        assert!(l.len() <= 1024);
        assert!(refused_new >= 100_000 - 1024, "{refused_new}");
        // The guesser is still limited: no fresh burst from the flood.
        assert!(l.check_at(0, guesser, t0 + Duration::from_secs(1)).is_err());
        // Once buckets are full again (an hour later), new visitors are welcome again.
        assert!(l
            .check_at(0, v6(200_000), t0 + Duration::from_secs(3601))
            .is_ok());
    }

    #[test]
    fn an_unchanged_rule_keeps_its_buckets_across_a_reload_and_a_changed_one_starts_afresh() {
        let login = rule("/wp-login.php", "1/h", 1, &[]);
        let xmlrpc = rule("/xmlrpc.php", "1/h", 1, &[]);
        let before = RateLimiter::new(&[login.clone(), xmlrpc.clone()], 65_536, None).unwrap();
        let t0 = Instant::now();
        let v = ip("203.0.113.9");
        assert!(before.check_at(0, v, t0).is_ok() && before.check_at(1, v, t0).is_ok());
        // The xmlrpc rule changes and moves to the front; the login rule is untouched.
        let looser = rule("/xmlrpc.php", "2/h", 1, &[]);
        let after = RateLimiter::new(&[looser, login], 65_536, Some(&before)).unwrap();
        assert!(after.check_at(1, v, t0).is_err(), "login keeps its bucket");
        assert!(
            after.check_at(0, v, t0).is_ok(),
            "the changed rule starts afresh"
        );
        // Another table size: a new table.
        let resized = RateLimiter::new(&[xmlrpc], 4096, Some(&before)).unwrap();
        assert!(resized.check_at(0, v, t0).is_ok());
    }

    #[test]
    fn one_warn_per_rule_per_period_naming_the_top_offender() {
        let l =
            RateLimiter::new(&[rule("/wp-login.php", "1/h", 1, &["POST"])], 65_536, None).unwrap();
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
        RateLimiter::new(rules, 65_536, None).unwrap()
    }

    fn matches(
        l: &RateLimiter,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Vec<usize> {
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
        l.matching_rules(path, query, &method.parse().unwrap(), &h)
            .as_slice()
            .to_vec()
    }

    #[test]
    fn the_longest_prefix_whose_methods_fit_wins() {
        let l = limiter(&[
            rule("/", "100/m", 10, &[]),
            rule("/wp-login.php", "30/m", 10, &["POST"]),
            rule("/wp-login.php", "60/m", 10, &["GET"]),
        ]);
        assert_eq!(matches(&l, "POST", "/wp-login.php", &[]), vec![1]);
        assert_eq!(
            matches(&l, "GET", "/wp-login.php?action=lostpassword", &[]),
            vec![2]
        );
        assert_eq!(matches(&l, "PUT", "/wp-login.php", &[]), vec![0]);
        // Case and PATH_INFO spellings run the same file.
        assert_eq!(matches(&l, "POST", "/WP-Login.PHP", &[]), vec![1]);
        // PATH_INFO runs the same file; the route after it falls under the catch-all too.
        assert_eq!(matches(&l, "POST", "/wp-login.php/x", &[]), vec![1, 0]);
        let only = limiter(&[rule("/xmlrpc.php", "10/m", 5, &[])]);
        assert_eq!(matches(&only, "GET", "/", &[]), Vec::<usize>::new());
        assert_eq!(matches(&only, "POST", "/xmlrpc.php?rsd", &[]), vec![0]);
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
            // PHP cuts a parameter name at NUL.
            "/?rest_route%00=/wp/v2/users",
            "/?rest_route%00x=/wp/v2/users",
            "/?%20rest_route=/wp/v2/users",
            // PATH_INFO after any script that runs WordPress.
            "/wp-blog-header.php/wp-json/wp/v2/users",
            "/wp-trackback.php/wp-json/wp/v2/users",
            "/wp-login.php/index.php/wp-json/wp/v2/users",
        ] {
            assert_eq!(matches(&l, "GET", target, &[]), vec![0], "{target}");
        }
        for target in [
            "/wp-json/wp/v2/posts",
            "/?rest_route=/wp/v2/posts",
            "/?not_rest_route=/wp/v2/users",
            "/?route=/wp/v2/users",
        ] {
            assert_eq!(
                matches(&l, "GET", target, &[]),
                Vec::<usize>::new(),
                "{target}"
            );
        }
    }

    #[test]
    fn a_request_counts_against_the_rule_of_every_route_it_reaches() {
        let l = limiter(&[
            rule("/wp-login.php", "30/m", 10, &["POST"]),
            rule("/xmlrpc.php", "10/m", 5, &[]),
            rule("/wp-json/wp/v2/users", "30/m", 10, &[]),
            rule("/", "600/m", 100, &[]),
        ]);
        // A login with a REST route appended is still a login (and a users request).
        assert_eq!(matches(&l, "POST", "/wp-login.php", &[]), vec![0]);
        assert_eq!(
            matches(&l, "POST", "/wp-login.php?rest_route=/wp/v2/users", &[]),
            vec![0, 2]
        );
        assert_eq!(
            matches(&l, "POST", "/xmlrpc.php/index.php/wp-login.php", &[]),
            vec![1, 3, 0]
        );
        // Within one route the longest prefix wins: the catch-all is not counted twice.
        assert_eq!(matches(&l, "GET", "/xmlrpc.php", &[]), vec![1]);
        assert_eq!(matches(&l, "GET", "/about/", &[]), vec![3]);
        // Refused by any of them is refused.
        let t0 = Instant::now();
        let v = ip("203.0.113.5");
        for _ in 0..5 {
            assert!(l.check_at(1, v, t0).is_ok());
        }
        let both = l.matching_rules(
            "/wp-login.php",
            Some("rest_route=/wp/v2/users"),
            &http::Method::POST,
            &HeaderMap::new(),
        );
        assert!(l.check(&both, v, Instant::now()).is_ok());
        let xmlrpc_too = l.matching_rules(
            "/xmlrpc.php/index.php/wp-login.php",
            None,
            &http::Method::POST,
            &HeaderMap::new(),
        );
        assert_eq!(l.check(&xmlrpc_too, v, Instant::now()).unwrap_err().rule, 1);
    }

    #[test]
    fn query_names_are_read_like_php_in_linear_time() {
        assert_eq!(php_params("rest_route%00=/a&b=1", "rest_route"), ["/a"]);
        assert_eq!(php_params("rest[route=/b", "rest_route"), ["/b"]);
        assert_eq!(
            php_params("rest[x]route=/c", "rest_route"),
            Vec::<String>::new()
        );
        assert_eq!(php_params("_method%00=GET", "_method"), ["GET"]);
        // 200,000 brackets in one name: one pass (was quadratic: ~100 ms per 64 KB).
        let long = format!("{}=x&rest_route=/d", "[".repeat(200_000));
        assert_eq!(php_params(&long, "rest_route"), ["/d"]);
        let long = format!("%{}=x", "[".repeat(200_000));
        assert!(php_params(&long, "rest_route").is_empty());
    }

    #[test]
    fn method_overrides_count_as_the_method() {
        let l = limiter(&[rule("/wp-json/wp/v2/users", "30/m", 10, &["GET"])]);
        assert_eq!(matches(&l, "GET", "/wp-json/wp/v2/users", &[]), vec![0]);
        assert_eq!(
            matches(&l, "POST", "/wp-json/wp/v2/users", &[]),
            Vec::<usize>::new()
        );
        assert_eq!(
            matches(&l, "POST", "/wp-json/wp/v2/users?_method=GET", &[]),
            vec![0]
        );
        assert_eq!(
            matches(&l, "POST", "/wp-json/wp/v2/users?_method=get", &[]),
            vec![0]
        );
        assert_eq!(
            matches(&l, "POST", "/wp-json/wp/v2/users?%5Fmethod=GET", &[]),
            vec![0]
        );
        assert_eq!(
            matches(&l, "POST", "/wp-json/wp/v2/users?.method=GET", &[]),
            vec![0]
        );
        assert_eq!(
            matches(&l, "POST", "/wp-json/wp/v2/users?_method%00=GET", &[]),
            vec![0]
        );
        for name in [
            "x-http-method-override",
            "X_HTTP_METHOD_OVERRIDE",
            "x.http-method_override",
        ] {
            assert_eq!(
                matches(&l, "POST", "/wp-json/wp/v2/users", &[(name, "GET")]),
                vec![0],
                "{name}"
            );
        }
    }
}
