//! The transfer performative, decoded and encoded by hand.
//!
//! Transfers are the one performative sent per message, so they skip serde_amqp: decoding
//! reads the list fields in place (the tag stays a slice of the frame) and encoding writes
//! them straight into the output buffer. Anything unusual — a non-null delivery state, an
//! encoding the fast path does not expect — falls back to the general decoder, so the fast
//! path never accepts less than serde_amqp would.

use bytes::{BufMut, Bytes, BytesMut};
use fe2o3_amqp_types::definitions::ReceiverSettleMode;
use fe2o3_amqp_types::messaging::DeliveryState;
use fe2o3_amqp_types::performatives;

/// Descriptor code of the transfer performative (AMQP 1.0 part 2, §2.7.5).
pub const DESCRIPTOR: u8 = 0x14;

/// A transfer performative.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transfer {
    /// The link handle.
    pub handle: u32,
    /// The delivery-id; may be omitted on continuation frames.
    pub delivery_id: Option<u32>,
    /// The delivery-tag, as a slice of the frame.
    pub delivery_tag: Option<Bytes>,
    /// The message-format; may be omitted on continuation frames.
    pub message_format: Option<u32>,
    /// Whether the sender has settled the delivery.
    pub settled: Option<bool>,
    /// More frames of this delivery follow.
    pub more: bool,
    /// The receiver-settle-mode for this delivery.
    pub rcv_settle_mode: Option<ReceiverSettleMode>,
    /// The delivery state (rare: resumes and transactions).
    pub state: Option<DeliveryState>,
    /// The delivery resumes one from an earlier attach.
    pub resume: bool,
    /// The delivery is aborted.
    pub aborted: bool,
    /// The sender does not need a prompt disposition.
    pub batchable: bool,
}

impl From<performatives::Transfer> for Transfer {
    fn from(t: performatives::Transfer) -> Self {
        Transfer {
            handle: t.handle.0,
            delivery_id: t.delivery_id,
            delivery_tag: t.delivery_tag.map(|tag| Bytes::from(tag.into_vec())),
            message_format: t.message_format,
            settled: t.settled,
            more: t.more,
            rcv_settle_mode: t.rcv_settle_mode,
            state: t.state,
            resume: t.resume,
            aborted: t.aborted,
            batchable: t.batchable,
        }
    }
}

impl From<&Transfer> for performatives::Transfer {
    fn from(t: &Transfer) -> Self {
        performatives::Transfer {
            handle: t.handle.into(),
            delivery_id: t.delivery_id,
            delivery_tag: t.delivery_tag.as_ref().map(|b| b.to_vec().into()),
            message_format: t.message_format,
            settled: t.settled,
            more: t.more,
            rcv_settle_mode: t.rcv_settle_mode.clone(),
            state: t.state.clone(),
            resume: t.resume,
            aborted: t.aborted,
            batchable: t.batchable,
        }
    }
}

/// Decodes a transfer at the start of `body`, returning it and its encoded length, or `None`
/// when the encoding is not one the fast path handles (the caller then uses serde_amqp).
pub fn decode(body: &Bytes) -> Option<(Transfer, usize)> {
    let mut r = Reader { buf: body, pos: 0 };
    match (r.u8()?, r.u8()?) {
        (0x00, 0x53) if r.u8()? == DESCRIPTOR => {}
        _ => return None,
    }
    let (count, end) = match r.u8()? {
        0xc0 => {
            let size = usize::from(r.u8()?);
            let end = r.pos.checked_add(size)?;
            (u32::from(r.u8()?), end)
        }
        0xd0 => {
            let size = r.u32()? as usize;
            let end = r.pos.checked_add(size)?;
            (r.u32()?, end)
        }
        _ => return None,
    };
    if end > body.len() || count == 0 || count > 11 {
        return None;
    }
    let mut t = Transfer {
        handle: r.uint()??,
        ..Transfer::default()
    };
    for field in 1..count {
        match field {
            1 => t.delivery_id = r.uint()?,
            2 => t.delivery_tag = r.binary()?,
            3 => t.message_format = r.uint()?,
            4 => t.settled = r.boolean()?,
            5 => t.more = r.boolean()?.unwrap_or(false),
            6 => {
                t.rcv_settle_mode = match r.ubyte()? {
                    None => None,
                    Some(0) => Some(ReceiverSettleMode::First),
                    Some(1) => Some(ReceiverSettleMode::Second),
                    Some(_) => return None,
                }
            }
            // A delivery state needs the general decoder.
            7 => r.null()?,
            8 => t.resume = r.boolean()?.unwrap_or(false),
            9 => t.aborted = r.boolean()?.unwrap_or(false),
            _ => t.batchable = r.boolean()?.unwrap_or(false),
        }
    }
    (r.pos == end).then_some((t, end))
}

/// Appends the encoded transfer performative (without frame header) to `out`, or returns
/// `false` without writing anything when it carries a delivery state (the caller encodes
/// those with serde_amqp).
pub fn encode(t: &Transfer, out: &mut BytesMut) -> bool {
    if t.state.is_some() {
        return false;
    }
    let mut fields = [0u8; 80];
    let mut w = Writer {
        buf: &mut fields,
        len: 0,
    };
    w.uint(Some(t.handle));
    w.uint(t.delivery_id);
    w.binary(t.delivery_tag.as_deref());
    w.uint(t.message_format);
    w.boolean(t.settled);
    w.boolean(Some(t.more));
    let mut count = 6;
    let tail = [t.resume, t.aborted, t.batchable];
    if t.rcv_settle_mode.is_some() || tail.iter().any(|&b| b) {
        w.ubyte(t.rcv_settle_mode.as_ref().map(|m| match m {
            ReceiverSettleMode::First => 0,
            ReceiverSettleMode::Second => 1,
        }));
        w.byte(0x40);
        for b in tail {
            w.boolean(Some(b));
        }
        count = 11;
    }
    let Some(fields) = w.written() else {
        return false;
    };
    out.put_slice(&[
        0x00,
        0x53,
        DESCRIPTOR,
        0xc0,
        (fields.len() + 1) as u8,
        count,
    ]);
    out.put_slice(fields);
    true
}

/// What the first frame of a delivery the broker sends carries; continuation frames carry
/// only the handle and `more`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstFrame {
    /// The delivery-id; its four big-endian bytes are also the delivery-tag.
    pub delivery_id: u32,
    /// The message-format the message arrived with.
    pub message_format: u32,
    /// Sent pre-settled (at-most-once).
    pub settled: bool,
}

/// Appends a transfer of the broker's own, without building a [`Transfer`] (whose tag would
/// cost an allocation per message).
pub fn encode_outgoing(handle: u32, first: Option<&FirstFrame>, more: bool, out: &mut BytesMut) {
    let mut fields = [0u8; 32];
    let mut w = Writer {
        buf: &mut fields,
        len: 0,
    };
    w.uint(Some(handle));
    match first {
        Some(f) => {
            w.uint(Some(f.delivery_id));
            w.binary(Some(&f.delivery_id.to_be_bytes()));
            w.uint(Some(f.message_format));
            w.boolean(Some(f.settled));
        }
        None => w.bytes(&[0x40; 4]),
    }
    w.boolean(Some(more));
    // At most 5 + 6 + 5 + 1 + 1 + 1 bytes: always fits.
    let fields = w.written().unwrap_or_default();
    out.put_slice(&[0x00, 0x53, DESCRIPTOR, 0xc0, (fields.len() + 1) as u8, 6]);
    out.put_slice(fields);
}

/// Encoded size of what [`encode_outgoing`] writes.
pub fn outgoing_len(handle: u32, first: Option<&FirstFrame>) -> usize {
    let mut scratch = BytesMut::with_capacity(40);
    encode_outgoing(handle, first, true, &mut scratch);
    scratch.len()
}

/// Encoded size of `t` (as [`encode`] writes it, or serde_amqp for one with a state).
pub fn encoded_len(t: &Transfer) -> usize {
    let mut scratch = BytesMut::with_capacity(96);
    if encode(t, &mut scratch) {
        return scratch.len();
    }
    let p = performatives::Performative::Transfer(t.into());
    serde_amqp::serialized_size(&p).unwrap_or(256)
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        let bytes = self.buf.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A uint or null; the outer `None` means "not handled here".
    fn uint(&mut self) -> Option<Option<u32>> {
        Some(match self.u8()? {
            0x40 => None,
            0x43 => Some(0),
            0x52 => Some(u32::from(self.u8()?)),
            0x70 => Some(self.u32()?),
            _ => return None,
        })
    }

    fn ubyte(&mut self) -> Option<Option<u8>> {
        Some(match self.u8()? {
            0x40 => None,
            0x50 => Some(self.u8()?),
            _ => return None,
        })
    }

    fn boolean(&mut self) -> Option<Option<bool>> {
        Some(match self.u8()? {
            0x40 => None,
            0x41 => Some(true),
            0x42 => Some(false),
            0x56 => match self.u8()? {
                0 => Some(false),
                1 => Some(true),
                _ => return None,
            },
            _ => return None,
        })
    }

    fn binary(&mut self) -> Option<Option<Bytes>> {
        let len = match self.u8()? {
            0x40 => return Some(None),
            0xa0 => usize::from(self.u8()?),
            0xb0 => self.u32()? as usize,
            _ => return None,
        };
        let end = self.pos.checked_add(len)?;
        if end > self.buf.len() {
            return None;
        }
        let tag = self.buf.slice(self.pos..end);
        self.pos = end;
        Some(Some(tag))
    }

    fn null(&mut self) -> Option<()> {
        (self.u8()? == 0x40).then_some(())
    }
}

/// Writes into a fixed buffer; remembers overflow instead of panicking.
struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn byte(&mut self, b: u8) {
        self.bytes(&[b]);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len = end;
            }
            // Mark overflow: `written` then reports failure.
            None => self.len = usize::MAX / 2,
        }
    }

    fn uint(&mut self, v: Option<u32>) {
        match v {
            None => self.byte(0x40),
            Some(0) => self.byte(0x43),
            Some(v) if v < 256 => self.bytes(&[0x52, v as u8]),
            Some(v) => {
                self.byte(0x70);
                self.bytes(&v.to_be_bytes());
            }
        }
    }

    fn ubyte(&mut self, v: Option<u8>) {
        match v {
            None => self.byte(0x40),
            Some(v) => self.bytes(&[0x50, v]),
        }
    }

    fn boolean(&mut self, v: Option<bool>) {
        self.byte(match v {
            None => 0x40,
            Some(true) => 0x41,
            Some(false) => 0x42,
        });
    }

    fn binary(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.byte(0x40),
            Some(b) if b.len() < 256 => {
                self.bytes(&[0xa0, b.len() as u8]);
                self.bytes(b);
            }
            // A tag is at most 32 bytes (§2.8.7); a longer one overflows the buffer.
            Some(_) => self.len = usize::MAX / 2,
        }
    }

    fn written(&self) -> Option<&[u8]> {
        // The list size byte must also count the count byte.
        self.buf.get(..self.len).filter(|f| f.len() < 255)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_encode(t: &Transfer) -> Vec<u8> {
        serde_amqp::to_vec(&performatives::Performative::Transfer(t.into())).unwrap()
    }

    fn serde_decode(bytes: &[u8]) -> Transfer {
        match serde_amqp::from_slice(bytes).unwrap() {
            performatives::Performative::Transfer(t) => t.into(),
            other => panic!("not a transfer: {other:?}"),
        }
    }

    prop_compose! {
        fn transfers()(
            handle in any::<u32>(),
            delivery_id in proptest::option::of(any::<u32>()),
            tag in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
            message_format in proptest::option::of(any::<u32>()),
            settled in proptest::option::of(any::<bool>()),
            more in any::<bool>(),
            second in proptest::option::of(any::<bool>()),
            flags in any::<(bool, bool, bool)>(),
        ) -> Transfer {
            Transfer {
                handle,
                delivery_id,
                delivery_tag: tag.map(Bytes::from),
                message_format,
                settled,
                more,
                rcv_settle_mode: second.map(|s| if s { ReceiverSettleMode::Second } else { ReceiverSettleMode::First }),
                state: None,
                resume: flags.0,
                aborted: flags.1,
                batchable: flags.2,
            }
        }
    }

    proptest! {
        #[test]
        fn what_we_encode_serde_amqp_decodes_the_same(t in transfers()) {
            let mut out = BytesMut::new();
            prop_assert!(encode(&t, &mut out));
            prop_assert_eq!(serde_decode(&out), t.clone());
            prop_assert_eq!(encoded_len(&t), out.len());
        }

        #[test]
        fn what_serde_amqp_encodes_we_decode_the_same(t in transfers()) {
            let bytes = Bytes::from(serde_encode(&t));
            let (decoded, len) = decode(&bytes).expect("the fast path handles serde_amqp's encoding");
            prop_assert_eq!(len, bytes.len());
            prop_assert_eq!(decoded, t);
        }

        #[test]
        fn the_fast_decoder_never_panics_and_agrees_when_it_answers(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut framed = vec![0x00, 0x53, DESCRIPTOR];
            framed.extend_from_slice(&bytes);
            let framed = Bytes::from(framed);
            if let Some((t, len)) = decode(&framed) {
                prop_assert_eq!(serde_decode(&framed[..len]), t);
            }
        }
    }

    proptest! {
        #[test]
        fn our_own_transfers_decode_as_what_we_meant(
            handle in any::<u32>(),
            first in proptest::option::of((any::<u32>(), any::<u32>(), any::<bool>())),
            more in any::<bool>(),
        ) {
            let first = first.map(|(delivery_id, message_format, settled)| FirstFrame { delivery_id, message_format, settled });
            let mut out = BytesMut::new();
            encode_outgoing(handle, first.as_ref(), more, &mut out);
            prop_assert_eq!(out.len(), outgoing_len(handle, first.as_ref()));
            let expected = Transfer {
                handle,
                delivery_id: first.map(|f| f.delivery_id),
                delivery_tag: first.map(|f| Bytes::copy_from_slice(&f.delivery_id.to_be_bytes())),
                message_format: first.map(|f| f.message_format),
                settled: first.map(|f| f.settled),
                more,
                ..Transfer::default()
            };
            prop_assert_eq!(serde_decode(&out), expected);
        }
    }

    #[test]
    fn a_transfer_with_a_state_is_left_to_serde_amqp() {
        let t = Transfer {
            state: Some(DeliveryState::Accepted(
                fe2o3_amqp_types::messaging::Accepted {},
            )),
            ..Transfer::default()
        };
        let mut out = BytesMut::new();
        assert!(!encode(&t, &mut out));
        assert!(out.is_empty());
        assert!(decode(&Bytes::from(serde_encode(&t))).is_none());
    }
}
