//! The pre-scan against hand-built and serde_amqp-encoded values, nesting limits, and
//! arbitrary bytes.

use super::*;
use proptest::prelude::*;
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;
use serde_amqp::primitives::{Array, OrderedMap, Symbol, Timestamp};
use serde_amqp::Value;

const GENEROUS: Limits = Limits {
    max_depth: 200_000,
    max_elements: usize::MAX,
};

fn scan(bytes: &[u8]) -> Result<usize, ScanError> {
    scan_value(bytes, Limits::PERFORMATIVE)
}

fn size_mismatch(bytes: &[u8]) -> bool {
    matches!(scan(bytes), Err(ScanError::SizeMismatch { .. }))
}

#[test]
fn fixed_and_variable_width_values_scan_to_their_length_ignoring_what_follows() {
    let cases: [&[u8]; 8] = [
        &[0x40],
        &[0x53, 0x10],
        &[0x60, 0, 1],
        &[0x73, 0, 0, 0, 0x41],
        &[0x83, 0, 0, 0, 0, 0, 0, 0, 1],
        &[0x98; 17],
        &[0x94; 17],
        &[0xa1, 2, b'h', b'i'],
    ];
    for bytes in cases {
        let padded = [bytes, &[0xff, 0xff]].concat();
        assert_eq!(scan(&padded), Ok(bytes.len()), "{bytes:02x?}");
    }
}

#[test]
fn undefined_format_codes_are_rejected_with_their_offset() {
    for byte in [
        0x01, 0x46, 0x57, 0x62, 0x75, 0x85, 0x95, 0x99, 0xa2, 0xc2, 0xe1, 0xff,
    ] {
        let expected = ScanError::InvalidConstructor { byte, offset: 3 };
        assert_eq!(scan(&[0xc0, 2, 1, byte]), Err(expected));
    }
}

#[test]
fn short_buffers_are_truncated() {
    assert!(matches!(scan(&[]), Err(ScanError::Truncated { .. })));
    let expected = ScanError::Truncated {
        offset: 5,
        needed: 9,
        len: 6,
    };
    assert_eq!(scan(&[0xb1, 0, 0, 0, 10, b'a']), Err(expected));
}

#[test]
fn contents_that_overrun_or_underfill_a_declared_size_are_a_size_mismatch() {
    assert!(size_mismatch(&[0xc0, 3, 1, 0xa1, 3, b'a', b'b', b'c']));
    let expected = ScanError::SizeMismatch {
        offset: 1,
        declared: 4,
        actual: 2,
    };
    assert_eq!(scan(&[0xc0, 4, 1, 0x40, 0x40, 0x40]), Err(expected));
    // 3 uints need 12 bytes; the array declares 10.
    assert!(size_mismatch(&[0xe0, 10, 3, 0x70, 0, 0, 0, 0, 0, 0, 0, 0]));
}

#[test]
fn a_list_claiming_four_billion_elements_in_ten_bytes_fails_at_once() {
    let mut bytes = vec![0xd0, 0, 0, 0, 10, 0xff, 0xff, 0xff, 0xff];
    bytes.extend([0x40; 6]);
    let result = scan_value(&bytes, GENEROUS);
    assert!(matches!(
        result,
        Err(ScanError::SizeMismatch { declared: 10, .. })
    ));
}

#[test]
fn an_array_of_four_billion_nulls_is_too_many_or_skipped_in_one_step() {
    let bytes = [0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40];
    let expected = ScanError::TooManyElements { limit: 65_536 };
    assert_eq!(scan(&bytes), Err(expected));
    assert_eq!(scan_value(&bytes, GENEROUS), Ok(10));
}

#[test]
fn maps_need_an_even_count() {
    let expected = ScanError::OddMapCount {
        offset: 1,
        count: 1,
    };
    assert_eq!(scan(&[0xc1, 2, 1, 0x40]), Err(expected));
}

#[test]
fn arrays_of_described_elements_carry_the_descriptor_once() {
    // Constructor 0x00 0x53 0x10 0xa1, then two str8 bodies.
    let bytes = [0xe0, 10, 2, 0x00, 0x53, 0x10, 0xa1, 1, b'a', 2, b'b', b'c'];
    assert_eq!(scan(&bytes), Ok(12));
    // A descriptor that is itself described, over list8 elements.
    let bytes = [
        0xe0, 14, 2, 0, 0, 0xa3, 1, b'x', 0x53, 1, 0xc0, 2, 1, 0x40, 1, 0,
    ];
    assert_eq!(scan(&bytes), Ok(16));
}

#[test]
fn arrays_of_arrays_and_of_lists_are_walked() {
    // [[1u8, 2u8], []] and [[null], []].
    let bytes = [0xe0, 10, 2, 0xe0, 4, 2, 0x50, 1, 2, 2, 0, 0x50];
    assert_eq!(scan(&bytes), Ok(12));
    assert_eq!(scan(&[0xe0, 7, 2, 0xc0, 2, 1, 0x40, 1, 0]), Ok(9));
}

fn nested_described(levels: usize) -> Vec<u8> {
    [[0x00, 0x53, 0x10].repeat(levels), vec![0x40]].concat()
}

/// list32s nested `levels` deep around a null, with correct sizes.
fn nested_lists(levels: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(levels * 9 + 1);
    for level in 0..levels {
        let size = (levels - level - 1) * 9 + 5;
        bytes.push(0xd0);
        bytes.extend((size as u32).to_be_bytes());
        bytes.extend(1u32.to_be_bytes());
    }
    bytes.push(0x40);
    bytes
}

#[test]
fn nesting_at_the_limit_is_accepted_and_one_level_more_is_too_deep() {
    let too_deep = ScanError::TooDeep { limit: 32 };
    for nested in [nested_described, nested_lists] {
        assert_eq!(scan(&nested(32)), Ok(nested(32).len()));
        assert_eq!(scan(&nested(33)), Err(too_deep.clone()));
    }
    assert_eq!(too_deep.to_string(), "value nested deeper than 32 levels");
}

#[test]
fn a_hundred_thousand_levels_are_too_deep_quickly_and_without_recursion() {
    let start = std::time::Instant::now();
    for nested in [nested_described, nested_lists] {
        let bytes = nested(100_000);
        assert_eq!(scan(&bytes), Err(ScanError::TooDeep { limit: 32 }));
        let capped = ScanError::TooDeep {
            limit: MAX_STACK - 1,
        };
        assert_eq!(scan_value(&bytes, GENEROUS), Err(capped));
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn the_element_limit_counts_every_value() {
    let limits = Limits {
        max_depth: 32,
        max_elements: 3,
    };
    let result = scan_value(&[0xc0, 4, 3, 0x40, 0x40, 0x40], limits);
    assert_eq!(result, Err(ScanError::TooManyElements { limit: 3 }));
}

#[test]
fn a_transfer_performative_is_split_from_its_payload() {
    let transfer = fe2o3_amqp_types::performatives::Transfer {
        handle: 1.into(),
        delivery_id: Some(7),
        delivery_tag: Some(vec![1, 2, 3].into()),
        message_format: Some(0),
        settled: Some(false),
        more: false,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: false,
    };
    let mut bytes = serde_amqp::to_vec(&transfer).expect("encode transfer");
    let performative_len = bytes.len();
    bytes.extend([0x00, 0x53, 0x75, 0xa0, 1, 0xaa]);
    assert_eq!(scan(&bytes), Ok(performative_len));
}

/// Arrays of described values are left to the hand-built tests: serde_amqp 0.18 repeats
/// the descriptor in every element, which the spec (and this scanner) does not allow.
/// Its non-ASCII array strings and timestamp map keys are broken too, so avoided.
fn leaf() -> impl Strategy<Value = Value> {
    use proptest::collection::vec;
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u8>().prop_map(Value::Ubyte),
        any::<u16>().prop_map(Value::Ushort),
        any::<u32>().prop_map(Value::Uint),
        any::<u64>().prop_map(Value::Ulong),
        any::<i8>().prop_map(Value::Byte),
        any::<i64>().prop_map(Value::Long),
        any::<f64>().prop_map(|f| Value::Double(f.into())),
        any::<char>().prop_map(Value::Char),
        any::<i64>().prop_map(|t| Value::Timestamp(Timestamp::from_milliseconds(t))),
        any::<[u8; 16]>().prop_map(|u| Value::Uuid(u.into())),
        any::<[u8; 16]>().prop_map(|d| Value::Decimal128(d.into())),
        vec(any::<u8>(), 0..300).prop_map(|b| Value::Binary(b.into())),
        ".{0,40}".prop_map(Value::String),
        "[a-z:]{0,300}".prop_map(|s| Value::Symbol(Symbol::from(s))),
        vec(any::<u64>(), 0..40)
            .prop_map(|v| Value::Array(Array(v.into_iter().map(Value::Ulong).collect()))),
        vec("[ -~]{0,5}", 0..10)
            .prop_map(|v| Value::Array(Array(v.into_iter().map(Value::String).collect()))),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    use proptest::collection::vec;
    let key = prop_oneof![
        ".{0,10}".prop_map(Value::String),
        any::<u64>().prop_map(Value::Ulong),
    ];
    leaf().prop_recursive(6, 200, 12, move |inner| {
        let described =
            |descriptor, value| Value::Described(Box::new(Described { descriptor, value }));
        prop_oneof![
            vec(inner.clone(), 0..12).prop_map(Value::List),
            vec((key.clone(), inner.clone()), 0..6)
                .prop_map(|kv| Value::Map(kv.into_iter().collect::<OrderedMap<_, _>>())),
            (any::<u64>(), inner.clone())
                .prop_map(move |(code, v)| described(Descriptor::Code(code), v)),
            ("[a-z:]{1,20}", inner)
                .prop_map(move |(name, v)| { described(Descriptor::Name(Symbol::from(name)), v) }),
        ]
    })
}

proptest! {
    #[test]
    fn valid_encodings_scan_to_exactly_their_length(
        value in value(),
        trailing in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut bytes = serde_amqp::to_vec(&value).expect("encode generated value");
        let len = bytes.len();
        bytes.extend(trailing);
        prop_assert_eq!(scan_value(&bytes, GENEROUS), Ok(len));
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_claim_more_than_the_buffer(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        if let Ok(len) = scan(&bytes) {
            prop_assert!(len >= 1 && len <= bytes.len());
        }
    }

    #[test]
    fn corrupted_encodings_never_panic(
        value in value(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = serde_amqp::to_vec(&value).expect("encode generated value");
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        if let Ok(len) = scan(&bytes) {
            prop_assert!(len <= bytes.len());
        }
        let _ = scan(&bytes[..bytes.len() / 2]);
    }
}
