//! The frame codec: bytes ⇄ frames (AMQP 1.0 part 2, §2.3).
//!
//! Decoding checks a frame's declared size against the negotiated limit before it buffers the
//! body, pre-scans the performative (depth, element counts) before serde_amqp sees a byte, and
//! slices transfer payloads out of the read buffer without copying. Encoding writes frame
//! headers and performatives into a scratch buffer and queues large payloads as `Bytes` chunks,
//! so a message body reaches the socket as a slice of the buffer it arrived in.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fe2o3_amqp_types::performatives::Performative;
use serde::{de::DeserializeOwned, Serialize};

use super::scan::{scan_value, Limits, ScanError};
use super::transfer::{self, FirstFrame, Transfer};

/// Frame type of AMQP frames.
pub const TYPE_AMQP: u8 = 0;
/// Frame type of SASL frames.
pub const TYPE_SASL: u8 = 1;
/// The smallest max-frame-size a peer may announce (part 2, §2.7.1), and the limit in force
/// before `open` has been exchanged.
pub const MIN_MAX_FRAME_SIZE: u32 = 512;
/// An empty AMQP frame on channel 0: the heartbeat.
pub const HEARTBEAT: [u8; 8] = [0, 0, 0, 8, 2, TYPE_AMQP, 0, 0];

/// Payloads up to this size are copied next to their frame header: one write of a few hundred
/// bytes is cheaper than an extra iovec.
const COPY_PAYLOAD_BELOW: usize = 4096;

/// A frame whose body has not been interpreted yet.
#[derive(Debug, Clone)]
pub struct RawFrame {
    /// 0 for AMQP, 1 for SASL.
    pub frame_type: u8,
    /// The channel (AMQP) or 0 (SASL).
    pub channel: u16,
    /// Everything after the (possibly extended) header.
    pub body: Bytes,
}

/// A decoded AMQP frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The channel it arrived on.
    pub channel: u16,
    /// What it carries.
    pub body: Body,
}

/// The content of an AMQP frame.
#[derive(Debug, Clone)]
pub enum Body {
    /// An empty frame: keeps the connection alive.
    Heartbeat,
    /// Any performative but transfer.
    Performative(Performative),
    /// A transfer and its payload (a slice of the frame, not a copy).
    Transfer(Transfer, Bytes),
}

/// What is wrong with the bytes of a frame. The engine maps each variant to an AMQP error
/// condition.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
// The variants' fields are what their #[error] text says; documenting each again adds nothing.
#[allow(missing_docs)]
pub enum FrameError {
    /// The declared frame size exceeds the negotiated max-frame-size.
    #[error("frame of {size} bytes exceeds the max-frame-size of {max}")]
    TooLarge { size: u32, max: u32 },
    /// The declared frame size cannot even hold the frame header.
    #[error("frame size {0} is smaller than the 8-byte frame header")]
    TooSmall(u32),
    /// The data offset is below 2 or points past the end of the frame.
    #[error("data offset {doff} is invalid for a frame of {size} bytes")]
    BadDataOffset { doff: u8, size: u32 },
    /// A frame of a type other than the one expected at this point.
    #[error("unexpected frame type {0}")]
    UnexpectedType(u8),
    /// The pre-scan found the encoding malformed or beyond limits.
    #[error("malformed performative: {0}")]
    Scan(#[from] ScanError),
    /// serde_amqp could not decode the performative.
    #[error("cannot decode performative: {0}")]
    Decode(String),
    /// Bytes follow a performative that carries no payload.
    #[error("{0} bytes follow a performative that carries no payload")]
    TrailingBytes(usize),
}

/// Takes one frame off the front of `buf`, if a whole one is there.
///
/// Returns `Ok(None)` when more bytes are needed (and reserves room for the rest of the frame,
/// which is known to be within `max_frame_size`). The declared size is checked before anything
/// beyond the header is buffered, so a peer cannot make the broker allocate more than the limit.
pub fn decode_raw(buf: &mut BytesMut, max_frame_size: u32) -> Result<Option<RawFrame>, FrameError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let doff = buf[4];
    let frame_type = buf[5];
    let channel = u16::from_be_bytes([buf[6], buf[7]]);
    if size < 8 {
        return Err(FrameError::TooSmall(size));
    }
    if size > max_frame_size {
        return Err(FrameError::TooLarge {
            size,
            max: max_frame_size,
        });
    }
    if doff < 2 || u32::from(doff) * 4 > size {
        return Err(FrameError::BadDataOffset { doff, size });
    }
    let size = size as usize;
    if buf.len() < size {
        buf.reserve(size - buf.len());
        return Ok(None);
    }
    let frame = buf.split_to(size).freeze();
    Ok(Some(RawFrame {
        frame_type,
        channel,
        body: frame.slice(usize::from(doff) * 4..),
    }))
}

/// Interprets a raw frame as an AMQP frame.
pub fn decode_amqp(raw: RawFrame) -> Result<Frame, FrameError> {
    if raw.frame_type != TYPE_AMQP {
        return Err(FrameError::UnexpectedType(raw.frame_type));
    }
    let channel = raw.channel;
    if raw.body.is_empty() {
        return Ok(Frame {
            channel,
            body: Body::Heartbeat,
        });
    }
    if let Some((transfer, len)) = transfer::decode(&raw.body) {
        let body = Body::Transfer(transfer, raw.body.slice(len..));
        return Ok(Frame { channel, body });
    }
    let len = scan_value(&raw.body, Limits::PERFORMATIVE)?;
    let performative: Performative =
        serde_amqp::from_slice(&raw.body[..len]).map_err(|e| FrameError::Decode(e.to_string()))?;
    let body = match performative {
        Performative::Transfer(t) => Body::Transfer(t.into(), raw.body.slice(len..)),
        _ if len < raw.body.len() => return Err(FrameError::TrailingBytes(raw.body.len() - len)),
        other => Body::Performative(other),
    };
    Ok(Frame { channel, body })
}

/// Interprets a raw frame as a SASL frame carrying a `T`.
pub fn decode_sasl<T: DeserializeOwned>(raw: &RawFrame) -> Result<T, FrameError> {
    if raw.frame_type != TYPE_SASL {
        return Err(FrameError::UnexpectedType(raw.frame_type));
    }
    let len = scan_value(&raw.body, Limits::PERFORMATIVE)?;
    if len < raw.body.len() {
        return Err(FrameError::TrailingBytes(raw.body.len() - len));
    }
    serde_amqp::from_slice(&raw.body[..len]).map_err(|e| FrameError::Decode(e.to_string()))
}

/// Encoded size of a transfer performative, used to fit payload into frames.
pub fn transfer_size(t: &Transfer) -> usize {
    transfer::encoded_len(t)
}

/// Encoded size of a transfer the broker sends (see [`Output::push_delivery`]).
pub fn delivery_transfer_size(handle: u32, first: Option<&FirstFrame>) -> usize {
    transfer::outgoing_len(handle, first)
}

/// Bytes waiting to be written to the socket, in order.
#[derive(Debug, Default)]
pub struct Output {
    chunks: VecDeque<Bytes>,
    scratch: BytesMut,
    queued: usize,
}

impl Output {
    /// Appends raw bytes (a protocol header, a heartbeat).
    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.scratch.extend_from_slice(bytes);
        self.queued += bytes.len();
    }

    /// Appends one AMQP frame. `payload` is written after the performative (only a transfer
    /// has one); large payload chunks are queued by reference, not copied.
    pub fn push_frame(&mut self, channel: u16, performative: &Performative, payload: &[Bytes]) {
        self.push_encoded(TYPE_AMQP, channel, performative, payload);
    }

    /// Appends one transfer frame; the performative is encoded by hand (it is sent once per
    /// message) and the payload chunks are queued as with [`Output::push_frame`].
    pub fn push_transfer(&mut self, channel: u16, t: &Transfer, payload: &[Bytes]) {
        let start = self.scratch.len();
        self.scratch.put_slice(&[0, 0, 0, 0, 2, TYPE_AMQP]);
        self.scratch.put_u16(channel);
        if !transfer::encode(t, &mut self.scratch) {
            self.scratch.truncate(start);
            self.push_frame(channel, &Performative::Transfer(t.into()), payload);
            return;
        }
        self.finish_frame(start, payload);
    }

    /// Appends one frame of a delivery the broker sends: the hot path, encoded by hand
    /// without building a performative.
    pub fn push_delivery(
        &mut self,
        channel: u16,
        handle: u32,
        first: Option<&FirstFrame>,
        more: bool,
        payload: &[Bytes],
    ) {
        let start = self.scratch.len();
        self.scratch.put_slice(&[0, 0, 0, 0, 2, TYPE_AMQP]);
        self.scratch.put_u16(channel);
        transfer::encode_outgoing(handle, first, more, &mut self.scratch);
        self.finish_frame(start, payload);
    }

    /// Appends one SASL frame.
    pub fn push_sasl<T: Serialize>(&mut self, body: &T) {
        self.push_encoded(TYPE_SASL, 0, body, &[]);
    }

    fn push_encoded<T: Serialize>(
        &mut self,
        frame_type: u8,
        channel: u16,
        body: &T,
        payload: &[Bytes],
    ) {
        let start = self.scratch.len();
        self.scratch.put_slice(&[0, 0, 0, 0, 2, frame_type]);
        self.scratch.put_u16(channel);
        let mut ser = serde_amqp::ser::Serializer::new((&mut self.scratch).writer());
        if let Err(e) = body.serialize(&mut ser) {
            // Our own performatives always encode; if one did not, sending half a frame would
            // corrupt the stream, so drop it whole and say so.
            tracing::error!(error = %e, "failed to encode a frame; dropped");
            self.scratch.truncate(start);
            return;
        }
        self.finish_frame(start, payload);
    }

    /// Writes the size of the frame that starts at `start` and queues its payload.
    fn finish_frame(&mut self, start: usize, payload: &[Bytes]) {
        let payload_len: usize = payload.iter().map(Bytes::len).sum();
        let size = self.scratch.len() - start + payload_len;
        self.scratch[start..start + 4].copy_from_slice(&(size as u32).to_be_bytes());
        for chunk in payload {
            if chunk.len() < COPY_PAYLOAD_BELOW {
                self.scratch.extend_from_slice(chunk);
            } else {
                self.seal_scratch();
                self.chunks.push_back(chunk.clone());
            }
        }
        self.queued += size;
    }

    fn seal_scratch(&mut self) {
        if !self.scratch.is_empty() {
            self.chunks.push_back(self.scratch.split().freeze());
        }
    }

    /// Number of bytes waiting.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Makes everything pushed so far visible to [`Output::io_slices`].
    pub fn prepare(&mut self) {
        self.seal_scratch();
    }

    /// Fills `slices` with the waiting bytes (as of the last [`Output::prepare`]) for a
    /// vectored write; returns how many it filled.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    /// Drops `n` bytes from the front, after they were written.
    pub fn advance(&mut self, mut n: usize) {
        self.queued -= n.min(self.queued);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }

    /// Takes everything waiting as one contiguous buffer (tests and the fuzz target).
    pub fn take_all(&mut self) -> Vec<u8> {
        self.seal_scratch();
        let mut all = Vec::with_capacity(self.queued);
        for chunk in self.chunks.drain(..) {
            all.extend_from_slice(&chunk);
        }
        self.queued = 0;
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::performatives::{Begin, Flow};

    fn flow() -> Performative {
        Performative::Flow(Flow {
            next_incoming_id: Some(1),
            incoming_window: 10,
            next_outgoing_id: 1,
            outgoing_window: 10,
            handle: None,
            delivery_count: None,
            link_credit: None,
            available: None,
            drain: false,
            echo: false,
            properties: None,
        })
    }

    #[test]
    fn a_frame_round_trips_through_the_codec() {
        let mut out = Output::default();
        out.push_frame(7, &flow(), &[]);
        let mut buf = BytesMut::from(&out.take_all()[..]);
        let raw = decode_raw(&mut buf, 512).unwrap().unwrap();
        let frame = decode_amqp(raw).unwrap();
        assert_eq!(frame.channel, 7);
        assert!(matches!(
            frame.body,
            Body::Performative(Performative::Flow(_))
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn an_oversized_frame_is_refused_before_its_body_arrives() {
        let mut buf = BytesMut::from(&[0u8, 1, 0, 0, 2, 0, 0, 0][..]);
        assert_eq!(
            decode_raw(&mut buf, 512).unwrap_err(),
            FrameError::TooLarge {
                size: 65536,
                max: 512
            }
        );
    }

    #[test]
    fn a_partial_frame_waits_for_more_bytes() {
        let mut out = Output::default();
        out.push_frame(0, &flow(), &[]);
        let all = out.take_all();
        let mut buf = BytesMut::from(&all[..all.len() - 1]);
        assert!(decode_raw(&mut buf, 512).unwrap().is_none());
        buf.extend_from_slice(&all[all.len() - 1..]);
        assert!(decode_raw(&mut buf, 512).unwrap().is_some());
    }

    #[test]
    fn the_extended_header_is_skipped() {
        let mut out = Output::default();
        out.push_frame(0, &flow(), &[]);
        let all = out.take_all();
        let mut framed = all[..8].to_vec();
        framed[4] = 3;
        framed.extend_from_slice(&[9, 9, 9, 9]);
        framed.extend_from_slice(&all[8..]);
        let size = framed.len() as u32;
        framed[..4].copy_from_slice(&size.to_be_bytes());
        let mut buf = BytesMut::from(&framed[..]);
        let frame = decode_amqp(decode_raw(&mut buf, 512).unwrap().unwrap()).unwrap();
        assert!(matches!(
            frame.body,
            Body::Performative(Performative::Flow(_))
        ));
    }

    #[test]
    fn an_empty_frame_is_a_heartbeat() {
        let mut buf = BytesMut::from(&HEARTBEAT[..]);
        let frame = decode_amqp(decode_raw(&mut buf, 512).unwrap().unwrap()).unwrap();
        assert!(matches!(frame.body, Body::Heartbeat));
    }

    #[test]
    fn a_transfer_payload_is_a_slice_of_the_frame() {
        let transfer = Transfer {
            delivery_id: Some(0),
            delivery_tag: Some(Bytes::from_static(&[1])),
            message_format: Some(0),
            settled: Some(true),
            ..Transfer::default()
        };
        let payload = Bytes::from(vec![0x00, 0x53, 0x77, 0xa1, 0x01, b'x']);
        let mut out = Output::default();
        out.push_transfer(1, &transfer, std::slice::from_ref(&payload));
        let mut buf = BytesMut::from(&out.take_all()[..]);
        let frame = decode_amqp(decode_raw(&mut buf, 512).unwrap().unwrap()).unwrap();
        match frame.body {
            Body::Transfer(t, p) => {
                assert_eq!(t.delivery_id, Some(0));
                assert_eq!(p, payload);
            }
            other => panic!("expected a transfer, got {other:?}"),
        }
    }

    #[test]
    fn bytes_after_a_performative_without_payload_are_an_error() {
        let begin = Performative::Begin(Begin {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window: 1,
            outgoing_window: 1,
            handle_max: 7.into(),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        });
        let mut out = Output::default();
        out.push_frame(0, &begin, &[Bytes::from_static(b"junk")]);
        let mut buf = BytesMut::from(&out.take_all()[..]);
        let err = decode_amqp(decode_raw(&mut buf, 512).unwrap().unwrap()).unwrap_err();
        assert_eq!(err, FrameError::TrailingBytes(4));
    }
}
