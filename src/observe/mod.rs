//! What origin-gate tells its operator: the access-log record and its two formats
//! (`access_log`), Prometheus metrics (`metrics`), rate-limited diagnostics (`diag`) and the
//! operator policy shared by the start-up log, `check` and `doctor` (`health`). May import
//! `decide` and `config`.

pub mod access_log;
pub mod diag;
pub mod health;
pub mod metrics;
