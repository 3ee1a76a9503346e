//! The producer gate (issue 12 §1): no link credit above the memory watermark or while the
//! store is full, and credit again once both clear.

use fe2o3_amqp_types::definitions::Role;
use fe2o3_amqp_types::performatives::Performative;

use super::{message, transfer, Harness};
use crate::codec::frame::{Body, Frame};
use crate::config::Config;

/// The link-credit of the last flow for `handle` among `frames`.
fn granted(frames: &[Frame], handle: u32) -> Option<u32> {
    frames.iter().rev().find_map(|f| match &f.body {
        Body::Performative(Performative::Flow(flow))
            if flow.handle.as_ref().is_some_and(|h| h.0 == handle) =>
        {
            flow.link_credit
        }
        _ => None,
    })
}

#[test]
fn a_producer_gets_no_credit_while_the_store_is_full_and_gets_it_when_it_has_room() {
    let mut h = Harness::new(&Config::default());
    h.open(65536);
    h.begin(0, 100);
    h.router.memory().set_store_full(true);
    let frames = h.attach(0, 0, Role::Sender, "q");
    assert_eq!(granted(&frames, 0), Some(0), "{frames:?}");
    assert_eq!(granted(&h.outputs(), 0), None);
    h.router.memory().set_store_full(false);
    assert_eq!(granted(&h.outputs(), 0), Some(1000));
}

#[test]
fn above_the_watermark_credit_is_withheld_until_usage_falls_below_the_low_one() {
    let config = Config {
        link_credit: 2,
        ..Config::default()
    };
    let mut h = Harness::new(&config);
    h.router.memory().set_watermarks(1000, 500);
    h.open(65536);
    h.begin(0, 100);
    assert_eq!(granted(&h.attach(0, 0, Role::Sender, "q"), 0), Some(2));
    // One message of 1200 bytes: above the watermark, so the spent credit is not renewed.
    let frames = h.send_transfer(0, transfer(0, Some(0), false), message(1200));
    assert_eq!(granted(&frames, 0), None, "{frames:?}");
    assert!(h.router.memory().status().alarm);
    // Consumed (here: purged), the message frees its bytes; the credit follows.
    let queue = h.router.get("q").expect("queue created");
    assert_eq!(queue.purge(), 1);
    assert!(!h.router.memory().status().alarm);
    assert_eq!(granted(&h.outputs(), 0), Some(2));
}
