//! Access rules over real sockets: the usual WordPress setups, bypass attempts, every htpasswd
//! format written by Apache's real `htpasswd`, and the ACME challenge exemption.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering::SeqCst;

use base64::Engine;
use common::*;
use http::StatusCode;

const SRC: &str = "127.0.0.1";

/// `htpasswd -nb<flag> user password`, Apache's own tool (apache2-utils).
fn htpasswd_line(flag: &str, user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .arg(format!("-nb{flag}"))
        .arg(user)
        .arg(password)
        .output()
        .expect("htpasswd not found: run the README's test command (.ci/run), which installs apache2-utils");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn write(dir: &Path, name: &str, content: &str) {
    std::fs::write(dir.join(name), content).unwrap();
}

/// A gate with an htpasswd file (one bcrypt user) next to its config, and `extra` config.
async fn gate_with_user(backend: &Backend, user: &str, password: &str, extra: &str) -> Gate {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "htpasswd",
        &format!("{}\n", htpasswd_line("B", user, password)),
    );
    gate_with(backend, dir, extra).await
}

/// A gate whose config lives in `dir` (so relative htpasswd paths work).
async fn gate_with(backend: &Backend, dir: tempfile::TempDir, extra: &str) -> Gate {
    Gate::start_in(
        dir,
        &format!("[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n[backend]\nurl = \"{}\"\n{extra}", backend.url()),
    )
    .await
}

#[tokio::test]
async fn wp_admin_locked_admin_ajax_open_xmlrpc_denied() {
    let backend = Backend::start().await;
    let gate = gate_with_user(
        &backend,
        "editor",
        "s3cret",
        r#"
[[access]]
prefix = "/wp-admin/"
htpasswd = "htpasswd"
realm = "Editors only"

[[access]]
prefix = "/wp-login.php"
htpasswd = "htpasswd"

[[access]]
prefix = "/wp-admin/admin-ajax.php"

[[access]]
prefix = "/xmlrpc.php"
deny = ["0.0.0.0/0", "::/0"]
"#,
    )
    .await;
    let a = get(SRC, gate.http, "/wp-admin/", &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.header("www-authenticate"),
        Some("Basic realm=\"Editors only\", charset=\"UTF-8\"")
    );
    assert_eq!(
        get(SRC, gate.http, "/wp-login.php", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(SRC, gate.http, "/wp-admin/admin-ajax.php?action=x", &[])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(SRC, gate.http, "/xmlrpc.php", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(SRC, gate.http, "/2026/11/hello/", &[]).await.status,
        StatusCode::OK
    );

    let good = basic("editor", "s3cret");
    // Over TLS, so the FORCE_SSL_ADMIN backend does not redirect.
    let mut c = h1_tls(SRC, gate.https()).await;
    let a = send(
        &mut c,
        request(
            "GET",
            "/wp-admin/index.php",
            &[("authorization", &good)],
            empty(),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    // WordPress must not see the Basic credentials (it would disable Application Passwords).
    assert_eq!(a.seen("authorization"), None);
    // Only the allowed requests reached WordPress.
    assert_eq!(backend.stats.requests.load(SeqCst), 3);
}

#[tokio::test]
async fn whole_site_locked_for_staging_with_an_ip_allow_list() {
    let backend = Backend::start().await;
    let gate = gate_with_user(&backend, "client", "preview", "[trust]\nextra = [\"127.0.0.2/32\"]\n[[access]]\nprefix = \"/\"\nhtpasswd = \"htpasswd\"\nallow = [\"127.0.0.0/8\", \"198.51.100.0/24\"]\npass_authorization = true\n").await;
    let creds = basic("client", "preview");
    assert_eq!(
        get(SRC, gate.http, "/", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let a = get(SRC, gate.http, "/", &[("authorization", &creds)]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.seen("authorization").as_deref(),
        Some(creds.as_str()),
        "pass_authorization keeps the header"
    );
    // The allow list is checked on the *real* client IP (CF-Connecting-IP from a trusted peer).
    let a = get(
        TRUSTED_SRC,
        gate.http,
        "/",
        &[
            ("authorization", &creds),
            ("cf-connecting-ip", "203.0.113.5"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = get(
        TRUSTED_SRC,
        gate.http,
        "/",
        &[
            ("authorization", &creds),
            ("cf-connecting-ip", "198.51.100.20"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn bypass_attempts_get_the_same_answer_as_the_protected_path() {
    let backend = Backend::start().await;
    let gate = gate_with_user(&backend, "editor", "s3cret", "[[access]]\nprefix = \"/wp-admin/\"\nhtpasswd = \"htpasswd\"\n[[access]]\nprefix = \"/wp-login.php\"\nhtpasswd = \"htpasswd\"\n").await;
    let long = format!("/wp-admin/{}", "a".repeat(8 * 1024));
    for path in [
        "/wp-admin/../wp-admin/",
        "/%77p-admin/",
        "/%77P-admin/",
        "//wp-login.php",
        "/./wp-login.php",
        "/WP-ADMIN/",
        "/Wp-Login.php",
        "/wp-login.php;jsessionid=1",
        "/wp-admin;x/options.php",
        "/blog/../wp-admin/options.php",
        "/%2e%2e/wp-admin/",
        long.as_str(),
    ] {
        let a = get(SRC, gate.http, path, &[]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path} got through");
    }
    // Through the ACME prefix: not a token, so a 404 that touches nothing.
    assert_eq!(
        get(
            SRC,
            gate.http,
            "/.well-known/acme-challenge/../../wp-admin/",
            &[]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // Encoded slashes and backslashes are refused outright: servers disagree on what they mean.
    assert_eq!(
        get(SRC, gate.http, "/wp-admin%2Foptions.php", &[])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(SRC, gate.http, "/x%5C..%5Cwp-login.php", &[])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        backend.stats.requests.load(SeqCst),
        0,
        "nothing reached WordPress"
    );

    // With credentials the backend receives the normalised path: the one that was checked.
    let good = basic("editor", "s3cret");
    let mut c = h1_tls(SRC, gate.https()).await;
    let a = send(
        &mut c,
        request(
            "GET",
            "/blog/..//%77p-admin/./options.php;x?page=1",
            &[("authorization", &good)],
            empty(),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["uri"], "/wp-admin/options.php?page=1");
}

#[tokio::test]
async fn bad_credentials_are_401_never_500() {
    let backend = Backend::start().await;
    let gate = gate_with_user(
        &backend,
        "editor",
        "s3cret",
        "[[access]]\nprefix = \"/\"\nhtpasswd = \"htpasswd\"\n",
    )
    .await;
    let wrong = basic("editor", "guess");
    let unknown = basic("nobody", "s3cret");
    for auth in [
        wrong.as_str(),
        unknown.as_str(),
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic ZWRpdG9y",
        "Bearer abc.def",
        "Digest username=\"editor\"",
        "Basic /w==",
    ] {
        let a = get(SRC, gate.http, "/", &[("authorization", auth)]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{auth}");
        assert!(a.header("www-authenticate").is_some());
    }
    assert_eq!(backend.stats.requests.load(SeqCst), 0);
}

#[tokio::test]
async fn every_htpasswd_format_from_apache_htpasswd_verifies() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let formats = [
        ("B", "bcrypt"),
        ("s", "sha1"),
        ("m", "apr1"),
        ("2", "sha256"),
        ("5", "sha512"),
    ];
    let mut file = String::from("# written by htpasswd(1)\n");
    for (flag, user) in formats {
        file.push_str(&htpasswd_line(flag, user, &format!("pw-{user}")));
        file.push('\n');
    }
    // bcrypt written by other tools carries $2a$ / $2b$.
    let y = htpasswd_line("B", "bcrypt2a", "pw-bcrypt2a");
    file.push_str(&y.replacen("$2y$", "$2a$", 1));
    file.push('\n');
    assert!(
        file.contains(":$2y$")
            && file.contains(":{SHA}")
            && file.contains(":$apr1$")
            && file.contains(":$5$")
            && file.contains(":$6$"),
        "{file}"
    );
    write(dir.path(), "htpasswd", &file);
    let gate = gate_with(
        &backend,
        dir,
        "[[access]]\nprefix = \"/\"\nhtpasswd = \"htpasswd\"\n",
    )
    .await;
    for (_, user) in formats.iter().chain([&("", "bcrypt2a")]) {
        let ok = basic(user, &format!("pw-{user}"));
        assert_eq!(
            get(SRC, gate.http, "/", &[("authorization", &ok)])
                .await
                .status,
            StatusCode::OK,
            "{user}"
        );
        // Twice: the second answer comes from the verification cache and must agree.
        assert_eq!(
            get(SRC, gate.http, "/", &[("authorization", &ok)])
                .await
                .status,
            StatusCode::OK,
            "{user} (cached)"
        );
        let bad = basic(user, "wrong");
        assert_eq!(
            get(SRC, gate.http, "/", &[("authorization", &bad)])
                .await
                .status,
            StatusCode::UNAUTHORIZED,
            "{user}"
        );
    }
}

#[tokio::test]
async fn htpasswd_changes_are_picked_up_on_reload_and_a_broken_file_is_refused() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, format!("{}\n", htpasswd_line("B", "editor", "old"))).unwrap();
    let gate = gate_with(
        &backend,
        dir,
        "[[access]]\nprefix = \"/\"\nhtpasswd = \"htpasswd\"\n",
    )
    .await;
    let old = basic("editor", "old");
    let new = basic("editor", "new");
    assert_eq!(
        get(SRC, gate.http, "/", &[("authorization", &old)])
            .await
            .status,
        StatusCode::OK
    );

    std::fs::write(&file, format!("{}\n", htpasswd_line("B", "editor", "new"))).unwrap();
    assert_eq!(gate.reloader.reload().await.htpasswd_reloaded, 1);
    // The cached success of the old password is gone with the old file.
    assert_eq!(
        get(SRC, gate.http, "/", &[("authorization", &old)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(SRC, gate.http, "/", &[("authorization", &new)])
            .await
            .status,
        StatusCode::OK
    );

    std::fs::write(&file, "editor:plaintext-password\n").unwrap();
    assert_eq!(gate.reloader.reload().await.htpasswd_refused, 1);
    assert_eq!(
        get(SRC, gate.http, "/", &[("authorization", &new)])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_plaintext_htpasswd_entry_is_a_config_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "htpasswd",
        &format!("{}\nbob:hunter2\n", htpasswd_line("B", "alice", "x")),
    );
    let path = dir.path().join("og.toml");
    std::fs::write(&path, "[backend]\nurl = \"http://127.0.0.1:8080\"\n[[access]]\nprefix = \"/\"\nhtpasswd = \"htpasswd\"\n").unwrap();
    let out = Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Pointed at the configuration line that names the file, with the file's own line.
    let want = format!(
        "{}:5:12 access[0].htpasswd: {}:2: user \"bob\" has a plaintext, unknown or malformed password hash (origin-gate reads bcrypt, $apr1$, {{SHA}}, $5$ and $6$); write it with `htpasswd -B {} bob` (bcrypt)",
        path.display(),
        dir.path().join("htpasswd").display(),
        dir.path().join("htpasswd").display()
    );
    assert_eq!(stderr.lines().next(), Some(want.as_str()));
}

#[tokio::test]
async fn acme_challenges_pass_auth_lockdown_and_redirect_but_nothing_else_does() {
    let backend = Backend::start().await;
    let gate = gate_with_user(&backend, "editor", "s3cret", "[trust]\nonly_trusted_peers = true\n[https]\nredirect = true\n[[access]]\nprefix = \"/\"\nhtpasswd = \"htpasswd\"\n").await;
    // Proxied to the backend by default.
    let a = get(SRC, gate.http, "/.well-known/acme-challenge/Tok3n_-x", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["uri"], "/.well-known/acme-challenge/Tok3n_-x");
    let mut c = h1_plain(SRC, gate.http).await;
    assert_eq!(
        send(
            &mut c,
            request("HEAD", "/.well-known/acme-challenge/Tok3n", &[], empty())
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(backend.stats.requests.load(SeqCst), 2);
    // Anything under the prefix that is not a token: 404, the backend is not asked.
    for bad in [
        "/.well-known/acme-challenge/..",
        "/.well-known/acme-challenge/a/b",
        "/.well-known/acme-challenge/",
        "/.well-known/acme-challenge/a%2Fb",
        "/.well-known/acme-challenge/a.b",
    ] {
        assert_eq!(
            get(SRC, gate.http, bad, &[]).await.status,
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }
    assert_eq!(backend.stats.requests.load(SeqCst), 2);
    // Only GET/HEAD are exempt; other paths under .well-known get the lockdown like "/".
    let mut c = h1_plain(SRC, gate.http).await;
    assert_eq!(
        send(
            &mut c,
            request(
                "POST",
                "/.well-known/acme-challenge/Tok3n",
                &[("content-length", "0")],
                empty()
            )
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(SRC, gate.http, "/.well-known/other", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(SRC, gate.http, "/", &[]).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn acme_webroot_and_acme_backend_answer_challenges() {
    let backend = Backend::start().await;
    let responder = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let webroot = dir.path().join("acme-webroot");
    std::fs::create_dir_all(webroot.join(".well-known/acme-challenge")).unwrap();
    std::fs::write(
        webroot.join(".well-known/acme-challenge/abcDEF123"),
        "abcDEF123.thumbprint",
    )
    .unwrap();
    write(
        dir.path(),
        "htpasswd",
        &format!("{}\n", htpasswd_line("B", "editor", "s3cret")),
    );
    let gate = gate_with(
        &backend,
        dir,
        "[acme]\nwebroot = \"acme-webroot\"\n[[access]]\nprefix = \"/\"\nhtpasswd = \"htpasswd\"\n",
    )
    .await;
    let a = get(SRC, gate.http, "/.well-known/acme-challenge/abcDEF123", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"abcDEF123.thumbprint");
    assert_eq!(
        get(SRC, gate.http, "/.well-known/acme-challenge/missing", &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        backend.stats.requests.load(SeqCst),
        0,
        "webroot answers, WordPress is not asked"
    );

    let gate = Gate::start(
        &backend.url(),
        &format!("[acme]\nbackend = \"{}\"\n", responder.url()),
    )
    .await;
    let a = get(SRC, gate.http, "/.well-known/acme-challenge/xyz", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(responder.stats.requests.load(SeqCst), 1);
    assert_eq!(backend.stats.requests.load(SeqCst), 0);
    assert_eq!(get(SRC, gate.http, "/", &[]).await.status, StatusCode::OK);
    assert_eq!(backend.stats.requests.load(SeqCst), 1);
}
