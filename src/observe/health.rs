//! Operator policy in one place: when a certificate's remaining time is worth a WARN or an
//! ERROR, and when the built-in Cloudflare list is too old. The start-up log, the hourly alarms,
//! `check`, `doctor` and `/metrics` all read these functions, so their thresholds cannot drift.

use std::fmt;

use crate::decide::trust::{cloudflare_list_age_days, CLOUDFLARE_LIST_DATE};

/// Facts about a leaf certificate, for `check`, logs, alarms and metrics.
#[derive(Debug, Clone)]
pub struct CertSummary {
    /// SAN DNS and IP names (the subject CN only when there is no SAN).
    pub names: Vec<String>,
    pub issuer: String,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub not_after_text: String,
}

impl CertSummary {
    /// Whole days until `not_after`, negative once expired.
    pub fn days_left(&self, now_unix: i64) -> i64 {
        (self.not_after - now_unix).div_euclid(86_400)
    }
}

impl fmt::Display for CertSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "names [{}], issuer {}, not after {} ({} days left)",
            self.names.join(", "),
            self.issuer,
            self.not_after_text,
            self.days_left(now_unix())
        )
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// certbot's renewal timer runs twice a day (certbot.timer / the cron job) and renews once a third
/// of the lifetime is left (certbot 4.1+, or when ACME Renewal Information says so).
const RENEWAL_TRIES_PER_DAY: i64 = 2;

/// The one expiry rule, used by the alarms, `check`, `doctor` and `/metrics`, relative to the
/// certificate's own lifetime so a 6-day and a 90-day certificate are judged alike:
/// ERROR once expired, not yet valid, or under a tenth of the lifetime left; WARN under a quarter
/// (or under `tls.expiry_warn_days` when that absolute override is set); INFO otherwise. The
/// message says how many renewal chances have passed since renewal became due.
pub fn expiry_verdict(
    s: &CertSummary,
    now_unix: i64,
    warn_days: Option<i64>,
) -> (tracing::Level, String) {
    use tracing::Level;
    let lifetime = (s.not_after - s.not_before).max(1);
    let left = s.not_after - now_unix;
    let days = s.days_left(now_unix);
    let lifetime_days = lifetime as f64 / 86_400.0;
    if now_unix < s.not_before {
        return (Level::ERROR, "certificate is not valid yet (system clock wrong, or a future-dated certificate); clients will reject it".into());
    }
    if left <= 0 {
        return (Level::ERROR, format!("certificate EXPIRED on {}: browsers and Cloudflare Full (strict) reject it (error 526); renew now (certbot renew) — origin-gate picks the new files up by itself", s.not_after_text));
    }
    // Renewal became due when a third of the lifetime was left.
    let overdue = lifetime / 3 - left;
    let chances = (overdue.max(0) * RENEWAL_TRIES_PER_DAY) / 86_400;
    let left_text = if left < 2 * 86_400 {
        format!("{:.1} hours", left as f64 / 3600.0)
    } else {
        format!("{days} days")
    };
    let figures = format!(
        "{left_text} left of a {lifetime_days:.0}-day lifetime (until {}); renewal was due at a third of the lifetime, about {chances} twice-daily renewal attempts ago",
        s.not_after_text
    );
    let fix = "run certbot renew --dry-run and read its error (origin-gate picks renewed files up by itself)";
    if left * 10 < lifetime {
        (
            Level::ERROR,
            format!("certificate nearly expired: {figures}; {fix}"),
        )
    } else if warn_days.map_or(left * 4 < lifetime, |w| days < w) {
        let why = match warn_days {
            Some(w) => format!("under tls.expiry_warn_days = {w}"),
            None => "under a quarter of its lifetime".into(),
        };
        (
            Level::WARN,
            format!("certificate renewal overdue, {why}: {figures}; {fix}"),
        )
    } else {
        (Level::INFO, format!("certificate valid, {left_text} left of a {lifetime_days:.0}-day lifetime (until {})", s.not_after_text))
    }
}

/// Where the Cloudflare list in use came from, and its age in days: `trust.ranges_file` when one
/// is configured and readable (its modification time, which `origin-gate ranges update` renews),
/// else the built-in one (its copy date).
pub fn list_in_use(now_unix: i64, file_mtime_unix: Option<i64>) -> (&'static str, i64) {
    // A configured ranges file replaces the built-in list, so its age is the one that matters
    // (`ranges update` touches it when it finds the list unchanged).
    match file_mtime_unix {
        Some(m) => (
            "trust.ranges_file",
            (now_unix - m).div_euclid(86_400).max(0),
        ),
        None => ("built-in", cloudflare_list_age_days(now_unix)),
    }
}

/// The modification time of `trust.ranges_file`, if it is set and readable.
pub fn ranges_file_mtime(path: Option<&std::path::Path>) -> Option<i64> {
    let modified = std::fs::metadata(path?).ok()?.modified().ok()?;
    modified
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs() as i64)
}

/// The Cloudflare list in use is old enough to say so: WARN past 90 days (Cloudflare adds ranges
/// rarely, but an unknown edge is an untrusted one: its visitors look like Cloudflare's
/// addresses and, in Flexible mode, loop), ERROR past a year.
pub fn list_age_verdict(
    now_unix: i64,
    file_mtime_unix: Option<i64>,
) -> Option<(tracing::Level, String)> {
    let (source, age) = list_in_use(now_unix, file_mtime_unix);
    let fix = if source == "built-in" {
        "run `origin-gate ranges update` (with trust.ranges_file set; deploy/systemd/origin-gate-ranges.timer runs it weekly), or upgrade origin-gate"
    } else {
        "run `origin-gate ranges update` (deploy/systemd/origin-gate-ranges.timer runs it weekly; is the timer enabled and passing?)"
    };
    let level = if age > 365 {
        tracing::Level::ERROR
    } else if age > 90 {
        tracing::Level::WARN
    } else {
        return None;
    };
    let what = if source == "built-in" {
        format!("the built-in Cloudflare IP list is from {CLOUDFLARE_LIST_DATE}, {age} days old")
    } else {
        format!("the Cloudflare IP list in trust.ranges_file is {age} days old")
    };
    Some((level, format!("{what}; {fix}")))
}
