//! Bad input: every malformed byte stream a peer can send closes that connection with the
//! matching AMQP error condition and a description, and the broker goes on serving everyone
//! else. No input reaches a panic or overflows a stack (serde_amqp has no nesting limit;
//! the codec's pre-scan must stop deep values before serde_amqp sees them).
//!
//! Each test speaks raw bytes over TCP to an in-process broker (see `support::raw`), then
//! checks that a second, well-behaved connection still completes the open handshake.
//! `corpus_of_malformed_inputs_is_survived` replays `tests/corpus/malformed/*.bin`; the
//! ignored test `regenerate_the_malformed_corpus` writes those files.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fe2o3_amqp_types::messaging::DeliveryState;
use fe2o3_amqp_types::performatives::Performative;
use sluice::{BrokerHandle, Config};

use support::raw::{self, RawPeer, AMQP_HEADER, SASL_HEADER, TLS_HEADER, TYPE_AMQP, TYPE_SASL};

/// Depth of the nested values in the stack-overflow tests: far beyond what overflows a 2 MiB
/// worker stack through serde_amqp's recursion (about 3,000 levels).
const DEEP: usize = 100_000;

/// Starts a broker on an ephemeral loopback port, with `adjust` applied to the default config.
async fn start(adjust: impl FnOnce(&mut Config)) -> (BrokerHandle, SocketAddr) {
    let mut config = support::broker::test_config();
    adjust(&mut config);
    let (broker, _url) = support::broker::start(config).await;
    let addr = broker.local_addrs()[0];
    (broker, addr)
}

/// The broker survived: a fresh, well-behaved connection completes the open handshake and
/// closes cleanly. Then the broker is shut down.
async fn assert_still_serving_then_stop(broker: BrokerHandle, addr: SocketAddr) {
    let mut peer = RawPeer::opened(addr, "well-behaved").await;
    peer.send(&raw::amqp_frame(0, &raw::close(), &[])).await;
    match peer.read_performative().await {
        (0, Performative::Close(close)) => assert!(close.error.is_none(), "{close:?}"),
        other => panic!("expected close, got {other:?}"),
    }
    peer.expect_eof().await;
    tokio::time::timeout(Duration::from_secs(10), broker.shutdown())
        .await
        .expect("broker shutdown timed out");
}

/// Connects and exchanges the plain AMQP header, but sends no `open`.
async fn header_only(addr: SocketAddr) -> RawPeer {
    let mut peer = RawPeer::connect(addr).await;
    peer.send(&AMQP_HEADER).await;
    assert_eq!(peer.read_header().await, AMQP_HEADER);
    peer
}

/// An opened connection with a session on channel 0 and a sending link on handle 0 to
/// `address`; returns the link credit the broker granted.
async fn with_sender(addr: SocketAddr, address: &str) -> (RawPeer, u32) {
    let mut peer = RawPeer::opened(addr, "producer").await;
    peer.send(&raw::amqp_frame(0, &raw::begin(), &[])).await;
    match peer.read_performative().await {
        (0, Performative::Begin(_)) => {}
        other => panic!("expected begin, got {other:?}"),
    }
    peer.send(&raw::amqp_frame(
        0,
        &raw::attach_sender("p", 0, address),
        &[],
    ))
    .await;
    match peer.read_performative().await {
        (0, Performative::Attach(attach)) => assert!(attach.target.is_some(), "{attach:?}"),
        other => panic!("expected attach, got {other:?}"),
    }
    loop {
        if let (0, Performative::Flow(flow)) = peer.read_performative().await {
            if let (Some(_), Some(credit)) = (flow.handle, flow.link_credit) {
                return (peer, credit);
            }
        }
    }
}

/// Expects the broker to refuse the protocol header it was sent: it answers with the header
/// it does speak (SASL) and hangs up, without a frame.
async fn expect_header_refused(addr: SocketAddr, sent: &[u8]) {
    let mut peer = RawPeer::connect(addr).await;
    peer.send_lossy(sent).await;
    let (answer, eof) = peer.read_to_end(raw::ANSWER_TIMEOUT).await;
    assert!(eof, "the broker kept the connection open after {sent:02x?}");
    assert_eq!(answer, SASL_HEADER, "answer to {sent:02x?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_protocol_header_is_answered_with_our_header_then_eof() {
    let (broker, addr) = start(|_| {}).await;
    expect_header_refused(addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    expect_header_refused(addr, &[0xff; 8]).await;
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_header_without_tls_configured_is_answered_with_our_header_then_eof() {
    let (broker, addr) = start(|_| {}).await;
    expect_header_refused(addr, &TLS_HEADER).await;
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_amqp_version_is_answered_with_our_header_then_eof() {
    let (broker, addr) = start(|_| {}).await;
    expect_header_refused(addr, b"AMQP\x00\x01\x00\x01").await;
    expect_header_refused(addr, b"AMQP\x00\x02\x00\x00").await;
    expect_header_refused(addr, b"AMQP\x01\x01\x00\x00").await;
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_smaller_than_its_own_header_is_a_framing_error() {
    let (broker, addr) = start(|_| {}).await;
    let mut peer = RawPeer::opened(addr, "short-frame").await;
    peer.send(&[0, 0, 0, 4, 2, TYPE_AMQP, 0, 0]).await;
    peer.expect_closed_with("amqp:connection:framing-error")
        .await;

    // Before open as well.
    let mut peer = header_only(addr).await;
    peer.send(&[0, 0, 0, 0, 2, TYPE_AMQP, 0, 0]).await;
    peer.expect_closed_with("amqp:connection:framing-error")
        .await;
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_larger_than_max_frame_size_is_a_framing_error_before_its_body_arrives() {
    let (broker, addr) = start(|_| {}).await;
    let mut peer = RawPeer::opened(addr, "huge-frame").await;
    // Only the header of a 1 GiB frame: the broker must answer without waiting for the body.
    peer.send(&[0x40, 0, 0, 0, 2, TYPE_AMQP, 0, 0]).await;
    let started = Instant::now();
    let description = peer
        .expect_closed_with("amqp:connection:framing-error")
        .await;
    assert!(
        started.elapsed() < raw::ANSWER_TIMEOUT,
        "answered after {:?}",
        started.elapsed()
    );
    assert!(description.contains("max-frame-size"), "{description}");

    // Before open the limit is a few KiB: a 64 KiB frame is already too large.
    let mut peer = header_only(addr).await;
    peer.send(&[0, 1, 0, 0, 2, TYPE_AMQP, 0, 0]).await;
    peer.expect_closed_with("amqp:connection:framing-error")
        .await;
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_offset_below_2_is_a_framing_error() {
    let (broker, addr) = start(|_| {}).await;
    for doff in [0u8, 1] {
        let mut peer = RawPeer::opened(addr, "bad-doff").await;
        peer.send(&[0, 0, 0, 8, doff, TYPE_AMQP, 0, 0]).await;
        peer.expect_closed_with("amqp:connection:framing-error")
            .await;
    }
    // A data offset past the end of the frame is just as wrong.
    let mut peer = RawPeer::opened(addr, "doff-past-end").await;
    peer.send(&[0, 0, 0, 12, 200, TYPE_AMQP, 0, 0, 0x40, 0x40, 0x40, 0x40])
        .await;
    peer.expect_closed_with("amqp:connection:framing-error")
        .await;
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_a_performative_is_a_decode_error() {
    let (broker, addr) = start(|_| {}).await;
    let bodies: [&[u8]; 5] = [
        // A string.
        &[0xa1, 0x05, b'h', b'e', b'l', b'l', b'o'],
        // A described value with a descriptor no performative has.
        &[0x00, 0x53, 0x30, 0x45],
        // Not a format code at all.
        &[0xff, 0xff, 0xff, 0xff],
        // A begin whose list declares more bytes than the frame holds.
        &[0x00, 0x53, 0x11, 0xc0, 0x40, 0x02, 0x40, 0x43],
        // A flow with a field of the wrong type (a string for incoming-window).
        &[
            0x00, 0x53, 0x13, 0xc0, 0x07, 0x03, 0x43, 0xa1, 0x01, b'x', 0x43,
        ],
    ];
    for body in bodies {
        let mut peer = RawPeer::opened(addr, "not-a-performative").await;
        peer.send(&raw::frame(TYPE_AMQP, 0, body)).await;
        peer.expect_closed_with("amqp:decode-error").await;
    }
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_performative_nested_100000_described_values_deep_is_a_decode_error() {
    // Room for the whole frame, so the nesting itself is what gets refused.
    let (broker, addr) = start(|c| c.max_frame_size = 4 << 20).await;
    let body = raw::begin_with_property(&raw::nested_described(DEEP));
    let mut peer = RawPeer::opened(addr, "deep-described").await;
    peer.send(&raw::frame(TYPE_AMQP, 0, &body)).await;
    let description = peer.expect_closed_with("amqp:decode-error").await;
    assert!(description.contains("nested"), "{description}");
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_performative_nested_100000_lists_deep_is_a_decode_error() {
    let (broker, addr) = start(|c| c.max_frame_size = 4 << 20).await;
    let body = raw::begin_with_property(&raw::nested_lists(DEEP));
    let mut peer = RawPeer::opened(addr, "deep-lists").await;
    peer.send(&raw::frame(TYPE_AMQP, 0, &body)).await;
    let description = peer.expect_closed_with("amqp:decode-error").await;
    assert!(description.contains("nested"), "{description}");
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_performative_before_open_is_refused() {
    let (broker, addr) = start(|c| c.max_frame_size = 4 << 20).await;

    // 100,000 levels do not fit in the few KiB allowed before open: refused by size, before
    // the broker reads the body.
    let body = raw::begin_with_property(&raw::nested_described(DEEP));
    let mut peer = header_only(addr).await;
    peer.send_lossy(&raw::frame(TYPE_AMQP, 0, &body)).await;
    peer.expect_closed_with("amqp:connection:framing-error")
        .await;

    // 1,300 levels do fit (under 4 KiB): refused by depth.
    let body = raw::begin_with_property(&raw::nested_described(1_300));
    assert!(body.len() + 8 <= 4096, "{} bytes", body.len());
    let mut peer = header_only(addr).await;
    peer.send(&raw::frame(TYPE_AMQP, 0, &body)).await;
    peer.expect_closed_with("amqp:decode-error").await;
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_nested_100000_levels_deep_is_rejected_and_the_link_goes_on() {
    let (broker, addr) = start(|c| c.max_frame_size = 4 << 20).await;
    let (mut peer, _credit) = with_sender(addr, "deep-message").await;

    // An amqp-value section holding 100,000 nested described values, unsettled.
    let mut payload = vec![0x00, 0x53, 0x77];
    payload.extend_from_slice(&raw::nested_described(DEEP));
    let Performative::Transfer(mut transfer) = raw::transfer(0, 0) else {
        unreachable!()
    };
    transfer.settled = Some(false);
    peer.send(&raw::amqp_frame(
        0,
        &Performative::Transfer(transfer.clone()),
        &payload,
    ))
    .await;
    match peer.read_skipping_flows().await {
        (0, Performative::Disposition(d)) => match d.state {
            Some(DeliveryState::Rejected(rejected)) => {
                let error = rejected.error.expect("rejected says why");
                assert_eq!(
                    sluice::testing::condition_name(&error.condition),
                    "amqp:decode-error"
                );
            }
            other => panic!("expected rejected, got {other:?}"),
        },
        other => panic!("expected a disposition, got {other:?}"),
    }

    // The link still takes a good message.
    transfer.delivery_id = Some(1);
    transfer.delivery_tag = Some(vec![1].into());
    peer.send(&raw::amqp_frame(
        0,
        &Performative::Transfer(transfer),
        &raw::SMALL_MESSAGE,
    ))
    .await;
    match peer.read_skipping_flows().await {
        (0, Performative::Disposition(d)) => {
            assert!(matches!(d.state, Some(DeliveryState::Accepted(_))), "{d:?}");
        }
        other => panic!("expected a disposition, got {other:?}"),
    }
    peer.send(&raw::amqp_frame(0, &raw::close(), &[])).await;
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_on_a_channel_without_a_session_is_a_framing_error() {
    let (broker, addr) = start(|_| {}).await;
    let mut peer = RawPeer::opened(addr, "no-session").await;
    peer.send(&raw::amqp_frame(3, &raw::session_flow(), &[]))
        .await;
    let description = peer
        .expect_closed_with("amqp:connection:framing-error")
        .await;
    assert!(description.contains('3'), "{description}");

    // A transfer on a channel without a session, likewise.
    let mut peer = RawPeer::opened(addr, "no-session").await;
    peer.send(&raw::amqp_frame(
        9,
        &raw::transfer(0, 0),
        &raw::SMALL_MESSAGE,
    ))
    .await;
    peer.expect_closed_with("amqp:connection:framing-error")
        .await;
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_on_an_unattached_handle_is_an_unattached_handle_error() {
    let (broker, addr) = start(|_| {}).await;
    let mut peer = RawPeer::opened(addr, "unattached").await;
    peer.send(&raw::amqp_frame(0, &raw::begin(), &[])).await;
    match peer.read_performative().await {
        (0, Performative::Begin(_)) => {}
        other => panic!("expected begin, got {other:?}"),
    }
    peer.send(&raw::amqp_frame(
        0,
        &raw::transfer(7, 0),
        &raw::SMALL_MESSAGE,
    ))
    .await;
    peer.expect_closed_with("amqp:session:unattached-handle")
        .await;
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_twice_is_an_illegal_state() {
    let (broker, addr) = start(|_| {}).await;
    let mut peer = RawPeer::opened(addr, "twice").await;
    peer.send(&raw::amqp_frame(0, &raw::open("twice"), &[]))
        .await;
    peer.expect_closed_with("amqp:illegal-state").await;
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sasl_frame_after_the_amqp_header_is_a_framing_error() {
    let (broker, addr) = start(|_| {}).await;
    let mut peer = RawPeer::opened(addr, "sasl-late").await;
    peer.send(&raw::frame(TYPE_SASL, 0, &[0x00, 0x53, 0x41, 0x45]))
        .await;
    peer.expect_closed_with("amqp:connection:framing-error")
        .await;
    assert_still_serving_then_stop(broker, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sasl_init_declaring_a_huge_size_is_refused_without_waiting_for_it() {
    let (broker, addr) = start(|_| {}).await;
    let mut peer = RawPeer::connect(addr).await;
    peer.send(&SASL_HEADER).await;
    assert_eq!(peer.read_header().await, SASL_HEADER);
    peer.send(&[0x7f, 0xff, 0xff, 0xff, 2, TYPE_SASL, 0, 0])
        .await;
    // The broker sent sasl-mechanisms; after that it hangs up without waiting for 2 GiB.
    let mechanisms = peer.read_frame().await.expect("sasl-mechanisms");
    assert_eq!(mechanisms.frame_type, TYPE_SASL);
    let (_, eof) = peer.read_to_end(raw::ANSWER_TIMEOUT).await;
    assert!(eof, "the broker kept the connection open");
    assert_still_serving_then_stop(broker, addr).await;
}

// ---------------------------------------------------------------------------------------
// The corpus: raw byte streams a client might send after connecting, header included.

/// Where the corpus lives.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/malformed")
}

/// The credit the replaying broker grants, which `transfer-beyond-credit.bin` exceeds.
const CORPUS_LINK_CREDIT: u32 = 4;

/// Deterministic junk (xorshift), so the corpus regenerates byte for byte.
fn junk(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every corpus file: name and contents.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let cat = |parts: &[&[u8]]| parts.concat();
    let amqp = |channel, p: &Performative| raw::amqp_frame(channel, p, &[]);
    let open = amqp(0, &raw::open("corpus"));
    let begin = amqp(0, &raw::begin());
    let attach = amqp(0, &raw::attach_sender("p", 0, "corpus"));
    let transfer = |id| raw::amqp_frame(0, &raw::transfer(0, id), &raw::SMALL_MESSAGE);
    let opened = cat(&[&AMQP_HEADER, &open]);
    let with_link = cat(&[&opened, &begin, &attach]);

    let mut beyond_credit = with_link.clone();
    for id in 0..=CORPUS_LINK_CREDIT {
        beyond_credit.extend_from_slice(&transfer(id));
    }
    let mut deep_message = vec![0x00, 0x53, 0x77];
    deep_message.extend_from_slice(&raw::nested_described(1_000));
    let Performative::Transfer(mut unsettled) = raw::transfer(0, 0) else {
        unreachable!()
    };
    unsettled.settled = Some(false);
    let deep_message = raw::amqp_frame(0, &Performative::Transfer(unsettled), &deep_message);
    // A map of one pair whose value is an array32 claiming 2^32-1 nulls in 5 bytes.
    let huge_array = [0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40];
    let truncated_open = opened[..opened.len() - 5].to_vec();

    vec![
        (
            "http-request.bin",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        (
            "tls-client-hello.bin",
            cat(&[&TLS_HEADER, &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]]),
        ),
        (
            "amqp-version-0-2.bin",
            cat(&[b"AMQP\x00\x02\x00\x00", &open]),
        ),
        ("short-header.bin", b"AMQ".to_vec()),
        ("header-only.bin", AMQP_HEADER.to_vec()),
        (
            "random-junk-after-header.bin",
            cat(&[&AMQP_HEADER, &junk(1, 1024)]),
        ),
        (
            "random-junk-after-open.bin",
            cat(&[&opened, &junk(2, 1024)]),
        ),
        (
            "frame-size-4.bin",
            cat(&[&opened, &[0, 0, 0, 4, 2, 0, 0, 0]]),
        ),
        (
            "frame-too-large-no-body.bin",
            cat(&[&opened, &[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0]]),
        ),
        (
            "frame-too-large-before-open.bin",
            cat(&[&AMQP_HEADER, &[0, 0, 0x20, 0, 2, 0, 0, 0], &junk(3, 600)]),
        ),
        ("doff-0.bin", cat(&[&opened, &[0, 0, 0, 8, 0, 0, 0, 0]])),
        (
            "doff-past-end.bin",
            cat(&[
                &opened,
                &[0, 0, 0, 12, 0xff, 0, 0, 0, 0x40, 0x40, 0x40, 0x40],
            ]),
        ),
        ("truncated-open.bin", truncated_open),
        (
            "not-a-performative.bin",
            cat(&[&opened, &raw::frame(TYPE_AMQP, 0, b"\xa1\x05hello")]),
        ),
        (
            "unknown-descriptor.bin",
            cat(&[
                &opened,
                &raw::frame(TYPE_AMQP, 0, &[0x00, 0x53, 0x30, 0x45]),
            ]),
        ),
        (
            "list-size-lies.bin",
            cat(&[
                &opened,
                &raw::frame(
                    TYPE_AMQP,
                    0,
                    &[0x00, 0x53, 0x11, 0xc0, 0x40, 0x02, 0x40, 0x43],
                ),
            ]),
        ),
        (
            "list-count-lies.bin",
            cat(&[
                &opened,
                &raw::frame(TYPE_AMQP, 0, &[0x00, 0x53, 0x11, 0xc0, 0x02, 0xc8, 0x40]),
            ]),
        ),
        (
            "map-odd-count.bin",
            cat(&[
                &opened,
                &raw::frame(
                    TYPE_AMQP,
                    0,
                    &raw::begin_with_property(&[0xc1, 0x02, 0x01, 0x40]),
                ),
            ]),
        ),
        (
            "array-huge-count.bin",
            cat(&[
                &opened,
                &raw::frame(TYPE_AMQP, 0, &raw::begin_with_property(&huge_array)),
            ]),
        ),
        (
            "nested-described-before-open.bin",
            cat(&[
                &AMQP_HEADER,
                &raw::frame(
                    TYPE_AMQP,
                    0,
                    &raw::begin_with_property(&raw::nested_described(1_300)),
                ),
            ]),
        ),
        (
            "nested-lists-too-big-before-open.bin",
            cat(&[
                &AMQP_HEADER,
                &raw::frame(
                    TYPE_AMQP,
                    0,
                    &raw::begin_with_property(&raw::nested_lists(2_000)),
                ),
            ]),
        ),
        (
            "nested-described-after-open.bin",
            cat(&[
                &opened,
                &raw::frame(
                    TYPE_AMQP,
                    0,
                    &raw::begin_with_property(&raw::nested_described(5_000)),
                ),
            ]),
        ),
        ("nested-message.bin", cat(&[&with_link, &deep_message])),
        (
            "flow-on-unknown-channel.bin",
            cat(&[&opened, &amqp(3, &raw::session_flow())]),
        ),
        (
            "transfer-unattached-handle.bin",
            cat(&[
                &opened,
                &begin,
                &raw::amqp_frame(0, &raw::transfer(7, 0), &raw::SMALL_MESSAGE),
            ]),
        ),
        ("transfer-beyond-credit.bin", beyond_credit),
        ("open-twice.bin", cat(&[&opened, &open])),
        ("begin-twice.bin", cat(&[&opened, &begin, &begin])),
        (
            "close-before-open.bin",
            cat(&[&AMQP_HEADER, &amqp(0, &raw::close())]),
        ),
        (
            "sasl-frame-after-open.bin",
            cat(&[
                &opened,
                &raw::frame(TYPE_SASL, 0, &[0x00, 0x53, 0x41, 0x45]),
            ]),
        ),
        (
            "sasl-init-huge-size.bin",
            cat(&[
                &SASL_HEADER,
                &[0x7f, 0xff, 0xff, 0xff, 2, TYPE_SASL, 0, 0],
                &junk(4, 100),
            ]),
        ),
        (
            "sasl-init-garbage.bin",
            cat(&[&SASL_HEADER, &raw::frame(TYPE_SASL, 0, &junk(5, 64))]),
        ),
        (
            "sasl-init-nested.bin",
            cat(&[
                &SASL_HEADER,
                &raw::frame(TYPE_SASL, 0, &raw::nested_described(1_300)),
            ]),
        ),
    ]
}

#[test]
#[ignore = "writes tests/corpus/malformed; run by hand after changing corpus()"]
fn regenerate_the_malformed_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    for entry in std::fs::read_dir(&dir).expect("read the corpus directory") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "bin") {
            std::fs::remove_file(&path).expect("remove an old corpus file");
        }
    }
    for (name, bytes) in corpus() {
        std::fs::write(dir.join(name), bytes).expect("write a corpus file");
    }
}

#[test]
fn the_committed_corpus_matches_its_generator() {
    for (name, bytes) in corpus() {
        let on_disk = std::fs::read(corpus_dir().join(name)).unwrap_or_else(|e| {
            panic!("{name}: {e}; run the ignored regenerate_the_malformed_corpus")
        });
        assert!(
            on_disk == bytes,
            "{name} differs from corpus(); regenerate it"
        );
    }
}

/// Replays one corpus file: the broker must hang up by itself, or, for an input that stops
/// mid-frame and so leaves it waiting, once we stop sending. Returns whether it hung up
/// without being prompted.
async fn replay(addr: SocketAddr, name: String, bytes: Vec<u8>) -> (String, bool) {
    let mut peer = RawPeer::connect(addr).await;
    peer.send_lossy(&bytes).await;
    let (answer, by_itself) = peer.read_to_end(Duration::from_secs(4)).await;
    let mut answer = answer;
    if !by_itself {
        peer.finish_sending().await;
        let (rest, eof) = peer.read_to_end(raw::ANSWER_TIMEOUT).await;
        assert!(eof, "{name}: the broker did not hang up even after our EOF");
        answer.extend_from_slice(&rest);
    }
    assert!(
        answer.is_empty() || answer.starts_with(b"AMQP"),
        "{name}: the broker answered with something other than a protocol header: {:02x?}",
        &answer[..answer.len().min(16)]
    );
    (name, by_itself)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_of_malformed_inputs_is_survived() {
    let (broker, addr) = start(|c| c.link_credit = CORPUS_LINK_CREDIT).await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus/malformed exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "only {} corpus files", files.len());

    let mut replays = tokio::task::JoinSet::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).expect("read a corpus file");
        replays.spawn(replay(addr, name, bytes));
    }
    let mut waited_for_us = Vec::new();
    while let Some(result) = replays.join_next().await {
        let (name, by_itself) = result.expect("a replay panicked");
        if !by_itself {
            waited_for_us.push(name);
        }
    }
    waited_for_us.sort();
    // Only inputs that stop mid-header or mid-frame (or are fine so far) leave the broker
    // waiting for more.
    assert_eq!(
        waited_for_us,
        [
            "header-only.bin",
            "nested-message.bin",
            "short-header.bin",
            // Only the link is detached (tests/flow_violations.rs): the connection stays.
            "transfer-beyond-credit.bin",
            "truncated-open.bin"
        ],
        "these inputs did not make the broker hang up by itself"
    );
    assert_still_serving_then_stop(broker, addr).await;
}

// ---------------------------------------------------------------------------------------
// Seeds for the fuzz targets in tests/fuzz (see tests/fuzz/README.md).

/// A list8 (or list32, when large) of `fields`, each already encoded.
fn list(fields: &[&[u8]]) -> Vec<u8> {
    let content: Vec<u8> = fields.concat();
    let count = u8::try_from(fields.len()).expect("few fields");
    match u8::try_from(content.len() + 1) {
        Ok(size) if size < 0xff => [&[0xc0, size, count][..], &content].concat(),
        _ => {
            let size = u32::try_from(content.len() + 4).expect("fits");
            let count = u32::from(count);
            [
                &[0xd0][..],
                &size.to_be_bytes(),
                &count.to_be_bytes(),
                &content,
            ]
            .concat()
        }
    }
}

/// Message seeds: a bare amqp-value, and a message with every section the broker reads.
fn message_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let header = [&[0x00, 0x53, 0x70][..], &list(&[&[0x41], &[0x50, 0x04]])].concat();
    let annotations = [
        &[0x00, 0x53, 0x72, 0xc1, 0x19, 0x02][..],
        &[0xa3, 0x14],
        b"x-opt-delivery-delay",
        &[0x55, 0x10],
    ]
    .concat();
    let properties = [
        &[0x00, 0x53, 0x73][..],
        &list(&[
            &[0xa1, 0x02, b'i', b'd'], // message-id
            &[0x40],                   // user-id
            &[0xa1, 0x01, b'q'],       // to
            &[0xa1, 0x01, b's'],       // subject
            &[0x40],                   // reply-to
            &[0x40],                   // correlation-id
            &[0x40],                   // content-type
            &[0x40],                   // content-encoding
            &[0x40],                   // absolute-expiry-time
            &[0x40],                   // creation-time
            &[0xa1, 0x01, b'g'],       // group-id
            &[0x52, 0x01],             // group-sequence
        ]),
    ]
    .concat();
    let application = [
        &[0x00, 0x53, 0x74, 0xc1, 0x09, 0x02][..],
        &[0xa1, 0x01, b'k', 0x71, 0, 0, 0, 1],
    ]
    .concat();
    let data = [&[0x00, 0x53, 0x75, 0xa0, 0x03][..], b"abc"].concat();
    let full = [header, annotations, properties, application, data].concat();
    vec![("amqp-value", raw::SMALL_MESSAGE.to_vec()), ("full", full)]
}

/// Frame-stream seeds: a chunking byte (0: all at once), then frames after the header.
fn frame_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let amqp = |channel, p: &Performative| raw::amqp_frame(channel, p, &[]);
    let open = amqp(0, &raw::open("fuzz"));
    let begin = amqp(0, &raw::begin());
    let attach = amqp(0, &raw::attach_sender("p", 0, "q"));
    let full = &message_seeds()[1].1;
    let Performative::Transfer(mut unsettled) = raw::transfer(0, 1) else {
        unreachable!()
    };
    unsettled.settled = Some(false);
    let transfers = [
        raw::amqp_frame(0, &raw::transfer(0, 0), &raw::SMALL_MESSAGE),
        raw::amqp_frame(0, &Performative::Transfer(unsettled), full),
    ]
    .concat();
    // A consumer on the same queue, with credit: the engine sends deliveries back.
    let Performative::Attach(mut receiver) = raw::attach_sender("c", 1, "q") else {
        unreachable!()
    };
    receiver.role = fe2o3_amqp_types::definitions::Role::Receiver;
    receiver.source = Some(Box::new(fe2o3_amqp_types::messaging::Source {
        address: Some("q".into()),
        ..Default::default()
    }));
    let Performative::Flow(mut credit) = raw::session_flow() else {
        unreachable!()
    };
    credit.handle = Some(1.into());
    credit.delivery_count = Some(0);
    credit.link_credit = Some(10);
    let consume = [
        amqp(0, &Performative::Attach(receiver)),
        amqp(0, &Performative::Flow(credit)),
    ]
    .concat();
    let disposition = amqp(
        0,
        &Performative::Disposition(fe2o3_amqp_types::performatives::Disposition {
            role: fe2o3_amqp_types::definitions::Role::Receiver,
            first: 0,
            last: Some(1),
            settled: true,
            state: Some(DeliveryState::Accepted(
                fe2o3_amqp_types::messaging::Accepted {},
            )),
            batchable: false,
        }),
    );
    let close = amqp(0, &raw::close());
    let seq = |chunking: u8, parts: &[&[u8]]| [&[chunking][..], &parts.concat()].concat();
    vec![
        ("open", seq(0, &[&open, &close])),
        ("begin", seq(0, &[&open, &begin, &close])),
        ("attach", seq(0, &[&open, &begin, &attach])),
        ("transfer", seq(0, &[&open, &begin, &attach, &transfers])),
        (
            "consume",
            seq(
                0,
                &[
                    &open,
                    &begin,
                    &attach,
                    &transfers,
                    &consume,
                    &disposition,
                    &close,
                ],
            ),
        ),
        (
            "consume-in-small-reads",
            seq(7, &[&open, &begin, &attach, &transfers, &consume]),
        ),
    ]
}

#[test]
#[ignore = "writes tests/fuzz/corpus/{frames,message}; run by hand after changing the seeds"]
fn regenerate_the_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    for (target, seeds) in [("frames", frame_seeds()), ("message", message_seeds())] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("create the seed directory");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
        }
    }
}

#[test]
fn the_fuzz_seeds_are_valid_input() {
    use sluice::Message;
    for (name, bytes) in message_seeds() {
        Message::parse(bytes.into()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, bytes) in frame_seeds() {
        let mut buf = bytes::BytesMut::from(&bytes[1..]);
        while !buf.is_empty() {
            let raw = sluice::codec::frame::decode_raw(&mut buf, 65536)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .unwrap_or_else(|| panic!("{name}: a partial frame"));
            sluice::codec::frame::decode_amqp(raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    // The selector seeds are written by hand: each must compile in one dialect or the other.
    use sluice::testing::{Dialect, Selector};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/selector");
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            Selector::parse(&text, Dialect::Jms).is_ok()
                || Selector::parse(&text, Dialect::Sql).is_ok(),
            "{text}"
        );
    }
}

/// Resident memory of this process, in KiB (Linux).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

// After a frame error that leaves undecodable bytes at the front of the read buffer (a
// too-large frame header, say), nothing more can be framed; the broker must drop what the
// peer keeps sending during the close grace instead of buffering it (it once buffered
// ~500 MiB in 1.8 s). It measures the RSS of the whole test process, so the bound is loose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_after_a_fatal_frame_error_is_not_buffered_without_bound() {
    let (broker, addr) = start(|_| {}).await;
    let mut peer = RawPeer::opened(addr, "flood").await;
    peer.send(&[0x40, 0, 0, 0, 2, TYPE_AMQP, 0, 0]).await;
    let before = rss_kib();
    let chunk = vec![0u8; 1 << 20];
    let started = Instant::now();
    let mut sent_mib = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        match tokio::time::timeout(Duration::from_millis(200), peer.send_checked(&chunk)).await {
            Ok(true) => sent_mib += 1,
            _ => break,
        }
    }
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "the broker buffered {grown_mib} MiB of the {sent_mib} MiB sent after its close"
    );
    drop(peer);
    broker.shutdown().await;
}
