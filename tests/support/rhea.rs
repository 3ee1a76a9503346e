//! Running rhea (the AMQP 1.0 client for Node.js) scripts from `tests/rhea/` against the broker.
//! The package is installed with the machine's npm into `target/rhea` on first use, pinned,
//! and reused; nothing here skips a test: without node and npm it panics saying what to install.

#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The rhea release the scripts are checked against.
pub const RHEA_VERSION: &str = "3.0.5";
/// The WebSocket client rhea runs on under Node.js (browsers have their own).
pub const WS_VERSION: &str = "8.18.3";

/// `target/rhea`, with rhea and ws installed in its `node_modules`.
pub fn install() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/rhea");
        let installed = dir.join(format!("node_modules/rhea/.sluice-{RHEA_VERSION}-ws-{WS_VERSION}"));
        if installed.exists() {
            return dir;
        }
        std::fs::create_dir_all(&dir).expect("create target/rhea");
        // Concurrent test binaries: one installs, the others wait for its marker.
        let lock = dir.join("install.lock");
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(_) => break,
                Err(_) if installed.exists() => return dir,
                Err(_) if Instant::now() > deadline => {
                    panic!("{} held for 10 minutes", lock.display())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(format!("rhea@{RHEA_VERSION}"))
            .arg(format!("ws@{WS_VERSION}"))
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_file(&lock);
        match status {
            Ok(s) if s.success() => {
                std::fs::write(&installed, b"").expect("mark rhea installed");
            }
            other => {
                panic!("npm install rhea@{RHEA_VERSION} ws@{WS_VERSION} failed ({other:?}); install node and npm")
            }
        }
        dir
    })
}

/// Runs `tests/rhea/SCRIPT` with `args`; returns its output (it must end within a minute).
pub fn run(script: &str, args: &[&str]) -> Output {
    let dir = install();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/rhea")
        .join(script);
    let child = Command::new("node")
        .arg(&path)
        .args(args)
        .env("NODE_PATH", dir.join("node_modules"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (install Node.js)");
    child.wait_with_output().expect("wait for node")
}
