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
use crate::store::Store;

const SIZE: u64 = 16 * MIN_SEGMENT_SIZE;
const WAIT: Duration = Duration::from_secs(10);

fn setup() -> (SimFs, PathBuf) {
    let fs = SimFs::new();
    let dir = PathBuf::from("/data/journal");
    fs.create_dir_all(&dir).unwrap();
    (fs, dir)
}

fn options(mode: SyncMode) -> JournalOptions {
    JournalOptions {
        sync: mode,
        segment_size: SIZE,
        min_free_bytes: 0,
    }
}

fn open(fs: &SimFs, dir: &Path, mode: SyncMode) -> Journal {
    Journal::open(Arc::new(fs.clone()), dir, &[], None, options(mode)).unwrap()
}

fn record(n: u32) -> Bytes {
    Bytes::from(n.to_le_bytes().to_vec())
}

/// Appends record `n` as a live enqueue, to be told through `done`.
fn append(journal: &Journal, n: u32, done: Done) -> Result<SegmentId, StoreError> {
    journal.append(RecordKind::Enqueue, &[&record(n)], true, Some(done))
}

/// Appends records 0..n, one request each; returns which completed Ok.
fn append_all(journal: &Journal, n: u32) -> Vec<u32> {
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let tx = tx.clone();
        let told = tx.clone();
        if let Err(e) = append(journal, i, Box::new(move |r| told.send((i, r)).unwrap())) {
            tx.send((i, Err(crate::store::WriteFailed::failed(&e))))
                .unwrap();
        }
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
    append(
        &journal,
        0,
        Box::new(move |r| {
            first_tx.send(r).unwrap();
            let _ = release_rx.recv_timeout(WAIT);
        }),
    )
    .unwrap();
    assert_eq!(first_rx.recv_timeout(WAIT).unwrap(), Ok(()));
    let syncs_before = fs.sync_count();
    let (tx, rx) = mpsc::channel();
    for i in 1..=100 {
        let tx = tx.clone();
        append(&journal, i, Box::new(move |r| tx.send(r).unwrap())).unwrap();
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
    append(&journal, 3, Box::new(move |r| tx.send(r).unwrap())).unwrap();
    let failed = rx.recv_timeout(WAIT).unwrap();
    assert!(failed.is_err(), "{failed:?}");
    assert!(journal.fenced().is_some());
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
        journal
            .append(RecordKind::Enqueue, &[&record(i)], true, None)
            .unwrap();
        journal
            .append(
                RecordKind::Settle,
                &[&big[..1_000], &big[1_000..]],
                false,
                Some(Box::new(move |r| tx.send(r).unwrap())),
            )
            .unwrap();
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

#[test]
fn segments_are_deleted_oldest_first_once_nothing_in_them_is_live() {
    let (fs, dir) = setup();
    let journal = open(&fs, &dir, SyncMode::Batch);
    let big = vec![7u8; 20_000];
    // Ten live records of 20 kB each: about three per 64 kB segment.
    let segments: Vec<u64> = (0..10)
        .map(|_| {
            journal
                .append(RecordKind::Enqueue, &[&big], true, None)
                .unwrap()
                .0
        })
        .collect();
    assert!(segments.last() > segments.first(), "{segments:?}");
    let sync = |journal: &Journal| {
        let (tx, rx) = mpsc::channel();
        append(journal, 0, Box::new(move |r| tx.send(r).unwrap())).unwrap();
        rx.recv_timeout(WAIT).unwrap().unwrap();
    };
    // Releasing the second segment's records deletes nothing: the first still holds live ones.
    for &s in segments.iter().filter(|&&s| s == segments[0] + 1) {
        journal.release(SegmentId(s));
    }
    sync(&journal);
    assert!(fs.exists(&crate::store::segment::segment_path(&dir, segments[0])));
    assert!(fs.exists(&crate::store::segment::segment_path(&dir, segments[0] + 1)));
    // Releasing the first frees both.
    for &s in segments.iter().filter(|&&s| s == segments[0]) {
        journal.release(SegmentId(s));
    }
    sync(&journal);
    // The writer deletes after completing the batch.
    let deleted = |s: u64| !fs.exists(&crate::store::segment::segment_path(&dir, s));
    let started = std::time::Instant::now();
    while !(deleted(segments[0]) && deleted(segments[0] + 1)) {
        assert!(started.elapsed() < WAIT, "dead segments are deleted");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(journal.stats().segments_deleted.load(Relaxed), 2);
    // The rest comes back after a restart.
    journal.close();
    let recovered = recover(&fs, &dir).unwrap();
    let live_left = segments.iter().filter(|&&s| s > segments[0] + 1).count();
    let enqueues = recovered
        .records
        .iter()
        .filter(|r| r.payload.len() == big.len())
        .count();
    assert_eq!(enqueues, live_left);
}

#[test]
fn a_mostly_dead_old_segment_is_offered_for_compaction() {
    let (fs, dir) = setup();
    let journal = open(&fs, &dir, SyncMode::Batch);
    let small = vec![1u8; 1_000];
    let mut first = Vec::new();
    for _ in 0..400 {
        let s = journal
            .append(RecordKind::Enqueue, &[&small], true, None)
            .unwrap();
        if s == SegmentId(1) {
            first.push(s);
        }
    }
    let (tx, rx) = mpsc::channel();
    append(&journal, 0, Box::new(move |r| tx.send(r).unwrap())).unwrap();
    rx.recv_timeout(WAIT).unwrap().unwrap();
    assert_eq!(journal.compaction_candidate(), None, "all live");
    // All but one of segment 1's records die.
    for _ in 1..first.len() {
        journal.release(SegmentId(1));
    }
    assert_eq!(journal.compaction_candidate(), Some(SegmentId(1)));
}

#[test]
fn below_the_free_space_floor_only_records_that_free_space_start_a_segment() {
    let (fs, dir) = setup();
    let journal = Journal::open(
        Arc::new(fs.clone()),
        &dir,
        &[],
        None,
        JournalOptions {
            min_free_bytes: 1 << 20,
            ..options(SyncMode::Batch)
        },
    )
    .unwrap();
    fs.set_available_space(Some(1 << 20));
    let big = vec![0u8; 20_000];
    let waiting = || -> Option<Done> { Some(Box::new(|_| ())) };
    let refused = (0..10)
        .map(|_| journal.append(RecordKind::Enqueue, &[&big], true, waiting()))
        .find_map(Result::err)
        .expect("a new segment is refused");
    assert!(matches!(refused, StoreError::Full { .. }), "{refused}");
    assert!(refused.to_string().contains("min_free_bytes"), "{refused}");
    assert!(journal.full(), "the store says it is full");
    assert_eq!(
        journal.fenced(),
        None,
        "a full disk does not fence the store"
    );
    // Settles and compaction copies free space: they may use the headroom below the floor.
    for _ in 0..10 {
        journal
            .append(RecordKind::Settle, &[&big], false, None)
            .expect("a lazy record is never refused for the floor");
    }
    // Once space is back, the writer notices within a tick and appends go on.
    fs.set_available_space(None);
    let deadline = std::time::Instant::now() + WAIT;
    while journal.full() {
        assert!(std::time::Instant::now() < deadline, "still full");
        std::thread::sleep(Duration::from_millis(10));
    }
    journal
        .append(RecordKind::Enqueue, &[&big], true, waiting())
        .unwrap();
}

#[test]
fn a_full_disk_refuses_the_waiting_records_keeps_the_rest_and_writes_again_once_freed() {
    let (fs, dir) = setup();
    fs.set_disk_size(Some(4 << 20));
    let journal = open(&fs, &dir, SyncMode::Batch);
    // Someone else takes the disk: the open segment's reserved blocks are all that is left.
    fs.set_used_from_outside(4 << 20);
    let payload = vec![7u8; 1000];
    let per_segment = (SIZE - SEGMENT_HEADER_LEN) / record::encoded_len(1000) as u64;
    let (tx, rx) = mpsc::channel();
    let n = per_segment + 5;
    for i in 0..n {
        let tx = tx.clone();
        let done: Done = Box::new(move |r| tx.send((i, r)).unwrap());
        if let Err(e) = journal.append(RecordKind::Enqueue, &[&payload], true, Some(done)) {
            assert!(matches!(e, StoreError::Full { .. }), "{e}");
        }
        // Lazy records (a settle) are kept and written once there is room.
        journal
            .append(RecordKind::Settle, &[&i.to_le_bytes()], false, None)
            .unwrap();
    }
    drop(tx);
    let told: Vec<(u64, Result<(), crate::store::WriteFailed>)> = rx.iter().collect();
    assert!(
        told.iter()
            .all(|(_, r)| r.as_ref().map_or_else(|e| e.full, |_| true)),
        "a refusal for lack of space says so (resource-limit-exceeded, not a failure): {told:?}"
    );
    let accepted: Vec<u64> = told
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|&(i, _)| i)
        .collect();
    assert!(
        told.iter().any(|(_, r)| r.is_err()),
        "some were refused: {told:?}"
    );
    assert!(journal.full());
    assert_eq!(journal.fenced(), None, "a full disk does not fence");

    fs.set_used_from_outside(0);
    let deadline = std::time::Instant::now() + WAIT;
    while journal.full() {
        assert!(std::time::Instant::now() < deadline, "still full");
        std::thread::sleep(Duration::from_millis(10));
    }
    journal.close();
    // A power cut now: the refused records never come back, every settle does.
    fs.crash();
    let recovered = recover(&fs, &dir).unwrap();
    let enqueued = recovered
        .records
        .iter()
        .filter(|r| r.kind == RecordKind::Enqueue)
        .count();
    let settles = recovered
        .records
        .iter()
        .filter(|r| r.kind == RecordKind::Settle)
        .count() as u64;
    assert_eq!(enqueued, accepted.len(), "accepted: {accepted:?}");
    assert_eq!(settles, n);
}

/// Issue 12 §5: a record whose producer was told `rejected` after a failed fsync does not come
/// back at the next start, even though the kernel kept it (no power loss: the process
/// restarts and reads back what the page cache holds).
#[test]
fn records_rejected_after_a_failed_fsync_do_not_come_back_after_a_restart() {
    let (fs, dir) = setup();
    let journal = open(&fs, &dir, SyncMode::Batch);
    assert_eq!(append_all(&journal, 3), [0, 1, 2]);
    fs.fail_next(FaultOp::Sync, std::io::ErrorKind::Other);
    let (tx, rx) = mpsc::channel();
    append(&journal, 3, Box::new(move |r| tx.send(r).unwrap())).unwrap();
    assert!(rx.recv_timeout(WAIT).unwrap().is_err(), "rejected");
    assert!(journal.fenced().is_some());
    drop(journal);
    let marker = crate::store::manifest::fenced_path(&dir);
    assert!(fs.exists(&marker), "the fence was recorded");
    // Without the marker, what the failed batch wrote is still there to be read back.
    let segment = crate::store::segment::segment_path(&dir, 1);
    let seen = fs.contents(&segment).unwrap();
    let needle = record(3);
    assert!(
        seen.windows(4).any(|w| w == &needle[..]),
        "the rejected record is in the page cache"
    );
    // The restart: a new process sees what the page cache holds (and no poisoned handle).
    let restarted = SimFs::new();
    restarted.create_dir_all(&dir).unwrap();
    for name in fs.list(&dir).unwrap() {
        let path = dir.join(&name);
        let f = restarted.create(&path).unwrap();
        f.write_at(0, &fs.contents(&path).unwrap()).unwrap();
        f.sync_data().unwrap();
    }
    restarted.sync_dir(&dir).unwrap();
    let fs = restarted;
    assert!(fs.exists(&marker));
    let recovered = recover(&fs, &dir).unwrap();
    let got: Vec<u32> = recovered
        .records
        .iter()
        .map(|r| u32::from_le_bytes(r.payload[..4].try_into().unwrap()))
        .collect();
    assert_eq!(got, [0, 1, 2], "the rejected record came back");
    assert!(!fs.exists(&marker), "the marker is removed once applied");
    // The journal goes on from there.
    let journal = Journal::open(
        Arc::new(fs.clone()),
        &dir,
        &recovered.summary.segments,
        recovered.summary.tail,
        options(SyncMode::Batch),
    )
    .unwrap();
    assert_eq!(append_all(&journal, 2), [0, 1]);
    journal.close();
    assert_eq!(recover(&fs, &dir).unwrap().records.len(), 5);
}

/// Issue 12 §3: no batch holds more than [`MAX_BATCH_BYTES`] of records, so damage in the
/// last batch of an unclean shutdown (which reads as a torn tail) can drop at most that.
#[test]
fn a_batch_is_bounded_in_bytes() {
    let (fs, dir) = setup();
    let journal = Journal::open(
        Arc::new(fs.clone()),
        &dir,
        &[],
        None,
        JournalOptions {
            segment_size: 64 << 20,
            ..options(SyncMode::Batch)
        },
    )
    .unwrap();
    let big = vec![7u8; 100_000];
    let syncs = fs.sync_count();
    for _ in 0..250 {
        journal
            .append(RecordKind::Enqueue, &[&big], true, None)
            .unwrap();
    }
    let (tx, rx) = mpsc::channel();
    append(&journal, 0, Box::new(move |r| tx.send(r).unwrap())).unwrap();
    rx.recv_timeout(WAIT).unwrap().unwrap();
    journal.close();
    assert!(
        fs.sync_count() - syncs >= 3,
        "25 MB in batches of at most 8 MiB"
    );
    // The batch marks are never more than the bound apart.
    let data = fs
        .contents(&crate::store::segment::segment_path(&dir, 1))
        .unwrap();
    let mut off = crate::store::segment::SEGMENT_HEADER_LEN as usize;
    let mut marks = Vec::new();
    loop {
        match record::decode(&data[off..]) {
            record::Decoded::Record {
                len_on_disk,
                batch_start,
                ..
            } => {
                if batch_start {
                    marks.push(off);
                }
                off += len_on_disk;
            }
            record::Decoded::Checkpoint { len_on_disk, .. } => {
                marks.push(off);
                off += len_on_disk;
            }
            _ => break,
        }
    }
    marks.push(off);
    assert!(
        marks.windows(2).all(|w| (w[1] - w[0]) as u64 <= 8 << 20),
        "{marks:?}"
    );
    assert!(marks.len() >= 4, "{marks:?}");
}
