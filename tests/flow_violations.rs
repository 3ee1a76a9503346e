//! A peer that breaks flow control loses only what it broke: a transfer beyond a link's credit
//! detaches that link (`amqp:link:transfer-limit-exceeded`), a transfer beyond a session's
//! incoming-window ends that session (`amqp:session:window-violation`); the connection and its
//! other sessions and links go on (issue 12 §7).
//!
//! Each test writes its frames in one TCP write, so they arrive together and no credit or
//! window is replenished between them.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::net::SocketAddr;

use fe2o3_amqp_types::definitions;
use fe2o3_amqp_types::performatives::{End, Performative};
use sluice::{BrokerHandle, Config};

use support::raw::{self, RawPeer};

async fn start(adjust: impl FnOnce(&mut Config)) -> (BrokerHandle, SocketAddr) {
    let mut config = support::broker::test_config();
    adjust(&mut config);
    let (broker, _url) = support::broker::start(config).await;
    let addr = broker.local_addrs()[0];
    (broker, addr)
}

/// Begins a session on `channel`.
async fn begin(peer: &mut RawPeer, channel: u16) {
    peer.send(&raw::amqp_frame(channel, &raw::begin(), &[]))
        .await;
    match peer.read_skipping_flows().await {
        (c, Performative::Begin(_)) if c == channel => {}
        other => panic!("expected begin on {channel}, got {other:?}"),
    }
}

/// Attaches a producer link `name` on `handle` and returns the credit the broker granted it.
async fn attach_producer(peer: &mut RawPeer, channel: u16, handle: u32, name: &str) -> u32 {
    peer.send(&raw::amqp_frame(
        channel,
        &raw::attach_sender(name, handle, &format!("flow-violations-{name}")),
        &[],
    ))
    .await;
    match peer.read_performative().await {
        (_, Performative::Attach(a)) => assert!(a.target.is_some(), "{a:?}"),
        other => panic!("expected attach, got {other:?}"),
    }
    loop {
        if let (c, Performative::Flow(flow)) = peer.read_performative().await {
            if c == channel && flow.handle.map(|h| h.0) == Some(handle) {
                return flow.link_credit.expect("link credit");
            }
        }
    }
}

/// `n` unsettled single-frame transfers on `handle`, delivery ids from `first`.
fn burst(channel: u16, handle: u32, first: u32, n: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for id in first..first + n {
        let Performative::Transfer(mut t) = raw::transfer(handle, id) else {
            unreachable!("raw::transfer builds a transfer")
        };
        t.settled = Some(false);
        bytes.extend_from_slice(&raw::amqp_frame(
            channel,
            &Performative::Transfer(t),
            &raw::SMALL_MESSAGE,
        ));
    }
    bytes
}

/// Reads until the broker settles delivery `id` on `channel`, and says with what.
async fn outcome_of(peer: &mut RawPeer, channel: u16, id: u32) -> definitions::Role {
    loop {
        match peer.read_performative().await {
            (c, Performative::Disposition(d))
                if c == channel && d.first <= id && id <= d.last.unwrap_or(d.first) =>
            {
                assert!(
                    matches!(
                        d.state,
                        Some(fe2o3_amqp_types::messaging::DeliveryState::Accepted(_))
                    ),
                    "{d:?}"
                );
                return d.role;
            }
            (_, Performative::Close(c)) => panic!("the broker closed the connection: {c:?}"),
            _ => {}
        }
    }
}

fn condition(error: &definitions::Error) -> String {
    sluice::testing::condition_name(&error.condition)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_beyond_credit_detaches_only_that_link() {
    let (broker, addr) = start(|c| c.link_credit = 4).await;
    let mut peer = RawPeer::opened(addr, "beyond-credit").await;
    begin(&mut peer, 0).await;
    let credit = attach_producer(&mut peer, 0, 0, "greedy").await;
    assert_eq!(credit, 4);
    attach_producer(&mut peer, 0, 1, "polite").await;

    peer.send(&burst(0, 0, 0, credit + 1)).await;
    let error = loop {
        match peer.read_performative().await {
            (0, Performative::Detach(d)) => {
                assert_eq!(d.handle.0, 0, "{d:?}");
                assert!(d.closed, "{d:?}");
                break d.error.expect("the detach says why");
            }
            (_, Performative::Close(c)) => panic!("the broker closed the connection: {c:?}"),
            _ => {}
        }
    };
    assert_eq!(condition(&error), "amqp:link:transfer-limit-exceeded");
    assert!(error.description.is_some_and(|d| d.contains("greedy")));

    // The other link of the same session still delivers.
    peer.send(&burst(0, 1, credit + 1, 1)).await;
    outcome_of(&mut peer, 0, credit + 1).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_beyond_the_session_window_ends_only_that_session() {
    let (broker, addr) = start(|c| {
        c.session_window = 4;
        c.link_credit = 100;
    })
    .await;
    let mut peer = RawPeer::opened(addr, "beyond-window").await;
    begin(&mut peer, 0).await;
    attach_producer(&mut peer, 0, 0, "flood").await;
    begin(&mut peer, 1).await;
    attach_producer(&mut peer, 1, 0, "calm").await;

    peer.send(&burst(0, 0, 0, 10)).await;
    let error = loop {
        match peer.read_performative().await {
            (0, Performative::End(End { error })) => break error.expect("the end says why"),
            (_, Performative::Close(c)) => panic!("the broker closed the connection: {c:?}"),
            _ => {}
        }
    };
    assert_eq!(condition(&error), "amqp:session:window-violation");
    assert!(error.description.is_some_and(|d| !d.is_empty()));

    // Frames still in flight on the ended session are discarded; our `end` frees the
    // channel, and the other session goes on meanwhile.
    peer.send(&burst(0, 0, 10, 2)).await;
    peer.send(&raw::amqp_frame(
        0,
        &Performative::End(End { error: None }),
        &[],
    ))
    .await;
    peer.send(&burst(1, 0, 0, 1)).await;
    outcome_of(&mut peer, 1, 0).await;
    begin(&mut peer, 0).await;
    broker.shutdown().await;
}
