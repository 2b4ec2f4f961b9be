//! Access rules (`[[access]]`): path normalisation, rule matching, IP allow/deny, Basic-auth
//! header parsing, and the ACME challenge exemption. Pure decisions; the password check itself
//! (which may cost a bcrypt round) lives in `htpasswd` and runs in the proxy.
//!
//! **Matching is on a normalised path, case-insensitively.** Normalising (RFC 3986 §6.2.2:
//! decoding percent-encoded unreserved characters, removing dot segments; plus collapsing `//`
//! and dropping `;parameters`) closes the classic bypasses `/wp-admin/../wp-admin/`,
//! `/%77p-admin/`, `//wp-login.php`, `/wp-login.php;x`. Case-insensitive because WordPress is
//! served from case-insensitive file systems too (and `/WP-ADMIN/` on Linux is a 404 anyway), so a
//! rule can only protect more, never less. The backend receives the normalised path — the one
//! that was checked.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;

pub use crate::config::path::{is_normal, normalize_path, PathError};
pub use crate::config::AccessRuleConfig;
use crate::decide::htpasswd::HtpasswdFile;
use crate::decide::trust::canonical;

/// One `[[access]]` rule in force: the rule as configured, and its Basic-auth check with the
/// htpasswd file loaded (when it has one).
#[derive(Debug, Clone)]
pub struct AccessRule {
    pub spec: AccessRuleConfig,
    pub auth: Option<AuthCheck>,
}

impl AccessRule {
    /// Is this IP let through by the rule's allow/deny lists? `deny` wins; a non-empty `allow`
    /// admits only its ranges (nginx's `allow …; deny all;`).
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.spec.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.spec.allow.is_empty() || self.spec.allow.iter().any(|n| n.contains(&ip))
    }
}

/// Does `path` start with the lower-case `prefix`, ignoring ASCII case?
pub fn starts_with_ci(path: &str, prefix: &str) -> bool {
    path.len() >= prefix.len()
        && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Picks the rule for a request: the longest matching prefix; on equal length a rule for this
/// host beats a rule for any host. `path` must be normalised; ASCII case is ignored.
pub fn match_rule<'a>(rules: &'a [AccessRule], host: &str, path: &str) -> Option<&'a AccessRule> {
    rules
        .iter()
        .filter(|r| starts_with_ci(path, &r.spec.prefix))
        .filter(|r| {
            r.spec
                .host
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(host))
        })
        .max_by_key(|r| (r.spec.prefix.len(), r.spec.host.is_some()))
}

/// The path prefix of ACME HTTP-01 challenges (RFC 8555 §8.3).
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// What the ACME exemption makes of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmePath<'a> {
    /// Not under `/.well-known/acme-challenge/`.
    No,
    /// A well-formed challenge: the token is base64url characters only.
    Token(&'a str),
    /// Under the prefix but not a token (`..`, `/`, `%`, empty …): 404, nothing is looked up.
    Invalid,
}

/// Classifies a raw (not normalised) request path for the ACME exemption. Only the exact prefix
/// counts (the CA always uses it), so `/.well-known/other` is treated like any other path.
pub fn acme_path(raw_path: &str) -> AcmePath<'_> {
    let Some(token) = raw_path.strip_prefix(ACME_CHALLENGE_PREFIX) else {
        return AcmePath::No;
    };
    // RFC 8555 §8.1: tokens are base64url without padding; Let's Encrypt's are 43 characters.
    if !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        AcmePath::Token(token)
    } else {
        AcmePath::Invalid
    }
}

/// Let's Encrypt follows at most this many redirects on an HTTP-01 challenge.
pub const ACME_MAX_REDIRECTS: usize = 10;

/// One hop of a challenge redirect, as the CA would take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeHop {
    pub https: bool,
    /// Lower-case host without port.
    pub host: String,
    pub path_and_query: String,
}

/// Would Let's Encrypt follow this `Location` from a challenge fetch of `from`? It follows
/// redirects to `http` or `https` on ports 80 and 443 only (no certificate check on https), up to
/// [`ACME_MAX_REDIRECTS`] of them; a relative `Location` stays on the same origin. `Err` names the
/// rule the redirect breaks.
pub fn acme_redirect(from: &AcmeHop, location: &str) -> Result<AcmeHop, String> {
    let location = location.trim();
    if location.starts_with('/') && !location.starts_with("//") {
        return Ok(AcmeHop {
            path_and_query: location.to_string(),
            ..from.clone()
        });
    }
    let uri: http::Uri = location
        .parse()
        .map_err(|_| format!("{location:?} is not a URL the CA can follow"))?;
    let https = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) if s.eq_ignore_ascii_case("http") => false,
        Some(other) => {
            return Err(format!(
                "it redirects to {other}:, and Let's Encrypt follows only http and https"
            ))
        }
        None => return Err(format!("{location:?} is not an absolute URL")),
    };
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("{location:?} names no host"));
    }
    if let Some(port) = uri.port_u16() {
        if port != 80 && port != 443 {
            return Err(format!(
                "it redirects to port {port}, and Let's Encrypt follows redirects only to ports 80 and 443"
            ));
        }
    }
    Ok(AcmeHop {
        https,
        host,
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string()),
    })
}

/// What an access rule asks of a request before it is forwarded: Basic credentials checked
/// against the rule's htpasswd file. Part of the pipeline's verdict, so the handler never goes
/// back to the configuration to find the rule.
#[derive(Debug, Clone)]
pub struct AuthCheck {
    pub file: Arc<HtpasswdFile>,
    pub realm: Arc<str>,
    /// Forward the `Authorization` header after a successful check (off by default: WordPress
    /// treats any Basic credentials as "site protected" and turns off Application Passwords).
    pub pass_authorization: bool,
}

impl PartialEq for AuthCheck {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
            && self.realm == other.realm
            && self.pass_authorization == other.pass_authorization
    }
}

impl Eq for AuthCheck {}

impl AuthCheck {
    /// What the request's `Authorization` header amounts to before any slow hash is computed.
    pub fn credentials(&self, headers: &http::HeaderMap) -> Credentials {
        let Some(header) = headers.get(http::header::AUTHORIZATION) else {
            return Credentials::Missing;
        };
        let Some(creds) = parse_basic(header.as_bytes()) else {
            return Credentials::Malformed;
        };
        if self.file.recently_verified(header.as_bytes()) {
            return Credentials::Verified { user: creds.user };
        }
        Credentials::Unverified {
            token: header.as_bytes().to_vec(),
            creds,
        }
    }

    /// The `WWW-Authenticate` challenge of a 401 (RFC 7617 §2, with the UTF-8 charset).
    pub fn challenge(&self) -> http::HeaderValue {
        http::HeaderValue::from_str(&format!(
            "Basic realm=\"{}\", charset=\"UTF-8\"",
            self.realm
        ))
        .unwrap_or_else(|_| http::HeaderValue::from_static("Basic realm=\"Restricted\""))
    }
}

/// The state of a request's credentials.
pub enum Credentials {
    Missing,
    Malformed,
    /// Verified within the last minute (cached by the exact header).
    Verified {
        user: String,
    },
    /// Well-formed; the password hash must be checked (bcrypt: milliseconds, off the async
    /// workers) with [`HtpasswdFile::verify`].
    Unverified {
        token: Vec<u8>,
        creds: BasicCredentials,
    },
}

/// Credentials from an `Authorization: Basic …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub user: String,
    pub password: String,
}

/// Parses `Basic base64(user:password)` (RFC 7617). Anything else is `None`: a malformed header
/// is answered like a missing one (401), never an error.
pub fn parse_basic(value: &[u8]) -> Option<BasicCredentials> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some(BasicCredentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_attempts_normalise_to_the_protected_path() {
        for (raw, want) in [
            ("/wp-admin/../wp-admin/", "/wp-admin/"),
            ("/%77p-admin/", "/wp-admin/"),
            ("//wp-login.php", "/wp-login.php"),
            ("/./wp-login.php", "/wp-login.php"),
            ("/wp-login.php;jsessionid=1", "/wp-login.php"),
            ("/wp-admin;x/index.php", "/wp-admin/index.php"),
            ("/a/b/../../wp-admin/.", "/wp-admin/"),
            ("/../../../wp-admin", "/wp-admin"),
            ("/%2e%2e/wp-admin/", "/wp-admin/"),
            ("", "/"),
            ("/", "/"),
            ("/a%2fb", "/a%2fb"),
        ] {
            match normalize_path(raw) {
                Ok(p) => assert_eq!(p, want, "{raw}"),
                Err(e) => assert_eq!(e, PathError::AmbiguousEscape, "{raw}"),
            }
        }
        assert_eq!(normalize_path("/a%2Fb"), Err(PathError::AmbiguousEscape));
        assert_eq!(normalize_path("/a%00"), Err(PathError::AmbiguousEscape));
        assert_eq!(normalize_path("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize_path("/caf%c3%a9"), Ok("/caf%C3%A9".into()));
        // Found by the fuzzer: raw non-ASCII bytes were re-encoded as Latin-1.
        assert_eq!(normalize_path("/Ӌ"), Ok("/Ӌ".into()));
        assert_eq!(normalize_path("/a/Ӌ/../b"), Ok("/a/b".into()));
    }

    #[test]
    fn the_fast_path_agrees_with_normalisation() {
        for p in [
            "/",
            "/wp-admin/",
            "/a/b.c/d",
            "/a//b",
            "/a/./b",
            "/a/..",
            "/%41",
            "/a;b",
            "",
            "/.well-known/x",
        ] {
            if is_normal(p) {
                assert_eq!(normalize_path(p).as_deref(), Ok(p), "{p}");
            }
        }
        assert!(is_normal("/2026/11/24/hello-world/"));
        assert!(!is_normal("/a//b") && !is_normal("/a/../b") && !is_normal("/%77p-admin/"));
        assert!(starts_with_ci("/WP-Admin/x", "/wp-admin/"));
        assert!(!starts_with_ci("/wp", "/wp-admin/"));
    }

    #[test]
    fn acme_tokens_are_base64url_only() {
        assert_eq!(
            acme_path("/.well-known/acme-challenge/abc-DEF_123"),
            AcmePath::Token("abc-DEF_123")
        );
        assert_eq!(
            acme_path("/.well-known/acme-challenge/../x"),
            AcmePath::Invalid
        );
        assert_eq!(
            acme_path("/.well-known/acme-challenge/a/b"),
            AcmePath::Invalid
        );
        assert_eq!(acme_path("/.well-known/acme-challenge/"), AcmePath::Invalid);
        assert_eq!(
            acme_path("/.well-known/acme-challenge/a%2e"),
            AcmePath::Invalid
        );
        assert_eq!(acme_path("/.well-known/other"), AcmePath::No);
    }

    #[test]
    fn challenge_redirects_follow_the_cas_rules() {
        let from = AcmeHop {
            https: false,
            host: "example.com".into(),
            path_and_query: "/.well-known/acme-challenge/t".into(),
        };
        let to = |l: &str| acme_redirect(&from, l);
        let ok = to("https://Example.com/.well-known/acme-challenge/t").unwrap();
        assert!(ok.https && ok.host == "example.com");
        assert!(to("https://example.com:443/x").is_ok());
        assert!(to("http://www.example.com:80/x").is_ok());
        assert_eq!(to("/other").unwrap().path_and_query, "/other");
        assert!(to("http://example.com:8080/x")
            .unwrap_err()
            .contains("port 8080"));
        assert!(to("https://example.com:8443/x")
            .unwrap_err()
            .contains("ports 80 and 443"));
        assert!(to("ftp://example.com/x")
            .unwrap_err()
            .contains("only http and https"));
        assert!(to("//evil").is_err());
    }

    #[test]
    fn basic_header_parsing() {
        assert_eq!(
            parse_basic(b"Basic dXNlcjpwYXNzOndvcmQ="),
            Some(BasicCredentials {
                user: "user".into(),
                password: "pass:word".into()
            })
        );
        assert_eq!(
            parse_basic(b"basic   dXNlcjpw"),
            Some(BasicCredentials {
                user: "user".into(),
                password: "p".into()
            })
        );
        assert_eq!(parse_basic(b"Bearer abc"), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
        assert_eq!(parse_basic(b"Basic dXNlcg=="), None, "no colon");
        assert_eq!(parse_basic(b"Basic"), None);
    }

    fn rule(prefix: &str, host: Option<&str>) -> AccessRule {
        AccessRule {
            spec: AccessRuleConfig {
                prefix: prefix.into(),
                host: host.map(Into::into),
                htpasswd: None,
                realm: "r".into(),
                allow: vec![],
                deny: vec![],
                pass_authorization: false,
            },
            auth: None,
        }
    }

    #[test]
    fn longest_prefix_wins_and_host_rules_beat_generic_ones() {
        let rules = vec![
            rule("/wp-admin/", None),
            rule("/wp-admin/admin-ajax.php", None),
            rule("/", Some("staging.example.com")),
            rule("/wp-admin/", Some("example.com")),
        ];
        let m =
            |h, p| match_rule(&rules, h, p).map(|r| (r.spec.prefix.clone(), r.spec.host.clone()));
        assert_eq!(
            m("example.com", "/wp-admin/admin-ajax.php"),
            Some(("/wp-admin/admin-ajax.php".into(), None))
        );
        assert_eq!(
            m("example.com", "/wp-admin/index.php"),
            Some(("/wp-admin/".into(), Some("example.com".into())))
        );
        assert_eq!(
            m("other.com", "/wp-admin/index.php"),
            Some(("/wp-admin/".into(), None))
        );
        assert_eq!(
            m("staging.example.com", "/blog"),
            Some(("/".into(), Some("staging.example.com".into())))
        );
        assert_eq!(m("example.com", "/blog"), None);
    }

    #[test]
    fn deny_wins_and_allow_admits_only_its_ranges() {
        let mut r = rule("/", None);
        r.spec.allow = vec!["203.0.113.0/24".parse().unwrap()];
        r.spec.deny = vec!["203.0.113.9/32".parse().unwrap()];
        assert!(r.admits("203.0.113.1".parse().unwrap()));
        assert!(r.admits("::ffff:203.0.113.1".parse().unwrap()));
        assert!(!r.admits("203.0.113.9".parse().unwrap()));
        assert!(!r.admits("198.51.100.1".parse().unwrap()));
    }
}
