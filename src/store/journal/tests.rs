//! The group-commit writer under a file system that can lose power.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::store::fs::{FaultOp, SimFs};
use crate::store::recovery::recover;
use crate::store::segment::MIN_SEGMENT_SIZE;

const SIZE: u64 = 16 * MIN_SEGMENT_SIZE;
const WAIT: Duration = Duration::from_secs(10);

fn setup() -> (SimFs, PathBuf) {
    let fs = SimFs::new();
    let dir = PathBuf::from("/data/journal");
    fs.create_dir_all(&dir).unwrap();
    (fs, dir)
}

fn open(fs: &SimFs, dir: &Path, mode: SyncMode) -> Journal {
    Journal::open(Arc::new(fs.clone()), dir, SIZE, None, mode).unwrap()
}

fn record(n: u32) -> Vec<(RecordKind, Bytes)> {
    vec![(RecordKind::Enqueue, Bytes::from(n.to_le_bytes().to_vec()))]
}

/// Appends records 0..n, one request each; returns which completed Ok.
fn append_all(journal: &Journal, n: u32) -> Vec<u32> {
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let tx = tx.clone();
        journal.append(record(i), Box::new(move |r| tx.send((i, r)).unwrap()));
    }
    let mut acked: Vec<u32> = (0..n)
        .filter_map(|_| rx.recv_timeout(WAIT).ok())
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    acked.sort_unstable();
    acked
}

/// The record numbers on disk after a power loss.
fn after_power_loss(fs: &SimFs, dir: &Path) -> Vec<u32> {
    fs.crash();
    let recovered = recover(fs, dir).unwrap();
    recovered
        .records
        .iter()
        .map(|r| u32::from_le_bytes(r.payload[..4].try_into().unwrap()))
        .collect()
}

#[test]
fn what_the_journal_acknowledged_survives_a_power_loss() {
    for mode in [SyncMode::Batch, SyncMode::Always] {
        let (fs, dir) = setup();
        let journal = open(&fs, &dir, mode);
        let acked = append_all(&journal, 500);
        assert_eq!(acked.len(), 500, "{mode:?}");
        // Power goes with the writer still holding the journal open.
        let on_disk = after_power_loss(&fs, &dir);
        assert_eq!(
            on_disk, acked,
            "{mode:?}: every acknowledged record, in order"
        );
        drop(journal);
    }
}

/// The check above is not vacuous: a journal that acknowledges before fsync (sync = "never")
/// loses acknowledged records when the power goes.
#[test]
fn acknowledging_before_fsync_loses_records_in_a_power_loss() {
    let (fs, dir) = setup();
    let journal = open(&fs, &dir, SyncMode::Never);
    let acked = append_all(&journal, 100);
    assert_eq!(acked.len(), 100);
    let on_disk = after_power_loss(&fs, &dir);
    assert!(
        on_disk.len() < acked.len(),
        "sync = never kept {} of {} acknowledged records",
        on_disk.len(),
        acked.len()
    );
}

#[test]
fn requests_that_queue_up_during_a_sync_share_the_next_one() {
    let (fs, dir) = setup();
    let journal = open(&fs, &dir, SyncMode::Batch);
    // Hold the writer inside the first request's completion while 100 more queue up.
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (first_tx, first_rx) = mpsc::channel();
    journal.append(
        record(0),
        Box::new(move |r| {
            first_tx.send(r).unwrap();
            let _ = release_rx.recv_timeout(WAIT);
        }),
    );
    assert_eq!(first_rx.recv_timeout(WAIT).unwrap(), Ok(()));
    let syncs_before = fs.sync_count();
    let (tx, rx) = mpsc::channel();
    for i in 1..=100 {
        let tx = tx.clone();
        journal.append(record(i), Box::new(move |r| tx.send(r).unwrap()));
    }
    release_tx.send(()).unwrap();
    for _ in 1..=100 {
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), Ok(()));
    }
    assert_eq!(
        fs.sync_count() - syncs_before,
        1,
        "one fdatasync for the 100"
    );
    let stats = journal.stats();
    assert_eq!(stats.batches.load(Relaxed), 2);
    assert_eq!(stats.requests.load(Relaxed), 101);
    let synced: u64 = stats.sync_us.iter().map(|b| b.load(Relaxed)).sum();
    assert_eq!(synced, 2);
}

#[test]
fn a_failed_fsync_fences_the_journal_and_is_never_retried() {
    let (fs, dir) = setup();
    let journal = open(&fs, &dir, SyncMode::Batch);
    assert_eq!(append_all(&journal, 3), [0, 1, 2]);
    fs.fail_next(FaultOp::Sync, std::io::ErrorKind::Other);
    let (tx, rx) = mpsc::channel();
    journal.append(record(3), Box::new(move |r| tx.send(r).unwrap()));
    let failed = rx.recv_timeout(WAIT).unwrap();
    assert!(failed.is_err(), "{failed:?}");
    assert!(journal.is_fenced());
    let syncs = fs.sync_count();
    assert!(
        append_all(&journal, 5).is_empty(),
        "nothing is acknowledged once fenced"
    );
    assert_eq!(fs.sync_count(), syncs, "no fsync after the failed one");
    // What was acknowledged before the failure is still there after a power loss.
    let on_disk = after_power_loss(&fs, &dir);
    assert_eq!(&on_disk[..3], &[0, 1, 2]);
}

#[test]
fn records_roll_over_segments_and_come_back_in_order() {
    let (fs, dir) = setup();
    let journal = open(&fs, &dir, SyncMode::Batch);
    let (tx, rx) = mpsc::channel();
    for i in 0..200u32 {
        let tx = tx.clone();
        let big = Bytes::from(vec![i as u8; 3_000]);
        let mut records = record(i);
        records.push((RecordKind::Settle, big));
        journal.append(records, Box::new(move |r| tx.send(r).unwrap()));
    }
    for _ in 0..200 {
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), Ok(()));
    }
    journal.close();
    let recovered = recover(&fs, &dir).unwrap();
    assert!(recovered.summary.segments.len() > 1, "rolled over");
    let firsts: Vec<u32> = recovered
        .records
        .iter()
        .filter(|r| r.kind == RecordKind::Enqueue)
        .map(|r| u32::from_le_bytes(r.payload[..4].try_into().unwrap()))
        .collect();
    assert_eq!(firsts, (0..200).collect::<Vec<_>>());
}
