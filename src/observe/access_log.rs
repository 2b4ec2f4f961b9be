//! The access log: one line per request, JSON or Apache/nginx "combined", to stdout or a file.
//!
//! Formatting happens on the request's task (a few hundred nanoseconds); writing happens on a
//! dedicated thread that takes batches, so a slow or failing disk never blocks a request.
//! When the backlog is full or a write fails (disk full), lines are dropped and counted
//! (`access_log_dropped` in the metrics, and a rate-limited WARN) — requests continue.
//! SIGUSR1 reopens the file (logrotate's `postrotate`).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::decide::pipeline::{ConnContext, Decision, Route, TlsInfo};
use crate::decide::trust::IpText;
use crate::decide::visitor::Scheme;

pub use crate::config::Format;

/// Which side a request failed on, for the log line and the operator reading it: the visitor's
/// request was refused or broken (`client`), the backend failed (`backend`), or origin-gate
/// itself (`origin-gate`). Derived from the route and the backend error, never set by hand, so
/// it cannot disagree with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    None,
    Client,
    Backend,
    Gate,
}

impl Side {
    /// `upstream_status`: what the backend answered, when it did — a backend's own 5xx passed
    /// on to the visitor is the backend's failure, not origin-gate's.
    pub fn of(
        route: Route,
        status: u16,
        upstream_status: Option<u16>,
        upstream_error: Option<&str>,
    ) -> Side {
        match route {
            Route::Lockdown
            | Route::TooLarge
            | Route::AuthDenied
            | Route::IpDenied
            | Route::BadRequest
            | Route::Misdirected
            | Route::MethodNotAllowed
            | Route::BodyTimeout
            | Route::RateLimited => Side::Client,
            _ if upstream_error.is_some() => Side::Backend,
            _ if status >= 500 && upstream_status == Some(status) => Side::Backend,
            _ if status >= 500 => Side::Gate,
            _ => Side::None,
        }
    }

    pub fn as_str(self) -> Option<&'static str> {
        match self {
            Side::None => None,
            Side::Client => Some("client"),
            Side::Backend => Some("backend"),
            Side::Gate => Some("origin-gate"),
        }
    }
}

/// The one record of a request: begun from the decision, filled in while the request runs,
/// finished (duration, bytes) when the response body ends, then formatted by either format.
/// A new log field is one field here plus one line in each formatter.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub ts: SystemTime,
    /// When handling began (not logged; the duration is measured from it).
    pub start: Instant,
    pub client_ip: IpAddr,
    pub peer: SocketAddr,
    pub trusted: bool,
    pub scheme: Scheme,
    pub listener: Scheme,
    pub tls: Option<TlsInfo>,
    pub method: http::Method,
    pub host: Option<Field>,
    /// The target as forwarded (path normalised); shares the request's bytes.
    pub uri: http::Uri,
    pub version: &'static str,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub upstream: Option<Duration>,
    pub upstream_status: Option<u16>,
    pub upstream_error: Option<&'static str>,
    pub user: Option<String>,
    pub route: Route,
    pub cf_ray: Option<Field>,
    pub user_agent: Option<Field>,
    pub referer: Option<Field>,
    /// A `doctor` probe from this machine: logged at debug, not as an access line or a WARN.
    pub quiet: bool,
}

/// A request-head value kept for the log line without copying it: a reference to the bytes the
/// head was parsed into, read as text (lossily, like the log always did) when the line is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field(http::HeaderValue);

impl Field {
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.0.as_bytes())
    }

    /// A fixed value (tests, benches).
    pub fn from_static(s: &'static str) -> Field {
        Field(http::HeaderValue::from_static(s))
    }
}

impl From<&http::HeaderValue> for Field {
    fn from(v: &http::HeaderValue) -> Field {
        Field(v.clone())
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// `a=1&b=2` → `a=-&b=-`: the keys stay useful, the values (tokens, e-mail addresses) do not leak.
pub fn redact_query(q: &str) -> String {
    q.split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) => format!("{k}=-"),
            None => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl AccessRecord {
    /// The record of a request as decided: who, what, and the route so far.
    pub fn begin(
        start: Instant,
        conn: &ConnContext,
        head: &http::request::Parts,
        decision: &Decision,
        cf_ray: Option<&http::HeaderValue>,
    ) -> AccessRecord {
        // Shared, not copied: every field below is a reference count on the head's bytes.
        let field = |name: http::header::HeaderName| head.headers.get(name).map(Field::from);
        AccessRecord {
            ts: SystemTime::now(),
            start,
            client_ip: decision.visitor.client_ip,
            peer: conn.peer,
            trusted: decision.visitor.trusted_peer,
            scheme: decision.visitor.scheme,
            listener: conn.listener,
            tls: conn.tls.clone(),
            method: head.method.clone(),
            host: decision.host.as_ref().map(Field::from),
            uri: head.uri.clone(),
            version: version_str(head.version),
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            duration: Duration::ZERO,
            upstream: None,
            upstream_status: None,
            upstream_error: None,
            user: None,
            route: decision.route,
            cf_ray: cf_ray.map(Field::from),
            user_agent: field(http::header::USER_AGENT),
            referer: field(http::header::REFERER),
            quiet: false,
        }
    }

    /// The path as forwarded.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// The canonical Host, when there was one.
    pub fn host(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.host.as_ref().map(Field::text)
    }

    /// Which side failed, if any.
    pub fn side(&self) -> Side {
        Side::of(
            self.route,
            self.status,
            self.upstream_status,
            self.upstream_error,
        )
    }

    /// The JSON line, written by hand: measured against serde_json on the hot-path bench, the
    /// generic serializer and `time`'s RFC 3339 formatter were half the cost of a request's
    /// decision. The unit tests check it against serde_json's output field by field.
    pub fn to_json(&self, redact: bool) -> String {
        let mut out = String::new();
        self.push_json(&mut out, redact);
        out
    }

    /// The JSON line appended to `out` (the request path reuses one buffer per thread).
    pub fn push_json(&self, out: &mut String, redact: bool) {
        // Sized once: the fixed part plus the variable fields (escaping rarely adds much).
        let len = |f: &Option<Field>| f.as_ref().map_or(0, |v| v.0.len());
        out.reserve(
            512 + self.uri.path().len()
                + self.uri.query().map_or(0, str::len)
                + len(&self.host)
                + len(&self.cf_ray)
                + len(&self.user_agent)
                + len(&self.referer)
                + self.user.as_ref().map_or(0, String::len),
        );
        out.push_str("{\"ts\":\"");
        push_rfc3339(out, self.ts);
        out.push_str("\",\"client_ip\":\"");
        out.push_str(IpText::new(self.client_ip).as_str());
        out.push_str("\",\"peer_ip\":\"");
        out.push_str(IpText::new(crate::decide::trust::canonical(self.peer.ip())).as_str());
        out.push_str(if self.trusted {
            "\",\"trusted\":true,\"scheme\":\""
        } else {
            "\",\"trusted\":false,\"scheme\":\""
        });
        out.push_str(self.scheme.as_str());
        out.push_str("\",\"listener\":\"");
        out.push_str(self.listener.as_str());
        out.push_str("\",\"tls\":");
        match &self.tls {
            Some(t) => {
                out.push_str("{\"version\":");
                push_json_str(out, t.version);
                out.push_str(",\"sni\":");
                push_json_opt(out, t.sni.as_deref());
                let _ = write!(
                    out,
                    ",\"client_cert_verified\":{}}}",
                    t.client_cert_verified
                );
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"method\":");
        push_json_str(out, self.method.as_str());
        out.push_str(",\"host\":");
        push_json_opt(out, self.host().as_deref());
        out.push_str(",\"path\":");
        push_json_str(out, self.path());
        out.push_str(",\"http_version\":");
        push_json_str(out, self.version);
        out.push_str(",\"query\":");
        match self.query() {
            Some(q) if redact => push_json_str(out, &redact_query(q)),
            Some(q) => push_json_str(out, q),
            None => out.push_str("null"),
        }
        let mut int = itoa::Buffer::new();
        let mut float = ryu::Buffer::new();
        out.push_str(",\"status\":");
        out.push_str(int.format(self.status));
        out.push_str(",\"bytes_in\":");
        out.push_str(int.format(self.bytes_in));
        out.push_str(",\"bytes_out\":");
        out.push_str(int.format(self.bytes_out));
        out.push_str(",\"duration_ms\":");
        out.push_str(float.format(ms(self.duration)));
        out.push_str(",\"upstream_ms\":");
        match self.upstream {
            Some(u) => out.push_str(float.format(ms(u))),
            None => out.push_str("null"),
        }
        if let Some(s) = self.upstream_status {
            out.push_str(",\"upstream_status\":");
            out.push_str(int.format(s));
        }
        if let Some(e) = self.upstream_error {
            out.push_str(",\"upstream_error\":");
            push_json_str(out, e);
        }
        out.push_str(",\"user\":");
        push_json_opt(out, self.user.as_deref());
        out.push_str(",\"route\":\"");
        out.push_str(self.route.as_str());
        out.push_str("\",\"side\":");
        push_json_opt(out, self.side().as_str());
        out.push_str(",\"cf_ray\":");
        push_json_opt(out, self.cf_ray.as_ref().map(Field::text).as_deref());
        out.push_str(",\"user_agent\":");
        push_json_opt(out, self.user_agent.as_ref().map(Field::text).as_deref());
        out.push_str(",\"referer\":");
        push_json_opt(out, self.referer.as_ref().map(Field::text).as_deref());
        out.push('}');
    }

    /// Apache/nginx "combined", real client IP first, so goaccess and fail2ban filters work:
    /// `ip - user [24/Nov/2026:06:03:53 +0000] "GET /path?q HTTP/1.1" 200 1234 "referer" "agent"`.
    pub fn to_combined(&self, redact: bool) -> String {
        let mut out = String::new();
        self.push_combined(&mut out, redact);
        out
    }

    /// The combined line appended to `out` (the request path reuses one buffer per thread).
    pub fn push_combined(&self, out: &mut String, redact: bool) {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let t = time::OffsetDateTime::from(self.ts);
        out.reserve(256 + self.path().len() + self.query().map_or(0, str::len));
        out.push_str(IpText::new(self.client_ip).as_str());
        out.push_str(" - ");
        match &self.user {
            Some(u) => push_quote_free(out, u),
            None => out.push('-'),
        }
        let _ = write!(
            out,
            " [{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000] \"",
            t.day(),
            MONTHS[usize::from(u8::from(t.month())) - 1],
            t.year(),
            t.hour(),
            t.minute(),
            t.second(),
        );
        push_quote_free(out, self.method.as_str());
        out.push(' ');
        push_quote_free(out, self.path());
        if let Some(q) = self.query() {
            out.push('?');
            if redact {
                push_quote_free(out, &redact_query(q));
            } else {
                push_quote_free(out, q);
            }
        }
        let _ = write!(out, " {}\" {} ", self.version, self.status);
        if self.bytes_out == 0 {
            out.push('-');
        } else {
            out.push_str(itoa::Buffer::new().format(self.bytes_out));
        }
        for field in [&self.referer, &self.user_agent] {
            out.push_str(" \"");
            match field {
                Some(v) => push_quote_free(out, &v.text()),
                None => out.push('-'),
            }
            out.push('"');
        }
    }
}

fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `2026-11-24T06:32:49.565342453Z` (RFC 3339, UTC; the fraction only when there is one).
fn push_rfc3339(out: &mut String, ts: SystemTime) {
    let t = time::OffsetDateTime::from(ts);
    let digits = |n: u32, width: usize, out: &mut String| {
        let mut buf = itoa::Buffer::new();
        let s = buf.format(n);
        for _ in s.len()..width {
            out.push('0');
        }
        out.push_str(s);
    };
    digits(u32::try_from(t.year()).unwrap_or(0), 4, out);
    out.push('-');
    digits(u32::from(u8::from(t.month())), 2, out);
    out.push('-');
    digits(u32::from(t.day()), 2, out);
    out.push('T');
    digits(u32::from(t.hour()), 2, out);
    out.push(':');
    digits(u32::from(t.minute()), 2, out);
    out.push(':');
    digits(u32::from(t.second()), 2, out);
    if t.nanosecond() != 0 {
        out.push('.');
        digits(t.nanosecond(), 9, out);
    }
    out.push('Z');
}

/// A JSON string literal (RFC 8259 §7): quotes, backslashes and control characters escaped;
/// runs of other bytes are copied whole (every byte that needs escaping is ASCII, so the cuts
/// always fall on character boundaries).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or(""));
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or(""));
    out.push('"');
}

fn push_json_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.push_str("null"),
    }
}

/// Escapes what would break a quoted combined-log field (quotes, backslashes, control bytes),
/// appending to the line.
fn push_quote_free(out: &mut String, s: &str) {
    // Nearly every field is printable ASCII with nothing to escape: copied whole.
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Most bytes waiting for the writer before lines are dropped rather than held.
const MAX_PENDING: usize = 8 << 20;
/// The writer wakes this often, or earlier when this much is pending.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
const FLUSH_BYTES: usize = 256 << 10;

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    lines: u64,
    closed: bool,
}

struct SinkState {
    sink: Sink,
    dest: Option<PathBuf>,
    last_warn: Option<Instant>,
    /// The batch being written; swapped with the pending one, so the two buffers are reused and
    /// logging allocates nothing in steady state (a fresh buffer per batch, grown by doubling on
    /// the request threads and freed on this one, left memory behind in the allocator).
    spare: Vec<u8>,
}

struct Inner {
    pending: Mutex<Pending>,
    wake: Condvar,
    sink: Mutex<SinkState>,
    dropped: AtomicU64,
}

/// The access-log sink shared by all requests.
///
/// Lines are appended to one in-memory batch under a short lock; a writer thread takes the
/// whole batch every 200 ms (or at 256 KiB) and writes it with one system call. Measured on the
/// load benchmark: a queue with one wake-up per line cost a context switch per request.
pub struct AccessLog {
    inner: Arc<Inner>,
}

impl AccessLog {
    /// Starts the writer thread for `destination` (None: stdout).
    pub fn start(destination: Option<PathBuf>) -> AccessLog {
        let inner = Arc::new(Inner {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            sink: Mutex::new(SinkState {
                sink: Sink::open(&destination),
                dest: destination,
                last_warn: None,
                spare: Vec::with_capacity(FLUSH_BYTES),
            }),
            dropped: AtomicU64::new(0),
        });
        let worker = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(&worker));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the access-log writer; access lines will be dropped");
        }
        AccessLog { inner }
    }

    /// Queues a line; never blocks on I/O. Past 8 MiB of backlog the line is dropped and counted.
    pub fn write(&self, line: &str) {
        let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.buf.len() + line.len() >= MAX_PENDING {
            drop(p);
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        p.buf.extend_from_slice(line.as_bytes());
        p.buf.push(b'\n');
        p.lines += 1;
        if p.buf.len() >= FLUSH_BYTES {
            self.inner.wake.notify_one();
        }
    }

    /// Reopens the file (after logrotate moved it away): what was logged before goes to the old
    /// file, everything after to the new one.
    pub fn reopen(&self) {
        self.switch(self.destination());
    }

    /// Switches to another destination when a reload changed `log.access_file`.
    pub fn set_destination(&self, dest: Option<PathBuf>) {
        if self.destination() != dest {
            self.switch(dest);
        }
    }

    fn destination(&self) -> Option<PathBuf> {
        self.inner
            .sink
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dest
            .clone()
    }

    fn switch(&self, dest: Option<PathBuf>) {
        flush(&self.inner);
        let mut s = self.inner.sink.lock().unwrap_or_else(|e| e.into_inner());
        s.sink = Sink::open(&dest);
        s.dest = dest;
    }

    /// Writes what is pending now (at shutdown, so the last requests are not lost).
    pub fn flush_now(&self) {
        flush(&self.inner);
    }

    /// Lines lost (backlog full or write failed).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.inner.wake.notify_one();
    }
}

enum Sink {
    Stdout(io::Stdout),
    File(File),
    Broken,
}

impl Sink {
    fn open(dest: &Option<PathBuf>) -> Sink {
        match dest {
            None => Sink::Stdout(io::stdout()),
            Some(path) => match OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => Sink::File(f),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "cannot open the access log; lines are dropped until it can be opened (SIGUSR1 retries)");
                    Sink::Broken
                }
            },
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => {
                let mut w = w.lock();
                w.write_all(bytes)?;
                w.flush()
            }
            Sink::File(f) => f.write_all(bytes),
            Sink::Broken => Err(io::Error::other("access log not open")),
        }
    }
}

/// Takes the pending batch and writes it; failures drop the batch's lines and count them.
fn flush(inner: &Inner) {
    let mut s = inner.sink.lock().unwrap_or_else(|e| e.into_inner());
    let lines = {
        let mut p = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.buf.is_empty() {
            return;
        }
        std::mem::swap(&mut p.buf, &mut s.spare);
        std::mem::take(&mut p.lines)
    };
    let state = &mut *s;
    let written = state.sink.write_all(&state.spare);
    state.spare.clear();
    if state.spare.capacity() > 4 * FLUSH_BYTES {
        // A burst grew it; do not keep the peak forever.
        state.spare.shrink_to(FLUSH_BYTES);
    }
    if let Err(e) = written {
        let total = inner.dropped.fetch_add(lines, Ordering::Relaxed) + lines;
        if state
            .last_warn
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            state.last_warn = Some(Instant::now());
            tracing::warn!(error = %e, dropped_total = total, "access log write failed (disk full?): lines are dropped and counted, requests continue");
        }
    }
}

fn writer(inner: &Inner) {
    loop {
        {
            let p = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            let (p, _) = inner
                .wake
                .wait_timeout_while(p, FLUSH_EVERY, |p| !p.closed && p.buf.len() < FLUSH_BYTES)
                .unwrap_or_else(|e| e.into_inner());
            if p.closed && p.buf.is_empty() {
                return;
            }
        }
        flush(inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            ts: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_500_000),
            start: Instant::now(),
            client_ip: "203.0.113.9".parse().unwrap(),
            peer: "173.245.48.1:40000".parse().unwrap(),
            trusted: true,
            scheme: Scheme::Https,
            listener: Scheme::Http,
            tls: None,
            method: http::Method::GET,
            host: Some(Field::from_static("example.com")),
            uri: http::Uri::from_static("/wp-login.php?redirect_to=x&reauth=1"),
            version: "HTTP/1.1",
            status: 200,
            bytes_in: 0,
            bytes_out: 1234,
            duration: Duration::from_micros(1500),
            upstream: Some(Duration::from_micros(1200)),
            upstream_status: Some(200),
            upstream_error: None,
            user: None,
            route: Route::Proxy,
            cf_ray: Some(Field::from_static("8e4f-LHR")),
            user_agent: Some(Field::from_static("Mozilla/5.0 \"quoted\"")),
            referer: None,
            quiet: false,
        }
    }

    #[test]
    fn combined_line_is_apache_combined() {
        assert_eq!(
            record().to_combined(false),
            "203.0.113.9 - - [24/Nov/2026:06:00:00 +0000] \"GET /wp-login.php?redirect_to=x&reauth=1 HTTP/1.1\" 200 1234 \"-\" \"Mozilla/5.0 \\\"quoted\\\"\""
        );
        assert!(record()
            .to_combined(true)
            .contains("?redirect_to=-&reauth=- "));
    }

    #[test]
    fn a_backend_5xx_passed_on_is_the_backends_and_origin_gates_own_is_its_own() {
        let side = |status, upstream_status, error| {
            Side::of(Route::Proxy, status, upstream_status, error).as_str()
        };
        assert_eq!(side(501, Some(501), None), Some("backend"));
        assert_eq!(side(503, Some(503), None), Some("backend"));
        assert_eq!(side(502, None, Some("refused")), Some("backend"));
        assert_eq!(
            side(502, Some(101), Some("unrequested_upgrade")),
            Some("backend")
        );
        // origin-gate's own 5xx (no backend answer, or an answer it replaced).
        assert_eq!(side(500, None, None), Some("origin-gate"));
        assert_eq!(side(502, Some(200), None), Some("origin-gate"));
        assert_eq!(side(200, Some(200), None), None);
        assert_eq!(
            Side::of(Route::RateLimited, 429, None, None).as_str(),
            Some("client")
        );
    }

    #[test]
    fn combined_line_escapes_quotes_backslashes_and_control_bytes_in_every_quoted_field() {
        let mut r = record();
        r.user = Some("a\"b\\c\nd".into());
        r.referer = Some(Field::from(
            &http::HeaderValue::from_bytes("x\"y é".as_bytes()).unwrap(),
        ));
        r.uri = http::Uri::from_static("/p?q=1");
        assert_eq!(
            r.to_combined(false),
            "203.0.113.9 - a\\\"b\\\\c\\x0ad [24/Nov/2026:06:00:00 +0000] \"GET /p?q=1 HTTP/1.1\" 200 1234 \"x\\\"y é\" \"Mozilla/5.0 \\\"quoted\\\"\""
        );
        r.bytes_out = 0;
        r.user = None;
        r.referer = None;
        assert!(r.to_combined(true).contains("- - ["));
        assert!(r
            .to_combined(true)
            .contains("\"GET /p?q=- HTTP/1.1\" 200 - \"-\""));
    }

    use serde::Serialize;

    #[derive(Serialize)]
    struct JsonTls<'a> {
        version: &'a str,
        sni: Option<&'a str>,
        client_cert_verified: bool,
    }

    #[derive(Serialize)]
    struct JsonLine<'a> {
        ts: String,
        client_ip: IpAddr,
        peer_ip: IpAddr,
        trusted: bool,
        scheme: &'static str,
        listener: &'static str,
        tls: Option<JsonTls<'a>>,
        method: &'a str,
        host: Option<String>,
        path: &'a str,
        http_version: &'a str,
        query: Option<String>,
        status: u16,
        bytes_in: u64,
        bytes_out: u64,
        duration_ms: f64,
        upstream_ms: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        upstream_status: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        upstream_error: Option<&'static str>,
        user: Option<&'a str>,
        route: &'static str,
        side: Option<&'static str>,
        cf_ray: Option<String>,
        user_agent: Option<String>,
        referer: Option<String>,
    }

    /// The reference: the same line through serde_json.
    fn serde_json_line(r: &AccessRecord, redact: bool) -> serde_json::Value {
        let line = JsonLine {
            ts: time::OffsetDateTime::from(r.ts)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            client_ip: r.client_ip,
            peer_ip: crate::decide::trust::canonical(r.peer.ip()),
            trusted: r.trusted,
            scheme: r.scheme.as_str(),
            listener: r.listener.as_str(),
            tls: r.tls.as_ref().map(|t| JsonTls {
                version: t.version,
                sni: t.sni.as_deref(),
                client_cert_verified: t.client_cert_verified,
            }),
            method: r.method.as_str(),
            host: r.host.as_ref().map(|v| v.text().into_owned()),
            path: r.path(),
            http_version: r.version,
            query: r.query().map(|q| {
                if redact {
                    redact_query(q)
                } else {
                    q.to_string()
                }
            }),
            status: r.status,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            duration_ms: ms(r.duration),
            upstream_ms: r.upstream.map(ms),
            upstream_status: r.upstream_status,
            upstream_error: r.upstream_error,
            user: r.user.as_deref(),
            route: r.route.as_str(),
            side: r.side().as_str(),
            cf_ray: r.cf_ray.as_ref().map(|v| v.text().into_owned()),
            user_agent: r.user_agent.as_ref().map(|v| v.text().into_owned()),
            referer: r.referer.as_ref().map(|v| v.text().into_owned()),
        };
        serde_json::to_value(&line).unwrap()
    }

    #[test]
    fn hand_written_json_equals_serde_json() {
        let mut records = vec![record()];
        let mut odd = record();
        odd.ts = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_795_500_000_123_456_789);
        // Control characters cannot be in a header value; a Basic-auth user name can hold them.
        odd.user = Some("quote \" backslash \\ newline \n tab \t bell \u{7} ëditor 雪 😀".into());
        // Header values may carry UTF-8 (obs-text bytes) and invalid bytes: logged lossily.
        odd.user_agent = Some(Field::from(
            &http::HeaderValue::from_bytes("quote \" backslash \\ tab \t é 雪 😀".as_bytes())
                .unwrap(),
        ));
        odd.referer = Some(Field::from(
            &http::HeaderValue::from_bytes(b"https://example.com/\xff\xfe").unwrap(),
        ));
        odd.uri = http::Uri::from_static("/p");
        odd.upstream = None;
        odd.upstream_status = None;
        odd.upstream_error = Some("refused");
        odd.client_ip = "2001:db8::1".parse().unwrap();
        odd.peer = "[::ffff:173.245.48.1]:443".parse().unwrap();
        odd.tls = Some(TlsInfo {
            sni: Some("example.com".into()),
            version: "TLSv1.3",
            client_cert_verified: true,
        });
        records.push(odd);
        for r in &records {
            for redact in [false, true] {
                let ours: serde_json::Value = serde_json::from_str(&r.to_json(redact)).unwrap();
                let mut reference = serde_json_line(r, redact);
                // Both are RFC 3339; compare the instants, not the digit counts.
                let parse = |v: &serde_json::Value| {
                    time::OffsetDateTime::parse(
                        v.as_str().unwrap(),
                        &time::format_description::well_known::Rfc3339,
                    )
                    .unwrap()
                };
                assert_eq!(parse(&ours["ts"]), parse(&reference["ts"]));
                reference["ts"] = ours["ts"].clone();
                assert_eq!(ours, reference);
            }
        }
    }

    #[test]
    fn json_line_has_the_fields() {
        let v: serde_json::Value = serde_json::from_str(&record().to_json(false)).unwrap();
        assert_eq!(v["ts"], "2026-11-24T06:00:00Z");
        assert_eq!(v["client_ip"], "203.0.113.9");
        assert_eq!(v["peer_ip"], "173.245.48.1");
        assert_eq!(v["scheme"], "https");
        assert_eq!(v["listener"], "http");
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream_status"], 200);
        assert!(v.get("upstream_error").is_none());
        assert_eq!(v["route"], "proxy");
    }
}
