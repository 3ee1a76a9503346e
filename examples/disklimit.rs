//! The disk's own limit for a journal like sluice's (issue 17): sequential `pwrite` of a batch
//! into a preallocated segment, then `fdatasync`, over and over — what the journal does per
//! group commit, without a broker. Durable throughput is reported as a fraction of this.
//!
//! ```sh
//! cargo run --release --example disklimit -- --dir data --seconds 5 --batch-kib 4,64,256,1024
//! ```
//!
//! For each batch size: MB/s, batches (fdatasyncs) per second, fdatasync p50/p99, and the
//! 1 KiB messages per second that bandwidth carries (a journaled 1 KiB message is about
//! `--record-bytes`, 1100, bytes with its record header and the message's sections).

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Opts {
    /// Directory to write the test segment in (the broker's data_dir's file system).
    #[arg(long, default_value = "data")]
    dir: PathBuf,
    /// Seconds per batch size.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Batch sizes in KiB, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "4,64,256,1024")]
    batch_kib: Vec<u64>,
    /// Bytes one journaled 1 KiB message takes, for the msg/s column.
    #[arg(long, default_value_t = 1100)]
    record_bytes: u64,
    /// Segment size: preallocated like the journal's, rewritten from the start when full.
    #[arg(long, default_value_t = 64 << 20)]
    segment_bytes: u64,
}

fn main() {
    let opts = Opts::parse();
    std::fs::create_dir_all(&opts.dir).unwrap();
    let path = opts.dir.join("disklimit.tmp");
    println!("| batch | MB/s | fdatasync/s | fdatasync p50 / p99 | 1 KiB msg/s carried |");
    println!("|---:|---:|---:|---:|---:|");
    for kib in &opts.batch_kib {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        // Reserve the blocks first, as the journal does (posix_fallocate), and put them on disk.
        rustix::fs::fallocate(
            &file,
            rustix::fs::FallocateFlags::empty(),
            0,
            opts.segment_bytes,
        )
        .unwrap();
        file.sync_all().unwrap();
        let batch = vec![0x5au8; (*kib * 1024) as usize];
        let mut offset = 0u64;
        let mut written = 0u64;
        let mut syncs = Vec::new();
        let start = Instant::now();
        let run = Duration::from_secs_f64(opts.seconds);
        while start.elapsed() < run {
            if offset + batch.len() as u64 > opts.segment_bytes {
                offset = 0;
            }
            file.write_all_at(&batch, offset).unwrap();
            let t = Instant::now();
            file.sync_data().unwrap();
            syncs.push(t.elapsed());
            offset += batch.len() as u64;
            written += batch.len() as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        syncs.sort();
        let pct = |p: f64| syncs[((syncs.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
        println!(
            "| {kib} KiB | {:.1} | {:.0} | {:.2} / {:.2} ms | {:.1}k |",
            written as f64 / secs / 1e6,
            syncs.len() as f64 / secs,
            pct(0.5),
            pct(0.99),
            written as f64 / secs / opts.record_bytes as f64 / 1e3,
        );
        drop(file);
        std::fs::remove_file(&path).unwrap();
    }
}
