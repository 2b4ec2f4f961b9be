//! The I/O: listeners and connections (`server`, `park`), TLS (`tls`), the thin request handler
//! (`proxy`), the express lane for simple plain HTTP/1.1 requests (`express`), request bodies
//! (`body`), the backend client and its per-worker pool (`upstream`), the direct exchange for
//! bodiless requests to an http backend at an IP address (`direct`),
//! the per-configuration snapshot and its reload path (`state`, `reload`), the embedded echo
//! origin and the admin listener. May import `observe`, `decide` and `config`.

pub mod acme;
pub mod admin;
pub mod body;
pub mod direct;
pub mod echo;
pub mod express;
pub mod forward;
pub mod park;
pub mod proxy;
pub mod reload;
pub mod respond;
pub mod server;
pub mod state;
pub mod tls;
pub mod upstream;
