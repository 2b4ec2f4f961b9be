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

use crate::config::{AcmeMode, BackendTarget, Config};
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
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Pass(m) => write!(f, "✓ {m}"),
            Check::Partial(m) => write!(f, "◐ {m}"),
            Check::Warn(m) => write!(f, "! {m}"),
            Check::Fail(m, fix) => write!(f, "✗ {m}\n    fix: {fix}"),
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
    let mut out = Vec::new();
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            out.push(Check::Fail(
                format!(
                    "configuration {} has {} problem(s):\n    {}",
                    path.display(),
                    e.problems.len(),
                    e.to_string().replace('\n', "\n    ")
                ),
                format!(
                    "correct the lines above; `origin-gate check --config {}` lists them again",
                    path.display()
                ),
            ));
            return out;
        }
    };
    let runtime = match Runtime::build(config.clone(), None) {
        Ok(r) => r,
        Err(problems) => {
            for p in problems {
                out.push(Check::Fail(
                    p.to_string(),
                    "correct the file it names, then run doctor again".into(),
                ));
            }
            return out;
        }
    };
    out.push(Check::Pass(format!(
        "configuration {} is valid",
        config.source
    )));
    out.extend(listeners(&config).await);
    out.extend(backend(&config, &runtime).await);
    out.extend(certificates(&config, &runtime));
    out.extend(acme(&config).await);
    out.push(trusted_ranges(&config, &runtime));
    out.push(zone_proof(&config, &runtime));
    out
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

/// Sends `req` and returns status, `Location`, `Server` and body.
async fn fetch<C>(
    client: &Client<C, Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> Result<(StatusCode, Option<String>, Option<String>, Bytes), String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let resp = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
        .map_err(|e| crate::serve::upstream::error_chain(&e))?;
    let status = resp.status();
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let location = header(http::header::LOCATION);
    let server = header(http::header::SERVER);
    let body = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
        .await
        .map_err(|_| "the body did not arrive in time".to_string())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, location, server, body))
}

/// Each listen address must be bindable now, or already served by a running origin-gate.
/// Who answers on a listen address that is in use.
enum Owner {
    /// origin-gate running this very configuration.
    This,
    /// origin-gate with another configuration (another instance, or an edited file not yet
    /// reloaded).
    OtherConfig(String),
    /// Something that is not origin-gate (or an origin-gate too old to say).
    Other(String),
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
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match header(crate::observe::diag::CONFIG_HEADER) {
        Some(f) if f == config.fingerprint() => Owner::This,
        Some(f) => Owner::OtherConfig(f),
        None => Owner::Other(header("server").unwrap_or_else(|| "no Server header".into())),
    }
}

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
                    Owner::OtherConfig(f) => out.push(Check::Fail(
                        format!("{scheme} listen address {addr} is served by an origin-gate with another configuration (fingerprint {f}, this file is {})", config.fingerprint()),
                        format!("another instance holds the port, or this file changed since it started: reload it (systemctl reload origin-gate) or stop the other one (`ss -ltnp 'sport = :{port}'`)"),
                    )),
                    Owner::Other(who) => out.push(Check::Fail(
                        format!("{scheme} listen address {addr} is taken by another program ({who})"),
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
    let host = config
        .server_names
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let mut out = Vec::new();
    for path in ["/wp-admin/", "/"] {
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
            Ok((status, location, _, _)) => {
                let loops = location.as_deref().is_some_and(|l| {
                    l.starts_with("http://")
                        || crate::observe::diag::is_self_redirect(l, "https", &host, path)
                });
                if status.is_redirection() && loops {
                    out.push(Check::Fail(
                        format!(
                            "backend redirects an https visitor's {path} to {} — a redirect loop (ERR_TOO_MANY_REDIRECTS) once Cloudflare sends https visitors",
                            location.unwrap_or_default()
                        ),
                        "the origin does not map X-Forwarded-Proto: add deploy/wordpress/wp-config-https.php to wp-config.php (or apache-https.conf / nginx-php-fpm.conf), or set backend.https_url".into(),
                    ));
                } else {
                    out.push(Check::Pass(format!(
                        "backend {base_text} answers an https visitor's {path} with {status} (no loop)"
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
    for p in &set.pending {
        out.push(Check::Fail(
            format!("certificate {} does not exist yet", p.spec.cert.display()),
            "issue it (certbot certonly --webroot ...): origin-gate serves the ACME challenge already and picks the files up by itself".into(),
        ));
    }
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

/// Through origin-gate's own HTTP listener a challenge must get the real answer, never
/// 401/403/3xx. With `acme.webroot` a temporary token file is written and read back.
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
    let check = match result {
        Err(e) => Check::Fail(
            format!("ACME challenge through {listener}: {e}"),
            "start origin-gate (systemctl start origin-gate); HTTP-01 validation needs it on port 80".into(),
        ),
        Ok(Followed::Broken { chain, rule }) => Check::Fail(
            format!("ACME challenge through {listener} was redirected to {}: {rule}; certificate renewals will fail", chain.join(" → ")),
            "exempt /.well-known/acme-challenge/ from the redirect (a site-wide .htaccess rewrite?), or set acme.webroot so origin-gate answers from disk".into(),
        ),
        Ok(Followed::Elsewhere { chain }) => Check::Partial(format!(
            "ACME challenge through {listener} is redirected to {}, another server: Let's Encrypt follows it (up to {ACME_MAX_REDIRECTS} redirects, http/https on ports 80 and 443, certificates not checked), so renewals work if that server has the token; hosting panels' own pre-checks often do not follow redirects",
            chain.join(" → ")
        )),
        Ok(Followed::Answered { chain, status, body }) => {
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
            } else if written.is_some() && (status != StatusCode::OK || body != token.as_bytes()) {
                Check::Fail(format!("ACME challenge through {listener}: the token written to acme.webroot came back as {status}{via}"), "check acme.webroot points at the directory certbot --webroot -w uses".into())
            } else if written.is_some() {
                Check::Pass(format!("ACME challenge path through {listener} answers 200 OK with the test token written to acme.webroot{via}"))
            } else if chain.is_empty() {
                Check::Pass(format!("ACME challenge path through {listener} answers {status} (never 401/403/3xx)"))
            } else {
                Check::Partial(format!(
                    "ACME challenge through {listener} answers {status}{via}: Let's Encrypt follows these redirects (up to {ACME_MAX_REDIRECTS}, http/https on ports 80 and 443, certificates not checked), but hosting panels' own pre-checks often do not; exempting /.well-known/acme-challenge/ from the redirect is safest"
                ))
            }
        }
    };
    vec![check]
}

/// Where a challenge fetch ended when followed like the CA follows it.
enum Followed {
    /// A final answer from this origin-gate (after `chain` redirects, possibly none).
    Answered {
        chain: Vec<String>,
        status: StatusCode,
        body: Bytes,
    },
    /// Redirected, within the CA's rules, to a host this configuration does not serve.
    Elsewhere { chain: Vec<String> },
    /// A redirect the CA will not follow.
    Broken { chain: Vec<String>, rule: String },
}

/// Fetches the challenge through this origin-gate's own listeners and follows redirects the way
/// Let's Encrypt does (`access::acme_redirect`): hops to a host this configuration serves go to
/// the matching local listener; a hop elsewhere is reported, not fetched.
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
        let (status, location, _, body) = fetch(client, req).await?;
        if !status.is_redirection() {
            return Ok(Followed::Answered {
                chain,
                status,
                body,
            });
        }
        let location = location.unwrap_or_default();
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

fn trusted_ranges(config: &Config, runtime: &Runtime) -> Check {
    let count = runtime.pipeline.trusted.len();
    if !config.trust.cloudflare {
        return Check::Warn(format!("{count} trusted ranges; the built-in Cloudflare list is off (trust.cloudflare = false)"));
    }
    let mtime = crate::observe::health::ranges_file_mtime(config.trust.ranges_file.as_deref());
    let (source, age) = crate::observe::health::list_in_use(now_unix(), mtime);
    match crate::observe::health::list_age_verdict(now_unix(), mtime) {
        Some((tracing::Level::ERROR, message)) => Check::Fail(
            message,
            "refresh the list: origin-gate ranges update, or upgrade origin-gate".into(),
        ),
        Some((_, message)) => Check::Warn(message),
        None if source == "built-in" => Check::Pass(format!("{count} trusted ranges (built-in Cloudflare list from {CLOUDFLARE_LIST_DATE}, {age} days old)")),
        None => Check::Pass(format!("{count} trusted ranges (Cloudflare list from trust.ranges_file, {age} days old; built-in list from {CLOUDFLARE_LIST_DATE} as the fallback)")),
    }
}

/// For `main`: where the config is when no `--config` was given.
pub fn default_config_path() -> &'static Path {
    Path::new("/etc/origin-gate/origin-gate.toml")
}
