//! The express lane for plain HTTP/1.1: the common request — a `GET` or `HEAD` without a body,
//! an upgrade or `Expect`, whose head arrived whole — is parsed here (with `httparse`, the parser
//! hyper uses) and its response written here, without a hyper connection around it. The
//! decision, the backend exchange, the response rewrite and the access record are the same code
//! hyper's requests go through (`proxy::respond_to`); only the framing on the visitor's socket is
//! this module's. Everything else — bodies, upgrades, `Connection: close`, HTTP/1.0, a head
//! split over several reads, anything httparse or `http` refuses — goes to a hyper session with
//! the bytes read so far, so hyper's answers (400, 408, 431, …) and its body handling stay the
//! only ones.
//!
//! Why: on the load benchmark (1 KiB responses, 2 cores) the hyper server connection around each
//! request cost more CPU than the decision, the backend exchange and the log line together; a
//! bare tokio HTTP/1.1 relay used 0.65× nginx's CPU per request where origin-gate used 1.85×.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::decide::pipeline::ConnContext;
use crate::serve::direct::{self, put_field};
use crate::serve::park::{self, ConnActivity};
use crate::serve::proxy::{self, LoggedBody};
use crate::serve::state::Shared;

/// How much one read takes for a head (hyper's initial read buffer is the same 8 KiB). A head
/// that does not arrive whole in it goes to hyper, which reads on up to `limits.max_header_bytes`.
const HEAD_BUFFER: usize = 8 * 1024;

/// More headers than this and the head goes to hyper (which applies `limits.max_headers`).
const MAX_HEADERS: usize = 64;

/// Header slots reserved beyond the request's own for the ones origin-gate adds.
const FORWARDING_ROOM: usize = 10;

/// How long a connection waits for its next request before it parks.
const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

/// Body bytes copied into the write buffer rather than written on their own.
const COALESCE: usize = 16 * 1024;

/// How the express lane left the connection.
pub enum Handoff {
    /// Serve the next request with hyper, these bytes (a head, or part of one) first.
    Hyper(Bytes),
    /// The connection is finished (closed by either side, shed, idle, shutting down, broken).
    Done,
}

/// Everything a connection's requests share.
pub struct Lane<'a> {
    pub shared: &'a Arc<Shared>,
    pub conn: &'a Arc<ConnContext>,
    pub activity: &'a Arc<ConnActivity>,
    pub stop: &'a mut watch::Receiver<bool>,
}

/// Serves requests on `stream` while they are express ones, starting with `leftover` (bytes a
/// hyper session or the first park left unread).
pub async fn serve(stream: &mut TcpStream, leftover: Bytes, lane: Lane<'_>) -> Handoff {
    let mut buf = BytesMut::new();
    // One linger timer for the connection's life, moved forward before each wait: tokio extends
    // a registered timer's deadline with one atomic update, where a timer per wait costs an
    // insert into and a removal from the timer wheel.
    let mut linger = std::pin::pin!(tokio::time::sleep(LINGER));
    if !leftover.is_empty() {
        buf.reserve(HEAD_BUFFER.max(leftover.len()));
        buf.extend_from_slice(&leftover);
    }
    loop {
        if *lane.stop.borrow() {
            return Handoff::Done;
        }
        if buf.is_empty() {
            // Idle between requests: hold only the socket (the buffer is freed), parked where
            // overload shedding finds it, until the next request's bytes or the keep-alive limit.
            buf = BytesMut::new();
            let idle = lane.shared.runtime.load().config.limits.header_read_timeout;
            let now = tokio::time::Instant::now();
            let wait = Wait {
                deadline: now + idle,
                linger_until: now + LINGER,
                linger: linger.as_mut(),
            };
            if !read_some(stream, &mut buf, wait, lane.activity, lane.stop).await {
                return Handoff::Done;
            }
        }
        let start = Instant::now();
        let Some(len) = head_len(&buf) else {
            // The head is not whole yet: hyper reads the rest under its header timeout.
            return Handoff::Hyper(buf.freeze());
        };
        let head = buf.split_to(len).freeze();
        let Some(req) = parse(&head) else {
            let mut rest = BytesMut::with_capacity(head.len() + buf.len());
            rest.extend_from_slice(&head);
            rest.extend_from_slice(&buf);
            return Handoff::Hyper(rest.freeze());
        };
        let head_request = req.method == Method::HEAD;
        // Boxed per request, not pinned in the connection's future: that future lives as long as
        // the connection, and an idle keep-alive connection would carry the request's ~3.5 KB
        // state while it waits (measured: 4.97 → 8.44 KiB per idle connection).
        let answer = Box::pin(proxy::respond_to(
            lane.shared.clone(),
            lane.conn.clone(),
            lane.activity.clone(),
            req,
            None,
            start,
        ));
        // A visitor who leaves while the backend works cancels the backend request (dropping
        // the answer drops the exchange and finishes the record), as hyper's server does.
        let response = tokio::select! {
            biased;
            r = answer => r,
            () = client_gone(stream) => return Handoff::Done,
        };
        drop(head);
        let kept = write_response(stream, response, head_request).await;
        if !kept || lane.activity.is_dirty() {
            let _ = stream.shutdown().await;
            return Handoff::Done;
        }
    }
}

/// How long `read_some` waits: the connection's idle limit, and until when it lingers (on the
/// connection's own timer) before it parks.
struct Wait<'a> {
    deadline: tokio::time::Instant,
    linger_until: tokio::time::Instant,
    linger: Pin<&'a mut tokio::time::Sleep>,
}

/// Reads what is there (waiting, parked, when nothing is): false when the connection should
/// close (closed by the client, an error, idle past `deadline`, shed, shutting down).
async fn read_some(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    wait: Wait<'_>,
    activity: &Arc<ConnActivity>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let Wait {
        deadline,
        linger_until,
        mut linger,
    } = wait;
    let mut lingered = false;
    // Bounded: each round after the first needs a readiness event, and the deadline ends the
    // wait.
    for _ in 0..1024 {
        buf.reserve(HEAD_BUFFER);
        // tokio's read: after a short read it waits for the next readiness event instead of
        // trying a read that would block, so an idle wait costs no extra system call.
        let now = std::future::poll_fn(|cx| match direct::poll_read_buf(stream, cx, buf) {
            Poll::Pending => Poll::Ready(None),
            Poll::Ready(r) => Poll::Ready(Some(r)),
        })
        .await;
        match now {
            Some(Ok(0)) | Some(Err(_)) => return false,
            Some(Ok(_)) => return true,
            None => {}
        }
        // Nothing there: give the buffer back while waiting.
        *buf = BytesMut::new();
        if !lingered {
            // A busy keep-alive connection's next request is usually microseconds away: wait
            // that long with a timer only, and park (where shedding and shutdown reach it)
            // after LINGER of real idleness, as hyper sessions do (`park::PARK_AFTER`).
            lingered = true;
            linger.as_mut().reset(deadline.min(linger_until));
            tokio::select! {
                biased;
                ready = stream.readable() => match ready {
                    Ok(()) => continue,
                    Err(_) => return false,
                },
                () = linger.as_mut() => {}
            }
        }
        if let park::Wake::Close(_) = park::park_readable(stream, activity, deadline, stop).await {
            return false;
        }
    }
    false
}

/// Completes when the visitor closed the connection (or it broke); pending while it is open.
/// Bytes the visitor sends meanwhile (a pipelined request) stay unread: the close is seen from
/// the socket's read-closed readiness (EPOLLRDHUP), as nginx sees it, not from a read.
async fn client_gone(stream: &TcpStream) {
    // Bounded: each round needs a new readiness event; a visitor that keeps sending bytes is
    // watched for 64 of them, then trusted to be there (its next request will tell).
    for _ in 0..64 {
        let Ok(ready) = stream.ready(tokio::io::Interest::READABLE).await else {
            return;
        };
        if ready.is_read_closed() {
            return;
        }
        // Readable with data: forget this readiness (the bytes stay in the socket) and wait
        // for the next event — a close raises one.
        let _ = stream.try_io(tokio::io::Interest::READABLE, || {
            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
        });
    }
    std::future::pending::<()>().await;
}

/// The length of the head (through the blank line) when it is all in `buf`.
fn head_len(buf: &[u8]) -> Option<usize> {
    let end = buf.len().min(HEAD_BUFFER);
    memchr_crlfcrlf(&buf[..end])
}

fn memchr_crlfcrlf(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = b.get(i..)?.iter().position(|&c| c == b'\n') {
        let nl = i + off;
        // "\r\n\r\n" or a bare "\n\n" (httparse accepts both line ends).
        if nl >= 3 && &b[nl - 3..=nl] == b"\r\n\r\n" {
            return Some(nl + 1);
        }
        if nl >= 1 && b[nl - 1] == b'\n' {
            return Some(nl + 1);
        }
        i = nl + 1;
    }
    None
}

/// The head as `http` parts when it is an express request; None sends it to hyper.
fn parse(head: &Bytes) -> Option<http::request::Parts> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return None,
    }
    if req.version != Some(1) {
        return None;
    }
    let method = match req.method? {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        _ => return None,
    };
    let uri = Uri::from_maybe_shared(head.slice_ref(req.path?.as_bytes())).ok()?;
    // Room for what the decision adds (the forwarding headers, `Via`): no rehash on the way.
    let mut headers = http::HeaderMap::with_capacity(req.headers.len() + FORWARDING_ROOM);
    for field in req.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        // Framing, upgrades and connection handling stay hyper's: a body, `Expect: 100-continue`,
        // `Upgrade` or `Connection` of any kind sends the request there.
        if name == CONTENT_LENGTH
            || name == TRANSFER_ENCODING
            || name == CONNECTION
            || name == http::header::UPGRADE
            || name == http::header::EXPECT
        {
            return None;
        }
        let value = HeaderValue::from_maybe_shared(head.slice_ref(field.value)).ok()?;
        headers.append(name, value);
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    Some(parts)
}

/// How the body is framed on the visitor's connection.
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Writes the response (head, then body frames as they come) the way hyper's HTTP/1.1 server
/// would frame it. True when the connection may carry another request.
async fn write_response(
    stream: &mut TcpStream,
    response: Response<LoggedBody>,
    head_request: bool,
) -> bool {
    let (mut head, mut body) = response.into_parts();
    let status = head.status;
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut close = head
        .headers
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    if status == StatusCode::NO_CONTENT || status.is_informational() {
        // No body, and no framing fields for one (RFC 9110 §8.6, RFC 9112 §6.1).
        head.headers.remove(CONTENT_LENGTH);
        head.headers.remove(TRANSFER_ENCODING);
    }
    let mut out = BytesMut::with_capacity(512);
    let framing = if no_body {
        // A HEAD's or 304's fields describe the body a GET would get: written as they are.
        write_head(&mut out, status, &head.headers);
        let unframed = !head.headers.contains_key(CONTENT_LENGTH)
            && !head.headers.contains_key(TRANSFER_ENCODING);
        if let (true, true, Some(n)) = (head_request, unframed, body.size_hint().exact()) {
            // hyper's server says the length of the body a GET would get, when it knows it.
            put_field(
                &mut out,
                b"content-length",
                itoa::Buffer::new().format(n).as_bytes(),
            );
        }
        Framing::None
    } else if head.headers.contains_key(TRANSFER_ENCODING) {
        // The backend's chunking was undone by the client; it is redone here.
        head.headers.remove(TRANSFER_ENCODING);
        head.headers.remove(CONTENT_LENGTH);
        write_head(&mut out, status, &head.headers);
        put_field(&mut out, b"transfer-encoding", b"chunked");
        Framing::Chunked
    } else if let Some(n) = declared_length(&head.headers) {
        write_head(&mut out, status, &head.headers);
        Framing::Length(n)
    } else {
        head.headers.remove(CONTENT_LENGTH);
        write_head(&mut out, status, &head.headers);
        match body.size_hint().exact() {
            Some(n) => {
                put_field(
                    &mut out,
                    b"content-length",
                    itoa::Buffer::new().format(n).as_bytes(),
                );
                Framing::Length(n)
            }
            None => {
                put_field(&mut out, b"transfer-encoding", b"chunked");
                Framing::Chunked
            }
        }
    };
    out.put_slice(b"\r\n");
    if no_body {
        // The body (empty, or a HEAD's) is not sent; dropping it ends the record.
        drop(body);
        return stream.write_all(&out).await.is_ok() && !close;
    }
    let mut remaining = match framing {
        Framing::Length(n) => Some(n),
        Framing::Chunked | Framing::None => None,
    };
    // Bounded by the body: each round takes one frame, and a body ends.
    loop {
        let frame = match next_frame_now(&mut body) {
            Some(f) => f,
            None => {
                // Not ready: what is written so far goes out before waiting.
                if !out.is_empty() && stream.write_all(&out).await.is_err() {
                    return false;
                }
                out.clear();
                // A visitor who leaves while the backend's body stalls ends the exchange now.
                tokio::select! {
                    biased;
                    f = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)) => f,
                    () = client_gone(stream) => return false,
                }
            }
        };
        match frame {
            None => break,
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers: not forwarded on HTTP/1.1, as hyper's server does
                };
                if data.is_empty() {
                    continue;
                }
                let data = match &mut remaining {
                    Some(left) => {
                        let take = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                        *left -= take as u64;
                        if take < data.len() {
                            close = true; // more than declared: the rest is not sent
                        }
                        data.slice(..take)
                    }
                    None => data,
                };
                if !put_data(stream, &mut out, data, remaining.is_none()).await {
                    return false;
                }
            }
            Some(Err(_)) => {
                // The backend broke off mid-body: the visitor's framing cannot be completed.
                let _ = stream.write_all(&out).await;
                return false;
            }
        }
    }
    match remaining {
        Some(0) => {}
        Some(_) => close = true, // shorter than declared: the visitor must not wait for more
        None => out.put_slice(b"0\r\n\r\n"),
    }
    drop(body);
    if !out.is_empty() && stream.write_all(&out).await.is_err() {
        return false;
    }
    !close
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The next body frame if it is ready now (the write buffer is flushed before waiting).
fn next_frame_now(body: &mut LoggedBody) -> Option<Option<Result<Frame<Bytes>, BoxError>>> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(f) => Some(f),
        Poll::Pending => None,
    }
}

type BoxError = crate::serve::respond::BoxError;

/// Appends (small) or writes (large) one data frame, chunk-framed when `chunked`.
async fn put_data(stream: &mut TcpStream, out: &mut BytesMut, data: Bytes, chunked: bool) -> bool {
    if chunked {
        let mut hex = [0u8; 16];
        let digits = hex_len(data.len(), &mut hex);
        out.put_slice(digits);
        out.put_slice(b"\r\n");
    }
    if out.len() + data.len() <= COALESCE {
        out.put_slice(&data);
    } else {
        if !out.is_empty() && stream.write_all(out).await.is_err() {
            return false;
        }
        out.clear();
        if stream.write_all(&data).await.is_err() {
            return false;
        }
    }
    if chunked {
        out.put_slice(b"\r\n");
    }
    true
}

fn hex_len(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

fn write_head(out: &mut BytesMut, status: StatusCode, headers: &http::HeaderMap) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in headers {
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !headers.contains_key(DATE) {
        date::with(|d| put_field(out, b"date", d));
    }
}

/// The `Date` field, formatted once per second per worker (as hyper does).
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }

    pub fn with(f: impl FnOnce(&[u8])) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs || c.1.is_empty() {
                *c = (secs, httpdate::fmt_http_date(now));
            }
            f(c.1.as_bytes());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_is_found_with_either_line_end() {
        assert_eq!(
            memchr_crlfcrlf(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest"),
            Some(27)
        );
        assert_eq!(
            memchr_crlfcrlf(b"GET / HTTP/1.1\nHost: a\n\nrest"),
            Some(24)
        );
        assert_eq!(memchr_crlfcrlf(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }

    #[test]
    fn only_bodiless_gets_and_heads_take_the_express_lane() {
        let ok = Bytes::from_static(b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n");
        let Some(parts) = parse(&ok) else {
            panic!("a plain GET is express");
        };
        assert_eq!(parts.uri, "/a?b=c");
        assert_eq!(parts.headers.len(), 2);
        for refused in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            b"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(
                parse(&Bytes::copy_from_slice(refused)).is_none(),
                "{:?} must go to hyper",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        let mut b = [0u8; 16];
        assert_eq!(hex_len(0, &mut b), b"0");
        assert_eq!(hex_len(1024, &mut b), b"400");
        assert_eq!(hex_len(65535, &mut b), b"ffff");
    }
}
