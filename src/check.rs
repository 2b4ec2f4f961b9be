//! `origin-gate check`: validate a configuration and every file it names, like `nginx -t`.

use std::path::Path;

use crate::config::{Config, Problem};
use crate::server;

/// The outcome of a check: report lines for a valid setup, or every problem found.
pub fn run(path: &Path) -> Result<Vec<String>, Vec<Problem>> {
    let config = Config::load(path).map_err(|e| e.problems)?;
    let prepared = server::prepare(&config)?;
    let mut report = vec![format!("{}: configuration is valid", config.source)];
    report.push(format!(
        "backend {}",
        prepared
            .shared
            .upstream
            .describe(crate::pipeline::UpstreamChoice::Primary)
    ));
    report.push(format!(
        "{} trusted proxy ranges (built-in Cloudflare list from {})",
        prepared.shared.pipeline.trusted.len(),
        crate::trust::CLOUDFLARE_LIST_DATE
    ));
    for (file, summary) in &prepared.cert_summaries {
        match summary {
            Some(s) => report.push(format!("certificate {file}: {s}")),
            None => report.push(format!("certificate {file}: loaded")),
        }
    }
    Ok(report)
}
