//! Path normalisation: never panics, and its output is stable (normalising again changes
//! nothing), absolute, and free of dot segments and empty segments.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_gate::decide::access::{acme_path, is_normal, normalize_path};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let _ = acme_path(raw);
    // The allocation-free fast path must agree with full normalisation.
    if is_normal(raw) {
        assert_eq!(normalize_path(raw).as_deref(), Ok(raw), "fast path disagrees for {raw:?}");
    }
    if let Ok(p) = normalize_path(raw) {
        assert!(p.starts_with('/'));
        assert_eq!(normalize_path(&p).as_deref(), Ok(p.as_str()), "not idempotent for {raw:?}");
        let inner = p.trim_end_matches('/');
        for seg in inner.split('/').skip(1) {
            assert!(!seg.is_empty() && seg != "." && seg != "..", "{raw:?} -> {p:?}");
        }
    }
});
