//! The journal's writer thread: it takes what the appenders buffered, writes it (creating
//! segments in order), syncs once per batch, completes the waiters, and deletes segments that
//! nothing needs any more.
//!
//! **A full disk is a state, not a failure** (issue 12). When a write or a segment's creation
//! fails with ENOSPC, the writer does not fence: it keeps what was synced, blanks the records
//! of the producers still waiting (void records, so that every later record keeps its
//! position) and refuses them, forgets the unsynced bytes it had written, and writes the rest
//! again (settles included, so no consumed message comes back) once space is freed, trying
//! every tick. That is safe where retrying a failed *fsync* is not (DESIGN §5): a write() that
//! fails with ENOSPC was refused before its bytes became dirty pages, so no page was dropped
//! from writeback and nothing the kernel said it would write was lost; the bytes of that
//! batch that did reach the page cache are overwritten with zeros and synced before anything
//! else, and the data is written afresh and synced again. ENOSPC from an fsync stays a fence,
//! like any other sync error, as does every other error (EIO).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::super::record::{self, void_in_place};
use super::super::segment::{delete_segment, RecordPos, Segment, StoreError, SEGMENT_HEADER_LEN};
use super::super::{Completion, WriteFailed};
use super::{Chunk, Shared, SyncMode, Waiter, MAX_BATCH_BYTES, SPARE_BUFFERS, SYNC_BUCKETS_US};

/// How often an idle writer deletes dead segments, checks whether a full disk has room again,
/// and retries a batch stalled for lack of space.
const TICK: Duration = Duration::from_millis(250);

/// The segment being written, and how much of the journal is known durable.
struct Out {
    file: Segment,
    /// The file has writes not yet synced.
    unsynced: bool,
    /// Everything before this is durable (synced, or written under `sync = "never"`).
    synced: RecordPos,
}

impl Out {
    fn mark_synced(&mut self) {
        self.unsynced = false;
        self.synced = RecordPos {
            segment: self.file.seq(),
            offset: self.file.write_offset(),
        };
    }
}

/// The writer thread: take everything appended, write it, sync once, complete the waiters,
/// delete segments that nothing needs any more; until closed and drained. Returns whether it
/// ended cleanly: everything written and synced, a checkpoint last, nothing failed.
pub(super) fn run(shared: &Shared, file: Segment) -> bool {
    let synced = RecordPos {
        segment: file.seq(),
        offset: file.write_offset(),
    };
    let mut out = Out {
        file,
        unsynced: false,
        synced,
    };
    // Chunks written again before anything newer, once the full disk has room.
    let mut stalled: Vec<Chunk> = Vec::new();
    // Records were written since the last checkpoint.
    let mut dirty = false;
    let checkpoint_len = record::encoded_len(record::CHECKPOINT_PAYLOAD_LEN);
    loop {
        let (chunks, waiters, dead) = {
            let mut st = shared.lock();
            loop {
                if st.closed || (stalled.is_empty() && !st.pending.is_empty()) {
                    break;
                }
                let (guard, waited) = shared
                    .work
                    .wait_timeout(st, TICK)
                    .unwrap_or_else(|e| e.into_inner());
                st = guard;
                if waited.timed_out() {
                    if !stalled.is_empty() {
                        break;
                    }
                    if st.pending.is_empty() {
                        drop(st);
                        idle(shared);
                        // Gone idle: a checkpoint proves everything written so far synced.
                        if dirty
                            && shared.options.sync != SyncMode::Never
                            && shared.push_checkpoint()
                        {
                            dirty = false;
                        }
                        st = shared.lock();
                    }
                }
            }
            if st.pending.is_empty() && stalled.is_empty() {
                // Closed and drained: a clean shutdown ends with a checkpoint, so that no
                // damage to what was written can pass for the torn tail of a crash.
                if dirty && shared.options.sync != SyncMode::Never {
                    drop(st);
                    dirty = !shared.push_checkpoint();
                    if !dirty {
                        continue;
                    }
                    st = shared.lock();
                }
                return !dirty && st.fenced.is_none();
            }
            st.in_batch = false;
            // Segments dead now may be deleted once this batch is durable: whatever replaced
            // their records (a settle, a compaction's copy) was appended before the release,
            // so it is in this batch or an earlier one. A segment released later waits for
            // the next batch.
            let dead: Vec<u64> = st
                .segments
                .iter()
                .take_while(|(_, c)| c.live == 0)
                .map(|(&s, _)| s)
                .collect();
            let mut chunks = std::mem::take(&mut stalled);
            chunks.append(&mut st.pending);
            (chunks, std::mem::take(&mut st.waiters), dead)
        };
        let retrying = shared.full.load(Relaxed);
        let bytes: usize = chunks.iter().map(|c| c.buf.len()).sum();
        let result = if shared.options.sync == SyncMode::Always {
            write_each(shared, &mut out, chunks, waiters)
        } else {
            match write_batch(shared, &mut out, &chunks) {
                Ok(()) => {
                    complete(shared, Ok(()), waiters);
                    recycle(shared, chunks);
                    Ok(())
                }
                Err(e) => Err((e, chunks, waiters)),
            }
        };
        match result {
            Ok(()) => {
                shared.stats.batches.fetch_add(1, Relaxed);
                // A batch of only the checkpoint just queued leaves nothing to prove.
                dirty |= bytes != checkpoint_len;
                if retrying {
                    leave_full(shared);
                }
                delete_dead_segments(shared, &dead);
            }
            Err((e, chunks, waiters)) if no_space(&e) && !shared.lock().closed => {
                match stall(shared, &mut out, &e, chunks, waiters) {
                    Ok(kept) => stalled = kept,
                    Err(e) => {
                        record_fence(shared, out.synced);
                        fail_everything(shared, &e, Vec::new())
                    }
                }
            }
            Err((e, _, waiters)) => {
                record_fence(shared, out.synced);
                fail_everything(shared, &e, waiters)
            }
        }
    }
}

/// Gives the buffers of written chunks back for reuse, emptied; a buffer grown past two
/// batch bounds (one huge record) is freed instead.
fn recycle(shared: &Shared, chunks: Vec<Chunk>) {
    let mut st = shared.lock();
    for chunk in chunks {
        let mut buf = chunk.buf;
        if st.spare.len() < SPARE_BUFFERS && buf.capacity() as u64 <= 2 * MAX_BATCH_BYTES {
            buf.clear();
            st.spare.push(buf);
        }
    }
}

/// Records where the unacknowledged data starts (the marker next to the segments), so that
/// recovery drops what a failed sync left behind: those producers were told `rejected`.
fn record_fence(shared: &Shared, synced: RecordPos) {
    let at = (synced.segment, synced.offset);
    match super::super::manifest::record_fenced(&*shared.fs, &shared.dir, at) {
        Ok(()) => tracing::warn!(
            segment = at.0,
            offset = at.1,
            "journal: fenced; everything written from here on was never acknowledged and is \
             dropped at the next start"
        ),
        Err(e) => tracing::error!(
            segment = at.0,
            offset = at.1,
            error = %e,
            "journal: fenced, and the fence marker cannot be written: records of producers \
             told `rejected` may come back at the next start"
        ),
    }
}

/// Fences the store and fails every append waiting, now or already queued.
fn fail_everything(shared: &Shared, e: &StoreError, waiters: Vec<Waiter>) {
    shared.fence(e);
    complete(shared, Err(e), waiters);
    // Nothing more is written: complete whatever was appended meanwhile.
    let waiters = std::mem::take(&mut shared.lock().waiters);
    complete(shared, Err(e), waiters);
    shared.lock().pending.clear();
}

/// Whether `e` is a write or a segment creation refused for lack of space: a state to wait
/// out. A failed sync is never one (see the module doc).
fn no_space(e: &StoreError) -> bool {
    match e {
        StoreError::Io { op, source, .. } => {
            *op != "sync"
                && *op != "sync directory"
                && (source.kind() == std::io::ErrorKind::StorageFull
                    || source.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()))
        }
        _ => false,
    }
}

/// After a batch failed for lack of space: completes the waiters whose records were synced,
/// blanks and refuses the others, discards the unsynced bytes written, and returns the chunks
/// to write again (from the first byte not durable).
fn stall(
    shared: &Shared,
    out: &mut Out,
    e: &StoreError,
    chunks: Vec<Chunk>,
    waiters: Vec<Waiter>,
) -> Result<Vec<Chunk>, StoreError> {
    shared.enter_full(&format!("the disk is full ({e})"));
    let synced = out.synced;
    let mut kept: Vec<Chunk> = chunks
        .into_iter()
        .filter(|c| (c.segment, c.start) >= (synced.segment, synced.offset) && !c.buf.is_empty())
        .collect();
    // The bytes after the synced point in the open segment may have reached the page cache
    // (a write that succeeded before the one that failed, or part of the failed one).
    if out.file.seq() == synced.segment && out.file.write_offset() >= synced.offset {
        let end = kept
            .iter()
            .filter(|c| c.segment == synced.segment)
            .map(|c| c.start + c.buf.len() as u64)
            .max()
            .unwrap_or(out.file.write_offset())
            .max(out.file.write_offset());
        if end > synced.offset && synced.offset >= SEGMENT_HEADER_LEN {
            out.file.discard_unsynced(synced.offset, end)?;
        }
        out.unsynced = false;
    }
    let refused = WriteFailed::full(shared.full_error().to_string());
    let mut ok = Vec::new();
    for waiter in waiters {
        if waiter.end <= synced {
            ok.push(waiter);
            continue;
        }
        let start = waiter.start;
        if let Some(chunk) = kept.iter_mut().find(|c| {
            c.segment == start.segment
                && c.start <= start.offset
                && start.offset < c.start + c.buf.len() as u64
        }) {
            void_in_place(&mut chunk.buf[(start.offset - chunk.start) as usize..]);
        }
        shared.stats.refused_full.fetch_add(1, Relaxed);
        (waiter.done)(Err(refused.clone()));
    }
    complete(shared, Ok(()), ok);
    Ok(kept)
}

/// The disk took a stalled batch: leave the full state unless the floor still holds it.
fn leave_full(shared: &Shared) {
    if let Ok(true) = shared.above_floor() {
        if shared.full.swap(false, Relaxed) {
            tracing::warn!(dir = %shared.dir.display(), "journal: space is back; durable messages are accepted again");
        }
    }
}

/// What an idle writer does every tick: deletes the segments nothing needs (everything
/// appended so far is written, so their replacements are durable; under `sync = "never"` as
/// durable as anything is), and leaves the full state once there is room above the floor.
fn idle(shared: &Shared) {
    let dead: Vec<u64> = {
        let st = shared.lock();
        if !st.pending.is_empty() || st.fenced.is_some() {
            return;
        }
        st.segments
            .iter()
            .take_while(|(_, c)| c.live == 0)
            .map(|(&s, _)| s)
            .collect()
    };
    delete_dead_segments(shared, &dead);
    if shared.full.load(Relaxed) {
        leave_full(shared);
    }
}

/// Completes `waiters` with `result`.
fn complete(shared: &Shared, result: Result<(), &StoreError>, waiters: Vec<Waiter>) {
    let completion: Completion = result.map_err(WriteFailed::failed);
    if completion.is_ok() {
        shared
            .stats
            .requests
            .fetch_add(waiters.len() as u64, Relaxed);
    }
    for waiter in waiters {
        (waiter.done)(completion.clone());
    }
}

type Failed = (StoreError, Vec<Chunk>, Vec<Waiter>);

/// `sync = "always"`: writes up to each waiter's record and syncs, one waiter at a time. On
/// failure, returns what was not durable yet: the chunks from the failed piece on, and the
/// waiters not completed.
fn write_each(
    shared: &Shared,
    out: &mut Out,
    mut chunks: Vec<Chunk>,
    waiters: Vec<Waiter>,
) -> Result<(), Failed> {
    let mut waiters = waiters.into_iter();
    while let Some(waiter) = waiters.next() {
        let end = waiter.end;
        // Split off everything up to `end`.
        let mut head = Vec::new();
        while let Some(first) = chunks.first_mut() {
            let upto = if first.segment < end.segment {
                first.buf.len()
            } else {
                (end.offset - first.start) as usize
            };
            let piece = Chunk {
                segment: first.segment,
                capacity: first.capacity,
                start: first.start,
                buf: first.buf.split_to(upto.min(first.buf.len())),
                sync_before: std::mem::take(&mut first.sync_before),
            };
            first.start += piece.buf.len() as u64;
            let finished = first.buf.is_empty();
            let last = first.segment >= end.segment;
            if finished {
                chunks.remove(0);
            }
            head.push(piece);
            if last {
                break;
            }
        }
        if let Err(e) = write_batch(shared, out, &head) {
            if !no_space(&e) {
                shared.fence(&e);
            }
            head.append(&mut chunks);
            let mut left = vec![waiter];
            left.extend(waiters);
            return Err((e, head, left));
        }
        complete(shared, Ok(()), vec![waiter]);
    }
    // Records nobody waits for (settles) after the last waiter.
    write_batch(shared, out, &chunks).map_err(|e| (e, chunks, Vec::new()))
}

/// Writes `chunks` (rolling to new segments as they name them) and syncs, unless `never`.
fn write_batch(shared: &Shared, out: &mut Out, chunks: &[Chunk]) -> Result<(), StoreError> {
    let never = shared.options.sync == SyncMode::Never;
    let mut records_bytes = 0u64;
    for chunk in chunks {
        if chunk.buf.is_empty() {
            continue;
        }
        if chunk.sync_before && out.unsynced && !never {
            // The batch before reached its bound: synced before the next batch mark.
            out.file.sync()?;
            out.mark_synced();
        }
        if chunk.segment != out.file.seq() {
            // Every segment but the last is complete and synced before the next exists.
            if out.unsynced {
                out.file.sync()?;
                out.mark_synced();
            }
            out.file = Segment::create(&*shared.fs, &shared.dir, chunk.segment, chunk.capacity)?;
            out.mark_synced();
            shared.lock().written_segment = out.file.seq();
        }
        debug_assert_eq!(chunk.start, out.file.write_offset());
        out.file.write(&chunk.buf)?;
        out.unsynced = true;
        if never {
            out.synced = RecordPos {
                segment: out.file.seq(),
                offset: out.file.write_offset(),
            };
        }
        records_bytes += chunk.buf.len() as u64;
    }
    if !never && out.unsynced {
        let started = Instant::now();
        out.file.sync()?;
        out.mark_synced();
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let bucket = SYNC_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(9);
        shared.stats.sync_us[bucket].fetch_add(1, Relaxed);
        shared.stats.sync_us_sum.fetch_add(us, Relaxed);
    }
    shared.stats.bytes.fetch_add(records_bytes, Relaxed);
    Ok(())
}

/// Deletes the oldest segments while nothing in them is live, among `dead` (those that were
/// dead before the batch just synced). Oldest first only: a later segment may hold the
/// settle of a message enqueued in an earlier one, and deleting it while the earlier one
/// stays would bring the message back at the next recovery.
fn delete_dead_segments(shared: &Shared, dead: &[u64]) {
    for &candidate in dead {
        let oldest = {
            let st = shared.lock();
            match st.segments.iter().next() {
                Some((&s, c)) if s == candidate && c.live == 0 && s < st.written_segment => s,
                _ => return,
            }
        };
        if let Err(e) = delete_segment(&*shared.fs, &shared.dir, oldest) {
            // Not fatal: the segment is read again at the next start, and its records are
            // all dead or superseded.
            tracing::warn!(segment = oldest, error = %e, "journal: cannot delete a dead segment");
            return;
        }
        shared.lock().segments.remove(&oldest);
        shared.stats.segments_deleted.fetch_add(1, Relaxed);
        tracing::debug!(segment = oldest, "journal: deleted a dead segment");
    }
}
