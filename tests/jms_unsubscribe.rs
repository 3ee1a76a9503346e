//! Qpid JMS's durable-subscription lifecycle, frame by frame (WIRE.md §2): subscribe with a
//! durable source, detach without closing (the subscription stays), then unsubscribe by
//! attaching a receiver with the same link name and a null source (the broker answers with
//! the stored source) and closing it. fe2o3-amqp cannot send a null source, so a raw peer does.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use fe2o3_amqp_types::definitions::{AmqpError, ErrorCondition, Handle, Role};
use fe2o3_amqp_types::messaging::{Source, TerminusDurability, TerminusExpiryPolicy};
use fe2o3_amqp_types::performatives::{Attach, Detach, Performative};
use fe2o3_amqp_types::primitives::Symbol;
use support::raw::{self, RawPeer};

fn durable_subscriber(name: &str, handle: u32, source: Option<Source>) -> Performative {
    let Performative::Attach(attach) = raw::attach_receiver(name, handle, "unused") else {
        unreachable!()
    };
    Performative::Attach(Attach {
        source: source.map(Box::new),
        ..attach
    })
}

fn detach(handle: u32, closed: bool) -> Performative {
    Performative::Detach(Detach {
        handle: Handle(handle),
        closed,
        error: None,
    })
}

/// Sends `attach` and returns the broker's answering attach, and its detach if it refused.
async fn attach(peer: &mut RawPeer, attach: Performative) -> (Attach, Option<Detach>) {
    peer.send(&raw::amqp_frame(0, &attach, &[])).await;
    let reply = match peer.read_skipping_flows().await {
        (0, Performative::Attach(a)) => a,
        other => panic!("expected attach, got {other:?}"),
    };
    assert_eq!(reply.role, Role::Sender);
    if reply.source.is_some() {
        return (reply, None);
    }
    match peer.read_skipping_flows().await {
        (0, Performative::Detach(d)) => (reply, Some(d)),
        other => panic!("expected detach after a refusal, got {other:?}"),
    }
}

async fn detached(peer: &mut RawPeer, handle: u32, closed: bool) {
    peer.send(&raw::amqp_frame(0, &detach(handle, closed), &[]))
        .await;
    match peer.read_skipping_flows().await {
        (0, Performative::Detach(d)) => {
            assert_eq!(d.handle.0, handle);
            assert!(d.error.is_none(), "{d:?}");
        }
        other => panic!("expected detach, got {other:?}"),
    }
}

#[tokio::test]
async fn qpid_jms_unsubscribes_with_a_null_source_and_a_closing_detach() {
    let (broker, _url) = support::broker::start(support::broker::test_config()).await;
    let addr = broker.local_addrs()[0];
    let mut peer = RawPeer::opened(addr, "jms-client").await;
    peer.send(&raw::amqp_frame(0, &raw::begin(), &[])).await;
    assert!(matches!(
        peer.read_skipping_flows().await,
        (0, Performative::Begin(_))
    ));

    // A durable subscriber, as Qpid JMS sends it.
    let source = Source {
        address: Some("amq.topic".into()),
        durable: TerminusDurability::UnsettledState,
        expiry_policy: TerminusExpiryPolicy::Never,
        capabilities: Some(vec![Symbol::from("topic")].into()),
        ..Source::default()
    };
    let (reply, refused) = attach(&mut peer, durable_subscriber("sub1", 0, Some(source))).await;
    assert!(refused.is_none(), "{refused:?}");
    assert_eq!(reply.name, "sub1");
    detached(&mut peer, 0, false).await;
    let queue = "jms-client:sub1".to_string();
    assert!(broker.queue_names().contains(&queue), "kept while detached");

    // Unsubscribe: the same link name, no source; the broker answers with what it stored.
    let (reply, refused) = attach(&mut peer, durable_subscriber("sub1", 1, None)).await;
    assert!(refused.is_none(), "{refused:?}");
    let stored = reply.source.unwrap();
    assert_eq!(stored.address.as_deref(), Some("amq.topic"));
    assert_eq!(stored.durable, TerminusDurability::UnsettledState);
    assert_eq!(stored.expiry_policy, TerminusExpiryPolicy::Never);
    assert!(
        broker.queue_names().contains(&queue),
        "not before the close"
    );
    detached(&mut peer, 1, true).await;
    assert!(
        !broker.queue_names().contains(&queue),
        "closing it unsubscribes"
    );

    // Unsubscribing again: there is nothing by that name, and the link alone says so.
    let (reply, refused) = attach(&mut peer, durable_subscriber("sub1", 2, None)).await;
    assert!(reply.source.is_none());
    let error = refused.unwrap().error.unwrap();
    assert_eq!(
        error.condition,
        ErrorCondition::AmqpError(AmqpError::NotFound)
    );
    assert!(error.description.unwrap().contains("'sub1'"));
    detached_by_peer_ack(&mut peer, 2).await;

    // The session and connection still serve: another link attaches.
    let (reply, refused) = attach(&mut peer, raw::attach_receiver("after", 3, "after")).await;
    assert!(refused.is_none() && reply.source.is_some());
    drop(peer);
    broker.shutdown().await;
}

/// Answers the broker's refusing detach of `handle` with ours, as a client does.
async fn detached_by_peer_ack(peer: &mut RawPeer, handle: u32) {
    peer.send(&raw::amqp_frame(0, &detach(handle, true), &[]))
        .await;
}
