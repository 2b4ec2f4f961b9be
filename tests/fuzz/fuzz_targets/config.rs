//! The config parser and validator must answer any text with a Config or problems, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin_gate::config::{Config, Source};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match Config::parse(text, Source::File("fuzz.toml".into())) {
            Ok(_) => {}
            Err(e) => {
                // Every problem renders, with a position inside the text when it has one.
                for p in &e.problems {
                    let _ = p.to_string();
                    if let Some((line, _)) = p.position {
                        assert!(line >= 1 && line <= text.lines().count().max(1) + 1);
                    }
                }
            }
        }
    }
});
