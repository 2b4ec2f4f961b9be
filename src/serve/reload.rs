//! Reloading without a restart.
//!
//! - **Files** (every `tls.reload_interval`, and on SIGHUP): certificate files (certbot
//!   renewals), htpasswd files and the trusted-range file are re-read; what changed and is valid
//!   is swapped in, what fails is logged at ERROR and the last good version keeps serving — never
//!   fall back to nothing (no certificate means Cloudflare 525; an empty trust list would silently
//!   distrust Cloudflare).
//! - **Configuration** (SIGHUP, when the file's text changed): the new file is parsed, validated
//!   and every file it names loaded into a complete new [`Runtime`]; only then is it swapped in.
//!   An invalid one is logged with every reason and the old one keeps serving. Listen addresses
//!   and the connection limit need a restart, which is logged. In-flight requests and open
//!   keep-alive connections are untouched.

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn, Level};

use crate::config::{Config, Source};
use crate::decide::trust::TrustedRanges;
use crate::serve::state::{Runtime, Shared};
use crate::serve::tls::{now_unix, Alarm};

/// What a reload changed, for callers that want to know (tests, SIGHUP logging).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    pub config_reloaded: bool,
    pub config_refused: bool,
    pub certs_reloaded: usize,
    pub certs_refused: usize,
    pub ranges_reloaded: bool,
    pub ranges_refused: bool,
    pub htpasswd_reloaded: usize,
    pub htpasswd_refused: usize,
    pub edge_reloaded: bool,
    pub edge_refused: bool,
}

/// A handle that reloads the running server.
#[derive(Clone)]
pub struct Reloader {
    pub(crate) shared: Arc<Shared>,
}

impl Reloader {
    /// Re-reads certificates, htpasswd files and the ranges file now (file I/O runs off the async
    /// workers).
    pub async fn reload(&self) -> ReloadOutcome {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reload_files())
            .await
            .unwrap_or_default()
    }

    /// SIGHUP: the configuration file when its text changed (which re-reads every file it names),
    /// else the files alone.
    pub async fn reload_config(&self) -> ReloadOutcome {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reload_config_blocking())
            .await
            .unwrap_or_default()
    }

    fn reload_config_blocking(&self) -> ReloadOutcome {
        let current = self.shared.runtime.load_full();
        let Source::File(path) = &current.config.source else {
            return self.reload_files();
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                error!(config = %path.display(), error = %e, "configuration not reloaded: cannot read the file; the running configuration stays in force");
                return ReloadOutcome {
                    config_refused: true,
                    ..ReloadOutcome::default()
                };
            }
        };
        if text == current.config.text {
            return self.reload_files();
        }
        let built = Config::parse(&text, Source::File(path.clone()))
            .map_err(|e| e.problems)
            .and_then(|config| Runtime::build(config, Some(&current)));
        match built {
            Ok(next) => {
                log_restart_needed(&current.config, &next.config);
                if let Some(store) = &next.certs {
                    log_alarms(&store.alarms(now_unix()));
                }
                self.shared
                    .access_log
                    .set_destination(next.config.log.access_file.clone());
                if let Some(warning) = next.proof_warning() {
                    warn!("{warning}");
                }
                self.shared.runtime.store(Arc::new(next));
                self.shared.metrics.reload("reloaded");
                info!(config = %path.display(), "configuration reloaded");
                ReloadOutcome {
                    config_reloaded: true,
                    ..ReloadOutcome::default()
                }
            }
            Err(problems) => {
                self.shared.metrics.reload("refused");
                for p in &problems {
                    error!("configuration reload refused: {p}");
                }
                error!(
                    problems = problems.len(),
                    "the running configuration stays in force; fix the file and send SIGHUP again (origin-gate check --config {} lists the problems)",
                    path.display()
                );
                ReloadOutcome {
                    config_refused: true,
                    ..ReloadOutcome::default()
                }
            }
        }
    }

    /// SIGUSR1: reopen the access-log file (after logrotate moved it).
    pub fn reopen_access_log(&self) {
        self.shared.access_log.reopen();
    }

    fn reload_files(&self) -> ReloadOutcome {
        let runtime = self.shared.runtime.load_full();
        let mut outcome = ReloadOutcome::default();
        if let Some(store) = &runtime.certs {
            let report = store.reload();
            let set = store.current();
            for path in &report.reloaded {
                let summary = set
                    .entries
                    .iter()
                    .find(|e| e.spec.cert.display().to_string() == *path)
                    .and_then(|e| e.cert.summary.clone());
                match summary {
                    Some(s) => info!(cert = %path, serial = %s.serial, "certificate reloaded: {s}"),
                    None => info!(cert = %path, "certificate reloaded"),
                }
            }
            for p in &report.refused {
                error!("certificate reload refused, the previous certificate keeps serving: {p}");
            }
            outcome.certs_reloaded = report.reloaded.len();
            outcome.certs_refused = report.refused.len();
            if !report.reloaded.is_empty() {
                log_alarms(&store.alarms(now_unix()));
            }
        }
        for file in &runtime.htpasswd {
            match file.reload() {
                Ok(true) => {
                    info!(file = %file.path.display(), users = file.users(), "htpasswd file reloaded");
                    outcome.htpasswd_reloaded += 1;
                }
                Ok(false) => {}
                Err(problems) => {
                    for p in problems {
                        error!("htpasswd file not reloaded, the previous users stay in force: {p}");
                    }
                    outcome.htpasswd_refused += 1;
                }
            }
        }
        match runtime.with_edge_reread(std::time::Instant::now()) {
            Ok(Some(next)) => {
                let rotated = next.edge.as_ref().map(|e| e.current)
                    != runtime.edge.as_ref().map(|e| e.current);
                let next = Arc::new(next);
                let prev = self.shared.runtime.compare_and_swap(&runtime, next.clone());
                if Arc::ptr_eq(&prev, &runtime) {
                    if rotated {
                        info!(overlap = ?runtime.config.trust.edge.as_ref().map(|e| e.overlap), "edge secret changed: the new one is in force, the previous one is still accepted for the overlap");
                    } else {
                        info!("edge secret overlap over: only the current secret is accepted");
                    }
                    outcome.edge_reloaded = true;
                }
                return outcome_with_ranges(self, next, outcome);
            }
            Ok(None) => {}
            Err(p) => {
                error!("edge secret not reloaded, the secrets in force stay: {p}");
                outcome.edge_refused = true;
            }
        }
        outcome_with_ranges(self, runtime, outcome)
    }
}

/// The trusted-range file part of a file reload, on top of `runtime`.
fn outcome_with_ranges(
    this: &Reloader,
    runtime: Arc<Runtime>,
    mut outcome: ReloadOutcome,
) -> ReloadOutcome {
    if runtime.config.trust.ranges_file.is_some() {
        match TrustedRanges::from_config(&runtime.config.trust) {
            Ok(ranges) if ranges != runtime.pipeline.trusted => {
                let count = ranges.len();
                // Swap only if nobody swapped a whole new configuration in meanwhile.
                let next = Arc::new(runtime.with_trusted(ranges));
                let prev = this.shared.runtime.compare_and_swap(&runtime, next);
                if Arc::ptr_eq(&prev, &runtime) {
                    info!(ranges = count, "trusted ranges reloaded");
                    outcome.ranges_reloaded = true;
                }
            }
            Ok(_) => {}
            Err(problems) => {
                for p in problems {
                    error!("trusted ranges not reloaded, the last good list stays in force: {p}");
                }
                outcome.ranges_refused = true;
            }
        }
    }
    outcome
}

/// Settings that only take effect at start.
fn log_restart_needed(old: &Config, new: &Config) {
    if old.listen.http != new.listen.http || old.listen.https != new.listen.https {
        warn!("listen addresses changed in the configuration: they take effect only after a restart (systemctl restart origin-gate); the old ones keep serving");
    }
    if old.limits.max_connections != new.limits.max_connections {
        warn!("limits.max_connections changed: it takes effect only after a restart");
    }
    if old.log_level != new.log_level {
        warn!("log.level changed: it takes effect only after a restart (or set RUST_LOG)");
    }
}

/// Logs certificate alarms at their level.
pub fn log_alarms(alarms: &[Alarm]) {
    for a in alarms {
        match a.level {
            Level::ERROR => error!(cert = %a.cert, "{}", a.message),
            Level::WARN => warn!(cert = %a.cert, "{}", a.message),
            _ => info!(cert = %a.cert, "{}", a.message),
        }
    }
}

/// Background duties while serving: file reloads every `tls.reload_interval` (read afresh from
/// the current configuration each time), certificate alarms hourly.
pub(crate) async fn maintenance(reloader: Reloader) {
    let mut next_alarm = tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        let interval = reloader.shared.runtime.load().config.tls.reload_interval;
        tokio::time::sleep(interval).await;
        reloader.reload().await;
        if tokio::time::Instant::now() >= next_alarm {
            next_alarm += Duration::from_secs(3600);
            if let Some(store) = &reloader.shared.runtime.load().certs {
                log_alarms(&store.alarms(now_unix()));
            }
        }
    }
}
