//! The `sluice` command, black-box: the built binary with real files, real signals and a real
//! client.
//!
//! A broker under test listens on a free loopback port found by binding port 0 and letting it
//! go (`--listen 127.0.0.1:0` would leave the test without a way to learn the port), and is
//! killed if a test fails half-way, so no test leaves a process behind.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::Connection;
use support::broker::assert_closed_with_connection_forced;
use tempfile::TempDir;

/// Limit on anything that should be quick, so a hang fails the test instead of stalling it.
const STEP: Duration = Duration::from_secs(10);

fn sluice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        // Tests run in parallel: none may take the fixed admin port.
        .args(["--admin-listen", "127.0.0.1:0"]);
    command
}

/// Runs `sluice` with `args` to completion (these invocations never serve, so they end).
fn run(args: &[&str]) -> Output {
    sluice()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the sluice binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes `text` to `broker.toml` in a fresh directory; the directory lives as long as the
/// returned guard.
fn config_file(text: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

// ---- check-config and configuration errors ----

#[test]
fn check_config_accepts_the_documented_default_file() {
    let output = run(&["check-config", "config/broker.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("config/broker.toml: ok"), "{stdout}");
}

#[test]
fn check_config_names_the_file_line_and_key_of_an_unknown_key() {
    let (_dir, path) =
        config_file("[broker]\ncontainer_id = \"x\"\nlisten_on = \"127.0.0.1:5672\"\n");
    let output = run(&["check-config", path_arg(&path)]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains(&format!("{}:3:", path.display())),
        "no file:line in {err}"
    );
    assert!(err.contains("listen_on"), "no key in {err}");
    assert!(err.contains("[broker]"), "no table in {err}");
}

#[test]
fn check_config_names_the_file_line_and_key_of_a_bad_value() {
    let (_dir, path) = config_file("[auth]\n\nanonymous = \"sometimes\"\n");
    let output = run(&["check-config", path_arg(&path)]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains(&format!("{}:3:", path.display())),
        "no file:line in {err}"
    );
    assert!(err.contains("auth.anonymous"), "no key in {err}");
}

#[test]
fn check_config_reports_where_the_toml_is_broken() {
    let (_dir, path) = config_file("[broker]\nmax_frame_size = \n");
    let output = run(&["check-config", path_arg(&path)]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("invalid TOML"), "{err}");
}

#[test]
fn check_config_of_a_missing_file_names_the_path() {
    let output = run(&["check-config", "no/such/broker.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("cannot read no/such/broker.toml"), "{err}");
}

#[test]
fn starting_with_a_missing_config_file_fails_naming_the_path() {
    let output = run(&["--config", "missing.toml", "--listen", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("cannot read missing.toml"), "{err}");
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn starting_with_a_bad_config_fails_naming_the_file_line_and_key() {
    let (_dir, path) = config_file("[broker]\nmax_frame_size = 100\n");
    let output = run(&["--config", path_arg(&path), "--listen", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains(&format!("{}:2:", path.display())), "{err}");
    assert!(err.contains("broker.max_frame_size"), "{err}");
}

#[test]
fn a_listen_address_already_in_use_fails_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("local addr").to_string();
    let data = tempfile::tempdir().expect("temp dir");
    let output = run(&["--listen", &addr, "--data-dir", path_arg(data.path())]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[test]
fn a_listen_address_must_be_an_ip_literal() {
    let output = run(&["--listen", "localhost:5672"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--listen"), "{}", stderr(&output));
}

#[test]
fn version_and_help_exit_0() {
    let version = run(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--config",
        "--listen",
        "--data-dir",
        "--log",
        "check-config",
    ] {
        assert!(
            text.contains(option),
            "--help does not mention {option}: {text}"
        );
    }
}

// ---- a running broker ----

/// A `sluice` process serving on a loopback port, with its stdout and stderr collected.
struct Running {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    _data_dir: TempDir,
}

impl Running {
    /// Starts `sluice --listen 127.0.0.1:PORT --data-dir TMP` plus `args` (with `env` set) and
    /// waits until it says it is listening.
    async fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
        let addr = free_port();
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut child = sluice()
            .args(["--listen", &addr.to_string()])
            .args(["--data-dir", path_arg(data_dir.path())])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the sluice binary starts");
        let log = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().expect("stdout"), log.clone());
        collect(child.stderr.take().expect("stderr"), log.clone());
        let running = Running {
            child,
            addr,
            log,
            _data_dir: data_dir,
        };
        running
            .wait_for_log("listening for AMQP 1.0 connections")
            .await;
        running
    }

    fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits until the output contains `needle`.
    async fn wait_for_log(&self, needle: &str) {
        let started = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                started.elapsed() < STEP,
                "no {needle:?} in the broker's output:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (a `kill` name such as `TERM`) to the broker process.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, polling so the runtime keeps serving the client.
    async fn exit_status(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < STEP,
                "the broker did not exit; output:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only matters when a test failed half-way; a passing test has seen the exit already.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback address with a port that was free a moment ago.
fn free_port() -> SocketAddr {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    probe.local_addr().expect("local addr")
}

/// Appends everything `stream` produces to `log`, line by line, on a thread of its own.
fn collect(stream: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut log = log.lock().expect("log lock");
            log.push_str(&line);
            log.push('\n');
        }
    });
}

/// Opens an AMQP connection over a socket whose local address we know, so the test can look
/// for it in the broker's log.
async fn connect(addr: SocketAddr, container_id: &str) -> (ConnectionHandle<()>, SocketAddr) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let local = stream.local_addr().expect("local addr");
    let connection = tokio::time::timeout(
        STEP,
        Connection::builder()
            .container_id(container_id)
            .open_with_stream(stream),
    )
    .await
    .expect("open timed out")
    .expect("connection opens");
    (connection, local)
}

/// The signal contract: stop accepting, close every connection with
/// `amqp:connection:forced`, exit 0; and connections are logged with peer and container-id.
async fn a_signal_closes_every_connection_with_connection_forced_and_exits_0(signal: &str) {
    let mut broker = Running::start(&[], &[]).await;
    let container_id = format!("cli-{signal}-client");
    let (mut first, first_addr) = connect(broker.addr, &container_id).await;
    let (mut second, _) = connect(broker.addr, "cli-second-client").await;
    broker.wait_for_log("cli-second-client").await;

    let log = broker.log();
    let opened = log
        .lines()
        .find(|line| line.contains("connection opened") && line.contains(&container_id))
        .unwrap_or_else(|| panic!("no 'connection opened' for {container_id}:\n{log}"));
    assert!(
        opened.contains(&format!("peer={first_addr}")),
        "the peer address {first_addr} is missing: {opened}"
    );
    assert!(
        !opened.contains('\x1b'),
        "colour codes in a log that is not a terminal: {opened:?}"
    );

    broker.signal(signal);
    assert_closed_with_connection_forced(&mut first).await;
    assert_closed_with_connection_forced(&mut second).await;
    let status = broker.exit_status().await;
    assert_eq!(status.code(), Some(0), "output:\n{}", broker.log());
    assert!(
        std::net::TcpStream::connect(broker.addr).is_err(),
        "still accepting after exit"
    );
    let log = broker.log();
    assert!(
        log.lines().any(|line| line.contains("connection closed")
            && line.contains(&format!("peer={first_addr}"))
            && line.contains(&container_id)),
        "no 'connection closed' for {first_addr}:\n{log}"
    );
}

#[tokio::test]
async fn sigterm_closes_every_connection_with_connection_forced_and_exits_0() {
    a_signal_closes_every_connection_with_connection_forced_and_exits_0("TERM").await;
}

#[tokio::test]
async fn sigint_closes_every_connection_with_connection_forced_and_exits_0() {
    a_signal_closes_every_connection_with_connection_forced_and_exits_0("INT").await;
}

#[tokio::test]
async fn a_signal_with_no_clients_exits_0_at_once() {
    let mut broker = Running::start(&[], &[]).await;
    broker.signal("TERM");
    let started = Instant::now();
    assert_eq!(broker.exit_status().await.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A line only the debug level shows: each listener says so when it stops.
const DEBUG_LINE: &str = "listener stopped";

#[tokio::test]
async fn log_debug_is_honoured() {
    let mut broker = Running::start(&["--log", "debug"], &[]).await;
    broker.signal("TERM");
    assert_eq!(broker.exit_status().await.code(), Some(0));
    broker.wait_for_log(DEBUG_LINE).await;
}

#[tokio::test]
async fn the_default_log_level_is_info() {
    let mut broker = Running::start(&[], &[]).await;
    broker.signal("TERM");
    assert_eq!(broker.exit_status().await.code(), Some(0));
    broker.wait_for_log("broker stopped").await;
    assert!(!broker.log().contains(DEBUG_LINE), "{}", broker.log());
}

#[tokio::test]
async fn rust_log_is_honoured_and_log_overrides_it() {
    let mut broker = Running::start(&[], &[("RUST_LOG", "debug")]).await;
    broker.signal("TERM");
    assert_eq!(broker.exit_status().await.code(), Some(0));
    broker.wait_for_log(DEBUG_LINE).await;

    let mut broker = Running::start(&["--log", "info"], &[("RUST_LOG", "debug")]).await;
    broker.signal("TERM");
    assert_eq!(broker.exit_status().await.code(), Some(0));
    broker.wait_for_log("broker stopped").await;
    assert!(!broker.log().contains(DEBUG_LINE), "{}", broker.log());
}

// ---- hash-password ----

#[test]
fn hash_password_prints_a_hash_broker_toml_accepts() {
    use std::io::Write;
    let mut child = sluice()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sluice binary runs");
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let hash = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let config = sluice::Config::from_toml(
        &format!("[[users]]\nname = \"app\"\npassword_hash = \"{hash}\"\n"),
        "t.toml",
    )
    .unwrap();
    assert!(config.authenticate("app", "s3cret"));
    // --scram: SCRAM-SHA-256 keys, which PLAIN checks too.
    let mut child = sluice()
        .args(["hash-password", "--scram"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the sluice binary runs");
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let output = child.wait_with_output().unwrap();
    let keys = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(keys.starts_with("SCRAM-SHA-256$4096:"), "{keys}");
    let config = sluice::Config::from_toml(
        &format!("[[users]]\nname = \"app\"\npassword_hash = \"{keys}\"\n"),
        "t.toml",
    )
    .unwrap();
    assert!(config.authenticate("app", "s3cret") && !config.authenticate("app", "s3cre"));
    // Nothing on standard input: an error, not an empty hash.
    let empty = run(&["hash-password"]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no password on standard input"));
}
