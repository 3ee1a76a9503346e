//! Fuzzes the frame codec and the connection engine together, the way the connection task
//! drives them (`src/transport/connection.rs`): the input is the byte stream a peer sends
//! after the protocol header. Every frame is cut with `decode_raw`, decoded with
//! `decode_amqp`, and handed to the engine; then the engine pumps deliveries, flushes and
//! ticks, and everything it wants to send must itself be a well-formed frame stream.
//!
//! The first input byte picks the size of the reads the stream arrives in (1 to 256 bytes,
//! or all at once), so partial frames are exercised as well.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice::codec::frame::{decode_amqp, decode_raw};
use sluice::testing::{feed_input, ConnWaker, Connection, EngineConfig, PeerInfo, Router};
use sluice::Config;

fuzz_target!(|data: &[u8]| {
    let Some((&chunking, stream)) = data.split_first() else {
        return;
    };
    let read_size = match chunking {
        0 => stream.len().max(1),
        n => usize::from(n),
    };
    let config = Config::default();
    let mut engine = Connection::new(
        EngineConfig::from(&config),
        Router::new(config.queues.clone()),
        ConnWaker::new(),
        PeerInfo {
            addr: SocketAddr::from(([127, 0, 0, 1], 5672)),
            user: None,
            permissions: None,
            max_queues: None,
            vhosts: None,
        },
        Instant::now(),
    );
    let start = Instant::now();
    let mut rbuf = BytesMut::new();
    for (i, chunk) in stream.chunks(read_size).enumerate() {
        rbuf.extend_from_slice(chunk);
        let now = start + Duration::from_millis(i as u64);
        feed_input(&mut engine, &mut rbuf, now);
        engine.pump();
        engine.flush();
        let _ = engine.tick(now);
        check_output(&engine.output().take_all());
        if engine.is_closed() {
            return;
        }
    }
    // The peer went away: everything it held goes back to the queues.
    engine.abandon();
    engine.pump();
    engine.flush();
    check_output(&engine.output().take_all());
});

/// What the broker sends must be whole, decodable AMQP frames (or heartbeats).
fn check_output(out: &[u8]) {
    let mut buf = BytesMut::from(out);
    while !buf.is_empty() {
        let raw = decode_raw(&mut buf, u32::MAX)
            .unwrap_or_else(|e| panic!("the engine wrote a bad frame header: {e}"))
            .unwrap_or_else(|| panic!("the engine wrote a partial frame: {:02x?}", &buf[..]));
        if let Err(e) = decode_amqp(raw) {
            panic!("the engine wrote a frame that does not decode: {e}");
        }
    }
}
