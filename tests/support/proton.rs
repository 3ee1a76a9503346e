//! Running the Qpid Proton Python client examples (`tests/proton/*.py`) from
//! integration tests.
//!
//! The examples are the interop yardstick for sluice: they must run against the
//! broker unchanged but for Python 3 syntax. They need the `python-qpid-proton`
//! package, which is not something a developer machine or CI image can be
//! assumed to have, so this module builds a private virtualenv under the cargo
//! target directory on first use and reuses it afterwards. Nothing here ever
//! skips a test: if Python or the package cannot be provided, it panics and
//! says what to install.

#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// The exact client version the examples are checked against, so that results
/// do not drift with whatever PyPI serves on the day.
pub const PROTON_VERSION: &str = "0.40.0";

/// Upper bound for building the venv (the pip install compiles the Proton C
/// core from source). A stuck download must fail the tests, not hang them.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long to wait for another process that is building the venv. Longer than
/// [`INSTALL_TIMEOUT`] so a healthy concurrent build is always waited out.
const LOCK_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// A lock file older than this is treated as left behind by a crashed build.
const STALE_LOCK_AGE: Duration = Duration::from_secs(30 * 60);

/// What a finished example run produced, kept together so a failed assertion
/// can show everything needed to diagnose it (see the `Display` impl).
#[derive(Debug)]
pub struct ExampleOutput {
    /// Script name and arguments, for messages.
    pub command: String,
    /// Exit status; after a timeout, the status of the killed process.
    pub status: ExitStatus,
    /// Everything the script printed to stdout (lossily decoded as UTF-8).
    pub stdout: String,
    /// Everything the script printed to stderr (lossily decoded as UTF-8).
    pub stderr: String,
    /// True if the script was killed because it ran past its timeout.
    pub timed_out: bool,
    /// Wall-clock time from the start of waiting until the process ended.
    pub elapsed: Duration,
}

impl ExampleOutput {
    /// Panics, showing stdout and stderr, unless the script exited with
    /// status 0 on its own. Returns stdout for further checks.
    pub fn assert_success(&self) -> &str {
        if self.timed_out || !self.status.success() {
            panic!("example failed:\n{self}");
        }
        &self.stdout
    }
}

impl std::fmt::Display for ExampleOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        if self.timed_out {
            writeln!(
                f,
                "status: KILLED after timing out ({:.1?}); {}",
                self.elapsed, self.status
            )?;
        } else {
            writeln!(f, "status: {} after {:.1?}", self.status, self.elapsed)?;
        }
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// Directory holding cargo's build output; the venv lives there so that
/// `cargo clean` removes it and nothing is written outside the project.
///
/// Uses `CARGO_TARGET_DIR` if set (a relative value is taken relative to the
/// package root, which is also the working directory cargo gives tests),
/// else `<CARGO_MANIFEST_DIR>/target`.
pub fn target_dir() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => manifest_dir.join(dir),
        _ => manifest_dir.join("target"),
    }
}

/// Where the example scripts live.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/proton")
}

/// Path of a python3 interpreter in a virtualenv under the target directory
/// that has python-qpid-proton [`PROTON_VERSION`].
///
/// Creates the venv on first use (`python3 -m venv`, then
/// `pip install python-qpid-proton==0.40.0`, which builds from source with a C
/// compiler in about half a minute to a minute) and caches it: later calls and
/// later test runs reuse it. A stamp file written last marks a complete venv,
/// so one left half-built by an interrupted run is rebuilt. Several test
/// binaries or threads may call this at once: within a process a `OnceLock`
/// serialises callers, across processes a lock file does.
///
/// Panics with a message saying what to install if python3 is missing or the
/// install fails; the pip output is kept in `<target>/proton-venv-pip.log`.
pub fn python() -> PathBuf {
    // The outcome, failure included, is cached so that a broken install panics
    // every caller at once instead of being retried by each test in turn.
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let outcome = PYTHON.get_or_init(|| {
        std::panic::catch_unwind(ensure_venv).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "building the Proton venv panicked".to_owned())
        })
    });
    match outcome {
        Ok(python) => python.clone(),
        Err(message) => panic!("{message}"),
    }
}

/// Runs `tests/proton/<script>` with `args` and waits for it, killing it if it
/// runs longer than `timeout` (the result then has `timed_out` set), so a hang
/// in the broker fails the test with the script's output instead of hanging
/// `cargo test`.
pub fn run_example(script: &str, args: &[&str], timeout: Duration) -> ExampleOutput {
    let child = spawn_example(script, args);
    wait_example(child, &describe(script, args), timeout)
}

/// Starts `tests/proton/<script>` with `args` in the background, with stdout
/// and stderr piped, for a script that must run concurrently with another
/// (e.g. a receiver already waiting when the sender starts).
///
/// Hand the child to [`wait_example`] soon: that is what reads its pipes and
/// what kills it if it hangs. A dropped `Child` is not killed, and the Proton
/// examples reconnect forever, so do not let a panic come between the two.
pub fn spawn_example(script: &str, args: &[&str]) -> Child {
    let python = python();
    let path = examples_dir().join(script);
    assert!(
        path.is_file(),
        "example script {} does not exist",
        path.display()
    );
    let mut command = Command::new(&python);
    // Proton's default reconnect makes a refused or dropped connection retry
    // silently forever; logging its errors makes such a hang diagnosable from
    // the stderr shown on failure. A PN_LOG or PN_TRACE_FRM set by the caller
    // wins, e.g. `PN_LOG=error,frame cargo test` for a full AMQP frame trace.
    if std::env::var_os("PN_LOG").is_none() && std::env::var_os("PN_TRACE_FRM").is_none() {
        command.env("PN_LOG", "error");
    }
    command
        .arg(&path)
        .args(args)
        .current_dir(examples_dir())
        // Unbuffered, so that whatever a killed script printed is still shown.
        .env("PYTHONUNBUFFERED", "1")
        // Keep __pycache__ out of the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} {}: {e}",
                python.display(),
                describe(script, args)
            )
        })
}

/// Waits for a child from [`spawn_example`], collecting its output, and kills
/// it once `timeout` has passed. `command` labels it in messages.
pub fn wait_example(mut child: Child, command: &str, timeout: Duration) -> ExampleOutput {
    let start = Instant::now();
    // Drain both pipes on their own threads so a chatty script cannot block
    // on a full pipe while we poll for its exit.
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let (status, timed_out) = wait_or_kill(&mut child, timeout)
        .unwrap_or_else(|e| panic!("waiting for {command} failed: {e}"));
    ExampleOutput {
        command: command.to_owned(),
        status,
        stdout: stdout.join().expect("stdout reader thread panicked"),
        stderr: stderr.join().expect("stderr reader thread panicked"),
        timed_out,
        elapsed: start.elapsed(),
    }
}

fn describe(script: &str, args: &[&str]) -> String {
    std::iter::once(script)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_in_background<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error just truncates the captured output.
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Polls `child` until it exits or `timeout` passes; in the latter case kills
/// it and reaps it. Returns the exit status and whether it was killed.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> io::Result<(ExitStatus, bool)> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, false));
        }
        if Instant::now() >= deadline {
            // It may have exited in the meantime; kill() then fails harmlessly.
            let _ = child.kill();
            return Ok((child.wait()?, true));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

fn ensure_venv() -> PathBuf {
    let target = target_dir();
    let venv = target.join("proton-venv");
    let python = venv_python(&venv);
    let stamp = venv.join(".sluice-complete");
    let stamp_text = format!("python-qpid-proton=={PROTON_VERSION}\n");
    let is_complete =
        || python.is_file() && fs::read_to_string(&stamp).is_ok_and(|text| text == stamp_text);
    if is_complete() {
        return python;
    }

    fs::create_dir_all(&target)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", target.display()));
    let _lock = LockFile::acquire(target.join("proton-venv.lock"));
    // Another process may have finished the venv while we waited for the lock.
    if is_complete() {
        return python;
    }

    let log_path = target.join("proton-venv-pip.log");
    eprintln!(
        "building {} with python-qpid-proton {PROTON_VERSION} (one-off, compiles C code; \
         log: {})",
        venv.display(),
        log_path.display()
    );
    let started = Instant::now();
    if venv.exists() {
        // No stamp: a build was interrupted or the version changed.
        fs::remove_dir_all(&venv)
            .unwrap_or_else(|e| panic!("cannot remove half-built venv {}: {e}", venv.display()));
    }
    let log = File::create(&log_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));

    let mut make_venv = Command::new("python3");
    make_venv.arg("-m").arg("venv").arg(&venv);
    let status = run_logged(make_venv, &log, &log_path).unwrap_or_else(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            panic!(
                "python3 was not found on PATH. The Qpid Proton interop tests need Python 3 \
                 (>= 3.9) with the venv module, a C compiler and Python headers, e.g. on \
                 Debian/Ubuntu: apt-get install python3 python3-venv python3-dev gcc"
            )
        }
        panic!("cannot run `python3 -m venv {}`: {e}", venv.display())
    });
    if !status.success() {
        panic!(
            "`python3 -m venv {}` failed ({status}). Install the venv module \
             (Debian/Ubuntu: apt-get install python3-venv). Output:\n{}",
            venv.display(),
            log_tail(&log_path)
        );
    }

    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install"])
        .arg(format!("python-qpid-proton=={PROTON_VERSION}"))
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    let status = run_logged(pip, &log, &log_path)
        .unwrap_or_else(|e| panic!("cannot run pip in {}: {e}", venv.display()));
    if !status.success() {
        panic!(
            "`pip install python-qpid-proton=={PROTON_VERSION}` into {} failed ({status}); \
             full log: {}. The package builds the Proton C library from source, so it needs \
             network access to PyPI (or a configured index), a C compiler and the Python \
             headers, e.g. on Debian/Ubuntu: apt-get install gcc python3-dev. \
             End of the log:\n{}",
            venv.display(),
            log_path.display(),
            log_tail(&log_path)
        );
    }

    // Prove the install is usable before declaring the venv complete.
    let mut check = Command::new(&python);
    check.args(["-c", "import proton, proton.reactor, proton.handlers"]);
    let status = run_logged(check, &log, &log_path)
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    if !status.success() {
        panic!(
            "python-qpid-proton was installed into {} but `import proton` fails ({status}); \
             see {}:\n{}",
            venv.display(),
            log_path.display(),
            log_tail(&log_path)
        );
    }

    // Written last and atomically: its presence means the venv is complete.
    let tmp = venv.join(".sluice-complete.tmp");
    fs::write(&tmp, &stamp_text)
        .and_then(|()| fs::rename(&tmp, &stamp))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", stamp.display()));
    eprintln!("built {} in {:.1?}", venv.display(), started.elapsed());
    python
}

/// Runs `command` with stdout and stderr appended to `log`, giving up after
/// [`INSTALL_TIMEOUT`].
fn run_logged(mut command: Command, log: &File, log_path: &Path) -> io::Result<ExitStatus> {
    let mut log_writer = log.try_clone()?;
    let _ = writeln!(log_writer, "$ {command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .spawn()?;
    let (status, timed_out) = wait_or_kill(&mut child, INSTALL_TIMEOUT)?;
    if timed_out {
        panic!(
            "{command:?} did not finish within {INSTALL_TIMEOUT:?} and was killed; see {}",
            log_path.display()
        );
    }
    Ok(status)
}

/// The last lines of a log file, for panic messages.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A cross-process lock held while the venv is built, so that concurrent test
/// binaries do not build into the same directory at once.
///
/// Implemented with `create_new` rather than `File::lock` because the crate's
/// MSRV (1.85) predates `File::lock` (1.89). The file holds the owner's pid; a
/// lock whose owner is gone (checked via /proc where available) or that is
/// older than [`STALE_LOCK_AGE`] is considered left behind by a crash and
/// taken over. The file is removed on drop, including when the build panics.
struct LockFile {
    path: PathBuf,
}

impl LockFile {
    fn acquire(path: PathBuf) -> LockFile {
        let deadline = Instant::now() + LOCK_TIMEOUT;
        let mut announced = false;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let _ = writeln!(file, "{}", std::process::id());
                    return LockFile { path };
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if Self::is_stale(&path) {
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    if !announced {
                        eprintln!(
                            "waiting for another test process to build the Proton venv \
                             (lock {})",
                            path.display()
                        );
                        announced = true;
                    }
                    if Instant::now() >= deadline {
                        panic!(
                            "timed out after {LOCK_TIMEOUT:?} waiting for lock {} (held by \
                             pid {}); delete it if no other test run is building the venv",
                            path.display(),
                            fs::read_to_string(&path).unwrap_or_default().trim()
                        );
                    }
                    thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("cannot create lock file {}: {e}", path.display()),
            }
        }
    }

    fn is_stale(path: &Path) -> bool {
        let Ok(contents) = fs::read_to_string(path) else {
            return false; // Vanished or unreadable: just retry.
        };
        // An empty file is an owner between creating it and writing its pid;
        // only the age check applies to it.
        if let Ok(pid) = contents.trim().parse::<u32>() {
            let proc_dir = Path::new("/proc");
            if proc_dir.join("self").exists() && !proc_dir.join(pid.to_string()).exists() {
                return true;
            }
        }
        fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age > STALE_LOCK_AGE)
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
