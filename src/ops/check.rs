//! `origin-gate check`: validate a configuration and every file it names, like `nginx -t`.

use std::path::Path;

use crate::config::{Config, Problem};
use crate::serve::state::Runtime;

/// The outcome of a check: report lines for a valid setup, or every problem found.
pub fn run(path: &Path) -> Result<Vec<String>, Vec<Problem>> {
    let config = Config::load(path).map_err(|e| e.problems)?;
    let prepared = Runtime::build(config, None)?;
    let config = &prepared.config;
    // At start missing certificate files are waited for (first issuance); `check` says so.
    if let Some(store) = &prepared.certs {
        let pending: Vec<Problem> = store
            .current()
            .pending
            .iter()
            .flat_map(|p| p.problems.clone())
            .collect();
        if !pending.is_empty() {
            return Err(pending);
        }
    }
    let mut report = vec![format!("{}: configuration is valid", config.source)];
    report.push(format!(
        "backend {}",
        prepared
            .upstream
            .describe(crate::decide::pipeline::UpstreamChoice::Primary)
    ));
    report.push(format!(
        "{} trusted proxy ranges (built-in Cloudflare list from {})",
        prepared.pipeline.trusted.len(),
        crate::decide::trust::CLOUDFLARE_LIST_DATE
    ));
    if let Some(e) = &config.trust.edge {
        report.push(format!(
            "edge secret: peers in the trusted ranges must send {} (secret from {})",
            e.header,
            e.file.display()
        ));
    }
    if config.trust.cloudflare {
        if let Some((level, message)) = crate::observe::health::list_age_verdict(
            crate::observe::health::now_unix(),
            crate::observe::health::ranges_file_mtime(config.trust.ranges_file.as_deref()),
        ) {
            report.push(format!("{level} {message}"));
        }
    }
    if let Some(warning) = prepared.proof_warning() {
        report.push(format!("WARN {warning}"));
    }
    if let Some(store) = &prepared.certs {
        let set = store.current();
        for e in &set.entries {
            match &e.cert.summary {
                Some(s) => report.push(format!(
                    "certificate {}: names [{}], issuer {}, serial {}, not after {}, {} days left; serves [{}]",
                    e.spec.cert.display(),
                    s.names.join(", "),
                    s.issuer,
                    s.serial,
                    s.not_after_text,
                    s.days_left(crate::serve::tls::now_unix()),
                    e.names.join(", ")
                )),
                None => report.push(format!("certificate {}: loaded", e.spec.cert.display())),
            }
        }
        for alarm in store.alarms(crate::serve::tls::now_unix()) {
            if alarm.level <= tracing::Level::WARN {
                report.push(format!("{} {}: {}", alarm.level, alarm.cert, alarm.message));
            }
        }
    }
    Ok(report)
}
