//! `origin-gate ranges update`: fetch Cloudflare's published address lists, check them, and
//! write `trust.ranges_file` atomically (the file it replaces kept beside it as `.previous`), so
//! a running instance picks the new list up on its next reload (`tls.reload_interval`, SIGHUP).
//! A configured ranges file *replaces* the built-in dated list (see `decide::trust`), so a range
//! Cloudflare gave up stops being trusted: that is why every list is checked, and a list that
//! lost more than half of its IPv4 or of its IPv6 ranges is refused without `--force`. Meant for
//! a weekly timer (`deploy/systemd/origin-gate-ranges.timer`): exit 0 when the file is current
//! (updated or unchanged), 1 when the lists could not be fetched or were refused (the file is
//! untouched), 2 for a usage or configuration error (a URL that is not https://, a bad
//! `--ca-file`).

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
use crate::decide::trust::{cloudflare_ranges, CLOUDFLARE_LIST_DATE};

/// Where Cloudflare publishes its edge ranges.
pub const CLOUDFLARE_V4_URL: &str = "https://www.cloudflare.com/ips-v4";
pub const CLOUDFLARE_V6_URL: &str = "https://www.cloudflare.com/ips-v6";
/// Where the packaged units and the example configuration keep the file: the systemd unit's
/// `StateDirectory`, writable by the timer's service under `ProtectSystem=strict`.
pub const EXAMPLE_RANGES_FILE: &str = "/var/lib/origin-gate/cloudflare-ranges.txt";

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
    /// Accept an IPv4 or IPv6 list that lost more than half of its ranges.
    pub force: bool,
}

/// How an update ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file already lists exactly these ranges; it is not rewritten.
    Unchanged { ranges: usize },
    /// The file was rewritten; the one it replaced is kept as `previous`.
    Updated {
        added: Vec<String>,
        removed: Vec<String>,
        ranges: usize,
        previous: PathBuf,
    },
    /// There was no file: it was written for the first time, compared with the built-in list
    /// it replaces (there is no `.previous`).
    Created {
        added: Vec<String>,
        removed: Vec<String>,
        ranges: usize,
    },
}

impl Outcome {
    /// What the operator reads: the ranges that come and go, then one summary line.
    pub fn report(&self, file: &Path) -> Vec<String> {
        let file = file.display();
        let reload =
            "a running origin-gate picks it up on its next reload (tls.reload_interval or SIGHUP)";
        match self {
            Outcome::Unchanged { ranges } => vec![format!("{file}: unchanged, {ranges} ranges")],
            Outcome::Updated {
                added,
                removed,
                ranges,
                previous,
            } => diff_lines(added, removed)
                .chain([format!(
                    "{file}: updated, {ranges} ranges ({} added, {} removed); the previous list is kept as {}; {reload}",
                    added.len(),
                    removed.len(),
                    previous.display()
                )])
                .collect(),
            Outcome::Created {
                added,
                removed,
                ranges,
            } => diff_lines(added, removed)
                .chain([format!(
                    "{file}: written, {ranges} ranges; the file replaces the built-in list of {CLOUDFLARE_LIST_DATE} ({} added, {} removed against it) from origin-gate's next start or reload (SIGHUP)",
                    added.len(),
                    removed.len(),
                )])
                .collect(),
        }
    }
}

fn diff_lines<'a>(added: &'a [String], removed: &'a [String]) -> impl Iterator<Item = String> + 'a {
    added
        .iter()
        .map(|a| format!("+ {a}"))
        .chain(removed.iter().map(|r| format!("- {r}")))
}

/// One list (IPv4 or IPv6) that lost more than half of its ranges.
#[derive(Debug, PartialEq, Eq)]
pub struct Shrink {
    pub family: &'static str,
    pub old: usize,
    pub new: usize,
}

/// Why it did not.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("cannot fetch {url}: {detail}")]
    Fetch { url: String, detail: String },
    #[error("{url}: {detail}; the ranges file is left as it was")]
    Invalid { url: String, detail: String },
    #[error("{}; refused, the ranges file is left as it was (check the lists by hand, then run again with --force)", shrink_message(.lists, .against))]
    Shrunk {
        /// What the new lists were compared with: the file, or the built-in list.
        against: String,
        lists: Vec<Shrink>,
    },
    #[error("cannot read {file}: {detail}; the ranges file is left as it was")]
    Read { file: String, detail: String },
    #[error("cannot write {file}: {detail}")]
    Write { file: String, detail: String },
    /// A command-line value that cannot work (a URL that is not https://).
    #[error("{0}")]
    Usage(String),
    /// The fetch cannot be set up (`--ca-file` unreadable, TLS configuration).
    #[error("{0}")]
    Setup(String),
}

impl UpdateError {
    /// The documented exit codes: 2 for usage and set-up errors, 1 for everything refused.
    pub fn exit_code(&self) -> u8 {
        match self {
            UpdateError::Usage(_) | UpdateError::Setup(_) => 2,
            _ => 1,
        }
    }
}

fn shrink_message(lists: &[Shrink], against: &str) -> String {
    let each: Vec<String> = lists
        .iter()
        .map(|s| {
            format!(
                "the new {} list has {} ranges where {against} has {}",
                s.family, s.new, s.old
            )
        })
        .collect();
    format!("{}: more than half would go", each.join(", and "))
}

/// Checks `--v4-url` / `--v6-url` before anything is fetched: only an absolute https:// URL. The
/// list decides whose forwarding headers are believed, so it must not be readable or
/// changeable on the way (plain http would let anyone on the path add their own ranges).
pub fn check_url(flag: &str, value: &str) -> Result<http::Uri, UpdateError> {
    let usage = |why: String| UpdateError::Usage(format!("{flag} {why}"));
    let not_a_url = || {
        usage(format!(
            "{value:?} is not a URL; give an absolute https:// URL, like {CLOUDFLARE_V4_URL}"
        ))
    };
    let uri: http::Uri = value.parse().map_err(|_| not_a_url())?;
    let (Some(scheme), Some(host)) = (uri.scheme(), uri.host()) else {
        return Err(not_a_url());
    };
    if *scheme != http::uri::Scheme::HTTPS {
        return Err(usage(format!(
            "must be an https:// URL: the list decides whom origin-gate trusts (got {value:?})"
        )));
    }
    if host.is_empty() {
        return Err(not_a_url());
    }
    Ok(uri)
}

/// Both URLs of an update, checked.
pub fn check_urls(v4_url: &str, v6_url: &str) -> Result<(http::Uri, http::Uri), UpdateError> {
    Ok((
        check_url("--v4-url", v4_url)?,
        check_url("--v6-url", v6_url)?,
    ))
}

/// What the new lists are compared with: the ranges file as it is, or — when there is none yet —
/// the built-in list the file is about to replace.
struct Before {
    ranges: BTreeSet<IpNet>,
    /// The file exists and is kept as `.previous` when it is replaced.
    from_file: bool,
    /// How the refusal names it.
    name: String,
}

fn before(file: &Path) -> Result<Before, UpdateError> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Before {
            ranges: text
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .filter_map(parse_cidr)
                .collect(),
            from_file: true,
            name: file.display().to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Before {
            ranges: cloudflare_ranges().into_iter().collect(),
            from_file: false,
            name: format!("the built-in list of {CLOUDFLARE_LIST_DATE}"),
        }),
        Err(e) => Err(UpdateError::Read {
            file: file.display().to_string(),
            detail: e.to_string(),
        }),
    }
}

/// The shrink guard, per address family: a list that lost more than half of its ranges is far
/// more likely a partial or wrong download than Cloudflare's real list, and with the file
/// replacing the built-in list every range it drops stops being trusted. Checked per family so
/// that IPv4 going from 15 to 6 is not hidden by an unchanged IPv6 list. A family the old list
/// did not have is not checked (nothing to shrink from).
fn shrinks(old: &BTreeSet<IpNet>, new: &BTreeSet<IpNet>) -> Vec<Shrink> {
    let count = |set: &BTreeSet<IpNet>, v6: bool| {
        set.iter()
            .filter(|n| matches!(n, IpNet::V6(_)) == v6)
            .count()
    };
    [("IPv4", false), ("IPv6", true)]
        .into_iter()
        .filter_map(|(family, v6)| {
            let (old, new) = (count(old, v6), count(new, v6));
            (new * 2 < old).then_some(Shrink { family, old, new })
        })
        .collect()
}

/// Fetches, checks, compares, writes.
pub async fn run(u: &Update) -> Result<Outcome, UpdateError> {
    let (v4_uri, v6_uri) = check_urls(&u.v4_url, &u.v6_url)?;
    let client = client(u.ca_file.as_deref())?;
    let v4 = parse_list(&u.v4_url, &fetch(&client, &u.v4_url, v4_uri).await?, false)?;
    let v6 = parse_list(&u.v6_url, &fetch(&client, &u.v6_url, v6_uri).await?, true)?;
    let new: BTreeSet<IpNet> = v4.iter().chain(v6.iter()).copied().collect();
    let before = before(&u.file)?;
    if before.from_file && new == before.ranges {
        // Confirmed current: the file's age (what doctor, check and /metrics report, and what
        // the 90-day WARN reads) is the time since the list was last checked, not last changed.
        if let Ok(f) = std::fs::File::options().write(true).open(&u.file) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        return Ok(Outcome::Unchanged { ranges: new.len() });
    }
    let shrunk = shrinks(&before.ranges, &new);
    if !u.force && !shrunk.is_empty() {
        return Err(UpdateError::Shrunk {
            against: before.name,
            lists: shrunk,
        });
    }
    let previous = before.from_file.then(|| previous_path(&u.file));
    let text = render(u, &v4, &v6, previous.as_deref());
    write_atomically(&u.file, &text, previous.as_deref())?;
    let added = new
        .difference(&before.ranges)
        .map(ToString::to_string)
        .collect();
    let removed = before
        .ranges
        .difference(&new)
        .map(ToString::to_string)
        .collect();
    let ranges = new.len();
    Ok(match previous {
        Some(previous) => Outcome::Updated {
            added,
            removed,
            ranges,
            previous,
        },
        None => Outcome::Created {
            added,
            removed,
            ranges,
        },
    })
}

/// `cloudflare-ranges.txt` → `cloudflare-ranges.txt.previous`, beside it.
fn previous_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".previous");
    PathBuf::from(name)
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

async fn fetch(client: &Fetcher, url: &str, uri: http::Uri) -> Result<String, UpdateError> {
    let err = |detail: String| UpdateError::Fetch {
        url: url.to_string(),
        detail,
    };
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

fn render(u: &Update, v4: &[IpNet], v6: &[IpNet], previous: Option<&Path>) -> String {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut out = format!(
        "# Cloudflare's edge ranges, written by `origin-gate ranges update` on {now}\n# from {} and {}.\n# As trust.ranges_file this list replaces origin-gate's built-in Cloudflare list.\n",
        u.v4_url, u.v6_url
    );
    if let Some(previous) = previous.and_then(Path::file_name) {
        out.push_str(&format!(
            "# The list it replaced is kept beside it as {}.\n",
            previous.to_string_lossy()
        ));
    }
    for n in v4.iter().chain(v6) {
        out.push_str(&n.to_string());
        out.push('\n');
    }
    out
}

/// Write to a temporary file in the same directory, flush it to disk, keep the old file as
/// `previous` (when there is one), then rename into place: a reader sees the old list or the
/// new one, never half. On failure the temporary file is removed and the old file stays.
fn write_atomically(path: &Path, text: &str, previous: Option<&Path>) -> Result<(), UpdateError> {
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
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        if let Some(previous) = previous {
            std::fs::copy(path, previous)?;
        }
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e.to_string())
    })
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

    fn nets(list: &str) -> BTreeSet<IpNet> {
        list.lines().filter_map(parse_cidr).collect()
    }

    #[test]
    fn only_absolute_https_urls_are_accepted_as_a_usage_error() {
        assert!(check_url("--v4-url", CLOUDFLARE_V4_URL).is_ok());
        assert!(check_url("--v4-url", "https://localhost:8443/ips-v4").is_ok());
        for (bad, says) in [
            (
                "http://127.0.0.1:18099/v4",
                "--v4-url must be an https:// URL: the list decides whom origin-gate trusts",
            ),
            ("ftp://example.com/v4", "must be an https:// URL"),
            ("notaurl", "--v4-url \"notaurl\" is not a URL"),
            ("/ips-v4", "is not a URL"),
            ("www.cloudflare.com/ips-v4", "is not a URL"),
            ("https://", "is not a URL"),
            ("", "is not a URL"),
        ] {
            match check_url("--v4-url", bad) {
                Err(e @ UpdateError::Usage(_)) => {
                    assert_eq!(e.exit_code(), 2, "{bad}");
                    assert!(e.to_string().contains(says), "{bad}: {e}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(
            check_urls(CLOUDFLARE_V4_URL, "http://x/v6").is_err_and(|e| e
                .to_string()
                .starts_with("--v6-url must be an https:// URL"))
        );
    }

    #[test]
    fn the_shrink_guard_looks_at_each_family() {
        let builtin: BTreeSet<IpNet> = cloudflare_ranges().into_iter().collect();
        assert_eq!(shrinks(&builtin, &builtin), vec![]);
        // IPv4 15 -> 6 with IPv6 unchanged: 22 -> 13 in total, not halved, but IPv4 is.
        let v4_cut: BTreeSet<IpNet> = builtin
            .iter()
            .filter(|n| matches!(n, IpNet::V4(_)))
            .take(6)
            .chain(builtin.iter().filter(|n| matches!(n, IpNet::V6(_))))
            .copied()
            .collect();
        assert_eq!(
            shrinks(&builtin, &v4_cut),
            vec![Shrink {
                family: "IPv4",
                old: 15,
                new: 6
            }]
        );
        // Half exactly is kept (15 -> 8 loses 7, 7 -> 4 loses 3).
        let halves: BTreeSet<IpNet> = builtin
            .iter()
            .filter(|n| matches!(n, IpNet::V4(_)))
            .take(8)
            .chain(builtin.iter().filter(|n| matches!(n, IpNet::V6(_))).take(4))
            .copied()
            .collect();
        assert_eq!(shrinks(&builtin, &halves), vec![]);
        // A family the old file did not have cannot shrink.
        let v4_only = nets("173.245.48.0/20\n103.21.244.0/22\n");
        assert_eq!(shrinks(&v4_only, &builtin), vec![]);
        let e = UpdateError::Shrunk {
            against: "f".into(),
            lists: shrinks(&builtin, &nets("173.245.48.0/20\n2400:cb00::/32\n")),
        };
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().starts_with(
            "the new IPv4 list has 1 ranges where f has 15, and the new IPv6 list has 1 ranges where f has 7: more than half would go"
        ), "{e}");
    }

    #[test]
    fn previous_is_only_mentioned_when_one_was_kept() {
        let file = Path::new("/var/lib/origin-gate/cloudflare-ranges.txt");
        let created = Outcome::Created {
            added: vec!["198.51.100.0/24".into()],
            removed: vec![],
            ranges: 23,
        }
        .report(file);
        assert_eq!(created[0], "+ 198.51.100.0/24");
        assert!(!created.concat().contains(".previous"), "{created:?}");
        assert!(created[1].contains(&format!(
            "the file replaces the built-in list of {CLOUDFLARE_LIST_DATE}"
        )));
        let updated = Outcome::Updated {
            added: vec![],
            removed: vec!["198.51.100.0/24".into()],
            ranges: 22,
            previous: previous_path(file),
        }
        .report(file);
        assert_eq!(updated[0], "- 198.51.100.0/24");
        assert!(updated[1].contains(
            "the previous list is kept as /var/lib/origin-gate/cloudflare-ranges.txt.previous"
        ));
        let u = Update {
            file: file.into(),
            v4_url: CLOUDFLARE_V4_URL.into(),
            v6_url: CLOUDFLARE_V6_URL.into(),
            ca_file: None,
            force: false,
        };
        let v4: Vec<IpNet> = nets("173.245.48.0/20\n").into_iter().collect();
        assert!(!render(&u, &v4, &[], None).contains(".previous"));
        assert!(render(&u, &v4, &[], Some(&previous_path(file)))
            .contains("kept beside it as cloudflare-ranges.txt.previous"));
    }
}
