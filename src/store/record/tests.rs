//! Tests of the record format.

use super::*;
use proptest::prelude::*;

fn encoded(kind: RecordKind, payload: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let n = encode(kind, payload, &mut buf).expect("encode");
    assert_eq!(n, buf.len());
    assert_eq!(n, encoded_len(payload.len()));
    buf.to_vec()
}

#[test]
fn kinds_round_trip_through_their_numbers() {
    for kind in RecordKind::ALL {
        assert_eq!(RecordKind::from_u8(kind.as_u8()), Some(kind));
    }
    assert_eq!(RecordKind::from_u8(0), None);
    assert_eq!(RecordKind::from_u8(10), None);
    assert_eq!(RecordKind::from_u8(255), None);
}

#[test]
fn layout_is_len_crc_kind_payload() {
    let bytes = encoded(RecordKind::Settle, b"abc");
    assert_eq!(&bytes[0..4], &4u32.to_le_bytes());
    assert_eq!(&bytes[4..8], &checksum(2, b"abc").to_le_bytes());
    assert_eq!(bytes[8], 2);
    assert_eq!(&bytes[9..], b"abc");
    // The CRC is CRC32C (Castagnoli) over kind and payload: check against the crate directly.
    assert_eq!(checksum(2, b"abc"), crc32c::crc32c(b"\x02abc"));
}

#[test]
fn every_kind_round_trips() {
    for kind in RecordKind::ALL {
        let bytes = encoded(kind, b"payload");
        assert_eq!(
            decode(&bytes),
            Decoded::Record {
                kind,
                payload: b"payload",
                len_on_disk: bytes.len(),
                batch_start: false,
            }
        );
    }
}

#[test]
fn empty_payload_round_trips() {
    let bytes = encoded(RecordKind::QueueDelete, b"");
    assert_eq!(bytes.len(), RECORD_HEADER_LEN + 1);
    assert_eq!(
        decode(&bytes),
        Decoded::Record {
            kind: RecordKind::QueueDelete,
            payload: b"",
            len_on_disk: 9,
            batch_start: false,
        }
    );
}

#[test]
fn huge_payload_round_trips() {
    let payload: Vec<u8> = (0..16 * 1024 * 1024u32)
        .map(|i| i.wrapping_mul(2_654_435_761) as u8)
        .collect();
    let bytes = encoded(RecordKind::Enqueue, &payload);
    match decode(&bytes) {
        Decoded::Record {
            kind,
            payload: p,
            len_on_disk,
            ..
        } => {
            assert_eq!(kind, RecordKind::Enqueue);
            assert_eq!(len_on_disk, bytes.len());
            assert!(p == payload.as_slice());
        }
        other => panic!("expected a record, got {other:?}"),
    }
}

#[test]
fn largest_payload_is_accepted_and_one_more_byte_refused() {
    // calloc'd zeros: the pages are only touched by the copy of the accepted one.
    let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
    let mut buf = BytesMut::new();
    assert_eq!(
        encode(RecordKind::Enqueue, &big, &mut buf),
        Err(RecordTooLarge {
            len: MAX_PAYLOAD_LEN + 1
        })
    );
    assert!(buf.is_empty(), "a refused record writes nothing");
    let n = encode(RecordKind::Enqueue, &big[..MAX_PAYLOAD_LEN], &mut buf).expect("fits");
    assert_eq!(&buf[..4], &MAX_RECORD_LEN.to_le_bytes());
    assert!(matches!(decode(&buf), Decoded::Record { len_on_disk, .. } if len_on_disk == n));
}

#[test]
fn empty_input_and_zero_length_are_the_end() {
    assert_eq!(decode(&[]), Decoded::End);
    assert_eq!(decode(&[0, 0]), Decoded::End);
    assert_eq!(decode(&[0; 4096]), Decoded::End);
    // A zero length is the end whatever follows; the segment scan checks what follows.
    assert_eq!(decode(&[0, 0, 0, 0, 7, 7, 7, 7, 1]), Decoded::End);
}

#[test]
fn every_prefix_of_a_record_is_torn() {
    let bytes = encoded(RecordKind::Enqueue, b"hello, journal");
    for cut in 1..bytes.len() {
        let got = decode(&bytes[..cut]);
        let want = if cut < RECORD_HEADER_LEN {
            Decoded::Torn(Torn::Header { available: cut })
        } else {
            Decoded::Torn(Torn::Frame {
                needed: bytes.len(),
                available: cut,
            })
        };
        assert_eq!(got, want, "cut at {cut}");
    }
}

#[test]
fn a_record_with_its_tail_zeroed_is_a_crc_mismatch() {
    // What a preallocated segment shows when only the start of a record reached the disk.
    let mut bytes = encoded(RecordKind::Enqueue, b"hello, journal");
    bytes[12..].fill(0);
    assert!(matches!(
        decode(&bytes),
        Decoded::Corrupt(Corrupt::Crc { len: 15, .. })
    ));
}

#[test]
fn impossible_length_is_corrupt_without_reading_further() {
    let mut bytes = vec![0u8; 16];
    bytes[..4].copy_from_slice(&(MAX_RECORD_LEN + 1).to_le_bytes());
    assert_eq!(
        decode(&bytes),
        Decoded::Corrupt(Corrupt::Length {
            len: MAX_RECORD_LEN + 1
        })
    );
    assert_eq!(
        decode(&[0xff; 4]),
        Decoded::Corrupt(Corrupt::Length { len: u32::MAX })
    );
    assert_eq!(Corrupt::Length { len: 1 << 30 }.claimed_len(), None);
}

#[test]
fn unknown_kind_under_a_good_crc_is_corrupt() {
    let mut bytes = encoded(RecordKind::Enqueue, b"x");
    bytes[8] = 42;
    bytes[4..8].copy_from_slice(&checksum(42, b"x").to_le_bytes());
    assert_eq!(decode(&bytes), Decoded::Corrupt(Corrupt::Kind { kind: 42 }));
}

#[test]
fn every_single_bit_flip_is_detected() {
    let bytes = encoded(RecordKind::Consume, b"consumed 17");
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        match decode(&damaged) {
            Decoded::Record { .. } | Decoded::Void { .. } | Decoded::Checkpoint { .. } => {
                panic!("bit {bit} flipped went unnoticed")
            }
            Decoded::End => assert!(bit < 32, "only a length can read as zero"),
            Decoded::Torn(_) | Decoded::Corrupt(_) => {}
        }
    }
}

#[test]
fn a_voided_record_keeps_its_length_and_batch_mark_and_reads_as_void() {
    let mut buf = BytesMut::new();
    encode_with(RecordKind::Enqueue, b"a refused message", true, &mut buf).unwrap();
    let len = buf.len();
    void_in_place(&mut buf[..]);
    assert_eq!(buf.len(), len);
    assert_eq!(
        decode(&buf),
        Decoded::Void {
            len_on_disk: len,
            batch_start: true
        }
    );
    assert!(!buf.windows(7).any(|w| w == b"refused"), "payload kept");
}

fn kind_strategy() -> impl Strategy<Value = RecordKind> {
    proptest::sample::select(RecordKind::ALL.to_vec())
}

proptest! {
    #[test]
    fn sequences_round_trip(records in proptest::collection::vec(
        (kind_strategy(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20)
    ) {
        let mut buf = BytesMut::new();
        for (kind, payload) in &records {
            encode(*kind, payload, &mut buf).unwrap();
        }
        let mut rest = &buf[..];
        for (kind, payload) in &records {
            match decode(rest) {
                Decoded::Record { kind: k, payload: p, len_on_disk, .. } => {
                    prop_assert_eq!(k, *kind);
                    prop_assert_eq!(p, payload.as_slice());
                    rest = &rest[len_on_disk..];
                }
                other => prop_assert!(false, "expected a record, got {:?}", other),
            }
        }
        prop_assert_eq!(decode(rest), Decoded::End);
    }

    #[test]
    fn decode_never_panics_or_overreads(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        match decode(&bytes) {
            Decoded::Record { len_on_disk, payload, .. } => {
                prop_assert!(len_on_disk <= bytes.len());
                prop_assert_eq!(payload.len() + RECORD_HEADER_LEN + 1, len_on_disk);
            }
            Decoded::Void { len_on_disk, .. } | Decoded::Checkpoint { len_on_disk, .. } => {
                prop_assert!(len_on_disk <= bytes.len())
            }
            Decoded::End | Decoded::Torn(_) | Decoded::Corrupt(_) => {}
        }
    }

    #[test]
    fn random_damage_never_yields_a_different_record(
        kind in kind_strategy(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        at in any::<proptest::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let mut bytes = encoded(kind, &payload);
        let at = at.index(bytes.len());
        bytes[at] ^= xor;
        if let Decoded::Record { .. } = decode(&bytes) {
            prop_assert!(false, "damage at {} went unnoticed", at);
        }
    }
}

#[test]
fn the_batch_mark_travels_in_the_kind_byte_under_the_crc() {
    let mut buf = BytesMut::new();
    encode_with(RecordKind::Settle, b"x", true, &mut buf).unwrap();
    assert_eq!(
        buf[RECORD_HEADER_LEN],
        RecordKind::Settle.as_u8() | BATCH_START
    );
    assert!(matches!(
        decode(&buf),
        Decoded::Record {
            kind: RecordKind::Settle,
            batch_start: true,
            ..
        }
    ));
    // Clearing the mark breaks the CRC: it cannot be lost or gained silently.
    buf[RECORD_HEADER_LEN] &= !BATCH_START;
    assert!(matches!(
        decode(&buf),
        Decoded::Corrupt(Corrupt::Crc { .. })
    ));
}
