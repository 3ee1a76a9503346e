//! The journal's manifest: which segments must exist (issue 12).
//!
//! Segment files alone cannot show that one is missing: a deleted first, middle or last
//! segment leaves a journal that reads as clean. `MANIFEST`, beside the segments, holds the
//! lowest segment not deleted by sluice (`low`) and the highest ever created (`high`, the
//! high-water mark); every segment from `low` to `high` must be there. It is updated after a
//! segment is created (and made durable) and before one is deleted, so a crash between the
//! two leaves at most one segment past `high` (created, not yet recorded: accepted) or one
//! below `low` (recorded as deleted, not yet removed: dead, skipped).
//!
//! It also says where the journal ended at a clean shutdown (`clean`, cleared when the
//! journal is opened for writing): after one, the journal must end exactly there, so a
//! truncated or extended last segment is corruption, not the torn tail of a crash.
//!
//! The file holds two 48-byte slots, written alternately and each synced — `[magic "SLMF"]
//! [generation u64][low u64][high u64][clean segment u64][clean offset u64][crc32c u32]`, LE
//! (a clean segment of 0: not shut down cleanly) — so that a write torn by a crash spoils
//! one slot and the other still holds the previous state. The valid slot with the higher
//! generation is the manifest.

use std::io;
use std::path::{Path, PathBuf};

use super::fs::Fs;

/// The manifest's file name in the journal directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
const MAGIC: [u8; 4] = *b"SLMF";
const SLOT: usize = 48;

/// The segments that must exist: `low..=high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    /// The lowest segment not deleted.
    pub low: u64,
    /// The highest segment created.
    pub high: u64,
    /// Where the journal ended at a clean shutdown (segment, offset), if it was shut down
    /// cleanly and not opened since.
    pub clean: Option<(u64, u64)>,
    generation: u64,
}

/// The manifest's path in `dir`.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_FILE)
}

fn decode_slot(slot: &[u8]) -> Option<Manifest> {
    if slot.len() < SLOT || slot[..4] != MAGIC {
        return None;
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&slot[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let crc = u32::from_le_bytes([slot[44], slot[45], slot[46], slot[47]]);
    (crc32c::crc32c(&slot[..44]) == crc).then(|| Manifest {
        generation: word(4),
        low: word(12),
        high: word(20),
        clean: (word(28) != 0).then(|| (word(28), word(36))),
    })
}

/// Reads the manifest of `dir`: None when there is none. A file with no valid slot is an
/// error (`InvalidData`).
pub fn read(fs: &dyn Fs, dir: &Path) -> io::Result<Option<Manifest>> {
    let path = manifest_path(dir);
    let data = match fs.read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let best = data
        .chunks(SLOT)
        .take(2)
        .filter_map(decode_slot)
        .max_by_key(|m| m.generation);
    match best {
        Some(m) => Ok(Some(m)),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: no valid manifest slot", path.display()),
        )),
    }
}

/// Writes `low..=high` (not shut down cleanly) as the manifest of `dir`, durably.
pub fn write(fs: &dyn Fs, dir: &Path, low: u64, high: u64) -> io::Result<()> {
    write_with(fs, dir, low, high, None)
}

/// Writes the manifest of `dir`, durably, over the older slot.
fn write_with(
    fs: &dyn Fs,
    dir: &Path,
    low: u64,
    high: u64,
    clean: Option<(u64, u64)>,
) -> io::Result<()> {
    let path = manifest_path(dir);
    let previous = match read(fs, dir) {
        Ok(m) => m,
        // A spoiled manifest is being replaced (repair); start the generations again.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => None,
        Err(e) => return Err(e),
    };
    let generation = previous.map_or(1, |m| m.generation + 1);
    let mut slot = [0u8; SLOT];
    slot[..4].copy_from_slice(&MAGIC);
    slot[4..12].copy_from_slice(&generation.to_le_bytes());
    slot[12..20].copy_from_slice(&low.to_le_bytes());
    slot[20..28].copy_from_slice(&high.to_le_bytes());
    let (clean_seg, clean_off) = clean.unwrap_or((0, 0));
    slot[28..36].copy_from_slice(&clean_seg.to_le_bytes());
    slot[36..44].copy_from_slice(&clean_off.to_le_bytes());
    let crc = crc32c::crc32c(&slot[..44]);
    slot[44..].copy_from_slice(&crc.to_le_bytes());
    let file = match fs.open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let f = fs.create(&path)?;
            fs.sync_dir(dir)?;
            f
        }
        Err(e) => return Err(e),
    };
    file.write_at((generation % 2) * SLOT as u64, &slot)?;
    file.sync_data()
}

/// Records a clean shutdown: the journal ends at `end`, everything before it synced.
pub fn record_clean(fs: &dyn Fs, dir: &Path, end: (u64, u64)) -> io::Result<()> {
    match read(fs, dir)? {
        Some(m) => write_with(fs, dir, m.low, m.high, Some(end)),
        None => Ok(()),
    }
}

/// Records that the journal is open for writing: its end is no longer known until the next
/// clean shutdown.
pub fn record_open(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    match read(fs, dir)? {
        Some(m) if m.clean.is_some() => write(fs, dir, m.low, m.high),
        _ => Ok(()),
    }
}

/// Records that segment `seq` now exists (after its creation is durable).
pub fn record_created(fs: &dyn Fs, dir: &Path, seq: u64) -> io::Result<()> {
    match read(fs, dir)? {
        Some(m) if m.high >= seq => Ok(()),
        Some(m) => write(fs, dir, m.low.min(seq), seq),
        None => write(fs, dir, seq, seq),
    }
}

/// Records that segment `seq` is about to be deleted (before it is removed).
pub fn record_deleting(fs: &dyn Fs, dir: &Path, seq: u64) -> io::Result<()> {
    match read(fs, dir)? {
        Some(m) if m.low <= seq => write(fs, dir, seq + 1, m.high.max(seq)),
        _ => Ok(()),
    }
}

/// The fence marker's file name in the journal directory (issue 12 §5).
pub const FENCED_FILE: &str = "FENCED";
const FENCED_MAGIC: [u8; 4] = *b"SLFN";

/// The fence marker's path in `dir`.
pub fn fenced_path(dir: &Path) -> PathBuf {
    dir.join(FENCED_FILE)
}

/// Records, best effort and durably if the disk allows, that the journal was fenced with
/// everything from `at` (segment, offset) on never acknowledged: a write or sync failed there.
/// After a failed fsync the kernel may still hold (and later write) those pages, so without
/// this the records of producers told `rejected` could be read back at the next start.
pub fn record_fenced(fs: &dyn Fs, dir: &Path, at: (u64, u64)) -> io::Result<()> {
    let mut buf = [0u8; 24];
    buf[..4].copy_from_slice(&FENCED_MAGIC);
    buf[4..12].copy_from_slice(&at.0.to_le_bytes());
    buf[12..20].copy_from_slice(&at.1.to_le_bytes());
    let crc = crc32c::crc32c(&buf[..20]);
    buf[20..].copy_from_slice(&crc.to_le_bytes());
    let path = fenced_path(dir);
    let file = fs.create(&path)?;
    file.write_at(0, &buf)?;
    file.sync_data()?;
    fs.sync_dir(dir)
}

/// Reads the fence marker of `dir`: where the unacknowledged data starts, if the journal was
/// fenced. A marker that does not read back whole is an error (`InvalidData`).
pub fn read_fenced(fs: &dyn Fs, dir: &Path) -> io::Result<Option<(u64, u64)>> {
    let path = fenced_path(dir);
    let data = match fs.read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&data[at..at + 8]);
        u64::from_le_bytes(w)
    };
    if data.len() < 24
        || data[..4] != FENCED_MAGIC
        || crc32c::crc32c(&data[..20])
            != u32::from_le_bytes([data[20], data[21], data[22], data[23]])
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: a damaged fence marker (the journal was fenced after a failed write or \
                 sync, but where is unreadable)",
                path.display()
            ),
        ));
    }
    Ok(Some((word(4), word(12))))
}

/// Removes the fence marker once applied.
pub fn clear_fenced(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    match fs.remove(&fenced_path(dir)) {
        Ok(()) => fs.sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SimFs;

    #[test]
    fn the_newest_valid_slot_wins_and_a_torn_slot_keeps_the_previous_state() {
        let fs = SimFs::new();
        let dir = Path::new("/j");
        fs.create_dir_all(dir).unwrap();
        assert_eq!(read(&fs, dir).unwrap(), None);
        record_created(&fs, dir, 1).unwrap();
        record_created(&fs, dir, 2).unwrap();
        record_deleting(&fs, dir, 1).unwrap();
        let m = read(&fs, dir).unwrap().unwrap();
        assert_eq!((m.low, m.high), (2, 2));
        // Spoil the newest slot: the one before it is read.
        let path = manifest_path(dir);
        let mut data = fs.read(&path).unwrap();
        let newest = (m.generation % 2) as usize * SLOT;
        data[newest + 13] ^= 1;
        fs.open(&path).unwrap().write_at(0, &data).unwrap();
        let m = read(&fs, dir).unwrap().unwrap();
        assert_eq!((m.low, m.high), (1, 2));
    }
}
