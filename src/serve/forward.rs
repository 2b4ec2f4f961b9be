//! Forwarding one request the pipeline let through: Basic auth first (the check the verdict
//! names), then the body (buffered or streamed, `body`), the backend exchange (`upstream`), and
//! the response rewrite; WebSocket upgrades are joined; every failure ends in the status of the
//! side that failed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

use crate::decide::access::{AuthCheck, Credentials};
use crate::decide::pipeline::{self, ConnContext, Decision, Route, UpstreamChoice};
use crate::observe::access_log::AccessRecord;
use crate::observe::diag;
use crate::serve::body::{BodyLimits, BodyState, ForwardBody, Prepared};
use crate::serve::echo;
use crate::serve::park::ConnActivity;
use crate::serve::respond::{self, full, text_response, BoxError, ProxyBody};
use crate::serve::state::{Runtime, Shared};

/// What forwarding needs besides the request itself.
pub struct Forwarding<'a> {
    pub shared: &'a Shared,
    pub runtime: &'a Runtime,
    pub conn: &'a ConnContext,
    pub activity: &'a ConnActivity,
    pub decision: &'a Decision,
    pub original_target: &'a str,
}

/// The verdict's forwarding instructions (`Action::Forward`).
pub struct Instructions<'a> {
    pub upstream: UpstreamChoice,
    pub upgrade: Option<&'a HeaderValue>,
    pub auth: Option<&'a AuthCheck>,
    pub body_limit: Option<u64>,
    pub send_body: bool,
}

/// Forwards the request; the returned body state (when a body was read) is what the access log
/// counts and what tells whether the connection may be kept alive.
pub async fn forward(
    f: Forwarding<'_>,
    how: Instructions<'_>,
    mut parts: http::request::Parts,
    body: Option<Incoming>,
    record: &mut AccessRecord,
) -> (Response<ProxyBody>, Option<Arc<BodyState>>) {
    if let Some(check) = how.auth {
        if let Err(resp) = basic_auth(check, &mut parts.headers, record).await {
            record.route = Route::AuthDenied;
            return (resp, None);
        }
    }
    let upstream = f.runtime.upstream.local(f.runtime.generation);
    if upstream.is_echo(how.upstream) {
        record.route = Route::Echo;
        let value = echo::describe(
            parts.method.as_str(),
            parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            &parts.headers,
            f.decision,
            f.conn,
        );
        let mut resp = Response::new(full(format!("{value:#}\n")));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return (resp, None);
    }
    let state = Arc::new(BodyState::default());
    let limits = &f.runtime.config.limits;
    let body_limits = BodyLimits {
        buffer: limits.request_buffer,
        buffer_total: usize::try_from(limits.request_buffer_total).unwrap_or(usize::MAX),
        read_timeout: limits.body_read_timeout,
        max: how.body_limit,
    };
    let prepared = match body {
        Some(body) if how.send_body => {
            ForwardBody::prepare(body, body_limits, &f.shared.buffer_budget, state.clone()).await
        }
        _ => Prepared::Body(ForwardBody::empty(state.clone(), body_limits)),
    };
    let body = match prepared {
        Prepared::Body(b) => b,
        Prepared::Stalled => {
            return (
                respond::body_stalled(record, limits.body_read_timeout),
                Some(state),
            )
        }
        Prepared::TooLarge => {
            return (respond::body_too_large(record, how.body_limit), Some(state))
        }
        Prepared::Broken => return (respond::body_broken(record), Some(state)),
    };
    let mut req = Request::from_parts(parts, body);
    let client_upgrade = how.upgrade.map(|_| hyper::upgrade::on(&mut req));
    let sent = Instant::now();
    let answer = match upstream.send(how.upstream, req, &state).await {
        Ok(resp)
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                && !pipeline::switch_accepted(how.upgrade, resp.headers()) =>
        {
            record.upstream = Some(sent.elapsed());
            record.upstream_status = Some(101);
            record.upstream_error = Some("unrequested_upgrade");
            f.shared.metrics.upstream_error("unrequested_upgrade");
            if let Some(n) = f.shared.diag.allow("unrequested-upgrade") {
                warn!(
                    switched_to = ?resp.headers().get(http::header::UPGRADE),
                    requested = ?how.upgrade,
                    occurrences = n,
                    "the backend answered 101 Switching Protocols to a protocol that was not requested; refused with 502 and the connection closed (a raw tunnel would bypass every access rule)"
                );
            }
            respond::unrequested_switch()
        }
        Ok(mut resp) => {
            let took = sent.elapsed();
            record.upstream = Some(took);
            record.upstream_status = Some(resp.status().as_u16());
            f.shared.metrics.observe_upstream(took);
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                let backend_side = hyper::upgrade::on(&mut resp);
                if f.conn.tls.is_none() {
                    // Plain HTTP/1.1 runs in parkable sessions: the driver joins the two sides
                    // once the 101 is written.
                    f.activity.set_upgrade(backend_side);
                } else if let Some(client_side) = client_upgrade {
                    tunnel(client_side, backend_side);
                }
            }
            let (mut head, body) = resp.into_parts();
            // A proxy answers with its own HTTP version (RFC 9110 §6.2): an HTTP/1.0 backend
            // must not turn the visitor's keep-alive connection into HTTP/1.0 and close it.
            head.version = Version::HTTP_11;
            pipeline::rewrite_response(
                &f.runtime.pipeline,
                f.decision,
                head.status,
                &mut head.headers,
            );
            if head.status.is_redirection() {
                if let Some(location) = head.headers.get(LOCATION).and_then(|l| l.to_str().ok()) {
                    let backend = f.runtime.upstream.describe(UpstreamChoice::Primary);
                    diag::redirect(
                        &f.shared.diag,
                        f.decision,
                        location,
                        f.original_target,
                        &backend,
                    );
                }
            }
            Response::from_parts(head, body.map_err(BoxError::from).boxed())
        }
        Err(_) if state.stalled.load(Ordering::Relaxed) => {
            respond::body_stalled(record, limits.body_read_timeout)
        }
        Err(_) if state.client_failed.load(Ordering::Relaxed) => respond::body_broken(record),
        Err(_) if state.exceeded.load(Ordering::Relaxed) => {
            respond::body_too_large(record, how.body_limit)
        }
        Err(e) => {
            record.upstream = Some(sent.elapsed());
            record.upstream_error = Some(e.kind());
            f.shared.metrics.upstream_error(e.kind());
            if let Some(n) = f.shared.diag.allow(e.kind()) {
                warn!(error = %e, occurrences = n, "backend request failed; visitors get {}", e.status().as_u16());
            }
            respond::backend_failed(e.status())
        }
    };
    (answer, Some(state))
}

/// The Basic-auth check of the verdict: `Ok` lets the request through (with `Authorization`
/// removed unless the rule passes it on: WordPress treats any Basic credentials as "site
/// protected" and turns off Application Passwords), `Err(401)` otherwise.
async fn basic_auth(
    check: &AuthCheck,
    headers: &mut http::HeaderMap,
    record: &mut AccessRecord,
) -> Result<(), Response<ProxyBody>> {
    let refused = match check.credentials(headers) {
        Credentials::Missing => {
            debug!(client = %record.client_ip, path = %record.path(), "Basic auth: credentials requested");
            None
        }
        Credentials::Malformed => Some("malformed Authorization header"),
        Credentials::Verified { user } => {
            record.user = Some(user);
            pass(check, headers);
            return Ok(());
        }
        Credentials::Unverified { token, creds } => {
            record.user = Some(creds.user.clone());
            let file = check.file.clone();
            // bcrypt costs milliseconds on purpose: keep it off the async workers.
            let ok = tokio::task::spawn_blocking(move || {
                file.verify(&token, &creds.user, &creds.password)
            })
            .await
            .unwrap_or(false);
            if ok {
                pass(check, headers);
                return Ok(());
            }
            Some("wrong user or password")
        }
    };
    if let Some(reason) = refused {
        let user = record.user.as_deref().unwrap_or("-");
        warn!(user, reason, client = %record.client_ip, path = %record.path(), "Basic auth failed");
    }
    let mut resp = text_response(StatusCode::UNAUTHORIZED, "Authentication required.");
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, check.challenge());
    Err(resp)
}

fn pass(check: &AuthCheck, headers: &mut http::HeaderMap) {
    if !check.pass_authorization {
        headers.remove(AUTHORIZATION);
    }
}

/// Joins the visitor's and the backend's upgraded connections (WebSocket) and copies bytes both
/// ways until either side closes.
fn tunnel(client: hyper::upgrade::OnUpgrade, backend: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(pair) => pair,
            Err(e) => {
                debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            debug!(error = %e, "upgraded connection ended with an error");
        }
    });
}
