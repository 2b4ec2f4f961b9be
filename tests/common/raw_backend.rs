//! A backend on raw sockets that records every request exactly as it arrived on the wire —
//! header names with their case and underscores, repeated fields, the request target, the body —
//! so a test can assert what PHP would believe (`$_SERVER['HTTP_…']`), not what a library parsed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the recording backend answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawReply {
    /// `HTTP/1.1 200 OK`, keep-alive.
    Ok,
    /// `HTTP/1.0 200 OK`, then close (an old or minimal backend).
    Http10,
    /// `101 Switching Protocols` to this protocol whatever was asked, then records any bytes
    /// that come through the tunnel as a request with method `TUNNEL`.
    SwitchTo(&'static str),
}

/// One request as the backend received it.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub version: String,
    /// Every header line, name exactly as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the whole head had arrived.
    pub head_at: Option<std::time::Instant>,
}

/// The CGI/1.1 meta-variable a header name becomes in PHP: `HTTP_` + upper case, with `-` (and
/// `.`, which PHP's variable registration folds too) turned into `_`.
pub fn cgi_name(header: &str) -> String {
    let mut out = String::from("HTTP_");
    for c in header.chars() {
        out.push(match c {
            '-' | '.' | ' ' => '_',
            c => c.to_ascii_uppercase(),
        });
    }
    out
}

impl Seen {
    /// The values of every header PHP would file under `var` (e.g. `HTTP_X_FORWARDED_PROTO`).
    pub fn cgi(&self, var: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| cgi_name(n) == var)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Header names, lower-cased, sorted, each once.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

pub struct RawBackend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
    /// Connections open right now (a readiness signal for "the proxy let go of it").
    pub open: tokio::sync::watch::Receiver<usize>,
}

impl RawBackend {
    pub async fn start(reply: RawReply) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let store = seen.clone();
        let (open_tx, open) = tokio::sync::watch::channel(0usize);
        let open_tx = Arc::new(open_tx);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                open_tx.send_modify(|n| *n += 1);
                let (store, open_tx) = (store.clone(), open_tx.clone());
                tokio::spawn(async move {
                    serve(stream, reply, store).await;
                    open_tx.send_modify(|n| *n -= 1);
                });
            }
        });
        RawBackend {
            addr,
            seen,
            task,
            open,
        }
    }

    /// Waits (at most `within`) until no connection from the proxy is open.
    pub async fn wait_all_closed(&self, within: Duration) -> bool {
        let mut open = self.open.clone();
        let closed = tokio::time::timeout(within, open.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok());
        closed
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything recorded so far, and forgets it.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, reply: RawReply, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut buf: Vec<u8> = Vec::new();
    // Bounded: a test connection carries a handful of requests.
    for _ in 0..1000 {
        let Some(head_end) = read_until_head(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").splitn(3, ' ');
        let mut req = Seen {
            head_at: Some(std::time::Instant::now()),
            method: first.next().unwrap_or("").into(),
            target: first.next().unwrap_or("").into(),
            version: first.next().unwrap_or("").into(),
            ..Seen::default()
        };
        for line in lines {
            if let Some((n, v)) = line.split_once(':') {
                req.headers.push((n.to_string(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        req.body = if chunked {
            match read_chunked(&mut stream, &mut buf).await {
                Some(b) => b,
                None => return,
            }
        } else {
            if !read_at_least(&mut stream, &mut buf, length).await {
                return;
            }
            buf.drain(..length).collect()
        };
        seen.lock().unwrap().push(req);
        let answer: &[u8] = match reply {
            RawReply::Ok => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
            }
            RawReply::Http10 => b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            RawReply::SwitchTo(_) => b"",
        };
        if let RawReply::SwitchTo(proto) = reply {
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\n\r\n"
            );
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // Whatever comes through the tunnel is recorded; the test asserts nothing does.
            let mut tunnel = std::mem::take(&mut buf);
            let mut chunk = [0u8; 4096];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await
            {
                if n == 0 {
                    break;
                }
                tunnel.extend_from_slice(&chunk[..n]);
            }
            if !tunnel.is_empty() {
                seen.lock().unwrap().push(Seen {
                    method: "TUNNEL".into(),
                    body: tunnel,
                    ..Seen::default()
                });
            }
            return;
        }
        if stream.write_all(answer).await.is_err() || reply == RawReply::Http10 {
            return;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn read_until_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            return Some(i);
        }
        if buf.len() > 1 << 20 || !fill(stream, buf).await {
            return None;
        }
    }
}

async fn read_at_least(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> bool {
    while buf.len() < n {
        if !fill(stream, buf).await {
            return false;
        }
    }
    true
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            if !fill(stream, buf).await {
                return None;
            }
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            let end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                if !fill(stream, buf).await {
                    return None;
                }
            };
            buf.drain(..end + 2);
            return Some(body);
        }
        if !read_at_least(stream, buf, size + 2).await {
            return None;
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

/// One raw HTTP/1.x exchange from `src`: writes `request` as given, reads one response (status
/// line, headers, Content-Length body). Returns the status, the head text and the body.
pub async fn raw_http1(stream: &mut TcpStream, request: &[u8]) -> (u16, String, Vec<u8>) {
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let head_end = tokio::time::timeout(Duration::from_secs(10), read_until_head(stream, &mut buf))
        .await
        .expect("a response within 10 s")
        .expect("a response head");
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {head}"));
    let length = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let is_head = request.starts_with(b"HEAD ");
    if !is_head {
        read_at_least(stream, &mut buf, length).await;
        buf.truncate(length);
    }
    (status, head, buf)
}
