//! The hyper test backend: a real HTTP/1.1 server on 127.0.0.1:0 that behaves like the parts of
//! WordPress the proxy must get right, the misconfigurations `doctor` looks for ([`BackendMode`]),
//! the counters tests assert on ([`BackendStats`]), and [`closed_port`] for a backend that is down.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::certs::TestCert;
use super::{empty, full, streamed, TestBody};

/// How a test backend misbehaves (for `doctor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendMode {
    /// WordPress with the X-Forwarded-Proto mapping.
    Normal,
    /// WordPress without the mapping: every visitor looks like http.
    Unmapped,
    /// The same, with its site address `example.com`: any other Host is first redirected there
    /// (like WordPress's redirect_canonical), then the https loop.
    UnmappedAtExampleCom,
    /// Basic auth on everything, the challenge path included.
    ProtectsEverything,
    /// A site-wide redirect to https, the challenge path included.
    RedirectsEverything,
    /// WordPress forcing https: http visitors (by X-Forwarded-Proto) get a 301 to the https URL.
    RedirectsToHttps,
    /// A redirect of every http request to port 8080, which no CA follows.
    RedirectsToPort8080,
}

/// Counters the backend keeps, for assertions.
#[derive(Default)]
pub struct BackendStats {
    pub connections: AtomicUsize,
    pub requests: AtomicUsize,
    /// Requests whose handler was dropped before it finished (client went away).
    pub cancelled: AtomicUsize,
    pub upload_bytes: AtomicU64,
}

/// A real HTTP/1.1 backend on 127.0.0.1:0 that behaves like the parts of WordPress we care about.
///
/// Routes:
/// - `/slow?ms=N` waits N ms, then answers;
/// - `/upload` reads the whole body, answers with its byte count;
/// - `/download?bytes=N` streams N bytes;
/// - `/ws` accepts a WebSocket handshake and echoes messages;
/// - `/wp-admin/…` behaves like WordPress with `FORCE_SSL_ADMIN` and the documented wp-config
///   mapping: it concludes https only from `X-Forwarded-Proto: https` (or a TLS hop) and
///   redirects to `https://host/…` otherwise;
/// - `/redirect-http` answers 302 to `http://<host>/landed`;
/// - anything else: JSON `{method, uri, https, headers}` of what it received.
pub struct Backend {
    pub addr: SocketAddr,
    pub stats: Arc<BackendStats>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Backend {
    pub async fn start() -> Backend {
        Backend::start_inner(None).await
    }

    /// A backend with one of the classic misconfigurations.
    pub async fn start_mode(mode: BackendMode) -> Backend {
        Backend::start_with(TcpListener::bind("127.0.0.1:0").await.unwrap(), None, mode).await
    }

    /// The same backend behind TLS (for `backend.https_url`): it sets `https: true` itself,
    /// like Apache mod_ssl setting `HTTPS=on`.
    pub async fn start_tls(cert: &TestCert) -> Backend {
        Backend::start_inner(Some(cert.server_config())).await
    }

    /// The plain backend on a given address (to restart it where it was).
    pub async fn start_on(addr: SocketAddr) -> Backend {
        Backend::start_bound(TcpListener::bind(addr).await.unwrap(), None).await
    }

    /// Stops accepting and closes every open connection (a backend restart, or a crash); returns
    /// once the port is free again.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    async fn start_inner(tls: Option<Arc<rustls::ServerConfig>>) -> Backend {
        Backend::start_bound(TcpListener::bind("127.0.0.1:0").await.unwrap(), tls).await
    }

    async fn start_bound(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Backend {
        Backend::start_with(listener, tls, BackendMode::Normal).await
    }

    async fn start_with(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        mode: BackendMode,
    ) -> Backend {
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(BackendStats::default());
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let st = stats.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in this set: when the backend stops, they are all aborted.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(a) => a, Err(_) => continue },
                    _ = &mut stop_rx => return,
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let is_tls = tls.is_some();
                    let svc = service_fn(move |req| backend_handle(st.clone(), is_tls, mode, req));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(cfg) => {
                            let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await
                            else {
                                return;
                            };
                            let _ = builder
                                .serve_connection(TokioIo::new(s), svc)
                                .with_upgrades()
                                .await;
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await;
                        }
                    }
                });
            }
        });
        Backend {
            addr,
            stats,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Marks a request cancelled unless disarmed.
struct CancelGuard(Arc<BackendStats>, bool);
impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn query_param(uri: &http::Uri, name: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

async fn backend_handle(
    stats: Arc<BackendStats>,
    is_tls: bool,
    mode: BackendMode,
    mut req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    stats.requests.fetch_add(1, Ordering::SeqCst);
    match mode {
        BackendMode::ProtectsEverything => {
            return Ok(Response::builder()
                .status(401)
                .header("www-authenticate", "Basic realm=\"site\"")
                .body(empty())
                .unwrap());
        }
        BackendMode::RedirectsEverything
        | BackendMode::RedirectsToHttps
        | BackendMode::RedirectsToPort8080
            if !is_tls =>
        {
            let header = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let host = header("host");
            let location = match mode {
                BackendMode::RedirectsToHttps if header("x-forwarded-proto") == "https" => None,
                BackendMode::RedirectsToPort8080 => {
                    Some(format!("http://{host}:8080{}", req.uri().path()))
                }
                _ => Some(format!("https://{host}{}", req.uri().path())),
            };
            if let Some(location) = location {
                return Ok(Response::builder()
                    .status(301)
                    .header("location", location)
                    .body(empty())
                    .unwrap());
            }
        }
        _ => {}
    }
    let path = req.uri().path().to_string();
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    // What WordPress concludes after the documented wp-config.php mapping.
    let https = is_tls
        || (mode != BackendMode::Unmapped
            && mode != BackendMode::UnmappedAtExampleCom
            && req
                .headers()
                .get("x-forwarded-proto")
                .is_some_and(|v| v == "https"));
    let resp = match path.as_str() {
        p if mode == BackendMode::UnmappedAtExampleCom && host != "example.com" => {
            Response::builder()
                .status(301)
                .header("location", format!("https://example.com{p}"))
                .body(empty())
                .unwrap()
        }
        "/slow" => {
            let mut guard = CancelGuard(stats.clone(), false);
            let ms = query_param(req.uri(), "ms").unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            guard.1 = true;
            Response::new(full("slow done"))
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => break,
                }
            }
            stats.upload_bytes.fetch_add(n, Ordering::SeqCst);
            Response::new(full(n.to_string()))
        }
        "/download" => Response::new(streamed(query_param(req.uri(), "bytes").unwrap_or(0))),
        "/ws" => {
            let key = req
                .headers()
                .get("sec-websocket-key")
                .map(|k| k.as_bytes().to_vec());
            let upgrade_ok = req
                .headers()
                .get("upgrade")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
            match (key, upgrade_ok) {
                (Some(key), true) => {
                    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
                    let on_upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let Ok(upgraded) = on_upgrade.await else {
                            return;
                        };
                        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                            TokioIo::new(upgraded),
                            Role::Server,
                            None,
                        )
                        .await;
                        while let Some(Ok(msg)) = ws.next().await {
                            if msg.is_close() || ws.send(msg).await.is_err() {
                                break;
                            }
                        }
                    });
                    Response::builder()
                        .status(StatusCode::SWITCHING_PROTOCOLS)
                        .header("connection", "upgrade")
                        .header("upgrade", "websocket")
                        .header("sec-websocket-accept", accept)
                        .body(empty())
                        .unwrap()
                }
                _ => Response::builder()
                    .status(400)
                    .body(full("not a websocket handshake"))
                    .unwrap(),
            }
        }
        // A backend that never concludes https: redirects every visitor to the https URL itself.
        "/loop" => Response::builder()
            .status(302)
            .header("location", format!("https://{host}/loop"))
            .body(empty())
            .unwrap(),
        "/redirect-http" => Response::builder()
            .status(302)
            .header("location", format!("http://{host}/landed"))
            .header("refresh", format!("0; url=http://{host}/landed"))
            .body(empty())
            .unwrap(),
        // Like WordPress's auth_redirect() under FORCE_SSL_ADMIN: admin pages, not admin-ajax.php.
        p if p.starts_with("/wp-admin/") && p != "/wp-admin/admin-ajax.php" && !https => {
            Response::builder()
                .status(302)
                .header("location", format!("https://{host}{p}"))
                .body(empty())
                .unwrap()
        }
        _ => {
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in req.headers() {
                headers
                    .entry(k.as_str().to_string())
                    .or_default()
                    .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
            }
            let body = serde_json::json!({
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "https": https,
                "headers": headers,
            });
            Response::builder()
                .header("content-type", "application/json")
                .header("connection", "x-backend-private")
                .header("x-backend-private", "hop")
                .header("keep-alive", "timeout=5")
                .body(full(body.to_string()))
                .unwrap()
        }
    };
    Ok(resp)
}

/// A port with nothing listening on it (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}
