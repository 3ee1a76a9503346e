//! The data directory at start: locked, its journal replayed into the durable queues, and the
//! journal opened for what comes next.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::config::{QueueRules, StorageConfig};
use crate::store::lock::{DataDirLock, LockError};
use crate::store::{Fs, Journal, RealFs, Store};

use crate::broker::durable::restore::{self, RestoreError};
use crate::broker::router::Router;

/// Why the data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file-system call failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another process holds the data directory.
    #[error("the data directory {} is in use by another sluice (pid {}; it holds {}); give each broker its own data_dir", dir.display(), pid.as_deref().unwrap_or("unknown"), dir.join("LOCK").display())]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The holder's pid, as written in LOCK.
        pid: Option<String>,
    },
    /// The journal could not be replayed.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The journal could not be opened for writing.
    #[error(transparent)]
    Journal(#[from] crate::store::StoreError),
}

/// The open data directory: the journal, and the lock that keeps other brokers out.
#[derive(Debug)]
pub struct Storage {
    journal: Arc<Journal>,
    _lock: Option<DataDirLock>,
}

impl Storage {
    /// Locks `data_dir`, replays its journal, and returns the router with every durable
    /// queue rebuilt.
    pub fn open(
        data_dir: &Path,
        config: &StorageConfig,
        rules: QueueRules,
    ) -> Result<(Storage, Arc<Router>), StorageError> {
        // A relative data_dir (the default is "data") depends on where sluice was started:
        // say which directory it is, and say loudly when it did not exist, since a broker
        // started from the wrong directory otherwise comes up empty without a word.
        let is_new = !data_dir.exists();
        std::fs::create_dir_all(data_dir).map_err(|source| StorageError::Io {
            op: "create the data directory",
            path: data_dir.to_owned(),
            source,
        })?;
        let absolute = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        if is_new {
            tracing::warn!(
                data_dir = %absolute.display(),
                "data directory did not exist and was created now: starting with no durable queues \
                 (if you expected messages, check broker.data_dir or --data-dir and the working directory)"
            );
        } else {
            tracing::info!(data_dir = %absolute.display(), "data directory");
        }
        let lock = DataDirLock::acquire(data_dir).map_err(|e| match e {
            LockError::Held { dir, pid } => StorageError::Locked { dir, pid },
            LockError::Io { op, path, source } => StorageError::Io { op, path, source },
        })?;
        let (mut storage, router) =
            Storage::open_with(Arc::new(RealFs::new()), data_dir, config, rules)?;
        storage._lock = Some(lock);
        Ok((storage, router))
    }

    /// As [`Storage::open`] on the file system `fs`, without the lock (tests run a
    /// simulated file system that can lose power).
    pub fn open_with(
        fs: Arc<dyn Fs>,
        data_dir: &Path,
        config: &StorageConfig,
        rules: QueueRules,
    ) -> Result<(Storage, Arc<Router>), StorageError> {
        let started = Instant::now();
        let dir = data_dir.join("journal");
        fs.create_dir_all(&dir).map_err(|source| StorageError::Io {
            op: "create the journal directory",
            path: dir.clone(),
            source,
        })?;
        let replayed = restore::replay(&*fs, &dir)?;
        let journal = Arc::new(Journal::open(
            fs,
            &dir,
            &replayed.segments,
            replayed.tail,
            config.journal_options(),
        )?);
        let records = replayed.records;
        let store: Arc<dyn Store> = journal.clone();
        let router = Router::with_store(
            rules,
            Some(store),
            replayed.next_queue_no(),
            config.deliver_after_sync,
        );
        let restored = restore::rebuild(replayed, &journal, &router);
        tracing::info!(
            dir = %dir.display(),
            records,
            queues = restored.queues,
            messages = restored.messages,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "journal recovered"
        );
        Ok((
            Storage {
                journal,
                _lock: None,
            },
            router,
        ))
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }
}
