//! The file-system calls the journal makes, behind a trait, so that tests can run the same
//! code on `SimFs` — an in-memory file system that forgets, on a simulated power loss,
//! everything that was not synced; built for tests only (the `testing` feature) — the broker
//! on [`RealFs`], and `sluice repair`'s dry run on an [`OverlayFs`] that never writes the disk.
//!
//! The trait keeps each call raw: `create` and `remove` do not sync the directory, `write_at`
//! does not sync the data. The segment layer makes every sync explicit, which is what lets
//! `SimFs` show that a missing one loses data.
//!
//! # Sync errors are sticky
//!
//! When Linux fails to write back dirty pages it reports the error to the next `fsync` and
//! then marks the pages *clean*: the data is gone from the disk's point of view, and a second
//! `fsync` returns success because nothing is dirty any more (PostgreSQL's "fsyncgate",
//! 2018; since 4.13 the error is reported once per open file description, and a descriptor
//! opened after the error never sees it). Retrying would report a write that did not happen.
//! So both implementations here make a failed `sync_data` sticky for the file: every later
//! `sync_data` or `write_at` on it, through any handle of this `Fs`, fails too. The store
//! must fence (stop accepting durable writes) instead of retrying; after a restart the
//! journal is read back and checked as it really is on disk.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod overlay;
#[cfg(any(test, feature = "testing"))]
mod sim;

pub use overlay::OverlayFs;
#[cfg(any(test, feature = "testing"))]
pub use sim::{FaultOp, SimFs};

/// A file system, as the journal uses it.
pub trait Fs: Send + Sync + fmt::Debug {
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Creates a new, empty file, read-write; fails if it exists. The directory entry is
    /// durable only after [`Fs::sync_dir`] of the parent.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;

    /// Opens an existing file, read-write.
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;

    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// Removes a file. The removal is durable only after [`Fs::sync_dir`] of the parent.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// The names of the files in `dir` (not paths), in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Makes the creations and removals of files in `dir` durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Bytes an unprivileged writer may still use on the file system holding `dir`: the
    /// journal refuses to start a segment below its free-space floor.
    fn available_space(&self, dir: &Path) -> io::Result<u64>;
}

/// An open file.
pub trait FsFile: Send + Sync + fmt::Debug {
    /// The path it was opened at.
    fn path(&self) -> &Path;

    /// Writes all of `data` at `offset`, growing the file if needed. Positional writes (not
    /// `O_APPEND`) because segments are preallocated: their end of file is not where the next
    /// record goes.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Fills `buf` from `offset`; fails with `UnexpectedEof` past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Its length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Whether it is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Truncates or extends it (with zeros), without reserving blocks (a sparse extension).
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Extends it to `len` bytes of zeros with the blocks really reserved (`posix_fallocate`,
    /// else zeros written), so that a full disk fails here, at segment creation, rather than
    /// in a later write. Never shrinks it.
    fn allocate(&self, len: u64) -> io::Result<()>;

    /// Makes its data and the metadata needed to read it back (its length) durable:
    /// `fdatasync`. A failure is sticky (see the module doc).
    fn sync_data(&self) -> io::Result<()>;
}

/// The error every call on a file returns after its sync failed.
fn poisoned_error(path: &Path, kind: io::ErrorKind, first: &str) -> io::Error {
    io::Error::new(
        kind,
        format!(
            "an earlier fsync of {} failed ({first}); its unsynced writes may be lost, so it \
             cannot be synced or written again",
            path.display()
        ),
    )
}

/// The real file system (std::fs; Unix, for positional reads and writes).
///
/// Preallocation reserves real blocks ([`FsFile::allocate`]: `posix_fallocate`). A plain
/// `set_len` made a sparse file, and when another process filled the disk a write inside the
/// segment failed with ENOSPC (issue 12); with the blocks reserved, a full disk shows up when
/// a segment is created, which the journal treats as "full", a state it leaves once space is
/// freed. The unwritten rest of a segment still reads as zeros, which marks the end of the
/// data.
#[derive(Debug, Default, Clone)]
pub struct RealFs {
    /// Files whose sync failed, with the error kind and message: shared by every handle.
    poisoned: Arc<Mutex<HashMap<PathBuf, (io::ErrorKind, String)>>>,
}

impl RealFs {
    /// A handle on the real file system.
    pub fn new() -> RealFs {
        RealFs::default()
    }
}

impl Fs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(RealFile {
            file,
            path: path.to_owned(),
            poisoned: self.poisoned.clone(),
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(RealFile {
            file,
            path: path.to_owned(),
            poisoned: self.poisoned.clone(),
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn available_space(&self, dir: &Path) -> io::Result<u64> {
        let stat = rustix::fs::statvfs(dir)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
}

/// A file of [`RealFs`].
#[derive(Debug)]
struct RealFile {
    file: File,
    path: PathBuf,
    poisoned: Arc<Mutex<HashMap<PathBuf, (io::ErrorKind, String)>>>,
}

impl RealFile {
    fn check_poisoned(&self) -> io::Result<()> {
        let poisoned = self.poisoned.lock().unwrap_or_else(|e| e.into_inner());
        match poisoned.get(&self.path) {
            Some((kind, first)) => Err(poisoned_error(&self.path, *kind, first)),
            None => Ok(()),
        }
    }
}

impl FsFile for RealFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_poisoned()?;
        self.file.write_all_at(data, offset)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_poisoned()?;
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.check_poisoned()?;
        let current = self.file.metadata()?.len();
        if len <= current {
            return Ok(());
        }
        match rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            // Not supported by this file system: reserve the blocks by writing the zeros.
            Err(e)
                if e == rustix::io::Errno::OPNOTSUPP
                    || e == rustix::io::Errno::NOSYS
                    || e == rustix::io::Errno::INVAL =>
            {
                let zeros = vec![0u8; 1 << 20];
                let mut at = current;
                while at < len {
                    let n = (len - at).min(zeros.len() as u64) as usize;
                    self.file.write_all_at(&zeros[..n], at)?;
                    at += n as u64;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check_poisoned()?;
        self.file.sync_data().inspect_err(|e| {
            let mut poisoned = self.poisoned.lock().unwrap_or_else(|e| e.into_inner());
            poisoned
                .entry(self.path.clone())
                .or_insert((e.kind(), e.to_string()));
        })
    }
}

#[cfg(test)]
mod tests;
