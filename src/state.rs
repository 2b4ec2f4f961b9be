//! The state built from one configuration ([`Runtime`]) and the holder every connection and
//! request reads it from ([`Shared`]). A reload builds a complete new `Runtime` and swaps it in
//! only when every part of it is valid; a request reads the current one once, so it never sees
//! half of one configuration and half of another.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;

use crate::access::AccessRule;
use crate::access_log::AccessLog;
use crate::config::{AcmeMode, Config, Problem};
use crate::diag::Diag;
use crate::htpasswd::HtpasswdFile;
use crate::metrics::Metrics;
use crate::pipeline::PipelineConfig;
use crate::tls::{self, CertStore};
use crate::trust::TrustedRanges;
use crate::upstream::Upstream;

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
    pub htpasswd: Vec<Arc<HtpasswdFile>>,
}

/// What connections and requests share: the current runtime, swapped whole on reload, and the
/// process-wide parts that outlive any one configuration.
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    pub metrics: Metrics,
    pub access_log: AccessLog,
    pub diag: Diag,
}

impl Shared {
    pub fn new(runtime: Runtime) -> Arc<Shared> {
        let access_log = AccessLog::start(runtime.config.log.access_file.clone());
        Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            metrics: Metrics::new(),
            access_log,
            diag: Diag::default(),
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
            (Some(store), false) => match tls::server_config(store.clone(), client_verifier) {
                Ok(cfg) => Some(TlsAcceptor::from(cfg)),
                Err(e) => {
                    problems.push(config.problem("tls", e.to_string()));
                    None
                }
            },
            _ => None,
        };
        let (true, Some(upstream)) = (problems.is_empty(), upstream) else {
            return Err(problems);
        };
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Runtime {
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            pipeline: PipelineConfig::new(&config, trusted, access),
            config,
            upstream,
            certs,
            tls: tls_acceptor,
            htpasswd,
        })
    }

    /// The same runtime with other trusted ranges (a changed `trust.ranges_file`).
    pub fn with_trusted(&self, trusted: TrustedRanges) -> Runtime {
        let mut next = self.clone();
        next.pipeline.trusted = trusted;
        next
    }
}

type AccessSetup = (Vec<AccessRule>, Vec<Arc<HtpasswdFile>>);

/// Builds the access rules, loading each htpasswd file once however many rules name it.
fn access_rules(config: &Config) -> Result<AccessSetup, Vec<Problem>> {
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
            prefix: r.prefix.clone(),
            host: r.host.clone(),
            htpasswd,
            realm: r.realm.clone(),
            allow: r.allow.clone(),
            deny: r.deny.clone(),
            pass_authorization: r.pass_authorization,
        });
    }
    if problems.is_empty() {
        Ok((rules, files))
    } else {
        Err(problems)
    }
}
