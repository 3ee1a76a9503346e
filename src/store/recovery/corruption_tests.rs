//! The corruption table of issue 12 §3, on copies of a journal written by the real writer
//! (checkpoints, manifest and all): every row is either recovered exactly (only the torn,
//! unsynced tail of an unclean shutdown) or refused with the file and offset; never a silent
//! loss. It prints how many cases were tried and detected (RELIABILITY.md).
//!
//! Known limit, counted apart: after an unclean shutdown, the last segment's file cut short in
//! the middle of a record reads as a torn tail and is truncated there with a WARN naming the
//! file and offset, although the checkpoint after it is gone with the cut. (A crash cannot
//! shorten a preallocated segment, so this could be refused; it is not yet, because recovery
//! itself shortens the last segment when it cuts a torn tail and a crash before it is
//! preallocated again could leave a genuine torn record at the end of a short file.)
//!
//! Second known limit, kept out of the table by writing the fixture again: records zeroed
//! at the end of a segment are caught only when the next segment starts inside a batch (its
//! first record would have fitted where the zeros are). When it starts a batch, the writer
//! may legitimately have left room there (after a restart it goes on in the segment recovery
//! left last, even a nearly empty one), so nothing is provable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::*;
use crate::store::fs::SimFs;
use crate::store::journal::{Journal, JournalOptions, SyncMode};
use crate::store::segment::{parse_segment_file_name, MIN_SEGMENT_SIZE};
use crate::store::Store;

/// The files of a journal directory, by name.
type Files = BTreeMap<String, Vec<u8>>;

const DIR: &str = "/data/journal";

fn payload(i: usize) -> Vec<u8> {
    (0..300).map(|j| ((i * 31 + j) % 255) as u8 + 1).collect()
}

/// A journal of 36 records written in three waited-for groups, each followed by the writer
/// going idle (a checkpoint); `clean`: closed, else copied while still open (an unclean
/// shutdown with everything synced).
fn fixture(clean: bool) -> Files {
    // The batches the writer makes depend on timing; a segment that starts a batch is one
    // where a zeroed record at the end of the segment before is not caught (the known limit
    // in the module doc), so such a layout is written again.
    for _ in 0..10 {
        let files = fixture_once(clean);
        let continues_a_batch = |data: &Vec<u8>| {
            matches!(
                crate::store::record::decode(&data[SEGMENT_HEADER_LEN as usize..]),
                crate::store::record::Decoded::Record {
                    batch_start: false,
                    ..
                }
            )
        };
        if files
            .iter()
            .filter(|(n, _)| parse_segment_file_name(n).is_some_and(|s| s > 1))
            .all(|(_, d)| continues_a_batch(d))
        {
            return files;
        }
    }
    panic!("no layout with every segment boundary inside a batch in 10 tries")
}

fn fixture_once(clean: bool) -> Files {
    let fs = SimFs::new();
    let dir = PathBuf::from(DIR);
    fs.create_dir_all(&dir).unwrap();
    let journal = Journal::open(
        Arc::new(fs.clone()),
        &dir,
        &[],
        None,
        JournalOptions {
            sync: SyncMode::Batch,
            segment_size: MIN_SEGMENT_SIZE,
            min_free_bytes: 0,
        },
    )
    .unwrap();
    for group in 0..3 {
        let (tx, rx) = mpsc::channel();
        for i in group * 12..(group + 1) * 12 {
            let tx = tx.clone();
            journal
                .append(
                    RecordKind::Enqueue,
                    &[&payload(i)],
                    true,
                    Some(Box::new(move |r| tx.send(r).unwrap())),
                )
                .unwrap();
        }
        for _ in 0..12 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        }
        // The writer goes idle (a tick is 250 ms) and checkpoints.
        let waited = std::time::Instant::now();
        while !ends_with_checkpoint(&fs, &dir) {
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "no idle checkpoint"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if clean {
        journal.close();
    }
    let files = copy_out(&fs, &dir);
    drop(journal);
    files
}

/// Whether the last record written is a checkpoint.
fn ends_with_checkpoint(fs: &SimFs, dir: &Path) -> bool {
    use crate::store::record::{decode, Decoded};
    let Some(&last) = list_segments(fs, dir).unwrap().last() else {
        return false;
    };
    let data = fs.read(&segment_path(dir, last)).unwrap();
    let (mut off, mut checkpoint) = (SEGMENT_HEADER_LEN as usize, false);
    loop {
        match decode(&data[off..]) {
            Decoded::Record { len_on_disk, .. } | Decoded::Void { len_on_disk, .. } => {
                checkpoint = false;
                off += len_on_disk;
            }
            Decoded::Checkpoint { len_on_disk, .. } => {
                checkpoint = true;
                off += len_on_disk;
            }
            _ => return checkpoint,
        }
    }
}

fn copy_out(fs: &SimFs, dir: &Path) -> Files {
    fs.list(dir)
        .unwrap()
        .into_iter()
        .map(|name| {
            let data = fs.read(&dir.join(&name)).unwrap();
            (name, data)
        })
        .collect()
}

fn copy_in(files: &Files) -> SimFs {
    let fs = SimFs::new();
    let dir = PathBuf::from(DIR);
    fs.create_dir_all(&dir).unwrap();
    for (name, data) in files {
        let f = fs.create(&dir.join(name)).unwrap();
        f.write_at(0, data).unwrap();
        f.sync_data().unwrap();
    }
    fs.sync_dir(&dir).unwrap();
    fs
}

fn seg_name(seq: u64) -> String {
    segment_path(Path::new(""), seq)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// What was done to the copy, and what must come of it.
struct Case {
    name: String,
    files: Files,
    /// Recovery must give back every record (a torn unsynced tail); else it must refuse.
    exact: bool,
    /// A known limit, counted apart: the last segment of an unclean shutdown cut short in the
    /// middle of a record reads as a torn tail (see the module doc).
    limit: bool,
}

#[test]
fn every_row_of_the_corruption_table_is_recovered_exactly_or_refused() {
    let written: Vec<Vec<u8>> = (0..36).map(payload).collect();
    let mut cases = Vec::new();
    for clean in [true, false] {
        let files = fixture(clean);
        let shutdown = if clean { "clean" } else { "unclean" };
        // The pristine copy reads back whole, and tells where every record is.
        let fs = copy_in(&files);
        let r = recover(&fs, Path::new(DIR)).unwrap_or_else(|e| panic!("{shutdown}: {e}"));
        let got: Vec<Vec<u8>> = r.records.iter().map(|r| r.payload.to_vec()).collect();
        assert_eq!(got, written, "{shutdown}: the pristine journal");
        assert!(r.summary.truncated.is_none(), "{shutdown}");
        let mut by_segment: BTreeMap<u64, Vec<(u64, usize)>> = BTreeMap::new();
        for rec in &r.records {
            by_segment
                .entry(rec.pos.segment)
                .or_default()
                .push((rec.pos.offset, encoded_len(rec.payload.len())));
        }
        let segs: Vec<u64> = by_segment.keys().copied().collect();
        assert!(segs.len() >= 3, "{segs:?}");
        let all_segs: Vec<u64> = files
            .keys()
            .filter_map(|n| parse_segment_file_name(n))
            .collect();
        let picks = [
            ("first", segs[0]),
            ("middle", segs[segs.len() / 2]),
            ("last", *segs.last().unwrap()),
        ];
        for (where_seg, seq) in picks {
            let recs = &by_segment[&seq];
            for (where_rec, &(off, len)) in [
                ("first", &recs[0]),
                ("middle", &recs[recs.len() / 2]),
                ("last", recs.last().unwrap()),
            ] {
                let name = seg_name(seq);
                let (off, len) = (off as usize, len);
                let label = |what: &str| {
                    format!(
                        "{shutdown}: {what} in the {where_rec} record of the {where_seg} segment"
                    )
                };
                for (what, at) in [
                    ("length byte flipped", off),
                    ("payload byte flipped", off + len / 2),
                    ("CRC byte flipped", off + 5),
                ] {
                    let mut f = files.clone();
                    f.get_mut(&name).unwrap()[at] ^= 0x40;
                    cases.push(Case {
                        name: label(what),
                        files: f,
                        exact: false,
                        limit: false,
                    });
                }
                let mut f = files.clone();
                f.get_mut(&name).unwrap()[off..off + len].fill(0);
                cases.push(Case {
                    name: label("record zeroed"),
                    files: f,
                    exact: false,
                    limit: false,
                });
                let mut f = files.clone();
                f.get_mut(&name).unwrap().truncate(off + len / 2);
                cases.push(Case {
                    name: label("file truncated mid-record"),
                    files: f,
                    exact: false,
                    limit: !clean && where_seg == "last",
                });
            }
        }
        // Junk after the data of the last segment: after a clean shutdown, damage; after an
        // unclean one, what a crash leaves of an unsynced batch (cut off exactly).
        let last = *all_segs.last().unwrap();
        let end = r.summary.tail.unwrap();
        assert_eq!(end.segment, last);
        let mut f = files.clone();
        f.get_mut(&seg_name(last)).unwrap()[end.offset as usize..end.offset as usize + 100]
            .fill(0xa5);
        cases.push(Case {
            name: format!("{shutdown}: junk after the data"),
            files: f,
            exact: !clean,
            limit: false,
        });
        // A torn record after the last one: half of a record whose batch was being written.
        let mut f = files.clone();
        let torn = &mut f.get_mut(&seg_name(last)).unwrap();
        let mut buf = bytes::BytesMut::new();
        crate::store::record::encode_parts(RecordKind::Enqueue, &[&payload(99)], true, &mut buf)
            .unwrap();
        let at = end.offset as usize;
        torn[at..at + buf.len() / 2].copy_from_slice(&buf[..buf.len() / 2]);
        cases.push(Case {
            name: format!("{shutdown}: a torn record after the data"),
            files: f,
            exact: !clean,
            limit: false,
        });
        for (where_seg, seq) in [
            ("first", all_segs[0]),
            ("middle", all_segs[all_segs.len() / 2]),
            ("last", last),
        ] {
            let mut f = files.clone();
            f.remove(&seg_name(seq));
            cases.push(Case {
                name: format!("{shutdown}: the {where_seg} segment deleted"),
                files: f,
                exact: false,
                limit: false,
            });
        }
        for later in [last + 1, last + 3] {
            let mut f = files.clone();
            let copy = f[&seg_name(all_segs[0])].clone();
            f.insert(seg_name(later), copy);
            cases.push(Case {
                name: format!("{shutdown}: segment {} copied in as {later}", all_segs[0]),
                files: f,
                exact: false,
                limit: false,
            });
        }
        // The same, with the copy's header made to match its new name.
        let mut f = files.clone();
        let mut copy = f[&seg_name(all_segs[0])].clone();
        copy[16..24].copy_from_slice(&(last + 1).to_le_bytes());
        f.insert(seg_name(last + 1), copy);
        cases.push(Case {
            name: format!(
                "{shutdown}: segment {} copied in as {} with its header renumbered",
                all_segs[0],
                last + 1
            ),
            files: f,
            exact: false,
            limit: false,
        });
    }

    let (mut detected, mut exact, mut limits, mut failures) = (0, 0, 0, Vec::new());
    for case in &cases {
        let fs = copy_in(&case.files);
        let result = recover(&fs, Path::new(DIR));
        if case.limit {
            // Cut as a torn tail at the damaged record: loud (a WARN naming file and offset),
            // but not refused. Asserted so that fixing it shows here.
            match &result {
                Ok(r) if r.summary.truncated.is_some() => limits += 1,
                other => {
                    failures.push(format!("{}: the known limit changed: {other:?}", case.name))
                }
            }
            continue;
        }
        match result {
            Ok(r) => {
                let got: Vec<Vec<u8>> = r.records.iter().map(|r| r.payload.to_vec()).collect();
                if got != written {
                    failures.push(format!(
                        "{}: SILENT LOSS: {} of {} records recovered ({:?})",
                        case.name,
                        got.len(),
                        written.len(),
                        r.summary.truncated
                    ));
                } else if !case.exact {
                    failures.push(format!("{}: not noticed (nothing lost)", case.name));
                } else {
                    exact += 1;
                }
            }
            Err(e @ RecoveryError::Corrupt { .. }) => {
                let text = e.to_string();
                if case.exact {
                    failures.push(format!("{}: refused a torn tail: {text}", case.name));
                } else if !text.contains(DIR) || !text.contains("offset") {
                    failures.push(format!("{}: unclear refusal: {text}", case.name));
                } else {
                    detected += 1;
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    println!(
        "corruption table: {} cases tried, {detected} refused with file and offset, {exact} torn \
         tails recovered exactly, {limits} truncated as a torn tail with a warning (known limit), \
         {} wrong",
        cases.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn skipping_a_damaged_record_keeps_every_other_one() {
    let written: Vec<Vec<u8>> = (0..36).map(payload).collect();
    let files = fixture(true);
    let fs = copy_in(&files);
    let dir = Path::new(DIR);
    let r = recover(&fs, dir).unwrap();
    let victim = r.records[17].pos;
    let name = seg_name(victim.segment);
    let mut damaged = files.clone();
    damaged.get_mut(&name).unwrap()[victim.offset as usize + 50] ^= 1;
    let fs = copy_in(&damaged);
    let Err(RecoveryError::Corrupt { file, offset, .. }) = recover(&fs, dir) else {
        panic!("not refused")
    };
    assert_eq!(offset, victim.offset);
    let skipped = skip_damaged(&fs, dir, &file, offset)
        .unwrap()
        .expect("skipped");
    assert_eq!(skipped.resumed_at, Some(r.records[18].pos.offset));
    let got: Vec<Vec<u8>> = recover(&fs, dir)
        .unwrap()
        .records
        .iter()
        .map(|r| r.payload.to_vec())
        .collect();
    let mut expected = written.clone();
    expected.remove(17);
    assert_eq!(got, expected);
}
