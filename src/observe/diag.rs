//! Diagnostics that name the cause and the fix, rate-limited so a flood of bad requests cannot
//! flood the log: each kind of warning is written at most once per window, with the number of
//! occurrences it stands for.

use std::collections::HashMap;

use http::header::HeaderName;
use http::HeaderMap;
use tracing::{info, warn};

use crate::decide::pipeline::{ConnContext, Decision, Route};
use crate::decide::visitor::{cf_visitor_scheme, Scheme, CF_CONNECTING_IP, CF_VISITOR};
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

/// Facts read once from the request head as it arrived, before the pipeline strips what it
/// must: what the access log and the diagnostics need of the original.
pub struct HeadFacts {
    pub cf_ray: Option<http::HeaderValue>,
    pub cf_visitor_https: bool,
    pub cloudflare_headers: bool,
    /// `doctor` marked this request (`X-Origin-Gate-Doctor`); honoured from loopback peers only.
    pub doctor: bool,
}

/// The header `doctor` marks its probes with.
pub const DOCTOR_HEADER: &str = "x-origin-gate-doctor";
/// The header a running instance answers a loopback `doctor` probe with: its configuration's
/// fingerprint.
pub const CONFIG_HEADER: &str = "x-origin-gate-config";

impl HeadFacts {
    pub fn read(headers: &HeaderMap) -> HeadFacts {
        // Names built once (a `&str` lookup parses the name on every request).
        const CF_RAY: HeaderName = HeaderName::from_static("cf-ray");
        const DOCTOR: HeaderName = HeaderName::from_static(DOCTOR_HEADER);
        let cf_visitor = headers.get(&CF_VISITOR).and_then(|v| v.to_str().ok());
        let cf_ray = headers.get(&CF_RAY).cloned();
        HeadFacts {
            cf_visitor_https: cf_visitor.and_then(cf_visitor_scheme) == Some(Scheme::Https),
            cloudflare_headers: cf_visitor.is_some()
                || cf_ray.is_some()
                || headers.contains_key(&CF_CONNECTING_IP),
            cf_ray,
            doctor: headers.contains_key(&DOCTOR),
        }
    }
}

/// Per-request diagnostics that read the verdict and the head as it arrived: suspicious edge
/// headers, a missing edge secret, the Cloudflare SSL mode (once), and Cloudflare headers from
/// a peer outside the ranges.
pub fn request(
    diag: &Diag,
    conn: &ConnContext,
    decision: &Decision,
    seen: &HeadFacts,
    cloudflare_builtin: bool,
) {
    if let Some(anomaly) = decision.visitor.anomaly {
        if let Some(n) = diag.allow("edge-anomaly") {
            warn!(
                peer = %conn.peer.ip(),
                anomaly = anomaly.as_str(),
                believed = %decision.visitor.client_ip,
                occurrences = n,
                "suspicious client-address headers from a trusted peer: Cloudflare sends exactly one CF-Connecting-IP holding one address. Only the address origin-gate believed is passed on; look for a Worker, Transform Rule or second proxy that adds these headers"
            );
        }
    }
    if decision.edge_secret_missing {
        if let Some(n) = diag.allow("edge-secret-missing") {
            warn!(
                peer = %conn.peer.ip(),
                occurrences = n,
                "a peer in the trusted ranges did not present the edge secret (trust.edge_header): another Cloudflare account's zone pointed at this origin, or your Transform Rule is missing or sends an old secret; its forwarding headers were not believed"
            );
        }
    }
    if !seen.cloudflare_headers || decision.edge_secret_missing {
        return;
    }
    if decision.visitor.trusted_peer {
        // The Cloudflare SSL mode shows in how requests arrive: once per mode, at INFO.
        let mode = match conn.listener {
            Scheme::Https => Some(CloudflareMode::Full),
            Scheme::Http if seen.cf_visitor_https => Some(CloudflareMode::Flexible),
            Scheme::Http => None,
        };
        if let Some(mode) = mode {
            if diag.first_sight(mode) {
                match mode {
                    CloudflareMode::Flexible => info!("Cloudflare SSL mode looks like \"Flexible\": https visitors arrive over plain http (Cloudflare connects to port 80); WordPress sees https through X-Forwarded-Proto once the origin maps it (deploy/wordpress/). Consider \"Full (strict)\" with an Origin CA certificate"),
                    CloudflareMode::Full => info!("Cloudflare SSL mode looks like \"Full\" or \"Full (strict)\": requests arrive over TLS"),
                }
            }
        }
        return;
    }
    let key = format!("untrusted-cf:{}", conn.peer.ip());
    if decision.route == Route::Redirect && seen.cf_visitor_https {
        if let Some(n) = diag.allow("flexible-loop") {
            warn!(
                peer = %conn.peer.ip(),
                occurrences = n,
                "redirect loop ahead: this request says it came through Cloudflare Flexible (CF-Visitor https) but its peer is not trusted, so it is treated as an http visitor and https.redirect sends it to https — which Cloudflare delivers over http again. Trust Cloudflare (trust.cloudflare = true; a current list via trust.ranges_file) or switch Cloudflare to Full"
            );
        }
    } else if let Some(n) = diag.allow(&key) {
        warn!(
            peer = %conn.peer.ip(),
            occurrences = n,
            cloudflare_builtin,
            "a peer outside the trusted ranges sent Cloudflare headers (CF-Connecting-IP / CF-Visitor / CF-Ray): a spoofing attempt, or Cloudflare ranges newer than this list (add them with trust.ranges_file); the headers were dropped"
        );
    }
}

/// The backend redirected the visitor to the very URL they asked for: a loop.
pub fn redirect(
    diag: &Diag,
    decision: &Decision,
    location: &str,
    original_target: &str,
    backend: &str,
) {
    let Some(host) = decision.host.as_ref().and_then(|h| h.to_str().ok()) else {
        return;
    };
    let scheme = decision.visitor.scheme.as_str();
    if is_self_redirect(location, scheme, host, original_target) {
        if let Some(n) = diag.allow("redirect-loop") {
            warn!(
                url = %format_args!("{scheme}://{host}{original_target}"),
                backend,
                occurrences = n,
                "redirect loop: the backend redirected the visitor to the URL they asked for. WordPress does not see that the visitor uses https: map X-Forwarded-Proto in the origin (deploy/wordpress/wp-config-https.php, apache-https.conf or nginx-php-fpm.conf), or set backend.https_url"
            );
        }
    }
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
