//! The embedded echo origin of the default configuration: instead of a WordPress backend, it
//! answers with JSON describing what that backend would receive and conclude. A newcomer runs
//! `origin-gate` and one `curl` shows the point.

use http::HeaderMap;
use serde_json::{json, Map, Value};

use crate::decide::pipeline::{ConnContext, Decision};
use crate::decide::visitor::Scheme;

/// Headers that carry the visitor's facts to the backend, listed first in the echo.
const FORWARDING: [&str; 8] = [
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-ssl",
    "forwarded",
    "cf-connecting-ip",
];

/// The JSON body for a request the pipeline decided to forward, with its rewritten headers.
pub fn describe(
    method: &str,
    uri: &str,
    headers: &HeaderMap,
    decision: &Decision,
    conn: &ConnContext,
) -> Value {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut forwarding = Map::new();
    for name in FORWARDING {
        if let Some(v) = get(name) {
            forwarding.insert(name.to_string(), Value::String(v));
        }
    }
    let mut all = Map::new();
    for (name, value) in headers {
        let v = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match all.get_mut(name.as_str()) {
            Some(Value::Array(list)) => list.push(v),
            Some(prev) => *prev = Value::Array(vec![prev.clone(), v]),
            None => {
                all.insert(name.as_str().to_string(), v);
            }
        }
    }
    let https = decision.visitor.scheme == Scheme::Https;
    json!({
        "origin": "origin-gate embedded echo: what a WordPress backend behind origin-gate would see",
        "method": method,
        "uri": uri,
        "host": get("host"),
        "visitor": {
            "client_ip": decision.visitor.client_ip.to_string(),
            "scheme": decision.visitor.scheme.as_str(),
        },
        "peer": {
            "address": conn.peer.to_string(),
            "trusted": decision.visitor.trusted_peer,
            "listener": conn.listener.as_str(),
        },
        "wordpress": {
            "is_ssl_with_x_forwarded_proto_mapping": https,
            "is_ssl_without_mapping": false,
            "remote_addr_with_real_ip_mapping": decision.visitor.client_ip.to_string(),
            "hint": if https {
                "visitor used https: with the one-line mapping in deploy/wordpress/, is_ssl() is true and FORCE_SSL_ADMIN does not loop"
            } else {
                "visitor used http: is_ssl() is false, as it should be"
            },
        },
        "forwarding_headers": forwarding,
        "headers": all,
    })
}
