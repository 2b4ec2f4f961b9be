//! The admin listener (off by default): `/healthz` and `/metrics`. Loopback only unless
//! `admin.allow_remote = true` (config validation enforces it).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::debug;

use crate::decide::pipeline::UpstreamChoice;
use crate::serve::state::Shared;
use crate::serve::tls::now_unix;

/// Serves the admin endpoints until the task is aborted.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(shared.clone(), req));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match req.uri().path() {
        "/metrics" => {
            let runtime = shared.runtime.load();
            let now = now_unix();
            let certs: Vec<(String, i64, i64, i64)> = runtime
                .certs
                .as_ref()
                .map(|store| {
                    store
                        .current()
                        .entries
                        .iter()
                        .filter_map(|e| {
                            let s = e.cert.summary.as_ref()?;
                            Some((
                                e.spec.cert.display().to_string(),
                                s.days_left(now),
                                s.not_after - s.not_before,
                                s.not_after - now,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let list = crate::observe::health::list_in_use(
                now,
                crate::observe::health::ranges_file_mtime(
                    runtime.config.trust.ranges_file.as_deref(),
                ),
            );
            let body = shared.metrics.encode(
                &certs,
                list,
                shared.access_log.dropped(),
                runtime.pipeline.rate.as_ref().map_or(0, |r| r.len()),
            );
            respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body,
            )
        }
        "/healthz" => {
            let (ok, reason) = backend_health(&shared).await;
            let body = serde_json::json!({
                "status": if ok { "ok" } else { "unhealthy" },
                "listeners": "up",
                "backend": reason,
            })
            .to_string();
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond(status, "application/json", body)
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /healthz or /metrics\n".into(),
        ),
    })
}

/// The backend is healthy when it answered within the last 30 s or accepts a TCP connection now.
async fn backend_health(shared: &Shared) -> (bool, String) {
    let runtime = shared.runtime.load_full();
    if runtime.upstream.is_echo(UpstreamChoice::Primary) {
        return (true, "embedded echo origin".into());
    }
    let backend = runtime.upstream.describe(UpstreamChoice::Primary);
    let last = shared.metrics.backend_last_ok.load(Ordering::Relaxed);
    if last > 0 && now_unix() - last <= 30 {
        return (
            true,
            format!("{backend} answered {}s ago", now_unix() - last),
        );
    }
    let Some(addr) = runtime.upstream.primary_authority() else {
        return (false, format!("{backend}: no address"));
    };
    match tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(addr.as_str()),
    )
    .await
    {
        Ok(Ok(_)) => (true, format!("{backend} accepts connections")),
        Ok(Err(e)) => (
            false,
            format!("{backend} unreachable: {e} — is the WordPress web server running?"),
        ),
        Err(_) => (
            false,
            format!("{backend} did not accept a connection within 2s"),
        ),
    }
}
