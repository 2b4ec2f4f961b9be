//! The connection to the WordPress backend: one pooled keep-alive client, timeouts, and errors
//! that say which side failed and what the operator should check.

use std::error::Error as StdError;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use http::uri::{PathAndQuery, Scheme as UriScheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{BackendConfig, BackendTarget};
use crate::decide::pipeline::UpstreamChoice;
use crate::serve::body::{BodyState, ForwardBody};
use crate::serve::direct;
use crate::serve::respond::BoxError;
use crate::serve::tls::provider;

/// Why a request to the backend failed; decides 502 vs 504 and carries the operator's hint.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("backend {backend} refused the connection ({source}) — is the WordPress web server (apache/nginx/php-fpm) running and listening there?")]
    Refused { backend: String, source: io::Error },
    #[error("backend {backend} did not accept the connection within {after:?} — is it overloaded or firewalled?")]
    ConnectTimeout { backend: String, after: Duration },
    #[error("cannot connect to backend {backend}: {detail}")]
    Connect { backend: String, detail: String },
    #[error("backend {backend} sent no response head within {after:?} (backend.response_timeout)")]
    ResponseTimeout { backend: String, after: Duration },
    #[error("backend {backend} failed mid-request: {detail}")]
    Failed { backend: String, detail: String },
}

impl UpstreamError {
    /// 504 when the backend was too slow, 502 when it was unreachable or broke the exchange
    /// (the statuses nginx gives for the same cases).
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::ConnectTimeout { .. } | UpstreamError::ResponseTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// A short machine-friendly kind for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Refused { .. } => "refused",
            UpstreamError::ConnectTimeout { .. } => "connect_timeout",
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::ResponseTimeout { .. } => "response_timeout",
            UpstreamError::Failed { .. } => "failed",
        }
    }
}

/// The pooled client and the backend addresses. Cloning shares the pool.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, ForwardBody>,
    primary: Option<Uri>,
    https: Option<Uri>,
    acme: Option<Uri>,
    /// The same three as socket addresses when they are `http://` URLs at an IP address: bodiless
    /// GET/HEAD requests to them go the direct way (`direct`).
    direct: [Option<(SocketAddr, String)>; 3],
    /// This worker's idle connections for the direct way.
    pool: Arc<direct::Pool>,
    connect_timeout: Duration,
    response_timeout: Duration,
    config: Arc<BackendConfig>,
}

impl Upstream {
    pub fn new(cfg: &BackendConfig, acme: Option<Uri>) -> Result<Upstream, String> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(cfg.connect_timeout));
        // Small request heads must not wait for Nagle's algorithm on the loopback hop.
        http.set_nodelay(true);
        http.enforce_http(false);
        // The system's CA roots (~150 certificates parsed, a few MiB per worker) are loaded only
        // when some backend is reached over https.
        let https_somewhere = [
            match &cfg.target {
                BackendTarget::Url(u) => Some(u),
                BackendTarget::Echo => None,
            },
            cfg.https_url.as_ref(),
            acme.as_ref(),
        ]
        .into_iter()
        .flatten()
        .any(|u| u.scheme_str() == Some("https"));
        let tls = client_tls_config(cfg.tls_verify && https_somewhere)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(cfg.idle_timeout)
            .pool_timer(TokioTimer::new())
            // Idle backend connections kept per worker: enough for a busy WordPress (php-fpm
            // rarely has more workers), and each one holds buffers while it waits.
            .pool_max_idle_per_host(cfg.max_idle_connections)
            // Bound what one backend connection may buffer (hyper's default grows to ~400 KiB):
            // 256 concurrent 1 MiB responses must not cost 256 × 400 KiB.
            .http1_max_buf_size(64 * 1024);
        let client = builder.build(connector);
        let primary = match &cfg.target {
            BackendTarget::Url(u) => Some(u.clone()),
            BackendTarget::Echo => None,
        };
        let direct = [
            primary.as_ref().and_then(direct_addr),
            cfg.https_url.as_ref().and_then(direct_addr),
            acme.as_ref().and_then(direct_addr),
        ];
        Ok(Upstream {
            client,
            primary,
            https: cfg.https_url.clone(),
            acme,
            direct,
            pool: Arc::default(),
            connect_timeout: cfg.connect_timeout,
            response_timeout: cfg.response_timeout,
            config: Arc::new(cfg.clone()),
        })
    }

    /// A new client with the same settings and its own, empty connection pool (one per worker
    /// thread). Falls back to sharing this one if the TLS setup fails, which it did not when
    /// this one was built.
    pub fn fresh(&self) -> Upstream {
        Upstream::new(&self.config, self.acme.clone()).unwrap_or_else(|_| self.clone())
    }

    /// This worker thread's copy of the client, with its own keep-alive pool, for the runtime
    /// generation it was built for: each worker keeps its own backend connections, so a request
    /// and its backend connection never wake another thread.
    /// A shared handle: the per-request cost is one reference count, not a copy of the client.
    pub fn local(&self, generation: u64) -> Arc<Upstream> {
        thread_local! {
            static LOCAL: std::cell::RefCell<Option<(u64, Arc<Upstream>)>> = const { std::cell::RefCell::new(None) };
        }
        LOCAL.with(|cell| {
            let mut cell = cell.borrow_mut();
            match &*cell {
                Some((g, upstream)) if *g == generation => upstream.clone(),
                _ => {
                    let upstream = Arc::new(self.fresh());
                    *cell = Some((generation, upstream.clone()));
                    upstream
                }
            }
        })
    }

    /// Closes this worker's stale direct connections (see `direct::Pool::sweep`).
    pub fn sweep(&self) {
        self.pool.sweep(self.pool_limits());
    }

    fn pool_limits(&self) -> direct::PoolLimits {
        direct::PoolLimits {
            max_idle: self.config.max_idle_connections,
            idle_timeout: self.config.idle_timeout,
        }
    }

    /// Does the embedded echo origin answer this choice (no real backend configured)?
    pub fn is_echo(&self, choice: UpstreamChoice) -> bool {
        self.base(choice).is_none()
    }

    fn base(&self, choice: UpstreamChoice) -> Option<&Uri> {
        let i = which(choice, [&self.primary, &self.https, &self.acme])?;
        [&self.primary, &self.https, &self.acme][i].as_ref()
    }

    /// The direct address of the URL `base` picks, when it has one.
    fn direct(&self, choice: UpstreamChoice) -> Option<&(SocketAddr, String)> {
        let i = which(choice, [&self.primary, &self.https, &self.acme])?;
        self.direct[i].as_ref()
    }

    /// `host:port` of `backend.url` (default port by scheme), for health probes.
    pub fn primary_authority(&self) -> Option<String> {
        let uri = self.primary.as_ref()?;
        let host = uri.host()?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        Some(format!("{host}:{port}"))
    }

    /// The backend a choice goes to, for log lines.
    pub fn describe(&self, choice: UpstreamChoice) -> String {
        self.base(choice).map_or_else(
            || "echo".into(),
            |u| u.to_string().trim_end_matches('/').to_string(),
        )
    }

    /// Sends the (already rewritten) request to the backend and waits for the response head.
    /// Bodies stream both ways; dropping the returned future or body cancels the backend request.
    ///
    /// Not an `async fn`: the request is turned into what the exchange needs (its head as bytes
    /// for the direct exchange, a boxed future for the pooled client) before the future is built,
    /// so the future does not carry the request as well — it is moved whole when a request task
    /// is spawned (hyper's HTTP/2 streams), and measured at 3.5 KB that was a memcpy per request.
    pub fn send<'a>(
        &'a self,
        choice: UpstreamChoice,
        req: Request<ForwardBody>,
        body: &'a BodyState,
    ) -> impl std::future::Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'a
    {
        let leg = match (self.direct(choice), direct::eligible(&req)) {
            (Some((addr, authority)), true) => Leg::Direct(
                direct::Target {
                    addr: *addr,
                    connect_timeout: self.connect_timeout,
                    response_timeout: self.response_timeout,
                    limits: self.pool_limits(),
                },
                direct::Prepared::new(&req, authority),
            ),
            _ => Leg::Pooled(Box::pin(self.send_pooled(choice, req, body))),
        };
        async move {
            match leg {
                Leg::Direct(target, prepared) => {
                    match direct::send(&self.pool, target, prepared).await {
                        Ok(resp) => Ok(resp.map(UpstreamBody::Direct)),
                        // The backend's name is formatted only when something failed.
                        Err(failure) => Err(self.direct_failure(failure, self.describe(choice))),
                    }
                }
                Leg::Pooled(exchange) => exchange.await.map(|resp| resp.map(UpstreamBody::Pooled)),
            }
        }
    }

    fn direct_failure(&self, failure: direct::Failure, backend: String) -> UpstreamError {
        match failure {
            direct::Failure::Connect(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                UpstreamError::Refused { backend, source: e }
            }
            direct::Failure::Connect(e) if e.kind() == io::ErrorKind::TimedOut => {
                UpstreamError::ConnectTimeout {
                    backend,
                    after: self.connect_timeout,
                }
            }
            direct::Failure::Connect(e) => UpstreamError::Connect {
                backend,
                detail: e.to_string(),
            },
            direct::Failure::ConnectTimeout => UpstreamError::ConnectTimeout {
                backend,
                after: self.connect_timeout,
            },
            direct::Failure::ResponseTimeout => UpstreamError::ResponseTimeout {
                backend,
                after: self.response_timeout,
            },
            direct::Failure::Broken(detail) => UpstreamError::Failed { backend, detail },
        }
    }

    /// The exchange through hyper-util's pooled client (bodies, upgrades, https, names).
    async fn send_pooled(
        &self,
        choice: UpstreamChoice,
        mut req: Request<ForwardBody>,
        body: &BodyState,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let backend = || self.describe(choice);
        let Some(base) = self.base(choice) else {
            return Err(UpstreamError::Connect {
                backend: backend(),
                detail: "no backend configured".into(),
            });
        };
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(
            req.uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        if parts.scheme.is_none() {
            parts.scheme = Some(UriScheme::HTTP);
        }
        *req.uri_mut() = Uri::from_parts(parts).map_err(|e| UpstreamError::Connect {
            backend: backend(),
            detail: e.to_string(),
        })?;
        // The backend hop is HTTP/1.1 whatever the visitor spoke (h2 visitors included).
        *req.version_mut() = Version::HTTP_11;
        let exchange = self.client.request(req);
        tokio::pin!(exchange);
        // `backend.response_timeout` counts from the end of the request body: while the client is
        // still sending (a long upload), the backend is not late. The client's own pace is bounded
        // by `limits.body_read_timeout`; a backend that stops *reading* the body is caught by the
        // same response timeout, counted from the last body bytes it took.
        let timeout = self.response_timeout;
        let timed_out = || UpstreamError::ResponseTimeout {
            backend: backend(),
            after: timeout,
        };
        let result = loop {
            if body.is_done() {
                match tokio::time::timeout(timeout, exchange.as_mut()).await {
                    Ok(r) => break r,
                    Err(_) => return Err(timed_out()),
                }
            }
            let stuck_at = body.last_progress() + timeout;
            tokio::select! {
                r = exchange.as_mut() => break r,
                () = body.finished() => {}
                () = tokio::time::sleep_until(stuck_at.into()) => {
                    if body.last_progress() + timeout <= std::time::Instant::now() && !body.is_done() {
                        return Err(timed_out());
                    }
                }
            }
        };
        result.map_err(|e| classify(e, backend(), self.connect_timeout))
    }
}

/// Which of (primary, https, acme) a choice uses: its own URL when configured, else the primary.
fn which(choice: UpstreamChoice, urls: [&Option<Uri>; 3]) -> Option<usize> {
    let own = match choice {
        UpstreamChoice::Primary => 0,
        UpstreamChoice::Https => 1,
        UpstreamChoice::Acme => 2,
    };
    if urls[own].is_some() {
        Some(own)
    } else {
        urls[0].as_ref().map(|_| 0)
    }
}

/// `http://IP[:port]` → its socket address and authority (for a request without `Host`).
fn direct_addr(uri: &Uri) -> Option<(SocketAddr, String)> {
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri.host()?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = uri.port_u16().unwrap_or(80);
    Some((
        SocketAddr::new(ip, port),
        uri.authority()?.as_str().to_string(),
    ))
}

/// A backend response body: read by the direct way, or hyper-util's.
pub enum UpstreamBody {
    Direct(direct::DirectBody),
    Pooled(Incoming),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Direct(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            UpstreamBody::Pooled(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Direct(b) => b.is_end_stream(),
            UpstreamBody::Pooled(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Direct(b) => b.size_hint(),
            UpstreamBody::Pooled(b) => b.size_hint(),
        }
    }
}

fn classify(
    e: hyper_util::client::legacy::Error,
    backend: String,
    connect_timeout: Duration,
) -> UpstreamError {
    let io_kind = io_error_in(&e).map(|io| (io.kind(), io.to_string()));
    if e.is_connect() {
        return match io_kind {
            Some((io::ErrorKind::ConnectionRefused, msg)) => UpstreamError::Refused {
                backend,
                source: io::Error::new(io::ErrorKind::ConnectionRefused, msg),
            },
            Some((io::ErrorKind::TimedOut, _)) => UpstreamError::ConnectTimeout {
                backend,
                after: connect_timeout,
            },
            _ => UpstreamError::Connect {
                backend,
                detail: error_chain(&e),
            },
        };
    }
    UpstreamError::Failed {
        backend,
        detail: error_chain(&e),
    }
}

fn io_error_in<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// "outer: inner: innermost" — hyper's top-level messages alone ("client error (Connect)") are
/// useless at 3 a.m.
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}

pub(crate) fn client_tls_config(verify: bool) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let cfg = if verify {
        let mut roots = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify))
            .with_no_client_auth()
    };
    Ok(cfg)
}

/// `backend.tls_verify = false`: accept any certificate from the backend. Only sensible for a
/// loopback backend with a self-signed certificate, which is what the option is documented for;
/// signatures are still checked so the handshake is a real one.
#[derive(Debug)]
struct NoVerify;

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How `Upstream::send` reaches the backend for one request.
enum Leg<'a> {
    Direct(direct::Target, direct::Prepared),
    Pooled(
        std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<Response<Incoming>, UpstreamError>>
                    + Send
                    + 'a,
            >,
        >,
    ),
}
