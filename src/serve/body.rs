//! Request bodies on their way to the backend.
//!
//! A WordPress origin has few PHP workers (php-fpm `pm.max_children` is often 5–20). A client
//! that trickles its body must not hold one of them: bodies up to `limits.request_buffer` are
//! read completely — under `limits.body_read_timeout` between two reads — before the backend is
//! contacted, like nginx's `proxy_request_buffering on`. Larger bodies (media uploads) stream
//! with flat memory, under the same read timeout. Memory for buffering is bounded process-wide
//! by `limits.request_buffer_total`; past it, bodies stream instead of queueing.
//!
//! The body also counts its bytes for the access log, enforces `[[limits.body]]` (413), tells a
//! broken body (400) and a stalled client (408) apart from a backend failure (502/504), and says
//! when the client finished sending: `backend.response_timeout` starts there, so a long, steady
//! upload is not mistaken for a slow backend.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::Notify;
use tokio::time::Sleep;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The size of a polled data frame, for the byte counters.
pub fn data_len<E>(polled: &Poll<Option<Result<Frame<Bytes>, E>>>) -> Option<u64> {
    match polled {
        Poll::Ready(Some(Ok(frame))) => frame.data_ref().map(|d| d.len() as u64),
        _ => None,
    }
}

/// The body went past its `[[limits.body]]` maximum.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than the configured limit")]
pub struct BodyTooLarge;

/// The client sent nothing for `limits.body_read_timeout` in the middle of its body.
#[derive(Debug, thiserror::Error)]
#[error("the client stopped sending its request body (limits.body_read_timeout)")]
pub struct BodyStalled;

/// How a request body went, shared between the body (which the backend client polls) and the
/// request handler (which decides the status and the log line).
pub struct BodyState {
    /// Bytes received from the client.
    pub count: AtomicU64,
    pub exceeded: AtomicBool,
    /// The client sent a broken body (bad chunk size, early close).
    pub client_failed: AtomicBool,
    /// The client stalled (`limits.body_read_timeout`).
    pub stalled: AtomicBool,
    done: AtomicBool,
    done_notify: Notify,
    /// Milliseconds since `start` of the last frame handed to the backend: while it moves, the
    /// backend is reading; when it stops with the body unfinished, the backend is not.
    progress_ms: AtomicU64,
    start: Instant,
}

impl Default for BodyState {
    fn default() -> Self {
        BodyState {
            count: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
            client_failed: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            done: AtomicBool::new(false),
            done_notify: Notify::new(),
            progress_ms: AtomicU64::new(0),
            start: Instant::now(),
        }
    }
}

impl BodyState {
    fn finish(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.done_notify.notify_waiters();
        }
    }

    fn progressed(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.progress_ms.store(ms, Ordering::Relaxed);
    }

    /// Has the client finished sending (or was there nothing to send)?
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// When the last body frame went to the backend.
    pub fn last_progress(&self) -> Instant {
        self.start + Duration::from_millis(self.progress_ms.load(Ordering::Relaxed))
    }

    /// Resolves once the client has sent its whole body.
    pub async fn finished(&self) {
        let notified = self.done_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_done() {
            return;
        }
        notified.await;
    }
}

/// Process-wide memory for buffered request bodies (`limits.request_buffer_total`).
#[derive(Debug, Default)]
pub struct BufferBudget {
    used: AtomicUsize,
}

impl BufferBudget {
    /// Takes `n` bytes from a budget of `total`, or nothing when that would exceed it.
    fn take(self: &Arc<Self>, n: usize, total: usize) -> Option<Reservation> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.checked_add(n).filter(|&next| next <= total)?;
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Some(Reservation {
                        budget: self.clone(),
                        bytes: n,
                    })
                }
                Err(now) => used = now,
            }
        }
    }

    /// Bytes of buffered bodies held right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Buffer memory held by one request; given back when the body is dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BufferBudget>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The buffering and timing settings of one request.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// `limits.request_buffer`: bodies up to this size are read whole first; 0 = never.
    pub buffer: u64,
    /// `limits.request_buffer_total`.
    pub buffer_total: usize,
    /// `limits.body_read_timeout`: the most time between two reads of the body.
    pub read_timeout: Duration,
    /// `[[limits.body]]` for this path.
    pub max: Option<u64>,
}

/// The request body as the backend client sends it: chunks already read (all of a buffered
/// body, or the start of one that turned out too large), then — when streaming — the rest from
/// the client.
pub struct ForwardBody {
    chunks: VecDeque<Bytes>,
    rest: Option<Incoming>,
    limits: BodyLimits,
    /// Armed while waiting for the client's next frame.
    timer: Option<Pin<Box<Sleep>>>,
    state: Arc<BodyState>,
    _reservation: Option<Reservation>,
}

/// What reading the start of a body came to.
pub enum Prepared {
    /// Ready to send: whole (buffered or empty), or a prefix plus the stream.
    Body(ForwardBody),
    /// The client stalled before the body was complete: 408, nothing sent to the backend.
    Stalled,
    /// Over `[[limits.body]]`: 413, nothing sent.
    TooLarge,
    /// A broken body: 400, nothing sent.
    Broken,
}

impl ForwardBody {
    /// No body at all (GET, the ACME exemption).
    pub fn empty(state: Arc<BodyState>, limits: BodyLimits) -> ForwardBody {
        state.finish();
        ForwardBody {
            chunks: VecDeque::new(),
            rest: None,
            limits,
            timer: None,
            state,
            _reservation: None,
        }
    }

    /// Reads the body whole when it fits `limits.buffer` and the budget; otherwise returns at
    /// once (declared too large) or as soon as it outgrows them, streaming the rest.
    pub async fn prepare(
        body: Incoming,
        limits: BodyLimits,
        budget: &Arc<BufferBudget>,
        state: Arc<BodyState>,
    ) -> Prepared {
        if body.is_end_stream() {
            return Prepared::Body(ForwardBody::empty(state, limits));
        }
        let declared = body.size_hint().exact();
        let streaming = |chunks, reservation, rest| ForwardBody {
            chunks,
            rest: Some(rest),
            limits,
            timer: None,
            state: state.clone(),
            _reservation: reservation,
        };
        if limits.buffer == 0 || declared.is_some_and(|n| n > limits.buffer) {
            return Prepared::Body(streaming(VecDeque::new(), None, body));
        }
        // A declared length is reserved whole up front; a chunked body grows its reservation.
        let mut reservation = match declared {
            Some(n) => match budget.take(n as usize, limits.buffer_total) {
                Some(r) => Some(r),
                None => return Prepared::Body(streaming(VecDeque::new(), None, body)),
            },
            None => None,
        };
        let mut body = body;
        let mut chunks = VecDeque::new();
        let mut total: u64 = 0;
        loop {
            let next = tokio::time::timeout(
                limits.read_timeout,
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)),
            )
            .await;
            let frame = match next {
                Err(_) => {
                    state.stalled.store(true, Ordering::Relaxed);
                    return Prepared::Stalled;
                }
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    state.client_failed.store(true, Ordering::Relaxed);
                    return Prepared::Broken;
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers are not passed on
            };
            total += data.len() as u64;
            state.count.fetch_add(data.len() as u64, Ordering::Relaxed);
            if limits.max.is_some_and(|max| total > max) {
                state.exceeded.store(true, Ordering::Relaxed);
                return Prepared::TooLarge;
            }
            if declared.is_none() {
                let grown = reservation.as_ref().map_or(0, |r| r.bytes) + data.len();
                let bigger = (total <= limits.buffer)
                    .then(|| budget.take(grown, limits.buffer_total))
                    .flatten();
                match bigger {
                    // The old reservation is given back as the new one replaces it.
                    Some(r) => reservation = Some(r),
                    None => {
                        chunks.push_back(data);
                        return Prepared::Body(streaming(chunks, reservation, body));
                    }
                }
            }
            chunks.push_back(data);
            if body.is_end_stream() {
                break;
            }
        }
        state.finish();
        Prepared::Body(ForwardBody {
            chunks,
            rest: None,
            limits,
            timer: None,
            state,
            _reservation: reservation,
        })
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.chunks.pop_front() {
            this.state.progressed();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        let Some(rest) = this.rest.as_mut() else {
            this.state.finish();
            return Poll::Ready(None);
        };
        let polled = Pin::new(rest).poll_frame(cx);
        match &polled {
            Poll::Pending => {
                let timeout = this.limits.read_timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.state.stalled.store(true, Ordering::Relaxed);
                    this.rest = None;
                    return Poll::Ready(Some(Err(Box::new(BodyStalled))));
                }
                return Poll::Pending;
            }
            Poll::Ready(None) => this.state.finish(),
            Poll::Ready(Some(Err(_))) => {
                // The visitor sent a broken body: their fault, not the backend's.
                this.state.client_failed.store(true, Ordering::Relaxed);
            }
            Poll::Ready(Some(Ok(_))) => {}
        }
        this.timer = None;
        if let Some(len) = data_len(&polled) {
            let total = this.state.count.fetch_add(len, Ordering::Relaxed) + len;
            this.state.progressed();
            if this.limits.max.is_some_and(|max| total > max) {
                this.state.exceeded.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
            }
        }
        let polled = polled.map(|f| f.map(|r| r.map_err(BoxError::from)));
        if this.rest.as_ref().is_some_and(Body::is_end_stream) {
            this.state.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.chunks.is_empty() && self.rest.as_ref().is_none_or(Body::is_end_stream);
        if end {
            self.state.finish();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self.chunks.iter().map(|c| c.len() as u64).sum();
        match &self.rest {
            None => SizeHint::with_exact(buffered),
            Some(rest) => {
                let hint = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(hint.lower() + buffered);
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper + buffered);
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_given_back_and_never_exceeded() {
        let budget = Arc::new(BufferBudget::default());
        let a = budget.take(600, 1000);
        assert!(a.is_some());
        assert!(budget.take(500, 1000).is_none());
        let b = budget.take(400, 1000);
        assert_eq!(budget.used(), 1000);
        drop(a);
        assert_eq!(budget.used(), 400);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
