//! Pure decisions: who may speak for the visitor (`trust`), who the visitor is (`visitor`), what
//! the backend receives (`forwarded`), access rules, Basic auth and the ACME exemption (`access`,
//! `htpasswd`), rate limits by the real visitor (`rate`, whose only state is its bounded bucket
//! table), and the whole verdict on one request head (`pipeline`). No sockets: every rule is
//! unit-tested and benchmarked as a plain function. May import `config` only.

pub mod access;
pub mod forwarded;
pub mod htpasswd;
pub mod pipeline;
pub mod rate;
pub mod trust;
pub mod visitor;
