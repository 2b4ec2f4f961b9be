//! ACME HTTP-01 challenges answered by origin-gate: from `acme.webroot` (safely: no links, no
//! FIFOs, at most 4 KiB), and logged — a renewal that cannot validate fails silently otherwise.

use http::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, Response, StatusCode};
use tracing::{debug, info, warn};

use crate::decide::access;
use crate::decide::pipeline;
use crate::decide::visitor::Scheme;
use crate::observe::access_log::AccessRecord;
use crate::serve::respond::{full, text_response, ProxyBody};

/// Every challenge fetch is logged: the renewal it belongs to fails silently otherwise. A
/// redirect is judged the way Let's Encrypt follows it (`access::acme_redirect`): within its
/// rules it is INFO, outside them a WARN naming the rule.
pub fn log_acme(record: &AccessRecord, status: StatusCode, headers: &HeaderMap, answered_by: &str) {
    let token = record
        .path()
        .strip_prefix(pipeline::ACME_CHALLENGE_PREFIX)
        .unwrap_or("");
    let token_prefix = token.get(..8).unwrap_or(token);
    let token = format_args!("{token_prefix}…");
    if status == StatusCode::OK {
        info!(%token, source = %record.client_ip, status = status.as_u16(), answered_by, "ACME challenge answered");
        return;
    }
    if status.is_redirection() {
        let location = headers
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("");
        let from = access::AcmeHop {
            https: record.scheme == Scheme::Https,
            host: record
                .host()
                .map(|h| crate::decide::forwarded::host_name(&h).to_ascii_lowercase())
                .unwrap_or_default(),
            path_and_query: record.path().to_string(),
        };
        match access::acme_redirect(&from, location) {
            Ok(_) => {
                info!(%token, source = %record.client_ip, status = status.as_u16(), location, answered_by, "ACME challenge redirected; Let's Encrypt follows this (up to 10 redirects, http/https on ports 80 and 443), but some hosting panels' pre-checks do not: exempting /.well-known/acme-challenge/ from the redirect is safest")
            }
            Err(rule) => {
                warn!(%token, source = %record.client_ip, status = status.as_u16(), location, answered_by, "ACME challenge redirected where the CA will not follow: {rule}; this certificate renewal will fail — exempt /.well-known/acme-challenge/ from the redirect")
            }
        }
        return;
    }
    warn!(
        %token,
        source = %record.client_ip,
        status = status.as_u16(),
        answered_by,
        "ACME challenge NOT answered with 200: the certificate authority cannot validate, so this certificate renewal will fail; check that the ACME client wrote the token where {answered_by} serves it"
    );
}

/// The largest challenge file served: a key authorization is token + "." + a 43-character
/// thumbprint, under 300 bytes (RFC 8555 §8.1); anything bigger is not a challenge.
const ACME_FILE_MAX: u64 = 4096;

/// Serves `DIR/.well-known/acme-challenge/<token>` (the token is base64url only, checked by the
/// pipeline, so the name cannot leave the directory). The webroot is usually WordPress's own
/// document root, writable by PHP: only a regular file of at most 4 KiB that really lies in
/// that directory is served — no symbolic link is followed (one planted there served
/// `/etc/passwd`), no FIFO or device is opened, no hard-to-bound read happens.
pub async fn serve_acme_file(dir: &std::path::Path, token: &str) -> Response<ProxyBody> {
    let dir = dir.to_path_buf();
    let token = token.to_string();
    let read = tokio::task::spawn_blocking(move || read_acme_file(&dir, &token)).await;
    match read {
        Ok(Ok(bytes)) => {
            let mut resp = Response::new(full(bytes));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            resp
        }
        Ok(Err(reason)) => {
            debug!(reason, "ACME token file not served");
            text_response(StatusCode::NOT_FOUND, "No such ACME challenge token.")
        }
        Err(_) => text_response(StatusCode::NOT_FOUND, "No such ACME challenge token."),
    }
}

fn read_acme_file(dir: &std::path::Path, token: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let base = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let expected = base.join(".well-known").join("acme-challenge").join(token);
    let file = std::fs::OpenOptions::new()
        .read(true)
        // The last component must not be a link; O_NONBLOCK keeps a FIFO from hanging the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&expected)
        .map_err(|e| format!("{}: {e}", expected.display()))?;
    // The directories on the way must not be links either: the kernel's own record of what was
    // opened has to be exactly the expected path (no race between a check and the open).
    {
        use std::os::fd::AsRawFd;
        let opened = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()));
        match opened {
            Ok(real) if real == expected => {}
            Ok(real) => {
                return Err(format!(
                    "{} resolves to {} (a symbolic link on the way); refused",
                    expected.display(),
                    real.display()
                ))
            }
            // No /proc: fall back to checking each directory on the way.
            Err(_) => {
                for d in [
                    base.join(".well-known"),
                    base.join(".well-known/acme-challenge"),
                ] {
                    let meta = std::fs::symlink_metadata(&d).map_err(|e| e.to_string())?;
                    if !meta.is_dir() {
                        return Err(format!("{} is not a plain directory", d.display()));
                    }
                }
            }
        }
    }
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", expected.display()));
    }
    if meta.len() > ACME_FILE_MAX {
        return Err(format!(
            "{} has {} bytes; a challenge response is under {ACME_FILE_MAX}",
            expected.display(),
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(ACME_FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > ACME_FILE_MAX {
        return Err(format!(
            "{} grew past {ACME_FILE_MAX} bytes",
            expected.display()
        ));
    }
    Ok(bytes)
}
