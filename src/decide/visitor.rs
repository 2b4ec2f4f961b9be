//! Who the visitor really is: client IP and the scheme they used, from the peer and its headers.
//!
//! Pure functions: no sockets, no config beyond the trusted ranges. The rules follow what
//! Cloudflare documents for its origin headers:
//! - `CF-Connecting-IP` carries the visitor's address;
//! - `CF-Visitor: {"scheme":"https"}` carries the scheme the visitor used towards Cloudflare, which
//!   in "Flexible" mode differs from the scheme of the hop to us (plain HTTP on port 80);
//! - `X-Forwarded-For` is appended to by every proxy, so only its right-most entries are written
//!   by peers we trust; everything left of the first untrusted entry could be forged.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use http::header::HeaderName;
use http::HeaderMap;

use crate::decide::trust::{canonical, TrustedRanges};

// The headers the visitor is read from, as names built once: a `&str` lookup parses the name
// again on every request.
pub const CF_CONNECTING_IP: HeaderName = HeaderName::from_static("cf-connecting-ip");
pub const TRUE_CLIENT_IP: HeaderName = HeaderName::from_static("true-client-ip");
pub const CF_VISITOR: HeaderName = HeaderName::from_static("cf-visitor");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The scheme of a hop or of the visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The visitor as origin-gate concludes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visitor {
    pub client_ip: IpAddr,
    pub scheme: Scheme,
    /// Whether the direct peer is trusted (its forwarding headers were believed).
    pub trusted_peer: bool,
    /// The trusted edge sent client-address headers that do not add up: logged as suspicious.
    pub anomaly: Option<EdgeAnomaly>,
}

/// Edge headers from a trusted peer that Cloudflare itself never sends that way. Cloudflare sets
/// exactly one `CF-Connecting-IP` holding one address; anything else came from somewhere in
/// between (a Worker, a misconfigured second proxy) and is not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeAnomaly {
    /// More than one `CF-Connecting-IP` value, and they differ.
    ConnectingIpConflict,
    /// A `CF-Connecting-IP` that is not an IP address.
    ConnectingIpInvalid,
    /// `True-Client-IP` names another address than the one believed.
    TrueClientIpDisagrees,
}

impl EdgeAnomaly {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeAnomaly::ConnectingIpConflict => "several different CF-Connecting-IP values",
            EdgeAnomaly::ConnectingIpInvalid => "a CF-Connecting-IP that is not an IP address",
            EdgeAnomaly::TrueClientIpDisagrees => "True-Client-IP differs from CF-Connecting-IP",
        }
    }
}

/// Resolves the visitor.
///
/// Trusted peer: client IP = `CF-Connecting-IP` if there is exactly one address in it (repeats of
/// the same address count as one), else the right-most `X-Forwarded-For` entry that is not itself
/// trusted, else the peer; scheme = `CF-Visitor`, else the first `X-Forwarded-Proto` value
/// (`http`/`https` only), else the listener's.
/// Untrusted peer: the peer and the listener's scheme; its headers are not even read.
pub fn resolve(
    peer: IpAddr,
    peer_trusted: bool,
    listener: Scheme,
    trusted: &TrustedRanges,
    headers: &HeaderMap,
) -> Visitor {
    let peer = canonical(peer);
    if !peer_trusted {
        return Visitor {
            client_ip: peer,
            scheme: listener,
            trusted_peer: false,
            anomaly: None,
        };
    }
    let mut anomaly = None;
    let connecting = match single_ip(headers, &CF_CONNECTING_IP) {
        Ok(ip) => ip,
        Err(a) => {
            anomaly = Some(a);
            None
        }
    };
    let client_ip = connecting
        .or_else(|| rightmost_untrusted_xff(headers, trusted))
        .unwrap_or(peer);
    if anomaly.is_none() {
        let true_client = headers.get_all(&TRUE_CLIENT_IP).iter().any(|v| {
            std::str::from_utf8(v.as_bytes())
                .ok()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                .map(canonical)
                != Some(client_ip)
        });
        if true_client {
            anomaly = Some(EdgeAnomaly::TrueClientIpDisagrees);
        }
    }
    let scheme = header_str(headers, &CF_VISITOR)
        .and_then(cf_visitor_scheme)
        .or_else(|| header_str(headers, &X_FORWARDED_PROTO).and_then(forwarded_proto))
        .unwrap_or(listener);
    Visitor {
        client_ip,
        scheme,
        trusted_peer: true,
        anomaly,
    }
}

/// The one address a single-valued address header carries: `Ok(None)` when absent, an anomaly
/// when values differ or do not parse.
fn single_ip(headers: &HeaderMap, name: &HeaderName) -> Result<Option<IpAddr>, EdgeAnomaly> {
    let mut found: Option<IpAddr> = None;
    for v in headers.get_all(name) {
        let ip = std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .map(canonical)
            .ok_or(EdgeAnomaly::ConnectingIpInvalid)?;
        match found {
            Some(prev) if prev != ip => return Err(EdgeAnomaly::ConnectingIpConflict),
            _ => found = Some(ip),
        }
    }
    Ok(found)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Reads the scheme out of `CF-Visitor` (`{"scheme":"https"}`), tolerating white space and other
/// members. Anything unexpected yields `None`: a garbled header is ignored, not an error.
pub fn cf_visitor_scheme(value: &str) -> Option<Scheme> {
    // What Cloudflare sends, byte for byte, on every request: no substring search for it.
    match value {
        r#"{"scheme":"https"}"# => return Some(Scheme::Https),
        r#"{"scheme":"http"}"# => return Some(Scheme::Http),
        _ => {}
    }
    let after_key = &value[value.find("\"scheme\"")? + "\"scheme\"".len()..];
    let after_colon = after_key.trim_start().strip_prefix(':')?.trim_start();
    let inner = after_colon.strip_prefix('"')?;
    let scheme = &inner[..inner.find('"')?];
    parse_scheme(scheme)
}

/// First value of `X-Forwarded-Proto` (`https, http` → https); only `http` and `https` count.
pub fn forwarded_proto(value: &str) -> Option<Scheme> {
    parse_scheme(value.split(',').next()?.trim())
}

fn parse_scheme(s: &str) -> Option<Scheme> {
    if s.eq_ignore_ascii_case("https") {
        Some(Scheme::Https)
    } else if s.eq_ignore_ascii_case("http") {
        Some(Scheme::Http)
    } else {
        None
    }
}

/// Walks `X-Forwarded-For` from the right, skipping our own trusted proxies; the first entry that
/// is not trusted is the client. An unparsable entry stops the walk (nothing left of it can be
/// attributed), and then the peer is used.
fn rightmost_untrusted_xff(headers: &HeaderMap, trusted: &TrustedRanges) -> Option<IpAddr> {
    // Several X-Forwarded-For lines form one list, in order (RFC 9110 §5.3).
    let values: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .map(|v| v.to_str().ok())
        .collect::<Option<_>>()?;
    for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let ip = parse_xff_entry(entry.trim())?;
        if !trusted.contains(ip) {
            return Some(ip);
        }
    }
    None
}

/// One X-Forwarded-For entry: an address, possibly with a port (`1.2.3.4:5678`, `[2001:db8::1]:80`).
fn parse_xff_entry(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .or_else(|_| s.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ranges() -> TrustedRanges {
        let mut nets = crate::decide::trust::cloudflare_ranges();
        nets.push("127.0.0.2/32".parse().unwrap());
        TrustedRanges::new(&nets)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn cf_visitor_parse_is_tolerant() {
        assert_eq!(
            cf_visitor_scheme(r#"{"scheme":"https"}"#),
            Some(Scheme::Https)
        );
        assert_eq!(
            cf_visitor_scheme(r#"{ "scheme" : "http" , "x":1}"#),
            Some(Scheme::Http)
        );
        assert_eq!(cf_visitor_scheme(r#"{"scheme":"ftp"}"#), None);
        assert_eq!(cf_visitor_scheme(r#"{"scheme":"#), None);
        assert_eq!(cf_visitor_scheme("garbage"), None);
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let h = headers(&[
            ("cf-connecting-ip", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        let v = resolve(PEER, false, Scheme::Http, &ranges(), &h);
        assert_eq!(v.client_ip, PEER);
        assert_eq!(v.scheme, Scheme::Http);
    }

    #[test]
    fn xff_rightmost_untrusted_wins() {
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 9.9.9.9"),
            ("x-forwarded-for", "173.245.48.1"),
        ]);
        let v = resolve(PEER, true, Scheme::Http, &ranges(), &h);
        assert_eq!(v.client_ip, "9.9.9.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn cf_connecting_ip_beats_xff_and_garbage_falls_back() {
        let h = headers(&[
            ("cf-connecting-ip", "2001:db8::7"),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        let v = resolve(PEER, true, Scheme::Https, &ranges(), &h);
        assert_eq!(v.client_ip, "2001:db8::7".parse::<IpAddr>().unwrap());
        let h = headers(&[
            ("cf-connecting-ip", "not-an-ip"),
            ("x-forwarded-for", "junk"),
        ]);
        let v = resolve(PEER, true, Scheme::Https, &ranges(), &h);
        assert_eq!(v.client_ip, PEER);
        assert_eq!(v.scheme, Scheme::Https);
    }

    #[test]
    fn cf_visitor_beats_x_forwarded_proto() {
        let h = headers(&[
            ("cf-visitor", r#"{"scheme":"https"}"#),
            ("x-forwarded-proto", "http"),
        ]);
        assert_eq!(
            resolve(PEER, true, Scheme::Http, &ranges(), &h).scheme,
            Scheme::Https
        );
        let h = headers(&[("x-forwarded-proto", "https, http")]);
        assert_eq!(
            resolve(PEER, true, Scheme::Http, &ranges(), &h).scheme,
            Scheme::Https
        );
    }
}
