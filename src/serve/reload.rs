//! Reloading without a restart, along one path: every trigger — SIGHUP, the
//! `tls.reload_interval` timer — builds one new immutable [`Runtime`] snapshot and swaps it in
//! once, with one log line saying what changed and what was refused. A request reads the
//! snapshot once, so it never sees half of one state and half of another.
//!
//! - **Configuration** (SIGHUP, when the file's text changed): parsed, validated, and every file
//!   it names loaded into a complete new snapshot; only then is it swapped in. An invalid one is
//!   logged with every reason and the old one keeps serving. Unchanged parts are reused (the
//!   backend pool when `[backend]` is the same). Listen addresses and the connection limit need a
//!   restart, which is logged.
//! - **Files** (the timer, and SIGHUP with an unchanged configuration): certificates (certbot
//!   renewals), htpasswd files, the trusted-range file and the edge secret are re-read; what
//!   changed and is valid goes into the new snapshot, what fails is refused and the last good
//!   version keeps serving — never fall back to nothing (no certificate means Cloudflare 525; an
//!   empty trust list would silently distrust Cloudflare).

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

impl std::fmt::Display for ReloadOutcome {
    /// `configuration reloaded; 1 certificate reloaded` — only what happened.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let mut flag = |on: bool, what: &str| {
            if on {
                parts.push(what.to_string());
            }
        };
        flag(self.config_reloaded, "configuration reloaded");
        flag(
            self.config_refused,
            "configuration refused (the running one stays)",
        );
        flag(self.ranges_reloaded, "trusted ranges reloaded");
        flag(self.ranges_refused, "trusted ranges refused");
        flag(self.edge_reloaded, "edge secret reloaded");
        flag(self.edge_refused, "edge secret refused");
        for (n, what) in [
            (self.certs_reloaded, "certificate(s) reloaded"),
            (self.certs_refused, "certificate(s) refused"),
            (self.htpasswd_reloaded, "htpasswd file(s) reloaded"),
            (self.htpasswd_refused, "htpasswd file(s) refused"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if parts.is_empty() {
            f.write_str("nothing changed")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// A handle that reloads the running server.
#[derive(Clone)]
pub struct Reloader {
    pub(crate) shared: Arc<Shared>,
}

impl Reloader {
    /// Re-reads certificates, htpasswd files, the ranges file and the edge secret now (file I/O
    /// runs off the async workers).
    pub async fn reload(&self) -> ReloadOutcome {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reload_blocking(false))
            .await
            .unwrap_or_default()
    }

    /// SIGHUP: the configuration file when its text changed (which re-reads every file it names),
    /// else the files alone.
    pub async fn reload_config(&self) -> ReloadOutcome {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reload_blocking(true))
            .await
            .unwrap_or_default()
    }

    /// SIGUSR1: reopen the access-log file (after logrotate moved it).
    pub fn reopen_access_log(&self) {
        self.shared.access_log.reopen();
    }

    /// The one reload path.
    fn reload_blocking(&self, reread_config: bool) -> ReloadOutcome {
        let mut last_refusal = self
            .shared
            .reload_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let current = self.shared.runtime.load_full();
        if reread_config {
            if let Source::File(path) = &current.config.source {
                match std::fs::read_to_string(path) {
                    Ok(text) if text != current.config.text => {
                        return self.swap_config(&current, path, &text);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        error!(config = %path.display(), error = %e, "configuration reload refused: cannot read the file; the running configuration stays in force");
                        return ReloadOutcome {
                            config_refused: true,
                            ..ReloadOutcome::default()
                        };
                    }
                }
            }
        }
        // SIGHUP always says what it found; the timer repeats an unchanged refusal only at debug.
        self.swap_files(&current, &mut last_refusal, reread_config)
    }

    /// A changed configuration file: a whole new snapshot, or nothing.
    fn swap_config(&self, current: &Runtime, path: &std::path::Path, text: &str) -> ReloadOutcome {
        let built = Config::parse(text, Source::File(path.to_path_buf()))
            .map_err(|e| e.problems)
            .and_then(|config| Runtime::build(config, Some(current)));
        match built {
            Ok(next) => {
                log_restart_needed(&current.config, &next.config);
                if let Some(store) = &next.certs {
                    log_alarms(&store.alarms(now_unix()));
                }
                if let Some(warning) = next.proof_warning() {
                    warn!("{warning}");
                }
                let kept = if next.generation == current.generation {
                    "kept the backend connection pool"
                } else {
                    "new backend, new connection pool"
                };
                self.shared
                    .access_log
                    .set_destination(next.config.log.access_file.clone());
                self.shared.runtime.store(Arc::new(next));
                self.shared.metrics.reload("reloaded");
                info!(config = %path.display(), "configuration reloaded: every file it names re-read; {kept}");
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

    /// The files the configuration names: one new snapshot with whatever changed and is valid.
    fn swap_files(
        &self,
        current: &Arc<Runtime>,
        last_refusal: &mut String,
        asked: bool,
    ) -> ReloadOutcome {
        let mut outcome = ReloadOutcome::default();
        let mut next: Option<Runtime> = None;
        let mut changed: Vec<String> = Vec::new();
        let mut refused: Vec<String> = Vec::new();
        let base = |next: &Option<Runtime>| next.clone().unwrap_or_else(|| (**current).clone());

        if let Some(store) = &current.certs {
            let (fresh, report) = store.reread();
            for p in &report.refused {
                refused.push(format!(
                    "certificate reload refused, the previous certificate keeps serving: {p}"
                ));
            }
            outcome.certs_refused = report.refused.len();
            if let Some(fresh) = fresh {
                let set = fresh.current();
                match base(&next).with_certs(fresh) {
                    Ok(n) => {
                        for path in &report.reloaded {
                            let summary = set
                                .entries
                                .iter()
                                .find(|e| e.spec.cert.display().to_string() == *path)
                                .and_then(|e| e.cert.summary.clone());
                            changed.push(match summary {
                                Some(s) => format!(
                                    "certificate reloaded: {path}, serial {}: {s}",
                                    s.serial
                                ),
                                None => format!("certificate reloaded: {path}"),
                            });
                        }
                        outcome.certs_reloaded = report.reloaded.len();
                        next = Some(n);
                    }
                    Err(e) => refused.push(format!("certificate reload refused: {e}")),
                }
            }
        }
        for file in &current.htpasswd {
            match file.reread() {
                Ok(Some(fresh)) => {
                    changed.push(format!(
                        "htpasswd file reloaded: {} ({} users)",
                        fresh.path.display(),
                        fresh.users()
                    ));
                    next = Some(base(&next).with_htpasswd(file, fresh));
                    outcome.htpasswd_reloaded += 1;
                }
                Ok(None) => {}
                Err(problems) => {
                    for p in problems {
                        refused.push(format!(
                            "htpasswd file not reloaded, the previous users stay in force: {p}"
                        ));
                    }
                    outcome.htpasswd_refused += 1;
                }
            }
        }
        match base(&next).with_edge_reread(std::time::Instant::now()) {
            Ok(Some(n)) => {
                let rotated =
                    n.edge.as_ref().map(|e| e.current) != current.edge.as_ref().map(|e| e.current);
                changed.push(if rotated {
                    "edge secret changed: the new one is in force, the previous one is accepted for trust.edge_secret_overlap".into()
                } else {
                    "edge secret overlap over: only the current secret is accepted".into()
                });
                next = Some(n);
                outcome.edge_reloaded = true;
            }
            Ok(None) => {}
            Err(p) => {
                refused.push(format!(
                    "edge secret not reloaded, the secrets in force stay: {p}"
                ));
                outcome.edge_refused = true;
            }
        }
        if current.config.trust.ranges_file.is_some() {
            match TrustedRanges::from_config(&current.config.trust) {
                Ok(ranges) if ranges != current.pipeline.trusted => {
                    changed.push(format!("trusted ranges reloaded: {} ranges", ranges.len()));
                    next = Some(base(&next).with_trusted(ranges));
                    outcome.ranges_reloaded = true;
                }
                Ok(_) => {}
                Err(problems) => {
                    for p in problems {
                        refused.push(format!(
                            "trusted ranges not reloaded, the last good list stays in force: {p}"
                        ));
                    }
                    outcome.ranges_refused = true;
                }
            }
        }
        if let Some(next) = next {
            if outcome.certs_reloaded > 0 {
                if let Some(store) = &next.certs {
                    log_alarms(&store.alarms(now_unix()));
                }
            }
            self.shared.runtime.store(Arc::new(next));
        }
        let refusal = refused.join("; ");
        if !refused.is_empty() {
            let also = if changed.is_empty() {
                String::new()
            } else {
                format!("; reloaded: {}", changed.join("; "))
            };
            if asked || refusal != *last_refusal || !changed.is_empty() {
                error!("reload: {refusal}{also}");
            } else {
                tracing::debug!("reload: still refused, unchanged since the last ERROR: {refusal}");
            }
        } else if !changed.is_empty() {
            info!("reload: {}; everything else unchanged", changed.join("; "));
        }
        *last_refusal = refusal;
        outcome
    }
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
