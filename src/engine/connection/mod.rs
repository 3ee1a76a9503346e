//! The connection state machine: open negotiation, heartbeats and idle timeout, close, and the
//! routing of each frame to its session.

mod access;
mod consumer_timeout;
mod incoming;
mod introspect;
mod links;
mod nodes;
mod outgoing;
mod sessions;
mod transactions;
mod vhost;

pub use introspect::SessionInfo;

use crate::engine::ids::{Channel, LinkHandle};
use crate::int_map::{self, IntMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fe2o3_amqp_types::definitions::{AmqpError, ConnectionError, Fields};
use fe2o3_amqp_types::performatives::{ChannelMax, Close, MaxFrameSize, Open, Performative};
use fe2o3_amqp_types::primitives::{Array, Symbol};
use serde_amqp::Value;

use crate::broker::{ConnWaker, ConsumerId, Router};
use crate::codec::frame::{Body, Frame, FrameError, Output, HEARTBEAT, MIN_MAX_FRAME_SIZE};

use crate::engine::session::Session;
use crate::engine::{AmqpFailure, EngineConfig, Failure};

/// The largest frame accepted before `open` has been exchanged: an `open` with a few
/// capabilities and properties fits easily, a pre-authentication flood does not.
const PRE_OPEN_MAX_FRAME_SIZE: u32 = 4096;

/// Who is on the other end, as the transport learned it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's socket address.
    pub addr: SocketAddr,
    /// The authenticated user, or `None` for an anonymous peer.
    pub user: Option<String>,
    /// What the user may do, by address (`None`: everything, for a user without permissions
    /// and for anonymous peers).
    pub permissions: Option<std::sync::Arc<crate::config::Permissions>>,
    /// Queues the user may create by attaching (`None`: no cap; anonymous peers have none).
    pub max_queues: Option<u32>,
    /// The virtual hosts the user may open (`None`: every one).
    pub vhosts: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the peer's `open`.
    AwaitOpen,
    /// Both `open`s exchanged.
    Opened,
    /// We sent `close` and wait for the peer's.
    CloseSent,
    /// Both `close`s exchanged (or the peer is beyond saving): nothing more to do.
    Closed,
}

/// One AMQP connection, sans-IO.
///
/// # The driver contract
///
/// The engine never reads a socket, a clock or a channel itself: a driver (the transport's
/// connection task, or a test) feeds it and carries its output. One turn of the driver is,
/// in this order:
///
/// 1. [`handle_frame`](Self::handle_frame) for each frame decoded from the bytes read (with
///    the largest frame [`max_frame_size_in`](Self::max_frame_size_in) allows), or
///    [`handle_frame_error`](Self::handle_frame_error) for bytes that are not a frame. Each
///    frame takes effect before the next is handled: a `release` then a `flow` in one read
///    sees the released message redelivered first.
/// 2. [`pump`](Self::pump): moves what queues handed this connection's consumers (the
///    [`ConnWaker`] given to [`new`](Self::new) says when there is some) into transfers, as
///    far as session windows and the output cap allow.
/// 3. [`flush`](Self::flush): answers batched outcomes to producers and tops up their credit
///    (withheld while the broker's memory or disk is at its limit: call it again when the
///    memory gate opens).
/// 4. [`tick`](Self::tick) with the current time: heartbeats, the idle timeout and
///    `consumer_timeout`; it returns when it wants to be called again.
/// 5. Write [`output`](Self::output) to the peer: `prepare` it, write what it holds, `advance`
///    by what was written, then [`note_sent`](Self::note_sent).
///
/// Stop when [`is_closed`](Self::is_closed). Once [`is_closing`](Self::is_closing) the
/// driver keeps writing output for a short grace period, then stops; if the socket fails
/// first it calls [`abandon`](Self::abandon), which releases everything the connection held
/// (unsettled deliveries go back to their queues). [`shutdown`](Self::shutdown) (broker
/// stopping) and [`close_by_admin`](Self::close_by_admin) start an orderly close; the admin
/// API's view comes from [`describe`](Self::describe), [`counts`](Self::counts) and
/// [`take_topology_changed`](Self::take_topology_changed).
#[derive(Debug)]
pub struct Connection {
    /// A broker-wide id: what owns the temporary queues its links create.
    id: u64,
    config: EngineConfig,
    router: Arc<Router>,
    waker: Arc<ConnWaker>,
    peer: PeerInfo,
    state: State,
    container_id: Option<String>,
    /// The virtual host its `open` selected (`None`: the default one).
    vhost: Option<String>,
    /// The largest frame the peer accepts.
    remote_max_frame_size: u32,
    /// Half the peer's idle timeout: we must send something at least this often.
    heartbeat_every: Option<Duration>,
    last_received: Instant,
    last_sent: Instant,
    /// Sessions by channel; we use the peer's channel number as ours too.
    sessions: IntMap<Channel, Session>,
    /// Where each of our consumers lives: (channel, handle).
    consumers: IntMap<ConsumerId, (Channel, LinkHandle)>,
    /// Consumers that have deliveries waiting for session window.
    blocked: Vec<ConsumerId>,
    out: Output,
    /// Sessions or links came or went (the admin API's counts need refreshing).
    topology_changed: bool,
    /// Channels of sessions we ended with an error whose `end` the peer has not sent yet:
    /// frames on them are discarded until it does (§2.5.5).
    ending: Vec<Channel>,
    /// Bytes of incomplete deliveries, other than the large one, on this connection.
    incomplete: Arc<AtomicU64>,
    /// The link with the one large delivery the connection may have in progress beyond
    /// `max_incomplete_bytes`: (channel, handle).
    large: Option<(Channel, LinkHandle)>,
    /// The time of the latest frame or tick: what handlers that are not given the time use.
    clock: Instant,
    /// When to look for consumers past their queue's `consumer_timeout` (None: no consumer
    /// holds unsettled deliveries).
    consumer_check: Option<Instant>,
    /// Transactions declared on this connection and not yet discharged.
    transactions: transactions::Transactions,
}

impl Connection {
    /// A connection that has passed the protocol header and SASL and now waits for `open`.
    pub fn new(
        config: EngineConfig,
        router: Arc<Router>,
        waker: Arc<ConnWaker>,
        peer: PeerInfo,
        now: Instant,
    ) -> Connection {
        Connection {
            id: router.next_id(),
            config,
            router,
            waker,
            peer,
            state: State::AwaitOpen,
            container_id: None,
            vhost: None,
            remote_max_frame_size: MIN_MAX_FRAME_SIZE,
            heartbeat_every: None,
            last_received: now,
            last_sent: now,
            sessions: int_map::new(),
            consumers: int_map::new(),
            blocked: Vec::new(),
            out: Output::default(),
            topology_changed: false,
            ending: Vec::new(),
            incomplete: Arc::default(),
            large: None,
            clock: now,
            consumer_check: None,
            transactions: transactions::Transactions::default(),
        }
    }

    /// The largest frame the decoder may accept now: small until `open` has been exchanged, so
    /// a peer that has not introduced itself cannot make us buffer much.
    pub fn max_frame_size_in(&self) -> u32 {
        match self.state {
            State::AwaitOpen => PRE_OPEN_MAX_FRAME_SIZE,
            _ => self.config.max_frame_size,
        }
    }

    /// The peer's container-id, once `open` arrived.
    pub fn container_id(&self) -> Option<&str> {
        self.container_id.as_deref()
    }

    /// Bytes waiting to be written.
    pub fn output(&mut self) -> &mut Output {
        &mut self.out
    }

    /// Whether the connection is over: both sides closed, or we closed and gave up on the peer.
    /// The transport writes what is left in the output and drops the socket.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether we have sent `close` (and only wait for the peer's).
    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::CloseSent | State::Closed)
    }

    /// Handles one decoded frame.
    pub fn handle_frame(&mut self, frame: Frame, now: Instant) {
        self.last_received = now;
        self.clock = now;
        if self.is_closing() {
            // After our close only the peer's close matters (§2.7.9).
            if let Body::Performative(Performative::Close(_)) = frame.body {
                self.state = State::Closed;
            }
            return;
        }
        let channel = Channel(frame.channel);
        if let Some(i) = self.ending.iter().position(|&c| c == channel) {
            // We ended this session: only the peer's `end` matters, and it frees the channel.
            if let Body::Performative(Performative::End(_)) = frame.body {
                self.ending.swap_remove(i);
            }
            return;
        }
        let result = match frame.body {
            Body::Heartbeat => Ok(()),
            Body::Transfer(transfer, payload) => self.on_transfer(channel, transfer, payload),
            Body::Performative(p) => {
                self.topology_changed |= matches!(
                    p,
                    Performative::Open(_)
                        | Performative::Begin(_)
                        | Performative::End(_)
                        | Performative::Attach(_)
                        | Performative::Detach(_)
                );
                self.on_performative(channel, p)
            }
        };
        match result {
            Ok(()) => {}
            Err(Failure::Connection(e)) => self.close_with(Some(e)),
            Err(Failure::Session { channel, error }) => self.end_with_error(channel, error),
            Err(Failure::Link {
                channel,
                handle,
                error,
            }) => self.detach_with_error(channel, handle, error),
        }
    }

    /// Handles bytes that did not make a frame: the connection is closed with the matching
    /// condition (§2.8.16 framing-error for sizes and offsets, decode-error for content).
    pub fn handle_frame_error(&mut self, err: FrameError) {
        let condition = match err {
            FrameError::TooLarge { .. }
            | FrameError::TooSmall(_)
            | FrameError::BadDataOffset { .. }
            | FrameError::UnexpectedType(_) => ConnectionError::FramingError.into(),
            FrameError::Scan(_) | FrameError::Decode(_) | FrameError::TrailingBytes(_) => {
                AmqpError::DecodeError.into()
            }
        };
        self.close_with(Some(AmqpFailure {
            condition,
            description: err.to_string(),
        }));
    }

    /// Closes the connection because the broker is stopping.
    pub fn shutdown(&mut self) {
        if !self.is_closing() {
            self.close_with(Some(AmqpFailure::new(
                ConnectionError::ConnectionForced,
                "the broker is shutting down",
            )));
        }
    }

    /// Gives up on the peer (socket gone, or it never answered our close): every link is torn
    /// down and what its consumers held returns to the queues.
    pub fn abandon(&mut self) {
        self.teardown_all();
        self.state = State::Closed;
    }

    /// Sends heartbeats and enforces our idle timeout. Returns when to call again.
    pub fn tick(&mut self, now: Instant) -> Option<Instant> {
        self.clock = now;
        let mut next: Option<Instant> = self.check_consumer_timeouts(now);
        if self.config.transaction_timeout_ms > 0 {
            let timeout = Duration::from_millis(self.config.transaction_timeout_ms);
            if let Some(oldest) = self.transactions.expire(now, timeout) {
                let due = oldest + timeout;
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        if self.config.idle_timeout_ms > 0 && self.state != State::Closed {
            let limit = Duration::from_millis(u64::from(self.config.idle_timeout_ms));
            if now.duration_since(self.last_received) >= limit {
                if self.is_closing() {
                    self.abandon();
                    return None;
                }
                self.close_with(Some(AmqpFailure::new(
                    AmqpError::ResourceLimitExceeded,
                    format!(
                        "local-idle-timeout expired: nothing received for {} ms",
                        self.config.idle_timeout_ms
                    ),
                )));
            }
            let due = self.last_received + limit;
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        if let Some(every) = self.heartbeat_every {
            if self.out.is_empty() && now.duration_since(self.last_sent) >= every {
                self.out.push_raw(&HEARTBEAT);
                self.last_sent = now;
            }
            let due = self.last_sent + every;
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        next
    }

    /// Records that output was written at `now` (heartbeats are only needed when idle).
    pub fn note_sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    fn on_performative(&mut self, channel: Channel, p: Performative) -> Result<(), Failure> {
        if self.state == State::AwaitOpen {
            return match p {
                Performative::Open(open) => self.on_open(channel, open),
                other => Err(AmqpFailure::new(
                    AmqpError::IllegalState,
                    format!("expected open, received {}", performative_name(&other)),
                )
                .into()),
            };
        }
        match p {
            Performative::Open(_) => Err(AmqpFailure::new(
                AmqpError::IllegalState,
                "open received twice on one connection",
            )
            .into()),
            Performative::Close(close) => {
                if let Some(e) = &close.error {
                    tracing::info!(peer = %self.peer.addr, error = ?e, "peer closed with an error");
                }
                self.teardown_all();
                self.out
                    .push_frame(0, &Performative::Close(Close { error: None }), &[]);
                self.state = State::Closed;
                Ok(())
            }
            Performative::Begin(begin) => self.on_begin(channel, begin),
            Performative::End(end) => self.on_end(channel, end),
            Performative::Attach(attach) => self.on_attach(channel, attach),
            Performative::Detach(detach) => self.on_detach(channel, detach),
            Performative::Flow(flow) => self.on_flow(channel, flow),
            Performative::Disposition(d) => self.on_disposition(channel, d),
            Performative::Transfer(_) => unreachable_transfer(),
        }
    }

    fn on_open(&mut self, channel: Channel, open: Open) -> Result<(), Failure> {
        if channel != Channel(0) {
            return Err(AmqpFailure::new(
                ConnectionError::FramingError,
                format!("open must arrive on channel 0, not {channel}"),
            )
            .into());
        }
        self.container_id = Some(open.container_id.clone());
        self.vhost = self.select_vhost(open.hostname.as_deref())?;
        self.remote_max_frame_size = open.max_frame_size.0.max(MIN_MAX_FRAME_SIZE);
        self.heartbeat_every = open
            .idle_time_out
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(u64::from(ms) / 2));
        self.state = State::Opened;
        tracing::info!(
            peer = %self.peer.addr,
            container_id = %open.container_id,
            user = self.peer.user.as_deref().unwrap_or("anonymous"),
            vhost = self.vhost.as_deref().unwrap_or(crate::config::vhosts::DEFAULT),
            "connection opened"
        );
        self.send_open();
        Ok(())
    }

    fn send_open(&mut self) {
        let mut properties = Fields::new();
        properties.insert(Symbol::from("product"), Value::String("sluice".into()));
        properties.insert(
            Symbol::from("version"),
            Value::String(env!("CARGO_PKG_VERSION").into()),
        );
        properties.insert(
            Symbol::from("platform"),
            Value::String(format!("Rust / {}", std::env::consts::OS)),
        );
        // Qpid JMS and NMS.AMQP put these before queue and topic names, as Artemis asks; the
        // router reads them back (routing::address).
        properties.insert(
            Symbol::from("queue-prefix"),
            Value::String("queue://".into()),
        );
        properties.insert(
            Symbol::from("topic-prefix"),
            Value::String("topic://".into()),
        );
        let open = Open {
            container_id: self.config.container_id.clone(),
            hostname: None,
            max_frame_size: MaxFrameSize(self.config.max_frame_size),
            channel_max: ChannelMax(self.config.channel_max),
            // §2.4.5: advertise half the real threshold, so a peer that heartbeats at exactly
            // the advertised interval never trips it.
            idle_time_out: (self.config.idle_timeout_ms > 0)
                .then_some((self.config.idle_timeout_ms / 2).max(1)),
            outgoing_locales: None,
            incoming_locales: None,
            // ANONYMOUS-RELAY: a sender without a target routes by properties.to.
            // DELAYED_DELIVERY: x-opt-delivery-time / -delay are honoured (Qpid JMS checks it
            // before it sends a delivery delay).
            offered_capabilities: Some(Array(vec![
                Symbol::from("ANONYMOUS-RELAY"),
                Symbol::from("DELAYED_DELIVERY"),
            ])),
            desired_capabilities: None,
            properties: Some(properties),
        };
        self.out.push_frame(0, &Performative::Open(open), &[]);
    }

    /// Sends `close` (with `error`, if any) and tears everything down. A peer that has not
    /// sent `open` still gets ours first, as §2.4.3 requires before a close.
    pub(super) fn close_with(&mut self, error: Option<AmqpFailure>) {
        if self.is_closing() {
            return;
        }
        if self.state == State::AwaitOpen {
            self.send_open();
        }
        if let Some(e) = &error {
            tracing::warn!(
                peer = %self.peer.addr,
                container_id = self.container_id.as_deref().unwrap_or("-"),
                condition = %crate::engine::condition_name(&e.condition),
                "closing connection: {}",
                e.description
            );
        }
        self.teardown_all();
        let close = Close {
            error: error.map(|e| e.to_error()),
        };
        self.out.push_frame(0, &Performative::Close(close), &[]);
        self.state = State::CloseSent;
    }

    fn teardown_all(&mut self) {
        // What the connection's transactions hold goes back first (a transaction does not
        // outlive its connection), then every link's.
        self.transactions.rollback_all();
        let channels: Vec<Channel> = self.sessions.keys().copied().collect();
        for channel in channels {
            self.teardown_session(channel);
        }
    }

    /// The session on `channel`, or the error for a frame on a channel without one.
    pub(super) fn session_mut(&mut self, channel: Channel) -> Result<&mut Session, Failure> {
        self.sessions.get_mut(&channel).ok_or_else(|| {
            AmqpFailure::new(
                ConnectionError::FramingError,
                format!("frame on channel {channel}, which has no session"),
            )
            .into()
        })
    }
}

/// The spec name of a performative, for error descriptions.
pub(super) fn performative_name(p: &Performative) -> &'static str {
    match p {
        Performative::Open(_) => "open",
        Performative::Begin(_) => "begin",
        Performative::Attach(_) => "attach",
        Performative::Flow(_) => "flow",
        Performative::Transfer(_) => "transfer",
        Performative::Disposition(_) => "disposition",
        Performative::Detach(_) => "detach",
        Performative::End(_) => "end",
        Performative::Close(_) => "close",
    }
}

fn unreachable_transfer() -> Result<(), Failure> {
    // The codec turns every transfer into Body::Transfer; keep the match total without a panic.
    Err(AmqpFailure::new(
        AmqpError::InternalError,
        "transfer decoded without its payload",
    )
    .into())
}
