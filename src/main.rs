//! The `sluice` command: runs the broker, checks a configuration file, manages a running
//! broker (`sluice ctl`, in src/cli/ctl/), or repairs a corrupt journal (`sluice repair`, in
//! src/cli/repair.rs).

mod cli;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cli::{ctl, repair};
use sluice::{Broker, Config};
use tracing_subscriber::EnvFilter;

/// sluice, an AMQP 1.0 message broker.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Without it, the embedded default is used.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on; repeat for several. Replaces the configured `broker.listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// Address of the admin API, metrics and console. Replaces the configured `admin.listen`.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Directory for durable state. Replaces the configured `broker.data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `sluice=debug` (default: RUST_LOG, else `info`).
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration file and exit (0 if valid, 2 if not).
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Manage a running broker through its admin API: list, purge, declare, delete and rewind
    /// queues; list and cancel scheduled messages; list and close connections.
    Ctl(ctl::CtlArgs),
    /// Check the journal in the data directory and, once confirmed, truncate it where it is
    /// corrupt (when the broker refuses to start with "journal corrupt"). Stop the broker first.
    Repair(repair::RepairArgs),
    /// Read a password from standard input (its first line) and print its Argon2id hash, for
    /// `password_hash` in a [[users]] entry of broker.toml.
    HashPassword {
        /// Print SCRAM-SHA-256 keys instead, which SASL SCRAM-SHA-256 can log in with as well
        /// as PLAIN (an Argon2 hash serves PLAIN only).
        #[arg(long)]
        scram: bool,
    },
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    match cli.command.take() {
        Some(Command::CheckConfig { file }) => return check_config(&file),
        // A client of the admin API: no logging setup, no runtime.
        Some(Command::Ctl(args)) => return ctl::run(&args),
        // Offline and synchronous: it prints what it finds rather than logging it.
        Some(Command::Repair(args)) => {
            let args = args.or_global(cli.data_dir.as_deref(), cli.config.as_deref());
            return repair::run(args);
        }
        Some(Command::HashPassword { scram }) => return hash_password(scram),
        None => {}
    }
    init_logging(cli.log.as_deref());
    raise_fd_limit();
    let mut config = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sluice: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if !cli.listen.is_empty() {
        config.listen = cli.listen.clone();
    }
    if let Some(addr) = cli.admin_listen {
        config.admin.listen = addr;
    }
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

fn check_config(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(config: Config) -> ExitCode {
    let broker = match Broker::start(config).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_signal(&broker).await;
    tracing::info!("signal received: shutting down");
    broker.shutdown().await;
    ExitCode::SUCCESS
}

/// Waits for SIGINT or SIGTERM; SIGHUP meanwhile reloads the TLS certificates.
async fn wait_for_signal(broker: &sluice::BrokerHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = hup.recv() => match broker.reload_tls() {
                    Ok(0) => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
                    Ok(n) => tracing::info!(configurations = n, "SIGHUP: TLS certificates reloaded"),
                    Err(e) => tracing::warn!("SIGHUP: TLS certificates not reloaded, the old ones stay in use: {e}"),
                },
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = broker;
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(filter: Option<&str>) {
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // Logs go to stderr, beside our error messages, leaving stdout to command output; colour
    // only on a terminal, so a log file or journal gets plain text. Every field is escaped and
    // capped, so nothing a peer sends can forge a line or drive the terminal.
    tracing_subscriber::fmt()
        .fmt_fields(sluice::log_fields())
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Each connection is a file descriptor: the soft limit (often 1024) would let about a thousand
/// sockets lock everyone out, while the hard limit is usually far higher and ours to take.
fn raise_fd_limit() {
    match sluice::raise_fd_limit() {
        Ok(limit) if limit.now > limit.before => tracing::info!(
            from = limit.before,
            to = limit.now,
            "open file limit (RLIMIT_NOFILE) raised"
        ),
        Ok(limit) => tracing::debug!(limit = limit.now, "open file limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!("cannot raise the open file limit (RLIMIT_NOFILE): {e}"),
    }
}

/// `sluice hash-password`: the first line of standard input, hashed (read from stdin, so the
/// password stays out of the shell's history and the process list).
fn hash_password(scram: bool) -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("sluice: cannot read the password from standard input: {e}");
        return ExitCode::from(2);
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        eprintln!(
            "sluice: no password on standard input (e.g. `echo -n secret | sluice hash-password`)"
        );
        return ExitCode::from(2);
    }
    let hashed = if scram {
        sluice::config::password::hash_password_scram(password)
    } else {
        sluice::config::password::hash_password(password)
    };
    match hashed {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::from(1)
        }
    }
}
