//! CF-Visitor, CF-Connecting-IP, X-Forwarded-For and Host values from a trusted peer: visitor
//! resolution and the whole pipeline decision must never panic, and what they set must be
//! valid header values.
#![no_main]
use http::{HeaderValue, Request};
use libfuzzer_sys::fuzz_target;
use origin_gate::config::{Config, Source};
use origin_gate::pipeline::{decide, ConnContext, PipelineConfig};
use origin_gate::trust::{cloudflare_ranges, TrustedRanges};
use origin_gate::visitor::{cf_visitor_scheme, forwarded_proto, Scheme};

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.splitn(5, |b| *b == 0).collect();
    let get = |i: usize| parts.get(i).copied().unwrap_or(b"");
    if let Ok(s) = std::str::from_utf8(get(0)) {
        let _ = cf_visitor_scheme(s);
        let _ = forwarded_proto(s);
    }
    let Ok(config) = Config::parse("[backend]\nurl = \"http://127.0.0.1:8080\"\n[trust]\nextra = [\"127.0.0.2/32\"]\n", Source::Embedded) else {
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
    let Ok(req) = b.body(()) else { return };
    let (mut head, _) = req.into_parts();
    let conn = ConnContext::new("127.0.0.2:1".parse().unwrap(), "127.0.0.1:80".parse().unwrap(), Scheme::Http, None);
    let _ = decide(&cfg, &conn, &mut head);
});
