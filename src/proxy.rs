//! The hyper service: pipeline decision → backend (or a local answer) → response rewrite → log.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{
    HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tracing::{debug, info, warn};

use crate::access::{self, AccessRule};
use crate::config::AcmeMode;
use crate::echo;
use crate::pipeline::{self, Action, ConnContext, Route};
use crate::state::Shared;

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
    resp
}

/// What is logged for one request once its response body is finished (or abandoned).
struct RequestRecord {
    start: Instant,
    method: http::Method,
    host: String,
    path: String,
    client_ip: std::net::IpAddr,
    peer: std::net::SocketAddr,
    route: Route,
    status: u16,
    upstream_error: Option<&'static str>,
    user: Option<String>,
}

/// Handles one request. Never fails: every error becomes a response and a log line.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnContext>,
    req: Request<Incoming>,
) -> Result<Response<LoggedBody>, Infallible> {
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    let method = parts.method.clone();
    let raw_path = parts.uri.path().to_string();
    // One configuration for the whole request, even if a reload swaps it meanwhile.
    let runtime = shared.runtime.load_full();
    let pipeline_cfg = &runtime.pipeline;
    let decision = pipeline::decide(pipeline_cfg, &conn, &mut parts);
    let mut record = RequestRecord {
        start,
        method,
        host: decision
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("-")
            .to_string(),
        path: raw_path,
        client_ip: decision.visitor.client_ip,
        peer: conn.peer,
        route: decision.route,
        status: 0,
        upstream_error: None,
        user: None,
    };

    let response = match &decision.action {
        Action::Respond { status, message } => {
            match decision.route {
                Route::Lockdown => {
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
            text_response(*status, message)
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
            upstream,
            upgrade,
            auth,
        } => {
            let denied = match auth.and_then(|i| pipeline_cfg.access.get(i)) {
                Some(rule) => check_basic_auth(rule, &mut parts.headers, &mut record).await,
                None => None,
            };
            if let Some(resp) = denied {
                record.route = Route::AuthDenied;
                resp
            } else if runtime.upstream.is_echo(*upstream) {
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
                let mut req = Request::from_parts(parts, body);
                let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
                match runtime.upstream.send(*upstream, req).await {
                    Ok(mut resp) => {
                        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                            if let Some(client_side) = client_upgrade {
                                tunnel(client_side, hyper::upgrade::on(&mut resp));
                            }
                        }
                        let (mut head, body) = resp.into_parts();
                        pipeline::rewrite_response(
                            pipeline_cfg,
                            &decision,
                            head.status,
                            &mut head.headers,
                        );
                        Response::from_parts(head, body.map_err(BoxError::from).boxed())
                    }
                    Err(e) => {
                        warn!(error = %e, "upstream error");
                        record.upstream_error = Some(e.kind());
                        text_response(e.status(), status_message(e.status()))
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
            Action::Forward { upstream, .. } => Some(runtime.upstream.describe(*upstream)),
            _ => None,
        };
        if let Some(by) = answered_by {
            log_acme(&record, response.status(), &by);
        }
    }
    Ok(finish(response, record))
}

/// Every challenge fetch is logged: the renewal it belongs to fails silently otherwise.
fn log_acme(record: &RequestRecord, status: StatusCode, answered_by: &str) {
    let token = record
        .path
        .strip_prefix(pipeline::ACME_CHALLENGE_PREFIX)
        .unwrap_or("");
    let token_prefix = token.get(..8).unwrap_or(token);
    if status == StatusCode::OK {
        info!(token = %format_args!("{token_prefix}…"), source = %record.client_ip, status = status.as_u16(), answered_by, "ACME challenge answered");
    } else {
        warn!(
            token = %format_args!("{token_prefix}…"),
            source = %record.client_ip,
            status = status.as_u16(),
            answered_by,
            "ACME challenge NOT answered with 200: the certificate authority cannot validate, so this certificate renewal will fail; check that the ACME client wrote the token where {answered_by} serves it"
        );
    }
}

/// Serves `DIR/.well-known/acme-challenge/<token>` (the token is base64url only, checked by the
/// pipeline, so the path cannot leave the directory).
async fn serve_acme_file(dir: &std::path::Path, token: &str) -> Response<ProxyBody> {
    let path = dir.join(".well-known").join("acme-challenge").join(token);
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let mut resp = Response::new(full(bytes));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            resp
        }
        Err(e) => {
            debug!(path = %path.display(), error = %e, "ACME token file not readable");
            text_response(StatusCode::NOT_FOUND, "No such ACME challenge token.")
        }
    }
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

fn status_message(status: StatusCode) -> &'static str {
    if status == StatusCode::GATEWAY_TIMEOUT {
        "The origin web server did not answer in time."
    } else {
        "The origin web server could not be reached."
    }
}

fn finish(response: Response<ProxyBody>, mut record: RequestRecord) -> Response<LoggedBody> {
    record.status = response.status().as_u16();
    response.map(|inner| LoggedBody {
        inner,
        bytes: 0,
        record: Some(record),
    })
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

/// The response body as sent to the visitor: counts bytes and writes the request's log line when
/// the body ends or is dropped (client gone), so duration and size are the real ones.
pub struct LoggedBody {
    inner: ProxyBody,
    bytes: u64,
    record: Option<RequestRecord>,
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
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.bytes += data.len() as u64;
            }
        }
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
        if let Some(r) = self.record.take() {
            info!(
                target: "origin_gate::request",
                method = %r.method,
                host = %r.host,
                path = %r.path,
                status = r.status,
                duration_ms = %format_args!("{:.3}", r.start.elapsed().as_secs_f64() * 1000.0),
                bytes = self.bytes,
                client = %r.client_ip,
                peer = %r.peer,
                route = r.route.as_str(),
                upstream_error = r.upstream_error.unwrap_or("-"),
                user = r.user.as_deref().unwrap_or("-"),
                "request"
            );
        }
    }
}
