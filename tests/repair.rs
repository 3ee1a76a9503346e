//! `sluice repair`, black-box: the built binary on a journal written by the real segment
//! writer, clean, torn by a "crash", or corrupted in the middle.
//!
//! Segments are the smallest allowed (4 KiB), so a few hundred bytes of records span several
//! of them and the damage can sit in a segment that is not the last: the case recovery
//! refuses and only an operator's repair gets past.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use sluice::testing::MIN_SEGMENT_SIZE;
use sluice::testing::{RealFs, RecordKind, RecordPos, SegmentWriter};
use tempfile::TempDir;

/// Payload of each record: small enough for many per segment, large enough to span several.
const PAYLOAD_LEN: usize = 200;
/// Records written per sync (each sync starts a batch).
const BATCH: usize = 5;

/// A data directory holding `journal/` with at least `segments` segments.
struct Journal {
    data_dir: TempDir,
    /// Every record written, in order.
    records: Vec<RecordPos>,
}

impl Journal {
    fn write(segments: u64) -> Journal {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let dir = data_dir.path().join("journal");
        std::fs::create_dir(&dir).expect("create journal dir");
        let mut writer = SegmentWriter::open(Arc::new(RealFs::new()), &dir, MIN_SEGMENT_SIZE, None)
            .expect("open writer");
        let mut records = Vec::new();
        while writer.current_segment() < segments {
            for _ in 0..BATCH {
                let i = records.len();
                let payload = vec![b'a' + (i % 26) as u8; PAYLOAD_LEN];
                records.push(
                    writer
                        .append(RecordKind::Enqueue, &payload)
                        .expect("append"),
                );
            }
            writer.sync().expect("sync");
        }
        Journal { data_dir, records }
    }

    fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    fn dir(&self) -> PathBuf {
        self.data_dir().join("journal")
    }

    fn segment(&self, seq: u64) -> PathBuf {
        self.dir().join(format!("{seq:020}.seg"))
    }

    /// Every file of the journal with its content.
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.dir())
            .expect("read journal dir")
            .map(|e| {
                let e = e.expect("dir entry");
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).expect("read segment"))
            })
            .collect()
    }

    /// Flips a byte inside the payload of the middle record of segment `seq`; returns that
    /// record's position, where recovery will say the damage starts.
    fn corrupt_middle_of(&self, seq: u64) -> RecordPos {
        let in_segment: Vec<RecordPos> = self
            .records
            .iter()
            .copied()
            .filter(|p| p.segment == seq)
            .collect();
        let victim = in_segment[in_segment.len() / 2];
        let path = self.segment(seq);
        let mut data = std::fs::read(&path).expect("read segment");
        // 8 bytes of length and CRC, 1 of kind: +20 is well inside the payload.
        data[victim.offset as usize + 20] ^= 0xff;
        std::fs::write(&path, data).expect("write segment");
        victim
    }

    /// Writes the start of a record after the last one, as a crash cutting a write short
    /// leaves it: a length and a CRC with nothing valid after them.
    fn tear_tail(&self) -> RecordPos {
        let last = *self.records.last().expect("records");
        let tail = RecordPos {
            segment: last.segment,
            offset: last.offset + 8 + 1 + PAYLOAD_LEN as u64,
        };
        let path = self.segment(tail.segment);
        let mut data = std::fs::read(&path).expect("read segment");
        let torn = [0x40, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, b'x', b'y'];
        data[tail.offset as usize..tail.offset as usize + torn.len()].copy_from_slice(&torn);
        std::fs::write(&path, data).expect("write segment");
        tail
    }
}

fn sluice(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the sluice binary runs")
}

fn repair(journal: &Journal, extra: &[&str]) -> Output {
    let dir = journal.data_dir().to_str().expect("temp paths are UTF-8");
    let mut args = vec!["repair", "--data-dir", dir];
    args.extend_from_slice(extra);
    sluice(&args, journal.data_dir())
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn all_output(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_clean_journal_is_reported_clean_and_left_as_it_was() {
    let journal = Journal::write(3);
    let before = journal.snapshot();
    let output = repair(&journal, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", all_output(&output));
    let text = stdout(&output);
    assert!(text.contains("clean (3 segments"), "{text}");
    assert!(
        text.contains(&format!("{} records", journal.records.len())),
        "{text}"
    );
    assert_eq!(journal.snapshot(), before);
}

#[test]
fn a_torn_tail_is_only_reported_without_yes_and_truncated_with_it() {
    let journal = Journal::write(3);
    let tail = journal.tear_tail();
    let before = journal.snapshot();
    let output = repair(&journal, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", all_output(&output));
    let text = stdout(&output);
    assert!(
        text.contains("would truncate a record torn by a crash"),
        "{text}"
    );
    assert!(text.contains(&format!("offset {}", tail.offset)), "{text}");
    assert!(text.contains("Nothing was changed"), "{text}");
    assert_eq!(journal.snapshot(), before, "changed without --yes");

    let output = repair(&journal, &["--yes"]);
    assert_eq!(output.status.code(), Some(0), "{}", all_output(&output));
    let text = stdout(&output);
    assert!(
        text.contains("truncated a record torn by a crash"),
        "{text}"
    );
    let len = std::fs::metadata(journal.segment(tail.segment))
        .expect("stat")
        .len();
    assert_eq!(len, tail.offset);
    let again = stdout(&repair(&journal, &[]));
    assert!(again.contains("clean (3 segments"), "{again}");
    assert!(!again.contains("torn"), "{again}");
}

/// A running broker's batch in flight looks just like a torn tail: repair must not touch
/// its data directory at all, with or without `--yes`.
#[tokio::test]
async fn repair_refuses_a_data_dir_a_running_broker_holds_and_changes_nothing() {
    let config = support::broker::test_config();
    let data_dir = config.data_dir.clone();
    let (broker, _) = support::broker::start(config).await;
    let snapshot = || {
        std::fs::read_dir(data_dir.join("journal"))
            .expect("journal dir")
            .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
            .collect::<Vec<_>>()
    };
    let before = snapshot();
    let dir = data_dir.to_str().expect("UTF-8");
    for extra in [&[][..], &["--yes"][..]] {
        let mut args = vec!["repair", "--data-dir", dir];
        args.extend_from_slice(extra);
        let output = sluice(&args, &data_dir);
        assert_eq!(output.status.code(), Some(2), "{}", all_output(&output));
        let err = String::from_utf8_lossy(&output.stderr);
        let running = format!("sluice is running (pid {})", std::process::id());
        assert!(err.contains(&running), "{err}");
        assert!(err.contains("Nothing was changed"), "{err}");
    }
    assert_eq!(snapshot(), before);
    broker.shutdown().await;
}

#[test]
fn corruption_is_shown_with_what_would_be_lost_and_nothing_changes_without_yes() {
    let journal = Journal::write(4);
    let damaged = journal.corrupt_middle_of(2);
    let before = journal.snapshot();
    let output = repair(&journal, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", all_output(&output));
    let text = all_output(&output);
    let name = format!("{:020}.seg", 2);
    assert!(
        text.contains(&format!("{name} at offset {}", damaged.offset)),
        "{text}"
    );
    let kept = journal.records.iter().filter(|p| **p < damaged).count();
    assert!(
        text.contains(&format!("kept: the {kept} records")),
        "{text}"
    );
    for later in 3..=4 {
        assert!(
            text.contains(&format!("{later:020}.seg: the whole segment")),
            "{text}"
        );
    }
    assert!(text.contains("not repaired; nothing was changed"), "{text}");
    assert!(text.contains("--yes"), "{text}");
    assert_eq!(journal.snapshot(), before, "the journal was changed");
}

#[test]
fn with_yes_the_journal_is_truncated_at_the_damage_and_is_clean_afterwards() {
    let journal = Journal::write(4);
    let damaged = journal.corrupt_middle_of(2);
    let output = repair(&journal, &["--yes"]);
    assert_eq!(output.status.code(), Some(0), "{}", all_output(&output));
    let text = stdout(&output);
    let name = format!("{:020}.seg", 2);
    assert!(
        text.contains(&format!("{name} truncated at offset {}", damaged.offset)),
        "{text}"
    );
    assert!(text.contains("2 later segments deleted"), "{text}");

    let files: Vec<String> = journal.snapshot().into_keys().collect();
    assert_eq!(
        files,
        [format!("{:020}.seg", 1), name.clone(), "MANIFEST".into()]
    );
    let len = std::fs::metadata(journal.segment(2)).expect("stat").len();
    assert_eq!(len, damaged.offset);

    let again = repair(&journal, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", all_output(&again));
    let kept = journal.records.iter().filter(|p| **p < damaged).count();
    let text = stdout(&again);
    assert!(
        text.contains(&format!("clean (2 segments, {kept} records")),
        "{text}"
    );
}

#[test]
fn the_data_dir_can_come_from_the_config_or_before_the_subcommand() {
    let journal = Journal::write(2);
    let dir = journal.data_dir().to_str().expect("UTF-8");
    let config = journal.data_dir().join("broker.toml");
    std::fs::write(&config, format!("[broker]\ndata_dir = {dir:?}\n")).expect("write config");
    let config = config.to_str().expect("UTF-8");
    for args in [
        vec!["repair", "--config", config],
        vec!["--config", config, "repair"],
        vec!["--data-dir", dir, "repair"],
    ] {
        let output = sluice(&args, Path::new("/"));
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            all_output(&output)
        );
        assert!(stdout(&output).contains("clean (2 segments"), "{args:?}");
    }
}

#[test]
fn a_missing_journal_exits_2_naming_the_path() {
    let empty = tempfile::tempdir().expect("temp dir");
    // No option: the default data directory, `data`, relative to where it runs.
    let output = sluice(&["repair"], empty.path());
    assert_eq!(output.status.code(), Some(2), "{}", all_output(&output));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("cannot list data/journal"), "{err}");
    assert!(err.contains("--data-dir"), "{err}");
}

#[test]
fn a_bad_config_exits_2_naming_it() {
    let empty = tempfile::tempdir().expect("temp dir");
    let output = sluice(&["repair", "--config", "missing.toml"], empty.path());
    assert_eq!(output.status.code(), Some(2), "{}", all_output(&output));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("cannot read missing.toml"), "{err}");
}

#[test]
fn skip_damaged_blanks_only_the_damaged_record_and_keeps_every_later_one() {
    let journal = Journal::write(4);
    let damaged = journal.corrupt_middle_of(2);
    let before = journal.snapshot();
    let name = format!("{:020}.seg", 2);

    // Without --yes: what it would skip, and nothing changed.
    let output = repair(&journal, &["--skip-damaged"]);
    assert_eq!(output.status.code(), Some(1), "{}", all_output(&output));
    let text = all_output(&output);
    assert!(
        text.contains(&format!("would skip: {name} offset {}", damaged.offset)),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    assert_eq!(journal.snapshot(), before, "the journal was changed");

    // With it: one record gone, every other one kept, later segments included.
    let output = repair(&journal, &["--skip-damaged", "--yes"]);
    assert_eq!(output.status.code(), Some(0), "{}", all_output(&output));
    assert!(
        stdout(&output).contains("1 damaged records skipped"),
        "{}",
        all_output(&output)
    );
    let again = repair(&journal, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", all_output(&again));
    let text = stdout(&again);
    assert!(
        text.contains(&format!(
            "clean (4 segments, {} records",
            journal.records.len() - 1
        )),
        "{text}"
    );
}
