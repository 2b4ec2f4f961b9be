//! Header rewriting between the visitor and the backend: hop-by-hop removal, dropping forgeable
//! forwarding headers, and setting the `X-Forwarded-*` / `Forwarded` set the backend relies on.
//!
//! Plain functions over `&mut HeaderMap`, tested and benchmarked without sockets.

use std::net::IpAddr;

use http::header::{
    HeaderName, HeaderValue, CONNECTION, FORWARDED, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::HeaderMap;

use crate::visitor::{Scheme, Visitor};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub const X_FORWARDED_SSL: HeaderName = HeaderName::from_static("x-forwarded-ssl");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers only a trusted proxy may set. From anybody else they are forgeries: Cloudflare's own
/// (`CF-*`, `True-Client-IP`), the de-facto `X-Forwarded-*` family, `X-Real-IP` and RFC 7239
/// `Forwarded`.
const SPOOFABLE: [HeaderName; 7] = [
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("cf-visitor"),
    HeaderName::from_static("cf-ray"),
    HeaderName::from_static("cf-ipcountry"),
    X_REAL_IP,
    FORWARDED,
];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and every header it names,
/// `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-*`. They describe one
/// connection and must not travel to the next; framing toward the backend is rebuilt by hyper.
///
/// Returns the `Upgrade` value when `Connection` asked for an upgrade, so the caller can re-add
/// exactly that pair when it forwards a WebSocket handshake.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    let mut upgrade_requested = false;
    if headers.contains_key(CONNECTION) {
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
    let upgrade = headers.remove(UPGRADE);
    for name in [
        KEEP_ALIVE,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        PROXY_CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    upgrade.filter(|_| upgrade_requested)
}

/// Drops every forwarding header a direct (untrusted) peer sent, before anything reads them.
pub fn strip_spoofable(headers: &mut HeaderMap) {
    for name in SPOOFABLE {
        headers.remove(name);
    }
    if headers
        .keys()
        .any(|k| k.as_str().starts_with("x-forwarded-"))
    {
        let forged: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("x-forwarded-"))
            .cloned()
            .collect();
        for name in forged {
            headers.remove(name);
        }
    }
}

/// Sets the headers that tell the backend who the visitor is and how they came:
///
/// - `X-Forwarded-For: <client>` — only the verified client, not the chain: WordPress plugins
///   commonly read the *left-most* entry, which a visitor can forge through Cloudflare (Cloudflare
///   appends to what the visitor sent). The full chain is in the access log.
/// - `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host` (the `Host` as received),
///   `X-Forwarded-Port` (port in `Host`, else 443/80 by the visitor's scheme), `X-Forwarded-Ssl: on`
///   for https visitors (removed otherwise), and RFC 7239 `Forwarded` with the same facts.
pub fn set_forwarding(headers: &mut HeaderMap, visitor: &Visitor, host: &HeaderValue) {
    // The address is formatted on the stack; one allocation backs both headers that carry it.
    let mut buf = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let ip_value =
        match std::io::Write::write_fmt(&mut cursor, format_args!("{}", visitor.client_ip)) {
            Ok(()) => {
                let len = cursor.position() as usize;
                HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("unknown"))
            }
            Err(_) => HeaderValue::from_static("unknown"),
        };
    let scheme = visitor.scheme;
    let port = host_port(host.as_bytes()).unwrap_or(scheme.default_port());

    headers.insert(X_FORWARDED_FOR, ip_value.clone());
    headers.insert(X_REAL_IP, ip_value);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme.as_str()));
    headers.insert(X_FORWARDED_HOST, host.clone());
    headers.insert(X_FORWARDED_PORT, HeaderValue::from(port));
    match scheme {
        Scheme::Https => headers.insert(X_FORWARDED_SSL, HeaderValue::from_static("on")),
        Scheme::Http => headers.remove(X_FORWARDED_SSL),
    };
    // The String's buffer becomes the header value without another copy.
    let element = bytes::Bytes::from(forwarded_element(visitor.client_ip, scheme, host));
    if let Ok(v) = HeaderValue::from_maybe_shared(element) {
        headers.insert(FORWARDED, v);
    }
}

/// `for=…;proto=…;host=…` per RFC 7239 §4: IPv6 nodes are bracketed and quoted (`for="[2001:db8::1]"`),
/// and a host with a port is quoted since `:` is not a token character.
pub fn forwarded_element(ip: IpAddr, scheme: Scheme, host: &HeaderValue) -> String {
    let host = host.to_str().unwrap_or("");
    let mut out = String::with_capacity(48 + host.len());
    match ip {
        IpAddr::V4(v4) => {
            out.push_str("for=");
            out.push_str(&v4.to_string());
        }
        IpAddr::V6(v6) => {
            out.push_str("for=\"[");
            out.push_str(&v6.to_string());
            out.push_str("]\"");
        }
    }
    out.push_str(";proto=");
    out.push_str(scheme.as_str());
    if !host.is_empty() {
        out.push_str(";host=");
        if host.bytes().all(is_tchar) {
            out.push_str(host);
        } else {
            out.push('"');
            out.push_str(host);
            out.push('"');
        }
    }
    out
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
    fn upgrade_is_returned_only_when_connection_asks_for_it() {
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(strip_hop_by_hop(&mut h), None);
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
