//! The engine driven directly, without sockets: frames in, frames out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fe2o3_amqp_types::definitions::{Handle, ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{Source, Target, TargetArchetype};
use fe2o3_amqp_types::performatives::{
    Attach, Begin, ChannelMax, Flow, MaxFrameSize, Open, Performative, Transfer,
};

use super::{Connection, EngineConfig, PeerInfo};
use crate::broker::{ConnWaker, Router};
use crate::codec::frame::{decode_amqp, decode_raw, Body, Frame};
use crate::config::Config;

mod gate;

struct Harness {
    conn: Connection,
    router: Arc<Router>,
    now: Instant,
    /// The incoming-window our flows announce.
    window: u32,
}

impl Harness {
    fn new(config: &Config) -> Harness {
        let router = Router::new(config.queues.clone());
        let now = Instant::now();
        let peer = PeerInfo {
            addr: "127.0.0.1:1".parse().unwrap(),
            user: None,
            permissions: None,
            max_queues: None,
            vhosts: None,
        };
        let conn = Connection::new(
            EngineConfig::from(config),
            router.clone(),
            ConnWaker::new(),
            peer,
            now,
        );
        Harness {
            conn,
            router,
            now,
            window: 1000,
        }
    }

    fn send(&mut self, channel: u16, p: Performative) -> Vec<Frame> {
        let body = match p {
            Performative::Transfer(t) => Body::Transfer(t.into(), Bytes::new()),
            other => Body::Performative(other),
        };
        self.conn.handle_frame(Frame { channel, body }, self.now);
        self.outputs()
    }

    fn send_transfer(&mut self, channel: u16, t: Transfer, payload: Bytes) -> Vec<Frame> {
        let frame = Frame {
            channel,
            body: Body::Transfer(t.into(), payload),
        };
        self.conn.handle_frame(frame, self.now);
        self.outputs()
    }

    /// Sends `n` single-frame settled transfers in one read, before any flush: what a peer
    /// that ignores windows and credit does.
    fn send_batch(&mut self, channel: u16, handle: u32, n: u32) -> Vec<Frame> {
        for id in 0..n {
            let frame = Frame {
                channel,
                body: Body::Transfer(transfer(handle, Some(id), false).into(), message(3)),
            };
            self.conn.handle_frame(frame, self.now);
        }
        self.outputs()
    }

    fn outputs(&mut self) -> Vec<Frame> {
        self.conn.pump();
        self.conn.flush();
        let bytes = self.conn.output().take_all();
        let mut buf = BytesMut::from(&bytes[..]);
        let mut frames = Vec::new();
        while let Some(raw) = decode_raw(&mut buf, u32::MAX).unwrap() {
            frames.push(decode_amqp(raw).unwrap());
        }
        frames
    }

    fn open(&mut self, max_frame_size: u32) -> Vec<Frame> {
        self.send(
            0,
            Performative::Open(Open {
                container_id: "test".into(),
                hostname: None,
                max_frame_size: MaxFrameSize(max_frame_size),
                channel_max: ChannelMax(10),
                idle_time_out: None,
                outgoing_locales: None,
                incoming_locales: None,
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            }),
        )
    }

    fn begin(&mut self, channel: u16, incoming_window: u32) -> Vec<Frame> {
        self.send(
            channel,
            Performative::Begin(Begin {
                remote_channel: None,
                next_outgoing_id: 0,
                incoming_window,
                outgoing_window: 100,
                handle_max: Handle(10),
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            }),
        )
    }

    fn attach(&mut self, channel: u16, handle: u32, role: Role, queue: &str) -> Vec<Frame> {
        let initial_delivery_count = matches!(role, Role::Sender).then_some(0);
        self.send(
            channel,
            Performative::Attach(Attach {
                name: format!("link{handle}"),
                handle: Handle(handle),
                role,
                snd_settle_mode: SenderSettleMode::Unsettled,
                rcv_settle_mode: ReceiverSettleMode::First,
                source: Some(Box::new(Source::builder().address(queue).build())),
                target: Some(Box::new(TargetArchetype::Target(Target::from(queue)))),
                unsettled: None,
                incomplete_unsettled: false,
                initial_delivery_count,
                max_message_size: None,
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            }),
        )
    }

    fn credit(
        &mut self,
        channel: u16,
        handle: u32,
        delivery_count: u32,
        credit: u32,
        drain: bool,
    ) -> Vec<Frame> {
        self.send(
            channel,
            Performative::Flow(Flow {
                next_incoming_id: Some(0),
                incoming_window: self.window,
                next_outgoing_id: 0,
                outgoing_window: 1000,
                handle: Some(Handle(handle)),
                delivery_count: Some(delivery_count),
                link_credit: Some(credit),
                available: None,
                drain,
                echo: false,
                properties: None,
            }),
        )
    }
}

fn transfer(handle: u32, delivery_id: Option<u32>, more: bool) -> Transfer {
    Transfer {
        handle: Handle(handle),
        delivery_id,
        delivery_tag: delivery_id.map(|id| id.to_be_bytes().to_vec().into()),
        message_format: Some(0),
        settled: Some(true),
        more,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: false,
    }
}

/// An amqp-value message with a string body of `len` bytes.
fn message(len: usize) -> Bytes {
    let mut m = vec![0x00, 0x53, 0x77, 0xb1];
    m.extend_from_slice(&(len as u32).to_be_bytes());
    m.extend(std::iter::repeat_n(b'x', len));
    Bytes::from(m)
}

fn close_condition(frames: &[Frame]) -> Option<String> {
    frames.iter().find_map(|f| match &f.body {
        Body::Performative(Performative::Close(c)) => Some(
            c.error
                .as_ref()
                .map(|e| super::condition_name(&e.condition))
                .unwrap_or_default(),
        ),
        _ => None,
    })
}

#[test]
fn open_is_answered_with_our_limits_and_half_the_idle_timeout() {
    let config = Config {
        idle_timeout_ms: 10_000,
        ..Config::default()
    };
    let mut h = Harness::new(&config);
    let frames = h.open(512);
    let Body::Performative(Performative::Open(open)) = &frames[0].body else {
        panic!("expected open, got {frames:?}");
    };
    assert_eq!(open.max_frame_size.0, config.max_frame_size);
    assert_eq!(open.idle_time_out, Some(5_000));
    let offered: Vec<&str> = open
        .offered_capabilities
        .iter()
        .flat_map(|caps| caps.0.iter().map(|c| c.as_str()))
        .collect();
    assert_eq!(offered, ["ANONYMOUS-RELAY", "DELAYED_DELIVERY"]);
    let property = |name: &str| {
        open.properties
            .as_ref()
            .and_then(|p| p.get(&fe2o3_amqp_types::primitives::Symbol::from(name)))
            .cloned()
    };
    assert_eq!(
        property("queue-prefix"),
        Some(serde_amqp::Value::String("queue://".into()))
    );
    assert_eq!(
        property("topic-prefix"),
        Some(serde_amqp::Value::String("topic://".into()))
    );
}

#[test]
fn anything_before_open_closes_the_connection_with_illegal_state() {
    let mut h = Harness::new(&Config::default());
    let frames = h.begin(0, 10);
    assert!(
        matches!(frames[0].body, Body::Performative(Performative::Open(_))),
        "open comes first"
    );
    assert_eq!(
        close_condition(&frames).as_deref(),
        Some("amqp:illegal-state")
    );
    assert!(h.conn.is_closing());
}

#[test]
fn a_transfer_beyond_the_session_window_ends_the_session_with_a_window_violation() {
    let config = Config {
        session_window: 2,
        ..Config::default()
    };
    let mut h = Harness::new(&config);
    h.open(65536);
    h.begin(0, 100);
    h.attach(0, 0, Role::Sender, "q");
    // Two frames fit the window; the window is widened only at flush, so send three at once.
    let frames = h.send_batch(0, 0, 3);
    assert_eq!(
        end_condition(&frames).as_deref(),
        Some("amqp:session:window-violation")
    );
    assert!(!h.conn.is_closing());
    assert_eq!(h.router.get("q").unwrap().stats().enqueued, 2);
}

#[test]
fn a_multi_frame_transfer_is_reassembled_and_an_aborted_one_dropped() {
    let mut h = Harness::new(&Config::default());
    h.open(65536);
    h.begin(0, 100);
    h.attach(0, 0, Role::Sender, "q");
    let m = message(100);
    h.send_transfer(0, transfer(0, Some(0), true), m.slice(..50));
    h.send_transfer(0, transfer(0, None, false), m.slice(50..));
    let mut aborted = transfer(0, Some(1), true);
    h.send_transfer(0, aborted.clone(), m.slice(..50));
    aborted.aborted = true;
    aborted.more = false;
    h.send_transfer(0, aborted, Bytes::new());
    let stats = h.router.get("q").unwrap().stats();
    assert_eq!((stats.enqueued, stats.ready_bytes), (1, m.len() as u64));
}

#[test]
fn a_large_delivery_is_split_to_the_peer_max_frame_size_and_waits_for_its_window() {
    let mut h = Harness::new(&Config::default());
    h.open(512);
    h.begin(0, 2);
    h.attach(0, 0, Role::Sender, "q");
    h.send_transfer(0, transfer(0, Some(0), false), message(2000));
    h.attach(0, 1, Role::Receiver, "q");
    h.window = 2;
    let frames = h.credit(0, 1, 0, 10, false);
    let transfers: Vec<&Frame> = frames
        .iter()
        .filter(|f| matches!(f.body, Body::Transfer(..)))
        .collect();
    assert_eq!(
        transfers.len(),
        2,
        "the peer's incoming-window allows two frames"
    );
    // Widen the window: the rest of the delivery follows.
    let frames = h.send(
        0,
        Performative::Flow(Flow {
            next_incoming_id: Some(2),
            incoming_window: 100,
            next_outgoing_id: 1,
            outgoing_window: 100,
            handle: None,
            delivery_count: None,
            link_credit: None,
            available: None,
            drain: false,
            echo: false,
            properties: None,
        }),
    );
    let rest: Vec<&Frame> = frames
        .iter()
        .filter(|f| matches!(f.body, Body::Transfer(..)))
        .collect();
    assert!(!rest.is_empty());
    let mut total = 0;
    for f in transfers.iter().chain(rest.iter()) {
        let Body::Transfer(t, payload) = &f.body else {
            unreachable!()
        };
        // Every frame, with its 8-byte header and performative, fits in 512 bytes.
        let size = 8 + crate::codec::frame::transfer_size(t) + payload.len();
        assert!(size <= 512, "frame of {size} bytes");
        total += payload.len();
        let last = std::ptr::eq(*f, *rest.last().unwrap());
        assert_eq!(t.more, !last);
    }
    assert_eq!(total, message(2000).len());
}

#[test]
fn drain_on_an_empty_queue_answers_with_zero_credit_and_advanced_delivery_count() {
    let mut h = Harness::new(&Config::default());
    h.open(65536);
    h.begin(0, 100);
    h.attach(0, 0, Role::Receiver, "q");
    let frames = h.credit(0, 0, 0, 7, true);
    let flow = frames
        .iter()
        .find_map(|f| match &f.body {
            Body::Performative(Performative::Flow(fl)) if fl.handle.is_some() => Some(fl.clone()),
            _ => None,
        })
        .expect("a flow answering the drain");
    assert_eq!(
        (flow.delivery_count, flow.link_credit, flow.drain),
        (Some(7), Some(0), true)
    );
}

#[test]
fn the_idle_timeout_closes_a_silent_connection_and_heartbeats_are_sent() {
    let config = Config {
        idle_timeout_ms: 1000,
        ..Config::default()
    };
    let mut h = Harness::new(&config);
    h.send(
        0,
        Performative::Open(Open {
            container_id: "x".into(),
            hostname: None,
            max_frame_size: MaxFrameSize(65536),
            channel_max: ChannelMax(1),
            idle_time_out: Some(200),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }),
    );
    h.conn.note_sent(h.now);
    h.conn.tick(h.now + Duration::from_millis(150));
    assert_eq!(
        h.conn.output().take_all(),
        crate::codec::frame::HEARTBEAT,
        "a heartbeat every 100 ms"
    );
    h.conn.tick(h.now + Duration::from_millis(1001));
    let frames = h.outputs();
    assert_eq!(
        close_condition(&frames).as_deref(),
        Some("amqp:resource-limit-exceeded")
    );
}

fn detach_condition(frames: &[Frame]) -> Option<String> {
    frames.iter().find_map(|f| match &f.body {
        Body::Performative(Performative::Detach(d)) => Some(
            d.error
                .as_ref()
                .map(|e| super::condition_name(&e.condition))
                .unwrap_or_default(),
        ),
        _ => None,
    })
}

fn end_condition(frames: &[Frame]) -> Option<String> {
    frames.iter().find_map(|f| match &f.body {
        Body::Performative(Performative::End(e)) => Some(
            e.error
                .as_ref()
                .map(|e| super::condition_name(&e.condition))
                .unwrap_or_default(),
        ),
        _ => None,
    })
}

#[test]
fn a_message_over_the_queue_limit_detaches_its_link_and_the_connection_goes_on() {
    let config = Config::from_toml("[queues.q]\nmax_message_size = 100\n", "t.toml").unwrap();
    let mut h = Harness::new(&config);
    h.open(65536);
    h.begin(0, 100);
    h.attach(0, 0, Role::Sender, "q");
    let m = message(150);
    h.send_transfer(0, transfer(0, Some(0), true), m.slice(..80));
    let frames = h.send_transfer(0, transfer(0, None, false), m.slice(80..));
    assert_eq!(
        detach_condition(&frames).as_deref(),
        Some("amqp:link:message-size-exceeded")
    );
    assert!(!h.conn.is_closing());
    assert_eq!(h.router.get("q").unwrap().stats().enqueued, 0);
    // The peer's answering detach frees the handle for a new link.
    h.send(
        0,
        Performative::Detach(fe2o3_amqp_types::performatives::Detach {
            handle: Handle(0),
            closed: true,
            error: None,
        }),
    );
    let frames = h.attach(0, 0, Role::Sender, "q");
    assert!(matches!(
        frames[0].body,
        Body::Performative(Performative::Attach(_))
    ));
}

#[test]
fn resuming_a_delivery_is_refused_on_the_link() {
    let mut h = Harness::new(&Config::default());
    h.open(65536);
    h.begin(0, 100);
    h.attach(0, 0, Role::Sender, "q");
    let mut t = transfer(0, Some(0), false);
    t.resume = true;
    let frames = h.send_transfer(0, t, message(3));
    assert_eq!(
        detach_condition(&frames).as_deref(),
        Some("amqp:not-implemented")
    );
    assert!(!h.conn.is_closing());
}

#[test]
fn a_transfer_beyond_link_credit_detaches_the_link() {
    let config = Config {
        link_credit: 2,
        ..Config::default()
    };
    let mut h = Harness::new(&config);
    h.open(65536);
    h.begin(0, 100);
    h.attach(0, 0, Role::Sender, "q");
    let frames = h.send_batch(0, 0, 3);
    assert_eq!(
        detach_condition(&frames).as_deref(),
        Some("amqp:link:transfer-limit-exceeded")
    );
    assert!(!h.conn.is_closing());
}
