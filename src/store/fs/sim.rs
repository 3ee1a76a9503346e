//! [`SimFs`]: an in-memory file system that can lose power.
//!
//! Modelled on the crash tests of CockroachDB's Pebble (`vfs.MemFS` with strict mode and
//! `CrashClone`): every file keeps the bytes a reader sees now (the page cache) and, apart,
//! the bytes that are durable (as of its last successful `sync_data`) plus the writes pending
//! since. Every directory keeps its entries as of its last `sync_dir`. [`SimFs::crash`]
//! throws away everything pending, as a power loss does at worst; a file created but whose
//! directory was never synced vanishes, a file removed without a directory sync comes back
//! with its durable content. [`SimFs::crash_keeping_some`] keeps a random part of what was
//! pending instead, 512-byte sector by sector (a sector is assumed to be written whole or
//! not at all), as a power loss in the middle of writeback does.
//!
//! Faults: [`SimFs::fail_next`] makes the next write, data sync or directory sync fail. A
//! failed `sync_data` poisons the file (the module doc of [`super`] says why): its pending
//! writes can never become durable, and every later sync or write of it fails, until a crash
//! (a restart) clears it.
//!
//! Not modelled: the durability of directories themselves (they are durable at once),
//! renames, short writes and torn sectors. A removed file stays usable through the handles
//! opened before, as on Unix.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{poisoned_error, Fs, FsFile};

/// The unit a crash keeps or loses when it keeps some of the pending writes.
const SECTOR: u64 = 512;

/// An operation that [`SimFs::fail_next`] can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// The next `write_at` on any file: nothing is written.
    Write,
    /// The next `sync_data` on any file: it fails and poisons the file.
    Sync,
    /// The next `sync_dir`: nothing is made durable.
    SyncDir,
}

/// The in-memory file system. Clones share the same files, so a test keeps one to crash the
/// machine under the store holding another.
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SimFs")
            .field("files", &state.names.keys().collect::<Vec<_>>())
            .field("crashes", &state.epoch)
            .finish()
    }
}

#[derive(Default)]
struct State {
    /// Bumped by every crash: handles opened before it are dead.
    epoch: u64,
    next_ino: u64,
    inodes: BTreeMap<u64, Inode>,
    /// The namespace as seen now.
    names: BTreeMap<PathBuf, u64>,
    /// The namespace a crash would leave.
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    faults: HashMap<FaultOp, io::ErrorKind>,
    syncs: u64,
    /// What `available_space` answers (None: plenty, or what the disk has left).
    available: Option<u64>,
    /// The size of the simulated disk (None: unbounded): files cannot grow past it.
    disk: Option<u64>,
    /// Bytes of the disk used by others (another process filling it).
    outside: u64,
}

#[derive(Default)]
struct Inode {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Changes made to `data` since the last sync, in order.
    pending: Vec<Pending>,
    /// The error of a failed sync: sticky.
    poisoned: Option<(io::ErrorKind, String)>,
    /// Open handles.
    handles: usize,
}

enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl Pending {
    fn apply(&self, to: &mut Vec<u8>) {
        match self {
            Pending::Write { offset, data } => write_into(to, *offset, data),
            Pending::SetLen(len) => to.resize(*len as usize, 0),
        }
    }
}

fn write_into(to: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if to.len() < end {
        to.resize(end, 0);
    }
    to[start..end].copy_from_slice(data);
}

/// splitmix64: enough randomness for choosing what a crash keeps, and reproducible by seed.
struct Rng(u64);

impl Rng {
    fn coin(&mut self) -> bool {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) & 1 == 1
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

fn injected(kind: io::ErrorKind, op: FaultOp) -> io::Error {
    io::Error::new(kind, format!("simulated failure of {op:?}"))
}

impl State {
    fn take_fault(&mut self, op: FaultOp) -> Option<io::ErrorKind> {
        self.faults.remove(&op)
    }

    /// Drops an inode nothing refers to any more.
    fn gc(&mut self, ino: u64) {
        let referenced = self.inodes.get(&ino).is_some_and(|i| i.handles > 0)
            || self.names.values().any(|&i| i == ino)
            || self.durable_names.values().any(|&i| i == ino);
        if !referenced {
            self.inodes.remove(&ino);
        }
    }

    /// Bytes the disk has left, besides the inode `extra` (taken out of the map) of `extra_len`.
    fn disk_left(&self, extra_len: u64) -> Option<u64> {
        let disk = self.disk?;
        let used: u64 = self.inodes.values().map(|i| i.data.len() as u64).sum();
        Some(disk.saturating_sub(used + extra_len + self.outside))
    }

    /// Fails with "no space left" when growing a file of `len` bytes to `to` does not fit.
    fn check_growth(&self, len: u64, to: u64) -> io::Result<()> {
        match self.disk_left(len) {
            Some(left) if to > len && to - len > left => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (simulated)",
            )),
            _ => Ok(()),
        }
    }

    fn crash(&mut self) {
        self.epoch += 1;
        self.faults.clear();
        self.names = self.durable_names.clone();
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        self.inodes.retain(|ino, _| live.contains(ino));
        for inode in self.inodes.values_mut() {
            inode.data = inode.durable.clone();
            inode.pending.clear();
            inode.poisoned = None;
            inode.handles = 0;
        }
    }
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Power loss: every write not synced and every directory change not synced is lost.
    /// Open handles stop working (the process died with the machine).
    pub fn crash(&self) {
        self.lock().crash();
    }

    /// Power loss in the middle of writeback: each 512-byte sector of each pending write, and
    /// each pending change of length or of a directory entry, independently survives or not,
    /// as chosen by a generator seeded with `seed`; then as [`SimFs::crash`].
    pub fn crash_keeping_some(&self, seed: u64) {
        let mut rng = Rng(seed);
        let mut state = self.lock();
        for inode in state.inodes.values_mut() {
            for op in std::mem::take(&mut inode.pending) {
                match op {
                    Pending::Write { offset, data } => {
                        let mut at = 0usize;
                        while at < data.len() {
                            let pos = offset + at as u64;
                            let piece = ((SECTOR - pos % SECTOR) as usize).min(data.len() - at);
                            if rng.coin() {
                                write_into(&mut inode.durable, pos, &data[at..at + piece]);
                            }
                            at += piece;
                        }
                    }
                    op @ Pending::SetLen(_) => {
                        if rng.coin() {
                            op.apply(&mut inode.durable);
                        }
                    }
                }
            }
        }
        let paths: BTreeSet<PathBuf> = state
            .names
            .keys()
            .chain(state.durable_names.keys())
            .cloned()
            .collect();
        for path in paths {
            let now = state.names.get(&path).copied();
            if now != state.durable_names.get(&path).copied() && rng.coin() {
                match now {
                    Some(ino) => state.durable_names.insert(path, ino),
                    None => state.durable_names.remove(&path),
                };
            }
        }
        state.crash();
    }

    /// Makes the next `op` on any file fail with an error of `kind` (e.g. `StorageFull` for
    /// a write, `Other` standing for EIO on a sync).
    pub fn fail_next(&self, op: FaultOp, kind: io::ErrorKind) {
        self.lock().faults.insert(op, kind);
    }

    /// What a reader sees in `path` now, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let ino = state.names.get(path)?;
        Some(state.inodes[ino].data.clone())
    }

    /// What `path` would hold after a crash now, if it would exist.
    pub fn durable_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let ino = state.durable_names.get(path)?;
        Some(state.inodes[ino].durable.clone())
    }

    /// Whether `path` exists now.
    pub fn exists(&self, path: &Path) -> bool {
        self.lock().names.contains_key(path)
    }

    /// Makes `available_space` answer `bytes` (None: plenty), as a filling disk would.
    pub fn set_available_space(&self, bytes: Option<u64>) {
        self.lock().available = bytes;
    }

    /// Gives the simulated disk a size (None: unbounded): a write or allocation that would
    /// grow the files past it fails with `StorageFull`, and `available_space` answers what is
    /// left (unless [`SimFs::set_available_space`] says otherwise).
    pub fn set_disk_size(&self, bytes: Option<u64>) {
        self.lock().disk = bytes;
    }

    /// Makes `bytes` of the disk used by someone else (another process filling it; 0 frees
    /// them again).
    pub fn set_used_from_outside(&self, bytes: u64) {
        self.lock().outside = bytes;
    }

    /// Successful `sync_data` calls so far.
    pub fn sync_count(&self) -> u64 {
        self.lock().syncs
    }
}

impl Fs for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        for d in dir.ancestors() {
            state.dirs.insert(d.to_owned());
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut state = self.lock();
        let parent = path.parent().unwrap_or(Path::new(""));
        if !state.dirs.contains(parent) {
            return Err(not_found(parent));
        }
        if state.names.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: file exists", path.display()),
            ));
        }
        state.next_ino += 1;
        let ino = state.next_ino;
        state.inodes.insert(
            ino,
            Inode {
                handles: 1,
                ..Inode::default()
            },
        );
        state.names.insert(path.to_owned(), ino);
        Ok(Box::new(SimFile {
            state: self.state.clone(),
            ino,
            epoch: state.epoch,
            path: path.to_owned(),
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut state = self.lock();
        let ino = *state.names.get(path).ok_or_else(|| not_found(path))?;
        if let Some(inode) = state.inodes.get_mut(&ino) {
            inode.handles += 1;
        }
        Ok(Box::new(SimFile {
            state: self.state.clone(),
            ino,
            epoch: state.epoch,
            path: path.to_owned(),
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.contents(path).ok_or_else(|| not_found(path))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let ino = state.names.remove(path).ok_or_else(|| not_found(path))?;
        state.gc(ino);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn available_space(&self, _dir: &Path) -> io::Result<u64> {
        let state = self.lock();
        Ok(state
            .available
            .or_else(|| state.disk_left(0))
            .unwrap_or(u64::MAX))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if let Some(kind) = state.take_fault(FaultOp::SyncDir) {
            return Err(injected(kind, FaultOp::SyncDir));
        }
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        let dropped: Vec<u64> = state
            .durable_names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(_, &i)| i)
            .collect();
        state.durable_names.retain(|p, _| !in_dir(p));
        let now: Vec<(PathBuf, u64)> = state
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        state.durable_names.extend(now);
        for ino in dropped {
            state.gc(ino);
        }
        Ok(())
    }
}

/// A handle of [`SimFs`].
struct SimFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    epoch: u64,
    path: PathBuf,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile").field("path", &self.path).finish()
    }
}

impl SimFile {
    /// Runs `f` on the inode, unless the machine crashed since the handle was opened.
    fn with<T>(&self, f: impl FnOnce(&mut Inode, &mut State) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.epoch != self.epoch {
            return Err(io::Error::other(format!(
                "{}: stale handle (the simulated machine crashed since it was opened)",
                self.path.display()
            )));
        }
        // Taken out and put back so that `f` can also reach the rest of the state.
        let mut inode = state
            .inodes
            .remove(&self.ino)
            .ok_or_else(|| not_found(&self.path))?;
        let result = f(&mut inode, &mut state);
        state.inodes.insert(self.ino, inode);
        result
    }

    fn check_poisoned(&self, inode: &Inode) -> io::Result<()> {
        match &inode.poisoned {
            Some((kind, first)) => Err(poisoned_error(&self.path, *kind, first)),
            None => Ok(()),
        }
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.epoch == self.epoch {
            if let Some(inode) = state.inodes.get_mut(&self.ino) {
                inode.handles -= 1;
            }
            state.gc(self.ino);
        }
    }
}

impl FsFile for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with(|inode, state| {
            if let Some(kind) = state.take_fault(FaultOp::Write) {
                return Err(injected(kind, FaultOp::Write));
            }
            self.check_poisoned(inode)?;
            let len = inode.data.len() as u64;
            state.check_growth(len, offset + data.len() as u64)?;
            write_into(&mut inode.data, offset, data);
            inode.pending.push(Pending::Write {
                offset,
                data: data.to_vec(),
            });
            Ok(())
        })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with(|inode, _| {
            let start = offset as usize;
            match inode.data.get(start..start + buf.len()) {
                Some(bytes) => {
                    buf.copy_from_slice(bytes);
                    Ok(())
                }
                None => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end",
                )),
            }
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|inode, _| Ok(inode.data.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|inode, _| {
            self.check_poisoned(inode)?;
            let op = Pending::SetLen(len);
            op.apply(&mut inode.data);
            inode.pending.push(op);
            Ok(())
        })
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.with(|inode, state| {
            self.check_poisoned(inode)?;
            let current = inode.data.len() as u64;
            if len <= current {
                return Ok(());
            }
            state.check_growth(current, len)?;
            let op = Pending::SetLen(len);
            op.apply(&mut inode.data);
            inode.pending.push(op);
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|inode, state| {
            self.check_poisoned(inode)?;
            if let Some(kind) = state.take_fault(FaultOp::Sync) {
                // As Linux does: the dirty pages are dropped from writeback (they stay
                // readable in the cache) and the file remembers the error.
                inode.pending.clear();
                let err = injected(kind, FaultOp::Sync);
                inode.poisoned = Some((kind, err.to_string()));
                return Err(err);
            }
            for op in inode.pending.drain(..) {
                op.apply(&mut inode.durable);
            }
            state.syncs += 1;
            Ok(())
        })
    }
}
