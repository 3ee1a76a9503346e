//! The producer's per-frame step, without a connection, a socket or a queue.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::broker::memory::Memory;
use crate::engine::condition_name;
use crate::engine::ids::{DeliveryId, Serial};

fn producer(credit: u32, max_message_size: u64) -> Producer {
    Producer {
        target: None,
        coordinator: None,
        delivery_count: Serial(0),
        credit,
        incoming: None,
        settle_second: false,
        max_message_size,
    }
}

fn transfer(delivery_id: Option<u32>, more: bool) -> Transfer {
    Transfer {
        handle: 0,
        delivery_id,
        delivery_tag: None,
        message_format: delivery_id.map(|_| 0),
        settled: Some(false),
        more,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: false,
    }
}

fn hold_ctx(cap: u64) -> HoldCtx {
    HoldCtx {
        memory: Memory::new(),
        small: Arc::new(AtomicU64::new(0)),
        cap,
        large_elsewhere: false,
    }
}

fn condition(e: StepError) -> (&'static str, String) {
    match e {
        StepError::Link(f) => ("link", condition_name(&f.condition)),
        StepError::Connection(f) => ("connection", condition_name(&f.condition)),
    }
}

#[test]
fn a_single_frame_delivery_completes_and_takes_one_credit() {
    let mut p = producer(2, 0);
    let step = step(
        &mut p,
        "l",
        &transfer(Some(7), false),
        Bytes::from_static(b"abc"),
        None,
    );
    match step {
        Ok(Step::Complete(incoming)) => {
            assert_eq!((incoming.delivery_id, incoming.size), (DeliveryId(7), 3));
            assert_eq!(incoming.first, Bytes::from_static(b"abc"));
        }
        other => panic!("expected a complete delivery, got {other:?}"),
    }
    assert_eq!((p.credit, p.delivery_count), (1, Serial(1)));
}

#[test]
fn a_delivery_beyond_credit_breaks_only_its_link() {
    let mut p = producer(0, 0);
    let e = step(&mut p, "l", &transfer(Some(0), false), Bytes::new(), None).unwrap_err();
    assert_eq!(
        condition(e),
        ("link", "amqp:link:transfer-limit-exceeded".to_owned())
    );
}

#[test]
fn frames_are_joined_and_the_continuation_takes_no_credit() {
    let mut p = producer(5, 0);
    let ctx = hold_ctx(1 << 20);
    let first = step(
        &mut p,
        "l",
        &transfer(Some(1), true),
        Bytes::from_static(b"ab"),
        Some(&ctx),
    );
    assert!(
        matches!(first, Ok(Step::More { designate: false })),
        "{first:?}"
    );
    assert!(p.incoming.is_some());
    let last = step(
        &mut p,
        "l",
        &transfer(None, false),
        Bytes::from_static(b"cd"),
        None,
    );
    match last {
        Ok(Step::Complete(incoming)) => {
            assert_eq!(incoming.size, 4);
            assert_eq!(incoming.rest, [Bytes::from_static(b"cd")]);
        }
        other => panic!("expected a complete delivery, got {other:?}"),
    }
    assert_eq!(p.credit, 4, "one delivery, one credit");
}

#[test]
fn a_message_over_the_size_limit_detaches_its_link() {
    let mut p = producer(5, 10);
    let e = step(
        &mut p,
        "l",
        &transfer(Some(0), false),
        Bytes::from(vec![0u8; 11]),
        None,
    )
    .unwrap_err();
    assert_eq!(
        condition(e),
        ("link", "amqp:link:message-size-exceeded".to_owned())
    );
}

#[test]
fn a_first_frame_without_delivery_id_is_a_connection_error() {
    let mut p = producer(5, 0);
    let e = step(&mut p, "l", &transfer(None, false), Bytes::new(), None).unwrap_err();
    assert_eq!(
        condition(e),
        ("connection", "amqp:invalid-field".to_owned())
    );
}

#[test]
fn an_aborted_delivery_leaves_nothing_behind() {
    let mut p = producer(5, 0);
    let ctx = hold_ctx(1 << 20);
    let first = step(
        &mut p,
        "l",
        &transfer(Some(1), true),
        Bytes::from_static(b"ab"),
        Some(&ctx),
    );
    assert!(matches!(first, Ok(Step::More { .. })));
    let mut abort = transfer(None, false);
    abort.aborted = true;
    let step = step(&mut p, "l", &abort, Bytes::new(), None);
    assert!(matches!(step, Ok(Step::Nothing)), "{step:?}");
    assert!(p.incoming.is_none());
    assert_eq!(ctx.memory.used(), 0, "its held bytes are released");
}

#[test]
fn a_second_delivery_past_the_incomplete_cap_is_refused_while_another_is_large() {
    let mut p = producer(5, 0);
    let mut ctx = hold_ctx(4);
    ctx.large_elsewhere = true;
    let e = step(
        &mut p,
        "l",
        &transfer(Some(1), true),
        Bytes::from_static(b"abcdef"),
        Some(&ctx),
    )
    .unwrap_err();
    assert_eq!(
        condition(e),
        ("link", "amqp:resource-limit-exceeded".to_owned())
    );
}
