//! `origin-gate doctor`: checks the setup on this machine and prints a checklist in plain words,
//! ✓ or ✗ with the fix, so a site owner learns why the site shows 525, loops, or will fail its
//! next certificate renewal before the visitors do. Exit status 1 when anything is ✗.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::{AcmeMode, BackendTarget, Config, Problem};
use crate::decide::access::{acme_redirect, AcmeHop, ACME_MAX_REDIRECTS};
use crate::decide::pipeline::{decide, ConnContext, ACME_CHALLENGE_PREFIX};
use crate::decide::trust::CLOUDFLARE_LIST_DATE;
use crate::decide::visitor::Scheme;
use crate::serve::state::Runtime;
use crate::serve::tls::{name_covers, now_unix};

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Pass(String),
    /// Works, with a condition worth knowing (a challenge redirect the CA follows).
    Partial(String),
    /// Worth knowing, does not fail the run.
    Warn(String),
    /// What is wrong, and the fix.
    Fail(String, String),
    /// Not checked, and why: what it would have measured is not this configuration's
    /// origin-gate (the reason is ✗ elsewhere in the list, so it is not counted twice).
    Skipped(String),
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Pass(m) => write!(f, "✓ {m}"),
            Check::Partial(m) => write!(f, "◐ {m}"),
            Check::Warn(m) => write!(f, "! {m}"),
            Check::Fail(m, fix) => write!(f, "✗ {m}\n    fix: {fix}"),
            Check::Skipped(m) => write!(f, "○ {m}"),
        }
    }
}

impl Check {
    pub fn failed(&self) -> bool {
        matches!(self, Check::Fail(..))
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// Runs every check for the configuration at `path`.
pub async fn run(path: &Path) -> Vec<Check> {
    let (mut out, loaded) = configuration(path);
    let Some((config, runtime)) = loaded else {
        return out;
    };
    out.extend(listeners(&config).await);
    out.extend(backend(&config, &runtime).await);
    out.extend(certificates(&config, &runtime));
    out.extend(acme(&config).await);
    out.push(trusted_ranges(&config, &runtime));
    out.push(zone_proof(&config, &runtime));
    out
}

/// The configuration step is `check`'s own one-pass list (syntax, keys, values, the self-loop,
/// certificate, htpasswd and other named files), one ✗ per problem so the summary counts what
/// `check` counts. The rest of the checks run only when the sole problems are certificate files
/// not issued yet: origin-gate starts without them (first issuance), and then the ACME path is
/// exactly what the operator needs to see.
fn configuration(path: &Path) -> (Vec<Check>, Option<(Config, Runtime)>) {
    // Certificates not issued yet are not `check` problems (origin-gate starts without them) but
    // doctor judges the whole deployment: they are ✗ here, with the issuance as the fix.
    let checked = crate::ops::check::run(path);
    let waiting = checked.waiting;
    let mut problems = checked.problems;
    problems.extend(waiting.iter().cloned());
    problems.sort_by_key(|p| p.position.unwrap_or((usize::MAX, 0)));
    let loaded = Config::load(path)
        .ok()
        .and_then(|c| Runtime::build(c.clone(), None).ok().map(|r| (c, r)));
    let Some(problem_checks) = config_problems(path, &problems, &waiting) else {
        return match loaded {
            Some((config, runtime)) => (
                vec![Check::Pass(format!(
                    "configuration {} is valid",
                    config.source
                ))],
                Some((config, runtime)),
            ),
            None => (
                vec![Check::Fail(
                    format!(
                        "configuration {} changed while doctor was reading it",
                        path.display()
                    ),
                    "run doctor again".into(),
                )],
                None,
            ),
        };
    };
    let only_waiting = problems.iter().all(|p| waiting.contains(p));
    (problem_checks, loaded.filter(|_| only_waiting))
}

/// One ✗ per problem of `check`'s list, worded exactly as `check` words it; `None` when there
/// are none. Certificate files not issued yet (`waiting`) get the issuance fix.
fn config_problems(path: &Path, problems: &[Problem], waiting: &[Problem]) -> Option<Vec<Check>> {
    if problems.is_empty() {
        return None;
    }
    let fix = format!(
        "correct it; `origin-gate check --config {}` lists the same problems",
        path.display()
    );
    Some(
        problems
            .iter()
            .map(|p| {
                let fix = if waiting.contains(p) {
                    "issue the certificate (certbot certonly --webroot ...): origin-gate starts without it, serves the ACME challenge already and picks the files up by itself".to_string()
                } else {
                    fix.clone()
                };
                Check::Fail(p.to_string(), fix)
            })
            .collect(),
    )
}

/// Is "from Cloudflare" also "from my zone"? The edge secret, an own AOP CA, or the warning.
fn zone_proof(config: &Config, runtime: &Runtime) -> Check {
    if let Some(e) = &config.trust.edge {
        return Check::Pass(format!(
            "edge secret configured: peers in the trusted ranges must send {} (secret file {}; a changed secret is reloaded, the previous one accepted for {})",
            e.header,
            e.file.display(),
            humantime::format_duration(e.overlap)
        ));
    }
    match runtime.proof_warning() {
        Some(w) => Check::Warn(w),
        None if runtime.config.trust.require_client_cert && runtime.config.tls.client_ca.is_some() => {
            Check::Pass("your own Authenticated Origin Pulls CA proves the zone (tls.client_ca with trust.require_client_cert)".into())
        }
        None => Check::Warn("no edge secret (trust.edge_header): any Cloudflare account's zone can choose the client IP WordPress sees (X-Real-IP, X-Forwarded-For); nothing here grants access by IP, but plugins that rate-limit or log by IP believe it — add trust.edge_header and trust.edge_secret_file (deploy/cloudflare.md)".into()),
    }
}

/// `0.0.0.0` / `[::]` listeners are probed on loopback.
fn probe_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        a => a,
    }
}

type Probe = Client<HttpConnector, Empty<Bytes>>;

fn probe_client() -> Probe {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(TIMEOUT));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(http)
}

type HttpsProbe = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// An http and https client that, like a certificate authority fetching a challenge, does not
/// validate certificates.
fn https_probe_client() -> Result<HttpsProbe, String> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(TIMEOUT));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(crate::serve::upstream::client_tls_config(false)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector))
}

/// What a probe got back.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    /// `X-Origin-Gate-Config`: the configuration fingerprint a running origin-gate adds to its
    /// answer to a marked (`X-Origin-Gate-Doctor`) probe from loopback.
    fingerprint: Option<String>,
    server: Option<String>,
    body: Bytes,
}

impl Answer {
    /// Who answered, judged by the fingerprint: an answer says something about this
    /// configuration only when this configuration's origin-gate gave it.
    fn owner(&self, config: &Config) -> Owner {
        owner_of(self.fingerprint.as_deref(), self.server.as_deref(), config)
    }
}

/// Sends `req` and reads the whole answer.
async fn fetch<C>(
    client: &Client<C, Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> Result<Answer, String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let resp = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
        .map_err(|e| crate::serve::upstream::error_chain(&e))?;
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let location = header(http::header::LOCATION.as_str());
    let server = header(http::header::SERVER.as_str());
    let fingerprint = header(crate::observe::diag::CONFIG_HEADER);
    let body = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
        .await
        .map_err(|_| "the body did not arrive in time".to_string())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Answer {
        status,
        location,
        fingerprint,
        server,
        body,
    })
}

/// Who answers on a listen address that is in use.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// origin-gate running this very configuration.
    This,
    /// origin-gate with another configuration (another instance, or an edited file not yet
    /// reloaded).
    OtherConfig(String),
    /// Something that is not origin-gate (or an origin-gate too old to say).
    Other(String),
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::This => f.write_str("origin-gate with this configuration"),
            Owner::OtherConfig(fp) => write!(
                f,
                "an origin-gate with another configuration (fingerprint {fp})"
            ),
            Owner::Other(who) => write!(f, "another program ({who})"),
        }
    }
}

fn owner_of(fingerprint: Option<&str>, server: Option<&str>, config: &Config) -> Owner {
    match fingerprint {
        Some(f) if f == config.fingerprint() => Owner::This,
        Some(f) => Owner::OtherConfig(f.to_string()),
        None => Owner::Other(server.unwrap_or("no Server header").to_string()),
    }
}

/// Asks the listener with a marked probe (`X-Origin-Gate-Doctor`, honoured from loopback only,
/// logged at debug by origin-gate): origin-gate answers with its configuration's fingerprint.
async fn owner(client: &HttpsProbe, addr: SocketAddr, scheme: Scheme, config: &Config) -> Owner {
    let uri = format!("{scheme}://{}{ACME_CHALLENGE_PREFIX}", probe_addr(addr));
    let req = Request::get(uri)
        .header("host", "doctor.invalid")
        .header(crate::observe::diag::DOCTOR_HEADER, now_unix().to_string())
        .body(Empty::new());
    let Ok(req) = req else {
        return Owner::Other("no request could be built".into());
    };
    let resp = match tokio::time::timeout(TIMEOUT, client.request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Owner::Other(crate::serve::upstream::error_chain(&e)),
        Err(_) => return Owner::Other(format!("no answer within {TIMEOUT:?}")),
    };
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
    owner_of(
        header(crate::observe::diag::CONFIG_HEADER),
        header("server"),
        config,
    )
}

/// Each listen address must be bindable now, or already served by this configuration's
/// origin-gate.
async fn listeners(config: &Config) -> Vec<Check> {
    let client = match https_probe_client() {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::Fail(
                format!("cannot build the probe client: {e}"),
                "report this as a bug".into(),
            )]
        }
    };
    let mut out = Vec::new();
    let all = config
        .listen
        .http
        .iter()
        .map(|a| (*a, Scheme::Http))
        .chain(config.listen.https.iter().map(|a| (*a, Scheme::Https)));
    for (addr, scheme) in all {
        match crate::serve::server::bind_listener(addr) {
            Ok(l) => {
                drop(l);
                out.push(Check::Pass(format!("{scheme} listen address {addr} is free to bind (origin-gate is not running yet)")));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let port = addr.port();
                match owner(&client, addr, scheme, config).await {
                    Owner::This => out.push(Check::Pass(format!(
                        "{scheme} listen address {addr} is served by origin-gate with this configuration"
                    ))),
                    o @ Owner::OtherConfig(_) => out.push(Check::Fail(
                        format!("{scheme} listen address {addr} is served by {o} — this file's fingerprint is {}", config.fingerprint()),
                        format!("another instance holds the port, or this file changed since it started: reload it (systemctl reload origin-gate) or stop the other one (`ss -ltnp 'sport = :{port}'`)"),
                    )),
                    o @ Owner::Other(_) => out.push(Check::Fail(
                        format!("{scheme} listen address {addr} is taken by {o}"),
                        format!("stop it (`ss -ltnp 'sport = :{port}'` shows which; often apache2 or nginx still on the public port) or move it to 127.0.0.1:8080 behind origin-gate"),
                    )),
                }
            }
            Err(e) => out.push(Check::Fail(
                format!("{scheme} listen address {addr} cannot be bound: {e}"),
                crate::serve::server::bind_hint(addr, &e)
                    .trim_start_matches(" — ")
                    .to_string(),
            )),
        }
    }
    out
}

/// The backend answers, and an https visitor to `/wp-admin/` and `/` is not redirected to http
/// or to the URL it asked for — which is what WordPress does when the origin does not map
/// `X-Forwarded-Proto`.
async fn backend(config: &Config, runtime: &Runtime) -> Vec<Check> {
    let BackendTarget::Url(base) = &config.backend.target else {
        return vec![Check::Pass(
            "backend: the embedded echo origin (no backend configured)".into(),
        )];
    };
    let base_text = base.to_string().trim_end_matches('/').to_string();
    if base.scheme_str() == Some("https") {
        return vec![Check::Warn(format!(
            "backend {base_text} is https: the loop check speaks plain http only and was skipped"
        ))];
    }
    let client = probe_client();
    let first_host = config
        .server_names
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let mut out = Vec::new();
    // Without server_names the probe's Host is a stand-in, and WordPress redirects a host that
    // is not its site address to the one that is: that redirect is followed once, with the
    // host it names, so the loop check sees what a visitor to the real name gets.
    let mut probes: Vec<(&'static str, String)> = vec![
        ("/wp-admin/", first_host.clone()),
        ("/", first_host.clone()),
    ];
    let mut followed = 0;
    let mut i = 0;
    while let Some((path, host)) = probes.get(i).cloned() {
        i += 1;
        // The request exactly as origin-gate forwards it for an https visitor behind Cloudflare.
        let mut head = match Request::get(path)
            .header("host", &host)
            .header("cf-visitor", "{\"scheme\":\"https\"}")
            .body(())
        {
            Ok(r) => r.into_parts().0,
            Err(_) => continue,
        };
        let mut pipeline = runtime.pipeline.clone();
        // Our probe stands in for Cloudflare, so its CF-Visitor is believed.
        let probe_peer: Vec<_> = crate::decide::trust::parse_cidr("127.0.0.1/32")
            .into_iter()
            .collect();
        pipeline.trusted = crate::decide::trust::TrustedRanges::new(&probe_peer);
        pipeline.access.clear();
        // The probe checks the backend's https mapping, not the zone proof: it is believed
        // without the edge secret or a client certificate (which a real edge would present).
        pipeline.edge = None;
        pipeline.require_client_cert = false;
        pipeline.only_trusted_peers = false;
        let conn = ConnContext::new(
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 1], 80)),
            Scheme::Http,
            None,
        );
        let _ = decide(&pipeline, &conn, &mut head);
        let uri = match format!("{base_text}{path}").parse::<Uri>() {
            Ok(u) => u,
            Err(_) => continue,
        };
        let mut req = Request::get(uri);
        for (name, value) in &head.headers {
            req = req.header(name, value);
        }
        let Ok(req) = req.body(Empty::new()) else {
            continue;
        };
        match fetch(&client, req).await {
            Err(e) => {
                out.push(Check::Fail(
                    format!("backend {base_text} did not answer {path}: {e}"),
                    "start the WordPress web server (apache2/nginx + php-fpm) and make it listen on that address".into(),
                ));
                return out;
            }
            Ok(Answer {
                status, location, ..
            }) => {
                let loops = location.as_deref().is_some_and(|l| {
                    l.starts_with("http://")
                        || crate::observe::diag::is_self_redirect(l, "https", &host, path)
                });
                let other_host = location
                    .as_deref()
                    .filter(|_| status.is_redirection() && !loops)
                    .and_then(|l| l.parse::<Uri>().ok())
                    .filter(|u| u.scheme_str() == Some("https") && u.path() == path)
                    .and_then(|u| u.authority().map(|a| a.to_string()));
                if let (Some(site), true) = (&other_host, config.server_names.is_empty()) {
                    if followed < 2 {
                        followed += 1;
                        probes.insert(i, (path, site.clone()));
                        continue;
                    }
                }
                if status.is_redirection() && loops {
                    out.push(Check::Fail(
                        format!(
                            "backend redirects an https visitor's {path} to {} — a redirect loop (ERR_TOO_MANY_REDIRECTS) once Cloudflare sends https visitors",
                            location.unwrap_or_default()
                        ),
                        "the origin does not map X-Forwarded-Proto: add deploy/wordpress/wp-config-https.php to wp-config.php (or apache-https.conf / nginx-php-fpm.conf), or set backend.https_url".into(),
                    ));
                } else {
                    let to = if host == first_host {
                        String::new()
                    } else {
                        format!(" for Host {host}")
                    };
                    out.push(Check::Pass(format!(
                        "backend {base_text} answers an https visitor's {path}{to} with {status} (no loop)"
                    )));
                }
            }
        }
    }
    out
}

/// The "www." twin of a name, or the apex of a "www." name.
fn twin(name: &str) -> Option<String> {
    if name.starts_with("*.") || name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    match name.strip_prefix("www.") {
        Some(apex) => Some(apex.to_string()),
        None if name.matches('.').count() == 1 => Some(format!("www.{name}")),
        None => None,
    }
}

/// Each certificate parses, matches its key, has days left, and covers every configured name
/// including the www./apex twin.
fn certificates(config: &Config, runtime: &Runtime) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(store) = &runtime.certs else {
        return out;
    };
    let set = store.current();
    // Files not issued yet are ✗ in the configuration step, with the issuance fix.
    if set.entries.is_empty() && set.pending.is_empty() && !config.listen.https.is_empty() {
        out.push(Check::Warn(
            "no [[tls.certs]]: TLS uses a self-signed certificate — fine for Cloudflare \"Full\", error 526 in \"Full (strict)\"".into(),
        ));
    }
    let now = now_unix();
    for e in &set.entries {
        let file = e.spec.cert.display();
        let Some(s) = &e.cert.summary else { continue };
        let (level, message) =
            crate::serve::tls::expiry_verdict(s, now, config.tls.expiry_warn_days);
        if level == tracing::Level::ERROR {
            let message = message.trim_start_matches("certificate ");
            out.push(Check::Fail(format!("certificate {file}: {message}"), "renew it now (certbot renew), or check the system clock; origin-gate reloads renewed files by itself".into()));
        } else if level == tracing::Level::WARN {
            out.push(Check::Fail(
                format!(
                    "certificate {file}: {}",
                    message.trim_start_matches("certificate ")
                ),
                "run `certbot renew --dry-run` and read its error (see the ACME check below)"
                    .into(),
            ));
        } else {
            out.push(Check::Pass(format!(
                "certificate {file}: key matches, {}, names [{}]",
                message.trim_start_matches("certificate valid, "),
                s.names.join(", ")
            )));
        }
        let mut wanted: Vec<String> = e.spec.hosts.clone();
        wanted.extend(
            config
                .server_names
                .iter()
                .filter(|n| e.names.iter().any(|c| name_covers(c, n)) || e.spec.hosts.is_empty())
                .cloned(),
        );
        for n in e.names.iter().chain(config.server_names.iter()) {
            if let Some(t) = twin(n) {
                if !wanted.contains(&t) {
                    wanted.push(t);
                }
            }
        }
        wanted.sort();
        wanted.dedup();
        for name in wanted {
            if s.names.iter().any(|c| name_covers(c, &name)) {
                continue;
            }
            let configured = config.server_names.contains(&name) || e.spec.hosts.contains(&name);
            let message = format!("certificate {file} does not cover {name}");
            let fix = format!(
                "reissue it with both names: certbot certonly ... -d {} -d {name}",
                s.names.first().cloned().unwrap_or_default()
            );
            if configured {
                out.push(Check::Fail(message, fix));
            } else {
                out.push(Check::Warn(format!(
                    "{message} (visitors who type it get a certificate error); {fix}"
                )));
            }
        }
    }
    out
}

/// Through origin-gate's own HTTP listener a challenge must get the real answer: 404 for a
/// token that does not exist (or 200), never 401/403, another error, or a redirect the CA will
/// not follow. With `acme.webroot` a temporary token file is written and read back. Only
/// answers from this configuration's origin-gate count: anything else on the port says nothing
/// about this file.
async fn acme(config: &Config) -> Vec<Check> {
    let Some(listener) = config.listen.http.first().copied() else {
        return vec![Check::Warn(
            "no http listener: HTTP-01 renewals cannot reach this origin-gate".into(),
        )];
    };
    let client = match https_probe_client() {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::Fail(
                format!("cannot build the probe client: {e}"),
                "report this as a bug".into(),
            )]
        }
    };
    let token = format!("origin-gate-doctor-{}", now_unix());
    let written = match &config.acme {
        AcmeMode::Webroot(dir) => {
            let dir = dir.join(".well-known").join("acme-challenge");
            let file = dir.join(&token);
            let ok =
                std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, token.as_bytes()));
            if let Err(e) = ok {
                return vec![Check::Fail(
                    format!("cannot write a test token into {}: {e}", dir.display()),
                    "make acme.webroot writable by the ACME client (and readable by origin-gate)"
                        .into(),
                )];
            }
            Some(file)
        }
        _ => None,
    };
    let host = config
        .server_names
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let start = AcmeHop {
        https: false,
        host: host.clone(),
        path_and_query: format!("{ACME_CHALLENGE_PREFIX}{token}"),
    };
    let result = follow_challenge(config, &client, start).await;
    if let Some(file) = &written {
        let _ = std::fs::remove_file(file);
    }
    let expected = written.is_some().then_some(token.as_bytes());
    vec![acme_verdict(listener, &config.acme, expected, result)]
}

/// Judges where a challenge fetch ended. `expected` is the test token's content when one was
/// written to `acme.webroot`.
fn acme_verdict(
    listener: SocketAddr,
    mode: &AcmeMode,
    expected: Option<&[u8]>,
    result: Result<Followed, String>,
) -> Check {
    match result {
        Err(e) => Check::Fail(
            format!("ACME challenge through {listener}: {e}"),
            "start origin-gate (systemctl start origin-gate); HTTP-01 validation needs it on port 80".into(),
        ),
        Ok(Followed::NotThis { chain, owner, .. }) if chain.is_empty() => Check::Skipped(format!(
            "ACME challenge through {listener} not checked: {owner} answers there, not origin-gate with this configuration, so its answer says nothing about this file (see the listen address line above; fix that, then run doctor again)"
        )),
        Ok(Followed::NotThis { chain, addr, owner }) => Check::Skipped(format!(
            "ACME challenge through {listener} not checked past {}: the redirect leads to {addr}, where {owner} answers, not origin-gate with this configuration (see the listen address line above; fix that, then run doctor again)",
            chain.join(" → ")
        )),
        Ok(Followed::Broken { chain, rule }) => Check::Fail(
            format!("ACME challenge through {listener} was redirected to {}: {rule}; certificate renewals will fail", chain.join(" → ")),
            "exempt /.well-known/acme-challenge/ from the redirect (a site-wide .htaccess rewrite?), or set acme.webroot so origin-gate answers from disk".into(),
        ),
        Ok(Followed::Elsewhere { chain }) => Check::Partial(format!(
            "ACME challenge through {listener} is redirected to {}, another server: Let's Encrypt follows it (up to {ACME_MAX_REDIRECTS} redirects, http/https on ports 80 and 443, certificates not checked), so renewals work if that server has the token; hosting panels' own pre-checks often do not follow redirects",
            chain.join(" → ")
        )),
        Ok(Followed::Answered { chain, host, status, body }) => {
            let via = if chain.is_empty() {
                String::new()
            } else {
                format!(" after redirects to {}", chain.join(" → "))
            };
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                Check::Fail(
                    format!("ACME challenge through {listener} got {status}{via}: certificate renewals will fail"),
                    "the backend protects /.well-known/acme-challenge/: exempt it in its auth config, or set acme.webroot so origin-gate answers from disk".into(),
                )
            } else if let Some(token) = expected {
                if status == StatusCode::OK && body == token {
                    Check::Pass(format!("ACME challenge path through {listener} answers 200 OK with the test token written to acme.webroot{via}"))
                } else {
                    Check::Fail(format!("ACME challenge through {listener}: the token written to acme.webroot came back as {status}{via}"), "check acme.webroot points at the directory certbot --webroot -w uses".into())
                }
            } else if status.is_server_error() || (status.is_client_error() && status != StatusCode::NOT_FOUND) {
                failure_status(listener, mode, &host, status, &via)
            } else if chain.is_empty() {
                Check::Pass(format!("ACME challenge path through {listener} answers {status} for a made-up token, from origin-gate with this configuration (no password, no redirect, no refusal)"))
            } else {
                Check::Partial(format!(
                    "ACME challenge through {listener} answers {status}{via}: Let's Encrypt follows these redirects (up to {ACME_MAX_REDIRECTS}, http/https on ports 80 and 443, certificates not checked), but hosting panels' own pre-checks often do not; exempting /.well-known/acme-challenge/ from the redirect is safest"
                ))
            }
        }
    }
}

/// A final answer that is an error other than the expected 404 for a made-up token: the
/// certificate authority gets the same, and the validation fails (RFC 8555 §8.3 wants a 200
/// with the key authorization).
fn failure_status(
    listener: SocketAddr,
    mode: &AcmeMode,
    host: &str,
    status: StatusCode,
    via: &str,
) -> Check {
    let gateway = matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    );
    if let (AcmeMode::Backend(responder), true) = (mode, gateway) {
        // certbot --standalone listens only while it renews: between renewals nothing answers.
        return Check::Warn(format!(
            "ACME challenge through {listener} answers {status}{via}: the responder at acme.backend {responder} is not answering now — fine if it runs only during a renewal (certbot --standalone --http-01-port …), otherwise renewals fail; `certbot renew --dry-run` proves it"
        ));
    }
    let message = format!(
        "ACME challenge through {listener} got {status}{via}: the certificate authority's fetch gets the same, so certificate renewals will fail"
    );
    let fix = if status == StatusCode::MISDIRECTED_REQUEST {
        format!("origin-gate does not serve the host name {host}: add it to server_names (every name a certificate is issued for, the www./apex twin included)")
    } else {
        match mode {
            AcmeMode::Backend(responder) => format!(
                "the ACME responder at acme.backend {responder} answers {status}: read its log, or set acme.webroot so origin-gate answers challenges from disk"
            ),
            _ if gateway => "the backend did not answer the challenge: start the WordPress web server (apache2/nginx + php-fpm), or set acme.webroot so origin-gate answers challenges from disk".to_string(),
            _ => format!(
                "the backend answers /.well-known/acme-challenge/ with {status} (a security plugin or rewrite rule?): exempt that path, or set acme.webroot so origin-gate answers challenges from disk"
            ),
        }
    };
    Check::Fail(message, fix)
}

/// Where a challenge fetch ended when followed like the CA follows it.
enum Followed {
    /// A final answer from this origin-gate (after `chain` redirects, possibly none) for `host`.
    Answered {
        chain: Vec<String>,
        host: String,
        status: StatusCode,
        body: Bytes,
    },
    /// Redirected, within the CA's rules, to a host this configuration does not serve.
    Elsewhere { chain: Vec<String> },
    /// A redirect the CA will not follow.
    Broken { chain: Vec<String>, rule: String },
    /// Something other than this configuration's origin-gate answered at `addr` (after `chain`).
    NotThis {
        chain: Vec<String>,
        addr: SocketAddr,
        owner: Owner,
    },
}

/// Fetches the challenge through this origin-gate's own listeners and follows redirects the way
/// Let's Encrypt does (`access::acme_redirect`): hops to a host this configuration serves go to
/// the matching local listener; a hop elsewhere is reported, not fetched. Each answer must carry
/// this configuration's fingerprint; the first that does not ends the walk.
async fn follow_challenge(
    config: &Config,
    client: &HttpsProbe,
    mut hop: AcmeHop,
) -> Result<Followed, String> {
    let ours = |host: &str| {
        config.server_names.is_empty()
            || config
                .server_names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(host))
            || host == "localhost"
    };
    let mut chain = Vec::new();
    for _ in 0..=ACME_MAX_REDIRECTS {
        let listener = if hop.https {
            config.listen.https.first()
        } else {
            config.listen.http.first()
        };
        let Some(addr) = listener.copied().map(probe_addr) else {
            let rule = format!("origin-gate has no {} listener, so the CA's connection is refused (Cloudflare 521 for visitors)", if hop.https { "https" } else { "http" });
            return Ok(Followed::Broken { chain, rule });
        };
        let scheme = if hop.https { "https" } else { "http" };
        let uri = format!("{scheme}://{addr}{}", hop.path_and_query);
        let req = Request::get(uri)
            .header("host", &hop.host)
            .header(crate::observe::diag::DOCTOR_HEADER, "acme")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let answer = fetch(client, req).await?;
        let owner = answer.owner(config);
        if owner != Owner::This {
            return Ok(Followed::NotThis { chain, addr, owner });
        }
        if !answer.status.is_redirection() {
            return Ok(Followed::Answered {
                chain,
                host: hop.host,
                status: answer.status,
                body: answer.body,
            });
        }
        let location = answer.location.unwrap_or_default();
        chain.push(location.clone());
        hop = match acme_redirect(&hop, &location) {
            Ok(next) => next,
            Err(rule) => return Ok(Followed::Broken { chain, rule }),
        };
        if !ours(&hop.host) {
            return Ok(Followed::Elsewhere { chain });
        }
    }
    let rule = format!("more than {ACME_MAX_REDIRECTS} redirects (a loop?), and Let's Encrypt stops after {ACME_MAX_REDIRECTS}");
    Ok(Followed::Broken { chain, rule })
}

/// Which list the trusted ranges come from, and how old it is. The set is `trust.ranges_file`
/// when one is configured (it replaces the built-in list, whatever `trust.cloudflare` says), else
/// the built-in Cloudflare list when `trust.cloudflare` is on, plus `trust.extra` either way.
fn trusted_ranges(config: &Config, runtime: &Runtime) -> Check {
    let now = now_unix();
    ranges_verdict(
        runtime.pipeline.trusted.len(),
        config.trust.extra.len(),
        config.trust.ranges_file.as_deref(),
        config.trust.cloudflare,
        now,
        crate::observe::health::ranges_file_mtime(config.trust.ranges_file.as_deref()),
    )
}

/// The wording of [`trusted_ranges`], apart from the file system.
fn ranges_verdict(
    count: usize,
    extra: usize,
    ranges_file: Option<&Path>,
    cloudflare: bool,
    now: i64,
    mtime: Option<i64>,
) -> Check {
    let plus_extra = if extra > 0 {
        format!(" plus {extra} from trust.extra")
    } else {
        String::new()
    };
    let (list, verdict, fix) = match ranges_file {
        Some(file) => {
            let age = match mtime {
                Some(_) => format!(
                    "{} days old",
                    crate::observe::health::list_in_use(now, mtime).1
                ),
                None => "age unknown".to_string(),
            };
            (
                format!("the Cloudflare list in trust.ranges_file {}, {age}{plus_extra}; it replaces the built-in list, which is used only when no ranges_file is configured", file.display()),
                // Without the file's age, `list_age_verdict` would judge the built-in list.
                mtime.and_then(|_| crate::observe::health::list_age_verdict(now, mtime)),
                "refresh it: origin-gate ranges update (deploy/systemd/origin-gate-ranges.timer runs it weekly)",
            )
        }
        None if cloudflare => {
            let (_, age) = crate::observe::health::list_in_use(now, None);
            (
                format!("the built-in Cloudflare list from {CLOUDFLARE_LIST_DATE}, {age} days old{plus_extra}; in use because no trust.ranges_file is configured"),
                crate::observe::health::list_age_verdict(now, None),
                "set trust.ranges_file and run origin-gate ranges update, or upgrade origin-gate",
            )
        }
        None => {
            return Check::Warn(format!(
                "{count} trusted ranges, all from trust.extra: no Cloudflare list is in use (trust.cloudflare = false and no trust.ranges_file)"
            ))
        }
    };
    let line = format!("{count} trusted ranges ({list})");
    match verdict {
        Some((tracing::Level::ERROR, message)) => {
            Check::Fail(format!("{line}: {message}"), fix.into())
        }
        Some((_, message)) => Check::Warn(format!("{line}: {message}")),
        None => Check::Pass(line),
    }
}

/// For `main`: where the config is when no `--config` was given.
pub fn default_config_path() -> &'static Path {
    Path::new("/etc/origin-gate/origin-gate.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTENER: SocketAddr = SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
        80,
    );

    fn answered(status: StatusCode) -> Result<Followed, String> {
        Ok(Followed::Answered {
            chain: Vec::new(),
            host: "example.com".into(),
            status,
            body: Bytes::from_static(b"Not found."),
        })
    }

    #[test]
    fn a_missing_token_answered_404_or_200_by_this_origin_gate_passes() {
        for status in [StatusCode::NOT_FOUND, StatusCode::OK] {
            let check = acme_verdict(LISTENER, &AcmeMode::Proxy, None, answered(status));
            assert!(matches!(check, Check::Pass(_)), "{check}");
        }
    }

    /// 421 is what an origin-gate that does not serve the host answers: the CA's fetch fails.
    #[test]
    fn a_421_challenge_answer_fails_with_the_server_names_fix() {
        let check = acme_verdict(
            LISTENER,
            &AcmeMode::Proxy,
            None,
            answered(StatusCode::MISDIRECTED_REQUEST),
        );
        let Check::Fail(message, fix) = &check else {
            panic!("not ✗: {check}");
        };
        assert!(
            message.contains("got 421 Misdirected Request")
                && message.contains("renewals will fail"),
            "{message}"
        );
        assert!(
            fix.contains("example.com") && fix.contains("server_names"),
            "{fix}"
        );
    }

    #[test]
    fn other_client_and_server_errors_fail() {
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::GONE,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            let check = acme_verdict(LISTENER, &AcmeMode::Proxy, None, answered(status));
            assert!(check.failed(), "{status}: {check}");
            assert!(check.to_string().contains("acme.webroot"), "{check}");
        }
    }

    /// certbot --standalone behind acme.backend listens only while it renews.
    #[test]
    fn an_acme_backend_that_is_down_between_renewals_is_a_warning() {
        let mode = AcmeMode::Backend(Uri::from_static("http://127.0.0.1:8402"));
        let check = acme_verdict(LISTENER, &mode, None, answered(StatusCode::BAD_GATEWAY));
        assert!(matches!(check, Check::Warn(_)), "{check}");
        let check = acme_verdict(LISTENER, &mode, None, answered(StatusCode::FORBIDDEN));
        assert!(check.failed(), "{check}");
    }

    #[test]
    fn an_answer_from_anything_but_this_origin_gate_is_never_a_pass() {
        for owner in [
            Owner::Other("SimpleHTTP/0.6 Python/3.11.7".into()),
            Owner::OtherConfig("0123456789abcdef".into()),
        ] {
            for chain in [
                Vec::new(),
                vec!["https://example.com/.well-known/acme-challenge/x".to_string()],
            ] {
                let check = acme_verdict(
                    LISTENER,
                    &AcmeMode::Proxy,
                    None,
                    Ok(Followed::NotThis {
                        chain,
                        addr: LISTENER,
                        owner: owner.clone(),
                    }),
                );
                let Check::Skipped(message) = &check else {
                    panic!("not skipped: {check}");
                };
                assert!(
                    message.contains("not checked") && message.contains(&owner.to_string()),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn owner_is_judged_by_the_fingerprint() {
        let config = Config::parse(
            "[backend]\nurl = \"http://127.0.0.1:8080\"\n",
            crate::config::Source::Embedded,
        );
        let Ok(config) = config else {
            panic!("test config invalid");
        };
        let mine = config.fingerprint();
        assert_eq!(owner_of(Some(&mine), None, &config), Owner::This);
        assert_eq!(
            owner_of(Some("ffffffffffffffff"), Some("origin-gate"), &config),
            Owner::OtherConfig("ffffffffffffffff".into())
        );
        assert_eq!(
            owner_of(None, Some("SimpleHTTP/0.6"), &config),
            Owner::Other("SimpleHTTP/0.6".into())
        );
    }

    /// Unix time `days` after the built-in list's date.
    fn after_list(days: i64) -> i64 {
        (days - crate::decide::trust::cloudflare_list_age_days(0)) * 86_400
    }

    #[test]
    fn the_built_in_list_is_named_as_in_use_only_without_a_ranges_file() {
        let now = after_list(10);
        let check = ranges_verdict(24, 1, None, true, now, None);
        let Check::Pass(line) = &check else {
            panic!("{check}");
        };
        assert!(
            line.contains(&format!("built-in Cloudflare list from {CLOUDFLARE_LIST_DATE}, 10 days old plus 1 from trust.extra"))
                && line.contains("in use because no trust.ranges_file is configured"),
            "{line}"
        );
    }

    /// A configured ranges file replaces the built-in list (even with trust.cloudflare off); the
    /// built-in one is no fallback.
    #[test]
    fn a_ranges_file_is_named_as_replacing_the_built_in_list() {
        let now = after_list(30);
        let file = Path::new("/etc/origin-gate/cloudflare-ranges.txt");
        for cloudflare in [true, false] {
            let check = ranges_verdict(22, 0, Some(file), cloudflare, now, Some(now - 2 * 86_400));
            let Check::Pass(line) = &check else {
                panic!("{check}");
            };
            assert!(
                line.contains("the Cloudflare list in trust.ranges_file /etc/origin-gate/cloudflare-ranges.txt, 2 days old")
                    && line.contains("replaces the built-in list, which is used only when no ranges_file is configured")
                    && !line.contains("fallback"),
                "{line}"
            );
        }
    }

    /// The age that counts is the file's (`ranges update` renews it), not the built-in list's.
    #[test]
    fn an_old_ranges_file_is_judged_by_its_own_age() {
        let now = after_list(30);
        let file = Path::new("/etc/origin-gate/cloudflare-ranges.txt");
        let check = ranges_verdict(22, 0, Some(file), true, now, Some(now - 120 * 86_400));
        let Check::Warn(line) = &check else {
            panic!("{check}");
        };
        assert!(
            line.contains("trust.ranges_file /etc/origin-gate/cloudflare-ranges.txt, 120 days old")
                && line.contains("origin-gate ranges update"),
            "{line}"
        );
        let check = ranges_verdict(22, 0, Some(file), true, now, Some(now - 500 * 86_400));
        let Check::Fail(message, fix) = &check else {
            panic!("not ✗: {check}");
        };
        assert!(message.contains("500 days old"), "{message}");
        assert!(
            fix.contains("origin-gate ranges update") && !fix.contains("upgrade"),
            "the file replaces the built-in list, so upgrading does not help: {fix}"
        );
    }

    #[test]
    fn without_any_cloudflare_list_only_extra_is_trusted() {
        let check = ranges_verdict(1, 1, None, false, after_list(0), None);
        let Check::Warn(line) = &check else {
            panic!("{check}");
        };
        assert!(line.contains("no Cloudflare list is in use"), "{line}");
    }
}
