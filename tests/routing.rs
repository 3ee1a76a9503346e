//! Black-box tests of nodes and routing with the fe2o3-amqp client: temporary (dynamic)
//! queues and who owns them.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::Duration;

use fe2o3_amqp::link::ReceiverAttachError;
use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition};
use fe2o3_amqp::types::messaging::{DeleteOnNoLinks, Message, Source};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sluice::BrokerHandle;
use support::broker::{start, test_config};

const WAIT: Duration = Duration::from_secs(5);

async fn recv_text(receiver: &mut Receiver) -> String {
    let delivery = tokio::time::timeout(WAIT, receiver.recv::<String>())
        .await
        .expect("a delivery within 5 s")
        .expect("recv");
    receiver.accept(&delivery).await.unwrap();
    delivery.body().clone()
}

/// The one queue whose name starts with `sluice.dynamic.`.
fn dynamic_queue(broker: &BrokerHandle) -> Option<String> {
    broker
        .queue_names()
        .into_iter()
        .find(|n| n.starts_with("sluice.dynamic."))
}

async fn attach_dynamic(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    source: Source,
) -> Receiver {
    Receiver::builder()
        .name("replies")
        .source(source)
        .attach(session)
        .await
        .unwrap()
}

async fn send_one(url: &str, address: &str, body: &str) {
    let mut connection = Connection::open("replier", url).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "reply", address)
        .await
        .unwrap();
    sender
        .send(Message::builder().value(body.to_string()).build())
        .await
        .unwrap()
        .accepted_or_else(|o| o)
        .unwrap();
    // The replier's link goes after each reply, as a request/response server's may.
    sender.close().await.unwrap();
    session.end().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_temporary_queue_outlives_the_links_that_send_to_it_and_goes_with_its_owner() {
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("requester", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut replies = attach_dynamic(&mut session, Source::builder().dynamic(true).build()).await;
    let address = dynamic_queue(&broker).expect("a temporary queue");

    // Two replies, each from a sender link (and connection) that ends after sending.
    send_one(&url, &address, "first").await;
    send_one(&url, &address, "second").await;
    assert_eq!(recv_text(&mut replies).await, "first");
    assert_eq!(recv_text(&mut replies).await, "second");
    assert_eq!(dynamic_queue(&broker), Some(address.clone()));

    replies.close().await.unwrap();
    assert_eq!(
        dynamic_queue(&broker),
        None,
        "delete-on-close: it goes with its link"
    );
    session.end().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn only_the_owning_connection_consumes_from_a_temporary_queue() {
    let (broker, url) = start(test_config()).await;
    let mut owner = Connection::open("owner", url.as_str()).await.unwrap();
    let mut owner_session = Session::begin(&mut owner).await.unwrap();
    let mut replies =
        attach_dynamic(&mut owner_session, Source::builder().dynamic(true).build()).await;
    let address = dynamic_queue(&broker).unwrap();

    let mut other = Connection::open("other", url.as_str()).await.unwrap();
    let mut other_session = Session::begin(&mut other).await.unwrap();
    let mut keeps = Sender::attach(&mut other_session, "keeps", "work")
        .await
        .unwrap();
    let refused = Receiver::attach(&mut other_session, "steal", address.as_str()).await;
    match refused {
        Err(ReceiverAttachError::RemoteClosedWithError(e)) => {
            assert_eq!(
                e.condition,
                ErrorCondition::AmqpError(AmqpError::ResourceLocked)
            );
            let text = e.description.unwrap_or_default();
            assert!(text.contains("temporary queue"), "{text}");
        }
        other => panic!("expected resource-locked, got {other:?}"),
    }
    // The refusal ended that link only: the other connection's sender still works, and the
    // temporary queue is still there and still delivers to its owner.
    keeps
        .send(Message::builder().value("still here".to_string()).build())
        .await
        .unwrap()
        .accepted_or_else(|o| o)
        .unwrap();
    send_one(&url, &address, "for the owner").await;
    assert_eq!(recv_text(&mut replies).await, "for the owner");

    other.close().await.unwrap();
    owner.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        dynamic_queue(&broker),
        None,
        "closing the connection ends its links"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn delete_on_no_links_keeps_the_queue_while_any_link_is_attached() {
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("requester", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let source = Source::builder()
        .dynamic(true)
        .add_lifetime_policy(DeleteOnNoLinks {})
        .build();
    let replies = attach_dynamic(&mut session, source).await;
    let address = dynamic_queue(&broker).unwrap();

    let mut other = Connection::open("replier", url.as_str()).await.unwrap();
    let mut other_session = Session::begin(&mut other).await.unwrap();
    let sender = Sender::attach(&mut other_session, "reply", address.as_str())
        .await
        .unwrap();
    replies.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        dynamic_queue(&broker),
        Some(address),
        "a sender is still attached"
    );
    sender.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(dynamic_queue(&broker), None, "the last link went");
    other.close().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}
