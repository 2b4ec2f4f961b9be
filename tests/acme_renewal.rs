//! A real certificate issuance and renewal through origin-gate: Let's Encrypt's test CA
//! (Debian's `pebble`, its DNS answered by `pebble-challtestsrv` on loopback) validates HTTP-01
//! against origin-gate's HTTP port while the whole site is behind Basic auth *and* the https
//! redirect is on — the setup that broke renewals for real sites — and `certbot --webroot`
//! issues, then force-renews. origin-gate serves each new certificate without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use http::StatusCode;
use rustls::pki_types::{CertificateDer, ServerName};

/// A child process whose stdout and stderr lines arrive on one channel.
struct Daemon {
    child: Child,
    name: &'static str,
}

impl Daemon {
    /// Starts `cmd` and waits (bounded) for a line containing `ready`.
    fn start(name: &'static str, cmd: &mut Command, ready: &str) -> Daemon {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({e}): run the README's test command (.ci/run), which installs pebble and certbot"));
        let (tx, rx) = mpsc::channel::<String>();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(ready) => break,
                Ok(line) => seen.push(line),
                Err(_) => panic!("{name} did not become ready; output:\n{}", seen.join("\n")),
            }
        }
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Daemon { child, name }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.name;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs certbot against pebble with every directory under `base`; returns its combined output.
fn certbot(base: &Path, ca_bundle: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("certbot")
        .args(args)
        .arg("--config-dir")
        .arg(base.join("config"))
        .arg("--work-dir")
        .arg(base.join("work"))
        .arg("--logs-dir")
        .arg(base.join("logs"))
        .args([
            "--non-interactive",
            "--agree-tos",
            "--register-unsafely-without-email",
        ])
        .env("REQUESTS_CA_BUNDLE", ca_bundle)
        .output()
        .expect("certbot not found: run the README's test command (.ci/run), which installs it");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn serial(der: &CertificateDer<'_>) -> String {
    origin_gate::serve::tls::summarize(der).unwrap().serial
}

async fn served(addr: SocketAddr, sni: &str) -> CertificateDer<'static> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(insecure_client(&[b"http/1.1"]))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), stream)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn live_leaf(config_dir: &Path, name: &str) -> CertificateDer<'static> {
    let path = config_dir.join("live").join(name).join("cert.pem");
    let pem = std::fs::read(&path).unwrap();
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(&pem).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_issues_and_renews_through_basic_auth_and_https_redirect() {
    const DOMAIN: &str = "blog.example.test";
    let work = tempfile::tempdir().unwrap();
    let base = work.path();
    let webroot = base.join("webroot");
    std::fs::create_dir_all(&webroot).unwrap();
    let live: PathBuf = base.join("config").join("live").join(DOMAIN);

    // origin-gate: the whole site behind Basic auth, http → https redirect on, challenges served
    // from certbot's webroot, and the certificate certbot is about to create (missing for now).
    let backend = Backend::start().await;
    std::fs::write(
        base.join("htpasswd"),
        "owner:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n",
    )
    .unwrap();
    let config = base.join("origin-gate.toml");
    std::fs::write(
        &config,
        format!(
            "server_names = [\"{DOMAIN}\"]\n\
             [listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n\
             [backend]\nurl = \"{}\"\n\
             [https]\nredirect = true\n\
             [acme]\nwebroot = \"webroot\"\n\
             [[access]]\nprefix = \"/\"\nhtpasswd = \"htpasswd\"\n\
             [tls]\nreload_interval = \"250ms\"\n\
             [[tls.certs]]\ncert = \"config/live/{DOMAIN}/fullchain.pem\"\nkey = \"config/live/{DOMAIN}/privkey.pem\"\n",
            backend.url()
        ),
    )
    .unwrap();
    let mut gate = GateProcess::spawn(&config);
    let https = gate.https.unwrap();
    // First issuance: one plain line, no contradicting "no [[tls.certs]]" and no ERROR.
    let waiting: Vec<&String> = gate
        .startup
        .iter()
        .filter(|l| l.contains("waiting for certificates for"))
        .collect();
    assert_eq!(waiting.len(), 1, "{}", gate.startup.join("\n"));
    assert!(waiting[0].contains(" WARN "), "{}", waiting[0]);
    assert!(
        !gate
            .startup
            .iter()
            .any(|l| l.contains("no [[tls.certs]] configured") || l.contains(" ERROR ")),
        "{}",
        gate.startup.join("\n")
    );

    // Let's Encrypt's test CA and its DNS, aimed at origin-gate's HTTP port.
    let dns = free_port();
    let _dns = Daemon::start(
        "pebble-challtestsrv",
        Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ])
            .args([
                "-management",
                &format!("127.0.0.1:{}", free_port()),
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ]),
        "Starting management server",
    );
    let api_ca = TestCa::new("pebble API test CA");
    let api = api_ca.issue(&["127.0.0.1", "localhost"], 0x5555_0000_0000_0001, 2);
    std::fs::write(base.join("pebble-cert.pem"), &api.cert_pem).unwrap();
    std::fs::write(base.join("pebble-key.pem"), &api.key_pem).unwrap();
    std::fs::write(base.join("pebble-api-ca.pem"), api_ca.pem()).unwrap();
    let acme_port = free_port();
    std::fs::write(
        base.join("pebble.json"),
        serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{}", free_port()),
            "certificate": base.join("pebble-cert.pem"),
            "privateKey": base.join("pebble-key.pem"),
            "httpPort": gate.http.port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }})
        .to_string(),
    )
    .unwrap();
    let _pebble = Daemon::start(
        "pebble",
        Command::new("pebble")
            .arg("-config")
            .arg(base.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No random sleeps, no reused authorisations (the renewal must validate again), no
            // deliberately rejected nonces.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_AUTHZREUSE", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0"),
        "Listening on:",
    );
    let server = format!("https://127.0.0.1:{acme_port}/dir");
    let ca_bundle = base.join("pebble-api-ca.pem");

    // 1. First issuance.
    let webroot_s = webroot.display().to_string();
    let (ok, out) = tokio::task::spawn_blocking({
        let (base, ca_bundle, server, webroot_s) = (
            base.to_path_buf(),
            ca_bundle.clone(),
            server.clone(),
            webroot_s.clone(),
        );
        move || {
            certbot(
                &base,
                &ca_bundle,
                &[
                    "certonly",
                    "--webroot",
                    "-w",
                    &webroot_s,
                    "-d",
                    DOMAIN,
                    "--server",
                    &server,
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "certbot certonly failed:\n{out}");
    assert!(live.join("fullchain.pem").exists());
    let line = gate
        .wait_log("ACME challenge answered", Duration::from_secs(5))
        .expect("no ACME log line");
    assert!(line.contains("status=200"), "{line}");
    gate.wait_log("certificate reloaded", Duration::from_secs(10))
        .expect("the new certificate was not picked up");
    let first = serial(&live_leaf(&base.join("config"), DOMAIN));
    assert_eq!(serial(&served(https, DOMAIN).await), first);

    // 2. Forced renewal: validated again through auth + redirect, served without a restart.
    let (ok, out) = tokio::task::spawn_blocking({
        let (base, ca_bundle) = (base.to_path_buf(), ca_bundle.clone());
        move || {
            certbot(
                &base,
                &ca_bundle,
                &["renew", "--force-renewal", "--no-random-sleep-on-renew"],
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "certbot renew failed:\n{out}");
    let line = gate
        .wait_log("ACME challenge answered", Duration::from_secs(5))
        .expect("the renewal did not fetch a challenge");
    assert!(line.contains("status=200"), "{line}");
    gate.wait_log("certificate reloaded", Duration::from_secs(10))
        .expect("the renewed certificate was not picked up");
    let second = serial(&live_leaf(&base.join("config"), DOMAIN));
    assert_ne!(first, second);
    assert_eq!(serial(&served(https, DOMAIN).await), second);
    assert!(
        gate.child.try_wait().unwrap().is_none(),
        "origin-gate restarted or died"
    );

    // 3. Everything else is still protected, and in the right order.
    let mut c = h1_tls("127.0.0.1", https).await;
    let a = send(&mut c, request("GET", "/", &[("host", DOMAIN)], empty())).await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "https visitor without credentials"
    );
    let a = get("127.0.0.1", gate.http, "/", &[("host", DOMAIN)]).await;
    assert_eq!(
        a.status,
        StatusCode::MOVED_PERMANENTLY,
        "http visitor must be redirected before any password is asked"
    );
    assert_eq!(a.header("www-authenticate"), None);
    assert_eq!(
        a.header("location"),
        Some(format!("https://{DOMAIN}/").as_str())
    );
    // The exemption is exactly the challenge prefix.
    let a = get(
        "127.0.0.1",
        gate.http,
        "/.well-known/other",
        &[("host", DOMAIN)],
    )
    .await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    let mut c = h1_tls("127.0.0.1", https).await;
    let a = send(
        &mut c,
        request("GET", "/.well-known/other", &[("host", DOMAIN)], empty()),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        backend
            .stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "WordPress saw nothing"
    );
}
