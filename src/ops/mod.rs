//! Operator commands: `check` (validate a configuration and every file it names, like
//! `nginx -t`) and `doctor` (check a running setup end to end). May import everything below:
//! `serve`, `observe`, `decide`, `config`.

pub mod check;
pub mod doctor;
pub mod ranges;
