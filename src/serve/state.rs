//! The state built from one configuration ([`Runtime`]) and the holder every connection and
//! request reads it from ([`Shared`]). A reload builds a complete new `Runtime` and swaps it in
//! only when every part of it is valid; a request reads the current one once, so it never sees
//! half of one configuration and half of another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;

use crate::config::{AcmeMode, Config, Problem};
use crate::decide::access::{AccessRule, AuthCheck};
use crate::decide::htpasswd::HtpasswdFile;
use crate::decide::pipeline::PipelineConfig;
use crate::decide::rate::RateLimiter;
use crate::decide::trust::{self as trust_mod, EdgeSecret, TrustedRanges};
use crate::observe::access_log::AccessLog;
use crate::observe::diag::Diag;
use crate::observe::metrics::Metrics;
use crate::serve::tls::{self, CertStore};
use crate::serve::upstream::Upstream;

/// Everything derived from one configuration.
#[derive(Clone)]
pub struct Runtime {
    pub config: Config,
    /// Distinguishes runtimes built from different configurations (per-thread caches key on it).
    pub generation: u64,
    pub pipeline: PipelineConfig,
    pub upstream: Upstream,
    /// The certificates, when there is a TLS listener or a configured certificate.
    pub certs: Option<Arc<CertStore>>,
    pub tls: Option<TlsAcceptor>,
    /// `tls.client_ca`'s verifier, kept to rebuild the acceptor when certificates change.
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    pub htpasswd: Vec<Arc<HtpasswdFile>>,
    /// The edge secrets in force (`trust.edge_secret_file`), with the rotation overlap.
    pub edge: Option<EdgeState>,
}

/// The current edge secret and, for `trust.edge_secret_overlap` after it changed, the previous
/// one: Cloudflare takes a moment to roll a changed Transform Rule out to every edge, and a
/// request from an edge that still sends the old secret must not be refused meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeState {
    pub current: [u8; 32],
    /// The previous secret and when it was replaced.
    pub previous: Option<([u8; 32], Instant)>,
}

impl EdgeState {
    /// The state after reading the secret file again at `now`.
    pub fn next(
        old: Option<&EdgeState>,
        current: [u8; 32],
        overlap: Duration,
        now: Instant,
    ) -> EdgeState {
        let previous = match old {
            Some(old) if old.current != current => Some((old.current, now)),
            Some(old) => old.previous.filter(|(_, at)| *at + overlap > now),
            None => None,
        };
        EdgeState { current, previous }
    }

    /// What the pipeline checks: the current secret, and the previous one with the moment it
    /// stops being accepted (the overlap as configured now, so a shortened one applies at once).
    pub fn secret(&self, header: http::HeaderName, overlap: Duration) -> EdgeSecret {
        EdgeSecret::new(
            header,
            self.current,
            self.previous.map(|(hash, at)| (hash, at + overlap)),
        )
    }
}

/// What connections and requests share: the current runtime, swapped whole on reload, and the
/// process-wide parts that outlive any one configuration.
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    pub metrics: Metrics,
    pub access_log: AccessLog,
    pub diag: Diag,
    /// Memory held by buffered request bodies (`limits.request_buffer_total`).
    pub buffer_budget: Arc<crate::serve::body::BufferBudget>,
    /// Serialises reloads (the timer and SIGHUP may coincide); holds the last refusal logged, so
    /// the timer does not repeat an unchanged broken file at ERROR every interval.
    pub reload_lock: std::sync::Mutex<String>,
}

impl Shared {
    pub fn new(runtime: Runtime) -> Arc<Shared> {
        let access_log = AccessLog::start(runtime.config.log.access_file.clone());
        Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            metrics: Metrics::new(),
            access_log,
            diag: Diag::default(),
            buffer_budget: Arc::default(),
            reload_lock: std::sync::Mutex::new(String::new()),
        })
    }
}

impl Runtime {
    /// Loads everything a configuration names (trusted-range file, certificates, client CA,
    /// htpasswd files) and builds the runtime. `origin-gate check` runs exactly this, so "check
    /// passes" means "start works" up to binding sockets. `previous` lets an unchanged backend
    /// keep its pool of open connections across a reload.
    pub fn build(config: Config, previous: Option<&Runtime>) -> Result<Runtime, Vec<Problem>> {
        let mut problems = Vec::new();
        let trusted = TrustedRanges::from_config(&config.trust).unwrap_or_else(|p| {
            problems.extend(p);
            TrustedRanges::default()
        });
        let want_certs = !config.listen.https.is_empty() || !config.tls.certs.is_empty();
        let certs = if want_certs {
            match CertStore::load(&config) {
                Ok(c) => Some(Arc::new(c)),
                Err(p) => {
                    problems.extend(p);
                    None
                }
            }
        } else {
            None
        };
        let client_verifier = tls::client_verifier(&config.tls).unwrap_or_else(|p| {
            problems.push(p);
            None
        });
        let (access, htpasswd) = access_rules(&config).unwrap_or_else(|p| {
            problems.extend(p);
            (Vec::new(), Vec::new())
        });
        let acme_backend = match &config.acme {
            AcmeMode::Backend(u) => Some(u.clone()),
            _ => None,
        };
        let reusable =
            previous.filter(|p| p.config.backend == config.backend && p.config.acme == config.acme);
        let upstream = match reusable {
            Some(p) => Some(p.upstream.clone()),
            None => match Upstream::new(&config.backend, acme_backend) {
                Ok(u) => Some(u),
                Err(e) => {
                    problems.push(config.problem("backend", e));
                    None
                }
            },
        };
        let tls_acceptor = match (&certs, config.listen.https.is_empty()) {
            (Some(store), false) => {
                match tls::server_config(store.clone(), client_verifier.clone()) {
                    Ok(cfg) => Some(TlsAcceptor::from(cfg)),
                    Err(e) => {
                        problems.push(config.problem("tls", e.to_string()));
                        None
                    }
                }
            }
            _ => None,
        };
        problems.extend(backend_loops(&config));
        let now = Instant::now();
        let edge = match &config.trust.edge {
            None => None,
            Some(e) => match trust_mod::load_edge_secret(e) {
                Ok(hash) => Some(EdgeState::next(
                    previous.and_then(|p| p.edge.as_ref()),
                    hash,
                    e.overlap,
                    now,
                )),
                Err(p) => {
                    problems.push(p);
                    None
                }
            },
        };
        let (true, Some(upstream)) = (problems.is_empty(), upstream) else {
            return Err(problems.into_iter().map(|p| config.locate(p)).collect());
        };
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        // Per-worker backend pools are keyed on the generation: it changes only with the backend.
        let generation = match reusable {
            Some(p) => p.generation,
            None => GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        let mut pipeline = PipelineConfig::new(&config, trusted, access);
        pipeline.edge = edge_secret(&config, edge.as_ref());
        pipeline.via = via_entry();
        // The bucket table outlives the reload: unchanged rules keep their buckets (a reload must
        // not hand every guesser a new burst), changed ones start afresh.
        if let Some(old) = previous.and_then(|p| p.pipeline.rate.as_deref()) {
            pipeline.rate = RateLimiter::new(
                &config.limits.rate,
                config.limits.rate_table_size,
                Some(old),
            )
            .map(Arc::new);
        }
        Ok(Runtime {
            generation,
            pipeline,
            config,
            upstream,
            certs,
            tls: tls_acceptor,
            client_verifier,
            htpasswd,
            edge,
        })
    }

    /// The same snapshot with re-read certificates (and a TLS acceptor that serves them; TLS
    /// session tickets and the resumption cache carry over).
    pub fn with_certs(&self, store: CertStore) -> Result<Runtime, String> {
        let store = Arc::new(store);
        let mut next = self.clone();
        if let Some(old) = &self.tls {
            let mut cfg = tls::server_config(store.clone(), self.client_verifier.clone())
                .map_err(|e| e.to_string())?;
            if let Some(cfg) = Arc::get_mut(&mut cfg) {
                cfg.session_storage = old.config().session_storage.clone();
                cfg.ticketer = old.config().ticketer.clone();
            }
            next.tls = Some(TlsAcceptor::from(cfg));
        }
        next.certs = Some(store);
        Ok(next)
    }

    /// The same snapshot with a re-read htpasswd file in place of `old`, in the file list and in
    /// every access rule that names it.
    pub fn with_htpasswd(&self, old: &Arc<HtpasswdFile>, new: Arc<HtpasswdFile>) -> Runtime {
        let mut next = self.clone();
        for f in &mut next.htpasswd {
            if Arc::ptr_eq(f, old) {
                *f = new.clone();
            }
        }
        for rule in &mut next.pipeline.access {
            if let Some(auth) = &mut rule.auth {
                if Arc::ptr_eq(&auth.file, old) {
                    auth.file = new.clone();
                }
            }
        }
        next
    }

    /// The warning `check` and the start-up log give when IP allow/deny lists or lockdown rest on
    /// Cloudflare's address ranges alone. Those ranges — and Cloudflare's zone-level origin-pull
    /// certificate — are shared by every Cloudflare account: anyone can point a zone at this
    /// origin and choose `CF-Connecting-IP` from a Worker. `None` when there is another proof.
    pub fn proof_warning(&self) -> Option<String> {
        let c = &self.config;
        let ip_rules = c
            .access
            .iter()
            .any(|r| !r.allow.is_empty() || !r.deny.is_empty());
        // Cloudflare's ranges, built in or listed by hand (trust.extra, trust.ranges_file).
        let cloudflare = self
            .pipeline
            .trusted
            .covers_any(&crate::decide::trust::cloudflare_ranges());
        if !cloudflare || !(ip_rules || c.trust.only_trusted_peers) {
            return None;
        }
        let own_aop = c.trust.require_client_cert
            && c.tls
                .client_ca
                .as_deref()
                .is_some_and(|ca| !tls::is_cloudflare_shared_ca(ca));
        if c.trust.edge.is_some() || own_aop {
            return None;
        }
        let what = match (ip_rules, c.trust.only_trusted_peers) {
            (true, true) => "[[access]] IP allow/deny lists and trust.only_trusted_peers rely",
            (true, false) => "[[access]] IP allow/deny lists rely",
            _ => "trust.only_trusted_peers relies",
        };
        Some(format!("{what} on Cloudflare's address ranges alone, which every Cloudflare account shares: anyone can point a zone of their own at this origin and choose the client IP (CF-Connecting-IP) from a Worker. Fix: add trust.edge_header and trust.edge_secret_file with a Transform Rule in your zone that sends the secret, or require your own Authenticated Origin Pulls certificate (tls.client_ca with your CA, trust.require_client_cert = true); see deploy/cloudflare.md"))
    }

    /// The same runtime with a re-read edge secret (or an expired overlap), if that changes
    /// anything; `Err` when the file cannot be used (the current secrets stay in force).
    pub fn with_edge_reread(&self, now: Instant) -> Result<Option<Runtime>, Problem> {
        let Some(cfg) = &self.config.trust.edge else {
            return Ok(None);
        };
        let hash = trust_mod::load_edge_secret(cfg)?;
        let state = EdgeState::next(self.edge.as_ref(), hash, cfg.overlap, now);
        let secret = edge_secret(&self.config, Some(&state));
        if secret == self.pipeline.edge {
            return Ok(None);
        }
        let mut next = self.clone();
        next.edge = Some(state);
        next.pipeline.edge = secret;
        Ok(Some(next))
    }

    /// The same runtime with other trusted ranges (a changed `trust.ranges_file`).
    pub fn with_trusted(&self, trusted: TrustedRanges) -> Runtime {
        let mut next = self.clone();
        next.pipeline.trusted = trusted;
        next
    }
}

/// A backend address that is origin-gate itself: every request would come back to it (the
/// likeliest first slip is keeping WordPress's old `http://localhost` as `backend.url`). Names
/// are resolved; `0.0.0.0` / `[::]` listeners cover every address of this machine.
fn backend_loops(config: &Config) -> Vec<Problem> {
    use std::net::ToSocketAddrs;
    let listens: Vec<std::net::SocketAddr> = config
        .listen
        .http
        .iter()
        .chain(config.listen.https.iter())
        .copied()
        .filter(|a| a.port() != 0)
        .collect();
    let mut backends: Vec<(&str, &http::Uri)> = Vec::new();
    if let crate::config::BackendTarget::Url(u) = &config.backend.target {
        backends.push(("backend.url", u));
    }
    if let Some(u) = &config.backend.https_url {
        backends.push(("backend.https_url", u));
    }
    if let AcmeMode::Backend(u) = &config.acme {
        backends.push(("acme.backend", u));
    }
    let mut out = Vec::new();
    for (key, uri) in backends {
        let fix = match key {
            "acme.backend" => "run the ACME responder (certbot --standalone --http-01-port 8402) on another port and point acme.backend there".to_string(),
            // WordPress's TLS listener: a port of its own, beside the plain one.
            "backend.https_url" => "let WordPress's web server answer TLS on 127.0.0.1:8443 and point backend.https_url there (https://127.0.0.1:8443, with backend.tls_verify = false for its self-signed certificate)".to_string(),
            _ => format!("move WordPress to 127.0.0.1:8080 and point {key} there"),
        };
        let Some(host) = uri.host() else { continue };
        // `localhost.` is `localhost`: the resolver may not know the rooted form.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.strip_suffix('.').unwrap_or(host);
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let Ok(resolved) = (host, port).to_socket_addrs() else {
            continue;
        };
        for addr in resolved {
            // A wildcard listener covers the local addresses of its own family only: IPv6
            // sockets are bound IPV6_V6ONLY, so `[::]` never answers on 127.0.0.1.
            let own = listens.iter().find(|l| {
                l.port() == addr.port()
                    && (l.ip() == addr.ip()
                        || (l.ip().is_unspecified()
                            && l.is_ipv4() == addr.is_ipv4()
                            && is_local(addr.ip())))
            });
            if let Some(l) = own {
                out.push(config.problem(
                    key,
                    format!(
                        "{uri} is origin-gate itself ({addr} is served by its listener {l}): every request would come back to it; {fix}"
                    ),
                ));
                break;
            }
        }
    }
    out
}

/// This process's `Via` entry, the same for its whole life (across reloads): `1.1 origin-gate-`
/// and 16 hex digits from the randomly keyed std hasher over the pid and the start time.
fn via_entry() -> http::HeaderValue {
    use std::hash::{BuildHasher, Hasher};
    static VIA: std::sync::OnceLock<http::HeaderValue> = std::sync::OnceLock::new();
    VIA.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        http::HeaderValue::from_str(&format!("1.1 origin-gate-{:016x}", h.finish()))
            .unwrap_or_else(|_| http::HeaderValue::from_static("1.1 origin-gate"))
    })
    .clone()
}

/// Is this one of the machine's own addresses? Binding to it succeeds only if it is.
fn is_local(ip: std::net::IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

fn edge_secret(config: &Config, state: Option<&EdgeState>) -> Option<EdgeSecret> {
    let cfg = config.trust.edge.as_ref()?;
    Some(state?.secret(cfg.header.clone(), cfg.overlap))
}

pub type AccessSetup = (Vec<AccessRule>, Vec<Arc<HtpasswdFile>>);

/// Builds the access rules, loading each htpasswd file once however many rules name it.
pub fn access_rules(config: &Config) -> Result<AccessSetup, Vec<Problem>> {
    let mut files: Vec<Arc<HtpasswdFile>> = Vec::new();
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for r in &config.access {
        let htpasswd = match &r.htpasswd {
            None => None,
            Some(path) => match files.iter().find(|f| f.path == *path) {
                Some(f) => Some(f.clone()),
                None => match HtpasswdFile::load(path) {
                    Ok(f) => {
                        files.push(f.clone());
                        Some(f)
                    }
                    Err(p) => {
                        problems.extend(p);
                        None
                    }
                },
            },
        };
        rules.push(AccessRule {
            auth: htpasswd.map(|file| AuthCheck {
                file,
                realm: Arc::from(r.realm.as_str()),
                pass_authorization: r.pass_authorization,
            }),
            spec: r.clone(),
        });
    }
    if problems.is_empty() {
        Ok((rules, files))
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_secret_overlaps_then_expires() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let first = EdgeState::next(None, [1; 32], hour, t0);
        assert_eq!(first.previous, None);
        // Unchanged file: nothing moves.
        assert_eq!(EdgeState::next(Some(&first), [1; 32], hour, t0), first);
        // Changed: the previous one is accepted until the overlap is over …
        let t1 = t0 + Duration::from_secs(60);
        let rotated = EdgeState::next(Some(&first), [2; 32], hour, t1);
        let header = http::HeaderName::from_static("x-origin-auth");
        let secret = rotated.secret(header.clone(), hour);
        assert!(secret.accepts_hash(&[1; 32], t1 + hour - Duration::from_secs(1)));
        assert!(!secret.accepts_hash(&[1; 32], t1 + hour));
        assert!(secret.accepts_hash(&[2; 32], t1 + hour * 10));
        // … counted with the overlap as configured now: shortened, it ends sooner.
        let short = rotated.secret(header, Duration::ZERO);
        assert!(!short.accepts_hash(&[1; 32], t1));
        // The next reread after the overlap forgets the old secret.
        let later = EdgeState::next(Some(&rotated), [2; 32], hour, t1 + hour);
        assert_eq!(later.previous, None);
    }
}
