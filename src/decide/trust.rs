//! Which peers may speak for the visitor.
//!
//! Forwarding headers (`CF-Connecting-IP`, `CF-Visitor`, `X-Forwarded-*`) are only as honest as the
//! peer that sent them. They are believed from Cloudflare's published edge ranges (embedded below
//! with the date they were copied), from `trust.extra`, and from `trust.ranges_file`; from anybody
//! else they are dropped (see `forwarded`).

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use crate::config::parse_cidr;
use crate::config::{EdgeSecretConfig, Problem, TrustConfig};

/// The day `cloudflare-ips-v4.txt` / `-v6.txt` were copied from Cloudflare's published lists
/// (`https://www.cloudflare.com/ips-v4`, `/ips-v6`).
pub const CLOUDFLARE_LIST_DATE: &str = "2026-11-24";
const CLOUDFLARE_V4: &str = include_str!("trust/cloudflare-ips-v4.txt");
const CLOUDFLARE_V6: &str = include_str!("trust/cloudflare-ips-v6.txt");

/// Days since the embedded Cloudflare list was copied, as of `now` (Unix seconds).
pub fn cloudflare_list_age_days(now_unix: i64) -> i64 {
    let mut parts = CLOUDFLARE_LIST_DATE
        .split('-')
        .filter_map(|p| p.parse::<i64>().ok());
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return 0;
    };
    now_unix.div_euclid(86_400) - days_from_civil(y, m, d)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Cloudflare edge ranges compiled into this binary.
pub fn cloudflare_ranges() -> Vec<IpNet> {
    CLOUDFLARE_V4
        .lines()
        .chain(CLOUDFLARE_V6.lines())
        .filter_map(parse_cidr)
        .collect()
}

/// A set of trusted ranges, checked per connection.
///
/// Stored as masked integers so the check is a handful of compares; the list is short (Cloudflare
/// publishes 22 ranges), so a linear scan beats anything cleverer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedRanges {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl TrustedRanges {
    /// Does this set trust any address of these networks (e.g. Cloudflare's, listed by hand)?
    pub fn covers_any(&self, nets: &[IpNet]) -> bool {
        nets.iter().any(|n| self.contains(n.network()))
    }

    pub fn new(nets: &[IpNet]) -> Self {
        let mut r = TrustedRanges::default();
        for net in nets {
            match net {
                IpNet::V4(n) => r.v4.push((u32::from(n.network()), u32::from(n.netmask()))),
                IpNet::V6(n) => {
                    r.v6.push((u128::from(n.network()), u128::from(n.netmask())))
                }
            }
        }
        r
    }

    /// Builds the set from config: built-in Cloudflare list (if on), `extra`, and the ranges file.
    /// The trusted set: Cloudflare's list — from `trust.ranges_file` when one is configured (what
    /// `origin-gate ranges update` keeps current; it *replaces* the built-in copy, so a range
    /// Cloudflare gave up stops being trusted), else the built-in dated list when
    /// `trust.cloudflare` — plus `trust.extra`.
    pub fn from_config(cfg: &TrustConfig) -> Result<Self, Vec<Problem>> {
        let mut nets = match (&cfg.ranges_file, cfg.cloudflare) {
            (Some(file), _) => load_ranges_file(file)?,
            (None, true) => cloudflare_ranges(),
            (None, false) => Vec::new(),
        };
        nets.extend(cfg.extra.iter().copied());
        Ok(TrustedRanges::new(&nets))
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Is `ip` inside a trusted range? IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack
    /// socket reports for IPv4 peers) counts as the IPv4 address.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                self.v4.iter().any(|&(net, mask)| a & mask == net)
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                self.v6.iter().any(|&(net, mask)| a & mask == net)
            }
        }
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; everything else unchanged.
#[inline]
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An address as text, formatted on the stack: IPv4 (nearly every request) without
/// `core::fmt` (its digits by table), IPv6 through `Display`. The hot path writes the visitor's
/// address four times per request (forwarding headers, `Forwarded`, the access log).
pub struct IpText {
    buf: [u8; 45],
    len: usize,
}

impl IpText {
    pub fn new(ip: IpAddr) -> IpText {
        let mut out = IpText {
            buf: [0; 45],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    if octet >= 100 {
                        out.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        out.push(b'0' + octet / 10 % 10);
                    }
                    out.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write as _;
                let mut w = &mut out.buf[..];
                // 45 bytes hold the longest form (`ffff:…:255.255.255.255`).
                if write!(w, "{v6}").is_ok() {
                    out.len = 45 - w.len();
                }
            }
        }
        out
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

/// Where the trusted ranges come from, for `check`, `doctor` and the start-up line.
pub fn list_source(cfg: &TrustConfig) -> String {
    let list = match (&cfg.ranges_file, cfg.cloudflare) {
        (Some(f), _) => format!(
            "Cloudflare list from trust.ranges_file {}, which replaces the built-in list of {CLOUDFLARE_LIST_DATE}",
            f.display()
        ),
        (None, true) => format!("built-in Cloudflare list from {CLOUDFLARE_LIST_DATE}"),
        (None, false) => "no Cloudflare list".to_string(),
    };
    if cfg.extra.is_empty() {
        list
    } else {
        format!("{list}, plus {} in trust.extra", cfg.extra.len())
    }
}

/// Reads a ranges file: one CIDR per line, `#` comments, blank lines ignored. Every bad line is a
/// problem naming the line; a file with no ranges at all is refused (it would silently trust
/// nobody, or — worse — be a truncated download).
pub fn load_ranges_file(path: &Path) -> Result<Vec<IpNet>, Vec<Problem>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            file: file.clone(),
            position: None,
            key: "trust.ranges_file".into(),
            message: format!(
                "cannot read the ranges file: {e}; it replaces the built-in Cloudflare list, so create it first: origin-gate ranges update --config <this file>"
            ),
        }]
    })?;
    let mut nets = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        match parse_cidr(content) {
            Some(n) => nets.push(n),
            None => problems.push(Problem {
                file: file.clone(),
                position: Some((i + 1, 1)),
                key: "trust.ranges_file".into(),
                message: format!("{content:?} is not a CIDR range; write one range per line, like 203.0.113.0/24"),
            }),
        }
    }
    if problems.is_empty() && nets.is_empty() {
        problems.push(Problem {
            file,
            position: None,
            key: "trust.ranges_file".into(),
            message: "the file lists no ranges; refusing an empty trust list (fill it or remove trust.ranges_file)".into(),
        });
    }
    if problems.is_empty() {
        Ok(nets)
    } else {
        Err(problems)
    }
}

/// The shortest edge secret accepted: anything shorter could be guessed by the other Cloudflare
/// accounts it exists to keep out.
pub const EDGE_SECRET_MIN: usize = 16;

/// The edge secret as the pipeline checks it: the header, and the SHA-256 of each secret still
/// accepted (the current one, plus the previous one during `trust.edge_secret_overlap` after a
/// rotation). Hashing first makes the comparison constant-time whatever the lengths, and keeps
/// the secret itself out of memory dumps of the pipeline.
///
/// Why it exists: Cloudflare's address ranges (and the zone-level Authenticated Origin Pulls
/// certificate) are shared by every Cloudflare customer. Anyone can point a zone of their own at
/// this origin and choose `CF-Connecting-IP` from a Worker; only something the owner's own zone
/// adds — a Transform Rule setting this header — tells the owner's traffic apart.
#[derive(Clone, PartialEq, Eq)]
pub struct EdgeSecret {
    pub header: HeaderName,
    current: [u8; 32],
    /// The previous secret and when it stops being accepted.
    previous: Option<([u8; 32], std::time::Instant)>,
}

impl std::fmt::Debug for EdgeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EdgeSecret({}, previous: {})",
            self.header,
            self.previous.is_some()
        )
    }
}

impl EdgeSecret {
    pub fn new(
        header: HeaderName,
        current: [u8; 32],
        previous: Option<([u8; 32], std::time::Instant)>,
    ) -> EdgeSecret {
        EdgeSecret {
            header,
            current,
            previous,
        }
    }

    /// Does this head carry exactly one value of the header, equal to an accepted secret? The
    /// previous secret counts only until its overlap ends — checked against the clock here, per
    /// request, not at the next reload tick.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.header).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        self.accepts_hash(&presented, std::time::Instant::now())
    }

    /// Each comparison is constant-time.
    pub fn accepts_hash(&self, presented: &[u8; 32], now: std::time::Instant) -> bool {
        if bool::from(self.current.ct_eq(presented)) {
            return true;
        }
        self.previous
            .is_some_and(|(old, until)| now < until && bool::from(old.ct_eq(presented)))
    }
}

/// Reads `trust.edge_secret_file`: one secret, surrounding white space ignored, at least
/// [`EDGE_SECRET_MIN`] visible ASCII characters (it travels as a header value a Transform Rule
/// sets). Returns its SHA-256.
pub fn load_edge_secret(edge: &EdgeSecretConfig) -> Result<[u8; 32], Problem> {
    let file = edge.file.display().to_string();
    let problem = |message: String| Problem {
        file: file.clone(),
        position: None,
        key: "trust.edge_secret_file".into(),
        message,
    };
    let text = std::fs::read(&edge.file)
        .map_err(|e| problem(format!("cannot read the edge secret: {e}")))?;
    let secret = text.trim_ascii();
    if secret.len() < EDGE_SECRET_MIN || !secret.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(problem(format!(
            "the secret must be one line of at least {EDGE_SECRET_MIN} visible ASCII characters; generate one with: openssl rand -hex 32 > {file}"
        )));
    }
    Ok(Sha256::digest(secret).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn ip_text_matches_display() {
        for s in [
            "0.0.0.0",
            "1.2.3.4",
            "9.10.99.100",
            "203.0.113.9",
            "255.255.255.255",
            "10.0.200.7",
            "::",
            "2001:db8::1",
            "::ffff:173.245.48.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "0:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        ] {
            let addr = ip(s);
            assert_eq!(IpText::new(addr).as_str(), addr.to_string(), "{s}");
        }
    }

    #[test]
    fn list_age_counts_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let listed = days_from_civil(2026, 11, 24) * 86_400;
        assert_eq!(cloudflare_list_age_days(listed + 3600), 0);
        assert_eq!(cloudflare_list_age_days(listed + 400 * 86_400), 400);
    }

    #[test]
    fn a_ranges_file_replaces_the_built_in_list() {
        let dir = std::env::temp_dir().join(format!("og-ranges-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cloudflare-ranges.txt");
        // Cloudflare's current list without 173.245.48.0/20 (given up since the built-in copy).
        std::fs::write(&file, "# test\n103.21.244.0/22\n2400:cb00::/32\n").unwrap();
        let cfg = TrustConfig {
            cloudflare: true,
            extra: vec!["127.0.0.2/32".parse().unwrap()],
            ranges_file: Some(file.clone()),
            only_trusted_peers: false,
            require_client_cert: false,
            edge: None,
        };
        let t = TrustedRanges::from_config(&cfg).unwrap();
        assert_eq!(t.len(), 3);
        assert!(t.contains(ip("103.21.244.1")) && t.contains(ip("127.0.0.2")));
        assert!(
            !t.contains(ip("173.245.48.1")),
            "a range no longer in the file is not trusted"
        );
        assert!(list_source(&cfg).contains("replaces the built-in list"));
        // Without the file, the built-in list (22 ranges) plus extra.
        let builtin = TrustConfig {
            ranges_file: None,
            ..cfg
        };
        assert_eq!(TrustedRanges::from_config(&builtin).unwrap().len(), 23);
        assert_eq!(
            list_source(&builtin),
            format!("built-in Cloudflare list from {CLOUDFLARE_LIST_DATE}, plus 1 in trust.extra")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cloudflare_list_is_complete() {
        assert_eq!(cloudflare_ranges().len(), 22);
    }

    #[test]
    fn cloudflare_edges_are_trusted_and_others_not() {
        let t = TrustedRanges::new(&cloudflare_ranges());
        assert!(t.contains(ip("173.245.48.1")));
        assert!(t.contains(ip("104.16.0.0")));
        assert!(t.contains(ip("2606:4700::1111")));
        assert!(!t.contains(ip("8.8.8.8")));
        assert!(!t.contains(ip("2001:db8::1")));
    }

    #[test]
    fn mapped_ipv4_peer_counts_as_ipv4() {
        let t = TrustedRanges::new(&cloudflare_ranges());
        assert!(t.contains(ip("::ffff:173.245.48.1")));
        assert!(!t.contains(ip("::ffff:8.8.8.8")));
    }

    #[test]
    fn bare_address_is_a_host_route_and_host_bits_are_masked() {
        assert_eq!(parse_cidr("127.0.0.2"), "127.0.0.2/32".parse().ok());
        assert_eq!(parse_cidr("10.1.2.3/8"), "10.0.0.0/8".parse().ok());
        assert_eq!(parse_cidr("nonsense"), None);
    }
}
