//! Clients that connect from a chosen loopback source address (trusted 127.0.0.2 vs untrusted
//! 127.0.0.3): plain and TLS HTTP/1.1, HTTP/2 over TLS, one-shot requests read whole into an
//! [`Answer`], and an [`insecure_client`] for tests that are about forwarding, not TLS trust.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpSocket, TcpStream};

use super::{empty, TestBody};

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
