//! `origin-gate ranges update`: fetch Cloudflare's published address lists, check them, and
//! write `trust.ranges_file` atomically (the previous file kept beside it as `.previous`), so
//! a running instance picks the new list up on its next reload (`tls.reload_interval`, SIGHUP)
//! and the built-in dated list stays the fallback. Meant for a weekly timer
//! (`deploy/systemd/origin-gate-ranges.timer`): exit 0 when the file is current (updated or
//! unchanged), 1 when the lists could not be fetched or were refused (the file is untouched), 2
//! for a usage or configuration error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ipnet::IpNet;

use crate::config::parse_cidr;

/// Where Cloudflare publishes its edge ranges.
pub const CLOUDFLARE_V4_URL: &str = "https://www.cloudflare.com/ips-v4";
pub const CLOUDFLARE_V6_URL: &str = "https://www.cloudflare.com/ips-v6";

const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// A list of a few dozen ranges is a few hundred bytes; anything near this is not that list.
const MAX_LIST_BYTES: usize = 64 * 1024;
/// Sane bounds: Cloudflare publishes 15 IPv4 and 7 IPv6 ranges (2026); fewer than this many or
/// more than the maximum is a truncated download, an error page, or something else entirely.
const MIN_V4: usize = 5;
const MIN_V6: usize = 2;
const MAX_RANGES: usize = 1000;

/// What to fetch and where to write.
pub struct Update {
    pub file: PathBuf,
    pub v4_url: String,
    pub v6_url: String,
    /// Extra CA certificates to trust for the fetch (a test server, a corporate proxy).
    pub ca_file: Option<PathBuf>,
    /// Accept a list that shrank by more than half.
    pub force: bool,
}

/// How an update ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged {
        ranges: usize,
    },
    Updated {
        added: Vec<String>,
        removed: Vec<String>,
        ranges: usize,
    },
}

/// Why it did not.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("cannot fetch {url}: {detail}")]
    Fetch { url: String, detail: String },
    #[error("{url}: {detail}; the ranges file is left as it was")]
    Invalid { url: String, detail: String },
    #[error("the new list has {new} ranges where {file} has {old}: more than half would go; refused (check the lists by hand, then run again with --force)")]
    Shrunk {
        file: String,
        old: usize,
        new: usize,
    },
    #[error("cannot write {file}: {detail}")]
    Write { file: String, detail: String },
    #[error("{0}")]
    Setup(String),
}

/// Fetches, checks, compares, writes.
pub async fn run(u: &Update) -> Result<Outcome, UpdateError> {
    let client = client(u.ca_file.as_deref())?;
    let v4 = parse_list(&u.v4_url, &fetch(&client, &u.v4_url).await?, false)?;
    let v6 = parse_list(&u.v6_url, &fetch(&client, &u.v6_url).await?, true)?;
    let new: BTreeSet<String> = v4
        .iter()
        .chain(v6.iter())
        .map(ToString::to_string)
        .collect();
    let old: BTreeSet<String> = match std::fs::read_to_string(&u.file) {
        Ok(text) => text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .filter_map(parse_cidr)
            .map(|n| n.to_string())
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    if new == old {
        return Ok(Outcome::Unchanged { ranges: new.len() });
    }
    if !u.force && !old.is_empty() && new.len() * 2 < old.len() {
        return Err(UpdateError::Shrunk {
            file: u.file.display().to_string(),
            old: old.len(),
            new: new.len(),
        });
    }
    let text = render(u, &v4, &v6);
    write_atomically(&u.file, &text)?;
    Ok(Outcome::Updated {
        added: new.difference(&old).cloned().collect(),
        removed: old.difference(&new).cloned().collect(),
        ranges: new.len(),
    })
}

type Fetcher = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

fn client(ca_file: Option<&Path>) -> Result<Fetcher, UpdateError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| UpdateError::Setup(format!("--ca-file {}: {e}", path.display())))?;
        roots.add_parsable_certificates(certs);
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::serve::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| UpdateError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(FETCH_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

async fn fetch(client: &Fetcher, url: &str) -> Result<String, UpdateError> {
    let err = |detail: String| UpdateError::Fetch {
        url: url.to_string(),
        detail,
    };
    let uri: http::Uri = url.parse().map_err(|e| err(format!("not a URL: {e}")))?;
    let req = http::Request::get(uri)
        .header(
            http::header::USER_AGENT,
            concat!("origin-gate/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| err(e.to_string()))?;
    let resp = tokio::time::timeout(FETCH_TIMEOUT, client.request(req))
        .await
        .map_err(|_| err(format!("no answer within {FETCH_TIMEOUT:?}")))?
        .map_err(|e| err(crate::serve::upstream::error_chain(&e)))?;
    if resp.status() != http::StatusCode::OK {
        return Err(err(format!("answered {}", resp.status())));
    }
    let body = tokio::time::timeout(
        FETCH_TIMEOUT,
        Limited::new(resp.into_body(), MAX_LIST_BYTES).collect(),
    )
    .await
    .map_err(|_| err("the body did not arrive in time".into()))?
    .map_err(|e| err(format!("body: {e} (over {MAX_LIST_BYTES} bytes?)")))?
    .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| err("the list is not text".into()))
}

/// Every line a range of the right family, within sane counts.
fn parse_list(url: &str, text: &str, v6: bool) -> Result<Vec<IpNet>, UpdateError> {
    let invalid = |detail: String| UpdateError::Invalid {
        url: url.to_string(),
        detail,
    };
    let mut nets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // A bare address is not what this list holds: CIDR ranges only.
        let net = line
            .contains('/')
            .then(|| parse_cidr(line))
            .flatten()
            .filter(|n| matches!(n, IpNet::V6(_)) == v6)
            .ok_or_else(|| {
                let shown: String = line.chars().take(60).collect();
                invalid(format!(
                    "line {} is not an {} CIDR range: {shown:?}",
                    i + 1,
                    if v6 { "IPv6" } else { "IPv4" }
                ))
            })?;
        nets.push(net);
    }
    let min = if v6 { MIN_V6 } else { MIN_V4 };
    if nets.len() < min || nets.len() > MAX_RANGES {
        return Err(invalid(format!(
            "{} ranges, expected between {min} and {MAX_RANGES} (a truncated or wrong download?)",
            nets.len()
        )));
    }
    Ok(nets)
}

fn render(u: &Update, v4: &[IpNet], v6: &[IpNet]) -> String {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut out = format!(
        "# Cloudflare's edge ranges, written by `origin-gate ranges update` on {now}\n# from {} and {}; the previous list is beside this file as .previous\n",
        u.v4_url, u.v6_url
    );
    for n in v4.iter().chain(v6) {
        out.push_str(&n.to_string());
        out.push('\n');
    }
    out
}

/// Write to a temporary file in the same directory, flush it to disk, keep the old file as
/// `.previous`, then rename into place: a reader sees the old list or the new one, never half.
fn write_atomically(path: &Path, text: &str) -> Result<(), UpdateError> {
    use std::io::Write;
    let err = |detail: String| UpdateError::Write {
        file: path.display().to_string(),
        detail,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ranges".into());
    let tmp = dir.join(format!(".{name}.new"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| err(e.to_string()))?;
    f.sync_all().map_err(|e| err(e.to_string()))?;
    drop(f);
    if path.exists() {
        std::fs::copy(path, dir.join(format!("{name}.previous")))
            .map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_checked_line_by_line_and_by_size() {
        let good =
            "173.245.48.0/20\n103.21.244.0/22\n103.22.200.0/22\n103.31.4.0/22\n141.101.64.0/18\n";
        assert_eq!(parse_list("u", good, false).map(|n| n.len()).ok(), Some(5));
        assert!(
            parse_list("u", "173.245.48.0/20\n", false).is_err(),
            "too few"
        );
        assert!(parse_list("u", &good.replace("141.101.64.0/18", "<html>"), false).is_err());
        assert!(parse_list(
            "u",
            &good.replace("141.101.64.0/18", "2400:cb00::/32"),
            false
        )
        .is_err());
        assert!(parse_list("u", &good.replace("141.101.64.0/18", "141.101.64.1"), false).is_err());
    }
}
