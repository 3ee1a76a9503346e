//! [`OverlayFs`]: a file system that reads through to another and keeps every change in
//! memory, for `sluice repair`'s dry run. The repair runs exactly as it would on the disk and
//! reports what it would do, and the disk is never written.
//!
//! A file is copied into memory the first time it is changed (written, cut, extended), not
//! when it is opened, so a dry run over a large journal holds only the segments the repair
//! would touch.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Fs, FsFile};

/// Changes over a base file system, held in memory.
pub struct OverlayFs {
    base: Arc<dyn Fs>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Files opened or created through the overlay, by path: every handle of one path shares
    /// its entry, so handles see each other's writes.
    files: HashMap<PathBuf, Arc<Mutex<Layer>>>,
    /// Base files removed through the overlay.
    removed: HashSet<PathBuf>,
    /// Directories created through the overlay.
    dirs: HashSet<PathBuf>,
}

/// One file: the base's handle until the first change, then its bytes in memory.
struct Layer {
    base: Option<Box<dyn FsFile>>,
    copy: Option<Vec<u8>>,
}

impl Layer {
    /// The file's bytes in memory, copied from the base the first time.
    fn copy(&mut self) -> io::Result<&mut Vec<u8>> {
        if self.copy.is_none() {
            let mut data = Vec::new();
            if let Some(base) = &self.base {
                data.resize(base.len()? as usize, 0);
                base.read_at(0, &mut data)?;
            }
            self.copy = Some(data);
        }
        Ok(self.copy.get_or_insert_with(Vec::new))
    }
}

impl fmt::Debug for OverlayFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverlayFs")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these maps half-updated in a way that matters here.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

impl OverlayFs {
    /// An overlay on `base`, with no changes yet.
    pub fn new(base: Arc<dyn Fs>) -> OverlayFs {
        OverlayFs {
            base,
            state: Arc::default(),
        }
    }

    /// The shared entry of an existing file, opening it on the base the first time.
    fn layer(&self, path: &Path) -> io::Result<Arc<Mutex<Layer>>> {
        let mut state = lock(&self.state);
        if let Some(layer) = state.files.get(path) {
            return Ok(layer.clone());
        }
        if state.removed.contains(path) {
            return Err(not_found(path));
        }
        let layer = Arc::new(Mutex::new(Layer {
            base: Some(self.base.open(path)?),
            copy: None,
        }));
        state.files.insert(path.to_owned(), layer.clone());
        Ok(layer)
    }

    fn exists(&self, path: &Path) -> bool {
        let state = lock(&self.state);
        state.files.contains_key(path)
            || (!state.removed.contains(path) && self.base.open(path).is_ok())
    }
}

impl Fs for OverlayFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        lock(&self.state).dirs.insert(dir.to_owned());
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        if self.exists(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        let layer = Arc::new(Mutex::new(Layer {
            base: None,
            copy: Some(Vec::new()),
        }));
        let mut state = lock(&self.state);
        state.files.insert(path.to_owned(), layer.clone());
        Ok(Box::new(OverlayFile {
            path: path.to_owned(),
            layer,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(OverlayFile {
            path: path.to_owned(),
            layer: self.layer(path)?,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let layer = lock(&self.state).files.get(path).cloned();
        match layer {
            Some(layer) => {
                let mut layer = lock(&layer);
                Ok(layer.copy()?.clone())
            }
            None if lock(&self.state).removed.contains(path) => Err(not_found(path)),
            None => self.base.read(path),
        }
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        if !self.exists(path) {
            return Err(not_found(path));
        }
        let mut state = lock(&self.state);
        state.files.remove(path);
        state.removed.insert(path.to_owned());
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.state);
        let mut names: HashSet<String> = match self.base.list(dir) {
            Ok(names) => names.into_iter().collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound && state.dirs.contains(dir) => {
                HashSet::new()
            }
            Err(e) => return Err(e),
        };
        names.retain(|name| !state.removed.contains(&dir.join(name)));
        for path in state.files.keys() {
            if path.parent() == Some(dir) {
                if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                    names.insert(name.to_owned());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn available_space(&self, dir: &Path) -> io::Result<u64> {
        match self.base.available_space(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(u64::MAX),
            other => other,
        }
    }
}

/// A handle of [`OverlayFs`].
struct OverlayFile {
    path: PathBuf,
    layer: Arc<Mutex<Layer>>,
}

impl fmt::Debug for OverlayFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverlayFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FsFile for OverlayFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut layer = lock(&self.layer);
        let bytes = layer.copy()?;
        let end = offset as usize + data.len();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let layer = lock(&self.layer);
        match (&layer.copy, &layer.base) {
            (Some(bytes), _) => {
                let start = offset as usize;
                let Some(src) = bytes.get(start..start + buf.len()) else {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("read past the end of {}", self.path.display()),
                    ));
                };
                buf.copy_from_slice(src);
                Ok(())
            }
            (None, Some(base)) => base.read_at(offset, buf),
            (None, None) => Err(not_found(&self.path)),
        }
    }

    fn len(&self) -> io::Result<u64> {
        let layer = lock(&self.layer);
        match (&layer.copy, &layer.base) {
            (Some(bytes), _) => Ok(bytes.len() as u64),
            (None, Some(base)) => base.len(),
            (None, None) => Ok(0),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        lock(&self.layer).copy()?.resize(len as usize, 0);
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut layer = lock(&self.layer);
        let bytes = layer.copy()?;
        if bytes.len() < len as usize {
            bytes.resize(len as usize, 0);
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
}
