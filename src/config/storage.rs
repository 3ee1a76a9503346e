//! `[storage]`: how the journal of durable queues writes (DESIGN.md §5).

use crate::store::{JournalOptions, SyncMode, DEFAULT_SEGMENT_SIZE};

use super::document::{child, Node, Source, Value};
use super::error::ConfigError;

/// The keys of `[storage]`.
pub(super) const STORAGE_KEYS: &[&str] = &[
    "sync",
    "segment_size",
    "min_free_bytes",
    "deliver_after_sync",
];

/// How durable messages are written (`[storage]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// When the journal calls fdatasync.
    pub sync: SyncMode,
    /// Bytes each journal segment file is preallocated to.
    pub segment_size: u64,
    /// Durable messages are refused while the data dir's file system has less free space than
    /// this (plus one segment).
    pub min_free_bytes: u64,
    /// A durable message reaches consumers only once its record is on disk, so none acts on
    /// a message a power loss could erase (at the cost of the fsync's latency per message).
    pub deliver_after_sync: bool,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            sync: SyncMode::Batch,
            segment_size: DEFAULT_SEGMENT_SIZE,
            min_free_bytes: 64 * 1024 * 1024,
            deliver_after_sync: false,
        }
    }
}

impl StorageConfig {
    pub(super) fn read(
        &mut self,
        src: &Source,
        table: &[(String, Node)],
    ) -> Result<(), ConfigError> {
        for (key, node) in table {
            let path = &child("storage", key);
            match key.as_str() {
                "sync" => self.sync = sync_mode(src, node, path)?,
                "segment_size" => {
                    self.segment_size = src.size(node, path)?;
                    if self.segment_size < 4096 {
                        let message = format!(
                            "a segment must hold at least 4096 bytes, found {}",
                            self.segment_size
                        );
                        return Err(src.invalid(node, path, message));
                    }
                }
                "min_free_bytes" => self.min_free_bytes = src.size(node, path)?,
                "deliver_after_sync" => self.deliver_after_sync = src.boolean(node, path)?,
                _ => {} // rejected by `Source::table`
            }
        }
        Ok(())
    }

    /// What the journal is opened with.
    pub fn journal_options(&self) -> JournalOptions {
        JournalOptions {
            sync: self.sync,
            segment_size: self.segment_size,
            min_free_bytes: self.min_free_bytes,
        }
    }
}

fn sync_mode(src: &Source, node: &Node, path: &str) -> Result<SyncMode, ConfigError> {
    match &node.value {
        Value::String(s) if s == "batch" => Ok(SyncMode::Batch),
        Value::String(s) if s == "always" => Ok(SyncMode::Always),
        Value::String(s) if s == "never" => Ok(SyncMode::Never),
        _ => {
            let message = format!(
                r#"expected "batch", "always" or "never" (unsafe), found {}"#,
                node.describe()
            );
            Err(src.invalid(node, path, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::store::SyncMode;

    fn error(text: &str) -> String {
        Config::from_toml(text, "broker.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn storage_settings_are_read_and_checked() {
        let text = "[storage]\nsync = \"always\"\nsegment_size = 1048576\nmin_free_bytes = 0\ndeliver_after_sync = true\n";
        let c = Config::from_toml(text, "broker.toml").unwrap();
        assert!(c.storage.deliver_after_sync);
        assert!(!Config::default().storage.deliver_after_sync);
        assert_eq!(c.storage.sync, SyncMode::Always);
        assert_eq!(c.storage.segment_size, 1 << 20);
        assert_eq!(c.storage.min_free_bytes, 0);
        assert_eq!(
            error("[storage]\nsync = \"sometimes\"\n"),
            "broker.toml:2:8: storage.sync: expected \"batch\", \"always\" or \"never\" (unsafe), found \"sometimes\""
        );
        assert!(error("[storage]\nsegment_size = 100\n")
            .contains("storage.segment_size: a segment must hold at least 4096 bytes"));
    }
}
