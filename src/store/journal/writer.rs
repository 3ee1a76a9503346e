//! The journal's writer thread: it takes what the appenders buffered, writes it (creating
//! segments in order), syncs once per batch, completes the waiters, and deletes segments that
//! nothing needs any more.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::super::segment::{delete_segment, RecordPos, Segment, StoreError};
use super::super::{Completion, Done};
use super::{Chunk, Shared, SyncMode, SYNC_BUCKETS_US};

/// The writer thread: take everything appended, write it, sync once, complete the waiters,
/// delete segments that nothing needs any more; until closed and drained.
pub(super) fn run(shared: &Shared, mut file: Segment) {
    let mut unsynced = false;
    loop {
        let (chunks, waiters, dead) = {
            let mut st = shared.lock();
            while st.pending.is_empty() && !st.closed {
                st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.pending.is_empty() {
                break;
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
            (
                std::mem::take(&mut st.pending),
                std::mem::take(&mut st.waiters),
                dead,
            )
        };
        let result = if shared.options.sync == SyncMode::Always {
            write_each(shared, &mut file, &mut unsynced, chunks, waiters)
        } else {
            let r = write_batch(shared, &mut file, &mut unsynced, &chunks);
            complete(shared, r, waiters)
        };
        match result {
            Ok(()) => {
                shared.stats.batches.fetch_add(1, Relaxed);
                delete_dead_segments(shared, &dead);
            }
            Err(e) => {
                shared.fence(&e);
                // Nothing more is written: complete whatever was appended meanwhile.
                let waiters = std::mem::take(&mut shared.lock().waiters);
                for (_, done) in waiters {
                    done(Err(e.to_string()));
                }
                shared.lock().pending.clear();
            }
        }
    }
}

/// Completes `waiters` with `result`.
fn complete(
    shared: &Shared,
    result: Result<(), StoreError>,
    waiters: Vec<(RecordPos, Done)>,
) -> Result<(), StoreError> {
    if let Err(e) = &result {
        // Fenced before anyone hears of the failure, so nobody appends after it.
        shared.fence(e);
    }
    let completion: Completion = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
    if completion.is_ok() {
        shared
            .stats
            .requests
            .fetch_add(waiters.len() as u64, Relaxed);
    }
    for (_, done) in waiters {
        done(completion.clone());
    }
    result
}

/// `sync = "always"`: writes up to each waiter's record and syncs, one waiter at a time.
fn write_each(
    shared: &Shared,
    file: &mut Segment,
    unsynced: &mut bool,
    chunks: Vec<Chunk>,
    waiters: Vec<(RecordPos, Done)>,
) -> Result<(), StoreError> {
    let mut chunks = chunks;
    let mut waiters = waiters.into_iter();
    for (end, done) in waiters.by_ref() {
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
        let r = write_batch(shared, file, unsynced, &head);
        if let Err(e) = complete(shared, r, vec![(end, done)]) {
            for (_, done) in waiters {
                done(Err(e.to_string()));
            }
            return Err(e);
        }
    }
    // Records nobody waits for (settles) after the last waiter.
    write_batch(shared, file, unsynced, &chunks)
}

/// Writes `chunks` (rolling to new segments as they name them) and syncs, unless `never`.
fn write_batch(
    shared: &Shared,
    file: &mut Segment,
    unsynced: &mut bool,
    chunks: &[Chunk],
) -> Result<(), StoreError> {
    let mut records_bytes = 0u64;
    for chunk in chunks {
        if chunk.buf.is_empty() {
            continue;
        }
        if chunk.segment != file.seq() {
            // Every segment but the last is complete and synced before the next exists.
            if *unsynced {
                file.sync()?;
                *unsynced = false;
            }
            *file = Segment::create(&*shared.fs, &shared.dir, chunk.segment, chunk.capacity)?;
            shared.lock().written_segment = file.seq();
        }
        debug_assert_eq!(chunk.start, file.write_offset());
        file.write(&chunk.buf)?;
        *unsynced = true;
        records_bytes += chunk.buf.len() as u64;
    }
    if shared.options.sync != SyncMode::Never && *unsynced {
        let started = Instant::now();
        file.sync()?;
        *unsynced = false;
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
