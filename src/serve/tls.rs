//! TLS termination: certificates, SNI selection, the self-signed fallback, hot reload, expiry
//! alarms, client certificates, and the rustls server configuration.
//!
//! The certificates in use live in a [`CertStore`]: an `ArcSwap` of an immutable [`CertSet`].
//! Every handshake takes the current set (rustls calls [`CertStore::resolve`]); a reload builds a
//! complete new set and swaps it in only when it is fully valid, so open connections are
//! untouched, new handshakes get the new certificate, and a broken renewal never leaves a listener
//! without a certificate (which Cloudflare would turn into error 525 for every visitor).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{CertSpec, ClientAuth, Config, Problem, TlsConfig};

/// The crypto provider used everywhere (ring: small, fast to build, no C toolchain surprises).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub use crate::observe::health::{expiry_verdict, now_unix, CertSummary};

/// A certificate chain and key, parsed and checked to belong together.
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

/// The fix for a certificate or key file that is not there (or not readable).
fn missing_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "; check the path (certbot writes /etc/letsencrypt/live/NAME/fullchain.pem and privkey.pem; a Cloudflare Origin CA pair is saved wherever you put it) — until it exists, its names get the self-signed fallback",
        std::io::ErrorKind::PermissionDenied => "; origin-gate's user cannot read it (for certbot files: chmod 0750 /etc/letsencrypt/{live,archive} and chgrp origin-gate, or a deploy hook that copies the pair)",
        _ => "",
    }
}

/// The raw PEM bytes of a `[[tls.certs]]` entry. Paths are followed through symlinks, so
/// certbot's `live/` → `archive/` swap is seen.
pub fn read_pair(spec: &CertSpec, index: usize) -> Result<(Vec<u8>, Vec<u8>), Vec<Problem>> {
    let cert = std::fs::read(&spec.cert).map_err(|e| {
        problem(
            &spec.cert,
            format!("tls.certs[{index}].cert"),
            format!("cannot read the certificate PEM: {e}{}", missing_hint(&e)),
        )
    });
    let key = std::fs::read(&spec.key).map_err(|e| {
        problem(
            &spec.key,
            format!("tls.certs[{index}].key"),
            format!("cannot read the private key PEM: {e}{}", missing_hint(&e)),
        )
    });
    match (cert, key) {
        (Ok(c), Ok(k)) => Ok((c, k)),
        (c, k) => Err(c.err().into_iter().chain(k.err()).collect()),
    }
}

/// Parses a full-chain PEM and a key PEM (PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519) and
/// checks that the key belongs to the leaf certificate.
pub fn parse_pair(
    spec: &CertSpec,
    index: usize,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<LoadedCert, Vec<Problem>> {
    let cert_key = format!("tls.certs[{index}].cert");
    let key_key = format!("tls.certs[{index}].key");
    let mut problems = Vec::new();
    let chain: Result<Vec<CertificateDer<'static>>, _> =
        CertificateDer::pem_slice_iter(cert_pem).collect();
    let chain = match chain {
        Ok(c) if c.is_empty() => {
            problems.push(problem(
                &spec.cert,
                cert_key,
                "contains no CERTIFICATE block; give the full-chain PEM (fullchain.pem)".into(),
            ));
            None
        }
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(problem(
                &spec.cert,
                cert_key,
                format!("cannot read the certificate PEM: {}", pem_error(&e)),
            ));
            None
        }
    };
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
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
    let signing = provider().key_provider.load_private_key(key).map_err(|e| {
        vec![problem(
            &spec.key,
            key_key.clone(),
            format!("unsupported private key: {e}"),
        )]
    })?;
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

/// Reads names, issuer, serial and validity from a leaf certificate.
pub fn summarize(der: &CertificateDer<'_>) -> Option<CertSummary> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
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
            names.push(cn.to_ascii_lowercase());
        }
    }
    let validity = cert.validity();
    Some(CertSummary {
        names,
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        not_after_text: validity.not_after.to_string(),
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

/// Does a certificate name (`example.com`, `*.example.com`) cover `host`? A wildcard covers
/// exactly one label (RFC 6125 §6.4.3): `*.example.com` covers `www.example.com`, not
/// `example.com` nor `a.b.example.com`.
pub fn name_covers(pattern: &str, host: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix));
    }
    pattern.eq_ignore_ascii_case(host)
}

/// One `[[tls.certs]]` entry as loaded.
#[derive(Debug, Clone)]
pub struct CertEntry {
    pub spec: CertSpec,
    pub index: usize,
    pub cert: LoadedCert,
    /// The names it serves: `hosts` when configured, else the certificate's names.
    pub names: Vec<String>,
    /// The PEM content it was loaded from; a reload compares content, not modification times.
    content: (Vec<u8>, Vec<u8>),
}

impl CertEntry {
    fn load(spec: &CertSpec, index: usize) -> Result<CertEntry, Vec<Problem>> {
        let (c, k) = read_pair(spec, index)?;
        CertEntry::from_content(spec, index, c, k)
    }

    fn from_content(
        spec: &CertSpec,
        index: usize,
        c: Vec<u8>,
        k: Vec<u8>,
    ) -> Result<CertEntry, Vec<Problem>> {
        let cert = parse_pair(spec, index, &c, &k)?;
        let names = if spec.hosts.is_empty() {
            cert.summary
                .as_ref()
                .map(|s| s.names.clone())
                .unwrap_or_default()
        } else {
            spec.hosts.clone()
        };
        Ok(CertEntry {
            spec: spec.clone(),
            index,
            cert,
            names,
            content: (c, k),
        })
    }
}

/// A configured certificate whose files do not exist yet — typically before the first issuance,
/// when the ACME client needs origin-gate already serving port 80 to get the certificate at all.
/// Its names get the fallback until the files appear; every reload looks again.
#[derive(Debug, Clone)]
pub struct PendingCert {
    pub spec: CertSpec,
    pub index: usize,
    pub problems: Vec<Problem>,
}

/// An immutable set of certificates with its SNI index.
#[derive(Debug)]
pub struct CertSet {
    pub entries: Vec<CertEntry>,
    pub pending: Vec<PendingCert>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is indexed under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    pub fallback: LoadedCert,
}

impl CertSet {
    fn build(
        entries: Vec<CertEntry>,
        pending: Vec<PendingCert>,
        default_name: Option<&str>,
        fallback: LoadedCert,
    ) -> Result<CertSet, String> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        // Config order decides between two certificates for the same name: the first one wins.
        for e in &entries {
            for name in &e.names {
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard
                        .entry(suffix.to_string())
                        .or_insert_with(|| e.cert.key.clone()),
                    None => exact
                        .entry(name.clone())
                        .or_insert_with(|| e.cert.key.clone()),
                };
            }
        }
        let mut set = CertSet {
            entries,
            pending,
            exact,
            wildcard,
            default: None,
            fallback,
        };
        if let Some(name) = default_name {
            set.default = set.lookup(name);
            // A default whose certificate is still pending takes effect once it loads.
            if set.default.is_none() && set.pending.is_empty() {
                return Err(format!(
                    "tls.default {name:?} is not a name of any [[tls.certs]] entry"
                ));
            }
        }
        Ok(set)
    }

    fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).cloned()
    }

    /// The certificate for a handshake: exact SNI match, then a one-label wildcard, then
    /// `tls.default`, then the self-signed fallback.
    pub fn select(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        sni.and_then(|n| self.lookup(n))
            .or_else(|| self.default.clone())
            .unwrap_or_else(|| self.fallback.key.clone())
    }
}

/// How a reload went, for logs and metrics.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Entries whose files changed and were swapped in (by cert path).
    pub reloaded: Vec<String>,
    /// Entries whose files changed but were refused; the old certificate keeps serving.
    pub refused: Vec<Problem>,
}

/// An alarm about one certificate: level and text; logged at start and hourly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    pub level: tracing::Level,
    pub cert: String,
    pub message: String,
}

/// The certificates of one snapshot (immutable: a reload that changes them makes a new store,
/// and with it a new TLS acceptor in the next runtime snapshot).
pub struct CertStore {
    set: Arc<CertSet>,
    tls: TlsConfig,
    server_names: Vec<String>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore").finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads every `[[tls.certs]]` entry and makes the fallback certificate.
    pub fn load(config: &Config) -> Result<CertStore, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut entries = Vec::new();
        let mut pending = Vec::new();
        for (i, spec) in config.tls.certs.iter().enumerate() {
            match CertEntry::load(spec, i) {
                Ok(e) => entries.push(e),
                // Missing files are waited for; files that exist but are wrong are errors.
                Err(p) if !spec.cert.exists() || !spec.key.exists() => pending.push(PendingCert {
                    spec: spec.clone(),
                    index: i,
                    problems: p,
                }),
                Err(p) => problems.extend(p),
            }
        }
        let mut fallback_names = config.server_names.clone();
        if fallback_names.is_empty() {
            fallback_names = vec!["localhost".into(), "127.0.0.1".into()];
        }
        let fallback = self_signed(&fallback_names).map_err(|m| vec![config.problem("tls", m)]);
        let fallback = match fallback {
            Ok(f) => Some(f),
            Err(p) => {
                problems.extend(p);
                None
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let fallback = fallback.ok_or_else(Vec::new)?;
        let set = CertSet::build(entries, pending, config.tls.default.as_deref(), fallback)
            .map_err(|m| vec![config.problem("tls.default", m)])?;
        Ok(CertStore {
            set: Arc::new(set),
            tls: config.tls.clone(),
            server_names: config.server_names.clone(),
        })
    }

    pub fn current(&self) -> Arc<CertSet> {
        self.set.clone()
    }

    /// Re-reads every certificate and key file; entries whose content changed are parsed and,
    /// when valid, make a new store (returned). A changed entry that fails keeps its old
    /// certificate and is reported as refused.
    pub fn reread(&self) -> (Option<CertStore>, ReloadReport) {
        let old = &self.set;
        let mut report = ReloadReport::default();
        let mut entries = Vec::with_capacity(old.entries.len());
        for e in &old.entries {
            let fresh = match read_pair(&e.spec, e.index) {
                Ok((c, k))
                    if (c.as_slice(), k.as_slice())
                        == (e.content.0.as_slice(), e.content.1.as_slice()) =>
                {
                    entries.push(e.clone());
                    continue;
                }
                Ok((c, k)) => CertEntry::from_content(&e.spec, e.index, c, k),
                Err(p) => Err(p),
            };
            match fresh {
                Ok(n) => {
                    report.reloaded.push(e.spec.cert.display().to_string());
                    entries.push(n);
                }
                Err(p) => {
                    report.refused.extend(p);
                    entries.push(e.clone());
                }
            }
        }
        let mut pending = Vec::new();
        for p in &old.pending {
            if !p.spec.cert.exists() || !p.spec.key.exists() {
                pending.push(p.clone());
                continue;
            }
            match CertEntry::load(&p.spec, p.index) {
                Ok(e) => {
                    report.reloaded.push(p.spec.cert.display().to_string());
                    entries.push(e);
                }
                Err(problems) => {
                    report.refused.extend(problems.iter().cloned());
                    pending.push(PendingCert {
                        problems,
                        ..p.clone()
                    });
                }
            }
        }
        if report.reloaded.is_empty() {
            return (None, report);
        }
        match CertSet::build(
            entries,
            pending,
            self.tls.default.as_deref(),
            old.fallback.clone(),
        ) {
            Ok(set) => {
                let next = CertStore {
                    set: Arc::new(set),
                    tls: self.tls.clone(),
                    server_names: self.server_names.clone(),
                };
                (Some(next), report)
            }
            Err(m) => {
                report.reloaded.clear();
                report.refused.push(Problem {
                    file: String::new(),
                    position: None,
                    key: "tls.default".into(),
                    message: m,
                });
                (None, report)
            }
        }
    }

    /// Expiry and coverage alarms for every certificate at `now_unix`.
    pub fn alarms(&self, now_unix: i64) -> Vec<Alarm> {
        let set = self.current();
        let mut out = Vec::new();
        for e in &set.entries {
            let cert = e.spec.cert.display().to_string();
            let Some(s) = &e.cert.summary else { continue };
            let (level, message) = expiry_verdict(s, now_unix, self.tls.expiry_warn_days);
            out.push(Alarm {
                level,
                cert: cert.clone(),
                message,
            });
            for host in &e.spec.hosts {
                if !s.names.iter().any(|n| name_covers(n, host)) {
                    out.push(Alarm {
                        level: tracing::Level::ERROR,
                        cert: cert.clone(),
                        message: format!("certificate does not cover the configured host {host:?} (it has [{}]); visitors to it get a name mismatch (Cloudflare 526); reissue it with that name", s.names.join(", ")),
                    });
                }
            }
        }
        for p in &set.pending {
            // Before the first issuance this is expected (the ACME client needs origin-gate on
            // port 80 to get the certificate at all): one plain line, not an error.
            let names = if p.spec.hosts.is_empty() {
                self.server_names.join(", ")
            } else {
                p.spec.hosts.join(", ")
            };
            let names = if names.is_empty() {
                "its names".to_string()
            } else {
                names
            };
            out.push(Alarm {
                level: tracing::Level::WARN,
                cert: p.spec.cert.display().to_string(),
                message: format!(
                    "waiting for certificates for {names}; serving the self-signed fallback until {} and {} appear (looked for on every reload: tls.reload_interval, SIGHUP)",
                    p.spec.cert.display(),
                    p.spec.key.display()
                ),
            });
        }
        if !set.entries.is_empty() {
            for host in &self.server_names {
                let covered = set
                    .entries
                    .iter()
                    .any(|e| e.names.iter().any(|n| name_covers(n, host)));
                if !covered {
                    out.push(Alarm {
                        level: tracing::Level::ERROR,
                        cert: "server_names".into(),
                        message: format!("no certificate covers server name {host:?}: its visitors get the fallback certificate (Cloudflare Full (strict): 526); add it to the certificate (certbot -d {host})"),
                    });
                }
            }
        }
        out
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.set.select(hello.server_name()))
    }
}

/// Is `tls.client_ca` Cloudflare's shared zone-level Authenticated Origin Pulls CA
/// (`CN=origin-pull.cloudflare.net`)? Every Cloudflare customer's edge presents a certificate it
/// signed, so it proves "Cloudflare", not "my zone"; a CA of the owner's own (uploaded to
/// Cloudflare as zone-level or per-hostname AOP) proves the zone.
pub fn is_cloudflare_shared_ca(path: &Path) -> bool {
    let Ok(certs) =
        CertificateDer::pem_file_iter(path).and_then(|it| it.collect::<Result<Vec<_>, _>>())
    else {
        return false;
    };
    certs.iter().any(|der| {
        x509_parser::parse_x509_certificate(der).is_ok_and(|(_, cert)| {
            cert.subject().iter_common_name().any(|cn| {
                cn.as_str()
                    .is_ok_and(|cn| cn.eq_ignore_ascii_case("origin-pull.cloudflare.net"))
            })
        })
    })
}

/// Loads `tls.client_ca` into a client-certificate verifier (Authenticated Origin Pulls).
pub fn client_verifier(
    tls: &TlsConfig,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, Problem> {
    let Some(path) = &tls.client_ca else {
        return Ok(None);
    };
    let fail = |m: String| problem(path, "tls.client_ca".into(), m);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect())
        .map_err(|e| fail(format!("cannot read the CA PEM: {}", pem_error(&e))))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(fail("contains no usable CA certificate".into()));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = match tls.client_auth {
        ClientAuth::Required => builder,
        ClientAuth::Optional => builder.allow_unauthenticated(),
    };
    builder.build().map(Some).map_err(|e| fail(e.to_string()))
}

/// The rustls server configuration: TLS 1.2 + 1.3 with rustls's safe defaults, ALPN `h2` then
/// `http/1.1`, the default in-memory session cache (resumption on), and the client verifier when
/// `tls.client_ca` is set.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    client: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(name_covers("*.example.com", "www.example.com"));
        assert!(name_covers("*.example.com", "WWW.Example.com"));
        assert!(!name_covers("*.example.com", "example.com"));
        assert!(!name_covers("*.example.com", "a.b.example.com"));
        assert!(name_covers("example.com", "EXAMPLE.com"));
    }
}
