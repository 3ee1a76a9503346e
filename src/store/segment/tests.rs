//! Tests of segment files and the writer that rolls them.

use super::scan::first_nonzero;
use super::*;
use crate::store::fs::{FaultOp, RealFs, SimFs};
use bytes::Bytes;

const SIZE: u64 = MIN_SEGMENT_SIZE;

pub(crate) fn sim_dir() -> (SimFs, PathBuf) {
    let fs = SimFs::new();
    let dir = PathBuf::from("/data/journal");
    fs.create_dir_all(&dir).unwrap();
    (fs, dir)
}

fn writer(fs: &SimFs, dir: &Path) -> SegmentWriter {
    SegmentWriter::open(Arc::new(fs.clone()), dir, SIZE, None).unwrap()
}

fn payload(n: usize, tag: u8) -> Vec<u8> {
    (0..n).map(|i| tag.wrapping_add(i as u8) | 1).collect()
}

fn records_of(fs: &dyn Fs, dir: &Path, seq: u64) -> Vec<(u64, RecordKind, Vec<u8>)> {
    let (records, end) = read_segment(fs, dir, seq).unwrap();
    assert!(
        matches!(end, ScanEnd::Clean { .. }),
        "segment {seq} ends {end:?}"
    );
    records
        .into_iter()
        .map(|r| (r.offset, r.kind, r.payload.to_vec()))
        .collect()
}

#[test]
fn file_names_are_twenty_digits_and_sort_as_numbers() {
    assert_eq!(segment_file_name(1), "00000000000000000001.seg");
    assert_eq!(segment_file_name(u64::MAX), "18446744073709551615.seg");
    for seq in [0, 1, 9, 10, 12345, u64::MAX] {
        assert_eq!(parse_segment_file_name(&segment_file_name(seq)), Some(seq));
    }
    assert!(segment_file_name(9) < segment_file_name(10));
    for bad in [
        "1.seg",
        "0000000000000000001.seg",
        "00000000000000000001.tmp",
        "0000000000000000000a.seg",
        "+0000000000000000001.seg",
        "99999999999999999999.seg",
        "00000000000000000001.seg.bak",
    ] {
        assert_eq!(parse_segment_file_name(bad), None, "{bad}");
    }
}

#[test]
fn list_segments_sorts_and_ignores_other_files() {
    let (fs, dir) = sim_dir();
    for name in [
        "00000000000000000010.seg",
        "00000000000000000002.seg",
        "notes.txt",
        "1.seg",
    ] {
        fs.create(&dir.join(name)).unwrap();
    }
    assert_eq!(list_segments(&fs, &dir).unwrap(), [2, 10]);
}

#[test]
fn a_new_segment_is_preallocated_with_its_header_and_durable() {
    let (fs, dir) = sim_dir();
    let seg = Segment::create(&fs, &dir, 7, SIZE).unwrap();
    assert_eq!(
        (seg.seq(), seg.write_offset(), seg.capacity()),
        (7, SEGMENT_HEADER_LEN, SIZE)
    );
    fs.crash();
    let data = fs.read(&segment_path(&dir, 7)).unwrap();
    assert_eq!(data.len() as u64, SIZE);
    assert_eq!(&data[..24], &encode_header(7));
    assert!(data[24..].iter().all(|&b| b == 0));
    assert_eq!(
        read_segment(&fs, &dir, 7).unwrap().1,
        ScanEnd::Clean { offset: 24 }
    );
}

#[test]
fn a_failed_creation_leaves_no_segment() {
    let (fs, dir) = sim_dir();
    fs.fail_next(FaultOp::SyncDir, io::ErrorKind::Other);
    assert!(Segment::create(&fs, &dir, 1, SIZE).is_err());
    assert!(list_segments(&fs, &dir).unwrap().is_empty());
    Segment::create(&fs, &dir, 1, SIZE).expect("the number is free again");
}

#[test]
fn records_are_appended_and_read_back_with_their_offsets() {
    let (fs, dir) = sim_dir();
    let mut w = writer(&fs, &dir);
    let a = w.append(RecordKind::QueueDeclare, b"q").unwrap();
    let b = w.append(RecordKind::Enqueue, &payload(100, 3)).unwrap();
    let c = w.append(RecordKind::Settle, b"").unwrap();
    assert_eq!(
        a,
        RecordPos {
            segment: 1,
            offset: 24
        }
    );
    assert_eq!(b.offset, 24 + 10);
    assert_eq!(c.offset, b.offset + 109);
    w.sync().unwrap();
    assert_eq!(
        records_of(&fs, &dir, 1),
        [
            (a.offset, RecordKind::QueueDeclare, b"q".to_vec()),
            (b.offset, RecordKind::Enqueue, payload(100, 3)),
            (c.offset, RecordKind::Settle, vec![]),
        ]
    );
}

#[test]
fn append_writes_nothing_until_flush_and_a_batch_costs_one_sync() {
    let (fs, dir) = sim_dir();
    let mut w = writer(&fs, &dir);
    let syncs = fs.sync_count();
    for i in 0..10 {
        w.append(RecordKind::Enqueue, &payload(50, i)).unwrap();
    }
    assert!(read_segment(&fs, &dir, 1).unwrap().0.is_empty());
    w.flush().unwrap();
    assert_eq!(read_segment(&fs, &dir, 1).unwrap().0.len(), 10);
    w.sync().unwrap();
    w.sync().unwrap();
    assert_eq!(
        fs.sync_count(),
        syncs + 1,
        "one fdatasync for the batch, none when clean"
    );
}

#[test]
fn synced_records_survive_a_crash_and_unsynced_ones_do_not() {
    let (fs, dir) = sim_dir();
    let mut w = writer(&fs, &dir);
    w.append(RecordKind::Enqueue, b"A").unwrap();
    w.sync().unwrap();
    w.append(RecordKind::Enqueue, b"B").unwrap();
    w.flush().unwrap();
    fs.crash();
    let got = records_of(&fs, &dir, 1);
    assert_eq!(got, [(24, RecordKind::Enqueue, b"A".to_vec())]);
}

#[test]
fn the_writer_rolls_to_a_new_segment_when_full() {
    let (fs, dir) = sim_dir();
    let mut w = writer(&fs, &dir);
    let mut written = Vec::new();
    for i in 0..100u8 {
        let pos = w.append(RecordKind::Enqueue, &payload(200, i)).unwrap();
        written.push((pos, payload(200, i)));
    }
    w.sync().unwrap();
    let segs = list_segments(&fs, &dir).unwrap();
    assert_eq!(segs, (1..=segs.len() as u64).collect::<Vec<_>>());
    assert!(segs.len() >= 5, "{segs:?}");
    let mut read = Vec::new();
    for &seq in &segs {
        let data = fs.read(&segment_path(&dir, seq)).unwrap();
        assert_eq!(
            data.len() as u64,
            SIZE,
            "every segment keeps its preallocated size"
        );
        for (offset, _, p) in records_of(&fs, &dir, seq) {
            read.push((
                RecordPos {
                    segment: seq,
                    offset,
                },
                p,
            ));
        }
    }
    assert_eq!(
        read, written,
        "across segments, in order, at the positions append returned"
    );
    assert!(
        written.windows(2).all(|w| w[0].0 < w[1].0),
        "positions increase"
    );
}

#[test]
fn a_full_segment_is_durable_before_the_next_exists() {
    let (fs, dir) = sim_dir();
    let mut w = writer(&fs, &dir);
    while w.current_segment() == 1 {
        w.append(RecordKind::Enqueue, &payload(300, 1)).unwrap();
    }
    // No sync: the roll itself synced segment 1 and created segment 2 durably.
    fs.crash();
    assert!(!records_of(&fs, &dir, 1).is_empty());
    assert_eq!(
        read_segment(&fs, &dir, 2).unwrap(),
        (vec![], ScanEnd::Clean { offset: 24 })
    );
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let (fs, dir) = sim_dir();
    let mut w = writer(&fs, &dir);
    w.append(RecordKind::Enqueue, b"small").unwrap();
    let big = payload(3 * SIZE as usize, 9);
    let pos = w.append(RecordKind::Enqueue, &big).unwrap();
    let after = w.append(RecordKind::Settle, b"next").unwrap();
    w.sync().unwrap();
    assert_eq!(
        pos,
        RecordPos {
            segment: 2,
            offset: 24
        }
    );
    assert_eq!(after.segment, 3);
    assert_eq!(records_of(&fs, &dir, 2), [(24, RecordKind::Enqueue, big)]);
}

#[test]
fn a_zero_filled_tail_ends_cleanly() {
    let (fs, dir) = sim_dir();
    let mut w = writer(&fs, &dir);
    let pos = w.append(RecordKind::Due, b"due").unwrap();
    w.sync().unwrap();
    let (records, end) = read_segment(&fs, &dir, 1).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        end,
        ScanEnd::Clean {
            offset: pos.offset + 12
        }
    );
}

#[test]
fn a_segment_can_be_reopened_to_append_after_its_data() {
    let (fs, dir) = sim_dir();
    let mut w = writer(&fs, &dir);
    w.append(RecordKind::Enqueue, b"one").unwrap();
    let tail = w.next_pos();
    w.sync().unwrap();
    drop(w);
    // As after recovery truncated a torn tail: the file is shorter than its capacity.
    fs.open(&segment_path(&dir, 1))
        .unwrap()
        .set_len(tail.offset)
        .unwrap();
    let mut w = SegmentWriter::open(Arc::new(fs.clone()), &dir, SIZE, Some(tail)).unwrap();
    assert_eq!(w.append(RecordKind::Enqueue, b"two").unwrap(), tail);
    w.sync().unwrap();
    fs.crash();
    let got: Vec<_> = records_of(&fs, &dir, 1).into_iter().map(|r| r.2).collect();
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(
        fs.read(&segment_path(&dir, 1)).unwrap().len() as u64,
        SIZE,
        "preallocated again"
    );
}

#[test]
fn open_refuses_a_write_offset_outside_the_data() {
    let (fs, dir) = sim_dir();
    Segment::create(&fs, &dir, 1, SIZE).unwrap();
    for offset in [0, 23, SIZE + 1] {
        assert!(
            Segment::open(&fs, &dir, 1, offset, SIZE).is_err(),
            "{offset}"
        );
    }
    assert!(
        SegmentWriter::open(Arc::new(fs), &dir, 100, None).is_err(),
        "tiny segments"
    );
}

#[test]
fn deleting_a_segment_is_durable() {
    let (fs, dir) = sim_dir();
    let mut w = writer(&fs, &dir);
    while w.current_segment() < 3 {
        w.append(RecordKind::Enqueue, &payload(500, 2)).unwrap();
    }
    delete_segment(&fs, &dir, 1).unwrap();
    fs.crash();
    assert_eq!(list_segments(&fs, &dir).unwrap(), [2, 3]);
}

#[test]
fn the_writer_is_fenced_after_a_failed_sync() {
    let (fs, dir) = sim_dir();
    let mut w = writer(&fs, &dir);
    w.append(RecordKind::Enqueue, b"A").unwrap();
    w.sync().unwrap();
    w.append(RecordKind::Enqueue, b"B").unwrap();
    fs.fail_next(FaultOp::Sync, io::ErrorKind::Other);
    assert!(matches!(w.sync(), Err(StoreError::Io { op: "sync", .. })));
    assert!(w.fenced().is_some());
    assert!(
        matches!(w.sync(), Err(StoreError::Fenced { .. })),
        "never retried"
    );
    assert!(matches!(
        w.append(RecordKind::Enqueue, b"C"),
        Err(StoreError::Fenced { .. })
    ));
    fs.crash();
    assert_eq!(records_of(&fs, &dir, 1).len(), 1, "B was never durable");
}

#[test]
fn the_writer_is_fenced_after_a_failed_write() {
    let (fs, dir) = sim_dir();
    let mut w = writer(&fs, &dir);
    w.append(RecordKind::Enqueue, b"A").unwrap();
    fs.fail_next(FaultOp::Write, io::ErrorKind::StorageFull);
    let err = w.sync().unwrap_err();
    assert!(err.to_string().contains("cannot write"), "{err}");
    assert!(matches!(w.flush(), Err(StoreError::Fenced { .. })));
}

#[test]
fn a_too_large_payload_is_refused_without_fencing() {
    let (fs, dir) = sim_dir();
    let mut w = writer(&fs, &dir);
    let big = vec![0u8; record::MAX_PAYLOAD_LEN + 1];
    assert!(matches!(
        w.append(RecordKind::Enqueue, &big),
        Err(StoreError::TooLarge(_))
    ));
    assert!(w.fenced().is_none());
    w.append(RecordKind::Enqueue, b"fine").unwrap();
}

#[test]
fn headers_are_checked() {
    let check = |data: Vec<u8>, seq| scan_segment(&Bytes::from(data), seq, |_, _, _| {});
    let good = encode_header(5).to_vec();
    assert_eq!(check(good.clone(), 5), ScanEnd::Clean { offset: 24 });
    let corrupt_at_0 = |end: ScanEnd| matches!(end, ScanEnd::Corrupt { offset: 0, .. });
    assert!(corrupt_at_0(check(good.clone(), 6)), "number mismatch");
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(corrupt_at_0(check(bad, 5)), "magic");
    let mut bad = good.clone();
    bad[8] = 3;
    assert!(corrupt_at_0(check(bad, 5)), "version");
    // A journal of the previous format (version 1) is refused, saying so.
    let mut old = good.clone();
    old[8] = 1;
    match check(old, 5) {
        ScanEnd::Corrupt { offset: 0, reason } => {
            assert!(reason.contains("version 1"), "{reason}");
            assert!(reason.contains("older sluice"), "{reason}");
        }
        other => panic!("a version 1 segment was read: {other:?}"),
    }
    let mut bad = good.clone();
    bad[12] = 1;
    assert!(corrupt_at_0(check(bad, 5)), "flags");
    assert!(corrupt_at_0(check(good[..20].to_vec(), 5)), "short header");
    let mut headless = vec![0u8; 100];
    assert!(matches!(
        check(headless.clone(), 5),
        ScanEnd::Torn { offset: 0, .. }
    ));
    assert!(matches!(check(vec![], 5), ScanEnd::Torn { offset: 0, .. }));
    headless[50] = 1;
    assert!(corrupt_at_0(check(headless, 5)), "no header but data");
}

#[test]
fn real_fs_segments_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = Arc::new(RealFs::new());
    let dir = tmp.path();
    let mut w = SegmentWriter::open(fs.clone(), dir, SIZE, None).unwrap();
    for i in 0..40u8 {
        w.append(RecordKind::Enqueue, &payload(250, i)).unwrap();
    }
    w.sync().unwrap();
    let segs = list_segments(&*fs, dir).unwrap();
    assert!(segs.len() > 1);
    let n: usize = segs.iter().map(|&s| records_of(&*fs, dir, s).len()).sum();
    assert_eq!(n, 40);
    delete_segment(&*fs, dir, 1).unwrap();
    assert_eq!(list_segments(&*fs, dir).unwrap().len(), segs.len() - 1);
}

#[test]
fn zero_scanning_helpers_find_the_edges() {
    let mut data = vec![0u8; 10_000];
    assert_eq!(first_nonzero(&data), None);
    assert_eq!(last_nonzero(&data), None);
    data[5000] = 1;
    data[9000] = 2;
    assert_eq!(first_nonzero(&data), Some(5000));
    assert_eq!(last_nonzero(&data), Some(9000));
    assert_eq!(first_nonzero(&[]), None);
    assert_eq!(last_nonzero(&[3]), Some(0));
}
