//! Consumers' outcomes as the spec orders them (issue 13): a frame takes effect before the
//! frames after it on the connection — a message released and then asked for again comes back
//! first — and a `modified` outcome's message-annotations are merged into the message that is
//! delivered again (AMQP 1.0 §3.4.5), with fe2o3-amqp and with python-qpid-proton.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{Message, MessageAnnotations, Modified};
use fe2o3_amqp::types::primitives::{OrderedMap, Symbol, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use fe2o3_amqp_types::definitions::{Handle, Role};
use fe2o3_amqp_types::messaging::{DeliveryState, Released};
use fe2o3_amqp_types::performatives::{Disposition, Flow, Performative};
use support::proton;
use support::raw::{amqp_frame, attach_receiver, begin, link_flow, RawPeer};

const WAIT: Duration = Duration::from_secs(10);

async fn broker() -> (sluice::BrokerHandle, String, SocketAddr) {
    let (broker, url) = support::broker::start(support::broker::test_config()).await;
    let addr = broker.local_addrs()[0];
    (broker, url, addr)
}

/// Sends `bodies` to `queue`, each accepted before the next.
async fn fill(url: &str, queue: &str, bodies: &[&str]) {
    let mut connection = Connection::open("outcomes-fill", url).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "fill", queue).await.unwrap();
    for body in bodies {
        let outcome = sender.send(body.to_string()).await.unwrap();
        assert!(outcome.is_accepted(), "{outcome:?}");
    }
    sender.close().await.unwrap();
    session.end().await.unwrap();
    connection.close().await.unwrap();
}

/// Reads frames until a transfer; returns its delivery id and the body it carries, one of
/// `bodies` (found in the frame's bytes: the bodies are distinct strings).
async fn next_transfer(peer: &mut RawPeer, bodies: &[&str]) -> (u32, String) {
    loop {
        let frame = tokio::time::timeout(WAIT, peer.read_frame())
            .await
            .expect("a transfer in time")
            .expect("the connection stays open");
        if let Some(Performative::Transfer(t)) = frame.performative() {
            let body = bodies
                .iter()
                .find(|b| frame.body.windows(b.len()).any(|w| w == b.as_bytes()))
                .unwrap_or_else(|| panic!("no known body in {:02x?}", frame.body));
            return (t.delivery_id.expect("delivery id"), body.to_string());
        }
    }
}

#[tokio::test]
async fn a_message_released_before_a_flow_in_the_same_write_is_delivered_first() {
    let (broker, url, addr) = broker().await;
    let bodies = ["body-m0", "body-m1", "body-m2", "body-m3"];
    fill(&url, "order", &bodies).await;

    let mut peer = RawPeer::opened(addr, "outcomes-order").await;
    peer.send(&amqp_frame(0, &begin(), &[])).await;
    peer.send(&amqp_frame(0, &attach_receiver("r", 0, "order"), &[]))
        .await;
    peer.send(&amqp_frame(0, &link_flow(0, 1), &[])).await;
    let (id, body) = next_transfer(&mut peer, &bodies).await;
    assert_eq!(body, "body-m0");

    // Release m0 and ask for three more, in one TCP write: the release must take effect
    // first, so m0 is back at the head of the queue when the credit arrives.
    let release = Performative::Disposition(Disposition {
        role: Role::Receiver,
        first: id,
        last: None,
        settled: true,
        state: Some(DeliveryState::Released(Released {})),
        batchable: false,
    });
    let more = Performative::Flow(Flow {
        delivery_count: Some(1),
        link_credit: Some(3),
        handle: Some(Handle(0)),
        ..match link_flow(0, 3) {
            Performative::Flow(f) => f,
            _ => unreachable!(),
        }
    });
    let mut write = amqp_frame(0, &release, &[]);
    write.extend(amqp_frame(0, &more, &[]));
    peer.send(&write).await;

    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_transfer(&mut peer, &bodies).await.1);
    }
    assert_eq!(got, ["body-m0", "body-m1", "body-m2"]);
    broker.shutdown().await;
}

/// A message annotation of `message`, by symbol key.
fn annotation(message: &Message<String>, key: &str) -> Option<Value> {
    message
        .message_annotations
        .as_ref()?
        .0
        .get(&OwnedKey::from(Symbol::from(key)))
        .cloned()
}

#[tokio::test]
async fn modified_annotations_are_merged_into_the_redelivered_message() {
    let (broker, url, _) = broker().await;
    let mut connection = Connection::open("outcomes-modify", url.as_str())
        .await
        .unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "modify").await.unwrap();
    let message = Message::builder()
        .message_annotations(
            MessageAnnotations::builder()
                .insert(Symbol::from("x-opt-a"), Value::String("old".into()))
                .insert(Symbol::from("x-opt-keep"), Value::Int(7))
                .build(),
        )
        .value("modify-me".to_string())
        .build();
    assert!(sender.send(message).await.unwrap().is_accepted());

    let mut receiver = Receiver::attach(&mut session, "r", "modify").await.unwrap();
    let first = tokio::time::timeout(WAIT, receiver.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    let mut fields = OrderedMap::new();
    fields.insert(Symbol::from("x-opt-a"), Value::String("new".into()));
    fields.insert(Symbol::from("x-opt-b"), Value::Long(42));
    let modified = Modified {
        delivery_failed: Some(true),
        undeliverable_here: None,
        message_annotations: Some(fields),
    };
    receiver.modify(&first, modified).await.unwrap();

    let again = tokio::time::timeout(WAIT, receiver.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    let m = again.message();
    assert_eq!(m.body, "modify-me");
    assert_eq!(annotation(m, "x-opt-a"), Some(Value::String("new".into())));
    assert_eq!(annotation(m, "x-opt-b"), Some(Value::Long(42)));
    assert_eq!(annotation(m, "x-opt-keep"), Some(Value::Int(7)));
    assert_eq!(m.header.as_ref().map(|h| h.delivery_count), Some(1));
    receiver.accept(&again).await.unwrap();

    receiver.close().await.unwrap();
    sender.close().await.unwrap();
    session.end().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn modified_annotations_from_python_qpid_proton_are_merged() {
    tokio::task::spawn_blocking(proton::python)
        .await
        .expect("building the Python venv for python-qpid-proton failed");
    let (broker, _, addr) = broker().await;
    let address = format!("{addr}/proton-modify");
    let output = tokio::task::spawn_blocking(move || {
        proton::run_example(
            "modified_annotations.py",
            &["-a", &address],
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        output.assert_success(),
        "x-opt-a='new'\nx-opt-b=42\ndelivery-count=1\n",
        "{output}"
    );
    broker.shutdown().await;
}
