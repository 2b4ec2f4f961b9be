//! TLS termination: PEM loading, the certificate lookup seam, the self-signed fallback, and the
//! rustls server configuration (TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`).
//!
//! Certificate lookup goes through [`CertResolver`] (a rustls `ResolvesServerCert`), so SNI
//! selection and hot reload change that one type and nothing else.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{CertSpec, Problem};

/// The crypto provider used everywhere (ring: small, fast to build, no C toolchain surprises).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Facts about a loaded certificate, for `origin-gate check` and start-up logs.
#[derive(Debug, Clone)]
pub struct CertSummary {
    pub names: Vec<String>,
    pub issuer: String,
    pub not_after: String,
    pub days_left: i64,
}

impl fmt::Display for CertSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "names [{}], issuer {}, not after {} ({} days left)",
            self.names.join(", "),
            self.issuer,
            self.not_after,
            self.days_left
        )
    }
}

/// A certificate chain and key, loaded and checked to belong together.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub summary: Option<CertSummary>,
}

fn problem(file: &Path, key: String, message: String) -> Problem {
    Problem {
        file: file.display().to_string(),
        position: None,
        key,
        message,
    }
}

/// Loads `[[tls.certs]]` entry `index`: the full-chain PEM, the key PEM (PKCS#8, PKCS#1 or SEC1;
/// RSA, ECDSA or Ed25519), and checks that the key matches the leaf certificate.
pub fn load_cert(spec: &CertSpec, index: usize) -> Result<LoadedCert, Vec<Problem>> {
    let cert_key = format!("tls.certs[{index}].cert");
    let key_key = format!("tls.certs[{index}].key");
    let mut problems = Vec::new();

    let chain: Result<Vec<CertificateDer<'static>>, _> =
        CertificateDer::pem_file_iter(&spec.cert).and_then(|it| it.collect());
    let chain = match chain {
        Ok(c) if c.is_empty() => {
            problems.push(problem(
                &spec.cert,
                cert_key.clone(),
                "contains no CERTIFICATE block; give the full-chain PEM (fullchain.pem)".into(),
            ));
            None
        }
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(problem(
                &spec.cert,
                cert_key.clone(),
                format!("cannot read the certificate PEM: {}", pem_error(&e)),
            ));
            None
        }
    };
    let key = match PrivateKeyDer::from_pem_file(&spec.key) {
        Ok(k) => Some(k),
        Err(e) => {
            problems.push(problem(
                &spec.key,
                key_key.clone(),
                format!("cannot read the private key PEM: {}", pem_error(&e)),
            ));
            None
        }
    };
    let (Some(chain), Some(key)) = (chain, key) else {
        return Err(problems);
    };
    let signing = match provider().key_provider.load_private_key(key) {
        Ok(k) => k,
        Err(e) => {
            return Err(vec![problem(
                &spec.key,
                key_key,
                format!("unsupported private key: {e}"),
            )]);
        }
    };
    let summary = summarize(&chain[0]);
    let certified = CertifiedKey::new(chain, signing);
    if certified.keys_match().is_err() {
        return Err(vec![problem(
            &spec.key,
            key_key,
            format!(
                "does not match the certificate in {}; give the privkey.pem issued with that certificate",
                spec.cert.display()
            ),
        )]);
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        summary,
    })
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM block of the expected kind found".into()
        }
        other => format!("{other:?}"),
    }
}

/// Reads names, issuer and validity from a leaf certificate.
pub fn summarize(der: &CertificateDer<'_>) -> Option<CertSummary> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push((*d).to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        names.push(std::net::IpAddr::from(a).to_string());
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        names.push(std::net::IpAddr::from(a).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
        {
            names.push(cn.to_string());
        }
    }
    let not_after = cert.validity().not_after;
    let now = ASN1Time::now();
    let days_left = (not_after.timestamp() - now.timestamp()).div_euclid(86_400);
    Some(CertSummary {
        names,
        issuer: cert.issuer().to_string(),
        not_after: not_after.to_string(),
        days_left,
    })
}

/// A self-signed certificate for `names`, made in memory at start so a TLS listener always has
/// something to present: Cloudflare "Full" accepts it (no 525); "Full (strict)" does not (526).
pub fn self_signed(names: &[String]) -> Result<LoadedCert, String> {
    let names = if names.is_empty() {
        vec!["localhost".to_string()]
    } else {
        names.to_vec()
    };
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate the self-signed certificate: {e}"))?;
    let der = ck.cert.der().clone();
    let key = PrivateKeyDer::try_from(ck.key_pair.serialize_der()).map_err(|e| e.to_string())?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    let summary = summarize(&der);
    Ok(LoadedCert {
        key: Arc::new(CertifiedKey::new(vec![der], signing)),
        summary,
    })
}

/// Picks the certificate for a handshake. Today one certificate serves every name; this is the
/// seam where SNI selection goes.
#[derive(Debug)]
pub struct CertResolver {
    cert: Arc<CertifiedKey>,
}

impl CertResolver {
    pub fn new(cert: Arc<CertifiedKey>) -> Self {
        CertResolver { cert }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.cert.clone())
    }
}

/// The rustls server configuration: TLS 1.2 + 1.3 with rustls's safe defaults, ALPN `h2` then
/// `http/1.1`, the default session cache (resumption on).
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
