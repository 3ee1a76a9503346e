//! The data directory's lock: one process at a time writes (or repairs) a journal.
//!
//! `<data_dir>/LOCK` is locked with `flock` (exclusive, non-blocking) for as long as the
//! holder runs, and holds its pid, so that whoever is refused can say who holds it. The lock,
//! not the file, is what counts: a LOCK left by a process that died is simply taken over
//! (the kernel dropped its lock with it), and its stale pid is overwritten.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The name of the lock file in a data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("sluice is running (pid {}) on the data directory {}: it holds {}", pid.as_deref().unwrap_or("unknown"), dir.display(), dir.join(LOCK_FILE).display())]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// The pid written in LOCK by the holder, if it could be read.
        pid: Option<String>,
    },
    /// A file-system call failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The lock file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

/// The lock, held until dropped (closing the file releases it).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (which must exist) and writes this process's pid into it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io_err = |op: &'static str| {
            let path = path.clone();
            move |source| LockError::Io { op, path, source }
        };
        // Not truncated on open: the holder's pid must stay readable by whoever is refused.
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .map(|_| text.trim().to_owned())
                    .filter(|p| !p.is_empty() && p.len() <= 20);
                return Err(LockError::Held {
                    dir: data_dir.to_owned(),
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(LockError::Io {
                    op: "lock",
                    path,
                    source,
                })
            }
        }
        file.set_len(0).map_err(io_err("write the pid into"))?;
        file.rewind().map_err(io_err("write the pid into"))?;
        writeln!(file, "{}", std::process::id()).map_err(io_err("write the pid into"))?;
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_with_the_holders_pid_and_gets_it_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        let refused = DataDirLock::acquire(dir.path()).unwrap_err();
        let message = refused.to_string();
        assert!(
            message.contains(&format!("sluice is running (pid {})", std::process::id())),
            "{message}"
        );
        drop(held);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
