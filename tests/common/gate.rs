//! origin-gate under test: [`Gate`] runs it in this process on ephemeral ports, [`GateProcess`]
//! runs the real binary ([`binary`]) and reads its listen addresses and log lines.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use origin_gate::config::Source;
use origin_gate::{Config, Scheme, Server};
use tokio::sync::oneshot;

/// origin-gate running in this process on ephemeral ports.
pub struct Gate {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub reloader: origin_gate::serve::reload::Reloader,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Gate {
    /// Starts origin-gate with `extra` TOML appended to a base config that listens on
    /// 127.0.0.1:0 (http and https) and forwards to `backend`.
    pub async fn start(backend: &str, extra: &str) -> Gate {
        let toml = format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n\n[backend]\nurl = \"{backend}\"\n\n{extra}"
        );
        Gate::start_raw(&toml).await
    }

    /// Starts origin-gate with exactly this TOML, written to a temp dir (relative paths resolve there).
    pub async fn start_raw(toml: &str) -> Gate {
        let dir = tempfile::tempdir().unwrap();
        Gate::start_in(dir, toml).await
    }

    pub async fn start_in(dir: tempfile::TempDir, toml: &str) -> Gate {
        // In-process gates keep the test output clean unless a test asks for the access log.
        let toml = if toml.contains("[log]") {
            toml.to_string()
        } else {
            format!("{toml}\n[log]\naccess = \"off\"\n")
        };
        let toml = toml.as_str();
        let path = dir.path().join("origin-gate.toml");
        std::fs::write(&path, toml).unwrap();
        let config = Config::parse(toml, Source::File(path))
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let server = Server::bind(config)
            .await
            .unwrap_or_else(|e| panic!("origin-gate did not start: {e}"));
        let http = server.local_addrs(Scheme::Http)[0];
        let https = server.local_addrs(Scheme::Https).first().copied();
        let reloader = server.reloader();
        let (stop, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Gate {
            http,
            https,
            reloader,
            stop: Some(stop),
            done: Some(done),
            _dir: dir,
        }
    }

    /// Starts graceful shutdown and returns a handle that finishes when origin-gate has exited.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.done.take().unwrap()
    }

    pub fn https(&self) -> SocketAddr {
        self.https.expect("https listener")
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(d) = self.done.take() {
            d.abort();
        }
    }
}

/// The real `origin-gate` binary as a child process; knows its listen addresses from its log.
pub struct GateProcess {
    pub child: Child,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub log: mpsc::Receiver<String>,
    /// Standard output: the access log, unless it goes to a file.
    pub access: mpsc::Receiver<String>,
    /// Every log line up to and including the "listening" lines.
    pub startup: Vec<String>,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_origin-gate"))
}

impl GateProcess {
    /// Spawns `origin-gate --config <path>` and waits (bounded) for its "listening" lines.
    pub fn spawn(config: &Path) -> GateProcess {
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (access_tx, access_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if access_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut http, mut https, mut admin) = (None, None, None);
        let text = std::fs::read_to_string(config).unwrap();
        let expect_https = text.contains("https = [\"");
        let expect_admin = text.contains("[admin]");
        let mut seen = Vec::new();
        while http.is_none()
            || (expect_https && https.is_none())
            || (expect_admin && admin.is_none())
        {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| {
                    panic!(
                        "origin-gate did not report listening; log so far:\n{}",
                        seen.join("\n")
                    )
                });
            if line.contains(" listening ") {
                let addr: SocketAddr = line.rsplit("addr=").next().unwrap().trim().parse().unwrap();
                if line.contains("listener=\"admin\"") {
                    admin = Some(addr);
                } else if line.contains("listener=\"https\"") {
                    https = Some(addr);
                } else {
                    http = Some(addr);
                }
            }
            seen.push(line);
        }
        GateProcess {
            child,
            http: http.unwrap(),
            https,
            admin,
            log: rx,
            access: access_rx,
            startup: seen,
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// The next `n` access-log lines from stdout (bounded wait).
    pub fn access_lines(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.access
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|_| panic!("access-log line {} of {n} did not arrive", i + 1))
            })
            .collect()
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Some(l),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for GateProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
