//! The answers origin-gate gives itself: short plain-text responses for refusals and errors,
//! `OPTIONS *` / 405 with `Allow`, redirects, and the statuses a broken or stalled request body
//! ends in. Every one says `Server: origin-gate`, so an operator reading curl output (and
//! `doctor`) can tell origin-gate's answers from WordPress's.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, LOCATION};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tracing::{debug, info, warn};

use crate::decide::pipeline::{self, Action, ConnContext, Decision, Route};
use crate::observe::access_log::AccessRecord;
use crate::observe::diag::Diag;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A short plain-text answer origin-gate gives itself (errors, rejections).
pub fn text_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(format!("{message}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Says who answered (not the backend): operators reading curl output, and `doctor`.
    resp.headers_mut().insert(
        http::header::SERVER,
        HeaderValue::from_static("origin-gate"),
    );
    resp
}

/// After this answer the connection's framing cannot be trusted (or the body was not read).
fn closing(mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The answer to a request the pipeline decided not to forward (`Respond`, `Methods`,
/// `Redirect`), with the log line each route deserves — at debug for `doctor`'s own probes
/// (`quiet`), which must leave no lines in the running instance's log.
pub fn local(
    decision: &Decision,
    conn: &ConnContext,
    diag: &Diag,
    path: &str,
    quiet: bool,
) -> Response<ProxyBody> {
    match &decision.action {
        Action::Respond { status, message } => {
            match decision.route {
                _ if quiet => {
                    debug!(
                        route = decision.route.as_str(),
                        path, "doctor probe answered by origin-gate"
                    )
                }
                Route::Lockdown if diag.allow("lockdown").is_some() => {
                    warn!(peer = %conn.peer, "lockdown: refused a request from a peer outside the trusted ranges")
                }
                Route::IpDenied => {
                    info!(client = %decision.visitor.client_ip, path, "access rule: address not allowed")
                }
                Route::BadRequest => info!(peer = %conn.peer, reason = message, "bad request"),
                Route::Loop => {
                    if let Some(n) = diag.allow("loop") {
                        tracing::error!(occurrences = n, "loop: a request came back to origin-gate through its own backend (Via carries this process's token): backend.url leads back here — it is origin-gate's own address, or a proxy or another origin-gate that forwards to this one; point backend.url at the WordPress web server (e.g. 127.0.0.1:8080); answered 508");
                    }
                }
                Route::Acme => {
                    info!(client = %decision.visitor.client_ip, path, "not a valid ACME challenge path; answered 404 without looking anything up")
                }
                _ => {}
            }
            let resp = text_response(*status, message);
            if decision.route == Route::BadRequest {
                closing(resp)
            } else {
                resp
            }
        }
        Action::Methods { status } => {
            let message = if *status == StatusCode::OK {
                ""
            } else {
                "Method not allowed."
            };
            let mut resp = text_response(*status, message);
            if message.is_empty() {
                *resp.body_mut() = full(Bytes::new());
                resp.headers_mut().remove(CONTENT_TYPE);
            }
            resp.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static(pipeline::ALLOWED_METHODS),
            );
            resp
        }
        Action::Redirect { status, location } => {
            let mut resp = text_response(*status, "Moved to https.");
            resp.headers_mut().insert(LOCATION, location.clone());
            resp
        }
        Action::RateLimited(refusal) => {
            if let Some(r) = &refusal.report {
                let flood = if r.table_full > 0 {
                    format!("; {} of them new visitors refused because the table (limits.rate_table_size) is full of visitors still limited — a flood of addresses", r.table_full)
                } else {
                    String::new()
                };
                // A rule's first WARN is its first refusal; later ones sum up what was refused
                // since the previous WARN (at most one per 10 s).
                let what = if r.since.is_zero() {
                    format!(
                        "refused a request from {} (later refusals are summed up at most every 10 s)",
                        r.top_client
                    )
                } else {
                    format!(
                        "refused {} request(s) in the last {} s, most from {} ({})",
                        r.refused,
                        r.since.as_secs().max(1),
                        r.top_client,
                        r.top_refused
                    )
                };
                warn!(
                    "rate limit: [[limits.rate]] {} ({} per IP, burst {}) {what}{flood}; answered 429 with Retry-After",
                    r.rule,
                    r.per_ip,
                    r.burst,
                );
            } else {
                tracing::debug!(client = %decision.visitor.client_ip, path, "rate limit: 429");
            }
            let secs = retry_after_secs(refusal.retry_after);
            let mut resp = text_response(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many requests; try again in {secs} s."),
            );
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            resp
        }
        Action::Forward { .. } | Action::AcmeWebroot { .. } => {
            text_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.")
        }
    }
}

/// `Retry-After` in whole seconds, rounded up: a client that waits that long is let through.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// 408: the client stalled in the middle of its body; nothing more is read from the connection.
pub fn body_stalled(record: &mut AccessRecord, after: Duration) -> Response<ProxyBody> {
    record.route = Route::BodyTimeout;
    info!(client = %record.client_ip, path = %record.path(), timeout = ?after, "the client stopped sending its request body (limits.body_read_timeout): 408, the backend connection released");
    closing(text_response(
        StatusCode::REQUEST_TIMEOUT,
        "Request body timed out.",
    ))
}

/// 413 for a body over `[[limits.body]]` (found while reading it).
pub fn body_too_large(record: &mut AccessRecord, limit: Option<u64>) -> Response<ProxyBody> {
    record.route = Route::TooLarge;
    info!(client = %record.client_ip, path = %record.path(), limit = limit.unwrap_or(0), "request body over its [[limits.body]] maximum: 413");
    closing(text_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Request body too large.",
    ))
}

/// 400 for a malformed or truncated body (bad chunk size, early close): the client's fault.
pub fn body_broken(record: &mut AccessRecord) -> Response<ProxyBody> {
    record.route = Route::BadRequest;
    info!(client = %record.client_ip, path = %record.path(), "malformed or truncated request body: 400");
    closing(text_response(
        StatusCode::BAD_REQUEST,
        "Malformed request body.",
    ))
}

/// 502 or 504 when the backend failed (the statuses nginx gives for the same cases).
pub fn backend_failed(status: StatusCode) -> Response<ProxyBody> {
    let message = if status == StatusCode::GATEWAY_TIMEOUT {
        "The origin web server did not answer in time."
    } else {
        "The origin web server could not be reached."
    };
    text_response(status, message)
}

/// 502 and the connection closed: the backend switched to a protocol nobody asked for.
pub fn unrequested_switch() -> Response<ProxyBody> {
    closing(backend_failed(StatusCode::BAD_GATEWAY))
}
