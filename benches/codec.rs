//! The frame codec on the message path: a 1 KiB transfer frame decoded (as a producer's
//! transfer arrives) and encoded (as a delivery leaves), and a message's sections parsed.

#![allow(clippy::unwrap_used, missing_docs)] // a bench or tool: a panic is a failed run, and criterion's macros make undocumented items

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice::codec::frame::{decode_amqp, decode_raw, Output};
use sluice::codec::transfer::{FirstFrame, Transfer};
use sluice::Message;

/// A 1 KiB message as clients send it: a header, properties with a message-id, and a data body.
fn message_1k() -> Bytes {
    let mut m = vec![0x00, 0x53, 0x70, 0xc0, 0x02, 0x01, 0x41];
    m.extend_from_slice(&[0x00, 0x53, 0x73, 0xc0, 0x03, 0x01, 0x52, 0x07]);
    m.extend_from_slice(&[0x00, 0x53, 0x75, 0xb0, 0x00, 0x00, 0x04, 0x00]);
    m.extend(std::iter::repeat_n(0xab, 1024));
    Bytes::from(m)
}

fn transfer_frame_1k() -> Vec<u8> {
    let transfer = Transfer {
        handle: 0,
        delivery_id: Some(12345),
        delivery_tag: Some(Bytes::from_static(&[0, 0, 0x30, 0x39])),
        message_format: Some(0),
        settled: Some(false),
        ..Transfer::default()
    };
    let mut out = Output::default();
    out.push_transfer(1, &transfer, &[message_1k()]);
    out.take_all()
}

fn decode(c: &mut Criterion) {
    let frame = transfer_frame_1k();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode 1 KiB transfer frame", |b| {
        b.iter_batched(
            || BytesMut::from(&frame[..]),
            |mut buf| {
                let raw = decode_raw(&mut buf, 65536).unwrap().unwrap();
                decode_amqp(raw).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    let message = message_1k();
    group.bench_function("parse 1 KiB message", |b| {
        b.iter(|| Message::parse(message.clone()).unwrap())
    });
    let parsed = Message::parse(message_1k()).unwrap();
    let first = FirstFrame {
        delivery_id: 12345,
        message_format: 0,
        settled: false,
    };
    group.bench_function("encode 1 KiB delivery frame", |b| {
        let mut out = Output::default();
        b.iter(|| {
            let (head, rest) = parsed.wire_chunks(0);
            let payload = [head.unwrap_or_default(), rest];
            out.push_delivery(1, 0, Some(&first), false, &payload);
            out.prepare();
            let n = out.len();
            out.advance(n);
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
