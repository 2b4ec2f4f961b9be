//! Configuration, in two stages:
//!
//! 1. [`raw`]: TOML → serde structs with `deny_unknown_fields`, spans kept on every value that is
//!    checked later. A syntax or type error stops here (serde cannot continue past it) and is
//!    reported with its key path and position.
//! 2. this module: raw → [`Config`], the validated runtime form. Every problem is collected, not
//!    just the first, so `origin-gate check` lists them all like `nginx -t`. Each problem renders as
//!    `file:line:column key: what was found, what is expected`.
//!
//! Nothing here touches the file system except reading the config file itself; files the config
//! names (certificates, range files) are loaded by the modules that use them, which report their
//! problems in the same [`Problem`] shape.

pub mod path;
pub mod raw;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderValue, Uri};
use ipnet::IpNet;
use toml::Spanned;

use raw::{RawConfig, Text, TextList};

/// Where a configuration came from; used in every problem message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Embedded => f.write_str("<embedded default>"),
        }
    }
}

/// One thing wrong with a configuration or a file it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in (the config file, or a certificate/range file it names).
    pub file: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted key path, e.g. `backend.url`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col} ", self.file)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// `log.access`: the access-log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Combined,
    Off,
}

/// A rule as written in the config, before its htpasswd file is loaded.
#[derive(Debug, Clone)]
pub struct AccessRuleConfig {
    pub prefix: String,
    pub host: Option<String>,
    pub htpasswd: Option<PathBuf>,
    pub realm: String,
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub pass_authorization: bool,
}

/// Parses a rate `N/s`, `N/m` or `N/h` (N from 1 to 1,000,000) into the interval between two
/// requests at that rate.
pub fn parse_rate(s: &str) -> Option<Duration> {
    let (n, unit) = s.trim().split_once('/')?;
    let n: u32 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))?;
    let period = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return None,
    };
    Some(period / n)
}

/// Parses `a.b.c.d/n`, `x::/n`, or a bare address (as a host route); host bits are masked.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<std::net::IpAddr>().ok().map(IpNet::from)
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendTarget {
    /// A real origin web server, `http://host:port` or `https://host:port`.
    Url(Uri),
    /// The embedded echo origin of the default config: answers with what WordPress would see.
    Echo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub target: BackendTarget,
    /// When set, https visitors are sent here (a TLS port on which the origin sets `HTTPS=on`).
    pub https_url: Option<Uri>,
    pub tls_verify: bool,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    /// Idle keep-alive connections to the backend kept per worker thread.
    pub max_idle_connections: usize,
}

#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    /// True when the addresses are the built-in defaults (IPv6 may then be skipped if absent).
    pub defaulted: bool,
}

#[derive(Debug, Clone)]
pub struct TrustConfig {
    pub cloudflare: bool,
    pub extra: Vec<IpNet>,
    pub ranges_file: Option<PathBuf>,
    pub only_trusted_peers: bool,
    /// Believe forwarding headers only on connections with a verified client certificate
    /// (Authenticated Origin Pulls), in addition to the address ranges.
    pub require_client_cert: bool,
    /// `trust.edge_header` + `trust.edge_secret_file`: a peer in the ranges is trusted only when
    /// it presents this header with the secret (the owner's Cloudflare Transform Rule adds it).
    pub edge: Option<EdgeSecretConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSecretConfig {
    /// Lower-case header name.
    pub header: http::HeaderName,
    pub file: PathBuf,
    /// How long the previous secret stays accepted after the file changed.
    pub overlap: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpsConfig {
    pub redirect: bool,
    pub hsts: Option<HeaderValue>,
    pub rewrite_location: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Names this certificate serves (lower-case; `*.example.com` allowed). Empty: its SAN names.
    pub hosts: Vec<String>,
}

/// Whether TLS clients must present a certificate signed by `tls.client_ca`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Optional,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub certs: Vec<CertSpec>,
    /// Name whose certificate answers handshakes without SNI or with an unknown name.
    pub default: Option<String>,
    pub reload_interval: Duration,
    /// Absolute override of the lifetime-relative expiry warning (`tls.expiry_warn_days`).
    pub expiry_warn_days: Option<i64>,
    pub handshake_timeout: Duration,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// `[[limits.body]]`: the largest request body accepted under a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyLimit {
    /// Normalised, lower-case.
    pub prefix: String,
    pub max: u64,
}

/// `[[limits.rate]]`: requests per real client IP (IPv6 by /64) under a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRule {
    /// Normalised, lower-case.
    pub prefix: String,
    /// `per_ip` as written (`"30/m"`), for logs and the metric label.
    pub per_ip: String,
    /// One request is allowed every `interval` once the burst is spent.
    pub interval: Duration,
    /// Requests allowed at once from a visitor seen for the first time (or idle long enough).
    pub burst: u32,
    /// Upper-case; empty means every method.
    pub methods: Vec<String>,
}

impl RateRule {
    /// How the rule is named in logs and in the metric's `rule` label: `/wp-login.php POST`.
    pub fn label(&self) -> String {
        if self.methods.is_empty() {
            self.prefix.clone()
        } else {
            format!("{} {}", self.prefix, self.methods.join(","))
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub http2_max_streams: u32,
    pub body: Vec<BodyLimit>,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// Keep request header names with `_` (except twins of headers origin-gate owns).
    pub allow_underscores_in_headers: bool,
    /// Lower-case protocol names an `Upgrade` may ask for (default `["websocket"]`).
    pub upgrade_protocols: Vec<String>,
    /// Bodies up to this size are read whole before the backend is contacted (0: never).
    pub request_buffer: u64,
    /// Process-wide memory for buffered bodies; past it, bodies stream.
    pub request_buffer_total: u64,
    /// The most time between two reads of a request body (408 / the stream is cut).
    pub body_read_timeout: Duration,
    pub rate: Vec<RateRule>,
    /// Most (rule, client) keys the rate limiter remembers; least recently seen go first.
    pub rate_table_size: usize,
}

/// `[log]` beyond the level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub access: Format,
    /// None: stdout.
    pub access_file: Option<PathBuf>,
    pub redact_query: bool,
}

/// How ACME HTTP-01 challenges are answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeMode {
    /// Forwarded to the backend like any request (the host's or WordPress's webroot answers).
    Proxy,
    /// Served from `DIR/.well-known/acme-challenge/<token>` (the layout `certbot --webroot` writes).
    Webroot(PathBuf),
    /// Sent to a separate responder (e.g. `certbot --standalone --http-01-port 8402`).
    Backend(Uri),
}

/// The validated runtime configuration. Only this form is seen outside `config`.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    /// The text it was parsed from (a reload compares it to the file's new text).
    pub text: String,
    pub server_names: Vec<String>,
    pub listen: ListenConfig,
    pub backend: BackendConfig,
    pub trust: TrustConfig,
    pub https: HttpsConfig,
    pub tls: TlsConfig,
    pub access: Vec<AccessRuleConfig>,
    pub acme: AcmeMode,
    pub log_level: String,
    pub log: LogConfig,
    /// `admin.listen`: where `/healthz` and `/metrics` are served, if anywhere.
    pub admin_listen: Option<SocketAddr>,
    pub limits: Limits,
    pub shutdown_grace: Duration,
    /// The files this configuration names and the backend addresses, with the key and line of
    /// each: a problem found after parsing points at that line ([`Config::locate`]).
    pub places: Vec<Place>,
}

/// The configuration used when origin-gate starts without `--config`: unprivileged loopback
/// ports and the echo origin, so a newcomer sees what WordPress would see with one `curl`.
pub const EMBEDDED_DEFAULT: &str = r#"
[listen]
http = ["127.0.0.1:8080"]
https = ["127.0.0.1:8443"]

[trust]
# 127.0.0.2 stands in for Cloudflare so both sides can be tried with curl:
#   curl http://127.0.0.1:8080/                          an untrusted peer: its forwarding headers are dropped
#   curl --interface 127.0.0.2 http://127.0.0.1:8080/    a trusted peer: CF-Connecting-IP / CF-Visitor believed
extra = ["127.0.0.2/32"]
"#;

const DEFAULT_HTTP: &[&str] = &["0.0.0.0:80", "[::]:80"];
const DEFAULT_HTTPS: &[&str] = &["0.0.0.0:443", "[::]:443"];

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = Source::File(path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                file: source.to_string(),
                position: None,
                key: String::new(),
                message: format!("cannot read the config file: {e}"),
            }],
        })?;
        Config::parse(&text, source)
    }

    /// A short fingerprint of the configuration text (16 hex digits of its SHA-256): `doctor`
    /// compares the one a running instance reports with the file it reads, to tell "this
    /// configuration's origin-gate" from another origin-gate or another program on the port.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.text.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// A problem about this configuration as a whole (no line to point at), e.g. from loading
    /// the files it names.
    pub fn problem(&self, key: &str, message: String) -> Problem {
        self.locate(Problem {
            file: self.source.to_string(),
            position: None,
            key: key.into(),
            message,
        })
    }

    /// Points a problem found after parsing at the configuration line it comes from: one in a
    /// file the configuration names becomes `origin-gate.toml:12:7 access[0].htpasswd:
    /// /etc/…/htpasswd:3: …`; one about a key without a position gets the key's position.
    pub fn locate(&self, p: Problem) -> Problem {
        let file = self.source.to_string();
        if p.file != file {
            let Some(place) = self.places.iter().find(|n| {
                n.path
                    .as_ref()
                    .is_some_and(|path| path.display().to_string() == p.file)
            }) else {
                return p;
            };
            let at = match p.position {
                Some((line, _)) => format!("{}:{line}", p.file),
                None => p.file.clone(),
            };
            return Problem {
                file,
                position: Some(place.position),
                key: place.key.clone(),
                message: format!("{at}: {}", p.message),
            };
        }
        if p.position.is_some() {
            return p;
        }
        match self.places.iter().find(|n| n.key == p.key) {
            Some(place) => Problem {
                position: Some(place.position),
                ..p
            },
            None => p,
        }
    }

    /// The embedded default (see [`EMBEDDED_DEFAULT`]).
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT, Source::Embedded)
    }

    /// Parses and validates config text. `source` names it in messages and anchors relative paths.
    pub fn parse(text: &str, source: Source) -> Result<Config, ConfigError> {
        match Config::parse_all(text, source) {
            (Some(config), problems) if problems.is_empty() => Ok(config),
            (_, problems) => Err(ConfigError { problems }),
        }
    }

    /// Every problem in one pass — syntax, unknown keys, types and values — and the
    /// configuration as far as it could be read (for `check`, which goes on to the files it
    /// names). A syntax error stops there (the file's structure is unknown); every other key
    /// that serde refuses is reported with its position and set aside, and the rest is validated.
    pub fn parse_all(text: &str, source: Source) -> (Option<Config>, Vec<Problem>) {
        let mut v = Validator {
            text,
            file: source.to_string(),
            base_dir: match &source {
                Source::File(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
                Source::Embedded => PathBuf::new(),
            },
            problems: Vec::new(),
            places: Vec::new(),
            claimed: Vec::new(),
        };
        if let Err(e) = text.parse::<toml::Table>() {
            v.problems.push(Problem {
                file: v.file.clone(),
                position: e.span().map(|s| line_col(text, s.start)),
                key: String::new(),
                message: hint_for_serde_message(e.message(), ""),
            });
            return (None, v.problems);
        }
        // Keys serde refuses (unknown, wrong type) are reported and blanked out one at a time,
        // so the next pass finds the next one; bounded by the number of lines. Blanking keeps
        // every line where it was, so positions stay those of the file.
        let mut work: Vec<String> = text.lines().map(str::to_string).collect();
        let mut raw = None;
        let mut current = text.to_string();
        for _ in 0..=work.len() {
            match serde_path_to_error::deserialize::<_, RawConfig>(toml::Deserializer::new(
                &current,
            )) {
                Ok(r) => {
                    raw = Some(r);
                    break;
                }
                Err(e) => {
                    // Spanned<T> adds an internal segment to serde's path; it means nothing to a user.
                    let path = e
                        .path()
                        .to_string()
                        .split('.')
                        .filter(|seg| !seg.starts_with("$__serde_spanned"))
                        .collect::<Vec<_>>()
                        .join(".");
                    let inner = e.into_inner();
                    let position = inner.span().map(|s| line_col(&current, s.start));
                    v.problems.push(Problem {
                        file: v.file.clone(),
                        position,
                        key: if path == "." {
                            String::new()
                        } else {
                            path.clone()
                        },
                        message: hint_for_serde_message(inner.message(), &path),
                    });
                    match position {
                        Some((line, _)) if blank_out(&mut work, line - 1) => {
                            current = work.join("\n");
                        }
                        _ => break,
                    }
                }
            }
        }
        // Values are validated against the text serde read, so their spans are right.
        let mut v = Validator {
            text: &current,
            file: v.file,
            base_dir: v.base_dir,
            problems: v.problems,
            places: v.places,
            claimed: Vec::new(),
        };
        let refused_sections: Vec<String> = v
            .problems
            .iter()
            .filter_map(|p| p.key.rsplit_once('.').map(|(s, _)| s.to_string()))
            .collect();
        let serde_problems = v.problems.len();
        let config = raw.and_then(|raw| v.validate(raw, source));
        // A key refused above (a typo of `url`, a wrong type) is why its section now lacks a
        // required one: say it once, not twice.
        let mut i = 0;
        v.problems.retain(|p| {
            i += 1;
            i <= serde_problems
                || !(p.message.starts_with("is required")
                    && p.key
                        .rsplit_once('.')
                        .is_some_and(|(s, _)| refused_sections.iter().any(|r| r == s)))
        });
        // File order reads best; problems without a position go last.
        v.problems
            .sort_by_key(|p| p.position.unwrap_or((usize::MAX, 0)));
        let config = config.map(|mut c| {
            c.places = std::mem::take(&mut v.places);
            c
        });
        (config, v.problems)
    }
}

/// Blanks out the line a refused key is on (and, for a table header, the whole table, so its
/// keys do not land in the table before it). False when the line is not one a key or header
/// starts on (a multi-line value): then the pass stops rather than report noise.
fn blank_out(lines: &mut [String], index: usize) -> bool {
    let Some(line) = lines.get(index) else {
        return false;
    };
    let trimmed = line.trim_start();
    let is_header = trimmed.starts_with('[');
    let is_key = trimmed
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '"');
    if !is_header && !is_key {
        return false;
    }
    if trimmed.contains('[')
        && !is_header
        && trimmed.matches('[').count() != trimmed.matches(']').count()
    {
        return false; // a multi-line array starts here
    }
    lines[index] = String::new();
    if is_header {
        for l in lines.iter_mut().skip(index + 1) {
            if l.trim_start().starts_with('[') {
                break;
            }
            *l = String::new();
        }
    }
    true
}

/// Adds a fix to serde messages that have a well-known cause. `path` is the key's dotted path.
fn hint_for_serde_message(message: &str, path: &str) -> String {
    let message = message.trim().replace('\n', "; ");
    let message = message.as_str();
    let leaf = path.rsplit('.').next().unwrap_or(path);
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    if message.starts_with("invalid type:") {
        let fix = if message.contains("expected a sequence") && message.contains("type: map") {
            format!("this is a list of blocks: write each one as [[{path}]] with its keys below it")
        } else if message.contains("expected a sequence") {
            format!("write it as a list: {leaf} = [\"…\"]")
        } else if message.contains("expected a string") {
            format!("write it in quotes: {leaf} = \"{}\"", example_string(leaf))
        } else if message.contains("expected a boolean") {
            format!("write {leaf} = true or {leaf} = false, without quotes")
        } else if message.contains("expected i64") || message.contains("integer") {
            format!("write a whole number without quotes: {leaf} = 100")
        } else if message.contains("expected struct") || message.contains("expected a map") {
            format!("this is a section: write it as [{path}] with its keys below it")
        } else {
            String::new()
        };
        if !fix.is_empty() {
            return format!("{message}; {fix}");
        }
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((_, expected)) = rest.split_once("`, expected ") {
            let field = rest.split('`').next().unwrap_or("");
            let hint = if field == "server_names" {
                "; server_names is a top-level key: move it above the first [section]"
            } else {
                ""
            };
            return format!("unknown key (misspelled?); expected {expected}{hint}");
        }
    }
    message.to_string()
}

/// A value to show in "write it in quotes" for string keys whose form is not obvious (`hsts =
/// true` must become a header value, not `"true"`).
fn example_string(leaf: &str) -> &'static str {
    match leaf {
        "hsts" => "max-age=31536000",
        "level" => "info",
        "access" => "json",
        "per_ip" => "30/m",
        "prefix" => "/wp-admin/",
        "url" | "backend" => "http://127.0.0.1:8080",
        "https_url" => "https://127.0.0.1:8443",
        "listen" => "127.0.0.1:9901",
        "edge_header" => "X-Origin-Secret",
        l if l.ends_with("_timeout") || l.ends_with("_interval") || l.ends_with("_overlap") => {
            "30s"
        }
        _ => "…",
    }
}

/// `info`, or `warn,origin_gate::serve::forward=debug`: levels and `target=level` pairs only.
fn is_level_directive_list(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let level = |l: &str| LEVELS.contains(&l.trim().to_ascii_lowercase().as_str());
    !s.trim().is_empty()
        && s.split(',').all(|d| match d.split_once('=') {
            Some((target, l)) => {
                !target.trim().is_empty()
                    && target
                        .trim()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                    && level(l)
            }
            None => level(d),
        })
}

/// A DNS host name (letters, digits, hyphens; dot-separated), optionally `*.` + one.
pub fn is_host_name(name: &str, wildcard: bool) -> bool {
    let name = match name.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        _ => name,
    };
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

struct Validator<'a> {
    text: &'a str,
    file: String,
    base_dir: PathBuf,
    problems: Vec<Problem>,
    places: Vec<Place>,
    /// Listen addresses seen so far, with their keys (overlaps are refused).
    claimed: Vec<(String, SocketAddr)>,
}

/// Where a key's value is in the configuration file, and for a key that names a file, the
/// resolved path: a problem found later (a missing file, a backend that is origin-gate itself)
/// points at this line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub key: String,
    pub position: (usize, usize),
    pub path: Option<PathBuf>,
}

impl Validator<'_> {
    fn problem<T>(&mut self, at: &Spanned<T>, key: &str, message: String) {
        self.problems.push(Problem {
            file: self.file.clone(),
            position: Some(line_col(self.text, at.span().start)),
            key: key.to_string(),
            message,
        });
    }

    fn problem_no_span(&mut self, key: &str, message: String) {
        self.problems.push(Problem {
            file: self.file.clone(),
            position: None,
            key: key.to_string(),
            message,
        });
    }

    fn duration(&mut self, raw: Option<&Text>, key: &str, default: Duration) -> Duration {
        let Some(raw) = raw else { return default };
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) if d.is_zero() => {
                self.problem(
                    raw,
                    key,
                    format!(
                        "{:?} must be longer than zero; write a duration like \"30s\" or \"2m\"",
                        raw.get_ref()
                    ),
                );
                default
            }
            Ok(d) => d,
            Err(_) => {
                self.problem(
                    raw,
                    key,
                    format!(
                        "{:?} is not a duration; write it like \"30s\", \"500ms\" or \"2m\"",
                        raw.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// A size like "1MiB" or "64MiB"; `zero_ok` allows "0" (a feature turned off).
    fn size(&mut self, raw: Option<&Text>, key: &str, default: u64, zero_ok: bool) -> u64 {
        let Some(raw) = raw else { return default };
        match raw.get_ref().parse::<bytesize::ByteSize>() {
            Ok(b) if b.as_u64() == 0 && !zero_ok => {
                self.problem(
                    raw,
                    key,
                    format!("{:?} must be more than zero", raw.get_ref()),
                );
                default
            }
            Ok(b) => b.as_u64(),
            Err(_) => {
                self.problem(
                    raw,
                    key,
                    format!(
                        "{:?} is not a size; write it like \"1MiB\" or \"64MiB\"",
                        raw.get_ref()
                    ),
                );
                default
            }
        }
    }

    fn integer(
        &mut self,
        raw: Option<&Spanned<i64>>,
        key: &str,
        range: (i64, i64),
        default: usize,
    ) -> usize {
        let Some(raw) = raw else { return default };
        let n = *raw.get_ref();
        if n < range.0 || n > range.1 {
            self.problem(
                raw,
                key,
                format!(
                    "{n} is out of range; expected a number from {} to {}",
                    range.0, range.1
                ),
            );
            return default;
        }
        usize::try_from(n).unwrap_or(default)
    }

    /// A path the configuration names, resolved against the file's directory; recorded with
    /// its key and position so a problem with the file it names points at this line.
    fn path(&mut self, raw: &Text, key: &str) -> PathBuf {
        let p = Path::new(raw.get_ref());
        let resolved = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        };
        self.places.push(Place {
            key: key.to_string(),
            position: line_col(self.text, raw.span().start),
            path: Some(resolved.clone()),
        });
        resolved
    }

    fn socket_addrs(
        &mut self,
        raw: Option<&TextList>,
        key: &str,
        default: &[&str],
    ) -> Vec<SocketAddr> {
        let Some(list) = raw else {
            return default.iter().filter_map(|s| s.parse().ok()).collect();
        };
        let mut out = Vec::new();
        for item in list.get_ref() {
            match item.get_ref().parse::<SocketAddr>() {
                Ok(a) if out.contains(&a) => {
                    self.problem(item, key, format!("{:?} is listed twice", item.get_ref()));
                }
                Ok(a) => {
                    self.claim(item, key, a);
                    out.push(a)
                }
                Err(_) => self.problem(
                    item,
                    key,
                    format!(
                        "{:?} is not an address:port; write it like \"0.0.0.0:80\" or \"[::]:443\"",
                        item.get_ref()
                    ),
                ),
            }
        }
        out
    }

    /// Records a listen address; one that overlaps another listener's (the same port on the
    /// same address, or on a wildcard of the same family) cannot be bound by both.
    fn claim(&mut self, at: &Text, key: &str, addr: SocketAddr) {
        let clash = self.claimed.iter().find(|(_, other)| {
            addr.port() != 0
                && other.port() == addr.port()
                && other.is_ipv4() == addr.is_ipv4()
                && (other.ip() == addr.ip()
                    || other.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        });
        if let Some((other_key, other)) = clash {
            let message = format!("{addr} overlaps {other_key} {other}: two listeners cannot share a port; give each its own port");
            self.problem(at, key, message);
        }
        self.claimed.push((key.to_string(), addr));
    }

    fn backend_url(&mut self, raw: &Text, key: &str, https_only: bool) -> Option<Uri> {
        self.places.push(Place {
            key: key.to_string(),
            position: line_col(self.text, raw.span().start),
            path: None,
        });
        let s = raw.get_ref();
        let uri = s.parse::<Uri>().ok();
        let scheme_ok = uri.as_ref().and_then(|u| u.scheme_str()).is_some_and(|sc| {
            if https_only {
                sc == "https"
            } else {
                sc == "http" || sc == "https"
            }
        });
        let uri = match uri {
            Some(u) if scheme_ok && u.authority().is_some() => u,
            _ => {
                let expected = if https_only {
                    "an https:// URL like \"https://127.0.0.1:8443\""
                } else {
                    "an http:// or https:// URL"
                };
                let fix = if s.contains("://") {
                    String::new()
                } else {
                    format!(
                        "; write it with the scheme: \"http://{}\"",
                        s.trim_start_matches('/')
                    )
                };
                self.problem(raw, key, format!("{s:?} is not {expected}{fix}"));
                return None;
            }
        };
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            self.problem(
                raw,
                key,
                format!(
                    "{s:?} has a path; origin-gate forwards the visitor's path unchanged, so give only scheme, host and port"
                ),
            );
            return None;
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            self.problem(
                raw,
                key,
                format!("{s:?} contains credentials; remove the user:password@ part"),
            );
            return None;
        }
        Some(uri)
    }

    fn validate(&mut self, raw: RawConfig, source: Source) -> Option<Config> {
        let server_names = self.server_names(raw.server_names.as_ref());

        let listen = ListenConfig {
            defaulted: raw.listen.http.is_none() && raw.listen.https.is_none(),
            http: self.socket_addrs(raw.listen.http.as_ref(), "listen.http", DEFAULT_HTTP),
            https: self.socket_addrs(raw.listen.https.as_ref(), "listen.https", DEFAULT_HTTPS),
        };
        if listen.http.is_empty() && listen.https.is_empty() && self.problems.is_empty() {
            self.problem_no_span(
                "listen",
                "no addresses to listen on; set listen.http and/or listen.https".into(),
            );
        }

        let backend = self.backend(raw.backend.as_ref(), &source);
        let trust = self.trust(&raw.trust);

        let hsts = raw.https.hsts.as_ref().and_then(|h| {
            let s = h.get_ref();
            match HeaderValue::from_str(s) {
                Ok(v) if s.trim_start().to_ascii_lowercase().starts_with("max-age=") => Some(v),
                _ => {
                    self.problem(
                        h,
                        "https.hsts",
                        format!("{s:?} is not a Strict-Transport-Security value; write it like \"max-age=31536000\""),
                    );
                    None
                }
            }
        });
        let https = HttpsConfig {
            redirect: raw.https.redirect.unwrap_or(false),
            hsts,
            rewrite_location: raw.https.rewrite_location.unwrap_or(true),
        };

        let tls = self.tls(&raw.tls);
        let access = raw
            .access
            .iter()
            .enumerate()
            .filter_map(|(i, a)| self.access_rule(i, a))
            .collect();
        let acme = match (&raw.acme.webroot, &raw.acme.backend) {
            (Some(_), Some(b)) => {
                self.problem(
                    b,
                    "acme.backend",
                    "set either acme.webroot or acme.backend, not both".into(),
                );
                AcmeMode::Proxy
            }
            (Some(w), None) => AcmeMode::Webroot(self.path(w, "acme.webroot")),
            (None, Some(b)) => self
                .backend_url(b, "acme.backend", false)
                .map_or(AcmeMode::Proxy, AcmeMode::Backend),
            (None, None) => AcmeMode::Proxy,
        };
        let log_level = match raw.log.level.as_ref() {
            None => "info".to_string(),
            Some(l) => {
                // Only levels and `target=level` pairs: full EnvFilter syntax compiles regular
                // expressions for span fields, and a pathological one stalled the config fuzzer.
                if !is_level_directive_list(l.get_ref()) {
                    self.problem(
                        l,
                        "log.level",
                        format!(
                            "{:?} is not a log level; use error, warn, info, debug or trace",
                            l.get_ref()
                        ),
                    );
                }
                l.get_ref().clone()
            }
        };

        let log = LogConfig {
            access: match raw.log.access.as_ref() {
                None => Format::Json,
                Some(a) => match a.get_ref().as_str() {
                    "json" => Format::Json,
                    "combined" => Format::Combined,
                    "off" => Format::Off,
                    other => {
                        self.problem(a, "log.access", format!("{other:?} is not an access-log format; use \"json\", \"combined\" or \"off\""));
                        Format::Json
                    }
                },
            },
            access_file: raw
                .log
                .access_file
                .as_ref()
                .map(|f| self.path(f, "log.access_file")),
            redact_query: raw.log.redact_query.unwrap_or(false),
        };
        let admin_listen = raw.admin.listen.as_ref().and_then(|l| match l.get_ref().parse::<SocketAddr>() {
            Ok(a) if a.ip().is_loopback() || raw.admin.allow_remote.unwrap_or(false) => {
                self.claim(l, "admin.listen", a);
                Some(a)
            }
            Ok(_) => {
                self.problem(l, "admin.listen", format!("{:?} is not a loopback address; metrics and health details are for this machine only (set admin.allow_remote = true to override)", l.get_ref()));
                None
            }
            Err(_) => {
                self.problem(l, "admin.listen", format!("{:?} is not an address:port; write it like \"127.0.0.1:9901\"", l.get_ref()));
                None
            }
        });
        let limits = Limits {
            // hyper refuses buffers under 8 KiB; 16 MiB is far beyond any sane request head.
            max_header_bytes: self.integer(
                raw.limits.max_header_bytes.as_ref(),
                "limits.max_header_bytes",
                (8192, 16 << 20),
                65536,
            ),
            max_headers: self.integer(
                raw.limits.max_headers.as_ref(),
                "limits.max_headers",
                (8, 1000),
                100,
            ),
            http2_max_streams: self.integer(
                raw.limits.http2_max_streams.as_ref(),
                "limits.http2_max_streams",
                (1, 1000),
                100,
            ) as u32,
            body: raw
                .limits
                .body
                .iter()
                .enumerate()
                .filter_map(|(i, b)| self.body_limit(i, b))
                .collect(),
            header_read_timeout: self.duration(
                raw.limits.header_read_timeout.as_ref(),
                "limits.header_read_timeout",
                Duration::from_secs(10),
            ),
            max_connections: self.integer(
                raw.limits.max_connections.as_ref(),
                "limits.max_connections",
                (1, 1_000_000),
                10_000,
            ),
            allow_underscores_in_headers: raw.limits.allow_underscores_in_headers.unwrap_or(false),
            upgrade_protocols: self.upgrade_protocols(raw.limits.upgrade_protocols.as_ref()),
            request_buffer: self.size(
                raw.limits.request_buffer.as_ref(),
                "limits.request_buffer",
                1 << 20,
                true,
            ),
            request_buffer_total: self.size(
                raw.limits.request_buffer_total.as_ref(),
                "limits.request_buffer_total",
                64 << 20,
                false,
            ),
            body_read_timeout: self.duration(
                raw.limits.body_read_timeout.as_ref(),
                "limits.body_read_timeout",
                Duration::from_secs(60),
            ),
            rate: raw
                .limits
                .rate
                .iter()
                .enumerate()
                .filter_map(|(i, r)| self.rate_rule(i, r))
                .collect(),
            rate_table_size: self.integer(
                raw.limits.rate_table_size.as_ref(),
                "limits.rate_table_size",
                (1024, 16_777_216),
                65_536,
            ),
        };
        let shutdown_grace = self.duration(
            raw.shutdown.grace.as_ref(),
            "shutdown.grace",
            Duration::from_secs(30),
        );

        Some(Config {
            source,
            text: self.text.to_string(),
            server_names,
            listen,
            backend: backend?,
            trust,
            https,
            tls,
            access,
            acme,
            log_level,
            log,
            admin_listen,
            limits,
            shutdown_grace,
            places: Vec::new(),
        })
    }

    fn tls(&mut self, raw: &raw::RawTls) -> TlsConfig {
        let certs: Vec<CertSpec> = raw
            .certs
            .iter()
            .enumerate()
            .filter_map(|(i, block)| {
                let c = block.get_ref();
                let key = |k: &str| format!("tls.certs[{i}].{k}");
                let cert = self.required(
                    c.cert.as_ref(),
                    block,
                    &key("cert"),
                    "cert = \"/etc/letsencrypt/live/example.com/fullchain.pem\"",
                );
                let private = self.required(
                    c.key.as_ref(),
                    block,
                    &key("key"),
                    "key = \"/etc/letsencrypt/live/example.com/privkey.pem\"",
                );
                let hosts = self.host_names(c.hosts.as_ref(), &key("hosts"), true);
                Some(CertSpec {
                    cert: self.path(cert?, &key("cert")),
                    key: self.path(private?, &key("key")),
                    hosts,
                })
            })
            .collect();
        let default = raw.default.as_ref().and_then(|d| {
            let name = d.get_ref().trim().to_ascii_lowercase();
            if is_host_name(&name, false) {
                Some(name)
            } else {
                self.problem(d, "tls.default", format!("{:?} is not a host name; give one of the certificates' names, like \"example.com\"", d.get_ref()));
                None
            }
        });
        let client_auth = match raw.client_auth.as_ref() {
            None => ClientAuth::Required,
            Some(a) => {
                match a.get_ref().as_str() {
                    "required" => ClientAuth::Required,
                    "optional" => ClientAuth::Optional,
                    other => {
                        self.problem(a, "tls.client_auth", format!("{other:?} is not a client-auth mode; use \"required\" or \"optional\""));
                        ClientAuth::Required
                    }
                }
            }
        };
        if raw.client_auth.is_some() && raw.client_ca.is_none() {
            if let Some(a) = raw.client_auth.as_ref() {
                self.problem(a, "tls.client_auth", "needs tls.client_ca, the CA that signs client certificates (Cloudflare's origin-pull CA)".into());
            }
        }
        TlsConfig {
            certs,
            default,
            reload_interval: self.duration(
                raw.reload_interval.as_ref(),
                "tls.reload_interval",
                Duration::from_secs(30),
            ),
            expiry_warn_days: raw
                .expiry_warn_days
                .as_ref()
                .map(|d| self.integer(Some(d), "tls.expiry_warn_days", (1, 365), 0) as i64),
            handshake_timeout: self.duration(
                raw.handshake_timeout.as_ref(),
                "tls.handshake_timeout",
                Duration::from_secs(10),
            ),
            client_ca: raw
                .client_ca
                .as_ref()
                .map(|p| self.path(p, "tls.client_ca")),
            client_auth,
        }
    }

    fn rate_rule(&mut self, i: usize, block: &Spanned<raw::RawRate>) -> Option<RateRule> {
        let raw = block.get_ref();
        let key = |k: &str| format!("limits.rate[{i}].{k}");
        let prefix = self
            .required(
                raw.prefix.as_ref(),
                block,
                &key("prefix"),
                "prefix = \"/wp-login.php\"",
            )
            .and_then(|p| self.prefix(p, &key("prefix"), "/wp-login.php"));
        let per_ip_raw = self.required(
            raw.per_ip.as_ref(),
            block,
            &key("per_ip"),
            "per_ip = \"30/m\"",
        );
        let per_ip = per_ip_raw.map_or("", |p| p.get_ref().trim());
        let interval = parse_rate(per_ip);
        if let (None, Some(per_ip_raw)) = (interval, per_ip_raw) {
            self.problem(
                per_ip_raw,
                &key("per_ip"),
                format!("{per_ip:?} is not a rate; write requests per second, minute or hour like \"30/m\", \"5/s\" or \"100/h\" (1 to 1000000)"),
            );
        }
        let burst = self.integer(raw.burst.as_ref(), &key("burst"), (1, 100_000), 1) as u32;
        let mut methods = Vec::new();
        for m in raw
            .methods
            .as_ref()
            .map(|l| l.get_ref().as_slice())
            .unwrap_or_default()
        {
            let name = m.get_ref().trim();
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
                methods.push(name.to_ascii_uppercase());
            } else {
                self.problem(
                    m,
                    &key("methods"),
                    format!(
                        "{:?} is not an HTTP method; write it like methods = [\"POST\"]",
                        m.get_ref()
                    ),
                );
            }
        }
        Some(RateRule {
            prefix: prefix?,
            per_ip: per_ip.to_string(),
            interval: interval?,
            burst,
            methods,
        })
    }

    /// A rule's path prefix: absolute, normalised, lower-case (rules match ignoring case).
    fn prefix(&mut self, raw: &Text, key: &str, example: &str) -> Option<String> {
        match path::normalize_path(raw.get_ref()) {
            Ok(p) if raw.get_ref().starts_with('/') => Some(p.to_ascii_lowercase()),
            _ => {
                self.problem(
                    raw,
                    key,
                    format!(
                        "{:?} is not a path prefix; write it like \"{example}\"",
                        raw.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn body_limit(&mut self, i: usize, block: &Spanned<raw::RawBodyLimit>) -> Option<BodyLimit> {
        let raw = block.get_ref();
        let key = |k: &str| format!("limits.body[{i}].{k}");
        let example = "/wp-admin/async-upload.php";
        let prefix = self
            .required(
                raw.prefix.as_ref(),
                block,
                &key("prefix"),
                &format!("prefix = \"{example}\""),
            )
            .and_then(|p| self.prefix(p, &key("prefix"), example));
        let max = self.required(raw.max.as_ref(), block, &key("max"), "max = \"64MiB\"")?;
        let Ok(size) = max.get_ref().parse::<bytesize::ByteSize>() else {
            self.problem(
                max,
                &key("max"),
                format!(
                    "{:?} is not a size; write it like \"1MiB\" or \"64MiB\"",
                    max.get_ref()
                ),
            );
            return None;
        };
        Some(BodyLimit {
            prefix: prefix?,
            max: size.as_u64(),
        })
    }

    /// A key a block cannot do without: reported at the block when it is missing.
    fn required<'r, T>(
        &mut self,
        value: Option<&'r Text>,
        block: &Spanned<T>,
        key: &str,
        example: &str,
    ) -> Option<&'r Text> {
        if value.is_none() {
            self.problem(
                block,
                key,
                format!("is required; write {example} in this block"),
            );
        }
        value
    }

    fn cidrs(&mut self, raw: Option<&TextList>, key: &str) -> Vec<IpNet> {
        let mut out = Vec::new();
        for item in raw.map(|l| l.get_ref().as_slice()).unwrap_or_default() {
            match parse_cidr(item.get_ref()) {
                Some(net) => out.push(net),
                None => self.problem(
                    item,
                    key,
                    format!("{:?} is not a CIDR range; write it like \"203.0.113.0/24\" or \"2001:db8::/32\"", item.get_ref()),
                ),
            }
        }
        out
    }

    fn access_rule(&mut self, i: usize, raw: &Spanned<raw::RawAccess>) -> Option<AccessRuleConfig> {
        let r = raw.get_ref();
        let key = |k: &str| format!("access[{i}].{k}");
        let prefix = self
            .required(
                r.prefix.as_ref(),
                raw,
                &key("prefix"),
                "prefix = \"/wp-admin/\"",
            )
            .and_then(|p| self.prefix(p, &key("prefix"), "/wp-admin/"));
        let host = r.host.as_ref().and_then(|h| {
            let name = h.get_ref().trim().to_ascii_lowercase();
            if is_host_name(&name, false) {
                Some(name)
            } else {
                self.problem(
                    h,
                    &key("host"),
                    format!(
                        "{:?} is not a host name; write it like \"example.com\"",
                        h.get_ref()
                    ),
                );
                None
            }
        });
        let realm = match &r.realm {
            Some(realm)
                if realm.get_ref().is_empty()
                    || !realm
                        .get_ref()
                        .chars()
                        .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\') =>
            {
                self.problem(
                    realm,
                    &key("realm"),
                    format!(
                        "{:?} must be printable ASCII without quotes or backslashes",
                        realm.get_ref()
                    ),
                );
                String::new()
            }
            Some(realm) => realm.get_ref().clone(),
            None => "Restricted".into(),
        };
        let allow = self.cidrs(r.allow.as_ref(), &key("allow"));
        let deny = self.cidrs(r.deny.as_ref(), &key("deny"));
        // A rule whose prefix or host is wrong is reported above and kept with a stand-in, so the
        // htpasswd file it names is checked in the same pass (a configuration with problems
        // never serves).
        Some(AccessRuleConfig {
            prefix: prefix.unwrap_or_else(|| "/".into()),
            host: if r.host.is_some() { host } else { None },
            htpasswd: r.htpasswd.as_ref().map(|p| self.path(p, &key("htpasswd"))),
            realm,
            allow,
            deny,
            pass_authorization: r.pass_authorization.unwrap_or(false),
        })
    }

    fn upgrade_protocols(&mut self, raw: Option<&TextList>) -> Vec<String> {
        let Some(list) = raw else {
            return vec!["websocket".into()];
        };
        let mut out = Vec::new();
        for item in list.get_ref() {
            let name = item.get_ref().trim().to_ascii_lowercase();
            if name == "h2c" {
                self.problem(
                    item,
                    "limits.upgrade_protocols",
                    "\"h2c\" would let every later request on the connection bypass the access rules (h2c smuggling); remove it — HTTP/2 reaches origin-gate over TLS instead".into(),
                );
            } else if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                self.problem(
                    item,
                    "limits.upgrade_protocols",
                    format!(
                        "{:?} is not a protocol name; write it like \"websocket\"",
                        item.get_ref()
                    ),
                );
            } else {
                out.push(name);
            }
        }
        out
    }

    fn server_names(&mut self, raw: Option<&TextList>) -> Vec<String> {
        self.host_names(raw, "server_names", false)
    }

    fn host_names(&mut self, raw: Option<&TextList>, key: &str, wildcard: bool) -> Vec<String> {
        let mut out = Vec::new();
        for item in raw.map(|l| l.get_ref().as_slice()).unwrap_or_default() {
            let name = item.get_ref().trim().to_ascii_lowercase();
            if is_host_name(&name, wildcard) {
                out.push(name);
            } else {
                self.problem(
                    item,
                    key,
                    format!(
                        "{:?} is not a host name; write it like \"example.com\" (no scheme, port or path{})",
                        item.get_ref(),
                        if wildcard { "" } else { "; wildcards only in [[tls.certs]] hosts: list each name" }
                    ),
                );
            }
        }
        out
    }

    fn backend(
        &mut self,
        raw: Option<&Spanned<raw::RawBackend>>,
        source: &Source,
    ) -> Option<BackendConfig> {
        let empty = raw::RawBackend::default();
        let b = raw.map(Spanned::get_ref).unwrap_or(&empty);
        // Every field is checked even when an earlier one is wrong, so all problems are listed.
        let target = match (&b.url, source) {
            (Some(url), _) => self
                .backend_url(url, "backend.url", false)
                .map(BackendTarget::Url),
            (None, Source::Embedded) => Some(BackendTarget::Echo),
            (None, Source::File(_)) => {
                let message = "is required; add a [backend] section with url = \"http://127.0.0.1:8080\" (your WordPress web server)";
                match raw {
                    Some(r) => self.problem(r, "backend.url", message.into()),
                    None => self.problem_no_span("backend.url", message.into()),
                }
                None
            }
        };
        let https_url = match &b.https_url {
            Some(u) => self.backend_url(u, "backend.https_url", true).map(Some),
            None => Some(None),
        };
        let connect_timeout = self.duration(
            b.connect_timeout.as_ref(),
            "backend.connect_timeout",
            Duration::from_secs(5),
        );
        let response_timeout = self.duration(
            b.response_timeout.as_ref(),
            "backend.response_timeout",
            Duration::from_secs(60),
        );
        let idle_timeout = self.duration(
            b.idle_timeout.as_ref(),
            "backend.idle_timeout",
            Duration::from_secs(90),
        );
        let max_idle_connections = self.integer(
            b.max_idle_connections.as_ref(),
            "backend.max_idle_connections",
            (0, 4096),
            64,
        );
        // A broken url was reported above; a stand-in keeps the rest of the configuration
        // checkable (`check` goes on to the files it names). `parse` refuses any configuration
        // with problems, so the stand-in never serves.
        let stand_in = !self.problems.is_empty();
        Some(BackendConfig {
            max_idle_connections,
            target: target.or(stand_in.then_some(BackendTarget::Echo))?,
            https_url: https_url.or(stand_in.then_some(None))?,
            tls_verify: b.tls_verify.unwrap_or(true),
            connect_timeout,
            response_timeout,
            idle_timeout,
        })
    }

    fn trust(&mut self, raw: &raw::RawTrust) -> TrustConfig {
        let extra = self.cidrs(raw.extra.as_ref(), "trust.extra");
        // "0s" is allowed here: revoke the previous secret at once (after a leak).
        let overlap = match raw.edge_secret_overlap.as_ref() {
            Some(o) if humantime::parse_duration(o.get_ref()).is_ok_and(|d| d.is_zero()) => {
                Duration::ZERO
            }
            other => self.duration(
                other,
                "trust.edge_secret_overlap",
                Duration::from_secs(3600),
            ),
        };
        let header = raw.edge_header.as_ref().and_then(|h| {
            let name = h.get_ref().trim();
            let plain = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            let lower = name.to_ascii_lowercase();
            let reserved = lower.starts_with("cf-")
                || lower.starts_with("x-forwarded")
                || lower.starts_with("proxy-")
                || ["host", "forwarded", "x-real-ip", "true-client-ip", "cookie", "authorization", "connection", "upgrade", "content-length", "transfer-encoding"].contains(&lower.as_str());
            match http::HeaderName::from_bytes(lower.as_bytes()) {
                Ok(n) if plain && !reserved => Some(n),
                _ => {
                    self.problem(
                        h,
                        "trust.edge_header",
                        format!("{name:?} cannot carry the edge secret; use a name of your own made of letters, digits and hyphens, like \"X-Origin-Auth\" (not Cloudflare's CF-*, nor a forwarding header)"),
                    );
                    None
                }
            }
        });
        let file = raw
            .edge_secret_file
            .as_ref()
            .map(|f| self.path(f, "trust.edge_secret_file"));
        let edge = match (&raw.edge_header, &raw.edge_secret_file) {
            (Some(_), Some(_)) => header.zip(file).map(|(header, file)| EdgeSecretConfig {
                header,
                file,
                overlap,
            }),
            (Some(h), None) => {
                self.problem(h, "trust.edge_header", "needs trust.edge_secret_file, the file holding the secret your Cloudflare Transform Rule sends (generate one with: openssl rand -hex 32)".into());
                None
            }
            (None, Some(f)) => {
                self.problem(f, "trust.edge_secret_file", "needs trust.edge_header, the header your Cloudflare Transform Rule sets, like \"X-Origin-Auth\"".into());
                None
            }
            (None, None) => None,
        };
        TrustConfig {
            edge,
            cloudflare: raw.cloudflare.unwrap_or(true),
            extra,
            ranges_file: raw
                .ranges_file
                .as_ref()
                .map(|f| self.path(f, "trust.ranges_file")),
            only_trusted_peers: raw.only_trusted_peers.unwrap_or(false),
            require_client_cert: raw.require_client_cert.unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc = 1", 3), (2, 2));
        assert_eq!(line_col("abc", 0), (1, 1));
    }

    #[test]
    fn rate_rules_are_validated_with_a_fix_each() {
        let text = "[backend]\nurl = \"http://127.0.0.1:8080\"\n[[limits.rate]]\nprefix = \"wp-login.php\"\nper_ip = \"30/min\"\nburst = 0\nmethods = [\"POST\", \"GET /\"]\n[limits]\nrate_table_size = 10\n";
        let Err(e) = Config::parse(text, Source::File("og.toml".into())) else {
            panic!("accepted bad rate rules");
        };
        let lines: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "og.toml:4:10 limits.rate[0].prefix: \"wp-login.php\" is not a path prefix; write it like \"/wp-login.php\"",
                "og.toml:5:10 limits.rate[0].per_ip: \"30/min\" is not a rate; write requests per second, minute or hour like \"30/m\", \"5/s\" or \"100/h\" (1 to 1000000)",
                "og.toml:6:9 limits.rate[0].burst: 0 is out of range; expected a number from 1 to 100000",
                "og.toml:7:20 limits.rate[0].methods: \"GET /\" is not an HTTP method; write it like methods = [\"POST\"]",
                "og.toml:9:19 limits.rate_table_size: 10 is out of range; expected a number from 1024 to 16777216",
            ]
        );
        let good = "[backend]\nurl = \"http://127.0.0.1:8080\"\n[[limits.rate]]\nprefix = \"/WP-Login.php\"\nper_ip = \"30/m\"\nmethods = [\"post\"]\n";
        let c = Config::parse(good, Source::Embedded).unwrap();
        let r = &c.limits.rate[0];
        assert_eq!(
            (r.prefix.as_str(), r.burst, r.interval),
            ("/wp-login.php", 1, Duration::from_secs(2))
        );
        assert_eq!(r.label(), "/wp-login.php POST");
        assert_eq!(c.limits.rate_table_size, 65_536);
        assert_eq!(parse_rate("5/s"), Some(Duration::from_millis(200)));
        assert_eq!(parse_rate("1/h"), Some(Duration::from_secs(3600)));
        for bad in ["0/m", "1/d", "m/30", "30", "-1/s", "1000001/s"] {
            assert_eq!(parse_rate(bad), None, "{bad}");
        }
    }

    #[test]
    fn h2c_and_junk_upgrade_protocols_are_refused_with_a_fix() {
        let text = "[backend]\nurl = \"http://127.0.0.1:8080\"\n[limits]\nupgrade_protocols = [\"websocket\", \"h2c\", \"a b\"]\n";
        let Err(e) = Config::parse(text, Source::File("og.toml".into())) else {
            panic!("accepted h2c");
        };
        let lines: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("og.toml:4:35 limits.upgrade_protocols: \"h2c\" would let"));
        assert!(lines[1].contains("\"a b\" is not a protocol name"));
    }

    #[test]
    fn embedded_default_is_valid_and_uses_echo() {
        let c = Config::embedded_default().map_err(|e| e.to_string());
        let c = c.as_ref().map(|c| &c.backend.target);
        assert_eq!(c, Ok(&BackendTarget::Echo));
    }
}
