//! Heap allocations per request on the hot path, counted (not timed): the decision (trust,
//! visitor, access rules, header rewrite) and the access record with its JSON and combined
//! lines, on the 20-header Cloudflare request of the `pipeline` bench.
//!
//! Run: `cargo bench --bench allocations`. Its own target because counting needs a counting
//! global allocator (`allocation-counter`), while `pipeline` times with the binary's mimalloc.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark set-up panics loudly by design

use std::hint::black_box;

use origin_gate::decide::pipeline;

mod common;
use common::{cloudflare_conn, cloudflare_request, config, record};

fn main() {
    let cfg = config();
    let conn = cloudflare_conn();
    // One call first: lazily built tables (the forgeable-name index) are not per-request costs.
    black_box(pipeline::decide(&cfg, &conn, &mut cloudflare_request()));
    let mut head = cloudflare_request();
    let decide = allocation_counter::measure(|| {
        black_box(pipeline::decide(&cfg, &conn, &mut head));
    });
    let mut head = cloudflare_request();
    let d = pipeline::decide(&cfg, &conn, &mut head);
    // The server builds either line in a buffer reused per thread (`proxy::finish`): warmed
    // once here, as it is after a worker's first request.
    let mut line = String::new();
    record(&conn, &head, &d).push_json(&mut line, false);
    let json = allocation_counter::measure(|| {
        line.clear();
        record(&conn, &head, &d).push_json(&mut line, false);
        black_box(&line);
    });
    let combined = allocation_counter::measure(|| {
        line.clear();
        record(&conn, &head, &d).push_combined(&mut line, false);
        black_box(&line);
    });
    println!("allocations per request (count, bytes):");
    println!(
        "  decision                     {:>3} {:>6}",
        decide.count_total, decide.bytes_total
    );
    println!(
        "  access record + JSON line    {:>3} {:>6}",
        json.count_total, json.bytes_total
    );
    println!(
        "  access record + combined     {:>3} {:>6}",
        combined.count_total, combined.bytes_total
    );
    println!(
        "  decision + record + JSON     {:>3} {:>6}",
        decide.count_total + json.count_total,
        decide.bytes_total + json.bytes_total
    );
}
