//! The `origin-gate` binary: CLI, logging, signals → `origin_gate::Server`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use origin_gate::{Config, Server};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc malloc: measured on the load benchmark (1 KiB responses, 64
/// connections, same run): see docs/performance.md for the figures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reverse-proxy sidecar for a WordPress origin behind Cloudflare.
///
/// Without --config it runs an embedded default: HTTP on 127.0.0.1:8080, TLS on 127.0.0.1:8443
/// with a self-signed certificate, and an echo origin that shows what WordPress would see.
#[derive(Parser)]
#[command(name = "origin-gate", version, about)]
struct Cli {
    /// The TOML configuration file.
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and every file it names, then exit (0 valid, 1 problems).
    Check,
    /// Check the whole setup on this machine (config, listeners, backend redirect loops,
    /// certificates, the ACME challenge path, trusted ranges) and print a checklist with fixes.
    /// Default config: /etc/origin-gate/origin-gate.toml. Exit 1 if anything is wrong.
    Doctor,
    /// The trusted-range file (`trust.ranges_file`).
    Ranges {
        #[command(subcommand)]
        action: RangesAction,
    },
}

#[derive(Subcommand)]
enum RangesAction {
    /// Fetch Cloudflare's published lists, check them and write trust.ranges_file atomically
    /// (an existing file kept as .previous); the file replaces the built-in list, and a running
    /// instance picks it up on its next reload. Refused without --force: an IPv4 or IPv6 list
    /// that lost more than half of its ranges (each checked on its own).
    /// Exit 0: the file is current; 1: fetch failed or the lists were refused (file untouched);
    /// 2: usage or configuration error. Default config: /etc/origin-gate/origin-gate.toml.
    Update {
        /// Where the IPv4 list is fetched from (https:// only).
        #[arg(long, default_value = origin_gate::ops::ranges::CLOUDFLARE_V4_URL)]
        v4_url: String,
        /// Where the IPv6 list is fetched from (https:// only).
        #[arg(long, default_value = origin_gate::ops::ranges::CLOUDFLARE_V6_URL)]
        v6_url: String,
        /// More CA certificates (PEM) to trust for the fetch, e.g. a corporate TLS proxy's.
        #[arg(long, value_name = "PEM")]
        ca_file: Option<PathBuf>,
        /// Accept an IPv4 or IPv6 list that lost more than half of its ranges.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => check(cli.config),
        Some(Command::Doctor) => doctor(cli.config),
        Some(Command::Ranges {
            action:
                RangesAction::Update {
                    v4_url,
                    v6_url,
                    ca_file,
                    force,
                },
        }) => ranges_update(cli.config, v4_url, v6_url, ca_file, force),
        None => serve(cli.config),
    }
}

fn check(path: Option<PathBuf>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("origin-gate check: give the file to check with --config FILE");
        return ExitCode::from(2);
    };
    let outcome = origin_gate::ops::check::run(&path);
    match outcome.problems.as_slice() {
        [] => {
            for line in outcome.report {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        problems => {
            for p in problems {
                eprintln!("{p}");
            }
            // Not problems: origin-gate starts without them (first issuance needs it running).
            for w in &outcome.waiting {
                eprintln!("WARN {w}");
            }
            eprintln!(
                "{}: {} problem{} found",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

fn doctor(path: Option<PathBuf>) -> ExitCode {
    let path =
        path.unwrap_or_else(|| origin_gate::ops::doctor::default_config_path().to_path_buf());
    let runtime = match control_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let checks = runtime.block_on(origin_gate::ops::doctor::run(&path));
    for c in &checks {
        println!("{c}");
    }
    let failed = checks.iter().filter(|c| c.failed()).count();
    if failed == 0 {
        println!("\nall checks passed");
        ExitCode::SUCCESS
    } else {
        println!(
            "\n{failed} problem{} to fix",
            if failed == 1 { "" } else { "s" }
        );
        ExitCode::FAILURE
    }
}

fn ranges_update(
    path: Option<PathBuf>,
    v4_url: String,
    v6_url: String,
    ca_file: Option<PathBuf>,
    force: bool,
) -> ExitCode {
    use origin_gate::ops::ranges::{self, Update};
    // A URL that cannot work is a usage error, found before the configuration is read.
    if let Err(e) = ranges::check_urls(&v4_url, &v6_url) {
        eprintln!("origin-gate ranges update: {e}");
        return ExitCode::from(e.exit_code());
    }
    let path =
        path.unwrap_or_else(|| origin_gate::ops::doctor::default_config_path().to_path_buf());
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(file) = config.trust.ranges_file.clone() else {
        eprintln!(
            "{}: trust.ranges_file is not set; add it (e.g. ranges_file = \"{}\") so the update has somewhere to go",
            path.display(),
            ranges::EXAMPLE_RANGES_FILE
        );
        return ExitCode::from(2);
    };
    let runtime = match control_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let update = Update {
        file: file.clone(),
        v4_url,
        v6_url,
        ca_file,
        force,
    };
    match runtime.block_on(ranges::run(&update)) {
        Ok(outcome) => {
            for line in outcome.report(&file) {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("origin-gate ranges update: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let config = match &path {
        Some(p) => Config::load(p),
        None => Config::embedded_default(),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // RUST_LOG, when set, wins over log.level (handy for one-off debugging).
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    // A panic is a bug; it ends only the connection task it happened on (tokio catches it), so
    // one bad request cannot take every other visitor down with it. Make sure it is in the log.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("internal error (please report): {info}");
    }));

    // The main thread only runs control work (signals, reloads, the admin listener); requests
    // are served by the worker threads `Server::run` starts, each with its own runtime.
    let runtime = match control_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        // Signal handlers go in before any socket is bound: a SIGHUP or SIGTERM that arrives
        // right after "listening" must not meet the default action (terminate).
        let signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("origin-gate: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("origin-gate: {e}");
                return ExitCode::FAILURE;
            }
        };
        let Signals {
            mut hup,
            mut usr1,
            mut term,
            mut int,
        } = signals;
        let reloader = server.reloader();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!(
                    "SIGHUP received: reloading the configuration and the files it names"
                );
                let outcome = reloader.reload_config().await;
                tracing::info!("reload finished: {outcome}");
            }
        });
        let reopener = server.reloader();
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                tracing::info!("SIGUSR1 received: reopening the access log");
                reopener.reopen_access_log();
            }
        });
        // SIGTERM (systemd, docker stop, Kubernetes) or SIGINT (Ctrl-C): graceful shutdown.
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        };
        server.run(shutdown).await;
        ExitCode::SUCCESS
    })
}

fn control_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

struct Signals {
    hup: Signal,
    usr1: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}
