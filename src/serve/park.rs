//! Lean idle connections and overload shedding for plain HTTP/1.1.
//!
//! hyper allocates a connection's read and write buffers (8 KiB each) and keeps them, with the
//! whole connection state, for as long as the connection lives — idle keep-alive connections
//! included. nginx frees a keep-alive connection's buffers between requests; so does this
//! module: a connection is served in *sessions*. When hyper sits idle after a response (nothing
//! in flight, everything flushed, no bytes of a next request yet), the session is ended with
//! `graceful_shutdown` + `poll_without_shutdown`, which gives back the socket and any bytes
//! already read; the hyper state is dropped, and the connection waits, *parked*, holding only its
//! socket until the next byte arrives. A session that is not in a clean keep-alive state (an
//! unread body, `Connection: close`, HTTP/1.0, an upgrade) is never resumed: it runs to its end.
//!
//! Parked connections — idle keep-alive ones and silent ones that never sent a byte — are
//! registered per worker thread, oldest first. At `limits.max_connections` the accept loop closes
//! the oldest parked connection to make room (as HAProxy and Envoy's overload manager do) instead
//! of leaving new visitors in the kernel backlog behind thousands of silent sockets.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// What a connection's requests tell its driver.
#[derive(Default)]
pub struct ConnActivity {
    /// Requests whose response body has not finished yet.
    in_flight: AtomicUsize,
    /// Requests finished in this session.
    served: AtomicUsize,
    /// This session must not be resumed after it ends (see the module comment).
    dirty: AtomicBool,
    /// The backend side of a WebSocket upgrade, joined to the client once the 101 is written.
    upgrade: Mutex<Option<hyper::upgrade::OnUpgrade>>,
    /// Overload: close this connection if it is parked.
    shed: Notify,
    /// A read found nothing while nothing was in flight: hyper is idle.
    idle_read: AtomicBool,
    /// The last thing written was flushed.
    flushed: AtomicBool,
}

impl ConnActivity {
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.idle_read.store(false, Ordering::Release);
    }

    pub fn request_finished(&self) {
        self.served.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// The session cannot go back to a clean keep-alive state (unread body, close, upgrade).
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Was the session marked not resumable?
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// Keeps the backend's upgraded connection for the driver to join to the client's.
    pub fn set_upgrade(&self, backend: hyper::upgrade::OnUpgrade) {
        self.mark_dirty();
        if let Ok(mut slot) = self.upgrade.lock() {
            *slot = Some(backend);
        }
    }

    fn take_upgrade(&self) -> Option<hyper::upgrade::OnUpgrade> {
        self.upgrade.lock().ok().and_then(|mut s| s.take())
    }

    fn wants_park(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self.served.load(Ordering::Acquire) > 0
            && self.idle_read.load(Ordering::Acquire)
            && self.flushed.load(Ordering::Acquire)
            && !self.dirty.load(Ordering::Acquire)
    }

    fn new_session(&self) {
        self.served.store(0, Ordering::Release);
        self.idle_read.store(false, Ordering::Release);
        self.flushed.store(true, Ordering::Release);
    }
}

/// The socket as a session sees it: bytes left over from the previous session first, and the
/// read/flush observations that tell when hyper is idle.
pub struct SessionIo<S> {
    inner: S,
    prefix: Bytes,
    activity: Arc<ConnActivity>,
}

impl<S> SessionIo<S> {
    fn into_parts(self) -> (S, Bytes) {
        (self.inner, self.prefix)
    }
}

/// Hands out bytes read ahead before the connection was parked (or peeked) ahead of the socket:
/// true when it put some into `buf`.
fn serve_prefix(prefix: &mut Bytes, buf: &mut ReadBuf<'_>) -> bool {
    if prefix.is_empty() {
        return false;
    }
    let n = prefix.len().min(buf.remaining());
    buf.put_slice(&prefix[..n]);
    prefix.advance(n);
    true
}

impl<S: AsyncRead + Unpin> AsyncRead for SessionIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if serve_prefix(&mut this.prefix, buf) {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_pending() && this.activity.in_flight.load(Ordering::Acquire) == 0 {
            this.activity.idle_read.store(true, Ordering::Release);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SessionIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.activity.flushed.store(false, Ordering::Release);
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.activity.flushed.store(false, Ordering::Release);
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = polled {
            this.activity.flushed.store(true, Ordering::Release);
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// This worker's parked connections, oldest first.
#[derive(Default)]
struct Registry {
    by_age: BTreeMap<(Instant, u64), Arc<ConnActivity>>,
}

thread_local! {
    static PARKED: RefCell<Registry> = RefCell::new(Registry::default());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Registered while a connection is parked; unregisters on drop.
struct Parked {
    key: (Instant, u64),
}

impl Parked {
    fn register(activity: &Arc<ConnActivity>) -> Parked {
        let key = (Instant::now(), NEXT_ID.fetch_add(1, Ordering::Relaxed));
        PARKED.with(|r| r.borrow_mut().by_age.insert(key, activity.clone()));
        Parked { key }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        PARKED.with(|r| r.borrow_mut().by_age.remove(&self.key));
    }
}

/// Closes this worker's oldest parked connection; false when none is parked here.
pub fn shed_oldest() -> bool {
    let victim = PARKED.with(|r| r.borrow_mut().by_age.pop_first());
    match victim {
        Some((_, activity)) => {
            activity.shed.notify_one();
            true
        }
        None => false,
    }
}

/// Parked connections on this worker.
pub fn parked_here() -> usize {
    PARKED.with(|r| r.borrow().by_age.len())
}

/// Sheds requested by a worker that had nothing parked itself.
static SHED_WANTED: AtomicUsize = AtomicUsize::new(0);
static SHED_NOTIFY: Notify = Notify::const_new();

/// Asks the other workers to close their oldest parked connection (the connection limit is
/// shared; parked connections are per worker). Always false: whether one was shed is only
/// known to the worker that does it.
pub fn shed_elsewhere() -> bool {
    SHED_WANTED.fetch_add(1, Ordering::AcqRel);
    SHED_NOTIFY.notify_waiters();
    false
}

/// Each worker runs this: it honours other workers' shed requests with its own parked
/// connections, calling `on_shed` for each one closed.
pub async fn shedder(on_shed: impl Fn()) {
    loop {
        SHED_NOTIFY.notified().await;
        while SHED_WANTED
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            if shed_oldest() {
                on_shed();
            } else {
                SHED_WANTED.fetch_add(1, Ordering::AcqRel);
                break;
            }
        }
    }
}

/// Why a parked connection stopped waiting.
pub enum Wake {
    /// The next request's first byte is there.
    Data,
    /// Idle past the limit, closed by the client, shed, or shutting down: close.
    Close(&'static str),
}

/// Waits, parked, for the first byte of the next request.
pub async fn park(
    stream: &TcpStream,
    activity: &Arc<ConnActivity>,
    idle_limit: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Wake {
    let _parked = Parked::register(activity);
    // `readable()` may wake spuriously; a one-byte peek waits for real data and leaves it for
    // hyper.
    let mut probe = [0u8; 1];
    tokio::select! {
        r = tokio::time::timeout(idle_limit, stream.peek(&mut probe)) => match r {
            Ok(Ok(n)) if n > 0 => Wake::Data,
            Ok(_) => Wake::Close("closed by the client"),
            Err(_) => Wake::Close("idle"),
        },
        () = activity.shed.notified() => Wake::Close("shed"),
        _ = stop.wait_for(|stopping| *stopping) => Wake::Close("shutdown"),
    }
}

/// Waits, parked, until the socket is readable (the express lane reads itself, so no peek).
/// Readiness may be spurious: the caller reads and comes back on `WouldBlock`, with the same
/// `deadline` (the keep-alive limit counts from the end of the last response).
pub async fn park_readable(
    stream: &TcpStream,
    activity: &Arc<ConnActivity>,
    deadline: tokio::time::Instant,
    stop: &mut watch::Receiver<bool>,
) -> Wake {
    let _parked = Parked::register(activity);
    tokio::select! {
        r = tokio::time::timeout_at(deadline, stream.readable()) => match r {
            Ok(Ok(())) => Wake::Data,
            Ok(Err(_)) => Wake::Close("closed by the client"),
            Err(_) => Wake::Close("idle"),
        },
        () = activity.shed.notified() => Wake::Close("shed"),
        _ = stop.wait_for(|stopping| *stopping) => Wake::Close("shutdown"),
    }
}

/// How long hyper must sit idle before its state is dropped and the connection parks.
const PARK_AFTER: Duration = Duration::from_millis(50);

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How a session ended.
pub enum SessionEnd {
    /// Clean keep-alive idle: park and resume with these bytes already read.
    Resume(TcpStream, Bytes),
    /// The connection is done (closed, errored, not resumable).
    Done,
}

/// Runs one session: hyper's HTTP/1 connection over `stream` (with `leftover` bytes first),
/// until hyper is idle in a clean keep-alive state (→ `Resume`) or the connection ends.
pub async fn session<S, B>(
    stream: TcpStream,
    leftover: Bytes,
    h1: &hyper::server::conn::http1::Builder,
    service: S,
    activity: &Arc<ConnActivity>,
    stop: &mut watch::Receiver<bool>,
) -> SessionEnd
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B> + Unpin,
    S::Future: Unpin + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    activity.new_session();
    let io = SessionIo {
        inner: stream,
        prefix: leftover,
        activity: activity.clone(),
    };
    let mut conn = h1.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let mut parking = false;
    let mut stopping = *stop.borrow();
    if stopping {
        Pin::new(&mut conn).graceful_shutdown();
    }
    // When hyper went idle, and how many requests it had served by then: it parks only after
    // PARK_AFTER of real idleness, so a busy keep-alive connection (the next request a few
    // microseconds away) keeps its hyper state instead of rebuilding it per request.
    let mut idle_since: Option<(tokio::time::Instant, usize)> = None;
    let result = loop {
        // Ready(None): hyper just went idle in a clean keep-alive state.
        let step = std::future::poll_fn(|cx| match conn.poll_without_shutdown(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending
                if idle_since.is_none() && !parking && !stopping && activity.wants_park() =>
            {
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        });
        let park_at = idle_since.map(|(at, _)| at + PARK_AFTER);
        tokio::select! {
            r = step => match r {
                Some(r) => break r,
                None => {
                    idle_since = Some((
                        tokio::time::Instant::now(),
                        activity.served.load(Ordering::Acquire),
                    ));
                }
            },
            () = sleep_until_opt(park_at), if park_at.is_some() && !parking && !stopping => {
                let served_then = idle_since.map_or(0, |(_, n)| n);
                if activity.wants_park() && activity.served.load(Ordering::Acquire) == served_then {
                    parking = true;
                    Pin::new(&mut conn).graceful_shutdown();
                } else {
                    // It served more meanwhile: not idle after all.
                    idle_since = None;
                }
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
        return SessionEnd::Done;
    }
    let parts = conn.into_parts();
    let (stream, unread_prefix) = parts.io.into_inner().into_parts();
    if let Some(backend) = activity.take_upgrade() {
        let mut client = Rewound::new(stream, join(parts.read_buf, unread_prefix));
        if let Ok(backend) = backend.await {
            let mut backend = hyper_util::rt::TokioIo::new(backend);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                tracing::debug!(error = %e, "upgraded connection ended with an error");
            }
        }
        return SessionEnd::Done;
    }
    if parking && !stopping && !activity.dirty.load(Ordering::Acquire) {
        SessionEnd::Resume(stream, join(parts.read_buf, unread_prefix))
    } else {
        SessionEnd::Done
    }
}

/// The bytes read but not yet used, in order, in an allocation of their own: an empty or small
/// slice of hyper's read buffer would otherwise keep its whole 8 KiB alive while parked.
fn join(first: Bytes, then: Bytes) -> Bytes {
    if first.is_empty() && then.is_empty() {
        return Bytes::new();
    }
    let mut b = BytesMut::with_capacity(first.len() + then.len());
    b.extend_from_slice(&first);
    b.extend_from_slice(&then);
    b.freeze()
}

/// A stream with bytes already read put back in front (for an upgraded connection).
struct Rewound {
    inner: TcpStream,
    prefix: Bytes,
}

impl Rewound {
    fn new(inner: TcpStream, prefix: Bytes) -> Rewound {
        Rewound { inner, prefix }
    }
}

impl AsyncRead for Rewound {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if serve_prefix(&mut this.prefix, buf) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
