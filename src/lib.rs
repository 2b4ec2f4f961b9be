//! origin-gate: a reverse-proxy sidecar for a WordPress origin behind Cloudflare.
//!
//! Data flows one way: listener (`server`) → connection context → request decision (`pipeline`,
//! built from `visitor`, `forwarded`, `trust`) → backend (`upstream`) → response rewrite → log
//! (`proxy`). Decisions are plain functions, tested and benchmarked without sockets.
#![forbid(unsafe_code)]

pub mod config;
pub mod decide;
pub mod observe;
pub mod ops;
pub mod serve;

pub use config::Config;
pub use decide::visitor::Scheme;
pub use serve::server::{Server, StartError};
