//! Per-connection and per-user caps (issue 16), black-box with fe2o3-amqp: sessions and links
//! per connection, unsettled deliveries per consumer link, connections and created queues per
//! user, and an anonymous peer acting as a configured user. Going over a cap ends only the
//! session, link or connection that asked, with `amqp:resource-limit-exceeded` naming the cap;
//! whatever else the connection has goes on.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::{ReceiverAttachError, SenderAttachError};
use fe2o3_amqp::types::definitions::{AmqpError, Error};
use fe2o3_amqp::types::performatives::Performative;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sluice::BrokerHandle;
use support::raw::{amqp_frame, attach_sender, begin, transfer, RawPeer, SMALL_MESSAGE};

const STEP: Duration = Duration::from_secs(10);

const USERS: &str = r#"
[auth]
anonymous = "loopback"
anonymous_user = "guest"

[[users]]
name = "app"
password = "pw"
max_connections = 2
max_queues = 2

[[users]]
name = "guest"
password = "pw"
permissions = [{ address = "public.#", allow = ["send", "consume", "manage"] }]
"#;

async fn open(broker: &BrokerHandle, user: Option<&str>) -> Result<ConnectionHandle<()>, String> {
    let addr = broker.local_addrs()[0];
    let url = match user {
        Some(user) => format!("amqp://{user}:pw@{addr}"),
        None => format!("amqp://{addr}"),
    };
    Connection::open("caps", url.as_str())
        .await
        .map_err(|e| format!("{e:?}"))
}

fn over_cap(e: &Error, cap: &str) -> bool {
    e.condition == AmqpError::ResourceLimitExceeded.into()
        && e.description.as_deref().is_some_and(|d| d.contains(cap))
}

/// Sends one message to `queue` and takes it back, on a session of its own.
async fn round_trip(connection: &mut ConnectionHandle<()>, queue: &str) {
    let mut session = Session::begin(connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "rt-s", queue).await.unwrap();
    sender.send("still here").await.unwrap();
    sender.close().await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "rt-r", queue).await.unwrap();
    let delivery = tokio::time::timeout(STEP, receiver.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.body(), "still here");
    receiver.accept(&delivery).await.unwrap();
    receiver.close().await.unwrap();
    session.end().await.unwrap();
}

fn resource_limit(error: Option<&Error>, cap: &str) -> bool {
    error.is_some_and(|e| over_cap(e, cap))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_the_cap_is_ended_and_the_others_go_on() {
    let broker =
        support::broker::start_with_toml("[limits]\nmax_sessions_per_connection = 2\n").await;
    let mut peer = RawPeer::opened(broker.local_addrs()[0], "sessions").await;
    for channel in 0..3 {
        peer.send(&amqp_frame(channel, &begin(), &[])).await;
    }
    let mut ended = None;
    let mut begun = 0;
    while ended.is_none() {
        match peer.read_skipping_flows().await {
            (_, Performative::Begin(_)) => begun += 1,
            (channel, Performative::End(end)) => ended = Some((channel, end)),
            other => panic!("unexpected {other:?}"),
        }
    }
    let (channel, end) = ended.unwrap();
    assert_eq!(
        (begun, channel),
        (3, 2),
        "the third is answered, then ended"
    );
    assert!(
        resource_limit(end.error.as_ref(), "max_sessions_per_connection"),
        "{end:?}"
    );
    // The first session still carries a producer and its message.
    peer.send(&amqp_frame(0, &attach_sender("p", 0, "caps.sessions"), &[]))
        .await;
    assert!(matches!(
        peer.read_skipping_flows().await,
        (0, Performative::Attach(_))
    ));
    let mut delivery = transfer(0, 0);
    if let Performative::Transfer(t) = &mut delivery {
        t.settled = Some(false);
    }
    peer.send(&amqp_frame(0, &delivery, &SMALL_MESSAGE)).await;
    assert!(matches!(
        peer.read_skipping_flows().await,
        (0, Performative::Disposition(_))
    ));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_past_the_cap_is_refused_and_the_others_go_on() {
    let broker = support::broker::start_with_toml("[limits]\nmax_links_per_connection = 2\n").await;
    let mut connection = open(&broker, None).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut first = Sender::attach(&mut session, "a", "caps.links")
        .await
        .unwrap();
    let mut second = Sender::attach(&mut session, "b", "caps.links")
        .await
        .unwrap();
    let mut other = Session::begin(&mut connection).await.unwrap();
    match Sender::attach(&mut other, "c", "caps.links").await {
        Err(SenderAttachError::RemoteClosedWithError(e)) => {
            assert!(over_cap(&e, "max_links_per_connection"), "{e:?}")
        }
        other => panic!("the third link must be refused: {other:?}"),
    }
    first.send("a").await.unwrap();
    second.send("b").await.unwrap();
    // Once one closes, there is a place again.
    first.close().await.unwrap();
    let mut third = Session::begin(&mut connection).await.unwrap();
    let mut receiver = Receiver::attach(&mut third, "r", "caps.links")
        .await
        .unwrap();
    let delivery = receiver.recv::<String>().await.unwrap();
    assert_eq!(delivery.body(), "a");
    receiver.accept(&delivery).await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_holds_at_most_max_unsettled_deliveries_whatever_its_credit() {
    let broker = support::broker::start_with_toml("[limits]\nmax_unsettled_per_link = 5\n").await;
    let mut connection = open(&broker, None).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "caps.unsettled")
        .await
        .unwrap();
    for i in 0..20 {
        sender.send(format!("m{i}")).await.unwrap();
    }
    // fe2o3's receiver grants 200 credit at once.
    let mut receiver = Receiver::attach(&mut session, "r", "caps.unsettled")
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(receiver.recv::<String>().await.unwrap());
    }
    let sixth = tokio::time::timeout(Duration::from_millis(500), receiver.recv::<String>()).await;
    assert!(
        sixth.is_err(),
        "a sixth delivery came while five were unsettled"
    );
    // Settling one lets one more through; settling as they come takes the rest.
    receiver.accept(&held.remove(0)).await.unwrap();
    let sixth = tokio::time::timeout(STEP, receiver.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sixth.body(), "m5");
    receiver.accept(&sixth).await.unwrap();
    for delivery in held {
        receiver.accept(&delivery).await.unwrap();
    }
    for i in 6..20 {
        let d = tokio::time::timeout(STEP, receiver.recv::<String>())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.body(), &format!("m{i}"));
        receiver.accept(&d).await.unwrap();
    }
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_past_max_connections_is_refused_until_one_closes() {
    let broker = support::broker::start_with_toml(USERS).await;
    let mut first = open(&broker, Some("app")).await.unwrap();
    let mut second = open(&broker, Some("app")).await.unwrap();
    // The broker answers the open, then closes with the reason (as for broker.max_connections):
    // fe2o3 reports it on the open or on the close.
    let refusal = match open(&broker, Some("app")).await {
        Err(e) => e,
        Ok(mut third) => format!("{:?}", third.close().await),
    };
    assert!(
        refusal.contains("ResourceLimitExceeded") && refusal.contains("max_connections"),
        "{refusal}"
    );
    // Another user is not affected, and the two open ones still work.
    let mut guest = open(&broker, Some("guest")).await.unwrap();
    round_trip(&mut guest, "public.x").await;
    round_trip(&mut second, "caps.conn").await;
    first.close().await.unwrap();
    let mut again = open(&broker, Some("app")).await.unwrap();
    round_trip(&mut again, "caps.conn").await;
    for c in [second, again, guest].iter_mut() {
        c.close().await.unwrap();
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_creates_at_most_max_queues_queues() {
    let broker = support::broker::start_with_toml(USERS).await;
    let mut connection = open(&broker, Some("app")).await.unwrap();
    round_trip(&mut connection, "mine.1").await;
    round_trip(&mut connection, "mine.2").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    match Receiver::attach(&mut session, "r", "mine.3").await {
        Err(ReceiverAttachError::RemoteClosedWithError(e)) => {
            assert!(over_cap(&e, "max_queues"), "{e:?}")
        }
        other => panic!("a third queue must be refused: {other:?}"),
    }
    let names = broker.queue_names();
    assert!(names.iter().any(|n| n == "mine.2") && !names.iter().any(|n| n == "mine.3"));
    // Queues that exist are used as before.
    round_trip(&mut connection, "mine.1").await;
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_peer_has_the_permissions_of_anonymous_user() {
    let broker = support::broker::start_with_toml(USERS).await;
    let mut connection = open(&broker, None).await.unwrap();
    round_trip(&mut connection, "public.news").await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    match Sender::attach(&mut session, "s", "private.orders").await {
        Err(SenderAttachError::RemoteClosedWithError(e)) => {
            assert_eq!(e.condition, AmqpError::UnauthorizedAccess.into(), "{e:?}");
            assert!(e.description.unwrap().contains("'guest'"));
        }
        other => panic!("guest may not send to private.orders: {other:?}"),
    }
    connection.close().await.unwrap();
    broker.shutdown().await;
}
