//! The request pipeline: from (connection context, request head, config) to a [`Decision`].
//!
//! No sockets and no I/O: everything here is a function of its arguments, so each rule is unit
//! tested and the whole hot path is benchmarked in `benches/pipeline.rs`. The phases, in order:
//!
//! 1. **Host** — the authority the visitor asked for; missing or malformed → 400 (RFC 9112 §3.2),
//!    outside `server_names` → 421.
//! 2. **Visitor** — real client IP and scheme (`visitor::resolve`), believing headers only from
//!    trusted peers.
//! 3. **Lockdown** — with `trust.only_trusted_peers`, untrusted peers get 403, except the ACME
//!    HTTP-01 challenge path, which a certificate authority fetches from anywhere.
//! 4. **Redirect** — with `https.redirect`, http *visitors* (not http hops: Cloudflare Flexible
//!    sends https visitors over http) get 301/308 to https; never on the ACME path.
//! 5. **Rewrite** — hop-by-hop headers out, forgeable forwarding headers out when the peer is not
//!    trusted, `X-Forwarded-*` / `Forwarded` in.

use std::net::SocketAddr;

use http::header::{
    HeaderValue, ACCEPT, CONNECTION, CONTENT_LENGTH, HOST, LOCATION, REFRESH,
    STRICT_TRANSPORT_SECURITY, TRANSFER_ENCODING, UPGRADE, USER_AGENT,
};
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode, Version};

use crate::config::{AcmeMode, BodyLimit, Config};
use crate::decide::access::{self, AccessRule, AcmePath, AuthCheck};
use crate::decide::forwarded::{self, host_name};
use crate::decide::rate::{ClientKey, RateLimiter, Refusal};
use crate::decide::trust::{canonical, EdgeSecret, TrustedRanges};
use crate::decide::visitor::{self, Scheme, Visitor};

pub use crate::decide::access::ACME_CHALLENGE_PREFIX;

/// What the pipeline needs from the configuration, prepared once per config load.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub trusted: TrustedRanges,
    pub only_trusted_peers: bool,
    /// Lower-case host names; empty means any host is served.
    pub server_names: Vec<String>,
    pub https_redirect: bool,
    pub hsts: Option<HeaderValue>,
    pub rewrite_location: bool,
    /// `backend.https_url` is set: https visitors go to the backend's TLS port.
    pub https_upstream: bool,
    pub require_client_cert: bool,
    pub access: Vec<AccessRule>,
    pub acme: AcmeMode,
    pub body_limits: Vec<BodyLimit>,
    /// `limits.allow_underscores_in_headers`.
    pub allow_underscores: bool,
    /// `limits.upgrade_protocols`, lower-case: the only `Upgrade` protocols passed on.
    pub upgrade_protocols: Vec<String>,
    /// `limits.max_header_bytes` / `limits.max_headers`, enforced on the parsed head whatever
    /// the protocol (hyper's read buffer is not the head limit).
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// `trust.edge_header` + secret: required, on top of the ranges, for a peer to be trusted.
    pub edge: Option<EdgeSecret>,
    /// This process's `Via` entry (`1.1 origin-gate-<token>`): appended to every forwarded
    /// request; a request that arrives carrying it has come round in a loop.
    pub via: HeaderValue,
    /// `[[limits.rate]]` and their bucket table; `None` without rules. Shared by every worker
    /// and kept across reloads that leave the rules unchanged.
    pub rate: Option<std::sync::Arc<RateLimiter>>,
}

impl PipelineConfig {
    pub fn new(config: &Config, trusted: TrustedRanges, access: Vec<AccessRule>) -> Self {
        PipelineConfig {
            trusted,
            only_trusted_peers: config.trust.only_trusted_peers,
            server_names: config.server_names.clone(),
            https_redirect: config.https.redirect,
            hsts: config.https.hsts.clone(),
            rewrite_location: config.https.rewrite_location,
            https_upstream: config.backend.https_url.is_some(),
            require_client_cert: config.trust.require_client_cert,
            access,
            acme: config.acme.clone(),
            body_limits: config.limits.body.clone(),
            allow_underscores: config.limits.allow_underscores_in_headers,
            upgrade_protocols: config.limits.upgrade_protocols.clone(),
            max_header_bytes: config.limits.max_header_bytes,
            max_headers: config.limits.max_headers,
            // Filled in by the runtime, which reads the secret file.
            edge: None,
            via: HeaderValue::from_static("1.1 origin-gate"),
            rate: RateLimiter::new(&config.limits.rate, config.limits.rate_table_size, None)
                .map(std::sync::Arc::new),
        }
    }
}

/// Facts about the connection a request arrived on, computed once per connection.
#[derive(Debug, Clone)]
pub struct ConnContext {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The scheme of this hop: https on TLS listeners, http on plain ones.
    pub listener: Scheme,
    pub tls: Option<TlsInfo>,
}

/// What the TLS handshake established, for trust decisions and logs.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    pub sni: Option<std::sync::Arc<str>>,
    pub version: &'static str,
    /// A client certificate was presented and verified against `tls.client_ca`.
    pub client_cert_verified: bool,
}

impl ConnContext {
    pub fn new(
        peer: SocketAddr,
        local: SocketAddr,
        listener: Scheme,
        tls: Option<TlsInfo>,
    ) -> Self {
        ConnContext {
            peer,
            local,
            listener,
            tls,
        }
    }
}

impl PipelineConfig {
    /// Is this connection's peer in the trusted ranges and, with `trust.require_client_cert`,
    /// did it prove itself with a client certificate (Authenticated Origin Pulls)? Decided per
    /// request, so a reloaded range list applies to open keep-alive connections too.
    pub fn peer_in_ranges(&self, conn: &ConnContext) -> bool {
        let verified = conn.tls.as_ref().is_some_and(|t| t.client_cert_verified);
        self.trusted.contains(conn.peer.ip()) && (!self.require_client_cert || verified)
    }

    /// May this request's peer speak for the visitor? In the ranges (see [`peer_in_ranges`]) and,
    /// with an edge secret configured, presenting it: the ranges and the zone-level AOP
    /// certificate are shared by every Cloudflare account, the secret is the owner's alone.
    ///
    /// [`peer_in_ranges`]: PipelineConfig::peer_in_ranges
    pub fn peer_trusted(&self, conn: &ConnContext, headers: &HeaderMap) -> bool {
        self.peer_in_ranges(conn) && self.edge.as_ref().is_none_or(|e| e.admits(headers))
    }
}

/// Which way a request went; logged with every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Proxy,
    Acme,
    Redirect,
    Lockdown,
    TooLarge,
    AuthDenied,
    /// A request that came back to this process (`Via` carries its token): 508.
    Loop,
    IpDenied,
    BadRequest,
    Misdirected,
    Echo,
    /// `OPTIONS *`: answered by origin-gate (it is the server the asterisk means).
    Options,
    /// TRACE and CONNECT: 405.
    MethodNotAllowed,
    /// The client stalled while sending its body: 408.
    BodyTimeout,
    /// Over a `[[limits.rate]]` rule: 429.
    RateLimited,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Proxy => "proxy",
            Route::Acme => "acme",
            Route::Redirect => "redirect",
            Route::Lockdown => "lockdown",
            Route::TooLarge => "too_large",
            Route::Loop => "loop",
            Route::AuthDenied => "auth_denied",
            Route::IpDenied => "ip_denied",
            Route::BadRequest => "bad_request",
            Route::Misdirected => "misdirected",
            Route::Echo => "echo",
            Route::Options => "options",
            Route::MethodNotAllowed => "method_not_allowed",
            Route::BodyTimeout => "body_timeout",
            Route::RateLimited => "rate_limited",
        }
    }
}

/// Which backend address a forwarded request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamChoice {
    /// `backend.url`
    Primary,
    /// `backend.https_url`, for https visitors when configured.
    Https,
    /// `acme.backend`, for ACME challenges when configured.
    Acme,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send to the backend with the rewritten head. `upgrade` is the `Upgrade` protocol to
    /// re-request (WebSocket) after hop-by-hop stripping.
    Forward {
        upstream: UpstreamChoice,
        upgrade: Option<HeaderValue>,
        /// Basic auth that must pass first (the rule's htpasswd file and realm).
        auth: Option<AuthCheck>,
        /// `[[limits.body]]`: the most request-body bytes to pass on (413 beyond).
        body_limit: Option<u64>,
        /// False for the ACME exemption: the challenge is a GET, and whatever body came with it
        /// is not passed on.
        send_body: bool,
    },
    /// Answer with the methods origin-gate passes on (`Allow`), with this status: 200 for
    /// `OPTIONS *`, 405 for TRACE and CONNECT.
    Methods { status: StatusCode },
    /// Answer an ACME challenge from `acme.webroot`.
    AcmeWebroot { token: String },
    Redirect {
        status: StatusCode,
        location: HeaderValue,
    },
    Respond {
        status: StatusCode,
        message: &'static str,
    },
    /// 429 with `Retry-After`: the visitor is over a `[[limits.rate]]` rule.
    RateLimited(Refusal),
}

/// The pipeline's verdict on one request.
#[derive(Debug, Clone)]
pub struct Decision {
    pub visitor: Visitor,
    /// The `Host` the visitor asked for, when it was valid.
    pub host: Option<HeaderValue>,
    pub route: Route,
    pub action: Action,
    /// Request header names dropped as invalid (underscores, dots, …), for the metric and the
    /// debug line. Empty (no allocation) on ordinary requests.
    pub dropped_headers: Vec<http::HeaderName>,
    /// The peer is in the trusted ranges but did not present the edge secret: another
    /// Cloudflare account's zone, or the owner's Transform Rule is missing.
    pub edge_secret_missing: bool,
}

/// The methods origin-gate passes to WordPress, for `Allow` (RFC 9110 §10.2.1).
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Decides what to do with a request head, rewriting its headers in place for forwarding.
pub fn decide(cfg: &PipelineConfig, conn: &ConnContext, req: &mut Parts) -> Decision {
    decide_at(cfg, conn, req, std::time::Instant::now())
}

/// [`decide`] for a request that arrived at `now` (the handler's own start time, which it reads
/// anyway: rate limits count from it instead of reading the clock again).
pub fn decide_at(
    cfg: &PipelineConfig,
    conn: &ConnContext,
    req: &mut Parts,
    now: std::time::Instant,
) -> Decision {
    let in_ranges = cfg.peer_in_ranges(conn);
    let peer_trusted = in_ranges && cfg.edge.as_ref().is_none_or(|e| e.admits(&req.headers));
    let visitor = visitor::resolve(
        conn.peer.ip(),
        peer_trusted,
        conn.listener,
        &cfg.trusted,
        &req.headers,
    );
    // The head's size counts every field the client sent, dropped ones included.
    let oversized = head_too_large(cfg, req);
    // Straight after the visitor was read from them, and before anything else looks at the
    // head: names PHP would fold onto another header, claims nobody may make, and edge headers
    // from a peer that is not the edge all go.
    let edge_header = cfg.edge.as_ref().map(|e| &e.header);
    let dropped_headers = forwarded::sanitize(
        &mut req.headers,
        peer_trusted,
        cfg.allow_underscores,
        edge_header,
    )
    .invalid_names;
    let decision = |host, route, action| Decision {
        visitor,
        host,
        route,
        action,
        dropped_headers: dropped_headers.clone(),
        edge_secret_missing: in_ranges && !peer_trusted,
    };
    let respond =
        |host, route, status, message| decision(host, route, Action::Respond { status, message });

    // 0. Framing, head size, request target and method: anything a backend could read as a
    //    different request, or a different path, is refused before anything else.
    if let Err((status, message)) = check_framing(req) {
        return respond(None, Route::BadRequest, status, message);
    }
    if oversized {
        let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        return respond(
            None,
            Route::BadRequest,
            status,
            "Request header fields too large.",
        );
    }
    if req.uri.path() == "*" {
        // RFC 9110 §9.3.7: `OPTIONS *` asks the server itself; any other method with an
        // asterisk target is malformed. Never forwarded (hyper would send `/*`).
        return if req.method == Method::OPTIONS {
            decision(
                None,
                Route::Options,
                Action::Methods {
                    status: StatusCode::OK,
                },
            )
        } else {
            respond(
                None,
                Route::BadRequest,
                StatusCode::BAD_REQUEST,
                "Bad request target.",
            )
        };
    }
    if req.method == Method::TRACE || req.method == Method::CONNECT {
        // TRACE echoes the request (cookies included) back; CONNECT would open a tunnel through
        // the origin. Neither has a use in front of WordPress (nginx refuses both too).
        let status = StatusCode::METHOD_NOT_ALLOWED;
        return decision(None, Route::MethodNotAllowed, Action::Methods { status });
    }
    if let Err(message) = check_path(req.uri.path()) {
        return respond(None, Route::BadRequest, StatusCode::BAD_REQUEST, message);
    }
    // A loop: this request already passed through this very process (the backend is
    // origin-gate itself). Answered at once instead of feeding it back until descriptors run out.
    if req
        .headers
        .get_all(http::header::VIA)
        .iter()
        .any(|v| v.as_bytes() == cfg.via.as_bytes() || contains(v.as_bytes(), cfg.via.as_bytes()))
    {
        let status = StatusCode::LOOP_DETECTED;
        return respond(
            None,
            Route::Loop,
            status,
            "Loop detected: the backend is origin-gate itself.",
        );
    }

    // 1. Host, in the one form every later step and the backend see.
    let host = match request_host(req) {
        Ok(h) => canonical_host(h),
        Err(message) => return respond(None, Route::BadRequest, StatusCode::BAD_REQUEST, message),
    };
    let name = host_name(host.to_str().unwrap_or(""));
    if !cfg.server_names.is_empty()
        && !cfg
            .server_names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    {
        let message = "This server does not serve that host name.";
        return respond(
            Some(host),
            Route::Misdirected,
            StatusCode::MISDIRECTED_REQUEST,
            message,
        );
    }

    // The ACME exemption is decided on the raw target: GET or HEAD of exactly a token under the
    // prefix, with no query (RFC 8555 §8.3 builds the URL without one), else 404. Whatever the
    // exemption lets past lockdown, passwords and redirects must be the challenge and nothing
    // else: `?rest_route=/wp/v2/users` would reach WordPress's REST API from this path.
    let acme_token = if req.method == Method::GET || req.method == Method::HEAD {
        match access::acme_path(req.uri.path()) {
            AcmePath::No => None,
            AcmePath::Token(_) if req.uri.query().is_some() => {
                let message = "Not an ACME challenge: a challenge URL has no query.";
                return respond(Some(host), Route::Acme, StatusCode::NOT_FOUND, message);
            }
            AcmePath::Token(t) => Some(t.to_string()),
            AcmePath::Invalid => {
                let message = "Not an ACME challenge token.";
                return respond(Some(host), Route::Acme, StatusCode::NOT_FOUND, message);
            }
        }
    } else {
        None
    };
    let acme = acme_token.is_some();

    // 3. Lockdown.
    if cfg.only_trusted_peers && !peer_trusted && !acme {
        let message = "Direct access to this origin is not allowed.";
        return respond(Some(host), Route::Lockdown, StatusCode::FORBIDDEN, message);
    }

    // 4. Redirect to https, before any credentials are asked for: a password must never be
    //    requested over plain http.
    if cfg.https_redirect && visitor.scheme == Scheme::Http && !acme {
        let action = match redirect_location(name, req) {
            Some(location) => Action::Redirect {
                // 301 is what browsers and crawlers expect for GET; 308 keeps the method and body
                // of a POST (RFC 9110 §15.4.9), where 301 would let the client turn it into GET.
                status: if req.method == Method::GET || req.method == Method::HEAD {
                    StatusCode::MOVED_PERMANENTLY
                } else {
                    StatusCode::PERMANENT_REDIRECT
                },
                location,
            },
            None => Action::Respond {
                status: StatusCode::BAD_REQUEST,
                message: "Bad request target.",
            },
        };
        return decision(Some(host), Route::Redirect, action);
    }

    // 5. Access rules and body limits, on the normalised path, which is also what the backend
    //    receives.
    let mut auth = None;
    let mut body_limit = None;
    let has_path_rules =
        !cfg.access.is_empty() || !cfg.body_limits.is_empty() || cfg.rate.is_some();
    if !acme && has_path_rules {
        // Most paths are already normal: check them in place, allocate only for the others.
        let normalized_owned;
        let normalized: &str = if access::is_normal(req.uri.path()) {
            req.uri.path()
        } else {
            normalized_owned = match access::normalize_path(req.uri.path()) {
                Ok(p) => p,
                Err(_) => {
                    return respond(
                        Some(host),
                        Route::BadRequest,
                        StatusCode::BAD_REQUEST,
                        "Malformed request path.",
                    )
                }
            };
            if !replace_path(req, &normalized_owned) {
                return respond(
                    Some(host),
                    Route::BadRequest,
                    StatusCode::BAD_REQUEST,
                    "Malformed request path.",
                );
            }
            &normalized_owned
        };
        // Rate limits first: a refused guess costs nothing further, Basic auth included.
        if let Some(limiter) = &cfg.rate {
            let rules =
                limiter.matching_rules(normalized, req.uri.query(), &req.method, &req.headers);
            if !rules.is_empty() {
                // The believed visitor; a trusted peer whose request names none believably
                // (malformed or conflicting CF-Connecting-IP) is counted under its own address.
                let ip = if visitor.anomaly.is_some() {
                    canonical(conn.peer.ip())
                } else {
                    visitor.client_ip
                };
                if let Err(refusal) = limiter.check(&rules, ClientKey::of(ip), now) {
                    let action = Action::RateLimited(refusal);
                    return decision(Some(host), Route::RateLimited, action);
                }
            }
        }
        body_limit = cfg
            .body_limits
            .iter()
            .filter(|l| access::starts_with_ci(normalized, &l.prefix))
            .max_by_key(|l| l.prefix.len())
            .map(|l| l.max);
        if let Some(max) = body_limit {
            let declared = req
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > max) {
                return respond(
                    Some(host),
                    Route::TooLarge,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large.",
                );
            }
        }
        if let Some(rule) = access::match_rule(&cfg.access, name, normalized) {
            if !rule.admits(visitor.client_ip) {
                return respond(
                    Some(host),
                    Route::IpDenied,
                    StatusCode::FORBIDDEN,
                    "Access from your address is not allowed.",
                );
            }
            auth = rule.auth.clone();
        }
    }

    if let (Some(token), AcmeMode::Webroot(_)) = (&acme_token, &cfg.acme) {
        let action = Action::AcmeWebroot {
            token: token.clone(),
        };
        return decision(Some(host), Route::Acme, action);
    }

    // 6. Rewrite.
    let upgrade = if acme {
        // The exempt challenge goes on rebuilt from scratch: only what a CA sends and a
        // responder needs. No Cookie, Authorization, Upgrade, body framing or anything else.
        let mut minimal = HeaderMap::with_capacity(12);
        for name in [USER_AGENT, ACCEPT] {
            if let Some(v) = req.headers.get(&name) {
                minimal.insert(name, v.clone());
            }
        }
        req.headers = minimal;
        None
    } else {
        let upgrade = forwarded::strip_hop_by_hop(&mut req.headers)
            // Upgrade is an HTTP/1.1 mechanism; HTTP/2 clients use extended CONNECT instead.
            .filter(|_| req.version == Version::HTTP_11)
            .and_then(|v| allowed_upgrade(&cfg.upgrade_protocols, &v));
        forwarded::join_cookies(&mut req.headers);
        upgrade
    };
    forwarded::set_forwarding(&mut req.headers, &visitor, &host);
    req.headers.append(http::header::VIA, cfg.via.clone());
    // The canonical Host (HTTP/2 carries it in :authority; the HTTP/1.1 backend needs a Host).
    req.headers.insert(HOST, host.clone());
    if let Some(proto) = &upgrade {
        req.headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        req.headers.insert(UPGRADE, proto.clone());
    }
    let upstream = if acme && matches!(cfg.acme, AcmeMode::Backend(_)) {
        UpstreamChoice::Acme
    } else if cfg.https_upstream && visitor.scheme == Scheme::Https {
        UpstreamChoice::Https
    } else {
        UpstreamChoice::Primary
    };
    let action = Action::Forward {
        upstream,
        upgrade,
        auth,
        body_limit,
        send_body: !acme,
    };
    decision(
        Some(host),
        if acme { Route::Acme } else { Route::Proxy },
        action,
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The `Upgrade` value to pass on: only protocols in `limits.upgrade_protocols` (by name, any
/// version). Anything else — `h2c` above all: an h2c tunnel would carry every later request past
/// the access rules — is dropped, and the request goes on as a plain request.
fn allowed_upgrade(allowed: &[String], value: &HeaderValue) -> Option<HeaderValue> {
    let text = value.to_str().ok()?;
    let is_allowed = |token: &str| {
        let name = token.split('/').next().unwrap_or("").trim();
        allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
    };
    let tokens = text.split(',').map(str::trim).filter(|t| !t.is_empty());
    if tokens.clone().all(is_allowed) {
        return (tokens.count() > 0).then(|| value.clone());
    }
    let kept: Vec<&str> = tokens.filter(|t| is_allowed(t)).collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// Is a backend's `101 Switching Protocols` an answer to what was forwarded? Only when an
/// upgrade was requested and the backend switched to one of the requested protocols (RFC 9110
/// §7.8); anything else — a 101 to a plain request, or to `h2c` when `websocket` was asked —
/// would turn the visitor's connection into a raw tunnel nobody decided on.
pub fn switch_accepted(requested: Option<&HeaderValue>, response: &HeaderMap) -> bool {
    let (Some(requested), Some(chosen)) = (
        requested.and_then(|v| v.to_str().ok()),
        response.get(UPGRADE).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    let name = |t: &str| {
        t.split('/')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let chosen = chosen.trim();
    !chosen.is_empty()
        && !chosen.contains(',')
        && requested.split(',').any(|t| name(t) == name(chosen))
}

/// The head's size and field count against `limits.max_header_bytes` / `limits.max_headers`
/// (431, RFC 6585 §5), the same for HTTP/1.1 and HTTP/2: measured in its canonical HTTP/1.1
/// form — request line, one `Name: value` CRLF per field, the closing CRLF — on the head as
/// parsed, before any field is dropped. (White space around values and bare LF line ends are
/// not seen after parsing; hyper's read buffer, sized to the same limit, bounds those.)
fn head_too_large(cfg: &PipelineConfig, req: &Parts) -> bool {
    if req.headers.len() > cfg.max_headers {
        return true;
    }
    let target = req.uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + req.uri.authority().map_or(0, |a| a.as_str().len());
    let mut size = req.method.as_str().len() + 1 + target + " HTTP/1.1\r\n".len() + 2;
    for (name, value) in &req.headers {
        size += name.as_str().len() + 2 + value.len() + 2;
    }
    size > cfg.max_header_bytes
}

/// Paths no rule can reason about: a backslash (IIS, PHP on Windows and some rewrite rules read
/// it as `/`, so `/wp-admin\..\x` means different things to different servers), an encoded one,
/// and an encoded NUL. Checked on every request, with or without access rules.
fn check_path(path: &str) -> Result<(), &'static str> {
    let bytes = path.as_bytes();
    if bytes.contains(&b'\\') {
        return Err("Backslash in the request path.");
    }
    if bytes.contains(&b'%') {
        for w in bytes.windows(3) {
            if w[0] == b'%'
                && ((w[1] == b'5' && w[2].eq_ignore_ascii_case(&b'c'))
                    || (w[1] == b'0' && w[2] == b'0'))
            {
                return Err("Encoded backslash or NUL in the request path.");
            }
        }
    }
    Ok(())
}

/// Request smuggling defences (RFC 9112 §6.1, §6.3): a request whose body length two parties
/// could read differently is refused, and the connection closed, before anything is forwarded.
/// Towards the backend hyper rebuilds the framing from scratch; these checks make sure there is
/// only one reading to rebuild from.
fn check_framing(req: &Parts) -> Result<(), (StatusCode, &'static str)> {
    if req.version != Version::HTTP_11 && req.version != Version::HTTP_10 {
        return Ok(()); // HTTP/2 frames bodies itself.
    }
    let mut lengths = req.headers.get_all(CONTENT_LENGTH).iter();
    let length = lengths.next();
    if lengths.next().is_some() || length.is_some_and(|v| v.as_bytes().contains(&b',')) {
        return Err((StatusCode::BAD_REQUEST, "Repeated Content-Length."));
    }
    let mut codings = req.headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(coding) = codings.next() {
        if length.is_some() {
            return Err((
                StatusCode::BAD_REQUEST,
                "Both Content-Length and Transfer-Encoding.",
            ));
        }
        if codings.next().is_some() || !coding.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err((
                StatusCode::NOT_IMPLEMENTED,
                "Only Transfer-Encoding: chunked is supported.",
            ));
        }
    }
    Ok(())
}

/// Puts the normalised path into the request target, keeping the query.
fn replace_path(req: &mut Parts, path: &str) -> bool {
    let pq = match req.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    if parts.path_and_query.is_none() {
        return false;
    }
    match http::Uri::from_parts(parts) {
        Ok(uri) => {
            req.uri = uri;
            true
        }
        Err(_) => false,
    }
}

/// The host the visitor asked for: the `Host` header (exactly one), or for HTTP/2 the
/// `:authority`. An absolute-form target must agree with `Host` — disagreeing values are a
/// classic way to route past host-based rules.
fn request_host(req: &Parts) -> Result<HeaderValue, &'static str> {
    let mut hosts = req.headers.get_all(HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err("More than one Host header.");
    }
    let authority = req.uri.authority();
    let value = match (header, authority) {
        (Some(h), Some(a)) => {
            if !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) {
                return Err("The request target and the Host header name different hosts.");
            }
            h.clone()
        }
        (Some(h), None) => h.clone(),
        (None, Some(a)) => HeaderValue::from_str(a.as_str()).map_err(|_| "Malformed host.")?,
        (None, None) => return Err("Missing Host header."),
    };
    if !valid_host(value.as_bytes()) {
        return Err("Malformed Host header.");
    }
    Ok(value)
}

/// The `Host` passed on and matched against `server_names` and `[[access]] host`: without a
/// trailing dot (`staging.example.com.` is the same site to Apache's vhost matching and must be
/// to the rules too) and without a port of 80 or 443. The scheme is origin-gate's to state
/// (`X-Forwarded-Proto`); a client-chosen `:443` on plain http would otherwise become Apache's
/// `SERVER_PORT` (`UseCanonicalName Off`), which WordPress's `is_ssl()` takes for https.
pub fn canonical_host(value: HeaderValue) -> HeaderValue {
    let Ok(text) = value.to_str() else {
        return value;
    };
    let name = host_name(text);
    let port = forwarded::host_port(text.as_bytes());
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let keep_port = port.filter(|p| *p != 80 && *p != 443);
    if trimmed.len() == name.len() && keep_port == port {
        return value;
    }
    let rebuilt = match keep_port {
        Some(p) => format!("{trimmed}:{p}"),
        None => trimmed.to_string(),
    };
    HeaderValue::from_str(&rebuilt).unwrap_or(value)
}

/// `Host` as WordPress may safely echo it into links and redirects (RFC 9110 §7.2, RFC 3986
/// §3.2.2): a DNS-style name (letters, digits, `-`, `.`, `_`) or a bracketed IPv6 literal, and an
/// optional port of 1–5 digits from 1 to 65535. Anything else — `:99999`, `:abc`, an empty port,
/// `user@`, sub-delimiters, percent signs — is a 400, never passed on as `HTTP_HOST`.
pub fn valid_host(value: &[u8]) -> bool {
    let (name, port) = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = std::str::from_utf8(&value[1..close]).ok();
        if literal
            .and_then(|l| l.parse::<std::net::Ipv6Addr>().ok())
            .is_none()
        {
            return false;
        }
        match &value[close + 1..] {
            [] => (&value[..0], None),
            [b':', port @ ..] => (&value[..0], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(i) => (&value[..i], Some(&value[i + 1..])),
            None => (value, None),
        }
    };
    // Labels are not empty, except for one trailing dot (the fully qualified form).
    let labels = name.strip_suffix(b".").unwrap_or(name);
    let name_ok = value.first() == Some(&b'[')
        || (!labels.is_empty()
            && name.len() <= 253
            && labels.split(|&b| b == b'.').all(|l| !l.is_empty())
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(p)
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .is_some_and(|p| p != 0)
    });
    name_ok && port_ok
}

/// `https://<host without port><path>?<query>` — the port is dropped like nginx's `$host`: the
/// visitor's https port is 443, whatever port the http hop used.
fn redirect_location(host: &str, req: &Parts) -> Option<HeaderValue> {
    let pq = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    HeaderValue::from_str(&format!("https://{host}{pq}")).ok()
}

/// Rewrites the backend's response head for the visitor: hop-by-hop headers out (keeping the
/// `Upgrade` pair of a 101), `Location`/`Refresh` to https when the backend redirected an https
/// visitor to `http://<same host>` (nginx's `proxy_redirect`), and HSTS for https visitors.
pub fn rewrite_response(
    cfg: &PipelineConfig,
    decision: &Decision,
    status: StatusCode,
    headers: &mut HeaderMap,
) {
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        // The backend's body was chunked (the client decoded it; the visitor's side frames it
        // anew): a Content-Length sent with it is wrong by definition and must not reach the
        // visitor, where it would truncate the body (RFC 9112 §6.3 item 3).
        headers.remove(http::header::CONTENT_LENGTH);
    }
    let upgrade = forwarded::strip_hop_by_hop(headers);
    if status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(proto) = upgrade {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, proto);
        }
    }
    if decision.visitor.scheme != Scheme::Https {
        return;
    }
    if cfg.rewrite_location {
        if let Some(host) = decision.host.as_ref().and_then(|h| h.to_str().ok()) {
            let name = host_name(host);
            for header in [LOCATION, REFRESH] {
                let rewritten = headers
                    .get(&header)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| rewrite_http_url(v, name));
                if let Some(v) = rewritten {
                    headers.insert(header, v);
                }
            }
        }
    }
    if let Some(hsts) = &cfg.hsts {
        if !headers.contains_key(STRICT_TRANSPORT_SECURITY) {
            headers.insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
}

/// Finds `http://<host>[:80]` in a `Location` or `Refresh` (`0; url=http://…`) value and makes it
/// `https://<host>`, when `<host>` is the visitor's host. Other hosts are left alone.
pub fn rewrite_http_url(value: &str, host: &str) -> Option<HeaderValue> {
    let lower = value.to_ascii_lowercase();
    let start = lower.find("http://")?;
    let rest = &value[start + "http://".len()..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if !host_name(authority).eq_ignore_ascii_case(host) {
        return None;
    }
    let authority = authority.strip_suffix(":80").unwrap_or(authority);
    let rewritten = format!("{}https://{}{}", &value[..start], authority, &rest[end..]);
    HeaderValue::from_str(&rewritten).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    /// The pipeline as the configuration builds it: the defaults, trusting only 127.0.0.2.
    fn cfg() -> PipelineConfig {
        let text = "[backend]\nurl = \"http://127.0.0.1:8080\"\n[trust]\ncloudflare = false\nextra = [\"127.0.0.2/32\"]\n";
        let config = Config::parse(text, crate::config::Source::Embedded).unwrap();
        let trusted = TrustedRanges::new(&config.trust.extra);
        PipelineConfig::new(&config, trusted, vec![])
    }

    fn conn(peer: &str, listener: Scheme, cfg: &PipelineConfig) -> ConnContext {
        let _ = cfg;
        ConnContext::new(
            peer.parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
            listener,
            None,
        )
    }

    #[test]
    fn mapped_ipv4_peer_is_trusted_like_ipv4() {
        let c = cfg();
        assert!(c.peer_in_ranges(&conn("[::ffff:127.0.0.2]:1", Scheme::Http, &c)));
        assert!(!c.peer_in_ranges(&conn("[::ffff:127.0.0.3]:1", Scheme::Http, &c)));
        let mut h = head(
            "GET",
            "/",
            &[("host", "example.com"), ("cf-connecting-ip", "203.0.113.1")],
        );
        let d = decide(&c, &conn("[::ffff:127.0.0.2]:1", Scheme::Http, &c), &mut h);
        assert_eq!(h.headers["x-forwarded-for"], "203.0.113.1");
        assert_eq!(d.visitor.client_ip.to_string(), "203.0.113.1");
        let mut h = head("GET", "/", &[("host", "example.com")]);
        decide(&c, &conn("[::ffff:127.0.0.3]:1", Scheme::Http, &c), &mut h);
        assert_eq!(h.headers["x-forwarded-for"], "127.0.0.3");
        assert_eq!(
            h.headers["forwarded"],
            "for=127.0.0.3;proto=http;host=example.com"
        );
    }

    #[test]
    fn require_client_cert_needs_both_range_and_certificate() {
        let mut c = cfg();
        c.require_client_cert = true;
        let peer = "127.0.0.2:1".parse().unwrap();
        let local = "127.0.0.1:443".parse().unwrap();
        let verified = TlsInfo {
            client_cert_verified: true,
            ..TlsInfo::default()
        };
        let t = |peer, scheme, tls| c.peer_in_ranges(&ConnContext::new(peer, local, scheme, tls));
        assert!(t(peer, Scheme::Https, Some(verified.clone())));
        assert!(!t(peer, Scheme::Https, Some(TlsInfo::default())));
        assert!(!t(peer, Scheme::Http, None));
        assert!(!t(
            "127.0.0.3:1".parse().unwrap(),
            Scheme::Https,
            Some(verified)
        ));
    }

    fn head(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn missing_and_duplicate_host_are_400() {
        let c = cfg();
        let d = decide(
            &c,
            &conn("127.0.0.3:1", Scheme::Http, &c),
            &mut head("GET", "/", &[]),
        );
        assert_eq!(d.route, Route::BadRequest);
        let mut h = head("GET", "/", &[("host", "a"), ("host", "b")]);
        assert_eq!(
            decide(&c, &conn("127.0.0.3:1", Scheme::Http, &c), &mut h).route,
            Route::BadRequest
        );
        let mut h = head("GET", "/", &[("host", "a b")]);
        assert_eq!(
            decide(&c, &conn("127.0.0.3:1", Scheme::Http, &c), &mut h).route,
            Route::BadRequest
        );
    }

    #[test]
    fn redirect_uses_visitor_scheme_not_listener() {
        let mut c = cfg();
        c.https_redirect = true;
        // Flexible mode: trusted peer on the plain listener, visitor used https → no redirect.
        let mut h = head(
            "GET",
            "/wp-admin/",
            &[
                ("host", "example.com"),
                ("cf-visitor", r#"{"scheme":"https"}"#),
            ],
        );
        let d = decide(&c, &conn("127.0.0.2:1", Scheme::Http, &c), &mut h);
        assert_eq!(d.route, Route::Proxy);
        let mut h = head("POST", "/a?b=1", &[("host", "example.com:80")]);
        let d = decide(&c, &conn("127.0.0.3:1", Scheme::Http, &c), &mut h);
        assert_eq!(
            d.action,
            Action::Redirect {
                status: StatusCode::PERMANENT_REDIRECT,
                location: HeaderValue::from_static("https://example.com/a?b=1")
            }
        );
    }

    #[test]
    fn acme_path_passes_lockdown_and_redirect() {
        let mut c = cfg();
        c.https_redirect = true;
        c.only_trusted_peers = true;
        let mut h = head(
            "GET",
            "/.well-known/acme-challenge/abc",
            &[("host", "example.com")],
        );
        assert_eq!(
            decide(&c, &conn("127.0.0.3:1", Scheme::Http, &c), &mut h).route,
            Route::Acme
        );
        let mut h = head("GET", "/", &[("host", "example.com")]);
        assert_eq!(
            decide(&c, &conn("127.0.0.3:1", Scheme::Http, &c), &mut h).route,
            Route::Lockdown
        );
    }

    #[test]
    fn location_rewrite_only_for_same_host() {
        assert_eq!(
            rewrite_http_url("http://Example.com:80/wp-admin/", "example.com"),
            Some(HeaderValue::from_static("https://Example.com/wp-admin/"))
        );
        assert_eq!(
            rewrite_http_url("0; url=http://example.com/x", "example.com"),
            Some(HeaderValue::from_static("0; url=https://example.com/x"))
        );
        assert_eq!(rewrite_http_url("http://other.com/", "example.com"), None);
        assert_eq!(
            rewrite_http_url("https://example.com/", "example.com"),
            None
        );
    }

    fn forward(c: &PipelineConfig, peer: &str, h: &mut Parts) -> Decision {
        decide(c, &conn(peer, Scheme::Http, c), h)
    }

    /// Every forwarding header's underscore (and dot) twin, from a trusted and an untrusted peer:
    /// gone before the backend, counted as dropped.
    #[test]
    fn underscore_and_dot_twins_never_reach_the_backend() {
        let c = cfg();
        for twin in [
            "x_forwarded_proto",
            "X_FORWARDED_FOR",
            "x-forwarded_host",
            "x_forwarded-port",
            "X_Forwarded_Ssl",
            "cf_connecting_ip",
            "CF_VISITOR",
            "x_real_ip",
            "true_client_ip",
            "forwarded_for",
            "client_ip",
            "x.forwarded.proto",
            "content_length",
            "transfer_encoding",
            "authorization_",
            "host_",
            "x_origin_auth",
            "my_custom_header",
        ] {
            for peer in ["127.0.0.2:1", "127.0.0.3:1"] {
                let mut h = head("GET", "/", &[("host", "example.com"), (twin, "https")]);
                let d = forward(&c, peer, &mut h);
                assert_eq!(d.route, Route::Proxy, "{twin}");
                let lower = twin.to_ascii_lowercase();
                assert!(
                    !h.headers.contains_key(lower.as_str()),
                    "{twin} from {peer}"
                );
                assert_eq!(d.dropped_headers.len(), 1, "{twin} from {peer}");
            }
        }
    }

    #[test]
    fn allowed_underscores_still_drop_twins_of_headers_origin_gate_owns() {
        let mut c = cfg();
        c.allow_underscores = true;
        for (name, kept) in [
            ("my_custom_header", true),
            ("x_wp_nonce", true),
            ("x_forwarded_proto", false),
            ("x_forwarded_anything", false),
            ("cf_connecting_ip", false),
            ("cf_anything", false),
            ("true_client_ip", false),
            ("x_real_ip", false),
            ("x-real_ip", false),
            ("client_ip", false),
            ("front_end_https", false),
            ("content_length", false),
            ("content_type", false),
            ("transfer_encoding", false),
            ("authorization_", true), // HTTP_AUTHORIZATION_ is another variable
            ("http2_settings", false),
            ("proxy", false), // httpoxy: HTTP_PROXY
            ("proxy_authorization", false),
            ("cookie_", true),
            ("x.forwarded.proto", false), // dots are never kept: PHP folds them too
            ("x.custom", false),
        ] {
            let mut h = head("GET", "/", &[("host", "example.com"), (name, "v")]);
            forward(&c, "127.0.0.3:1", &mut h);
            let present = h.headers.get(name).is_some_and(|v| v == "v");
            assert_eq!(present, kept, "{name}");
        }
    }

    #[test]
    fn forgeable_claims_are_dropped_even_from_the_trusted_edge() {
        let c = cfg();
        let sent = [
            ("host", "example.com"),
            ("client-ip", "6.6.6.6"),
            ("x-client-ip", "6.6.6.6"),
            ("x-cluster-client-ip", "6.6.6.6"),
            ("x-forwarded", "for=6.6.6.6"),
            ("x-forwarded-server", "evil"),
            ("x-forwarded-scheme", "https"),
            ("front-end-https", "on"),
            ("x-proto", "SSL"),
            ("x-original-host", "evil.example"),
            ("proxy", "http://evil.example:3128"),
            ("cf-connecting-ip", "203.0.113.9"),
        ];
        for peer in ["127.0.0.2:1", "127.0.0.3:1"] {
            let mut h = head("GET", "/", &sent);
            forward(&c, peer, &mut h);
            for (n, _) in &sent[1..sent.len() - 1] {
                assert!(!h.headers.contains_key(*n), "{n} from {peer}");
            }
            assert_eq!(
                h.headers.contains_key("cf-connecting-ip"),
                peer == "127.0.0.2:1"
            );
        }
    }

    #[test]
    fn the_edge_forwards_exactly_the_one_address_believed() {
        let c = cfg();
        let t = "127.0.0.2:1";
        // Two different CF-Connecting-IP values: neither is believed, the XFF one is.
        let mut h = head(
            "GET",
            "/",
            &[
                ("host", "example.com"),
                ("cf-connecting-ip", "203.0.113.1"),
                ("cf-connecting-ip", "198.51.100.1"),
                ("x-forwarded-for", "192.0.2.44"),
                ("true-client-ip", "203.0.113.1"),
            ],
        );
        let d = forward(&c, t, &mut h);
        assert_eq!(d.visitor.client_ip.to_string(), "192.0.2.44");
        assert_eq!(
            d.visitor.anomaly,
            Some(crate::decide::visitor::EdgeAnomaly::ConnectingIpConflict)
        );
        let values: Vec<_> = h.headers.get_all("cf-connecting-ip").iter().collect();
        assert_eq!(values, ["192.0.2.44"]);
        assert_eq!(h.headers.get_all("true-client-ip").iter().count(), 1);
        assert_eq!(h.headers["true-client-ip"], "192.0.2.44");
        // The same value twice is one value.
        let mut h = head(
            "GET",
            "/",
            &[
                ("host", "example.com"),
                ("cf-connecting-ip", "203.0.113.1"),
                ("cf-connecting-ip", " 203.0.113.1"),
            ],
        );
        let d = forward(&c, t, &mut h);
        assert_eq!(d.visitor.anomaly, None);
        assert_eq!(
            h.headers
                .get_all("cf-connecting-ip")
                .iter()
                .collect::<Vec<_>>(),
            ["203.0.113.1"]
        );
        // Junk is not forwarded verbatim.
        let mut h = head(
            "GET",
            "/",
            &[("host", "example.com"), ("cf-connecting-ip", "<script>")],
        );
        let d = forward(&c, t, &mut h);
        assert_eq!(
            d.visitor.anomaly,
            Some(crate::decide::visitor::EdgeAnomaly::ConnectingIpInvalid)
        );
        assert_eq!(h.headers["cf-connecting-ip"], "127.0.0.2");
        // True-Client-IP that disagrees is flagged and rewritten.
        let mut h = head(
            "GET",
            "/",
            &[
                ("host", "example.com"),
                ("cf-connecting-ip", "203.0.113.1"),
                ("true-client-ip", "10.0.0.1"),
                ("cf-visitor", r#"{"scheme":"https"}"#),
                ("cf-visitor", r#"{"scheme":"http"}"#),
            ],
        );
        let d = forward(&c, t, &mut h);
        assert_eq!(
            d.visitor.anomaly,
            Some(crate::decide::visitor::EdgeAnomaly::TrueClientIpDisagrees)
        );
        assert_eq!(h.headers["true-client-ip"], "203.0.113.1");
        assert_eq!(h.headers.get_all("cf-visitor").iter().count(), 1);
        assert_eq!(h.headers["cf-visitor"], r#"{"scheme":"https"}"#);
    }

    #[test]
    fn acme_exemption_forwards_a_minimal_request_without_query() {
        let mut c = cfg();
        c.only_trusted_peers = true;
        let path = "/.well-known/acme-challenge/abc-DEF_123";
        let mut h = head(
            "GET",
            &format!("{path}?rest_route=/wp/v2/users&_method=DELETE"),
            &[("host", "example.com")],
        );
        let d = forward(&c, "127.0.0.3:1", &mut h);
        assert_eq!((d.route, status_of(&d)), (Route::Acme, 404));
        let mut h = head("GET", &format!("{path}?"), &[("host", "example.com")]);
        assert_eq!(status_of(&forward(&c, "127.0.0.3:1", &mut h)), 404);

        let mut h = head(
            "GET",
            path,
            &[
                ("host", "example.com"),
                (
                    "user-agent",
                    "Mozilla/5.0 (compatible; Let's Encrypt validation server)",
                ),
                ("accept", "*/*"),
                ("accept-encoding", "gzip"),
                ("cookie", "wordpress_logged_in_x=admin"),
                ("authorization", "Basic YTpi"),
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("content-length", "5"),
                ("x-http-method-override", "DELETE"),
            ],
        );
        let d = forward(&c, "127.0.0.3:1", &mut h);
        assert!(matches!(
            d.action,
            Action::Forward {
                send_body: false,
                upgrade: None,
                ..
            }
        ));
        let mut names: Vec<&str> = h.headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "accept",
                "forwarded",
                "host",
                "user-agent",
                "via",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-port",
                "x-forwarded-proto",
                "x-real-ip"
            ]
        );
        assert_eq!(h.uri.path_and_query().map(|p| p.as_str()), Some(path));
        // POST to the challenge path is an ordinary request: lockdown applies.
        let mut h = head("POST", path, &[("host", "example.com")]);
        assert_eq!(forward(&c, "127.0.0.3:1", &mut h).route, Route::Lockdown);
    }

    fn status_of(d: &Decision) -> u16 {
        match &d.action {
            Action::Respond { status, .. } | Action::Methods { status } => status.as_u16(),
            Action::Redirect { status, .. } => status.as_u16(),
            _ => 0,
        }
    }

    #[test]
    fn only_allowed_upgrades_are_passed_on() {
        let c = cfg();
        for (value, want) in [
            ("websocket", Some("websocket")),
            ("WebSocket", Some("WebSocket")),
            ("h2c", None),
            ("h2c, websocket", Some("websocket")),
            ("websocket/13, h2c", Some("websocket/13")),
            ("foo", None),
            ("", None),
        ] {
            let mut h = head(
                "GET",
                "/ws",
                &[
                    ("host", "example.com"),
                    ("connection", "Upgrade, HTTP2-Settings"),
                    ("upgrade", value),
                    ("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
                ],
            );
            let d = forward(&c, "127.0.0.3:1", &mut h);
            let Action::Forward { upgrade, .. } = &d.action else {
                panic!("{value}: not forwarded");
            };
            assert_eq!(
                upgrade.as_ref().map(|v| v.to_str().unwrap()),
                want,
                "{value}"
            );
            assert_eq!(h.headers.get("upgrade").map(|v| v.to_str().unwrap()), want);
            assert_eq!(
                h.headers.get("connection").is_some(),
                want.is_some(),
                "{value}"
            );
            assert!(!h.headers.contains_key("http2-settings"));
        }
    }

    #[test]
    fn a_switch_must_answer_what_was_requested() {
        let ws = HeaderValue::from_static("websocket");
        let resp = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(UPGRADE, HeaderValue::from_static(v));
            h
        };
        assert!(switch_accepted(Some(&ws), &resp("websocket")));
        assert!(switch_accepted(Some(&ws), &resp("WebSocket")));
        assert!(!switch_accepted(Some(&ws), &resp("h2c")));
        assert!(!switch_accepted(Some(&ws), &resp("websocket, h2c")));
        assert!(!switch_accepted(None, &resp("h2c")));
        assert!(!switch_accepted(Some(&ws), &HeaderMap::new()));
    }

    #[test]
    fn cookie_crumbs_are_joined() {
        let c = cfg();
        let mut h = head(
            "GET",
            "/",
            &[
                ("host", "example.com"),
                ("cookie", "a=1"),
                ("cookie", "wordpress_logged_in_x=y"),
                ("cookie", "b=2"),
            ],
        );
        forward(&c, "127.0.0.3:1", &mut h);
        assert_eq!(
            h.headers.get_all("cookie").iter().collect::<Vec<_>>(),
            ["a=1; wordpress_logged_in_x=y; b=2"]
        );
    }

    #[test]
    fn hosts_with_bad_ports_or_characters_are_400() {
        for host in [
            "example.com:99999",
            "example.com:abc",
            "example.com:",
            "example.com:0",
            "example.com:080800",
            "example.com:80:80",
            "user@example.com",
            "exa mple.com",
            "example.com/evil",
            "example.com%2f",
            "[::1",
            "[nothere]",
            "[::1]x",
            ":80",
            "example.com\\x",
        ] {
            assert!(!valid_host(host.as_bytes()), "{host}");
        }
        for host in [
            "example.com",
            "Example.COM:8080",
            "[2001:db8::1]:443",
            "[::1]",
            "127.0.0.1:65535",
            "my_host.local",
        ] {
            assert!(valid_host(host.as_bytes()), "{host}");
        }
        let c = cfg();
        let mut h = head("GET", "/", &[("host", "example.com:99999")]);
        assert_eq!(forward(&c, "127.0.0.3:1", &mut h).route, Route::BadRequest);
    }

    #[test]
    fn asterisk_trace_connect_backslash_and_oversized_heads() {
        let c = cfg();
        let mut h = head("OPTIONS", "*", &[("host", "example.com")]);
        let d = forward(&c, "127.0.0.3:1", &mut h);
        assert_eq!((d.route, status_of(&d)), (Route::Options, 200));
        for m in ["TRACE", "CONNECT"] {
            let uri = if m == "CONNECT" {
                "example.com:443"
            } else {
                "/"
            };
            let mut h = head(m, uri, &[("host", "example.com")]);
            let d = forward(&c, "127.0.0.3:1", &mut h);
            assert_eq!(
                (d.route, status_of(&d)),
                (Route::MethodNotAllowed, 405),
                "{m}"
            );
        }
        for path in ["/wp-admin\\..\\x", "/a%5cb", "/a%5Cb", "/a%00.php"] {
            let mut h = head("GET", path, &[("host", "example.com")]);
            let d = forward(&c, "127.0.0.3:1", &mut h);
            assert_eq!((d.route, status_of(&d)), (Route::BadRequest, 400), "{path}");
        }
        let big = "x".repeat(70 * 1024);
        let mut h = head("GET", "/", &[("host", "example.com"), ("x-big", &big)]);
        assert_eq!(status_of(&forward(&c, "127.0.0.3:1", &mut h)), 431);
        let fits = "x".repeat(65536 - 200);
        let mut h = head("GET", "/", &[("host", "example.com"), ("x-big", &fits)]);
        assert_eq!(forward(&c, "127.0.0.3:1", &mut h).route, Route::Proxy);
        let many: Vec<(String, String)> = (0..101)
            .map(|i| (format!("x-h{i}"), "1".to_string()))
            .collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let mut h = head("GET", "/", &refs);
        assert_eq!(status_of(&forward(&c, "127.0.0.3:1", &mut h)), 431);
    }

    #[test]
    fn hosts_are_canonical_before_anything_matches_them() {
        for (given, want) in [
            ("example.com", "example.com"),
            ("example.com.", "example.com"),
            ("example.com:80", "example.com"),
            ("example.com:443", "example.com"),
            ("example.com.:443", "example.com"),
            ("example.com:8443", "example.com:8443"),
            ("[::1]:443", "[::1]"),
            ("[::1]:8080", "[::1]:8080"),
        ] {
            let got = canonical_host(HeaderValue::from_static(given));
            assert_eq!(got, want, "{given}");
        }
        let mut c = cfg();
        c.server_names = vec!["example.com".into()];
        let mut h = head("GET", "/", &[("host", "Example.com.")]);
        assert_eq!(forward(&c, "127.0.0.3:1", &mut h).route, Route::Proxy);
        assert_eq!(h.headers["host"], "Example.com");
        let mut h = head("GET", "/", &[("host", "evil.example.com.")]);
        assert_eq!(forward(&c, "127.0.0.3:1", &mut h).route, Route::Misdirected);
    }

    fn rate_limited(
        c: &PipelineConfig,
        peer: &str,
        method: &str,
        target: &str,
        cf_ip: Option<&str>,
    ) -> Route {
        let mut headers = vec![("host", "example.com")];
        if let Some(ip) = cf_ip {
            headers.push(("cf-connecting-ip", ip));
        }
        let mut h = head(method, target, &headers);
        decide(c, &conn(peer, Scheme::Http, c), &mut h).route
    }

    fn with_rate(rules: &str) -> PipelineConfig {
        let text = format!("[backend]\nurl = \"http://127.0.0.1:8080\"\n[trust]\ncloudflare = false\nextra = [\"127.0.0.2/32\"]\n{rules}");
        let config = Config::parse(&text, crate::config::Source::Embedded).unwrap();
        let trusted = TrustedRanges::new(&config.trust.extra);
        PipelineConfig::new(&config, trusted, vec![])
    }

    #[test]
    fn rate_limits_key_on_the_visitor_the_pipeline_believes() {
        let c = with_rate("[[limits.rate]]\nprefix = \"/wp-login.php\"\nper_ip = \"1/h\"\nburst = 2\nmethods = [\"POST\"]\n");
        let login = |peer, ip| rate_limited(&c, peer, "POST", "/wp-login.php", ip);
        // Two visitors behind the same edge address are two keys.
        assert_eq!(login("127.0.0.2:1", Some("203.0.113.1")), Route::Proxy);
        assert_eq!(login("127.0.0.2:2", Some("203.0.113.1")), Route::Proxy);
        assert_eq!(
            login("127.0.0.2:3", Some("203.0.113.1")),
            Route::RateLimited
        );
        assert_eq!(login("127.0.0.2:4", Some("203.0.113.2")), Route::Proxy);
        // A direct client cannot rotate keys by naming visitors: its key is its own address.
        for (i, spoof) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
            .iter()
            .enumerate()
        {
            let expected = if i < 2 {
                Route::Proxy
            } else {
                Route::RateLimited
            };
            assert_eq!(login("127.0.0.3:5", Some(spoof)), expected, "{spoof}");
        }
        // The edge naming no believable visitor (none, a malformed or a conflicting
        // CF-Connecting-IP) is counted under its own address: one bucket, not a way out.
        assert_eq!(login("127.0.0.2:6", None), Route::Proxy);
        assert_eq!(login("127.0.0.2:6", Some("garbage")), Route::Proxy);
        assert_eq!(
            login("127.0.0.2:6", Some("203.0.113.7:443")),
            Route::RateLimited
        );
        assert_eq!(login("127.0.0.2:6", Some("127.0.0.2")), Route::RateLimited);
        // … and real visitors behind that edge keep their own buckets.
        assert_eq!(login("127.0.0.2:7", Some("203.0.113.8")), Route::Proxy);
        // Other methods and paths are not counted.
        assert_eq!(
            rate_limited(&c, "127.0.0.3:5", "GET", "/wp-login.php", None),
            Route::Proxy
        );
        assert_eq!(
            rate_limited(&c, "127.0.0.3:5", "POST", "/", None),
            Route::Proxy
        );
        // The refusal says when to come back.
        let mut h = head("POST", "/wp-login.php", &[("host", "example.com")]);
        let d = decide(&c, &conn("127.0.0.3:5", Scheme::Http, &c), &mut h);
        match d.action {
            Action::RateLimited(r) => assert!(r.retry_after > std::time::Duration::from_secs(1700)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn acme_challenges_are_never_rate_limited() {
        let c = with_rate("[[limits.rate]]\nprefix = \"/\"\nper_ip = \"1/h\"\n");
        assert_eq!(
            rate_limited(&c, "127.0.0.3:1", "GET", "/", None),
            Route::Proxy
        );
        assert_eq!(
            rate_limited(&c, "127.0.0.3:1", "GET", "/", None),
            Route::RateLimited
        );
        for _ in 0..5 {
            let route = rate_limited(
                &c,
                "127.0.0.3:1",
                "GET",
                "/.well-known/acme-challenge/tok_en-1",
                None,
            );
            assert_eq!(route, Route::Acme);
        }
    }
}
