//! A transaction's commit, written so that a crash applies all of it or none (issue 15): while
//! a [`CommitScope`] is alive on a thread, every change the durable queues journal from that
//! thread is written as a part of the transaction (`TxnPart`), and the scope's end writes the
//! transaction's `TxnCommit`. Recovery applies the parts of a transaction only once it reads
//! its commit record (restore.rs), so a commit cut short by a crash or a power loss leaves no
//! trace. Because the journal writes records in order and syncs a prefix of them, the commit
//! record being on disk means every part is too: the discharge is answered then.
//!
//! A thread-local carries the scope because the changes come from deep inside the queues (an
//! enqueue, a settle, a dead letter it causes), which a commit applies synchronously on its own
//! thread; passing the transaction down every one of those paths would put it in the signature
//! of every queue operation for the sake of one caller.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::store::{Done, RecordKind, SegmentId, Store, StoreError};

use super::events::Event;

thread_local! {
    static COMMITTING: RefCell<Option<Committing>> = const { RefCell::new(None) };
}

#[derive(Debug)]
struct Committing {
    txn: u64,
    /// The store the parts went to (None: nothing was journaled).
    store: Option<Arc<dyn Store>>,
    /// Records the commit made dead, released once the commit record is written: a segment
    /// must not be deleted (losing an enqueue the commit settles) before the commit that
    /// settles it can be on disk.
    released: Vec<(Arc<dyn Store>, SegmentId)>,
}

/// A transaction id unique across restarts: the first is taken from the clock at start, so
/// the parts of a commit cut short before a restart never match a later transaction's commit.
fn next_txn() -> u64 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    NEXT.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        AtomicU64::new(nanos)
    })
    .fetch_add(1, Ordering::Relaxed)
}

/// The commit of one transaction in progress on this thread (see the module's comment).
#[derive(Debug)]
pub struct CommitScope {
    txn: u64,
}

impl CommitScope {
    /// Starts writing a commit: until [`CommitScope::finish`] (or the scope's drop), this
    /// thread's journal changes are parts of it.
    pub fn enter() -> CommitScope {
        let txn = next_txn();
        COMMITTING.with(|c| {
            *c.borrow_mut() = Some(Committing {
                txn,
                store: None,
                released: Vec::new(),
            })
        });
        CommitScope { txn }
    }

    /// Ends the commit: writes its commit record if any part was journaled, `done` running
    /// once it is on disk (the caller answers the discharge then). Returns `done` unused when
    /// nothing was journaled (an all in-memory transaction).
    pub fn finish(self, done: Done) -> Result<Option<Done>, StoreError> {
        let Some(committing) = COMMITTING.with(|c| c.borrow_mut().take()) else {
            return Ok(Some(done));
        };
        let result = match &committing.store {
            None => Ok(Some(done)),
            Some(store) => {
                let mut payload = bytes::BytesMut::with_capacity(8);
                Event::TxnCommit { txn: self.txn }.encode(&mut payload);
                store
                    .append(RecordKind::TxnCommit, &[&payload], false, Some(done))
                    .map(|_| None)
            }
        };
        for (store, segment) in committing.released {
            store.release(segment);
        }
        result
    }
}

impl Drop for CommitScope {
    fn drop(&mut self) {
        // Finished, or abandoned (its parts, lacking a commit record, never apply; what it
        // released is released now, as it would have been).
        if let Some(committing) = COMMITTING.with(|c| c.borrow_mut().take()) {
            for (store, segment) in committing.released {
                store.release(segment);
            }
        }
    }
}

/// Releases a record of `store` in `segment`: after the commit record, if a commit is in
/// progress on this thread.
pub(super) fn release(store: &Arc<dyn Store>, segment: SegmentId) {
    let deferred = COMMITTING.with(|c| match c.borrow_mut().as_mut() {
        Some(committing) => {
            committing.released.push((store.clone(), segment));
            true
        }
        None => false,
    });
    if !deferred {
        store.release(segment);
    }
}

/// Appends a record to `store`, as a part of the commit in progress on this thread if any.
pub(super) fn append(
    store: &Arc<dyn Store>,
    kind: RecordKind,
    parts: &[&[u8]],
    live: bool,
    done: Option<Done>,
) -> Result<SegmentId, StoreError> {
    let txn = COMMITTING.with(|c| {
        c.borrow_mut().as_mut().map(|committing| {
            committing.store.get_or_insert_with(|| store.clone());
            committing.txn
        })
    });
    let Some(txn) = txn else {
        return store.append(kind, parts, live, done);
    };
    let mut prefix = [0u8; 9];
    prefix[..8].copy_from_slice(&txn.to_le_bytes());
    prefix[8] = kind.as_u8();
    let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
    all.push(&prefix);
    all.extend_from_slice(parts);
    store.append(RecordKind::TxnPart, &all, live, done)
}
