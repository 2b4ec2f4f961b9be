//! Bodiless `GET`/`HEAD` requests to a plain-http backend at an IP address, on this worker's own
//! keep-alive connections, exchanged in the request's task: the head is written with one system
//! call, the response head parsed with `httparse` (hyper's parser) and the body read by the
//! response body itself as the visitor's side pulls it. No connection task, channel or pool
//! checkout stands between a request and its backend socket, and no second HTTP stack encodes
//! and decodes the same head. Everything else (bodies, upgrades, https and named backends) keeps
//! hyper-util's client, whose errors and timeouts these mirror.
//!
//! Framing follows RFC 9112 §6.3: no body after `HEAD`, 1xx, 204 and 304; `Transfer-Encoding`
//! ending in `chunked` is decoded strictly (and the connection not reused when `Content-Length`
//! came with it); differing `Content-Length` values are a broken response (502); without either
//! the body runs to the close. A connection goes back to the pool only after a complete response
//! with nothing after it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Response heads larger than this are a broken response (hyper's client allows ~400 KiB; a
/// WordPress head with many cookies is a few KiB).
const MAX_HEAD: usize = 64 * 1024;
/// Fields in a response head (hyper's client default).
const MAX_FIELDS: usize = 100;
/// What one read asks for; the buffer never holds more than `READ_LIMIT` (the 64 KiB cap of the
/// hyper client, for the same memory reason: 256 concurrent large responses).
const READ_CHUNK: usize = 16 * 1024;
const READ_LIMIT: usize = 64 * 1024;
/// Trailer fields after a chunked body are read and dropped, up to this much.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why an exchange failed, for `upstream::UpstreamError`.
#[derive(Debug)]
pub enum Failure {
    Connect(io::Error),
    ConnectTimeout,
    ResponseTimeout,
    Broken(String),
}

/// This worker's idle keep-alive connections to direct backends, newest last.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    addr: SocketAddr,
    stream: TcpStream,
    since: Instant,
}

/// The pool's limits (`backend.max_idle_connections`, `backend.idle_timeout`).
#[derive(Clone, Copy)]
pub struct PoolLimits {
    pub max_idle: usize,
    pub idle_timeout: Duration,
}

impl Pool {
    /// The newest idle connection to `addr` that is still open.
    fn take(&self, addr: SocketAddr, limits: PoolLimits) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded by the pool's size: each round removes one entry.
        while let Some(pos) = idle.iter().rposition(|i| i.addr == addr) {
            let entry = idle.remove(pos);
            if entry.since.elapsed() < limits.idle_timeout && still_open(&entry.stream) {
                return Some(entry.stream);
            }
        }
        None
    }

    /// Closes idle connections past the idle timeout or closed by the backend (run every few
    /// seconds per worker, so a quiet site holds no stale sockets in CLOSE_WAIT).
    pub fn sweep(&self, limits: PoolLimits) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|i| i.since.elapsed() < limits.idle_timeout && still_open(&i.stream));
    }

    fn put(&self, addr: SocketAddr, stream: TcpStream, limits: PoolLimits) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Expired ones are the oldest, at the front.
        let expired = idle
            .iter()
            .take_while(|i| i.since.elapsed() >= limits.idle_timeout)
            .count();
        idle.drain(..expired);
        if idle.len() >= limits.max_idle {
            return;
        }
        idle.push(Idle {
            addr,
            stream,
            since: Instant::now(),
        });
    }
}

/// An idle connection the backend has not closed (nor sent anything on). Costs no system call
/// unless the socket was reported readable: then a one-byte read tells EOF or stray bytes
/// (either way unusable) from a stale readiness flag.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }
}

/// Can this request go the direct way (no body, no upgrade)?
pub fn eligible<B: Body>(req: &Request<B>) -> bool {
    (req.method() == Method::GET || req.method() == Method::HEAD)
        && req.body().is_end_stream()
        && !req.headers().contains_key(http::header::UPGRADE)
}

/// The exchange's settings.
pub struct Target {
    pub addr: SocketAddr,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub limits: PoolLimits,
}

/// A bodiless request as bytes, ready for `send` (prepared before any await, so the request
/// itself is not part of the exchange's future).
pub struct Prepared {
    head: BytesMut,
    head_request: bool,
}

impl Prepared {
    pub fn new<B>(req: &Request<B>, authority: &str) -> Prepared {
        let mut head = BytesMut::with_capacity(1024);
        write_request_head(&mut head, req, authority);
        Prepared {
            head,
            head_request: req.method() == Method::HEAD,
        }
    }
}

/// Sends a bodiless request and reads the response head; the body is read by the returned
/// `DirectBody` as it is polled.
pub async fn send(
    pool: &Arc<Pool>,
    target: Target,
    prepared: Prepared,
) -> Result<Response<DirectBody>, Failure> {
    let Prepared { head, head_request } = prepared;
    // A pooled connection the backend closed meanwhile fails before any response byte: the
    // request (GET or HEAD, idempotent) is sent once more on a new connection, as hyper-util
    // retries it.
    for attempt in 0..2 {
        let (stream, pooled) = match pool.take(target.addr, target.limits) {
            Some(s) if attempt == 0 => (s, true),
            // Boxed: a new connection is the rare case; its future would enlarge every exchange's.
            _ => (Box::pin(connect(&target)).await?, false),
        };
        let exchange = exchange(stream, &head, head_request);
        match tokio::time::timeout(target.response_timeout, exchange).await {
            Err(_) => return Err(Failure::ResponseTimeout),
            Ok(Ok((resp, framing, stream, rest))) => {
                let mut body = DirectBody {
                    stream: Some(stream),
                    buf: rest,
                    framing,
                    pool: pool.clone(),
                    addr: target.addr,
                    limits: target.limits,
                };
                // A bodiless response hands its connection back at once.
                body.finish_if_done();
                return Ok(resp.map(|()| body));
            }
            Ok(Err(Exchange::Closed)) if pooled => continue,
            Ok(Err(Exchange::Closed)) => {
                return Err(Failure::Broken(
                    "connection closed before the response head".into(),
                ))
            }
            Ok(Err(Exchange::Broken(detail))) => return Err(Failure::Broken(detail)),
        }
    }
    Err(Failure::Broken(
        "connection closed before the response head".into(),
    ))
}

async fn connect(target: &Target) -> Result<TcpStream, Failure> {
    match tokio::time::timeout(target.connect_timeout, TcpStream::connect(target.addr)).await {
        Err(_) => Err(Failure::ConnectTimeout),
        Ok(Err(e)) => Err(Failure::Connect(e)),
        Ok(Ok(s)) => {
            // Small request heads must not wait for Nagle's algorithm on the loopback hop.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

enum Exchange {
    /// Closed (or reset) before any byte of a response: safe to retry on a new connection.
    Closed,
    Broken(String),
}

type Exchanged = (Response<()>, Framing, TcpStream, BytesMut);

async fn exchange(
    mut stream: TcpStream,
    head: &[u8],
    head_request: bool,
) -> Result<Exchanged, Exchange> {
    if let Err(e) = stream.write_all(head).await {
        return Err(if resets(&e) {
            Exchange::Closed
        } else {
            Exchange::Broken(e.to_string())
        });
    }
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Bounded: each round reads more bytes, and the head is limited to MAX_HEAD; 1xx heads
    // before the final one are skipped (a few at most; each one consumes bytes).
    loop {
        match parse_response(&buf) {
            Parsed::Incomplete if buf.len() >= MAX_HEAD => {
                return Err(Exchange::Broken(format!(
                    "response head larger than {MAX_HEAD} bytes"
                )))
            }
            Parsed::Incomplete => {
                buf.reserve(READ_CHUNK);
                match read_buf(&mut stream, &mut buf).await {
                    Ok(0) if buf.is_empty() => return Err(Exchange::Closed),
                    Ok(0) => {
                        return Err(Exchange::Broken(
                            "connection closed in the middle of the response head".into(),
                        ))
                    }
                    Ok(_) => {}
                    Err(e) if buf.is_empty() && resets(&e) => return Err(Exchange::Closed),
                    Err(e) => return Err(Exchange::Broken(e.to_string())),
                }
            }
            Parsed::Informational(len) => buf.advance(len),
            Parsed::Bad(why) => return Err(Exchange::Broken(why)),
            Parsed::Complete(len, head) => {
                let bytes = buf.split_to(len).freeze();
                let (resp, framing) =
                    build_response(head, &bytes, head_request).map_err(Exchange::Broken)?;
                return Ok((resp, framing, stream, buf));
            }
        }
    }
}

fn resets(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

async fn read_buf(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_read_buf(stream, cx, buf)).await
}

/// One read into the buffer's spare capacity, through tokio's `poll_read` (which, after a short
/// read, waits for the next readiness event instead of trying a read that would block).
pub fn poll_read_buf(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf)
}

fn write_request_head<B>(out: &mut BytesMut, req: &Request<B>, authority: &str) {
    out.put_slice(req.method().as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(
        req.uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .as_bytes(),
    );
    out.put_slice(b" HTTP/1.1\r\n");
    if !req.headers().contains_key(HOST) {
        put_field(out, b"host", authority.as_bytes());
    }
    for (name, value) in req.headers() {
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// One `name: value` line of an HTTP/1.1 head (both lanes write heads this way).
pub fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

enum Parsed {
    Incomplete,
    /// A 1xx head (not 101) of this length, to skip.
    Informational(usize),
    Complete(usize, Head),
    Bad(String),
}

/// A final response head's fields as offsets into the buffer, so its values can share the
/// buffer's bytes once the head is split off (hyper's client does the same).
struct Head {
    status: StatusCode,
    version: Version,
    fields: Vec<(HeaderName, usize, usize)>,
}

/// Parses the response head at the front of `buf`, once.
fn parse_response(buf: &[u8]) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut parsed = httparse::Response::new(&mut fields);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Ok(httparse::Status::Complete(len)) => len,
        Err(e) => return Parsed::Bad(format!("malformed response head: {e}")),
    };
    let code = parsed.code.unwrap_or(0);
    if (100..200).contains(&code) && code != 101 {
        return Parsed::Informational(len);
    }
    let Ok(status) = StatusCode::from_u16(code) else {
        return Parsed::Bad(format!("invalid status {code}"));
    };
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let base = buf.as_ptr() as usize;
    let mut out = Vec::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(field.name.as_bytes()) else {
            return Parsed::Bad(format!("invalid header name {:?}", field.name));
        };
        let start = field.value.as_ptr() as usize - base;
        out.push((name, start, start + field.value.len()));
    }
    Parsed::Complete(
        len,
        Head {
            status,
            version,
            fields: out,
        },
    )
}

/// The response for a parsed head, its values sharing `bytes` (the head split off the buffer).
fn build_response(
    head: Head,
    bytes: &Bytes,
    head_request: bool,
) -> Result<(Response<()>, Framing), String> {
    let mut headers = http::HeaderMap::with_capacity(head.fields.len());
    for (name, start, end) in head.fields {
        let value = HeaderValue::from_maybe_shared(bytes.slice(start..end))
            .map_err(|_| format!("invalid value in {name}"))?;
        headers.append(name, value);
    }
    let framing = framing(&headers, head.status, head.version, head_request)?;
    let mut resp = Response::new(());
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    *resp.headers_mut() = headers;
    Ok((resp, framing))
}

/// How the response body is delimited.
#[derive(Debug, PartialEq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304) or one already complete; `reuse`: the connection may
    /// serve another request.
    Empty {
        reuse: bool,
    },
    Length {
        left: u64,
        reuse: bool,
    },
    Chunked {
        state: Chunk,
        reuse: bool,
    },
    /// Until the backend closes (never reused).
    Close,
    /// Finished (connection returned or dropped).
    Done,
}

/// Where the chunked decoder is.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one (bytes seen so far).
    Trailers(usize),
}

/// RFC 9112 §6.3 and §9.3 (persistence).
fn framing(
    headers: &http::HeaderMap,
    status: StatusCode,
    version: Version,
    head_request: bool,
) -> Result<Framing, String> {
    let tokens = |name| {
        headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(|t| t.trim_ascii().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let connection = tokens(CONNECTION);
    let mut reuse = if version == Version::HTTP_10 {
        connection.iter().any(|t| t == b"keep-alive")
    } else {
        !connection.iter().any(|t| t == b"close")
    };
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // Only for an upgrade request, which never comes this way: the caller refuses it.
        return Ok(Framing::Empty { reuse: false });
    }
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Empty { reuse });
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        let codings = tokens(TRANSFER_ENCODING);
        if headers.contains_key(CONTENT_LENGTH) {
            // Both: Transfer-Encoding wins and the connection is not reused (§6.3 item 3).
            reuse = false;
        }
        return Ok(if codings.last().is_some_and(|c| c == b"chunked") {
            Framing::Chunked {
                state: Chunk::Size,
                reuse,
            }
        } else {
            Framing::Close
        });
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            let n = std::str::from_utf8(part)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("invalid Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("differing Content-Length values".into());
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty { reuse },
        Some(left) => Framing::Length { left, reuse },
        None => Framing::Close,
    })
}

/// The response body, read from the backend connection as the visitor's side polls it.
pub struct DirectBody {
    stream: Option<TcpStream>,
    buf: BytesMut,
    framing: Framing,
    pool: Arc<Pool>,
    addr: SocketAddr,
    limits: PoolLimits,
}

impl DirectBody {
    /// When the body is complete: the connection goes back to the pool if it may be reused and
    /// nothing came after the response.
    fn finish_if_done(&mut self) {
        let reuse = match &self.framing {
            Framing::Empty { reuse } => *reuse,
            Framing::Length { left: 0, reuse } => *reuse,
            _ => return,
        };
        self.framing = Framing::Done;
        if let Some(stream) = self.stream.take() {
            if reuse && self.buf.is_empty() {
                self.pool.put(self.addr, stream, self.limits);
            }
        }
        self.buf = BytesMut::new();
    }

    /// The next piece of body data from the buffer, or what to do (`Err`: read more).
    fn step(&mut self) -> Result<Option<Bytes>, Need> {
        loop {
            match &mut self.framing {
                Framing::Done | Framing::Empty { .. } => return Ok(None),
                Framing::Length { left, .. } => {
                    if self.buf.is_empty() {
                        return Err(Need::More);
                    }
                    let take = (*left).min(self.buf.len() as u64) as usize;
                    *left -= take as u64;
                    let data = self.buf.split_to(take).freeze();
                    self.finish_if_done();
                    return Ok(Some(data));
                }
                Framing::Close => {
                    if self.buf.is_empty() {
                        return Err(Need::MoreOrEnd);
                    }
                    return Ok(Some(self.buf.split().freeze()));
                }
                Framing::Chunked { state, reuse } => match state {
                    Chunk::Size => {
                        let Some(line) = line_end(&self.buf)? else {
                            return Err(if self.buf.len() > 1024 {
                                Need::Broken("chunk size line too long")
                            } else {
                                Need::More
                            });
                        };
                        let size = chunk_size(&self.buf[..line])
                            .ok_or(Need::Broken("malformed chunk size"))?;
                        self.buf.advance(line + 2);
                        *state = if size == 0 {
                            Chunk::Trailers(0)
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Chunk::Data(left) => {
                        if self.buf.is_empty() {
                            return Err(Need::More);
                        }
                        let take = (*left).min(self.buf.len() as u64) as usize;
                        *left -= take as u64;
                        if *left == 0 {
                            *state = Chunk::DataEnd;
                        }
                        return Ok(Some(self.buf.split_to(take).freeze()));
                    }
                    Chunk::DataEnd => {
                        if self.buf.len() < 2 {
                            return Err(Need::More);
                        }
                        if &self.buf[..2] != b"\r\n" {
                            return Err(Need::Broken("chunk data not followed by CRLF"));
                        }
                        self.buf.advance(2);
                        *state = Chunk::Size;
                    }
                    Chunk::Trailers(seen) => {
                        let Some(line) = line_end(&self.buf)? else {
                            return Err(if *seen + self.buf.len() > MAX_TRAILERS {
                                Need::Broken("trailers too large")
                            } else {
                                Need::More
                            });
                        };
                        *seen += line + 2;
                        if *seen > MAX_TRAILERS {
                            return Err(Need::Broken("trailers too large"));
                        }
                        self.buf.advance(line + 2);
                        if line == 0 {
                            let reuse = *reuse;
                            self.framing = Framing::Empty { reuse };
                            self.finish_if_done();
                            return Ok(None);
                        }
                    }
                },
            }
        }
    }
}

enum Need {
    More,
    /// More, or the end of the body when the backend closes.
    MoreOrEnd,
    Broken(&'static str),
}

/// The offset of the next CRLF; a bare LF (or CR) inside the line is a broken body, refused at
/// once rather than waited past (RFC 9112 §7.1 chunk lines end in CRLF).
fn line_end(buf: &[u8]) -> Result<Option<usize>, Need> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(0) => Err(Need::Broken("bare LF in a chunked body")),
        Some(nl) if buf[nl - 1] == b'\r' && !buf[..nl - 1].contains(&b'\r') => Ok(Some(nl - 1)),
        Some(_) => Err(Need::Broken("bare LF or CR in a chunked body")),
        None => Ok(None),
    }
}

/// A chunk-size line (RFC 9112 §7.1): hex digits, then optional extensions after `;`.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?.trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n * 16 + u64::from(char::from(d).to_digit(16)?);
    }
    Some(n)
}

impl Body for DirectBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        // Bounded: each round either returns or reads more bytes from the socket.
        loop {
            let at_end = match this.step() {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) => return Poll::Ready(None),
                Err(Need::Broken(why)) => {
                    this.framing = Framing::Done;
                    this.stream = None;
                    return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, why))));
                }
                Err(Need::More) => false,
                Err(Need::MoreOrEnd) => true,
            };
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            // Large bodies are read in up to READ_LIMIT at a time (fewer system calls, the same
            // cap as hyper's client); small ones in READ_CHUNK.
            let want = match &this.framing {
                Framing::Length { left, .. } if *left > READ_CHUNK as u64 => READ_LIMIT,
                Framing::Close | Framing::Chunked { .. } => READ_LIMIT,
                _ => READ_CHUNK,
            };
            if this.buf.capacity() - this.buf.len() < want {
                this.buf.reserve(want);
            }
            match poll_read_buf(stream, cx, &mut this.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if at_end => {
                    this.framing = Framing::Done;
                    this.stream = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    this.framing = Framing::Done;
                    this.stream = None;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "backend closed the connection before the end of the body",
                    ))));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.framing = Framing::Done;
                    this.stream = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Empty { .. })
    }

    fn size_hint(&self) -> SizeHint {
        match &self.framing {
            Framing::Done | Framing::Empty { .. } => SizeHint::with_exact(0),
            Framing::Length { left, .. } => SizeHint::with_exact(*left),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing_of(head: &str, head_request: bool) -> Result<Framing, String> {
        match parse_response(head.as_bytes()) {
            Parsed::Complete(len, parsed) => {
                let bytes = Bytes::copy_from_slice(&head.as_bytes()[..len]);
                build_response(parsed, &bytes, head_request).map(|(_, f)| f)
            }
            Parsed::Bad(why) => Err(why),
            _ => Err("incomplete".into()),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let ok = |h: &str| framing_of(h, false).unwrap_or(Framing::Done);
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Framing::Length {
                left: 5,
                reuse: true
            }
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"),
            Framing::Length {
                left: 5,
                reuse: true
            }
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n"),
            Framing::Chunked {
                state: Chunk::Size,
                reuse: false
            }
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Framing::Close
        );
        assert_eq!(ok("HTTP/1.1 200 OK\r\n\r\n"), Framing::Close);
        assert_eq!(
            ok("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"),
            Framing::Length {
                left: 1,
                reuse: false
            }
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n"),
            Framing::Length {
                left: 1,
                reuse: false
            }
        );
        assert_eq!(
            ok("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"),
            Framing::Empty { reuse: true }
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true).ok(),
            Some(Framing::Empty { reuse: true })
        );
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n",
        ] {
            assert!(framing_of(bad, false).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn chunk_sizes_are_strict_hex() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"1A;name=value"), Some(26));
        assert_eq!(chunk_size(b"0"), Some(0));
        for bad in [
            &b""[..],
            b"g",
            b"-1",
            b" 1",
            b"1 2",
            b"0x1",
            b"1234567890abcdef",
        ] {
            assert_eq!(chunk_size(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// A chunked body with no socket: the decoder alone, fed by the test.
    fn chunked_body(buf: BytesMut) -> DirectBody {
        DirectBody {
            stream: None,
            buf,
            framing: Framing::Chunked {
                state: Chunk::Size,
                reuse: true,
            },
            pool: Arc::default(),
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            limits: PoolLimits {
                max_idle: 1,
                idle_timeout: Duration::from_secs(1),
            },
        }
    }

    #[test]
    fn a_chunked_body_decodes_across_any_split() {
        let wire = b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nTrailer: t\r\n\r\n";
        for split in 0..wire.len() {
            let mut body = chunked_body(BytesMut::new());
            let mut out = Vec::new();
            for piece in [&wire[..split], &wire[split..]] {
                body.buf.extend_from_slice(piece);
                // Bounded: each step consumes bytes or asks for more.
                for _ in 0..32 {
                    match body.step() {
                        Ok(Some(d)) => out.extend_from_slice(&d),
                        Ok(None) | Err(Need::More) | Err(Need::MoreOrEnd) => break,
                        Err(Need::Broken(why)) => panic!("split {split}: {why}"),
                    }
                }
            }
            assert_eq!(out, b"Wikipedia", "split at {split}");
            assert!(body.is_end_stream(), "split at {split}");
        }
    }

    #[test]
    fn bare_line_feeds_in_a_chunked_body_are_refused_at_once() {
        for wire in [
            &b"5\nhello\r\n"[..],
            b"5\r\nhello\r\n0\r\nX: y\n\r\n",
            b"\n",
        ] {
            let mut body = chunked_body(BytesMut::from(wire));
            let mut broken = false;
            for _ in 0..8 {
                match body.step() {
                    Ok(Some(_)) => {}
                    Err(Need::Broken(_)) => {
                        broken = true;
                        break;
                    }
                    _ => break,
                }
            }
            assert!(
                broken,
                "{:?} must be refused",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn a_chunk_without_its_crlf_is_broken() {
        let mut body = chunked_body(BytesMut::from(&b"4\r\nWikiXX0\r\n\r\n"[..]));
        assert!(matches!(body.step(), Ok(Some(_))));
        assert!(matches!(body.step(), Err(Need::Broken(_))));
    }
}
