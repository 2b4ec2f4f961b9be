//! Diagnostics that name the cause and the fix, rate-limited so a flood of bad requests cannot
//! flood the log: each kind of warning is written at most once per window, with the number of
//! occurrences it stands for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(10);

/// Rate limiter and once-only flags for diagnostic log lines.
#[derive(Default)]
pub struct Diag {
    last: Mutex<HashMap<String, (Instant, u64)>>,
    flexible_seen: AtomicBool,
    full_seen: AtomicBool,
}

/// The Cloudflare SSL mode a request reveals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudflareMode {
    /// Visitor https, hop to us plain http.
    Flexible,
    /// Hop to us over TLS ("Full" or "Full (strict)").
    Full,
}

impl Diag {
    /// `Some(n)`: log now; `n` occurrences (this one included) since the last logged one.
    pub fn allow(&self, key: &str) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match last.get_mut(key) {
            Some((at, count)) if now.duration_since(*at) < WINDOW => {
                *count += 1;
                None
            }
            Some((at, count)) => {
                let n = *count + 1;
                *at = now;
                *count = 0;
                Some(n)
            }
            None => {
                if last.len() > 1024 {
                    last.clear();
                }
                last.insert(key.to_string(), (now, 0));
                Some(1)
            }
        }
    }

    /// True the first time a mode is seen.
    pub fn first_sight(&self, mode: CloudflareMode) -> bool {
        let flag = match mode {
            CloudflareMode::Flexible => &self.flexible_seen,
            CloudflareMode::Full => &self.full_seen,
        };
        !flag.swap(true, Ordering::Relaxed)
    }
}

/// Does a redirect target name the very URL the visitor asked for (same scheme)? That is a loop:
/// the classic one is WordPress concluding "http" behind Cloudflare Flexible and redirecting an
/// https visitor to the https URL they already used.
pub fn is_self_redirect(location: &str, scheme: &str, host: &str, path_and_query: &str) -> bool {
    if location.starts_with('/') && !location.starts_with("//") {
        return location == path_and_query;
    }
    let Some(rest) = location
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
    else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    let host = host.strip_suffix(default_port).unwrap_or(host);
    authority.eq_ignore_ascii_case(host) && path == path_and_query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_redirects_are_recognised() {
        assert!(is_self_redirect(
            "https://example.com/wp-admin/",
            "https",
            "example.com",
            "/wp-admin/"
        ));
        assert!(is_self_redirect(
            "https://Example.com:443/wp-admin/",
            "https",
            "example.com",
            "/wp-admin/"
        ));
        assert!(is_self_redirect(
            "/wp-admin/",
            "https",
            "example.com",
            "/wp-admin/"
        ));
        assert!(!is_self_redirect(
            "https://example.com/wp-login.php",
            "https",
            "example.com",
            "/wp-admin/"
        ));
        assert!(!is_self_redirect(
            "http://example.com/wp-admin/",
            "https",
            "example.com",
            "/wp-admin/"
        ));
    }

    #[test]
    fn throttle_lets_one_through_per_window() {
        let d = Diag::default();
        assert_eq!(d.allow("k"), Some(1));
        assert_eq!(d.allow("k"), None);
        assert_eq!(d.allow("other"), Some(1));
    }
}
