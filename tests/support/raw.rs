//! A raw AMQP 1.0 peer for black-box tests of bad input: builds frames byte by byte, sends
//! exactly what a test asks (well-formed or not), and reads back what the broker answers.
//!
//! Performatives that are meant to be valid are encoded with serde_amqp; malformed ones are
//! built by hand, so no encoder can "fix" them on the way out.

#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use fe2o3_amqp_types::definitions::{self, Handle, ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{Source, Target, TargetArchetype};
use fe2o3_amqp_types::performatives::{
    Attach, Begin, ChannelMax, Close, Flow, MaxFrameSize, Open, Performative, Transfer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The AMQP protocol header without a security layer.
pub const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
/// The SASL protocol header.
pub const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// The TLS protocol header.
pub const TLS_HEADER: [u8; 8] = *b"AMQP\x02\x01\x00\x00";

/// Frame type of AMQP frames.
pub const TYPE_AMQP: u8 = 0;
/// Frame type of SASL frames.
pub const TYPE_SASL: u8 = 1;

/// How long a test waits for any one answer from the broker. The broker answers bad input at
/// once; it gives a peer 2 s to answer its `close` before dropping the socket.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// An 8-byte frame header followed by `body` (doff = 2).
pub fn frame(frame_type: u8, channel: u16, body: &[u8]) -> Vec<u8> {
    let size = u32::try_from(8 + body.len()).expect("test frames fit in u32");
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&[2, frame_type]);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The encoding of `performative`, with nothing around it.
pub fn encode(performative: &Performative) -> Vec<u8> {
    serde_amqp::to_vec(performative).expect("test performatives encode")
}

/// An AMQP frame carrying `performative` (and, for a transfer, `payload`).
pub fn amqp_frame(channel: u16, performative: &Performative, payload: &[u8]) -> Vec<u8> {
    let mut body = encode(performative);
    body.extend_from_slice(payload);
    frame(TYPE_AMQP, channel, &body)
}

/// A plain `open` from `container_id`.
pub fn open(container_id: &str) -> Performative {
    Performative::Open(Open {
        container_id: container_id.to_owned(),
        hostname: None,
        max_frame_size: MaxFrameSize(65536),
        channel_max: ChannelMax(255),
        idle_time_out: None,
        outgoing_locales: None,
        incoming_locales: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    })
}

/// A `begin` for a new session.
pub fn begin() -> Performative {
    Performative::Begin(Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: 2048,
        outgoing_window: 2048,
        handle_max: 1023.into(),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    })
}

/// An `attach` of a sending link (the peer produces) to `address`.
pub fn attach_sender(name: &str, handle: u32, address: &str) -> Performative {
    Performative::Attach(Attach {
        name: name.to_owned(),
        handle: Handle(handle),
        role: Role::Sender,
        snd_settle_mode: SenderSettleMode::Mixed,
        rcv_settle_mode: ReceiverSettleMode::First,
        source: Some(Box::new(Source::default())),
        target: Some(Box::new(TargetArchetype::Target(Target {
            address: Some(address.to_owned()),
            ..Target::default()
        }))),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: Some(0),
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    })
}

/// An `attach` of a receiving link (the peer consumes) from `address`.
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

/// A `flow` granting `credit` on the link `handle` (delivery-count 0), with a wide session window.
pub fn link_flow(handle: u32, credit: u32) -> Performative {
    Performative::Flow(Flow {
        next_incoming_id: Some(0),
        incoming_window: u32::MAX / 2,
        next_outgoing_id: 0,
        outgoing_window: 2048,
        handle: Some(Handle(handle)),
        delivery_count: Some(0),
        link_credit: Some(credit),
        available: None,
        drain: false,
        echo: false,
        properties: None,
    })
}

/// The first and only transfer of delivery `delivery_id` on `handle`, pre-settled.
pub fn transfer(handle: u32, delivery_id: u32) -> Performative {
    Performative::Transfer(Transfer {
        handle: Handle(handle),
        delivery_id: Some(delivery_id),
        delivery_tag: Some(delivery_id.to_be_bytes().to_vec().into()),
        message_format: Some(0),
        settled: Some(true),
        more: false,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: false,
    })
}

/// A message with one amqp-value section holding the string "x".
pub const SMALL_MESSAGE: [u8; 6] = [0x00, 0x53, 0x77, 0xa1, 0x01, b'x'];

/// A `close` without error.
pub fn close() -> Performative {
    Performative::Close(Close { error: None })
}

/// An empty `flow` on a session (no handle).
pub fn session_flow() -> Performative {
    Performative::Flow(Flow {
        next_incoming_id: Some(0),
        incoming_window: 2048,
        next_outgoing_id: 0,
        outgoing_window: 2048,
        handle: None,
        delivery_count: None,
        link_credit: None,
        available: None,
        drain: false,
        echo: false,
        properties: None,
    })
}

/// `depth` described values nested in one another (`0x00 0x53 0x00`, descriptor smallulong
/// 0), around a null. Three bytes per level: the cheapest nesting the encoding allows.
pub fn nested_described(depth: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * depth + 1);
    for _ in 0..depth {
        out.extend_from_slice(&[0x00, 0x53, 0x00]);
    }
    out.push(0x40);
    out
}

/// `depth` list32 values nested in one another, each holding the next as its one element,
/// around an empty list. Every size field is exact, so only the depth is wrong.
pub fn nested_lists(depth: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 * depth + 1);
    for level in 0..depth {
        // Bytes inside this list after its size field: the count, then the lists below it.
        let below = depth - level - 1;
        let size = 4 + 9 * below + 1;
        out.push(0xd0);
        out.extend_from_slice(&u32::try_from(size).expect("fits").to_be_bytes());
        out.extend_from_slice(&1u32.to_be_bytes());
    }
    out.push(0x45);
    out
}

/// A hand-built `begin` whose `properties` map holds one entry, `x` → `value`. Everything
/// else is a valid begin, so whatever goes wrong is down to `value`.
pub fn begin_with_property(value: &[u8]) -> Vec<u8> {
    // properties: map32 of one pair, key sym8 "x".
    let mut map_content = Vec::new();
    map_content.extend_from_slice(&2u32.to_be_bytes());
    map_content.extend_from_slice(&[0xa3, 0x01, b'x']);
    map_content.extend_from_slice(value);
    let mut map = vec![0xd1];
    map.extend_from_slice(
        &u32::try_from(map_content.len())
            .expect("fits")
            .to_be_bytes(),
    );
    map.extend_from_slice(&map_content);

    let mut fields = Vec::new();
    fields.extend_from_slice(&8u32.to_be_bytes());
    fields.push(0x40); // remote-channel
    fields.push(0x43); // next-outgoing-id: uint 0
    fields.extend_from_slice(&[0x52, 0x64]); // incoming-window: 100
    fields.extend_from_slice(&[0x52, 0x64]); // outgoing-window: 100
    fields.push(0x40); // handle-max
    fields.push(0x40); // offered-capabilities
    fields.push(0x40); // desired-capabilities
    fields.extend_from_slice(&map); // properties

    let mut out = vec![0x00, 0x53, 0x11, 0xd0];
    out.extend_from_slice(&u32::try_from(fields.len()).expect("fits").to_be_bytes());
    out.extend_from_slice(&fields);
    out
}

/// One frame read from the broker.
#[derive(Debug)]
pub struct ReadFrame {
    /// 0 for AMQP, 1 for SASL.
    pub frame_type: u8,
    /// The channel.
    pub channel: u16,
    /// Everything after the header (empty for a heartbeat).
    pub body: Vec<u8>,
}

impl ReadFrame {
    /// The performative this frame carries, or `None` for a heartbeat.
    pub fn performative(&self) -> Option<Performative> {
        if self.body.is_empty() {
            return None;
        }
        Some(serde_amqp::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the broker sent a frame that does not decode ({e}): {:02x?}",
                self.body
            )
        }))
    }
}

/// A raw connection to the broker.
pub struct RawPeer {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawPeer {
    /// Connects; sends nothing yet.
    pub async fn connect(addr: SocketAddr) -> RawPeer {
        let stream = TcpStream::connect(addr).await.expect("connect to broker");
        stream.set_nodelay(true).expect("nodelay");
        RawPeer {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// Connects, exchanges protocol headers (plain AMQP, anonymous) and `open`s.
    pub async fn opened(addr: SocketAddr, container_id: &str) -> RawPeer {
        let mut peer = RawPeer::connect(addr).await;
        peer.send(&AMQP_HEADER).await;
        assert_eq!(peer.read_header().await, AMQP_HEADER);
        peer.send(&amqp_frame(0, &open(container_id), &[])).await;
        peer.expect_open().await;
        peer
    }

    /// Writes `bytes` in one call.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send to broker");
    }

    /// Writes `bytes`, ignoring a broker that stopped reading or closed: for inputs so bad
    /// that the broker may hang up before it has read them all.
    pub async fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Writes `bytes`; returns false if the broker no longer takes them.
    pub async fn send_checked(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Half-closes: the broker reads EOF after everything sent so far.
    pub async fn finish_sending(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Reads until `n` bytes are buffered. Returns false on EOF (or a reset) before that.
    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            match tokio::time::timeout(ANSWER_TIMEOUT, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => panic!(
                    "no answer from the broker within {ANSWER_TIMEOUT:?} (have {} of {n} bytes)",
                    self.buf.len()
                ),
                Ok(Ok(0)) | Ok(Err(_)) => return false,
                Ok(Ok(_)) => {}
            }
        }
        true
    }

    /// Reads the broker's 8-byte protocol header.
    pub async fn read_header(&mut self) -> [u8; 8] {
        assert!(
            self.fill(8).await,
            "EOF before a protocol header (got {:02x?})",
            &self.buf[..]
        );
        let mut header = [0u8; 8];
        header.copy_from_slice(&self.buf[..8]);
        self.buf.advance(8);
        header
    }

    /// Reads one frame, or `None` at EOF.
    pub async fn read_frame(&mut self) -> Option<ReadFrame> {
        if !self.fill(8).await {
            assert!(
                self.buf.is_empty(),
                "EOF inside a frame header: {:02x?}",
                &self.buf[..]
            );
            return None;
        }
        let size = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let size = usize::try_from(size).expect("fits");
        let doff = usize::from(self.buf[4]) * 4;
        assert!(
            size >= 8 && doff >= 8 && doff <= size,
            "the broker sent a bad frame header {:02x?}",
            &self.buf[..8]
        );
        assert!(self.fill(size).await, "EOF inside a frame of {size} bytes");
        let frame = self.buf.split_to(size);
        Some(ReadFrame {
            frame_type: frame[5],
            channel: u16::from_be_bytes([frame[6], frame[7]]),
            body: frame[doff..].to_vec(),
        })
    }

    /// Reads frames until a performative arrives (skipping heartbeats); panics at EOF.
    pub async fn read_performative(&mut self) -> (u16, Performative) {
        loop {
            let frame = self
                .read_frame()
                .await
                .expect("EOF while waiting for a performative");
            assert_eq!(frame.frame_type, TYPE_AMQP, "a non-AMQP frame after open");
            if let Some(p) = frame.performative() {
                return (frame.channel, p);
            }
        }
    }

    /// Reads the broker's `open`.
    pub async fn expect_open(&mut self) -> Open {
        match self.read_performative().await {
            (0, Performative::Open(open)) => open,
            other => panic!("expected open on channel 0, got {other:?}"),
        }
    }

    /// Reads until a performative other than flow arrives and returns it (the broker sends
    /// flows whenever it likes).
    pub async fn read_skipping_flows(&mut self) -> (u16, Performative) {
        loop {
            match self.read_performative().await {
                (_, Performative::Flow(_)) => {}
                other => return other,
            }
        }
    }

    /// Reads frames until the broker's `close`, which must carry an error; returns the error.
    /// Frames before it (begin, attach, flow, an `open` sent before a close) are skipped.
    pub async fn expect_close_error(&mut self) -> definitions::Error {
        loop {
            if let (_, Performative::Close(close)) = self.read_performative().await {
                return close
                    .error
                    .expect("the broker closed without saying why (no error in close)");
            }
        }
    }

    /// Reads the broker's `close` and checks its condition is `condition` and it describes
    /// the problem; then answers with our own `close` and expects EOF.
    pub async fn expect_closed_with(&mut self, condition: &str) -> String {
        let error = self.expect_close_error().await;
        assert_eq!(
            sluice::testing::condition_name(&error.condition),
            condition,
            "close carried {error:?}"
        );
        let description = error.description.unwrap_or_default();
        assert!(
            !description.trim().is_empty(),
            "close with {condition} has no description"
        );
        self.send_lossy(&amqp_frame(0, &close(), &[])).await;
        self.expect_eof().await;
        description
    }

    /// Expects the broker to hang up: any remaining frames are read and dropped, then EOF.
    pub async fn expect_eof(&mut self) {
        let wait = async {
            loop {
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => self.buf.clear(),
                }
            }
        };
        tokio::time::timeout(ANSWER_TIMEOUT, wait)
            .await
            .expect("the broker kept the connection open");
    }

    /// Reads everything until EOF, for at most `limit`; returns what arrived and whether EOF
    /// was reached.
    pub async fn read_to_end(&mut self, limit: Duration) -> (Vec<u8>, bool) {
        let mut all = self.buf.split().to_vec();
        let wait = async {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => all.extend_from_slice(&chunk[..n]),
                }
            }
        };
        let eof = tokio::time::timeout(limit, wait).await.is_ok();
        (all, eof)
    }
}
