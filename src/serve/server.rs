//! Listeners, accept loops, connection limits, TLS handshakes and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::{Config, Problem};
use crate::decide::pipeline::{ConnContext, TlsInfo};
use crate::decide::visitor::Scheme;
use crate::serve::express;
use crate::serve::park::{self, ConnActivity};
use crate::serve::proxy;
use crate::serve::reload::{log_alarms, Reloader};
use crate::serve::state::{Runtime, Shared};

/// Why origin-gate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{}", problems_text(.0))]
    Config(Vec<Problem>),
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind {
        addr: SocketAddr,
        source: io::Error,
        hint: String,
    },
    #[error("{0}")]
    Other(String),
}

fn problems_text(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A bound, not yet running origin-gate.
pub struct Server {
    /// Per listen address, one socket per worker thread (`SO_REUSEPORT`: the kernel spreads new
    /// connections across them).
    listeners: Vec<(Vec<std::net::TcpListener>, Scheme)>,
    admin: Option<TcpListener>,
    shared: Arc<Shared>,
}

/// Worker threads: one per core, each with its own single-threaded runtime, listeners and
/// backend pool ("thread per core", like nginx's worker processes). Measured on the load
/// benchmark against tokio's work-stealing runtime: most of the proxy's CPU went to waking
/// threads across cores (futex, scheduler), not to HTTP.
fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(64)
}

impl Server {
    /// Builds the state and binds every listen address. Binding happens here, before `run`, so
    /// a caller (or a test using port 0) knows the real addresses and that they are open.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let runtime = Runtime::build(config, None).map_err(StartError::Config)?;
        let config = &runtime.config;
        let mut listeners = Vec::new();
        let addrs = config
            .listen
            .http
            .iter()
            .map(|a| (*a, Scheme::Http))
            .chain(config.listen.https.iter().map(|a| (*a, Scheme::Https)));
        let workers = worker_count();
        for (addr, scheme) in addrs {
            match bind_group(addr, workers) {
                Ok(group) => listeners.push((group, scheme)),
                // The default list includes [::]; a host without IPv6 still starts on IPv4.
                Err(e) if config.listen.defaulted && addr.is_ipv6() && ipv6_unavailable(&e) => {
                    warn!(%addr, error = %e, "IPv6 is not available here; skipping this default listen address");
                }
                Err(source) => {
                    let hint = bind_hint(addr, &source);
                    return Err(StartError::Bind { addr, source, hint });
                }
            }
        }
        if listeners.is_empty() {
            return Err(StartError::Other("no listen address could be bound".into()));
        }
        let admin = match config.admin_listen {
            Some(addr) => Some(bind_listener(addr).map_err(|source| {
                let hint = bind_hint(addr, &source);
                StartError::Bind { addr, source, hint }
            })?),
            None => None,
        };
        Ok(Server {
            listeners,
            admin,
            shared: Shared::new(runtime),
        })
    }

    /// The bound addresses of one kind of listener (the real ports when port 0 was asked for).
    pub fn local_addrs(&self, scheme: Scheme) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(_, s)| *s == scheme)
            .filter_map(|(group, _)| group.first()?.local_addr().ok())
            .collect()
    }

    /// The admin listener's address, when `admin.listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A handle to reload this server's configuration and files (SIGHUP uses it).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// within `shutdown.grace`, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listeners,
            admin,
            shared,
        } = self;
        let start = shared.runtime.load_full();
        log_startup(&start);
        let maintenance = tokio::spawn(crate::serve::reload::maintenance(Reloader {
            shared: shared.clone(),
        }));
        let admin = admin.map(|l| {
            if let Ok(addr) = l.local_addr() {
                info!(listener = "admin", %addr, "listening (/healthz, /metrics)");
            }
            tokio::spawn(crate::serve::admin::serve(l, shared.clone()))
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        // The connection limit is fixed for the life of the process (a reload logs a change).
        let limit = Arc::new(Semaphore::new(start.config.limits.max_connections));
        let announce: Vec<(Scheme, SocketAddr)> = listeners
            .iter()
            .filter_map(|(group, scheme)| Some((*scheme, group.first()?.local_addr().ok()?)))
            .collect();
        // Hand each worker its share: the w-th socket of every listen address.
        let workers = listeners.first().map_or(0, |(g, _)| g.len());
        let mut shares: Vec<Vec<(std::net::TcpListener, Scheme)>> =
            (0..workers).map(|_| Vec::new()).collect();
        for (group, scheme) in listeners {
            for (w, l) in group.into_iter().enumerate() {
                if let Some(share) = shares.get_mut(w) {
                    share.push((l, scheme));
                }
            }
        }
        let mut done = Vec::new();
        let mut ready = Vec::new();
        for (w, share) in shares.into_iter().enumerate() {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            done.push(rx);
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
            ready.push(ready_rx);
            let (shared, limit, stop) = (shared.clone(), limit.clone(), stop_rx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("origin-gate-w{w}"))
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(worker(share, shared, limit, stop, ready_tx)),
                        Err(e) => error!(error = %e, "cannot start a worker runtime"),
                    }
                    let _ = tx.send(());
                });
            if let Err(e) = spawned {
                error!(error = %e, "cannot start a worker thread");
            }
        }
        // "listening" means it: every worker has its sockets in its event loop.
        for r in ready {
            let _ = r.await;
        }
        for (scheme, addr) in announce {
            info!(listener = scheme.as_str(), %addr, "listening");
        }
        shutdown.await;
        let grace = shared.runtime.load().config.shutdown_grace;
        info!(
            ?grace,
            "shutting down: no new connections, waiting for in-flight requests"
        );
        let _ = stop_tx.send(true);
        maintenance.abort();
        if let Some(a) = admin {
            a.abort();
        }
        for rx in done {
            let _ = rx.await;
        }
        shared.access_log.flush_now();
        info!("all connections closed; exiting");
    }
}

/// One worker: accept loops for its sockets, then, when shutdown starts, waits (up to the grace
/// period) for its connections to finish.
async fn worker(
    share: Vec<(std::net::TcpListener, Scheme)>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let tracker = TaskTracker::new();
    let mut loops = Vec::new();
    for (listener, scheme) in share {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                error!(error = %e, "cannot use a listening socket");
                continue;
            }
        };
        loops.push(tokio::spawn(accept_loop(AcceptLoop {
            listener,
            scheme,
            shared: shared.clone(),
            limit: limit.clone(),
            tracker: tracker.clone(),
            stop: stop.clone(),
        })));
    }
    let shedder = {
        let shared = shared.clone();
        tokio::spawn(park::shedder(move || {
            shared.metrics.shed_connections.inc();
        }))
    };
    // Idle direct backend connections past backend.idle_timeout, or closed by the backend, are
    // closed within a few seconds even when no request comes to take one.
    let sweeper = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let runtime = shared.runtime.load();
                runtime.upstream.local(runtime.generation).sweep();
            }
        })
    };
    let _ = ready.send(());
    for l in loops {
        let _ = l.await;
    }
    shedder.abort();
    sweeper.abort();
    tracker.close();
    let grace = shared.runtime.load().config.shutdown_grace;
    match tokio::time::timeout(grace, tracker.wait()).await {
        Ok(()) => debug!("worker: all connections closed"),
        Err(_) => warn!(
            ?grace,
            "grace period over; closing the remaining connections"
        ),
    }
}

fn log_startup(runtime: &Runtime) {
    let config = &runtime.config;
    info!(config = %config.source, version = env!("CARGO_PKG_VERSION"), "origin-gate starting");
    if runtime
        .upstream
        .is_echo(crate::decide::pipeline::UpstreamChoice::Primary)
    {
        info!("backend: embedded echo origin (no backend configured); responses show what WordPress would see");
    } else {
        info!(backend = %runtime.upstream.describe(crate::decide::pipeline::UpstreamChoice::Primary), "forwarding to the backend");
    }
    info!(
        ranges = runtime.pipeline.trusted.len(),
        "trusted proxy ranges loaded: {}",
        crate::decide::trust::list_source(&config.trust)
    );
    if let Some(e) = &config.trust.edge {
        info!(header = %e.header, file = %e.file.display(), "edge secret required from peers in the trusted ranges");
    }
    if let Some(warning) = runtime.proof_warning() {
        warn!("{warning}");
    }
    if config.trust.cloudflare {
        let mtime = crate::observe::health::ranges_file_mtime(config.trust.ranges_file.as_deref());
        match crate::observe::health::list_age_verdict(crate::observe::health::now_unix(), mtime) {
            Some((tracing::Level::ERROR, message)) => error!("{message}"),
            Some((_, message)) => warn!("{message}"),
            None => {}
        }
    }
    if let Some(store) = &runtime.certs {
        let set = store.current();
        for e in &set.entries {
            match &e.cert.summary {
                Some(s) => {
                    info!(cert = %e.spec.cert.display(), serves = %e.names.join(","), "certificate loaded: {s}")
                }
                None => info!(cert = %e.spec.cert.display(), "certificate loaded"),
            }
        }
        log_alarms(&store.alarms(crate::serve::tls::now_unix()));
        if !config.listen.https.is_empty() {
            let fallback_names = set
                .fallback
                .summary
                .as_ref()
                .map(|s| s.names.join(","))
                .unwrap_or_default();
            if config.tls.certs.is_empty() {
                warn!(names = %fallback_names, "no [[tls.certs]] configured: serving a self-signed certificate; Cloudflare \"Full\" accepts it, \"Full (strict)\" needs a real or Cloudflare Origin CA certificate (else error 526)");
            } else if config.tls.default.is_none() {
                info!(names = %fallback_names, "handshakes without SNI or for unknown names get the self-signed fallback (set tls.default to serve a real certificate instead)");
            }
        }
    }
}

struct AcceptLoop {
    listener: TcpListener,
    scheme: Scheme,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: watch::Receiver<bool>,
}

async fn accept_loop(mut l: AcceptLoop) {
    loop {
        let accepted = tokio::select! {
            r = l.listener.accept() => r,
            _ = l.stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE and friends: pause briefly rather than spin on a failing accept,
                // and say so once per interval, not once per attempt.
                if let Some(n) = l.shared.diag.allow("accept") {
                    warn!(error = %e, occurrences = n, "accept failed (out of file descriptors? raise LimitNOFILE / ulimit -n); pausing new connections for 100ms, open ones continue");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match l.limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Overload: make room by closing the oldest idle connection (keep-alive or
                // silent) instead of leaving this visitor in the backlog behind them.
                let shed = park::shed_oldest() || park::shed_elsewhere();
                if shed {
                    l.shared.metrics.shed_connections.inc();
                }
                if let Some(n) = l.shared.diag.allow("max-connections") {
                    if shed {
                        warn!(occurrences = n, "limits.max_connections reached: closing the oldest idle connections to make room for new ones");
                    } else {
                        warn!(occurrences = n, "limits.max_connections reached and every connection is busy: new connections wait until others close");
                    }
                }
                tokio::select! {
                    p = l.limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                    _ = l.stop.changed() => return,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            stream,
            peer,
            scheme: l.scheme,
            shared: l.shared.clone(),
            stop: l.stop.clone(),
            activity: Arc::new(ConnActivity::default()),
            _permit: permit,
        };
        // Each kind in a task of its own size: a parked plain connection is one small
        // allocation (see `serve_plain`).
        match l.scheme {
            Scheme::Http => l.tracker.spawn(serve_plain(conn)),
            Scheme::Https => l.tracker.spawn(serve_tls_connection(conn)),
        };
    }
}

/// One accepted connection and what serving it needs.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    scheme: Scheme,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    activity: Arc<ConnActivity>,
    /// This connection's place under `limits.max_connections`, given back when it ends.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// How connections are served. Until its first byte it is parked (holding only its socket: hyper and
/// rustls allocate their buffers on their first read), closed after `limits.header_read_timeout`
/// of silence or when shed; then plain HTTP/1.1 is served in sessions that park between requests
/// (`park`), TLS as one hyper connection (HTTP/2 or HTTP/1.1) in its own allocation.
/// TLS: parked until the first byte (the ClientHello), then the handshake and hyper in their own
/// allocation.
async fn serve_tls_connection(mut c: Conn) {
    // One deadline for the whole handshake, counted from accept: the silent wait included.
    let within = c.shared.runtime.load().config.tls.handshake_timeout;
    let deadline = tokio::time::Instant::now() + within;
    if let park::Wake::Close(why) = park::park(&c.stream, &c.activity, within, &mut c.stop).await {
        if why == "idle" {
            c.shared.metrics.handshake("timeout");
            debug!(peer = %c.peer, "TLS handshake timed out (nothing sent)");
        }
        return;
    }
    Box::pin(serve_tls(c, deadline)).await
}

fn h1_builder(limits: &crate::config::Limits) -> http1::Builder {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    h1
}

fn local_addr(stream: &TcpStream) -> SocketAddr {
    stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Plain HTTP/1.1 in sessions: each session runs hyper until it is idle in a clean keep-alive
/// state, then its state is dropped and the connection parks until the next request's first
/// byte (or `limits.header_read_timeout`, the keep-alive limit).
async fn serve_plain(c: Conn) {
    let Conn {
        stream,
        peer,
        scheme,
        shared,
        mut stop,
        activity,
        _permit,
    } = c;
    let runtime = shared.runtime.load_full();
    let limits = &runtime.config.limits;
    // Silent until now: parked, holding only the socket (closed after header_read_timeout).
    if let park::Wake::Close(_) =
        park::park(&stream, &activity, limits.header_read_timeout, &mut stop).await
    {
        return;
    }
    let _open = shared.metrics.connection(scheme);
    let h1 = h1_builder(limits);
    let ctx = Arc::new(ConnContext::new(peer, local_addr(&stream), scheme, None));
    let mut stream = stream;
    let mut leftover = bytes::Bytes::new();
    loop {
        // Simple requests take the express lane; the first one that is not goes to a hyper
        // session with the bytes read so far.
        let lane = express::Lane {
            shared: &shared,
            conn: &ctx,
            activity: &activity,
            stop: &mut stop,
        };
        match Box::pin(express::serve(&mut stream, leftover, lane)).await {
            express::Handoff::Hyper(head) => leftover = head,
            express::Handoff::Done => return,
        }
        let service = {
            let (shared, ctx, activity) = (shared.clone(), ctx.clone(), activity.clone());
            service_fn(move |req| {
                Box::pin(proxy::handle(
                    shared.clone(),
                    ctx.clone(),
                    activity.clone(),
                    req,
                ))
            })
        };
        let end = Box::pin(park::session(
            stream, leftover, &h1, service, &activity, &mut stop,
        ))
        .await;
        let park::SessionEnd::Resume(s, rest) = end else {
            return;
        };
        // The express lane parks the connection until its next request.
        stream = s;
        leftover = rest;
    }
}

/// TLS: the handshake under one deadline, then HTTP/2 or HTTP/1.1 as one hyper connection.
async fn serve_tls(c: Conn, handshake_deadline: tokio::time::Instant) {
    let Conn {
        stream,
        peer,
        scheme,
        shared,
        stop,
        activity,
        _permit,
    } = c;
    // New connections use the configuration current at accept time.
    let runtime = shared.runtime.load_full();
    let limits = &runtime.config.limits;
    let _open = shared.metrics.connection(scheme);
    let local = local_addr(&stream);
    let Some(acceptor) = runtime.tls.clone() else {
        error!("TLS listener without TLS state; closing connection");
        return;
    };
    let handshake = tokio::time::timeout_at(handshake_deadline, acceptor.accept(stream));
    let tls_stream = match handshake.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.metrics.handshake("failed");
            debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            shared.metrics.handshake("timeout");
            debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    shared.metrics.handshake("ok");
    let session = tls_stream.get_ref().1;
    let info = TlsInfo {
        sni: session.server_name().map(Into::into),
        version: match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        },
        client_cert_verified: session.peer_certificates().is_some_and(|c| !c.is_empty()),
    };
    let is_h2 = session.alpn_protocol() == Some(b"h2");
    let ctx = Arc::new(ConnContext::new(peer, local, scheme, Some(info)));
    let service =
        service_fn(move |req| proxy::handle(shared.clone(), ctx.clone(), activity.clone(), req));
    let io = TokioIo::new(tls_stream);
    let result = if is_h2 {
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_streams)
            // HPACK counts 32 bytes more per field than the head's text (RFC 7541
            // §4.1); with that allowance the pipeline's own count decides, the same
            // for HTTP/2 as for HTTP/1.1.
            .max_header_list_size(
                u32::try_from(limits.max_header_bytes + 32 * limits.max_headers)
                    .unwrap_or(u32::MAX),
            )
            // Rapid reset (CVE-2023-44487): a client that makes the server reset
            // streams faster than it can serve them gets GOAWAY (h2 counts both the
            // streams a client resets before they are accepted and the ones we reset).
            .max_pending_accept_reset_streams(Some(20))
            .max_local_error_reset_streams(Some(1024))
            // Dead peers are found by PING; idle live ones may stay.
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        drive(h2.serve_connection(io, service), stop, |c| {
            c.graceful_shutdown()
        })
        .await
    } else {
        drive(
            h1_builder(limits)
                .serve_connection(io, service)
                .with_upgrades(),
            stop,
            |c| c.graceful_shutdown(),
        )
        .await
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Runs a connection to completion; when shutdown starts, asks it to finish gracefully (HTTP/1:
/// close after the in-flight response; HTTP/2: GOAWAY) and keeps driving it until it has.
async fn drive<C, G>(
    conn: C,
    mut stop: watch::Receiver<bool>,
    begin_shutdown: G,
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
    G: FnOnce(Pin<&mut C>),
{
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
            begin_shutdown(conn.as_mut());
            conn.await
        }
    }
}

/// Binds with `SO_REUSEADDR` (fast restarts) and, for IPv6, `IPV6_V6ONLY` so `0.0.0.0:80` and
/// `[::]:80` can both be listed, as in the default.
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr, false)?)
}

fn bind_std(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// `workers` sockets on one address (the first one decides the port when 0 was asked for).
fn bind_group(addr: SocketAddr, workers: usize) -> io::Result<Vec<std::net::TcpListener>> {
    // One instance per address: SO_REUSEPORT would let a second origin-gate (or anything else
    // with that option) share the port silently, and the kernel would split the traffic between
    // two configurations. A probe without it fails like nginx's "Address already in use".
    if addr.port() != 0 {
        drop(bind_std(addr, false)?);
    }
    let first = bind_std(addr, true)?;
    let actual = first.local_addr()?;
    let mut group = vec![first];
    for _ in 1..workers {
        group.push(bind_std(actual, true)?);
    }
    Ok(group)
}

fn ipv6_unavailable(e: &io::Error) -> bool {
    // EAFNOSUPPORT (97) or EADDRNOTAVAIL: no IPv6 stack or no IPv6 address.
    e.kind() == io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(97)
}

pub(crate) fn bind_hint(addr: SocketAddr, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => format!(
            " — another program (perhaps another origin-gate) already listens on port {}; stop it (`ss -ltnp 'sport = :{}'` shows which) or change the listen address",
            addr.port(),
            addr.port()
        ),
        io::ErrorKind::PermissionDenied => format!(
            " — ports below 1024 need privileges: run under systemd with AmbientCapabilities=CAP_NET_BIND_SERVICE, or `sudo setcap cap_net_bind_service=+ep $(command -v origin-gate)`, or listen on a port above 1023 (port {})",
            addr.port()
        ),
        io::ErrorKind::AddrNotAvailable => " — that address is not configured on this machine; use 0.0.0.0 / [::] or one of its addresses".into(),
        _ => String::new(),
    }
}
#[cfg(test)]
mod tests {
    /// A parked plain connection is one task whose future is this small (hyper's state, ~7 KiB,
    /// lives in a separate allocation only while a request is served): the regression guard for
    /// the ≤ 4 KiB per idle connection measured by `benches/load/run.py --only memory`.
    #[test]
    fn a_parked_plain_connection_is_one_small_task() {
        fn size<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            panic!("runtime");
        };
        rt.block_on(async {
            let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
                panic!("bind");
            };
            let Ok(addr) = listener.local_addr() else {
                panic!("addr");
            };
            let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                panic!("connect");
            };
            let Ok(config) = crate::Config::embedded_default() else {
                panic!("config");
            };
            let Ok(runtime) = crate::serve::state::Runtime::build(config, None) else {
                panic!("runtime state");
            };
            let (_tx, stop) = tokio::sync::watch::channel(false);
            let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
            let Ok(permit) = limit.try_acquire_owned() else {
                panic!("permit");
            };
            let conn = super::Conn {
                stream,
                peer: addr,
                scheme: crate::Scheme::Http,
                shared: crate::serve::state::Shared::new(runtime),
                stop,
                activity: std::sync::Arc::default(),
                _permit: permit,
            };
            let plain = size(&super::serve_plain(conn));
            assert!(plain <= 1536, "serve_plain future is {plain} bytes");
        });
    }
}
