//! The request coordinator: decide → forward or answer → record. The decisions are the
//! pipeline's (`decide::pipeline`), forwarding is `forward`, local answers are `respond` and
//! `acme`; this module only wires them and finishes the one access record when the response
//! body ends (or is abandoned), so duration and size are the real ones.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tracing::debug;

use crate::config::AcmeMode;
use crate::decide::pipeline::{self, Action, ConnContext, Route};
use crate::observe::access_log::{AccessRecord, Format};
use crate::observe::diag::{self, HeadFacts};
use crate::serve::acme;
use crate::serve::body::{data_len, BodyState};
use crate::serve::forward::{self, Forwarding, Instructions};
use crate::serve::park::ConnActivity;
use crate::serve::respond::{self, text_response, BoxError, ProxyBody};
use crate::serve::state::{Runtime, Shared};

/// Handles one request. Never fails: every error becomes a response, a log line and metrics.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnContext>,
    activity: Arc<ConnActivity>,
    req: Request<Incoming>,
) -> Result<Response<LoggedBody>, Infallible> {
    let start = Instant::now();
    let (parts, body) = req.into_parts();
    // Boxed: hyper spawns each HTTP/2 stream's future as a task and moves it there by value
    // (several copies of the whole future); boxed, what moves is a pointer.
    Ok(Box::pin(respond_to(shared, conn, activity, parts, Some(body), start)).await)
}

/// Answers one request head (and its body, when it has one): hyper's service above, and the
/// express lane (`express`), which parses simple HTTP/1.1 heads itself and has no body to give.
pub async fn respond_to(
    shared: Arc<Shared>,
    conn: Arc<ConnContext>,
    activity: Arc<ConnActivity>,
    mut parts: http::request::Parts,
    body: Option<Incoming>,
    start: Instant,
) -> Response<LoggedBody> {
    activity.request_started();
    let body_empty = body.as_ref().is_none_or(|b| b.is_end_stream());
    if !keeps_alive(&parts) {
        activity.mark_dirty();
    }
    let seen = HeadFacts::read(&parts.headers);
    // The target as received (decide may normalise it): a shared-buffer clone, no copy.
    let original_uri = parts.uri.clone();
    let original_target = original_uri.path_and_query().map_or("/", |pq| pq.as_str());
    // One snapshot for the whole request, even if a reload swaps it meanwhile.
    let runtime = shared.runtime.load_full();
    let decision = pipeline::decide_at(&runtime.pipeline, &conn, &mut parts, start);
    // Finished by the response body's end, or — when the visitor leaves before any response
    // (this future dropped mid-exchange) — by the guard, as 499 like nginx: a request that
    // reached WordPress is never missing from the log.
    let mut guard = Unanswered {
        record: Some(AccessRecord::begin(
            start,
            &conn,
            &parts,
            &decision,
            seen.cf_ray.as_ref(),
        )),
        shared: &shared,
        runtime: &runtime,
        activity: &activity,
    };
    let Some(record) = guard.record.as_mut() else {
        unreachable!("set just above")
    };
    // doctor's probes, from this machine only, must not look like traffic or failed renewals.
    record.quiet = seen.doctor && conn.peer.ip().is_loopback();
    diag::request(
        &shared.diag,
        &conn,
        &decision,
        &seen,
        runtime.config.trust.cloudflare,
    );
    if !decision.dropped_headers.is_empty() {
        let n = decision.dropped_headers.len() as u64;
        shared.metrics.dropped_request_headers.inc_by(n);
        debug!(peer = %conn.peer, names = ?decision.dropped_headers, "dropped request headers whose names are not letters, digits and hyphens (PHP would fold them onto other headers; limits.allow_underscores_in_headers)");
    }

    let (response, body_state, answered_by) = match &decision.action {
        Action::Forward {
            upstream,
            upgrade,
            auth,
            body_limit,
            send_body,
        } => {
            let f = Forwarding {
                shared: &shared,
                runtime: &runtime,
                conn: &conn,
                activity: &activity,
                decision: &decision,
                original_target,
            };
            let how = Instructions {
                upstream: *upstream,
                upgrade: upgrade.as_ref(),
                auth: auth.as_ref(),
                body_limit: *body_limit,
                send_body: *send_body,
            };
            let (resp, state) = forward::forward(f, how, parts, body, record).await;
            // Who answered matters only for the ACME log line.
            let by = (record.route == Route::Acme).then(|| runtime.upstream.describe(*upstream));
            (resp, state, by)
        }
        Action::AcmeWebroot { token } => match &runtime.pipeline.acme {
            AcmeMode::Webroot(dir) => (
                acme::serve_acme_file(dir, token).await,
                None,
                Some(format!("acme.webroot {}", dir.display())),
            ),
            _ => (
                text_response(StatusCode::NOT_FOUND, "Not found."),
                None,
                None,
            ),
        },
        Action::RateLimited(refusal) => {
            if let Some(limiter) = &runtime.pipeline.rate {
                shared.metrics.rate_limited(limiter.label(refusal.rule));
            }
            (
                respond::local(&decision, &conn, &shared.diag, record.path(), record.quiet),
                None,
                None,
            )
        }
        _ => (
            respond::local(&decision, &conn, &shared.diag, record.path(), record.quiet),
            None,
            None,
        ),
    };
    if let (Route::Acme, Some(by)) = (record.route, &answered_by) {
        if !record.quiet {
            acme::log_acme(record, response.status(), response.headers(), by);
        }
    }
    let mut response = response;
    if record.quiet {
        if let Ok(v) = http::HeaderValue::from_str(&runtime.config.fingerprint()) {
            response.headers_mut().insert(diag::CONFIG_HEADER, v);
        }
    }
    record.status = response.status().as_u16();
    let record = guard.record.take();
    drop(guard);
    if response
        .headers()
        .get(http::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
    {
        activity.mark_dirty();
    }
    response.map(|inner| LoggedBody {
        inner,
        bytes: 0,
        record,
        body: body_state,
        shared,
        runtime,
        activity,
        body_empty,
    })
}

/// Can the connection go back to a clean keep-alive state after this request (see `park`)?
/// HTTP/1.1 without `Connection: close`.
fn keeps_alive(parts: &http::request::Parts) -> bool {
    parts.version == Version::HTTP_11
        && !parts
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| {
                v.as_bytes()
                    .windows(5)
                    .any(|w| w.eq_ignore_ascii_case(b"close"))
            })
}

/// The response body as sent to the visitor: counts bytes and, when the body ends or is
/// dropped (client gone), finishes the access record, the metrics and the log line.
pub struct LoggedBody {
    inner: ProxyBody,
    bytes: u64,
    record: Option<AccessRecord>,
    /// The request body's progress, when one was read (bytes in, whether it ended).
    body: Option<Arc<BodyState>>,
    shared: Arc<Shared>,
    runtime: Arc<Runtime>,
    activity: Arc<ConnActivity>,
    /// The request had no body at all.
    body_empty: bool,
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        this.bytes += data_len(&polled).unwrap_or(0);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let Some(r) = self.record.take() else {
            return;
        };
        let body_read = self.body_empty || self.body.as_ref().is_some_and(|b| b.is_done());
        if !body_read {
            // hyper drains or closes; this session must not be resumed on unread bytes.
            self.activity.mark_dirty();
        }
        let bytes_in = self
            .body
            .as_ref()
            .map_or(0, |b| b.count.load(Ordering::Relaxed));
        finish(
            r,
            &self.shared,
            &self.runtime,
            &self.activity,
            self.bytes,
            bytes_in,
        );
    }
}

/// The record of a request whose response never started: the visitor left (or the connection
/// broke) while the backend was still working.
struct Unanswered<'a> {
    record: Option<AccessRecord>,
    shared: &'a Arc<Shared>,
    runtime: &'a Arc<Runtime>,
    activity: &'a Arc<ConnActivity>,
}

/// nginx's status for "client closed request".
const CLIENT_CLOSED: u16 = 499;

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            r.status = CLIENT_CLOSED;
            self.activity.mark_dirty();
            finish(r, self.shared, self.runtime, self.activity, 0, 0);
        }
    }
}

/// Ends one request: duration and sizes, metrics, the debug line and the access line.
fn finish(
    mut r: AccessRecord,
    shared: &Shared,
    runtime: &Runtime,
    activity: &ConnActivity,
    bytes_out: u64,
    bytes_in: u64,
) {
    activity.request_finished();
    r.duration = r.start.elapsed();
    r.bytes_out = bytes_out;
    r.bytes_in = bytes_in;
    shared
        .metrics
        .observe_request(r.route, r.status, r.duration);
    debug!(
        target: "origin_gate::request",
        method = %r.method,
        host = r.host().as_deref().unwrap_or("-"),
        path = %r.path(),
        status = r.status,
        duration_ms = %format_args!("{:.3}", r.duration.as_secs_f64() * 1000.0),
        bytes = r.bytes_out,
        client = %r.client_ip,
        route = r.route.as_str(),
        "request"
    );
    if r.quiet {
        debug!(path = %r.path(), status = r.status, "doctor probe");
        return;
    }
    let log = &runtime.config.log;
    let push: fn(&AccessRecord, &mut String, bool) = match log.access {
        Format::Off => return,
        Format::Json => AccessRecord::push_json,
        Format::Combined => AccessRecord::push_combined,
    };
    LINE.with_borrow_mut(|line| {
        line.clear();
        push(&r, line, log.redact_query);
        shared.access_log.write(line);
    });
}

thread_local! {
    /// The access line being built, reused by every request on this thread.
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}
