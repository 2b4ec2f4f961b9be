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
    HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, LOCATION, REFRESH, STRICT_TRANSPORT_SECURITY,
    TRANSFER_ENCODING, UPGRADE,
};
use http::request::Parts;
use http::uri::Authority;
use http::{HeaderMap, Method, StatusCode, Version};

use crate::access::{self, AccessRule, AcmePath};
use crate::config::{AcmeMode, BodyLimit, Config};
use crate::forwarded::{self, host_name};
use crate::trust::TrustedRanges;
use crate::visitor::{self, Scheme, Visitor};

/// The path prefix of ACME HTTP-01 challenges (RFC 8555 §8.3).
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

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
    pub sni: Option<Box<str>>,
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
    /// May this connection's peer speak for the visitor? Its address is in a trusted range and,
    /// with `trust.require_client_cert`, it proved itself with a client certificate
    /// (Authenticated Origin Pulls) — address lists alone can be stale. Decided per request, so
    /// a reloaded range list applies to open keep-alive connections too.
    pub fn peer_trusted(&self, conn: &ConnContext) -> bool {
        let verified = conn.tls.as_ref().is_some_and(|t| t.client_cert_verified);
        self.trusted.contains(conn.peer.ip()) && (!self.require_client_cert || verified)
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
    IpDenied,
    BadRequest,
    Misdirected,
    Echo,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Proxy => "proxy",
            Route::Acme => "acme",
            Route::Redirect => "redirect",
            Route::Lockdown => "lockdown",
            Route::TooLarge => "too_large",
            Route::AuthDenied => "auth_denied",
            Route::IpDenied => "ip_denied",
            Route::BadRequest => "bad_request",
            Route::Misdirected => "misdirected",
            Route::Echo => "echo",
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
        /// Index of the access rule whose Basic auth must pass first.
        auth: Option<usize>,
        /// `[[limits.body]]`: the most request-body bytes to pass on (413 beyond).
        body_limit: Option<u64>,
    },
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
}

/// The pipeline's verdict on one request.
#[derive(Debug, Clone)]
pub struct Decision {
    pub visitor: Visitor,
    /// The `Host` the visitor asked for, when it was valid.
    pub host: Option<HeaderValue>,
    pub route: Route,
    pub action: Action,
}

/// Decides what to do with a request head, rewriting its headers in place for forwarding.
pub fn decide(cfg: &PipelineConfig, conn: &ConnContext, req: &mut Parts) -> Decision {
    let peer_trusted = cfg.peer_trusted(conn);
    let visitor = visitor::resolve(
        conn.peer.ip(),
        peer_trusted,
        conn.listener,
        &cfg.trusted,
        &req.headers,
    );
    let respond = |host, route, status, message| Decision {
        visitor,
        host,
        route,
        action: Action::Respond { status, message },
    };

    // 0. Framing: anything a backend could read as a different request boundary is refused.
    if let Err((status, message)) = check_framing(req) {
        return respond(None, Route::BadRequest, status, message);
    }

    // 1. Host.
    let host = match request_host(req) {
        Ok(h) => h,
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

    // The ACME exemption is decided on the raw path: exactly a token under the prefix, else 404.
    let acme_token = if req.method == Method::GET || req.method == Method::HEAD {
        match access::acme_path(req.uri.path()) {
            AcmePath::No => None,
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
        return Decision {
            visitor,
            host: Some(host),
            route: Route::Redirect,
            action,
        };
    }

    // 5. Access rules and body limits, on the normalised path, which is also what the backend
    //    receives.
    let mut auth = None;
    let mut body_limit = None;
    let has_path_rules = !cfg.access.is_empty() || !cfg.body_limits.is_empty();
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
        if let Some((index, rule)) = access::match_rule(&cfg.access, name, normalized) {
            if !rule.admits(visitor.client_ip) {
                return respond(
                    Some(host),
                    Route::IpDenied,
                    StatusCode::FORBIDDEN,
                    "Access from your address is not allowed.",
                );
            }
            if rule.htpasswd.is_some() {
                auth = Some(index);
            }
        }
    }

    if let (Some(token), AcmeMode::Webroot(_)) = (&acme_token, &cfg.acme) {
        return Decision {
            visitor,
            host: Some(host),
            route: Route::Acme,
            action: Action::AcmeWebroot {
                token: token.clone(),
            },
        };
    }

    // 6. Rewrite.
    let upgrade = forwarded::strip_hop_by_hop(&mut req.headers)
        // Upgrade is an HTTP/1.1 mechanism; HTTP/2 clients use extended CONNECT instead.
        .filter(|_| req.version == Version::HTTP_11);
    if !visitor.trusted_peer {
        forwarded::strip_spoofable(&mut req.headers);
    }
    forwarded::set_forwarding(&mut req.headers, &visitor, &host);
    if !req.headers.contains_key(HOST) {
        // HTTP/2 carries the host in :authority; the HTTP/1.1 backend needs a Host header.
        req.headers.insert(HOST, host.clone());
    }
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
    Decision {
        visitor,
        host: Some(host),
        route: if acme { Route::Acme } else { Route::Proxy },
        action: Action::Forward {
            upstream,
            upgrade,
            auth,
            body_limit,
        },
    }
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
    let parsed = Authority::try_from(value.as_bytes()).map_err(|_| "Malformed Host header.")?;
    if parsed.host().is_empty() || parsed.as_str().contains('@') {
        return Err("Malformed Host header.");
    }
    Ok(value)
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

    fn cfg() -> PipelineConfig {
        PipelineConfig {
            trusted: TrustedRanges::new(&["127.0.0.2/32".parse().unwrap()]),
            only_trusted_peers: false,
            server_names: vec![],
            https_redirect: false,
            hsts: None,
            rewrite_location: true,
            https_upstream: false,
            require_client_cert: false,
            access: vec![],
            acme: AcmeMode::Proxy,
            body_limits: vec![],
        }
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
        assert!(c.peer_trusted(&conn("[::ffff:127.0.0.2]:1", Scheme::Http, &c)));
        assert!(!c.peer_trusted(&conn("[::ffff:127.0.0.3]:1", Scheme::Http, &c)));
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
        let t = |peer, scheme, tls| c.peer_trusted(&ConnContext::new(peer, local, scheme, tls));
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
}
