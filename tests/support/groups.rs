//! Helpers for the message-group tests (tests/groups.rs): a broker with per-queue settings, a
//! client whose links share one session, grouped messages, and receiving with exact credit.

use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::Delivery;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{AmqpValue, ApplicationProperties, Message, Properties};
use fe2o3_amqp::types::primitives::{SimpleValue, Symbol, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sluice::BrokerHandle;

/// How long a test waits for something that must happen.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(200);
/// The queue every test uses; settings go in `[queues.orders]`.
pub const Q: &str = "orders";
/// The marker key the first-for-consumer tests configure.
pub const FIRST_KEY: &str = "JMSXGroupFirstForConsumer";

/// A message whose body is a string.
pub type Msg = Message<AmqpValue<String>>;

/// Starts a broker on an ephemeral loopback port with `queue_toml` as its configuration.
pub async fn broker(queue_toml: &str) -> BrokerHandle {
    super::broker::start_with_toml(queue_toml).await
}

/// One connection with one session: a sender to [`Q`], and receivers added on demand. All
/// links share the session, so the broker sees their frames in the order the test sent them.
pub struct Client {
    conn: ConnectionHandle<()>,
    session: SessionHandle<()>,
    sender: Sender,
    sync: Sender,
}

impl Client {
    /// Connects to `broker` as container `name`, with Nagle off (fe2o3 leaves it on, which
    /// would add a delayed-ACK wait to some round trips).
    pub async fn connect(broker: &BrokerHandle, name: &str) -> Client {
        let stream = tokio::net::TcpStream::connect(broker.local_addrs()[0])
            .await
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut conn = Connection::builder()
            .container_id(name)
            .open_with_stream(stream)
            .await
            .unwrap();
        let mut session = Session::begin(&mut conn).await.unwrap();
        let sender = Sender::attach(&mut session, format!("{name}-sender"), Q)
            .await
            .unwrap();
        let sync = Sender::attach(&mut session, format!("{name}-sync"), "sync")
            .await
            .unwrap();
        Client {
            conn,
            session,
            sender,
            sync,
        }
    }

    /// Attaches a receiver named `name` to [`Q`] with manual credit, granting `credit` (none
    /// when 0). The attach is a round trip: the queue has the consumer when this returns.
    pub async fn receiver(&mut self, name: &str, credit: u32) -> Receiver {
        let mut receiver = Receiver::builder()
            .name(name)
            .source(Q)
            .credit_mode(CreditMode::Manual)
            .attach(&mut self.session)
            .await
            .unwrap();
        if credit > 0 {
            receiver.set_credit(credit).await.unwrap();
        }
        receiver
    }

    /// Sends `messages` to [`Q`] one by one, each accepted before the next. When this returns,
    /// the broker has queued them and dispatched what it could.
    pub async fn send(&mut self, messages: impl IntoIterator<Item = Msg>) {
        for m in messages {
            let outcome = tokio::time::timeout(WAIT, self.sender.send(m))
                .await
                .expect("send timed out")
                .unwrap();
            assert!(outcome.is_accepted(), "{outcome:?}");
        }
    }

    /// A round trip on the session (a message to the queue `sync`): when it returns, the broker
    /// has applied every frame sent before it on this session (credit, dispositions) and
    /// dispatched whatever they allowed.
    pub async fn sync(&mut self) {
        tokio::time::timeout(WAIT, self.sync.send("sync"))
            .await
            .expect("sync timed out")
            .unwrap();
    }

    /// Closes the connection; the broker treats every link on it as detached.
    pub async fn close(mut self) {
        self.conn.close().await.unwrap();
    }
}

/// A message with body `body`, the given properties and application properties.
pub fn message(body: &str, properties: Option<Properties>, app: &[(&str, SimpleValue)]) -> Msg {
    let application_properties = (!app.is_empty()).then(|| {
        app.iter()
            .fold(ApplicationProperties::builder(), |b, (k, v)| {
                b.insert(k.to_string(), v.clone())
            })
            .build()
    });
    Message::builder()
        .properties(properties)
        .application_properties(application_properties)
        .value(body.to_owned())
        .build()
}

/// A message of `group` (properties.group-id, where JMS puts JMSXGroupID).
pub fn grouped(body: &str, group: &str) -> Msg {
    let properties = Properties::builder().group_id(group.to_owned()).build();
    message(body, Some(properties), &[])
}

/// A message of no group.
pub fn ungrouped(body: &str) -> Msg {
    message(body, None, &[])
}

/// Receives one delivery, failing the test after [`WAIT`].
pub async fn recv(receiver: &mut Receiver) -> Delivery<String> {
    tokio::time::timeout(WAIT, receiver.recv::<String>())
        .await
        .unwrap_or_else(|_| panic!("nothing for {} within {WAIT:?}", receiver.name()))
        .unwrap()
}

/// Receives `n` deliveries, left unsettled.
pub async fn take(receiver: &mut Receiver, n: usize) -> Vec<Delivery<String>> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(recv(receiver).await);
    }
    got
}

/// Checks that nothing arrives for [`QUIET`].
pub async fn nothing_arrives(receiver: &mut Receiver) {
    let r = tokio::time::timeout(QUIET, receiver.recv::<String>()).await;
    assert!(r.is_err(), "{} got a delivery: {r:?}", receiver.name());
}

/// Receives `n` deliveries in all from `a` and `b`, whichever they come to.
pub async fn from_both(
    a: &mut Receiver,
    b: &mut Receiver,
    n: usize,
) -> (Vec<Delivery<String>>, Vec<Delivery<String>>) {
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let all = async {
        while got_a.len() + got_b.len() < n {
            tokio::select! {
                d = a.recv::<String>() => got_a.push(d.unwrap()),
                d = b.recv::<String>() => got_b.push(d.unwrap()),
            }
        }
    };
    tokio::time::timeout(WAIT, all)
        .await
        .unwrap_or_else(|_| panic!("fewer than {n} deliveries within {WAIT:?}"));
    (got_a, got_b)
}

/// The bodies, in order.
pub fn names(got: &[Delivery<String>]) -> Vec<String> {
    got.iter().map(|d| d.body().clone()).collect()
}

/// Sorts lists of bodies, so that which receiver got which list does not matter.
pub fn sorted<const N: usize>(mut lists: [Vec<String>; N]) -> [Vec<String>; N] {
    lists.sort();
    lists
}

/// The message's delivery-count (header).
pub fn delivery_count(d: &Delivery<String>) -> u32 {
    d.message().header.as_ref().map_or(0, |h| h.delivery_count)
}

/// The first-for-consumer marker ([`FIRST_KEY`]) as (message annotation, application property).
pub fn marker(d: &Delivery<String>) -> (Option<Value>, Option<SimpleValue>) {
    let m = d.message();
    let key = OwnedKey::from(Symbol::from(FIRST_KEY));
    let annotation = m
        .message_annotations
        .as_ref()
        .and_then(|a| a.0.get(&key).cloned());
    let property = m
        .application_properties
        .as_ref()
        .and_then(|p| p.0.get(FIRST_KEY).cloned());
    (annotation, property)
}

/// Checks the groups of [`Q`] as the broker reports them: (group, owner's link name, ready,
/// unacked), sorted by group; also that every owner is a live consumer with a link name.
#[track_caller]
pub fn assert_groups(broker: &BrokerHandle, expected: &[(&str, Option<&str>, usize, u32)]) {
    let groups = broker.queue_groups(Q).expect("the queue exists");
    for g in &groups {
        assert_eq!(g.owner.is_some(), g.owner_link.is_some(), "{g:?}");
    }
    let actual: Vec<(&str, Option<&str>, usize, u32)> = groups
        .iter()
        .map(|g| {
            (
                g.group.as_str(),
                g.owner_link.as_deref(),
                g.ready,
                g.unacked,
            )
        })
        .collect();
    assert_eq!(actual, expected);
    assert_eq!(broker.queue_stats(Q).unwrap().groups, groups.len());
}
