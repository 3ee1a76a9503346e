//! The `sluice` binary as a child process that a test can kill (SIGKILL: no shutdown code
//! runs, as in a crash), stop (SIGTERM) and start again on the same address and data
//! directory.
//!
//! Every start waits until the broker logs that it listens, so a client that cannot connect
//! afterwards is a finding, not a race. The last lines of the broker's output are kept for a
//! failing test to show.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the broker logs once its AMQP listener is bound.
const READY_LINE: &str = "listening for AMQP 1.0 connections";
/// How long a start (recovery included) or a stop may take.
const STEP: Duration = Duration::from_secs(30);
/// Lines of output kept for a failure message.
const TAIL_LINES: usize = 200;
/// Starts tried when the port is taken: while the broker is down, the kernel may hand its
/// port to some outgoing connection as an ephemeral port, which blocks the bind for a while.
const BIND_TRIES: u32 = 50;

/// A `sluice` child process listening on a fixed loopback address.
pub struct BrokerProcess {
    addr: SocketAddr,
    data_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl BrokerProcess {
    /// Starts `sluice --listen 127.0.0.1:PORT --admin-listen 127.0.0.1:0 --data-dir DIR` plus
    /// `args` on a port that was free a moment ago, and waits until it listens.
    pub async fn start(data_dir: &Path, args: &[&str]) -> BrokerProcess {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let addr = probe.local_addr().expect("local addr");
        drop(probe);
        let mut broker = BrokerProcess {
            addr,
            data_dir: data_dir.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
            tail: Arc::new(Mutex::new(VecDeque::new())),
        };
        broker.restart().await;
        broker
    }

    /// Where it listens for AMQP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The last lines of its output, over every start.
    pub fn log_tail(&self) -> String {
        let tail = self.tail.lock().expect("log lock");
        tail.iter().fold(String::new(), |s, l| s + l + "\n")
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the broker");
            child.wait().expect("reap the broker");
            self.note("---- test: SIGKILL ----");
        }
    }

    /// SIGTERM, the clean stop; waits for the exit and returns its status.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the broker is running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM failed");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.note(&format!("---- test: exited after SIGTERM: {status} ----"));
                return status;
            }
            if started.elapsed() > STEP {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the broker did not exit within {STEP:?} of SIGTERM; output:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts it (again) on the same address and data directory and waits until it listens.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running broker");
        for _ in 0..BIND_TRIES {
            let seen = Arc::new(Seen::default());
            let mut child = self.spawn(&seen);
            let started = Instant::now();
            let status = loop {
                if seen.ready.load(Ordering::Acquire) {
                    self.child = Some(child);
                    return;
                }
                if let Some(status) = child.try_wait().expect("try_wait") {
                    break status;
                }
                if started.elapsed() > STEP {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the broker did not listen within {STEP:?}; output:\n{}",
                        self.log_tail()
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            // The reader threads may still be draining the exit message: give them a moment.
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !seen.port_taken.load(Ordering::Acquire) {
                panic!(
                    "the broker exited at start ({status}); output:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{} stayed taken for {BIND_TRIES} starts; output:\n{}",
            self.addr,
            self.log_tail()
        );
    }

    fn spawn(&self, seen: &Arc<Seen>) -> Child {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .env_remove("RUST_LOG")
            .args(["--listen", &self.addr.to_string()])
            .args(["--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the sluice binary starts");
        self.note("---- test: started ----");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        collect(stdout, self.tail.clone(), seen.clone(), self.addr);
        collect(stderr, self.tail.clone(), seen.clone(), self.addr);
        child
    }

    fn note(&self, line: &str) {
        push(&self.tail, line.to_owned());
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        // A test that fails half-way must not leave a broker behind.
        self.kill();
    }
}

fn push(tail: &Mutex<VecDeque<String>>, line: String) {
    let mut tail = tail.lock().expect("log lock");
    if tail.len() == TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(line);
}

/// What one start of the broker has said so far.
#[derive(Default)]
struct Seen {
    /// It listens ([`READY_LINE`]).
    ready: AtomicBool,
    /// It could not bind its address.
    port_taken: AtomicBool,
}

/// Keeps the lines `stream` produces in `tail`, on a thread of its own (it ends with the
/// process), and raises the flags of `seen`.
fn collect(
    stream: impl Read + Send + 'static,
    tail: Arc<Mutex<VecDeque<String>>>,
    seen: Arc<Seen>,
    addr: SocketAddr,
) {
    let taken = format!("cannot listen on {addr}");
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if line.contains(READY_LINE) {
                seen.ready.store(true, Ordering::Release);
            }
            if line.contains(&taken) {
                seen.port_taken.store(true, Ordering::Release);
            }
            push(&tail, line);
        }
    });
}
