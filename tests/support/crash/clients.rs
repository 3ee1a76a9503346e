//! The crash test's clients: producers that send at-least-once and resend after a crash,
//! consumers that accept everything and record it, and the state they share with the test.
//!
//! A connection belongs to one *incarnation* of the broker (one start of the process). The
//! test raises [`Shared::incarnation`] after each kill or stop and before the next start; a
//! client reads it before connecting and again once the connection is open, and retries if
//! it changed, so every record is tagged with the incarnation that really served it.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::Delivery;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::SenderSettleMode;
use fe2o3_amqp::types::messaging::{ApplicationProperties, Header, Message, Outcome};
use fe2o3_amqp::types::primitives::SimpleValue;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};

/// Queues; producer `p` sends to queue `p % QUEUES`, which has one consumer.
pub const QUEUES: u32 = 2;
/// Messages a producer has in flight (sent, outcome not yet known).
pub const WINDOW: usize = 64;
/// Longest wait for any one answer from a live broker.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting client looks whether its broker was restarted under it.
const CHECK: Duration = Duration::from_millis(50);
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(200);

/// One run of a producer's sending: from `first` to `end` (exclusive) on one connection.
#[derive(Debug, Clone, Copy)]
pub struct SendRun {
    pub producer: u32,
    pub incarnation: u32,
    pub first: u64,
    pub end: u64,
}

/// One delivery a consumer got.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub producer: u32,
    pub n: u64,
    pub incarnation: u32,
    /// The header's delivery-count: how many earlier deliveries the broker knows failed.
    pub delivery_count: u32,
}

/// What the test, the producers and the consumers share.
pub struct Shared {
    pub addr: SocketAddr,
    pub per_producer: u64,
    /// The start of the broker clients talk to now (see the module doc).
    pub incarnation: AtomicU32,
    /// Incarnations begun after a SIGKILL.
    pub after_kill: Mutex<Vec<u32>>,
    /// Incarnations begun after a clean stop (SIGTERM).
    pub after_clean_stop: Mutex<Vec<u32>>,
    /// Messages accepted, over all producers: the kill points are placed on it.
    pub accepted_total: AtomicU64,
    /// Set once every producer has had every message accepted.
    pub producers_done: AtomicBool,
    /// Per producer: its messages `0..acked` have been accepted.
    pub acked: Vec<AtomicU64>,
    pub runs: Mutex<Vec<SendRun>>,
    /// Every delivery, in the order each consumer got it.
    pub received: Mutex<Vec<Received>>,
    /// Connections given up (a kill, or a failure), by producers and consumers.
    pub reconnects: AtomicU64,
    pub last_error: Mutex<String>,
}

impl Shared {
    pub fn new(addr: SocketAddr, producers: u32, per_producer: u64) -> Shared {
        Shared {
            addr,
            per_producer,
            incarnation: AtomicU32::new(0),
            after_kill: Mutex::default(),
            after_clean_stop: Mutex::default(),
            accepted_total: AtomicU64::new(0),
            producers_done: AtomicBool::new(false),
            acked: (0..producers).map(|_| AtomicU64::new(0)).collect(),
            runs: Mutex::default(),
            received: Mutex::default(),
            reconnects: AtomicU64::new(0),
            last_error: Mutex::default(),
        }
    }

    /// Where the stream is, for a test that timed out.
    pub fn progress(&self) -> String {
        let acked: Vec<u64> = self.acked.iter().map(|a| a.load(SeqCst)).collect();
        format!(
            "accepted per producer {acked:?} of {} each; {} deliveries received; incarnation {}; \
             {} reconnects; last client error: {}",
            self.per_producer,
            self.received.lock().expect("lock").len(),
            self.incarnation.load(SeqCst),
            self.reconnects.load(SeqCst),
            self.last_error.lock().expect("lock"),
        )
    }

    fn gave_up(&self, why: String) {
        self.reconnects.fetch_add(1, SeqCst);
        *self.last_error.lock().expect("lock") = why;
    }

    fn start_run(&self, producer: u32, incarnation: u32, first: u64) -> usize {
        let mut runs = self.runs.lock().expect("lock");
        runs.push(SendRun {
            producer,
            incarnation,
            first,
            end: first,
        });
        runs.len() - 1
    }

    fn extend_run(&self, run: usize, end: u64) {
        self.runs.lock().expect("lock")[run].end = end;
    }
}

/// The producer that sends in transactions (issue 15): its messages count as accepted when
/// the commit of their batch is answered, and a batch cut short is sent again whole.
pub const TRANSACTIONAL: u32 = 1;
/// Messages per transaction of that producer.
const TXN_BATCH: u64 = 10;

/// Sends messages `0..per_producer` of `producer` until each has been accepted once,
/// reconnecting after any failure and resending from the first one not accepted.
pub async fn produce(shared: Arc<Shared>, producer: u32) {
    let mut backoff = Backoff::default();
    while shared.acked[producer as usize].load(SeqCst) < shared.per_producer {
        let sent = if producer == TRANSACTIONAL {
            send_in_transactions(&shared, producer, &mut backoff).await
        } else {
            send_from_first_unaccepted(&shared, producer, &mut backoff).await
        };
        if let Err(why) = sent {
            shared.gave_up(format!("producer {producer}: {why}"));
            backoff.wait().await;
        }
    }
}

async fn send_from_first_unaccepted(
    shared: &Shared,
    producer: u32,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let name = format!("producer-{producer}");
    let mut client = Client::connect(shared, &name).await?;
    backoff.reset();
    let inc = client.incarnation;
    // Unsettled: with a pre-settled transfer the client would report "accepted" itself.
    let attach = Sender::builder()
        .name(&name)
        .target(queue_name(producer % QUEUES))
        .sender_settle_mode(SenderSettleMode::Unsettled)
        .attach(&mut client.session);
    let mut sender = guarded(shared, inc, attach)
        .await?
        .map_err(|e| format!("attach: {e:?}"))?;
    let acked = &shared.acked[producer as usize];
    let mut next = acked.load(SeqCst);
    let run = shared.start_run(producer, inc, next);
    let mut window = VecDeque::with_capacity(WINDOW);
    loop {
        while next < shared.per_producer && window.len() < WINDOW {
            // Counted as sent before it goes: a send that fails may have reached the broker.
            shared.extend_run(run, next + 1);
            let sending = sender.send_batchable(message(producer, next));
            let outcome = guarded(shared, inc, sending)
                .await?
                .map_err(|e| format!("send n={next}: {e:?}"))?;
            window.push_back((next, outcome));
            next += 1;
        }
        let Some((n, outcome)) = window.pop_front() else {
            break;
        };
        match guarded(shared, inc, outcome).await? {
            Ok(Outcome::Accepted(_)) => {
                assert_eq!(acked.load(SeqCst), n, "outcomes out of order");
                acked.store(n + 1, SeqCst);
                shared.accepted_total.fetch_add(1, SeqCst);
            }
            Ok(other) => return Err(format!("n={n}: outcome {other:?}")),
            Err(e) => return Err(format!("n={n}: {e:?}")),
        }
    }
    let _ = guarded(shared, inc, sender.close()).await;
    client.close().await;
    Ok(())
}

/// Like [`send_from_first_unaccepted`], a batch of [`TXN_BATCH`] per transaction: posted,
/// then committed; accepted once the commit is answered.
async fn send_in_transactions(
    shared: &Shared,
    producer: u32,
    backoff: &mut Backoff,
) -> Result<(), String> {
    use fe2o3_amqp::transaction::{
        Controller, Transaction, TransactionDischarge, TransactionPosting,
    };
    let name = format!("producer-{producer}");
    let mut client = Client::connect(shared, &name).await?;
    backoff.reset();
    let inc = client.incarnation;
    let attach = Sender::attach(
        &mut client.session,
        name.as_str(),
        queue_name(producer % QUEUES),
    );
    let mut sender = guarded(shared, inc, attach)
        .await?
        .map_err(|e| format!("attach: {e:?}"))?;
    let controller = guarded(
        shared,
        inc,
        Controller::attach(&mut client.session, "controller"),
    )
    .await?
    .map_err(|e| format!("coordinator: {e:?}"))?;
    let acked = &shared.acked[producer as usize];
    loop {
        let first = acked.load(SeqCst);
        if first >= shared.per_producer {
            break;
        }
        let end = (first + TXN_BATCH).min(shared.per_producer);
        let run = shared.start_run(producer, inc, first);
        let txn = guarded(shared, inc, Transaction::declare(&controller, None))
            .await?
            .map_err(|e| format!("declare: {e:?}"))?;
        for n in first..end {
            shared.extend_run(run, n + 1);
            guarded(shared, inc, txn.post(&mut sender, message(producer, n)))
                .await?
                .map_err(|e| format!("post n={n}: {e:?}"))?;
        }
        guarded(shared, inc, txn.commit())
            .await?
            .map_err(|e| format!("commit {first}..{end}: {e:?}"))?;
        acked.store(end, SeqCst);
        shared.accepted_total.fetch_add(end - first, SeqCst);
    }
    let _ = guarded(shared, inc, controller.close()).await;
    let _ = guarded(shared, inc, sender.close()).await;
    client.close().await;
    Ok(())
}

/// Message `n` of `producer`: durable, numbered in its application properties.
fn message(producer: u32, n: u64) -> Message<fe2o3_amqp::types::messaging::AmqpValue<String>> {
    let properties = ApplicationProperties::builder()
        .insert("producer", SimpleValue::Uint(producer))
        .insert("n", SimpleValue::Ulong(n))
        .build();
    Message::builder()
        .header(Header::builder().durable(true).build())
        .application_properties(properties)
        .value(format!("producer {producer} message {n}"))
        .build()
}

/// The (producer, n) of a delivery, if it carries them.
fn numbered(delivery: &Delivery<String>) -> Option<(u32, u64)> {
    let properties = &delivery.message().application_properties.as_ref()?.0;
    match (properties.get("producer")?, properties.get("n")?) {
        (SimpleValue::Uint(p), SimpleValue::Ulong(n)) => Some((*p, *n)),
        _ => None,
    }
}

pub fn queue_name(queue: u32) -> String {
    format!("crash.{queue}")
}

/// Accepts and records everything queue `queue` delivers, reconnecting after failures,
/// until the producers are done and nothing has come for `idle`; then detaches cleanly, so
/// that the broker has every acceptance before the test goes on.
pub async fn consume(shared: Arc<Shared>, queue: u32, idle: Duration) {
    let mut backoff = Backoff::default();
    loop {
        match receive_until_idle(&shared, queue, idle, &mut backoff).await {
            Ok(()) => return,
            Err(why) => {
                shared.gave_up(format!("consumer {queue}: {why}"));
                backoff.wait().await;
            }
        }
    }
}

async fn receive_until_idle(
    shared: &Shared,
    queue: u32,
    idle: Duration,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let name = format!("consumer-{queue}");
    let mut client = Client::connect(shared, &name).await?;
    backoff.reset();
    let inc = client.incarnation;
    let attach = Receiver::attach(&mut client.session, name, queue_name(queue));
    let mut receiver = guarded(shared, inc, attach)
        .await?
        .map_err(|e| format!("attach: {e:?}"))?;
    let mut last = Instant::now();
    loop {
        let delivery = match tokio::time::timeout(CHECK, receiver.recv::<String>()).await {
            Ok(Ok(delivery)) => delivery,
            Ok(Err(e)) => return Err(format!("recv: {e:?}")),
            Err(_) if shared.incarnation.load(SeqCst) != inc => {
                return Err("the broker was restarted".into())
            }
            Err(_) if shared.producers_done.load(SeqCst) && last.elapsed() >= idle => break,
            Err(_) => continue,
        };
        last = Instant::now();
        let Some((producer, n)) = numbered(&delivery) else {
            panic!("a message without producer and n: {:?}", delivery.message());
        };
        let delivery_count = delivery
            .message()
            .header
            .as_ref()
            .map_or(0, |h| h.delivery_count);
        shared.received.lock().expect("lock").push(Received {
            producer,
            n,
            incarnation: inc,
            delivery_count,
        });
        guarded(shared, inc, receiver.accept(&delivery))
            .await?
            .map_err(|e| format!("accept: {e:?}"))?;
    }
    // The detach follows the dispositions on the same connection: once it is answered, the
    // broker has applied every acceptance.
    guarded(shared, inc, receiver.close())
        .await?
        .map_err(|e| format!("detach: {e:?}"))?;
    client.close().await;
    Ok(())
}

/// A connection and its session, to one incarnation of the broker.
struct Client {
    connection: ConnectionHandle<()>,
    session: SessionHandle<()>,
    incarnation: u32,
}

impl Client {
    async fn connect(shared: &Shared, name: &str) -> Result<Client, String> {
        let incarnation = shared.incarnation.load(SeqCst);
        let open = async {
            let stream = tokio::net::TcpStream::connect(shared.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let mut connection = Connection::builder()
                .container_id(name)
                .open_with_stream(stream)
                .await
                .map_err(|e| format!("open: {e:?}"))?;
            let session = Session::begin(&mut connection)
                .await
                .map_err(|e| format!("begin: {e:?}"))?;
            Ok::<_, String>((connection, session))
        };
        let (connection, session) = guarded(shared, incarnation, open).await??;
        if shared.incarnation.load(SeqCst) != incarnation {
            return Err("the broker was restarted while connecting".into());
        }
        Ok(Client {
            connection,
            session,
            incarnation,
        })
    }

    /// Ends the session and closes the connection; errors only mean the broker went first.
    async fn close(mut self) {
        let _ = tokio::time::timeout(OP_TIMEOUT, self.session.end()).await;
        let _ = tokio::time::timeout(OP_TIMEOUT, self.connection.close()).await;
    }
}

/// Awaits `fut`, unless the broker of `incarnation` has been killed or stopped (whatever the
/// client library has noticed, that connection is dead) or no answer comes in time.
async fn guarded<T>(
    shared: &Shared,
    incarnation: u32,
    fut: impl Future<Output = T>,
) -> Result<T, String> {
    tokio::pin!(fut);
    let deadline = Instant::now() + OP_TIMEOUT;
    loop {
        match tokio::time::timeout(CHECK, &mut fut).await {
            Ok(out) => return Ok(out),
            Err(_) if shared.incarnation.load(SeqCst) != incarnation => {
                return Err("the broker was restarted".into())
            }
            Err(_) if Instant::now() > deadline => {
                return Err(format!("no answer within {OP_TIMEOUT:?}"))
            }
            Err(_) => {}
        }
    }
}

/// Waits between reconnection attempts: doubling from 10 ms up to 200 ms.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(BACKOFF_FIRST)
    }
}

impl Backoff {
    fn reset(&mut self) {
        self.0 = BACKOFF_FIRST;
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
    }
}
