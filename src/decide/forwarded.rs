//! Header rewriting between the visitor and the backend: hop-by-hop removal, dropping forgeable
//! forwarding headers, and setting the `X-Forwarded-*` / `Forwarded` set the backend relies on.
//!
//! Plain functions over `&mut HeaderMap`, tested and benchmarked without sockets.

use std::net::IpAddr;

use http::header::{
    HeaderName, HeaderValue, CONNECTION, COOKIE, FORWARDED, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::HeaderMap;

use crate::decide::trust::IpText;
use crate::decide::visitor::{Scheme, Visitor};
pub use crate::decide::visitor::{
    CF_CONNECTING_IP, CF_VISITOR, TRUE_CLIENT_IP, X_FORWARDED_FOR, X_FORWARDED_PROTO,
};

pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub const X_FORWARDED_SSL: HeaderName = HeaderName::from_static("x-forwarded-ssl");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// httpoxy (CVE-2016-5385): `Proxy:` becomes `HTTP_PROXY`, which PHP HTTP clients (Guzzle,
/// WordPress's Requests in older versions) took as their outbound proxy.
const PROXY: HeaderName = HeaderName::from_static("proxy");
/// RFC 9113 §3.2 (formerly RFC 7540 §3.2.1): the h2c upgrade's settings, hop-by-hop by definition.
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// What PHP makes of a request header name: `$_SERVER['HTTP_' . strtoupper(strtr($name, '-', '_'))]`
/// (CGI/1.1, RFC 3875 §4.1.18, as php-fpm, mod_php and `php -S` build it; PHP's own variable
/// registration also turns `.` and ` ` into `_`). Two names with the same CGI name are the *same*
/// variable to WordPress, and which one wins depends on the web server in between — so the
/// hyphenated name origin-gate strips or sets is not enough: its underscore twin must go too.
///
/// Compared here in the hyphen form: `_` and `.` fold into `-`, ASCII case is ignored.
pub fn cgi_eq(name: &[u8], hyphenated: &str) -> bool {
    name.len() == hyphenated.len()
        && name
            .iter()
            .zip(hyphenated.as_bytes())
            .all(|(&a, &b)| cgi_fold(a) == b)
}

fn cgi_starts_with(name: &[u8], hyphenated: &str) -> bool {
    name.len() >= hyphenated.len() && cgi_eq(&name[..hyphenated.len()], hyphenated)
}

#[inline]
fn cgi_fold(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

/// The forwarding headers [`set_forwarding`] sets (or, `X-Forwarded-Ssl` for http, removes) on
/// every forwarded request, replacing whatever the client sent under those names.
const REPLACED: [HeaderName; 7] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_FORWARDED_PORT,
    X_FORWARDED_SSL,
    X_REAL_IP,
    FORWARDED,
];

/// Client-identity and scheme claims that *nobody* may send, not even Cloudflare: Cloudflare
/// relays them unchanged from the visitor, and WordPress plugins read them (`HTTP_CLIENT_IP` comes
/// first in many "real IP" helpers; `HTTP_X_FORWARDED_SSL`, `HTTP_FRONT_END_HTTPS`, `HTTP_X_PROTO`
/// in "is it https" snippets). origin-gate removes them from every request and sets its own
/// `X-Forwarded-*` / `X-Real-IP` / `Forwarded`, which carry what it verified.
const FORGEABLE: &[&str] = &[
    "forwarded",
    "x-forwarded",
    "x-real-ip",
    "client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "forwarded-for",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "fastly-client-ip",
    "x-true-client-ip",
    "front-end-https",
    "x-proto",
    "x-scheme",
    "x-url-scheme",
    "x-https",
    "cloudfront-forwarded-proto",
    "x-original-host",
    "x-host",
    "x-original-forwarded-for",
    "x-sucuri-clientip",
    "incap-client-ip",
    "wl-proxy-client-ip",
    "x-proxyuser-ip",
    "cloudfront-viewer-address",
    "remote-addr",
    "x-arr-ssl",
    "akamai-client-ip",
    "x-azure-clientip",
    "x-azure-socketip",
    "x-envoy-external-address",
    "x-sp-forwarded-ip",
    "x-sp-edge-scheme",
    "fly-client-ip",
    "do-connecting-ip",
    "x-appengine-user-ip",
    "x-vercel-forwarded-for",
    "x-nf-client-connection-ip",
    "x-real-client-ip",
    "x-client-real-ip",
    "x-clientip",
    "x-arr-clientip",
    // "Is it https" claims read by wp-config snippets found in the wild.
    "ssl",
    "https",
    // Country claims: WooCommerce's geolocation reads X-Country-Code (tax, shipping and
    // geo-blocking follow it); Cloudflare's own is CF-IPCountry, from the edge only.
    "x-country-code",
    "cloudfront-viewer-country",
    "x-geo-country",
    "x-vercel-ip-country",
    "x-appengine-country",
    // origin-gate's own probe marker (`doctor`); read before this runs, never forwarded.
    "x-origin-gate-doctor",
];

/// Prefixes of the same kind: every `X-Forwarded-*` (origin-gate sets For/Proto/Host/Port/Ssl;
/// any other one — `-Server`, `-Prefix`, `-Scheme` — came from the visitor through the edge), and
/// every `Proxy-*` (`Proxy-Client-IP`; the hop-by-hop ones go anyway).
const FORGEABLE_PREFIXES: [&str; 2] = ["x-forwarded-", "proxy-"];

/// Headers only the trusted edge may set: Cloudflare's own (`CF-*`) and `True-Client-IP`.
/// From anybody else they are forgeries.
const EDGE_PREFIXES: [&str; 1] = ["cf-"];
const EDGE: [&str; 1] = ["true-client-ip"];

/// Names whose CGI twin must never reach PHP even when `limits.allow_underscores_in_headers` lets
/// other underscore names through: everything origin-gate strips or sets, plus the framing and
/// credential headers PHP reads as `CONTENT_*` / `HTTP_AUTHORIZATION` / `HTTP_COOKIE`.
const PROTECTED: [&str; 17] = [
    "host",
    "connection",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "content-type",
    "authorization",
    "cookie",
    "proxy",
    "http2-settings",
    "via",
    "true-client-ip",
    "forwarded",
    "x-real-ip",
];
const PROTECTED_PREFIXES: [&str; 3] = ["x-forwarded", "cf-", "proxy-"];

/// What [`sanitize`] removed that is worth counting: names that are not plain
/// `[A-Za-z0-9-]` tokens.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sanitized {
    pub invalid_names: Vec<HeaderName>,
}

/// Would PHP see this name as one origin-gate owns (see [`PROTECTED`])?
pub fn cgi_protected(name: &[u8], edge_header: Option<&HeaderName>) -> bool {
    PROTECTED.iter().any(|p| cgi_eq(name, p))
        || PROTECTED_PREFIXES.iter().any(|p| cgi_starts_with(name, p))
        || FORGEABLE.iter().any(|p| cgi_eq(name, p))
        || edge_header.is_some_and(|e| cgi_eq(name, e.as_str()))
}

/// Is this (lower-case) name in [`FORGEABLE`]? Every request header is asked, so the list is
/// indexed by length once: a name is compared only with the few entries of its own length
/// (measured on the 20-header Cloudflare head: sanitize 800 → ~200 ns).
fn is_forgeable(name: &str) -> bool {
    static BY_LEN: std::sync::OnceLock<Vec<Vec<&'static str>>> = std::sync::OnceLock::new();
    let table = BY_LEN.get_or_init(|| {
        let longest = FORGEABLE.iter().map(|n| n.len()).max().unwrap_or(0);
        let mut table = vec![Vec::new(); longest + 1];
        for n in FORGEABLE {
            table[n.len()].push(*n);
        }
        table
    });
    table
        .get(name.len())
        .is_some_and(|same_len| same_len.contains(&name))
}

/// What happens to one request header name before anything reads or forwards the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameVerdict {
    Keep,
    /// Not a plain `[A-Za-z0-9-]` name (underscores, dots, other token characters): dropped like
    /// nginx's `underscores_in_headers off` + `ignore_invalid_headers on`, and counted.
    Invalid,
    /// A client-identity or scheme claim nobody may make ([`FORGEABLE`]).
    Forgeable,
    /// An edge header (`CF-*`, `True-Client-IP`) from a peer that is not the trusted edge.
    EdgeOnly,
    /// `trust.edge_header`: the secret stops here, from every peer.
    EdgeSecret,
}

/// Classifies one header name. `allow_underscores` keeps `_` names whose CGI name collides with
/// nothing origin-gate owns; `.` and other token characters are never kept (PHP folds `.` too).
pub fn name_verdict(
    name: &HeaderName,
    trusted_peer: bool,
    allow_underscores: bool,
    edge_header: Option<&HeaderName>,
) -> NameVerdict {
    let n = name.as_str();
    if edge_header == Some(name) {
        return NameVerdict::EdgeSecret;
    }
    let bytes = n.as_bytes();
    if !bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
    {
        let only_underscores = bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if allow_underscores && only_underscores && !cgi_protected(bytes, edge_header) {
            return NameVerdict::Keep;
        }
        return NameVerdict::Invalid;
    }
    if is_forgeable(n) || FORGEABLE_PREFIXES.iter().any(|p| n.starts_with(p)) {
        return NameVerdict::Forgeable;
    }
    if !trusted_peer && (EDGE.contains(&n) || EDGE_PREFIXES.iter().any(|p| n.starts_with(p))) {
        return NameVerdict::EdgeOnly;
    }
    NameVerdict::Keep
}

/// Removes every header name that must not reach the backend (see [`name_verdict`]). Runs on the
/// head as received, after the visitor was resolved from it and before anything is forwarded.
/// Allocates only when something is removed.
pub fn sanitize(
    headers: &mut HeaderMap,
    trusted_peer: bool,
    allow_underscores: bool,
    edge_header: Option<&HeaderName>,
) -> Sanitized {
    let mut out = Sanitized::default();
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        match name_verdict(name, trusted_peer, allow_underscores, edge_header) {
            NameVerdict::Keep => {}
            NameVerdict::Invalid => {
                out.invalid_names.push(name.clone());
                doomed.push(name.clone());
            }
            // The claims `set_forwarding` replaces on every forwarded request are left for it
            // to overwrite (a forwarded request always gets origin-gate's values; an answered one
            // forwards nothing): a remove and a re-insert per name saved on every Cloudflare
            // request, which always carries X-Forwarded-For and -Proto.
            NameVerdict::Forgeable if REPLACED.contains(name) => {}
            NameVerdict::Forgeable | NameVerdict::EdgeOnly | NameVerdict::EdgeSecret => {
                doomed.push(name.clone())
            }
        }
    }
    for name in doomed {
        headers.remove(name);
    }
    out
}

/// HTTP/2 splits `Cookie` into one field per cookie ("crumbs", RFC 9113 §8.2.3); an HTTP/1.1
/// backend must get them joined with `"; "`, or PHP's `$_COOKIE` sees only part of them.
/// Several `Cookie` lines over HTTP/1.1 are joined the same way (nginx does the same).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let mut joined = Vec::with_capacity(128);
    for v in headers.get_all(COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
        headers.insert(COOKIE, v);
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and every header it names,
/// `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-*`. They describe one
/// connection and must not travel to the next; framing toward the backend is rebuilt by hyper.
///
/// Returns the `Upgrade` value when `Connection` asked for an upgrade, so the caller can re-add
/// exactly that pair when it forwards a WebSocket handshake.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    // Which of them are present, in one pass over the head's few names (cheaper than a lookup
    // per hop-by-hop name); a request usually has none, a response `Connection` alone.
    let mut present = [false; HOP_COUNT];
    let (mut connection, mut upgrade) = (false, false);
    for n in headers.keys() {
        if n == CONNECTION {
            connection = true;
        } else if n == UPGRADE {
            upgrade = true;
        } else if let Some(i) = HOP_BY_HOP.iter().position(|h| h == n) {
            present[i] = true;
        }
    }
    if !connection && !upgrade && !present.contains(&true) {
        return None;
    }
    let mut upgrade_requested = false;
    if connection {
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(CONNECTION) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if token.eq_ignore_ascii_case("upgrade") {
                    upgrade_requested = true;
                } else if token.eq_ignore_ascii_case("keep-alive")
                    || token.eq_ignore_ascii_case("close")
                {
                    // The common values: `Keep-Alive` is removed below anyway, `close` names no
                    // header. Skipping them spares an allocation on nearly every request.
                } else if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
        headers.remove(CONNECTION);
        for name in named {
            headers.remove(name);
        }
    }
    let upgrade = if upgrade {
        headers.remove(UPGRADE)
    } else {
        None
    };
    for (name, present) in HOP_BY_HOP.into_iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
    upgrade.filter(|_| upgrade_requested)
}

const HOP_COUNT: usize = 9;
/// The hop-by-hop names removed whether or not `Connection` names them (with `Connection` and
/// `Upgrade` themselves).
const HOP_BY_HOP: [HeaderName; HOP_COUNT] = [
    KEEP_ALIVE,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    PROXY_CONNECTION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    PROXY,
    HTTP2_SETTINGS,
];

/// Sets the headers that tell the backend who the visitor is and how they came:
///
/// - `X-Forwarded-For: <client>` — only the verified client, not the chain: WordPress plugins
///   commonly read the *left-most* entry, which a visitor can forge through Cloudflare (Cloudflare
///   appends to what the visitor sent). The full chain is in the access log.
/// - `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host` (the `Host` as received),
///   `X-Forwarded-Port` (port in `Host`, else 443/80 by the visitor's scheme), `X-Forwarded-Ssl: on`
///   for https visitors (removed otherwise), and RFC 7239 `Forwarded` with the same facts.
pub fn set_forwarding(headers: &mut HeaderMap, visitor: &Visitor, host: &HeaderValue) {
    let scheme = visitor.scheme;
    let port = host_port(host.as_bytes()).unwrap_or(scheme.default_port());
    // Every value origin-gate writes (address, port, `Forwarded`) is cut from one buffer: one
    // allocation for all of them, and the headers that carry the address share its bytes.
    let mut buf = bytes::BytesMut::with_capacity(96 + host.len());
    let ip = IpText::new(visitor.client_ip);
    buf.extend_from_slice(ip.as_str().as_bytes());
    let ip_value = value_of(buf.split().freeze(), "unknown");
    buf.extend_from_slice(itoa::Buffer::new().format(port).as_bytes());
    let port_value = value_of(buf.split().freeze(), "80");
    push_forwarded_element(&mut buf, &ip, visitor.client_ip.is_ipv6(), scheme, host);
    let forwarded = buf.freeze();

    if visitor.trusted_peer {
        // The edge's own client headers reach the backend holding exactly the address that was
        // believed — one value, never a duplicate or a non-address (PHP would see them joined).
        // (`insert`, not `get_mut`: it replaces every value of a repeated header.)
        for name in [CF_CONNECTING_IP, TRUE_CLIENT_IP] {
            if headers.contains_key(&name) {
                headers.insert(name, ip_value.clone());
            }
        }
        if headers.contains_key(&CF_VISITOR) {
            let canonical = match visitor.scheme {
                Scheme::Https => r#"{"scheme":"https"}"#,
                Scheme::Http => r#"{"scheme":"http"}"#,
            };
            headers.insert(CF_VISITOR, HeaderValue::from_static(canonical));
        }
    }
    headers.insert(X_FORWARDED_FOR, ip_value.clone());
    headers.insert(X_REAL_IP, ip_value);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme.as_str()));
    headers.insert(X_FORWARDED_HOST, host.clone());
    headers.insert(X_FORWARDED_PORT, port_value);
    match scheme {
        Scheme::Https => headers.insert(X_FORWARDED_SSL, HeaderValue::from_static("on")),
        Scheme::Http => headers.remove(X_FORWARDED_SSL),
    };
    if let Ok(v) = HeaderValue::from_maybe_shared(forwarded) {
        headers.insert(FORWARDED, v);
    }
}

/// A header value from bytes origin-gate formatted itself (never invalid; `fallback` if so).
fn value_of(bytes: bytes::Bytes, fallback: &'static str) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes).unwrap_or(HeaderValue::from_static(fallback))
}

/// `for=…;proto=…;host=…` per RFC 7239 §4: IPv6 nodes are bracketed and quoted (`for="[2001:db8::1]"`),
/// and a host with a port is quoted since `:` is not a token character.
pub fn forwarded_element(ip: IpAddr, scheme: Scheme, host: &HeaderValue) -> String {
    let mut buf = bytes::BytesMut::new();
    push_forwarded_element(&mut buf, &IpText::new(ip), ip.is_ipv6(), scheme, host);
    String::from_utf8_lossy(&buf).into_owned()
}

fn push_forwarded_element(
    out: &mut bytes::BytesMut,
    ip: &IpText,
    v6: bool,
    scheme: Scheme,
    host: &HeaderValue,
) {
    let host = host.to_str().unwrap_or("");
    out.extend_from_slice(if v6 { b"for=\"[" } else { b"for=" });
    out.extend_from_slice(ip.as_str().as_bytes());
    if v6 {
        out.extend_from_slice(b"]\"");
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(scheme.as_str().as_bytes());
    if !host.is_empty() {
        out.extend_from_slice(b";host=");
        if host.bytes().all(is_tchar) {
            out.extend_from_slice(host.as_bytes());
        } else {
            out.extend_from_slice(b"\"");
            out.extend_from_slice(host.as_bytes());
            out.extend_from_slice(b"\"");
        }
    }
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The explicit port of a `Host` value (`example.com:8443`, `[::1]:8080`), if any.
pub fn host_port(host: &[u8]) -> Option<u16> {
    let colon = host.iter().rposition(|&b| b == b':')?;
    if host
        .iter()
        .rposition(|&b| b == b']')
        .is_some_and(|br| br > colon)
    {
        return None;
    }
    std::str::from_utf8(&host[colon + 1..]).ok()?.parse().ok()
}

/// The host part of a `Host` value without its port, lower-cased comparisons are the caller's.
pub fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_listed_headers_and_fixed_set_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert(PROXY_AUTHORIZATION, HeaderValue::from_static("Basic x"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        assert_eq!(strip_hop_by_hop(&mut h), None);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn hop_by_hop_names_go_without_a_connection_header_too() {
        // The one-pass scan must find every fixed name (repeated, mixed case on the wire, any
        // position), not only when `Connection` is there to send the head down the slow path.
        for name in HOP_BY_HOP.into_iter().chain([UPGRADE]) {
            let mut h = HeaderMap::new();
            h.insert("x-before", HeaderValue::from_static("1"));
            h.append(name.clone(), HeaderValue::from_static("a"));
            h.append(name.clone(), HeaderValue::from_static("b"));
            h.insert("x-after", HeaderValue::from_static("1"));
            assert_eq!(strip_hop_by_hop(&mut h), None, "{name}");
            assert!(!h.contains_key(&name), "{name} survived");
            assert_eq!(h.len(), 2, "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_bytes(b"Proxy-Connection").unwrap(),
            HeaderValue::from_static("keep-alive"),
        );
        h.insert(
            HeaderName::from_bytes(b"HTTP2-Settings").unwrap(),
            HeaderValue::from_static("AAMAAABkAAQAAP__"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        assert_eq!(strip_hop_by_hop(&mut h), None);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn upgrade_is_returned_only_when_connection_asks_for_it() {
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(strip_hop_by_hop(&mut h), None);
        assert!(h.is_empty());
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        assert_eq!(
            strip_hop_by_hop(&mut h),
            Some(HeaderValue::from_static("websocket"))
        );
        assert!(h.is_empty());
    }

    #[test]
    fn forwarded_quotes_ipv6_and_ported_hosts() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            forwarded_element(v6, Scheme::Https, &HeaderValue::from_static("example.com")),
            "for=\"[2001:db8::1]\";proto=https;host=example.com"
        );
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            forwarded_element(
                v4,
                Scheme::Http,
                &HeaderValue::from_static("example.com:8080")
            ),
            "for=192.0.2.1;proto=http;host=\"example.com:8080\""
        );
    }

    #[test]
    fn host_port_and_name() {
        assert_eq!(host_port(b"example.com"), None);
        assert_eq!(host_port(b"example.com:8443"), Some(8443));
        assert_eq!(host_port(b"[::1]"), None);
        assert_eq!(host_port(b"[::1]:8080"), Some(8080));
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("Example.com:80"), "Example.com");
    }
}
