//! `origin-gate doctor` against a healthy setup and against the classic broken ones: a looping
//! backend, a backend that protects or redirects the challenge path, an expired certificate, a
//! certificate without the www. name; a configuration with many problems (doctor lists exactly
//! what `check` lists); a port held by another origin-gate or another program (the ACME check
//! is then never ✓); and which Cloudflare list the trusted ranges come from.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::process::Command;

use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Setup {
    dir: tempfile::TempDir,
    _backend: Backend,
    _gate: Option<GateProcess>,
}

/// A backend in `mode`, a certificate for `names` with `days_left`, and origin-gate running
/// on fixed loopback ports (doctor reads the addresses from the config).
async fn setup(
    mode: BackendMode,
    names: &[&str],
    days_left: i64,
    extra: &str,
    run_gate: bool,
) -> Setup {
    let backend = Backend::start_mode(mode).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("doctor test CA");
    let cert = ca.issue(names, 0x7777_0000_0000_0001, days_left);
    std::fs::write(dir.path().join("fullchain.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("privkey.pem"), &cert.key_pem).unwrap();
    std::fs::write(
        dir.path().join("og.toml"),
        format!(
            "server_names = [\"example.com\", \"www.example.com\"]\n\
             [listen]\nhttp = [\"127.0.0.1:{}\"]\nhttps = [\"127.0.0.1:{}\"]\n\
             [backend]\nurl = \"{}\"\n\
             [log]\naccess = \"off\"\n\
             {extra}\
             [[tls.certs]]\ncert = \"fullchain.pem\"\nkey = \"privkey.pem\"\n",
            free_port(),
            free_port(),
            backend.url()
        ),
    )
    .unwrap();
    let gate = run_gate.then(|| GateProcess::spawn(&dir.path().join("og.toml")));
    Setup {
        dir,
        _backend: backend,
        _gate: gate,
    }
}

async fn doctor(s: &Setup) -> (i32, String) {
    doctor_at(s.dir.path().join("og.toml")).await
}

async fn doctor_at(path: std::path::PathBuf) -> (i32, String) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .arg("doctor")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `origin-gate check`'s problem lines (its last line, the count, apart) and exit status.
fn check_problems(path: &std::path::Path) -> (i32, Vec<String>, String) {
    let out = Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let summary = lines.pop().unwrap_or_default();
    // Certificates not issued yet are WARN lines for check (origin-gate starts without them) and
    // ✗ for doctor (the deployment is not complete): the same lines, by position in the file.
    let mut lines: Vec<String> = lines
        .into_iter()
        .map(|l| l.strip_prefix("WARN ").map(str::to_string).unwrap_or(l))
        .collect();
    lines.sort_by_key(|l| position(l));
    (out.status.code().unwrap_or(-1), lines, summary)
}

/// `(line, column)` of a `file:line:col key: …` line.
fn position(l: &str) -> (usize, usize) {
    let mut parts = l.split(' ').next().unwrap_or("").rsplit(':');
    let col = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let line = parts
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(usize::MAX);
    (line, col)
}

/// doctor's ✗ lines, without the mark (each is followed by its `fix:` line).
fn failures(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("✗ "))
        .map(str::to_string)
        .collect()
}

/// The one ACME line of doctor's checklist (not a `fix:` line that mentions the challenge).
fn acme_line(out: &str) -> &str {
    out.lines()
        .find(|l| !l.starts_with(' ') && l.contains("ACME challenge"))
        .unwrap_or_else(|| panic!("no ACME line: {out}"))
}

#[tokio::test]
async fn a_healthy_setup_passes_every_check() {
    let s = setup(
        BackendMode::Normal,
        &["example.com", "www.example.com"],
        80,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    eprintln!("{out}");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("✓ configuration"), "{out}");
    assert!(out.contains("is served by origin-gate"), "{out}");
    assert!(
        out.contains("answers an https visitor's /wp-admin/ with 200 OK (no loop)"),
        "{out}"
    );
    assert!(
        out.contains("✓ certificate") && out.contains("key matches, 80 days left"),
        "{out}"
    );
    assert!(out.contains("✓ ACME challenge path through"), "{out}");
    assert!(
        out.contains("trusted ranges (the built-in Cloudflare list from 2026-11-24")
            && out.contains("in use because no trust.ranges_file is configured"),
        "{out}"
    );
    assert!(!out.contains("fallback"), "{out}");
    assert!(out.contains("all checks passed"), "{out}");
    assert!(!out.contains('✗'), "{out}");
}

#[tokio::test]
async fn a_backend_without_the_forwarded_proto_mapping_is_a_loop() {
    let s = setup(
        BackendMode::Unmapped,
        &["example.com", "www.example.com"],
        80,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "✗ backend redirects an https visitor's /wp-admin/ to https://example.com/wp-admin/"
        ),
        "{out}"
    );
    assert!(
        out.contains("deploy/wordpress/wp-config-https.php"),
        "the fix names the file: {out}"
    );
}

#[tokio::test]
async fn a_backend_that_protects_the_challenge_path_fails_the_acme_check() {
    let s = setup(
        BackendMode::ProtectsEverything,
        &["example.com", "www.example.com"],
        80,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("got 401 Unauthorized: certificate renewals will fail"),
        "{out}"
    );
    assert!(out.contains("set acme.webroot"), "{out}");
}

#[tokio::test]
async fn a_backend_that_redirects_the_challenge_path_fails_the_acme_check() {
    let s = setup(
        BackendMode::RedirectsEverything,
        &["example.com", "www.example.com"],
        80,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("was redirected to https://example.com/.well-known/acme-challenge/"),
        "{out}"
    );
}

/// WordPress forcing https sends the CA's http fetch to https on 443: Let's Encrypt follows that,
/// so doctor follows it too (through this origin-gate's https listener) and reports ◐ with the
/// rule, not ✗.
#[tokio::test]
async fn a_challenge_redirect_the_ca_follows_is_partial_not_a_failure() {
    let s = setup(
        BackendMode::RedirectsToHttps,
        &["example.com", "www.example.com"],
        80,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("ACME challenge"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.starts_with("◐ "), "{out}");
    assert!(
        line.contains("after redirects to https://example.com/.well-known/acme-challenge/"),
        "{line}"
    );
    assert!(line.contains("ports 80 and 443"), "{line}");
}

#[tokio::test]
async fn a_challenge_redirect_to_port_8080_fails_with_the_rule() {
    let s = setup(
        BackendMode::RedirectsToPort8080,
        &["example.com", "www.example.com"],
        80,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✗ ACME challenge")
            && out.contains("http://example.com:8080/.well-known/acme-challenge/")
            && out.contains("Let's Encrypt follows redirects only to ports 80 and 443"),
        "{out}"
    );
}

/// The loop check stands in for Cloudflare: with the zone proven by an edge secret (and
/// lockdown on) it must still see the backend's real answer, not a 403 or an unbelieved
/// X-Forwarded-Proto.
#[tokio::test]
async fn the_loop_check_works_when_an_edge_secret_proves_the_zone() {
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("edge.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").unwrap();
    let s = setup(
        BackendMode::Normal,
        &["example.com", "www.example.com"],
        80,
        &format!(
            "[trust]\nonly_trusted_peers = true\nedge_header = \"X-Origin-Auth\"\nedge_secret_file = \"{}\"\n",
            secret.display()
        ),
        true,
    )
    .await;
    let (_, out) = doctor(&s).await;
    assert!(
        out.contains("✓ backend")
            && out.contains("answers an https visitor's /wp-admin/ with 200 OK (no loop)"),
        "{out}"
    );
    assert!(!out.contains("✗ backend"), "{out}");
    assert!(out.contains("✓ edge secret configured"), "{out}");
}

#[tokio::test]
async fn acme_webroot_is_checked_with_a_real_token_file() {
    // The protecting backend does not matter: origin-gate answers challenges from disk.
    let s = setup(
        BackendMode::ProtectsEverything,
        &["example.com", "www.example.com"],
        80,
        "[acme]\nwebroot = \"webroot\"\n",
        true,
    )
    .await;
    let (_, out) = doctor(&s).await;
    assert!(
        out.contains("✓ ACME challenge path through") && out.contains("answers 200 OK"),
        "{out}"
    );
    let left = std::fs::read_dir(s.dir.path().join("webroot/.well-known/acme-challenge"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "the test token was not removed");
}

#[tokio::test]
async fn an_expired_certificate_fails() {
    let s = setup(
        BackendMode::Normal,
        &["example.com", "www.example.com"],
        -2,
        "",
        true,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✗ certificate") && out.contains("EXPIRED"),
        "{out}"
    );
}

#[tokio::test]
async fn a_certificate_without_the_www_name_fails() {
    let s = setup(BackendMode::Normal, &["example.com"], 80, "", true).await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not cover www.example.com"), "{out}");
    assert!(
        out.contains("certbot certonly ... -d example.com -d www.example.com"),
        "{out}"
    );
}

#[tokio::test]
async fn without_a_running_origin_gate_the_ports_are_free_and_the_acme_check_says_so() {
    let s = setup(
        BackendMode::Normal,
        &["example.com", "www.example.com"],
        80,
        "",
        false,
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("is free to bind (origin-gate is not running yet)"),
        "{out}"
    );
    assert!(out.contains("start origin-gate"), "{out}");
}

/// doctor's probes are marked; the running instance logs them at debug (no 421 access line, no
/// renewal WARN) and answers with its configuration's fingerprint, so doctor tells "this
/// configuration's origin-gate" from another origin-gate and from another program.
#[tokio::test]
async fn doctor_leaves_a_clean_log_and_knows_who_answers() {
    let backend = Backend::start_mode(BackendMode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let (http, https) = (free_port(), free_port());
    let path = dir.path().join("og.toml");
    let text = format!(
        "server_names = [\"example.com\"]\n[listen]\nhttp = [\"127.0.0.1:{http}\"]\nhttps = [\"127.0.0.1:{https}\"]\n[backend]\nurl = \"{}\"\n[log]\naccess = \"json\"\n",
        backend.url()
    );
    std::fs::write(&path, &text).unwrap();
    let gate = GateProcess::spawn(&path);
    let run = |path: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            let out = Command::new(binary())
                .args(["doctor", "--config"])
                .arg(&path)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .await
        .unwrap()
    };
    let out = run(path.clone()).await;
    for addr in [
        format!("http listen address 127.0.0.1:{http}"),
        format!("https listen address 127.0.0.1:{https}"),
    ] {
        assert!(
            out.contains(&format!(
                "✓ {addr} is served by origin-gate with this configuration"
            )),
            "{out}"
        );
    }
    // A marker request after doctor: everything logged before it is doctor's.
    let marker = get(UNTRUSTED_SRC, gate.http, "/marker", &[]).await;
    assert_eq!(marker.status.as_u16(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .expect("the marker's access line within 10 s");
        let line = gate.access.recv_timeout(left).unwrap();
        assert!(
            !line.contains("doctor.invalid")
                && !line.contains("\"status\":421")
                && !line.contains("acme-challenge"),
            "doctor's probe reached the access log: {line}"
        );
        if line.contains("/marker") {
            break;
        }
    }
    for line in log_lines_before_a_bad_request(&gate).await {
        assert!(
            !line.contains("ACME challenge"),
            "doctor's probe logged as a renewal: {line}"
        );
    }
    // The file changed since the instance started: another configuration answers.
    std::fs::write(&path, format!("{text}# edited\n")).unwrap();
    let out = run(path.clone()).await;
    assert!(
        out.contains(&format!("✗ http listen address 127.0.0.1:{http} is served by an origin-gate with another configuration")),
        "{out}"
    );
    drop(gate);
    // Another program on the port.
    let other = Backend::start_on(format!("127.0.0.1:{http}").parse().unwrap()).await;
    let out = run(path).await;
    assert!(
        out.contains(&format!(
            "✗ http listen address 127.0.0.1:{http} is taken by another program"
        )),
        "{out}"
    );
    drop(other);
}

/// Without server_names the loop probe's Host is a stand-in; WordPress first redirects it to
/// its site address. doctor follows that once with the named host and finds the loop there
/// (outside trial: "✓ … 301 Moved Permanently (no loop)" for a backend that loops).
#[tokio::test]
async fn without_server_names_the_loop_check_follows_the_site_address() {
    for (mode, looping) in [
        (BackendMode::UnmappedAtExampleCom, true),
        (BackendMode::Normal, false),
    ] {
        let backend = Backend::start_mode(mode).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("any.toml");
        std::fs::write(
            &path,
            format!(
                "[listen]\nhttp = [\"127.0.0.1:{}\"]\nhttps = []\n[backend]\nurl = \"{}\"\n",
                free_port(),
                backend.url()
            ),
        )
        .unwrap();
        let (code, out) = doctor_at(path).await;
        let loop_line = out
            .lines()
            .find(|l| l.contains("/wp-admin/") && (l.starts_with('✓') || l.starts_with('✗')))
            .unwrap_or_else(|| panic!("no loop line: {out}"));
        if looping {
            assert_eq!(code, 1, "{out}");
            assert!(
                loop_line.starts_with("✗ backend redirects an https visitor's /wp-admin/ to https://example.com/wp-admin/ — a redirect loop"),
                "{out}"
            );
        } else {
            assert!(loop_line.starts_with("✓ "), "{out}");
        }
    }
}

/// With `server_names = []` (any host, the example's default) doctor's probes reach the ACME
/// and lockdown paths instead of a 421: the instance still logs them at debug only (the outside
/// trial saw "not a valid ACME challenge path" at INFO after every doctor run).
#[tokio::test]
async fn doctor_probes_leave_no_lines_without_server_names() {
    let backend = Backend::start_mode(BackendMode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let (http, https) = (free_port(), free_port());
    let path = dir.path().join("any.toml");
    std::fs::write(
        &path,
        format!(
            "[listen]\nhttp = [\"127.0.0.1:{http}\"]\nhttps = [\"127.0.0.1:{https}\"]\n[backend]\nurl = \"{}\"\n[trust]\nonly_trusted_peers = true\n",
            backend.url()
        ),
    )
    .unwrap();
    let gate = GateProcess::spawn(&path);
    let doctor = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(binary())
                .args(["doctor", "--config"])
                .arg(&path)
                .output()
                .unwrap()
        })
    }
    .await
    .unwrap();
    assert!(!doctor.stdout.is_empty());
    for line in log_lines_before_a_bad_request(&gate).await {
        assert!(
            !line.contains("ACME") && !line.contains("lockdown") && !line.contains("WARN"),
            "doctor's probe left a line: {line}"
        );
    }
}

/// The instance's log lines up to a bad request sent now (logged at INFO): after a doctor run,
/// every one of them is doctor's doing.
async fn log_lines_before_a_bad_request(gate: &GateProcess) -> Vec<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect_from(UNTRUSTED_SRC, gate.http).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let _ = s.read(&mut buf).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut lines = Vec::new();
    loop {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .expect("the bad-request line within 10 s");
        let line = gate.log.recv_timeout(left).unwrap();
        if line.contains("bad request") {
            return lines;
        }
        lines.push(line);
    }
}

/// The outside trial's config: `check` found 16 problems, doctor 10 and then said "1 problem to
/// fix". doctor's configuration step is check's one-pass list, line for line — the self-loop,
/// missing certificate and key files and htpasswd problems included — and its summary counts
/// each one.
#[tokio::test]
async fn doctor_reports_exactly_the_problems_check_reports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::write(
        dir.path().join("htpasswd"),
        "ok:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nbob:secret\n",
    )
    .unwrap();
    let port = free_port();
    let path = dir.path().join("many.toml");
    std::fs::write(
        &path,
        format!(
            "server_names = \"example.com\"\n\
             [listen]\nhttp = [\"127.0.0.1:{port}\"]\nhttps = [\"127.0.0.1:{}\"]\n\
             [backend]\nurl = \"http://127.0.0.1:{port}\"\nurll = \"x\"\n\
             [trust]\nextra = [\"10.0.0.0/33\"]\n\
             [[tls.certs]]\ncert = \"missing.pem\"\nkey = \"missing-key.pem\"\n\
             [[access]]\nprefix = \"/wp-admin/\"\nhtpasswd = \"htpasswd\"\n\
             [[access]]\nprefix = \"/wp-login.php\"\nhtpasswd = \"nope\"\n",
            free_port()
        ),
    )
    .unwrap();
    let (check_code, want, check_summary) = check_problems(&path);
    assert_eq!(check_code, 1);
    for key in [
        "backend.url:",
        "tls.certs[0].cert:",
        "tls.certs[0].key:",
        "access[0].htpasswd:",
        "access[1].htpasswd:",
    ] {
        assert!(
            want.iter().any(|l| l.contains(key)),
            "check no longer reports {key}; pick another problem for this test: {want:#?}"
        );
    }
    let (code, out) = doctor_at(path.clone()).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(failures(&out), want, "{out}");
    // check counts the two certificate files as warnings, not problems.
    assert_eq!(
        check_summary,
        format!("{d}/many.toml: {} problems found", want.len() - 2)
    );
    assert!(
        out.trim_end()
            .ends_with(&format!("{} problems to fix", want.len())),
        "{out}"
    );
    assert!(
        !out.contains('✓'),
        "nothing passes on a broken configuration: {out}"
    );
}

/// First issuance: the certificate files do not exist yet. origin-gate starts without them, so
/// `check` (systemd's ExecStartPre) passes with a WARN; doctor, judging the deployment, fails on
/// them with the fix that issues them, and still checks the ACME path the issuance depends on.
#[tokio::test]
async fn certificates_not_issued_yet_pass_check_fail_doctor_and_the_acme_path_is_still_checked() {
    let s = setup(
        BackendMode::Normal,
        &["example.com", "www.example.com"],
        80,
        "",
        false,
    )
    .await;
    std::fs::remove_file(s.dir.path().join("fullchain.pem")).unwrap();
    std::fs::remove_file(s.dir.path().join("privkey.pem")).unwrap();
    let path = s.dir.path().join("og.toml");
    let _gate = GateProcess::spawn(&path);
    let (code, lines, _) = check_problems(&path);
    assert_eq!(code, 0, "{lines:#?}");
    let (code, out) = doctor(&s).await;
    assert_eq!(code, 1, "{out}");
    let failed = failures(&out);
    assert_eq!(failed.len(), 2, "{out}");
    assert!(
        failed[0].contains("tls.certs[0].cert:") && failed[1].contains("tls.certs[0].key:"),
        "{out}"
    );
    assert!(
        out.contains("fix: issue the certificate (certbot certonly"),
        "{out}"
    );
    assert!(
        acme_line(&out).starts_with("✓ ACME challenge path through"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("2 problems to fix"), "{out}");
}

/// Another program on the http port (the trial had python http.server there): whatever it
/// answers says nothing about this configuration, so the ACME check is not ✓.
#[tokio::test]
async fn the_acme_check_is_not_a_pass_when_another_program_holds_the_port() {
    let other = Backend::start_mode(BackendMode::Normal).await;
    let backend = Backend::start_mode(BackendMode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("og.toml");
    std::fs::write(
        &path,
        format!(
            "server_names = [\"example.com\"]\n[listen]\nhttp = [\"{}\"]\nhttps = [\"127.0.0.1:{}\"]\n[backend]\nurl = \"{}\"\n",
            other.addr,
            free_port(),
            backend.url()
        ),
    )
    .unwrap();
    let (code, out) = doctor_at(path).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "✗ http listen address {} is taken by another program",
            other.addr
        )),
        "{out}"
    );
    let line = acme_line(&out);
    assert!(
        line.starts_with(&format!(
            "○ ACME challenge through {} not checked: another program",
            other.addr
        )),
        "{out}"
    );
    assert!(
        line.contains("not origin-gate with this configuration"),
        "{line}"
    );
}

/// Another instance — another configuration that does not serve example.com — on both ports:
/// its 421 once came out as "✓ … answers 421 Misdirected Request". Now the ACME check is not ✓.
#[tokio::test]
async fn the_acme_check_is_not_a_pass_when_another_configuration_holds_the_port() {
    let backend = Backend::start_mode(BackendMode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("other.toml");
    std::fs::write(
        &theirs,
        format!(
            "server_names = [\"other.example\"]\n[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n[backend]\nurl = \"{}\"\n[log]\naccess = \"off\"\n",
            backend.url()
        ),
    )
    .unwrap();
    let other = GateProcess::spawn(&theirs);
    let ours = dir.path().join("og.toml");
    std::fs::write(
        &ours,
        format!(
            "server_names = [\"example.com\"]\n[listen]\nhttp = [\"{}\"]\nhttps = [\"{}\"]\n[backend]\nurl = \"{}\"\n",
            other.http,
            other.https.unwrap(),
            backend.url()
        ),
    )
    .unwrap();
    let (code, out) = doctor_at(ours).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "✗ http listen address {} is served by an origin-gate with another configuration",
            other.http
        )),
        "{out}"
    );
    let line = acme_line(&out);
    assert!(
        line.starts_with(&format!(
            "○ ACME challenge through {} not checked: an origin-gate with another configuration",
            other.http
        )),
        "{out}"
    );
    assert!(!out.contains("✓ ACME"), "{out}");
}

/// A configured trust.ranges_file replaces the built-in list: doctor names the file and its
/// age, and says the built-in list is used only when no ranges_file is configured.
#[tokio::test]
async fn the_trusted_ranges_line_names_the_ranges_file_that_replaces_the_built_in_list() {
    let s = setup(
        BackendMode::Normal,
        &["example.com", "www.example.com"],
        80,
        "[trust]\nranges_file = \"cloudflare-ranges.txt\"\nextra = [\"192.0.2.0/24\"]\n",
        false,
    )
    .await;
    let file = s.dir.path().join("cloudflare-ranges.txt");
    std::fs::write(&file, "173.245.48.0/20\n103.21.244.0/22\n2400:cb00::/32\n").unwrap();
    let (_, out) = doctor(&s).await;
    let line = out
        .lines()
        .find(|l| l.contains("trusted ranges"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        line,
        format!(
            "✓ 4 trusted ranges (the Cloudflare list in trust.ranges_file {}, 0 days old plus 1 from trust.extra; it replaces the built-in list, which is used only when no ranges_file is configured)",
            file.display()
        ),
        "{out}"
    );
}
