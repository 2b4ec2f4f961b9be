//! Shared fixtures: a real backend server, origin-gate in-process or as the real binary, and
//! HTTP/TLS clients that can bind their source address (127.0.0.2 trusted vs 127.0.0.3 not).
//!
//! Each concern has its module; everything is re-exported here so tests just `use common::*;`.
//! - `backend`: the hyper test backend (WordPress-like routes, misconfiguration modes, counters);
//! - `raw_backend`: a raw-socket backend that records requests exactly as they arrived;
//! - `gate`: origin-gate in-process ([`Gate`]) and as the real binary ([`GateProcess`]);
//! - `clients`: connections from a chosen source address, requests and [`Answer`]s;
//! - `certs`: test CAs and certificates.
#![allow(dead_code)]

mod backend;
mod certs;
mod clients;
mod gate;
pub mod raw_backend;

// Like `dead_code` above: each test crate uses its own subset, so a re-export may go unused there.
#[allow(unused_imports)]
pub use self::{backend::*, certs::*, clients::*, gate::*};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub const TRUSTED_SRC: &str = "127.0.0.2";
pub const UNTRUSTED_SRC: &str = "127.0.0.3";

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> TestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of `total` bytes streamed in 64 KiB chunks, never held whole in memory.
pub fn streamed(total: u64) -> TestBody {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let full_chunks = total / CHUNK as u64;
    let rest = (total % CHUNK as u64) as usize;
    let stream = futures_util::stream::iter(
        (0..full_chunks)
            .map(move |_| chunk.clone())
            .chain((rest > 0).then(|| Bytes::from(vec![b'x'; rest])))
            .map(|b| Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(b))),
    );
    BodyExt::boxed(StreamBody::new(stream))
}
