//! The hyper service: pipeline decision → backend (or a local answer) → response rewrite →
//! access log, metrics and diagnostics (for every request, whatever happened to it).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{
    HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, REFERER, USER_AGENT,
    WWW_AUTHENTICATE,
};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tracing::{debug, info, warn};

use crate::config::AcmeMode;
use crate::decide::access::{self, AccessRule};
use crate::decide::pipeline::{self, Action, ConnContext, Decision, Route};
use crate::decide::visitor::Scheme;
use crate::observe::access_log::{AccessRecord, Format};
use crate::observe::diag::{self, CloudflareMode};
use crate::serve::body::{data_len, BodyLimits, BodyState, ForwardBody, Prepared};
use crate::serve::echo;
use crate::serve::park::ConnActivity;
use crate::serve::state::{Runtime, Shared};
use crate::serve::upstream::Upstream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = BoxBody<Bytes, BoxError>;

fn full(bytes: impl Into<Bytes>) -> ProxyBody {
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

/// What is known about one request while it runs; becomes an [`AccessRecord`] when the
/// response body is finished (or abandoned).
struct RequestRecord {
    ts: SystemTime,
    start: Instant,
    conn: Arc<ConnContext>,
    method: http::Method,
    version: Version,
    host: Option<String>,
    path: String,
    query: Option<String>,
    client_ip: std::net::IpAddr,
    trusted: bool,
    scheme: Scheme,
    route: Route,
    status: u16,
    /// The request body's progress, once it is read (bytes in, how it ended).
    body: Option<Arc<BodyState>>,
    upstream: Option<Duration>,
    upstream_status: Option<u16>,
    upstream_error: Option<&'static str>,
    user: Option<String>,
    cf_ray: Option<String>,
    user_agent: Option<String>,
    referer: Option<String>,
}

fn header_string(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Facts read from the request head before the pipeline strips what it must.
struct Incoming0 {
    cf_ray: Option<String>,
    cf_visitor_https: bool,
    cloudflare_headers: bool,
}

impl Incoming0 {
    fn read(headers: &HeaderMap) -> Incoming0 {
        let cf_visitor = headers.get("cf-visitor").and_then(|v| v.to_str().ok());
        Incoming0 {
            cf_ray: header_string(headers, "cf-ray"),
            cf_visitor_https: cf_visitor.and_then(crate::decide::visitor::cf_visitor_scheme)
                == Some(Scheme::Https),
            cloudflare_headers: cf_visitor.is_some()
                || headers.contains_key("cf-connecting-ip")
                || headers.contains_key("cf-ray"),
        }
    }
}

/// Handles one request. Never fails: every error becomes a response, a log line and metrics.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnContext>,
    activity: Arc<ConnActivity>,
    req: Request<Incoming>,
) -> Result<Response<LoggedBody>, Infallible> {
    let start = Instant::now();
    let ts = SystemTime::now();
    activity.request_started();
    let (mut parts, body) = req.into_parts();
    // Whether the connection can go back to a clean keep-alive state after this request (see
    // `park`): HTTP/1.1 without `Connection: close`, and a body that is empty or read to its end.
    let body_empty = body.is_end_stream();
    if parts.version != Version::HTTP_11
        || parts
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| {
                v.as_bytes()
                    .windows(5)
                    .any(|w| w.eq_ignore_ascii_case(b"close"))
            })
    {
        activity.mark_dirty();
    }
    let seen = Incoming0::read(&parts.headers);
    let original_target = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string());
    // One configuration for the whole request, even if a reload swaps it meanwhile.
    let runtime = shared.runtime.load_full();
    let upstream = local_upstream(&runtime);
    let pipeline_cfg = &runtime.pipeline;
    let decision = pipeline::decide(pipeline_cfg, &conn, &mut parts);
    let mut record = RequestRecord {
        ts,
        start,
        conn: conn.clone(),
        method: parts.method.clone(),
        version: parts.version,
        host: decision
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map(str::to_string),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        client_ip: decision.visitor.client_ip,
        trusted: decision.visitor.trusted_peer,
        scheme: decision.visitor.scheme,
        route: decision.route,
        status: 0,
        body: None,
        upstream: None,
        upstream_status: None,
        upstream_error: None,
        user: None,
        cf_ray: seen.cf_ray.clone(),
        user_agent: header_string(&parts.headers, USER_AGENT),
        referer: header_string(&parts.headers, REFERER),
    };
    diagnose_request(&shared, &conn, &decision, &seen, &runtime);
    if !decision.dropped_headers.is_empty() {
        shared
            .metrics
            .dropped_request_headers
            .inc_by(decision.dropped_headers.len() as u64);
        debug!(peer = %conn.peer, names = ?decision.dropped_headers, "dropped request headers whose names are not letters, digits and hyphens (PHP would fold them onto other headers; limits.allow_underscores_in_headers)");
    }

    let response = match &decision.action {
        Action::Respond { status, message } => {
            match decision.route {
                Route::Lockdown if shared.diag.allow("lockdown").is_some() => {
                    warn!(peer = %conn.peer, "lockdown: refused a request from a peer outside the trusted ranges")
                }
                Route::IpDenied => {
                    info!(client = %decision.visitor.client_ip, path = %record.path, "access rule: address not allowed")
                }
                Route::BadRequest => info!(peer = %conn.peer, reason = message, "bad request"),
                Route::Acme => {
                    info!(client = %decision.visitor.client_ip, path = %record.path, "not a valid ACME challenge path; answered 404 without looking anything up")
                }
                _ => {}
            }
            let mut resp = text_response(*status, message);
            if decision.route == Route::BadRequest {
                // After a malformed request the connection's framing cannot be trusted.
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
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
        Action::AcmeWebroot { token } => match &pipeline_cfg.acme {
            AcmeMode::Webroot(dir) => serve_acme_file(dir, token).await,
            _ => text_response(StatusCode::NOT_FOUND, "Not found."),
        },
        Action::Forward {
            upstream: upstream_choice,
            upgrade,
            auth,
            body_limit,
            send_body,
        } => {
            let denied = match auth.and_then(|i| pipeline_cfg.access.get(i)) {
                Some(rule) => check_basic_auth(rule, &mut parts.headers, &mut record).await,
                None => None,
            };
            if let Some(resp) = denied {
                record.route = Route::AuthDenied;
                resp
            } else if upstream.is_echo(*upstream_choice) {
                record.route = Route::Echo;
                let value = echo::describe(
                    parts.method.as_str(),
                    parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
                    &parts.headers,
                    &decision,
                    &conn,
                );
                let mut resp = Response::new(full(format!("{value:#}\n")));
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                resp
            } else {
                let body_state = Arc::new(BodyState::default());
                record.body = Some(body_state.clone());
                let limits = &runtime.config.limits;
                let body_limits = BodyLimits {
                    buffer: limits.request_buffer,
                    buffer_total: usize::try_from(limits.request_buffer_total)
                        .unwrap_or(usize::MAX),
                    read_timeout: limits.body_read_timeout,
                    max: *body_limit,
                };
                let prepared = if *send_body {
                    ForwardBody::prepare(
                        body,
                        body_limits,
                        &shared.buffer_budget,
                        body_state.clone(),
                    )
                    .await
                } else {
                    Prepared::Body(ForwardBody::empty(body_state.clone(), body_limits))
                };
                let body = match prepared {
                    Prepared::Body(b) => Ok(b),
                    Prepared::Stalled => Err(body_stalled(&mut record, limits.body_read_timeout)),
                    Prepared::TooLarge => Err(body_too_large(&mut record, *body_limit)),
                    Prepared::Broken => Err(body_broken(&mut record)),
                };
                match body {
                    Err(resp) => resp,
                    Ok(body) => {
                        let mut req = Request::from_parts(parts, body);
                        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
                        let sent = Instant::now();
                        match upstream.send(*upstream_choice, req, &body_state).await {
                            Ok(resp)
                                if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                                    && !pipeline::switch_accepted(
                                        upgrade.as_ref(),
                                        resp.headers(),
                                    ) =>
                            {
                                record.upstream = Some(sent.elapsed());
                                record.upstream_status = Some(101);
                                record.upstream_error = Some("unrequested_upgrade");
                                shared.metrics.upstream_error("unrequested_upgrade");
                                if let Some(n) = shared.diag.allow("unrequested-upgrade") {
                                    warn!(
                                        switched_to = ?resp.headers().get(http::header::UPGRADE),
                                        requested = ?upgrade,
                                        occurrences = n,
                                        "the backend answered 101 Switching Protocols to a protocol that was not requested; refused with 502 and the connection closed (a raw tunnel would bypass every access rule)"
                                    );
                                }
                                drop(resp);
                                let mut resp = text_response(
                                    StatusCode::BAD_GATEWAY,
                                    status_message(StatusCode::BAD_GATEWAY),
                                );
                                resp.headers_mut().insert(
                                    http::header::CONNECTION,
                                    HeaderValue::from_static("close"),
                                );
                                resp
                            }
                            Ok(mut resp) => {
                                record.upstream = Some(sent.elapsed());
                                record.upstream_status = Some(resp.status().as_u16());
                                shared.metrics.observe_upstream(sent.elapsed());
                                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                                    let backend_side = hyper::upgrade::on(&mut resp);
                                    if conn.tls.is_none() {
                                        // Plain HTTP/1.1 runs in parkable sessions: the driver
                                        // joins the two sides once the 101 is written.
                                        activity.set_upgrade(backend_side);
                                    } else if let Some(client_side) = client_upgrade {
                                        tunnel(client_side, backend_side);
                                    }
                                }
                                let (mut head, body) = resp.into_parts();
                                // A proxy answers with its own HTTP version (RFC 9110 §6.2): an
                                // HTTP/1.0 backend must not turn the visitor's keep-alive connection
                                // into HTTP/1.0 and close it.
                                head.version = Version::HTTP_11;
                                pipeline::rewrite_response(
                                    pipeline_cfg,
                                    &decision,
                                    head.status,
                                    &mut head.headers,
                                );
                                if head.status.is_redirection() {
                                    diagnose_redirect(
                                        &shared,
                                        &decision,
                                        &head.headers,
                                        &original_target,
                                        &runtime,
                                    );
                                }
                                Response::from_parts(head, body.map_err(BoxError::from).boxed())
                            }
                            Err(_) if body_state.stalled.load(Ordering::Relaxed) => {
                                body_stalled(&mut record, limits.body_read_timeout)
                            }
                            Err(_) if body_state.client_failed.load(Ordering::Relaxed) => {
                                body_broken(&mut record)
                            }
                            Err(_) if body_state.exceeded.load(Ordering::Relaxed) => {
                                body_too_large(&mut record, *body_limit)
                            }
                            Err(e) => {
                                record.upstream = Some(sent.elapsed());
                                record.upstream_error = Some(e.kind());
                                shared.metrics.upstream_error(e.kind());
                                if let Some(n) = shared.diag.allow(e.kind()) {
                                    warn!(error = %e, occurrences = n, "backend request failed; visitors get {}", e.status().as_u16());
                                }
                                text_response(e.status(), status_message(e.status()))
                            }
                        }
                    }
                }
            }
        }
    };
    if record.route == Route::Acme {
        let answered_by = match &decision.action {
            Action::AcmeWebroot { .. } => match &pipeline_cfg.acme {
                AcmeMode::Webroot(dir) => Some(format!("acme.webroot {}", dir.display())),
                _ => None,
            },
            Action::Forward {
                upstream: choice, ..
            } => Some(upstream.describe(*choice)),
            _ => None,
        };
        if let Some(by) = answered_by {
            log_acme(&record, response.status(), response.headers(), &by);
        }
    }
    record.status = response.status().as_u16();
    if response
        .headers()
        .get(http::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
    {
        activity.mark_dirty();
    }
    Ok(response.map(|inner| LoggedBody {
        inner,
        bytes: 0,
        record: Some(record),
        shared,
        runtime,
        activity,
        body_empty,
    }))
}

thread_local! {
    /// This worker thread's backend pool, for the runtime generation it was built for: each
    /// worker keeps its own keep-alive connections, so a request and its backend connection
    /// never wake another thread.
    static LOCAL_UPSTREAM: std::cell::RefCell<Option<(u64, Upstream)>> = const { std::cell::RefCell::new(None) };
}

fn local_upstream(runtime: &Runtime) -> Upstream {
    LOCAL_UPSTREAM.with(|cell| {
        let mut cell = cell.borrow_mut();
        match &*cell {
            Some((generation, upstream)) if *generation == runtime.generation => upstream.clone(),
            _ => {
                let upstream = runtime.upstream.fresh();
                *cell = Some((runtime.generation, upstream.clone()));
                upstream
            }
        }
    })
}

/// Per-request diagnostics that need the headers as they arrived.
fn diagnose_request(
    shared: &Shared,
    conn: &ConnContext,
    decision: &Decision,
    seen: &Incoming0,
    runtime: &Runtime,
) {
    if let Some(anomaly) = decision.visitor.anomaly {
        if let Some(n) = shared.diag.allow("edge-anomaly") {
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
        if let Some(n) = shared.diag.allow("edge-secret-missing") {
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
            if shared.diag.first_sight(mode) {
                match mode {
                    CloudflareMode::Flexible => info!("Cloudflare SSL mode looks like \"Flexible\": https visitors arrive over plain http on port 80; WordPress sees https through X-Forwarded-Proto once the origin maps it (deploy/wordpress/). Consider \"Full (strict)\" with an Origin CA certificate"),
                    CloudflareMode::Full => info!("Cloudflare SSL mode looks like \"Full\" or \"Full (strict)\": requests arrive over TLS"),
                }
            }
        }
        return;
    }
    let key = format!("untrusted-cf:{}", conn.peer.ip());
    if decision.route == Route::Redirect && seen.cf_visitor_https {
        if let Some(n) = shared.diag.allow("flexible-loop") {
            warn!(
                peer = %conn.peer.ip(),
                occurrences = n,
                "redirect loop ahead: this request says it came through Cloudflare Flexible (CF-Visitor https) but its peer is not trusted, so it is treated as an http visitor and https.redirect sends it to https — which Cloudflare delivers over http again. Trust Cloudflare (trust.cloudflare = true; a current list via trust.ranges_file) or switch Cloudflare to Full"
            );
        }
    } else if let Some(n) = shared.diag.allow(&key) {
        warn!(
            peer = %conn.peer.ip(),
            occurrences = n,
            cloudflare_builtin = runtime.config.trust.cloudflare,
            "a peer outside the trusted ranges sent Cloudflare headers (CF-Connecting-IP / CF-Visitor / CF-Ray): a spoofing attempt, or Cloudflare ranges newer than this list (add them with trust.ranges_file); the headers were dropped"
        );
    }
}

/// The backend redirected the visitor to the very URL they asked for: a loop.
fn diagnose_redirect(
    shared: &Shared,
    decision: &Decision,
    headers: &HeaderMap,
    original_target: &str,
    runtime: &Runtime,
) {
    let (Some(location), Some(host)) = (
        headers.get(LOCATION).and_then(|l| l.to_str().ok()),
        decision.host.as_ref().and_then(|h| h.to_str().ok()),
    ) else {
        return;
    };
    let scheme = decision.visitor.scheme.as_str();
    if diag::is_self_redirect(location, scheme, host, original_target) {
        if let Some(n) = shared.diag.allow("redirect-loop") {
            warn!(
                url = %format_args!("{scheme}://{host}{original_target}"),
                backend = %runtime.upstream.describe(pipeline::UpstreamChoice::Primary),
                occurrences = n,
                "redirect loop: the backend redirected the visitor to the URL they asked for. WordPress does not see that the visitor uses https: map X-Forwarded-Proto in the origin (deploy/wordpress/wp-config-https.php, apache-https.conf or nginx-php-fpm.conf), or set backend.https_url"
            );
        }
    }
}

/// 408: the client stalled in the middle of its body; nothing more is read from the connection.
fn body_stalled(record: &mut RequestRecord, after: Duration) -> Response<ProxyBody> {
    record.route = Route::BodyTimeout;
    info!(client = %record.client_ip, path = %record.path, timeout = ?after, "the client stopped sending its request body (limits.body_read_timeout): 408, the backend connection released");
    let mut resp = text_response(StatusCode::REQUEST_TIMEOUT, "Request body timed out.");
    resp.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// 413 for a body over `[[limits.body]]` (found while reading it).
fn body_too_large(record: &mut RequestRecord, limit: Option<u64>) -> Response<ProxyBody> {
    record.route = Route::TooLarge;
    info!(client = %record.client_ip, path = %record.path, limit = limit.unwrap_or(0), "request body over its [[limits.body]] maximum: 413");
    let mut resp = text_response(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.");
    resp.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// 400 for a malformed or truncated body (bad chunk size, early close): the client's fault.
fn body_broken(record: &mut RequestRecord) -> Response<ProxyBody> {
    record.route = Route::BadRequest;
    info!(client = %record.client_ip, path = %record.path, "malformed or truncated request body: 400");
    let mut resp = text_response(StatusCode::BAD_REQUEST, "Malformed request body.");
    resp.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn status_message(status: StatusCode) -> &'static str {
    if status == StatusCode::GATEWAY_TIMEOUT {
        "The origin web server did not answer in time."
    } else {
        "The origin web server could not be reached."
    }
}

/// Every challenge fetch is logged: the renewal it belongs to fails silently otherwise. A
/// redirect is judged the way Let's Encrypt follows it (`access::acme_redirect`): within its
/// rules it is INFO, outside them a WARN naming the rule.
fn log_acme(record: &RequestRecord, status: StatusCode, headers: &HeaderMap, answered_by: &str) {
    let token = record
        .path
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
                .host
                .as_deref()
                .map(|h| crate::decide::forwarded::host_name(h).to_ascii_lowercase())
                .unwrap_or_default(),
            path_and_query: record.path.clone(),
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
async fn serve_acme_file(dir: &std::path::Path, token: &str) -> Response<ProxyBody> {
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

/// Runs the Basic-auth check of an access rule. `None`: let the request through (with
/// `Authorization` removed unless the rule passes it on); `Some(401)` otherwise.
///
/// WordPress treats any Basic credentials as "site protected" and turns off Application
/// Passwords, hence the removal by default.
async fn check_basic_auth(
    rule: &AccessRule,
    headers: &mut http::HeaderMap,
    record: &mut RequestRecord,
) -> Option<Response<ProxyBody>> {
    let file = rule.htpasswd.clone()?;
    let header = headers.get(AUTHORIZATION).cloned();
    let outcome = match &header {
        None => Err("no credentials"),
        Some(h) => match access::parse_basic(h.as_bytes()) {
            None => Err("malformed Authorization header"),
            Some(creds) => {
                record.user = Some(creds.user.clone());
                let ok = file.recently_verified(h.as_bytes()) || {
                    // bcrypt costs milliseconds on purpose: keep it off the async workers.
                    let bytes = h.as_bytes().to_vec();
                    tokio::task::spawn_blocking(move || {
                        file.verify(&bytes, &creds.user, &creds.password)
                    })
                    .await
                    .unwrap_or(false)
                };
                if ok {
                    Ok(())
                } else {
                    Err("wrong user or password")
                }
            }
        },
    };
    match outcome {
        Ok(()) => {
            if !rule.pass_authorization {
                headers.remove(AUTHORIZATION);
            }
            None
        }
        Err(reason) => {
            let user = record.user.as_deref().unwrap_or("-");
            if header.is_some() {
                warn!(user, reason, client = %record.client_ip, path = %record.path, "Basic auth failed");
            } else {
                debug!(client = %record.client_ip, path = %record.path, "Basic auth: credentials requested");
            }
            let mut resp = text_response(StatusCode::UNAUTHORIZED, "Authentication required.");
            let challenge = HeaderValue::from_str(&format!(
                "Basic realm=\"{}\", charset=\"UTF-8\"",
                rule.realm
            ))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"Restricted\""));
            resp.headers_mut().insert(WWW_AUTHENTICATE, challenge);
            Some(resp)
        }
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

/// The response body as sent to the visitor: counts bytes and, when the body ends or is
/// dropped (client gone), writes the access-log line and the metrics, so duration and size are
/// the real ones.
pub struct LoggedBody {
    inner: ProxyBody,
    bytes: u64,
    record: Option<RequestRecord>,
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

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let Some(r) = self.record.take() else { return };
        let body_read = self.body_empty || r.body.as_ref().is_some_and(|b| b.is_done());
        if !body_read {
            // hyper drains or closes; this session must not be resumed on unread bytes.
            self.activity.mark_dirty();
        }
        self.activity.request_finished();
        let duration = r.start.elapsed();
        self.shared
            .metrics
            .observe_request(r.route, r.status, duration);
        debug!(
            target: "origin_gate::request",
            method = %r.method,
            host = r.host.as_deref().unwrap_or("-"),
            path = %r.path,
            status = r.status,
            duration_ms = %format_args!("{:.3}", duration.as_secs_f64() * 1000.0),
            bytes = self.bytes,
            client = %r.client_ip,
            route = r.route.as_str(),
            "request"
        );
        let log = &self.runtime.config.log;
        if log.access == Format::Off {
            return;
        }
        let record = AccessRecord {
            ts: r.ts,
            client_ip: r.client_ip,
            peer: r.conn.peer,
            trusted: r.trusted,
            scheme: r.scheme,
            listener: r.conn.listener,
            tls: r.conn.tls.clone(),
            method: r.method.to_string(),
            host: r.host,
            path: r.path,
            query: r.query,
            version: version_str(r.version),
            status: r.status,
            bytes_in: r
                .body
                .as_ref()
                .map_or(0, |b| b.count.load(Ordering::Relaxed)),
            bytes_out: self.bytes,
            duration,
            upstream: r.upstream,
            upstream_status: r.upstream_status,
            upstream_error: r.upstream_error,
            user: r.user,
            route: r.route,
            cf_ray: r.cf_ray,
            user_agent: r.user_agent,
            referer: r.referer,
        };
        let line = match log.access {
            Format::Json => record.to_json(log.redact_query),
            _ => record.to_combined(log.redact_query),
        };
        self.shared.access_log.write(line);
    }
}
