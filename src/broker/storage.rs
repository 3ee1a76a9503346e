//! The data directory at start: locked, its journal replayed into the durable queues, and the
//! journal opened for what comes next.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::config::{QueueRules, StorageConfig};
use crate::store::{Fs, Journal, RealFs, Store};

use super::restore::{self, RestoreError};
use super::router::Router;

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
    #[error("the data directory {} is in use by another sluice (it holds {}); give each broker its own data_dir", dir.display(), dir.join("LOCK").display())]
    Locked {
        /// The data directory.
        dir: PathBuf,
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
    _lock: Option<File>,
}

impl Storage {
    /// Locks `data_dir`, replays its journal, and returns the router with every durable
    /// queue rebuilt.
    pub fn open(
        data_dir: &Path,
        config: &StorageConfig,
        rules: QueueRules,
    ) -> Result<(Storage, Arc<Router>), StorageError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StorageError::Io {
            op: "create the data directory",
            path: data_dir.to_owned(),
            source,
        })?;
        let lock = lock(data_dir)?;
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

/// Takes the data directory's lock file, so that two brokers never write one journal.
fn lock(data_dir: &Path) -> Result<File, StorageError> {
    let path = data_dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StorageError::Io {
            op: "open",
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Locked {
            dir: data_dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StorageError::Io {
            op: "lock",
            path,
            source,
        }),
    }
}
