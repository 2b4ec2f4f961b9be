//! Shared fixtures: a real backend server, origin-gate in-process or as the real binary, and
//! HTTP/TLS clients that can bind their source address (127.0.0.2 trusted vs 127.0.0.3 not).
#![allow(dead_code)]

pub mod raw_backend;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use origin_gate::config::Source;
use origin_gate::{Config, Scheme, Server};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::Role;

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub const TRUSTED_SRC: &str = "127.0.0.2";
pub const UNTRUSTED_SRC: &str = "127.0.0.3";

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> TestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of `total` bytes streamed in 64 KiB chunks, never held whole in memory.
pub fn streamed(total: u64) -> TestBody {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let full_chunks = total / CHUNK as u64;
    let rest = (total % CHUNK as u64) as usize;
    let stream = futures_util::stream::iter(
        (0..full_chunks)
            .map(move |_| chunk.clone())
            .chain((rest > 0).then(|| Bytes::from(vec![b'x'; rest])))
            .map(|b| Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(b))),
    );
    BodyExt::boxed(StreamBody::new(stream))
}

// ---------------------------------------------------------------------------------------------
// Backend

/// How a test backend misbehaves (for `doctor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendMode {
    /// WordPress with the X-Forwarded-Proto mapping.
    Normal,
    /// WordPress without the mapping: every visitor looks like http.
    Unmapped,
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
            && req
                .headers()
                .get("x-forwarded-proto")
                .is_some_and(|v| v == "https"));
    let resp = match path.as_str() {
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

// ---------------------------------------------------------------------------------------------
// origin-gate

/// origin-gate running in this process on ephemeral ports.
pub struct Gate {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub reloader: origin_gate::serve::reload::Reloader,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Gate {
    /// Starts origin-gate with `extra` TOML appended to a base config that listens on
    /// 127.0.0.1:0 (http and https) and forwards to `backend`.
    pub async fn start(backend: &str, extra: &str) -> Gate {
        let toml = format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n\n[backend]\nurl = \"{backend}\"\n\n{extra}"
        );
        Gate::start_raw(&toml).await
    }

    /// Starts origin-gate with exactly this TOML, written to a temp dir (relative paths resolve there).
    pub async fn start_raw(toml: &str) -> Gate {
        let dir = tempfile::tempdir().unwrap();
        Gate::start_in(dir, toml).await
    }

    pub async fn start_in(dir: tempfile::TempDir, toml: &str) -> Gate {
        // In-process gates keep the test output clean unless a test asks for the access log.
        let toml = if toml.contains("[log]") {
            toml.to_string()
        } else {
            format!("{toml}\n[log]\naccess = \"off\"\n")
        };
        let toml = toml.as_str();
        let path = dir.path().join("origin-gate.toml");
        std::fs::write(&path, toml).unwrap();
        let config = Config::parse(toml, Source::File(path))
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let server = Server::bind(config)
            .await
            .unwrap_or_else(|e| panic!("origin-gate did not start: {e}"));
        let http = server.local_addrs(Scheme::Http)[0];
        let https = server.local_addrs(Scheme::Https).first().copied();
        let reloader = server.reloader();
        let (stop, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Gate {
            http,
            https,
            reloader,
            stop: Some(stop),
            done: Some(done),
            _dir: dir,
        }
    }

    /// Starts graceful shutdown and returns a handle that finishes when origin-gate has exited.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.done.take().unwrap()
    }

    pub fn https(&self) -> SocketAddr {
        self.https.expect("https listener")
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(d) = self.done.take() {
            d.abort();
        }
    }
}

/// The real `origin-gate` binary as a child process; knows its listen addresses from its log.
pub struct GateProcess {
    pub child: Child,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub log: mpsc::Receiver<String>,
    /// Standard output: the access log, unless it goes to a file.
    pub access: mpsc::Receiver<String>,
    /// Every log line up to and including the "listening" lines.
    pub startup: Vec<String>,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_origin-gate"))
}

impl GateProcess {
    /// Spawns `origin-gate --config <path>` and waits (bounded) for its "listening" lines.
    pub fn spawn(config: &Path) -> GateProcess {
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (access_tx, access_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if access_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut http, mut https, mut admin) = (None, None, None);
        let text = std::fs::read_to_string(config).unwrap();
        let expect_https = text.contains("https = [\"");
        let expect_admin = text.contains("[admin]");
        let mut seen = Vec::new();
        while http.is_none()
            || (expect_https && https.is_none())
            || (expect_admin && admin.is_none())
        {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| {
                    panic!(
                        "origin-gate did not report listening; log so far:\n{}",
                        seen.join("\n")
                    )
                });
            if line.contains(" listening ") {
                let addr: SocketAddr = line.rsplit("addr=").next().unwrap().trim().parse().unwrap();
                if line.contains("listener=\"admin\"") {
                    admin = Some(addr);
                } else if line.contains("listener=\"https\"") {
                    https = Some(addr);
                } else {
                    http = Some(addr);
                }
            }
            seen.push(line);
        }
        GateProcess {
            child,
            http: http.unwrap(),
            https,
            admin,
            log: rx,
            access: access_rx,
            startup: seen,
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// The next `n` access-log lines from stdout (bounded wait).
    pub fn access_lines(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.access
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|_| panic!("access-log line {} of {n} did not arrive", i + 1))
            })
            .collect()
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Some(l),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for GateProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A TCP connection from a chosen source address on loopback.
pub async fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(src.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// An HTTP/1.1 connection (plain) from `src`.
pub async fn h1_plain(
    src: &str,
    to: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let stream = connect_from(src, to).await;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    sender
}

/// An HTTP/1.1 connection over TLS from `src` (certificate not verified: these tests are about
/// forwarding, the TLS tests verify).
pub async fn h1_tls(
    src: &str,
    to: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let tls = tls_connect(src, to, insecure_client(&[b"http/1.1"]), "localhost").await;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

pub async fn tls_connect(
    src: &str,
    to: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    sni: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let stream = connect_from(src, to).await;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from(sni.to_string()).unwrap(), stream)
        .await
        .unwrap()
}

/// A simple response: status, headers, whole body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The values the backend received for `name` (backend echo JSON).
    pub fn seen(&self, name: &str) -> Option<String> {
        let v = self.json();
        let values = v["headers"]
            .get(name)?
            .as_array()?
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>();
        Some(values.join(" | "))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<TestBody>,
    req: Request<TestBody>,
) -> Answer {
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    collect(resp).await
}

pub async fn collect(resp: Response<Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// GET `path` from `src` to `to` over plain HTTP with the given headers (Host defaults to example.com).
pub async fn get(src: &str, to: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut sender = h1_plain(src, to).await;
    send(&mut sender, request("GET", path, headers, empty())).await
}

pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> Request<TestBody> {
    let mut b = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", "example.com");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A certificate authority made for a test.
pub struct TestCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

/// A leaf certificate's PEM texts and DER forms.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa { key, cert }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for `names` with this serial, valid from a day ago until `days_left` days from now.
    pub fn issue(&self, names: &[&str], serial: u64, days_left: i64) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(2).max(time::Duration::days(-days_left + 1));
        params.not_after = now + time::Duration::days(days_left) + time::Duration::hours(1);
        if days_left < 0 {
            params.not_after = now + time::Duration::days(days_left);
        }
        let leaf = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: format!("{}{}", leaf.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
            chain: vec![leaf.der().clone(), self.cert.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    /// A leaf whose whole lifetime is `lifetime_days`, with `days_left` of it remaining (a 90-day
    /// Let's Encrypt certificate with 10 days left, a fresh 6-day one).
    pub fn issue_lifetime(
        &self,
        names: &[&str],
        serial: u64,
        lifetime_days: i64,
        days_left: i64,
    ) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let now = time::OffsetDateTime::now_utc();
        params.not_after = now + time::Duration::days(days_left) + time::Duration::minutes(30);
        params.not_before = params.not_after - time::Duration::days(lifetime_days);
        let leaf = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: format!("{}{}", leaf.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
            chain: vec![leaf.der().clone(), self.cert.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    /// A client certificate (for mutual TLS) signed by this CA.
    pub fn client_identity(
        &self,
        serial: u64,
    ) -> (
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let issued = self.issue(&["client.example"], serial, 30);
        (
            issued.chain,
            rustls::pki_types::PrivateKeyDer::try_from(issued.key_der).unwrap(),
        )
    }
}

/// A CA and a leaf certificate made for the test, written as PEM files.
pub struct TestCert {
    pub dir: tempfile::TempDir,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
}

impl TestCert {
    pub fn new(names: &[&str]) -> TestCert {
        let ca = TestCa::new("origin-gate test CA");
        let issued = ca.issue(names, 1, 90);
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("fullchain.pem");
        let key_path = dir.path().join("privkey.pem");
        std::fs::write(&cert_path, &issued.cert_pem).unwrap();
        std::fs::write(&key_path, &issued.key_pem).unwrap();
        TestCert {
            dir,
            cert_path,
            key_path,
            ca_der: ca.der(),
            ca_pem: ca.pem(),
            chain: issued.chain,
            key_der: issued.key_der,
        }
    }

    /// `[[tls.certs]]` TOML for this certificate.
    pub fn toml(&self) -> String {
        format!(
            "[[tls.certs]]\ncert = {:?}\nkey = {:?}\n",
            self.cert_path, self.key_path
        )
    }

    /// A client that trusts only this test CA.
    pub fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let mut cfg =
            rustls::ClientConfig::builder_with_provider(origin_gate::serve::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = rustls::pki_types::PrivateKeyDer::try_from(self.key_der.clone()).unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(origin_gate::serve::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(self.chain.clone(), key)
                .unwrap(),
        )
    }
}

/// Accepts any server certificate (only for tests that are not about TLS trust); signatures are
/// still checked.
#[derive(Debug)]
pub struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &origin_gate::serve::tls::provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &origin_gate::serve::tls::provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        origin_gate::serve::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client that accepts any server certificate.
pub fn insecure_client(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(origin_gate::serve::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// An HTTP/2 connection over TLS.
pub async fn h2_tls(
    src: &str,
    to: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    sni: &str,
) -> hyper::client::conn::http2::SendRequest<TestBody> {
    let tls = tls_connect(src, to, cfg, sni).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "server did not negotiate h2"
    );
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}
