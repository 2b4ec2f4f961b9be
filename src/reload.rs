//! Reloading without a restart: certificate files (certbot renewals) and the trusted-range file.
//!
//! Triggered by SIGHUP and every `tls.reload_interval`. A new state is built completely and
//! swapped in only when valid; whatever fails to load is logged at ERROR and the last good
//! version keeps serving — never fall back to nothing (no certificate means Cloudflare 525; an
//! empty trust list would silently distrust Cloudflare).

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn, Level};

use crate::config::TrustConfig;
use crate::htpasswd::HtpasswdFile;
use crate::pipeline::PipelineConfig;
use crate::proxy::Shared;
use crate::tls::{now_unix, Alarm, CertStore};
use crate::trust::TrustedRanges;

/// What a reload changed, for callers that want to know (tests, SIGHUP logging).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    pub certs_reloaded: usize,
    pub certs_refused: usize,
    pub ranges_reloaded: bool,
    pub ranges_refused: bool,
    pub htpasswd_reloaded: usize,
    pub htpasswd_refused: usize,
}

/// A handle that reloads the running server's files.
#[derive(Clone)]
pub struct Reloader {
    pub(crate) shared: Arc<Shared>,
    pub(crate) certs: Option<Arc<CertStore>>,
    pub(crate) trust: TrustConfig,
    pub(crate) htpasswd: Vec<Arc<HtpasswdFile>>,
}

impl Reloader {
    /// Re-reads certificates and the ranges file now; file I/O runs off the async workers.
    pub async fn reload(&self) -> ReloadOutcome {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reload_blocking())
            .await
            .unwrap_or_default()
    }

    fn reload_blocking(&self) -> ReloadOutcome {
        let mut outcome = ReloadOutcome::default();
        if let Some(store) = &self.certs {
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
        if self.trust.ranges_file.is_some() {
            match TrustedRanges::from_config(&self.trust) {
                Ok(ranges) => {
                    let current = self.shared.pipeline.load();
                    if current.trusted != ranges {
                        let count = ranges.len();
                        let mut next: PipelineConfig = (**current).clone();
                        next.trusted = ranges;
                        self.shared.pipeline.store(Arc::new(next));
                        info!(ranges = count, "trusted ranges reloaded");
                        outcome.ranges_reloaded = true;
                    }
                }
                Err(problems) => {
                    for p in problems {
                        error!(
                            "trusted ranges not reloaded, the last good list stays in force: {p}"
                        );
                    }
                    outcome.ranges_refused = true;
                }
            }
        }
        for file in &self.htpasswd {
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
        outcome
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

/// Background duties while serving: reload every `interval`, certificate alarms hourly.
pub(crate) async fn maintenance(reloader: Reloader, interval: Duration) {
    let mut reload_tick = tokio::time::interval(interval);
    reload_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut alarm_tick = tokio::time::interval(Duration::from_secs(3600));
    alarm_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Both intervals fire at once; the start-up log already covered that moment.
    reload_tick.tick().await;
    alarm_tick.tick().await;
    loop {
        tokio::select! {
            _ = reload_tick.tick() => { reloader.reload().await; }
            _ = alarm_tick.tick() => {
                if let Some(store) = &reloader.certs {
                    log_alarms(&store.alarms(now_unix()));
                }
            }
        }
    }
}
