//! Request paths as rules see them: the normal form `[[access]]` and `[[limits.body]]` prefixes
//! are written in, and that every request path is brought to before it is matched (and
//! forwarded). Here, at the bottom, because the configuration parses its prefixes with it and
//! the request pipeline applies it — both must agree byte for byte.

/// Why a path was refused by normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// An encoded `/`, `\` or NUL: different servers decode them differently, so no rule could be
    /// sure what the backend will run.
    AmbiguousEscape,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes a query component as PHP does for `$_GET`: every `%XX`, and `+` as a space; an
/// invalid escape stays as it is.
pub fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Is this path already in normal form (the common case, no allocation needed)?
pub fn is_normal(raw: &str) -> bool {
    raw.starts_with('/')
        && !raw.bytes().any(|b| b == b'%' || b == b';')
        && !raw.contains("//")
        && !raw.contains("/./")
        && !raw.contains("/../")
        && !raw.ends_with("/.")
        && !raw.ends_with("/..")
}

/// Normalises a request path (see the module comment). Always returns an absolute path.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    // 1. Percent-decoding of unreserved characters; other escapes upper-cased.
    // Bytes, not chars: non-ASCII UTF-8 passes through untouched (the input is a &str, and only
    // ASCII is ever decoded, so the result stays valid UTF-8).
    let bytes = raw.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            ) else {
                return Err(PathError::BadEscape);
            };
            let v = h * 16 + l;
            if matches!(v, b'/' | b'\\' | 0) {
                return Err(PathError::AmbiguousEscape);
            }
            if is_unreserved(v) {
                decoded.push(v);
            } else {
                decoded.push(b'%');
                decoded.push(bytes[i + 1].to_ascii_uppercase());
                decoded.push(bytes[i + 2].to_ascii_uppercase());
            }
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::BadEscape)?;
    // 2. Segments: drop `;params`, empty segments (`//`) and `.`; `..` pops (never above root).
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in decoded.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" => {}
            "." => trailing_slash = true,
            ".." => {
                out.pop();
                trailing_slash = true;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    if decoded.ends_with('/') {
        trailing_slash = true;
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}
