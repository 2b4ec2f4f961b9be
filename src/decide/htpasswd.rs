//! Apache `htpasswd` files: the formats `htpasswd` and `openssl passwd` write — bcrypt (`$2y$`,
//! `$2a$`, `$2b$`), SHA-1 (`{SHA}`), APR1-MD5 (`$apr1$`), SHA-crypt (`$5$`, `$6$`) — verified with
//! maintained crates (APR1 is MD5-crypt with Apache's magic string, built on the `md-5` crate).
//! Plaintext and unknown entries are load errors naming the line: a file that silently accepted
//! plaintext would be a foot-gun.
//!
//! Successful verifications are cached for a minute, keyed by a SHA-256 of the Authorization
//! header (never the password itself), so bcrypt's deliberate cost is paid once per minute per
//! user instead of on every wp-admin asset.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Problem;

const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 10_000;

#[derive(Debug, Clone)]
enum Hash {
    Bcrypt(String),
    Sha1([u8; 20]),
    Apr1 { salt: String, full: String },
    ShaCrypt(String),
}

/// The parsed users of one file.
#[derive(Debug, Clone, Default)]
pub struct Htpasswd {
    users: HashMap<String, Hash>,
}

impl Htpasswd {
    /// Parses the text of an htpasswd file; every bad line is a problem.
    pub fn parse(text: &str, file: &Path) -> Result<Htpasswd, Vec<Problem>> {
        let mut users = HashMap::new();
        let mut problems = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let problem = |message: String| Problem {
                file: file.display().to_string(),
                position: Some((i + 1, 1)),
                key: "htpasswd".into(),
                message,
            };
            let Some((user, hash)) = line.split_once(':') else {
                problems.push(problem(format!(
                    "not a user:hash line; create entries with `htpasswd -B {} USER` (bcrypt)",
                    file.display()
                )));
                continue;
            };
            match parse_hash(hash) {
                Some(h) => {
                    users.insert(user.to_string(), h);
                }
                None => problems.push(problem(format!(
                    "user {user:?} has a plaintext, unknown or malformed password hash (origin-gate reads bcrypt, $apr1$, {{SHA}}, $5$ and $6$); write it with `htpasswd -B {} {user}` (bcrypt)",
                    file.display()
                ))),
            }
        }
        if problems.is_empty() {
            Ok(Htpasswd { users })
        } else {
            Err(problems)
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a password. Slow for bcrypt by design: call off the async workers.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        match hash {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Sha1(expected) => {
                let got: [u8; 20] = Sha1::digest(password.as_bytes()).into();
                got.ct_eq(expected).into()
            }
            Hash::Apr1 { salt, full } => apr1(password.as_bytes(), salt.as_bytes())
                .as_bytes()
                .ct_eq(full.as_bytes())
                .into(),
            Hash::ShaCrypt(h) => {
                use sha_crypt::PasswordVerifier;
                sha_crypt::ShaCrypt::default()
                    .verify_password(password.as_bytes(), h.as_str())
                    .is_ok()
            }
        }
    }
}

fn parse_hash(h: &str) -> Option<Hash> {
    if (h.starts_with("$2y$") || h.starts_with("$2a$") || h.starts_with("$2b$")) && h.len() == 60 {
        return Some(Hash::Bcrypt(h.to_string()));
    }
    if let Some(b64) = h.strip_prefix("{SHA}") {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        return <[u8; 20]>::try_from(bytes.as_slice()).ok().map(Hash::Sha1);
    }
    if let Some(rest) = h.strip_prefix("$apr1$") {
        let (salt, digest) = rest.split_once('$')?;
        if salt.is_empty() || salt.len() > 8 || digest.len() != 22 {
            return None;
        }
        return Some(Hash::Apr1 {
            salt: salt.to_string(),
            full: h.to_string(),
        });
    }
    if h.starts_with("$5$") || h.starts_with("$6$") {
        return sha_crypt::PasswordHashRef::new(h)
            .ok()
            .map(|_| Hash::ShaCrypt(h.to_string()));
    }
    None
}

/// Apache's APR1-MD5 (MD5-crypt with the magic `$apr1$`), as `htpasswd -m` writes it.
pub fn apr1(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let salt = &salt[..salt.len().min(8)];
    let alt = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(MAGIC)
        .chain_update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut bits = password.len();
    while bits > 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut fin = ctx.finalize();
    for i in 0..1000 {
        let mut c = Md5::new();
        if i & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if i % 3 != 0 {
            c.update(salt);
        }
        if i % 7 != 0 {
            c.update(password);
        }
        if i & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(37);
    out.push_str("$apr1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut to64 = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        to64(
            (u32::from(fin[a]) << 16) | (u32::from(fin[b]) << 8) | u32::from(fin[c]),
            4,
        );
    }
    to64(u32::from(fin[11]), 2);
    out
}

/// One htpasswd file as loaded: its users, the content they were parsed from, and the cache of
/// recent successful verifications. Immutable but for the cache: a changed file is a new
/// `HtpasswdFile` (with an empty cache) in the next runtime snapshot.
pub struct HtpasswdFile {
    pub path: PathBuf,
    users: Htpasswd,
    content: Vec<u8>,
    cache: Mutex<HashMap<[u8; 32], Instant>>,
}

impl std::fmt::Debug for HtpasswdFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HtpasswdFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn read_problem(path: &Path, e: std::io::Error) -> Vec<Problem> {
    vec![Problem {
        file: path.display().to_string(),
        position: None,
        key: "htpasswd".into(),
        message: format!("cannot read the htpasswd file: {e}"),
    }]
}

impl HtpasswdFile {
    pub fn load(path: &Path) -> Result<Arc<HtpasswdFile>, Vec<Problem>> {
        let bytes = std::fs::read(path).map_err(|e| read_problem(path, e))?;
        let parsed = Htpasswd::parse(&String::from_utf8_lossy(&bytes), path)?;
        Ok(Arc::new(HtpasswdFile {
            path: path.to_path_buf(),
            users: parsed,
            content: bytes,
            cache: Mutex::new(HashMap::new()),
        }))
    }

    /// Re-reads the file: `Ok(Some(new))` when its content changed and parses (a new file with an
    /// empty cache: a removed user or changed password must not live on in it), `Ok(None)` when
    /// unchanged; on error the users in force stay.
    pub fn reread(&self) -> Result<Option<Arc<HtpasswdFile>>, Vec<Problem>> {
        let bytes = std::fs::read(&self.path).map_err(|e| read_problem(&self.path, e))?;
        if self.content == bytes {
            return Ok(None);
        }
        let parsed = Htpasswd::parse(&String::from_utf8_lossy(&bytes), &self.path)?;
        Ok(Some(Arc::new(HtpasswdFile {
            path: self.path.clone(),
            users: parsed,
            content: bytes,
            cache: Mutex::new(HashMap::new()),
        })))
    }

    fn cache_key(header: &[u8]) -> [u8; 32] {
        Sha256::digest(header).into()
    }

    /// Was this exact Authorization header verified within the last minute?
    pub fn recently_verified(&self, header: &[u8]) -> bool {
        let key = HtpasswdFile::cache_key(header);
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&key).is_some_and(|t| t.elapsed() < CACHE_TTL)
    }

    /// Verifies the credentials (slow for bcrypt: call off the async workers) and caches success.
    pub fn verify(&self, header: &[u8], user: &str, password: &str) -> bool {
        let ok = self.users.verify(user, password);
        if ok {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHE_MAX {
                cache.retain(|_, t| t.elapsed() < CACHE_TTL);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(HtpasswdFile::cache_key(header), Instant::now());
        }
        ok
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apr1_matches_apache() {
        // Known vector: `htpasswd -nbm` with salt "xxxxxxxx" and password "password".
        assert_eq!(
            apr1(b"password", b"xxxxxxxx"),
            "$apr1$xxxxxxxx$dxHfLAsjHkDRmG83UXe8K0"
        );
    }

    #[test]
    fn every_format_verifies_and_plaintext_is_refused() {
        let text = "\
# comment
sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=
apr:$apr1$xxxxxxxx$dxHfLAsjHkDRmG83UXe8K0
";
        let h = Htpasswd::parse(text, Path::new("t")).unwrap();
        assert!(h.verify("sha", "password"));
        assert!(!h.verify("sha", "Password"));
        assert!(h.verify("apr", "password"));
        assert!(!h.verify("apr", "passwort"));
        assert!(!h.verify("nobody", "password"));
        let err = Htpasswd::parse(
            "ok:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nbob:secret\n",
            Path::new("pw"),
        )
        .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].position, Some((2, 1)));
        assert!(err[0]
            .message
            .starts_with("user \"bob\" has a plaintext, unknown or malformed password hash"));
    }
}
