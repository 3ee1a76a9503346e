//! Helpers for the time-based queue tests (tests/time.rs): a broker with per-queue settings,
//! a client with one session, messages carrying scheduling annotations, header ttl or
//! absolute-expiry-time, receiving with manual credit and deadlines, polling the broker's
//! counters, a raw receiving link for what fe2o3 hides (the broker's own settlement of a
//! delivery), and the admin API's rewind and scheduled-message endpoints.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::Delivery;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{AmqpValue, Header, Message, MessageAnnotations, Properties};
use fe2o3_amqp::types::primitives::{Timestamp, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use fe2o3_amqp_types::definitions::{Handle, ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{DeliveryState, Source, Target, TargetArchetype};
use fe2o3_amqp_types::performatives::{Attach, Disposition, Flow, Performative};
use sluice::{BrokerHandle, QueueStats};
use tokio::time::Instant;

use super::clock::now_ms;
use super::http::{request, Answer};

/// How long a test waits for something that must happen (only a failing test waits this long).
pub const WAIT: Duration = Duration::from_secs(3);
/// How long a test waits to be sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(150);

/// A message whose body is a string.
pub type Msg = Message<AmqpValue<String>>;

/// Starts a broker on ephemeral loopback ports (AMQP and admin) with `queues_toml` (its
/// `[queues.*]` tables) as configuration.
pub async fn broker(queues_toml: &str) -> BrokerHandle {
    super::broker::start_with_toml(queues_toml).await
}

/// The timestamp `ms` milliseconds from now.
pub fn in_ms(ms: i64) -> Timestamp {
    Timestamp::from_milliseconds(now_ms() + ms)
}

/// One connection with one session; links are added on demand, each with a fresh name.
pub struct Client {
    conn: ConnectionHandle<()>,
    session: SessionHandle<()>,
    links: u32,
    sync: Option<Sender>,
}

impl Client {
    /// Connects to `broker` with Nagle off (fe2o3 leaves it on, which adds delayed-ACK waits
    /// to some round trips and would blur the timings measured here).
    pub async fn connect(broker: &BrokerHandle) -> Client {
        let stream = tokio::net::TcpStream::connect(broker.local_addrs()[0])
            .await
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut conn = Connection::builder()
            .container_id("time-test")
            .open_with_stream(stream)
            .await
            .unwrap();
        let session = Session::begin(&mut conn).await.unwrap();
        Client {
            conn,
            session,
            links: 0,
            sync: None,
        }
    }

    fn link_name(&mut self, kind: &str) -> String {
        self.links += 1;
        format!("{kind}-{}", self.links)
    }

    /// A sending link to `address`.
    pub async fn sender(&mut self, address: &str) -> Sender {
        let name = self.link_name("sender");
        Sender::attach(&mut self.session, name, address)
            .await
            .unwrap()
    }

    /// A receiving link from `address` with manual credit, granted `credit` (none when 0).
    /// The attach is a round trip: the queue has the consumer when this returns.
    pub async fn receiver(&mut self, address: &str, credit: u32) -> Receiver {
        let name = self.link_name("receiver");
        let mut receiver = Receiver::builder()
            .name(name)
            .source(address)
            .credit_mode(CreditMode::Manual)
            .attach(&mut self.session)
            .await
            .unwrap();
        if credit > 0 {
            receiver.set_credit(credit).await.unwrap();
        }
        receiver
    }

    /// A round trip on the session (a message to the queue `sync`): when it returns, the
    /// broker has applied every frame sent before it on this session (credit, dispositions).
    pub async fn sync(&mut self) {
        if self.sync.is_none() {
            self.sync = Some(self.sender("sync").await);
        }
        if let Some(sync) = self.sync.as_mut() {
            send(sync, text("sync")).await;
        }
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        self.conn.close().await.unwrap();
    }
}

/// Sends `message` and checks the broker accepted it: when this returns, the queue has it.
pub async fn send(sender: &mut Sender, message: Msg) {
    let outcome = tokio::time::timeout(WAIT, sender.send(message))
        .await
        .expect("send timed out")
        .unwrap();
    assert!(outcome.is_accepted(), "{outcome:?}");
}

/// A message with body `body` and nothing else.
pub fn text(body: &str) -> Msg {
    Message::builder().value(body.to_owned()).build()
}

/// A message with body `body` and these message annotations.
pub fn annotated(body: &str, annotations: &[(&str, Value)]) -> Msg {
    let map = annotations
        .iter()
        .fold(MessageAnnotations::builder(), |b, (k, v)| {
            b.insert(*k, v.clone())
        })
        .build();
    Message::builder()
        .message_annotations(map)
        .value(body.to_owned())
        .build()
}

/// A message with body `body` whose header says `ttl` ms.
pub fn with_ttl(body: &str, ttl: u32) -> Msg {
    Message::builder()
        .header(Header {
            ttl: Some(ttl),
            ..Header::default()
        })
        .value(body.to_owned())
        .build()
}

/// A message with body `body` whose properties say it expires at `at`.
pub fn expiring_at(body: &str, at: Timestamp) -> Msg {
    Message::builder()
        .properties(Properties::builder().absolute_expiry_time(at).build())
        .value(body.to_owned())
        .build()
}

/// Receives one delivery within `limit`, or None.
pub async fn recv_within(receiver: &mut Receiver, limit: Duration) -> Option<Delivery<String>> {
    match tokio::time::timeout(limit, receiver.recv::<String>()).await {
        Ok(d) => Some(d.expect("recv")),
        Err(_) => None,
    }
}

/// Receives one delivery, failing the test after [`WAIT`].
pub async fn recv(receiver: &mut Receiver) -> Delivery<String> {
    recv_within(receiver, WAIT)
        .await
        .unwrap_or_else(|| panic!("nothing for {} within {WAIT:?}", receiver.name()))
}

/// Checks that nothing arrives for `limit`.
pub async fn nothing_within(receiver: &mut Receiver, limit: Duration) {
    if let Some(d) = recv_within(receiver, limit).await {
        panic!("{} got {:?} within {limit:?}", receiver.name(), d.body());
    }
}

/// The message's delivery-count (header).
pub fn delivery_count(d: &Delivery<String>) -> u32 {
    d.message().header.as_ref().map_or(0, |h| h.delivery_count)
}

/// The message annotation `key`, if the delivery has it.
pub fn annotation(d: &Delivery<String>, key: &str) -> Option<Value> {
    d.message()
        .message_annotations
        .as_ref()
        .and_then(|a| a.0.get(&OwnedKey::from(key)).cloned())
}

/// The counters of `queue`, once `check` holds for them (polled for up to [`WAIT`]). The
/// broker applies dispositions and timers a moment after the client's call returns.
pub async fn eventually(
    broker: &BrokerHandle,
    queue: &str,
    what: &str,
    check: impl Fn(&QueueStats) -> bool,
) -> QueueStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = broker
            .queue_stats(queue)
            .unwrap_or_else(|| panic!("no queue {queue}"));
        if check(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} on {queue}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An `attach` of a receiving link (the peer consumes) from `address`, settling first.
pub fn attach_receiver(name: &str, handle: u32, address: &str) -> Performative {
    Performative::Attach(Attach {
        name: name.to_owned(),
        handle: Handle(handle),
        role: Role::Receiver,
        snd_settle_mode: SenderSettleMode::Unsettled,
        rcv_settle_mode: ReceiverSettleMode::First,
        source: Some(Box::new(Source {
            address: Some(address.to_owned()),
            ..Source::default()
        })),
        target: Some(Box::new(TargetArchetype::Target(Target::default()))),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: None,
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    })
}

/// A `flow` granting `credit` on the receiving link `handle`, which has received
/// `delivery_count` deliveries so far; with `echo`, the broker answers with its own flow.
pub fn link_flow(handle: u32, delivery_count: u32, credit: u32, echo: bool) -> Performative {
    Performative::Flow(Flow {
        next_incoming_id: Some(0),
        incoming_window: 2048,
        next_outgoing_id: 0,
        outgoing_window: 2048,
        handle: Some(Handle(handle)),
        delivery_count: Some(delivery_count),
        link_credit: Some(credit),
        available: None,
        drain: false,
        echo,
        properties: None,
    })
}

/// The receiver's settled `disposition` of delivery `delivery_id` with `state`.
pub fn settle(delivery_id: u32, state: DeliveryState) -> Performative {
    Performative::Disposition(Disposition {
        role: Role::Receiver,
        first: delivery_id,
        last: None,
        settled: true,
        state: Some(state),
        batchable: false,
    })
}

/// `POST /api/queues/{queue}/rewind` with body `{"to": to}`.
pub async fn rewind(admin: SocketAddr, queue: &str, to: serde_json::Value) -> Answer {
    let body = serde_json::json!({ "to": to }).to_string();
    let path = format!("/api/queues/{queue}/rewind");
    request(admin, "POST", &path, Some(&body), None).await
}

/// An RFC 3339 time from the admin API as ms since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339_weak(text).ok()?;
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// How much earlier than its due time a message may arrive: the broker reads its clock in
/// whole milliseconds, and a wall-clock due time (`x-opt-delivery-time`) is compared with a
/// clock that may differ from the test's by a few.
pub const EARLY: Duration = Duration::from_millis(20);
/// How much later than its due time a message must have arrived.
pub const LATE: Duration = Duration::from_secs(1);

/// Checks that something due `delay` after `start` happened in time: not before, and at most
/// [`LATE`] after.
#[track_caller]
pub fn assert_due(start: Instant, delay: Duration, what: &str) {
    let elapsed = start.elapsed();
    assert!(
        elapsed + EARLY >= delay,
        "{what} came after {elapsed:?}, before its delay of {delay:?}"
    );
    assert!(
        elapsed <= delay + LATE,
        "{what} came after {elapsed:?}, more than {LATE:?} past its delay of {delay:?}"
    );
}
