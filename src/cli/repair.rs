//! `sluice repair`: what an operator runs when the broker will not start because its journal
//! is corrupt (issue 7).
//!
//! It reads the journal as the broker would at start ([`store::recover`]). A clean journal,
//! or one whose only damage is the torn tail a crash leaves (which recovery truncates, as the
//! broker would), is left alone. Corruption is shown with what cutting there would lose, and
//! the journal is truncated ([`store::repair`]) only once the operator confirms: `--yes`, or
//! "y" typed at a terminal. Exit codes: 0 clean or repaired; 1 corrupt and left as it was;
//! 2 the journal could not be read (or bad usage).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use sluice::tools::{self as store, DataDirLock, Fs, LockError, RealFs, RecoveryError};
use sluice::tools::{list_segments, parse_segment_file_name, read_segment, segment_path};
use sluice::tools::{OverlayFs, RecoverySummary, ScanEnd};
use sluice::Config;

/// Arguments of `sluice repair`.
#[derive(Debug, Args)]
#[command(after_help = "\
Repair takes the data directory's lock, so it refuses to run while sluice runs there. Without
--yes it changes nothing, not even a torn tail a crash left: it reports what it would do.

Exit status: 0 the journal is clean, or only ends in a torn tail left by a crash (truncated
with --yes, else by the broker at start), or was repaired; 1 it is corrupt and was left
unchanged; 2 it could not be read, sluice is running on it, or bad usage.")]
pub struct RepairArgs {
    /// Data directory; its `journal/` is checked [default: the config's broker.data_dir, else
    /// `data`].
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    data_dir: Option<PathBuf>,
    /// Configuration file to take `broker.data_dir` from.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Change the journal: truncate a corrupt journal without asking, and a torn tail.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Instead of truncating at the damage, skip each damaged record (blanked in place into a
    /// void record; reading resynchronises on the next record whose length and CRC hold) and
    /// keep every record after it. Still changes nothing without --yes.
    #[arg(long)]
    skip_damaged: bool,
}

impl RepairArgs {
    /// Takes `--data-dir` and `--config` given before `repair` (`sluice --data-dir d repair`)
    /// when they were not given after it.
    pub fn or_global(mut self, data_dir: Option<&Path>, config: Option<&Path>) -> RepairArgs {
        if self.data_dir.is_none() && self.config.is_none() {
            self.data_dir = data_dir.map(Path::to_owned);
            self.config = config.map(Path::to_owned);
        }
        self
    }
}

/// Runs `sluice repair`.
pub fn run(args: RepairArgs) -> ExitCode {
    let data_dir = match (&args.data_dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(file)) => match Config::load(file) {
            Ok(config) => config.data_dir,
            Err(e) => return usage_error(&e.to_string()),
        },
        (None, None) => Config::default().data_dir,
    };
    // The broker's lock, held until repair exits: a running broker's batch in flight looks
    // exactly like a torn tail, and truncating it would destroy accepted messages (issue 12).
    // A data directory that does not exist has no journal to lock; that is reported below.
    let _lock = if data_dir.is_dir() {
        match DataDirLock::acquire(&data_dir) {
            Ok(lock) => Some(lock),
            Err(e @ LockError::Held { .. }) => {
                eprintln!(
                    "sluice repair: {e}; stop it first: repair never touches a journal a broker \
                     is writing. Nothing was changed."
                );
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("sluice repair: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let dir = data_dir.join("journal");
    let fs = RealFs::new();
    let mut kept = 0;
    let (file, offset, reason) = match check(&fs, &dir, &mut kept) {
        Ok(summary) => return torn_tail(&fs, &dir, &summary, args.yes),
        Err(RecoveryError::Corrupt {
            file,
            offset,
            reason,
        }) => (file, offset, reason),
        Err(e) => return read_error(&dir, e),
    };
    println!(
        "journal {} is corrupt: {} at offset {offset}: {reason}",
        dir.display(),
        file.display()
    );
    println!("  kept: the {kept} records before that point");
    if args.skip_damaged {
        return skip_mode(&fs, &dir, (file, offset, reason), args.yes);
    }
    if let Err(e) = print_what_would_be_lost(&fs, &dir, &file, offset) {
        return read_error(&dir, e);
    }
    if !confirmed(args.yes, &file, offset) {
        eprintln!(
            "sluice repair: not repaired; nothing was changed. To truncate the journal at {} \
             offset {offset}, run `sluice repair --yes` with the same options (copy the data \
             directory first if you may want to look at what is dropped).",
            file.display()
        );
        return ExitCode::from(1);
    }
    let repaired = match store::repair(&fs, &dir, &file, offset) {
        Ok(r) => r,
        Err(e) => return read_error(&dir, e),
    };
    let deleted: Vec<String> = repaired
        .deleted_segments
        .iter()
        .map(|p| file_name(p))
        .collect();
    println!(
        "repaired: {} truncated at offset {} ({} bytes of data dropped); {} later segments \
         deleted ({} bytes){}{}",
        repaired.file.display(),
        repaired.offset,
        repaired.dropped_bytes,
        deleted.len(),
        repaired.deleted_bytes,
        if deleted.is_empty() { "" } else { ": " },
        deleted.join(", ")
    );
    // Read it back, as the broker will: what repair left must now be clean.
    match check(&fs, &dir, &mut 0) {
        Ok(summary) => torn_tail(&fs, &dir, &summary, true),
        Err(RecoveryError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            eprintln!(
                "sluice repair: the journal is still corrupt at {} offset {offset}: {reason}; \
                 run `sluice repair` again",
                file.display()
            );
            ExitCode::from(1)
        }
        Err(e) => read_error(&dir, e),
    }
}

/// Reads the journal in `dir`, changing nothing, and says what it found unless it is corrupt;
/// counts the records read (when it is corrupt: the records before the damage, which a
/// repair keeps).
fn check(fs: &dyn Fs, dir: &Path, records: &mut u64) -> Result<RecoverySummary, RecoveryError> {
    // Counted, not collected: only one segment is in memory at a time.
    let summary = store::check_with(fs, dir, |_| *records += 1)?;
    println!(
        "journal {}: clean ({} segments, {} records, {} bytes of records)",
        dir.display(),
        summary.segments.len(),
        summary.records,
        summary.bytes
    );
    Ok(summary)
}

/// A journal whose only damage is a torn tail: truncated when `yes` (as the broker does at
/// start), else only reported. Exit 0 either way: the broker would start on it.
fn torn_tail(fs: &dyn Fs, dir: &Path, summary: &RecoverySummary, yes: bool) -> ExitCode {
    let Some(torn) = &summary.truncated else {
        return ExitCode::SUCCESS;
    };
    let what = format!(
        "a record torn by a crash at the end of {} (offset {}, {} bytes of data: {}); its batch \
         was never synced, so it was never acknowledged",
        torn.file.display(),
        torn.offset,
        torn.dropped_bytes,
        torn.reason
    );
    if !yes {
        println!(
            "journal {}: would truncate {what}. Nothing was changed: the broker truncates it \
             at start, or run `sluice repair --yes` to do it now.",
            dir.display()
        );
        return ExitCode::SUCCESS;
    }
    match store::recover_with(fs, dir, |_| ()) {
        Ok(_) => {
            println!("journal {}: truncated {what}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => read_error(dir, e),
    }
}

type Damage = (PathBuf, u64, String);

/// `--skip-damaged`: shows what skipping would blank (tried on an overlay that keeps its
/// changes in memory, so only the segments it touches are copied), then, once confirmed,
/// does it.
fn skip_mode(fs: &RealFs, dir: &Path, first: Damage, yes: bool) -> ExitCode {
    let trial = OverlayFs::new(std::sync::Arc::new(fs.clone()));
    let (would, left) = match skip_all(&trial, dir, first.clone()) {
        Ok(r) => r,
        Err(e) => return read_error(dir, e),
    };
    for s in &would {
        println!(
            "  would skip: {} offset {}: {} bytes blanked{}",
            file_name(&s.file),
            s.offset,
            s.len,
            s.resumed_at.map_or(
                " (to the end of the segment's data)".to_owned(),
                |r| format!(", reading resumes at offset {r}")
            )
        );
    }
    if let Some((file, offset, reason)) = &left {
        println!(
            "  cannot skip: {} offset {offset}: {reason}; run without --skip-damaged to \
             truncate there",
            file.display()
        );
    }
    let (file, offset, _) = &first;
    let go = yes
        || (std::io::stdin().is_terminal() && {
            eprint!(
                "Skip the damaged records above (from {} offset {offset}), keeping the rest? \
                 [y/N] ",
                file.display()
            );
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer).is_ok()
                && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
        });
    if !go || would.is_empty() {
        eprintln!(
            "sluice repair: not repaired; nothing was changed.{}",
            if would.is_empty() {
                ""
            } else {
                " To skip the damaged records, run `sluice repair --skip-damaged --yes` with \
                 the same options."
            }
        );
        return ExitCode::from(1);
    }
    match skip_all(fs, dir, first) {
        Ok((done, left)) => {
            println!(
                "repaired: {} damaged records skipped, every record after them kept",
                done.len()
            );
            if let Some((file, offset, reason)) = left {
                eprintln!(
                    "sluice repair: the journal is still corrupt at {} offset {offset}: \
                     {reason}; run `sluice repair` to truncate there",
                    file.display()
                );
                return ExitCode::from(1);
            }
            match check(fs, dir, &mut 0) {
                Ok(summary) => torn_tail(fs, dir, &summary, true),
                Err(e) => read_error(dir, e),
            }
        }
        Err(e) => read_error(dir, e),
    }
}

/// Skips damage after damage until the journal reads clean or a damage cannot be skipped
/// (returned).
fn skip_all(
    fs: &dyn Fs,
    dir: &Path,
    first: Damage,
) -> Result<(Vec<store::Skipped>, Option<Damage>), RecoveryError> {
    let mut skipped = Vec::new();
    let mut next = Some(first);
    while let Some((file, offset, reason)) = next.take() {
        match store::skip_damaged(fs, dir, &file, offset)? {
            Some(s) => skipped.push(s),
            None => return Ok((skipped, Some((file, offset, reason)))),
        }
        match store::check_with(fs, dir, |_| ()) {
            Ok(_) => {}
            Err(RecoveryError::Corrupt {
                file: f,
                offset: o,
                reason: r,
            }) => {
                if (&f, o) == (&file, offset) {
                    // No progress: this damage is not one skipping can mend.
                    return Ok((skipped, Some((f, o, r))));
                }
                next = Some((f, o, r));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((skipped, None))
}

/// Lists what truncating at `file` `offset` would drop: the rest of that segment and every
/// later one, whole.
fn print_what_would_be_lost(
    fs: &dyn Fs,
    dir: &Path,
    file: &Path,
    offset: u64,
) -> Result<(), RecoveryError> {
    let io = |op: &'static str, file: &Path| {
        let file = file.to_owned();
        move |source| RecoveryError::Io { op, file, source }
    };
    println!("  lost if repaired:");
    let this_seq = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_segment_file_name);
    let later = list_segments(fs, dir).map_err(io("list", dir))?;
    let data = match fs.read(file) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let outside = this_seq.is_none_or(|s| {
                later.first().is_none_or(|&f| s < f) || later.last().is_none_or(|&l| s > l)
            });
            if outside {
                println!(
                    "    nothing more: {} is missing already, and the repair records in the \
                     manifest which segments there are",
                    file_name(file)
                );
                return Ok(());
            }
            Vec::new()
        }
        Err(e) => return Err(io("read", file)(e)),
    };
    let rest = data.get(offset as usize..).unwrap_or_default();
    println!(
        "    {} from offset {offset}: {} bytes of data (the damaged record and any after it)",
        file_name(file),
        data_len(rest)
    );
    for seq in later
        .into_iter()
        .filter(|&s| this_seq.is_some_and(|t| s > t))
    {
        let path = segment_path(dir, seq);
        let (records, end) = read_segment(fs, dir, seq).map_err(|e| RecoveryError::Io {
            op: "read",
            file: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let data = fs.read(&path).map_err(io("read", &path))?;
        let damaged = match end {
            ScanEnd::Clean { .. } => "",
            ScanEnd::Torn { .. } | ScanEnd::Corrupt { .. } => ", damaged further on",
        };
        println!(
            "    {}: the whole segment, {} records, {} bytes of data{damaged}",
            file_name(&path),
            records.len(),
            data_len(&data)
        );
    }
    Ok(())
}

/// Bytes up to the last non-zero one: segments are preallocated, so their zero tail is not
/// data.
fn data_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// `--yes`, or "y" typed at a terminal. Anything else (no terminal, end of input, another
/// answer) is a no: dropping records must be a decision.
fn confirmed(yes: bool, file: &Path, offset: u64) -> bool {
    if yes {
        return true;
    }
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!(
        "Truncate the journal at {} offset {offset}, losing the above? [y/N] ",
        file.display()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn read_error(dir: &Path, e: RecoveryError) -> ExitCode {
    let hint = match &e {
        RecoveryError::Io { file, source, .. }
            if file == dir && source.kind() == std::io::ErrorKind::NotFound =>
        {
            " (is the data directory right? Give it with --data-dir or --config)"
        }
        _ => "",
    };
    eprintln!("sluice repair: {e}{hint}");
    ExitCode::from(2)
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("sluice: {message}");
    ExitCode::from(2)
}
