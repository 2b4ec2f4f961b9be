//! origin-gate: a reverse-proxy sidecar for a WordPress origin behind Cloudflare.
//!
//! Data flows one way: listener (`server`) → connection context → request decision (`pipeline`,
//! built from `visitor`, `forwarded`, `trust`) → backend (`upstream`) → response rewrite → log
//! (`proxy`). Decisions are plain functions, tested and benchmarked without sockets.
#![forbid(unsafe_code)]

pub mod access;
pub mod access_log;
pub mod admin;
pub mod body;
pub mod check;
pub mod config;
pub mod diag;
pub mod doctor;
pub mod echo;
pub mod forwarded;
pub mod htpasswd;
pub mod metrics;
pub mod park;
pub mod pipeline;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod state;
pub mod tls;
pub mod trust;
pub mod upstream;
pub mod visitor;

pub use config::Config;
pub use server::{Server, StartError};
pub use visitor::Scheme;
