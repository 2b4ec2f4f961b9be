//! CF-Visitor, CF-Connecting-IP, X-Forwarded-For and Host values, plus arbitrary extra header
//! names and values, from a trusted or an untrusted peer: visitor resolution and the whole
//! pipeline decision must never panic, what they set must be valid header values, and the
//! oracle checks what PHP would see (`HTTP_` + upper case, `-` and `.` → `_`):
//! - by default, every forwarded name is letters, digits and hyphens only;
//! - with `allow_underscores_in_headers`, no forwarded name with `_` has the CGI name of a
//!   header origin-gate sets or strips;
//! - each forwarding header origin-gate sets reaches PHP exactly once.
#![no_main]
use http::{HeaderName, HeaderValue, Request};
use libfuzzer_sys::fuzz_target;
use origin_gate::config::{Config, Source};
use origin_gate::decide::forwarded::cgi_protected;
use origin_gate::decide::pipeline::{decide, Action, ConnContext, PipelineConfig};
use origin_gate::decide::trust::{cloudflare_ranges, TrustedRanges};
use origin_gate::decide::visitor::{cf_visitor_scheme, forwarded_proto, Scheme};

fn cgi(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
    let get = |i: usize| parts.get(i).copied().unwrap_or(b"");
    if let Ok(s) = std::str::from_utf8(get(0)) {
        let _ = cf_visitor_scheme(s);
        let _ = forwarded_proto(s);
    }
    let flags = get(5).first().copied().unwrap_or(0);
    let allow_underscores = flags & 1 == 1;
    let peer = if flags & 2 == 2 { "127.0.0.2:1" } else { "127.0.0.3:1" };
    let text = format!(
        "[backend]\nurl = \"http://127.0.0.1:8080\"\n[trust]\nextra = [\"127.0.0.2/32\"]\n[limits]\nallow_underscores_in_headers = {allow_underscores}\n"
    );
    let Ok(config) = Config::parse(&text, Source::Embedded) else {
        return;
    };
    let mut nets = cloudflare_ranges();
    nets.push("127.0.0.2/32".parse().unwrap());
    let cfg = PipelineConfig::new(&config, TrustedRanges::new(&nets), Vec::new());
    let mut b = Request::builder().uri("/");
    for (name, i) in [("cf-visitor", 0), ("cf-connecting-ip", 1), ("x-forwarded-for", 2), ("host", 3), ("x-forwarded-proto", 4)] {
        if let Ok(v) = HeaderValue::from_bytes(get(i)) {
            b = b.header(name, v);
        }
    }
    // Everything after the flags: name, value, name, value …
    for pair in parts.get(6..).unwrap_or(&[]).chunks(2) {
        let (Some(n), Some(v)) = (pair.first(), pair.get(1)) else { break };
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
            b = b.header(n, v);
        }
    }
    let Ok(req) = b.body(()) else { return };
    let (mut head, _) = req.into_parts();
    let conn = ConnContext::new(peer.parse().unwrap(), "127.0.0.1:80".parse().unwrap(), Scheme::Http, None);
    let d = decide(&cfg, &conn, &mut head);
    if !matches!(d.action, Action::Forward { .. }) {
        return;
    }
    for name in head.headers.keys() {
        let n = name.as_str();
        let plain = n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !allow_underscores {
            assert!(plain, "forwarded a name PHP would fold: {n}");
        } else if !plain {
            assert!(!n.contains('.'), "forwarded a dotted name: {n}");
            assert!(!cgi_protected(n.as_bytes(), None), "forwarded a twin of an owned header: {n}");
        }
    }
    for owned in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-real-ip", "forwarded", "host"] {
        let seen = head.headers.keys().filter(|k| cgi(k.as_str()) == cgi(owned)).count();
        let values = head.headers.get_all(owned).iter().count();
        assert_eq!((seen, values), (1, 1), "{owned} must reach PHP exactly once");
    }
});
