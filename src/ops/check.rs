//! `origin-gate check`: validate a configuration and every file it names, like `nginx -t`.

use std::path::Path;

use crate::config::{Config, Problem, Source};
use crate::serve::state::Runtime;

/// What a check found: report lines for a valid setup (empty when there are problems), every
/// problem — syntax, unknown keys, types, values and the files the configuration names, in one
/// pass, each pointing at the configuration line it comes from — and the certificate files not
/// issued yet, which are not problems (origin-gate starts without them and serves the
/// self-signed fallback until they appear: first issuance needs it running) but worth saying.
#[derive(Debug, Default)]
pub struct Outcome {
    pub report: Vec<String>,
    pub problems: Vec<Problem>,
    pub waiting: Vec<Problem>,
}

pub fn run(path: &Path) -> Outcome {
    match checked(path) {
        Ok(o) | Err(o) => o,
    }
}

fn checked(path: &Path) -> Result<Outcome, Outcome> {
    let failed = |problems| Outcome {
        problems,
        ..Outcome::default()
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        failed(vec![Problem {
            file: path.display().to_string(),
            position: None,
            key: String::new(),
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    let (config, mut problems) = Config::parse_all(&text, Source::File(path.to_path_buf()));
    let Some(config) = config else {
        return Err(failed(problems));
    };
    let original = config.clone();
    // Certificate files are looked at even when something else is wrong, so every missing one
    // is listed with the rest (as waiting: at start they are waited for, first issuance).
    let waiting: Vec<Problem> = match crate::serve::tls::CertStore::load(&config) {
        Ok(store) => store
            .current()
            .pending
            .iter()
            .flat_map(|p| p.problems.clone())
            .map(|p| original.locate(p))
            .collect(),
        Err(_) => Vec::new(),
    };
    let prepared = match Runtime::build(config, None) {
        Ok(p) => Some(p),
        Err(file_problems) => {
            problems.extend(file_problems);
            None
        }
    };
    if !problems.is_empty() {
        let mut problems: Vec<Problem> = problems.into_iter().map(|p| original.locate(p)).collect();
        problems.sort_by_key(|p| p.position.unwrap_or((usize::MAX, 0)));
        problems.dedup();
        return Err(Outcome {
            problems,
            waiting,
            ..Outcome::default()
        });
    }
    let Some(prepared) = prepared else {
        return Err(failed(problems));
    };
    let config = &prepared.config;
    let mut report = vec![format!("{}: configuration is valid", config.source)];
    report.push(format!(
        "backend {}",
        prepared
            .upstream
            .describe(crate::decide::pipeline::UpstreamChoice::Primary)
    ));
    report.push(format!(
        "{} trusted proxy ranges ({})",
        prepared.pipeline.trusted.len(),
        crate::decide::trust::list_source(&config.trust)
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
    if let Some(limiter) = &prepared.pipeline.rate {
        let labels: Vec<String> = config
            .limits
            .rate
            .iter()
            .map(|r| format!("{} {} burst {}", r.label(), r.per_ip, r.burst))
            .collect();
        report.push(format!(
            "rate limits per visitor: {}; table of at most {} visitors (~{} MiB)",
            labels.join("; "),
            limiter.capacity(),
            (limiter.capacity() * crate::decide::rate::BYTES_PER_KEY).div_ceil(1 << 20)
        ));
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
        // The configuration is valid and origin-gate will serve with these certificates, so they
        // are warnings here (exit 0: systemd's ExecStartPre must not keep a site with an expiring
        // certificate down); `doctor`, which judges the whole deployment, fails on the serious ones.
        for alarm in store.alarms(crate::serve::tls::now_unix()) {
            if alarm.level <= tracing::Level::WARN {
                let serious = if alarm.level == tracing::Level::ERROR {
                    " (doctor fails on this)"
                } else {
                    ""
                };
                report.push(format!("WARN {}: {}{serious}", alarm.cert, alarm.message));
            }
        }
    }
    Ok(Outcome {
        report,
        waiting,
        ..Outcome::default()
    })
}
