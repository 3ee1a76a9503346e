//! Tests of application-property lookup and the annotation and marker rewrites.

use bytes::Bytes;
use fe2o3_amqp_types::messaging::annotations::OwnedKey;
use fe2o3_amqp_types::messaging::{
    AmqpValue, ApplicationProperties, Body, DeliveryAnnotations, Footer, Header as AmqpHeader,
    Message as AmqpMessage, MessageAnnotations, Properties,
};
use fe2o3_amqp_types::primitives::{Binary, SimpleValue, Symbol, Timestamp, Value};
use proptest::prelude::*;

use super::*;

use crate::message::tests::{decode, encode, Decoded};

fn parse(message: &Decoded) -> Message {
    Message::parse(encode(message)).expect("parse")
}

fn body() -> Body<Value> {
    Body::Value(AmqpValue(Value::String("payload".into())))
}

/// Each section's code and encoding, in order.
fn sections(bytes: &[u8]) -> Vec<(u64, &[u8])> {
    let mut sections = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = scan_value(rest, MESSAGE_LIMITS).expect("scan");
        let (section, after) = rest.split_at(len);
        let (code, _) = identify(section, 0, 0).expect("a section");
        sections.push((code, section));
        rest = after;
    }
    sections
}

/// How often the map section `code` holds the key `key` (of the section's key type).
fn key_count(bytes: &[u8], code: u64, key: &str, key_type: KeyType) -> usize {
    let (_, section) = sections(bytes)
        .into_iter()
        .find(|(c, _)| *c == code)
        .expect("section present");
    let (_, value_start) = identify(section, 0, 0).expect("a section");
    Items::map(&section[value_start..])
        .expect("a map")
        .step_by(2)
        .filter(|item| key_type.text(item.expect("item").1) == Some(key.as_bytes()))
        .count()
}

/// A message with the marker as both an annotation and a property, set to `value`.
fn full_message(marker: bool) -> Decoded {
    AmqpMessage::builder()
        .header(AmqpHeader {
            durable: true,
            priority: 6.into(),
            ttl: Some(1_000),
            first_acquirer: true,
            delivery_count: 1,
        })
        .delivery_annotations(
            DeliveryAnnotations::builder().insert(Symbol::from("x-hop"), Value::Uint(1)),
        )
        .message_annotations(
            MessageAnnotations::builder()
                .insert(Symbol::from("x-opt-delivery-delay"), Value::Long(250))
                .insert(Symbol::from("first"), Value::Bool(marker))
                .insert(9u64, Value::Null),
        )
        .properties(
            Properties::builder()
                .message_id(String::from("m-1"))
                .to("orders")
                .group_id(String::from("g"))
                .build(),
        )
        .application_properties(
            ApplicationProperties::builder()
                .insert("JMSXGroupID", "g")
                .insert("first", marker)
                .insert("region", "eu"),
        )
        .footer(Footer::builder().insert(Symbol::from("x-sum"), Value::Uint(9)))
        .body(body())
        .build()
}

#[test]
fn application_properties_are_read_by_type() {
    let properties = ApplicationProperties::builder()
        .insert("string", "g-1")
        .insert("symbol", Symbol::from("s"))
        .insert("JMSXGroupSeq", 7i32)
        .insert("int", -100_000i32)
        .insert("small long", -5i64)
        .insert("long", i64::MIN)
        .insert("ulong0", 0u64)
        .insert("small ulong", 200u64)
        .insert("ulong", i64::MAX as u64)
        .insert("huge ulong", u64::MAX)
        .insert("uint0", 0u32)
        .insert("small uint", 9u32)
        .insert("uint", 70_000u32)
        .insert("ubyte", 255u8)
        .insert("byte", -3i8)
        .insert("ushort", 65_535u16)
        .insert("short", -300i16)
        .insert("true", true)
        .insert("false", false)
        .insert("null", SimpleValue::Null)
        .insert("binary", Binary::from(vec![1u8, 2]))
        .insert("double", 1.5f64)
        .insert("timestamp", Timestamp::from_milliseconds(5));
    let message = parse(
        &AmqpMessage::builder()
            .application_properties(properties)
            .body(body())
            .build(),
    );
    let expected = [
        ("string", PropertyValue::Str("g-1")),
        ("symbol", PropertyValue::Str("s")),
        ("JMSXGroupSeq", PropertyValue::Int(7)),
        ("int", PropertyValue::Int(-100_000)),
        ("small long", PropertyValue::Int(-5)),
        ("long", PropertyValue::Int(i64::MIN)),
        ("ulong0", PropertyValue::Int(0)),
        ("small ulong", PropertyValue::Int(200)),
        ("ulong", PropertyValue::Int(i64::MAX)),
        ("huge ulong", PropertyValue::Other),
        ("uint0", PropertyValue::Int(0)),
        ("small uint", PropertyValue::Int(9)),
        ("uint", PropertyValue::Int(70_000)),
        ("ubyte", PropertyValue::Int(255)),
        ("byte", PropertyValue::Int(-3)),
        ("ushort", PropertyValue::Int(65_535)),
        ("short", PropertyValue::Int(-300)),
        ("true", PropertyValue::Bool(true)),
        ("false", PropertyValue::Bool(false)),
        ("null", PropertyValue::Other),
        ("binary", PropertyValue::Other),
        ("double", PropertyValue::Other),
        ("timestamp", PropertyValue::Other),
    ];
    for (name, value) in expected {
        assert_eq!(message.application_property(name), Some(value), "{name}");
    }
    assert_eq!(message.application_property("missing"), None);
    assert_eq!(message.application_property("String"), None);
    assert_eq!(message.application_property(""), None);
}

#[test]
fn a_message_without_application_properties_has_none() {
    let message = parse(&AmqpMessage::builder().body(body()).build());
    assert_eq!(message.application_property("JMSXGroupID"), None);
    let opaque = Message::opaque(encode(&full_message(false)), 0x8000_0001);
    assert_eq!(opaque.application_property("JMSXGroupID"), None);
}

/// Encodings fe2o3 does not produce: str32 keys, symbol keys (not a match: keys are
/// strings), non-UTF-8 text, a symbolic descriptor and a map32.
#[test]
fn hand_encoded_application_properties_are_read() {
    let mut section = vec![0x00, 0xa3, 31];
    section.extend(b"amqp:application-properties:map");
    let mut entries = vec![0xa3, 1, b'k', 0x41]; // symbol key "k": skipped
    entries.extend([0xb1, 0, 0, 0, 1, b'k', 0xa1, 2, 0xff, 0xfe]); // str32 "k": bad UTF-8
    entries.extend([0xa1, 1, b'n', 0x56, 0x01]); // "n": boolean true in its long form
    section.push(0xd1);
    section.extend((entries.len() as u32 + 4).to_be_bytes());
    section.extend(6u32.to_be_bytes());
    section.extend(&entries);
    assert_eq!(lookup(&section, "k"), Some(PropertyValue::Other));
    assert_eq!(lookup(&section, "n"), Some(PropertyValue::Bool(true)));
    let mut bytes = section.clone();
    bytes.extend([0x00, 0x53, 0x77, 0x40]);
    let message = Message::parse(Bytes::from(bytes)).expect("parse");
    assert_eq!(
        message.application_property("n"),
        Some(PropertyValue::Bool(true))
    );
}

#[test]
fn a_bare_message_gets_both_sections_before_its_body() {
    let sent = AmqpMessage::builder().body(body()).build();
    let marked = parse(&sent).with_marker("first", true);
    let codes: Vec<u64> = sections(marked.bytes()).iter().map(|s| s.0).collect();
    assert_eq!(codes, [0x72, 0x74, 0x77]);
    assert_eq!(
        marked.application_property("first"),
        Some(PropertyValue::Bool(true))
    );
    let expected = AmqpMessage::builder()
        .message_annotations(
            MessageAnnotations::builder().insert(Symbol::from("first"), Value::Bool(true)),
        )
        .application_properties(ApplicationProperties::builder().insert("first", true))
        .body(body())
        .build();
    assert_eq!(decode(marked.bytes()), expected);
}

#[test]
fn without_as_property_only_the_annotations_change() {
    let mut sent = full_message(false);
    sent.message_annotations = None;
    let original = parse(&sent);
    let marked = original.with_marker("first", false);
    let codes: Vec<u64> = sections(marked.bytes()).iter().map(|s| s.0).collect();
    // Inserted after the header and delivery-annotations, before the properties.
    assert_eq!(codes, [0x70, 0x71, 0x72, 0x73, 0x74, 0x77, 0x78]);
    let unchanged: Vec<_> = sections(original.bytes());
    let kept: Vec<_> = sections(marked.bytes())
        .into_iter()
        .filter(|s| s.0 != 0x72)
        .collect();
    assert_eq!(kept, unchanged);
    assert_eq!(
        marked.application_property("first"),
        Some(PropertyValue::Bool(false))
    );
    let mut expected = sent;
    expected.message_annotations = Some(
        MessageAnnotations::builder()
            .insert(Symbol::from("first"), Value::Bool(true))
            .build(),
    );
    assert_eq!(decode(marked.bytes()), expected);
    assert_eq!(marked.header(), original.header());
    assert_eq!(marked.to(), Some("orders"));
    assert_eq!(marked.group_id(), Some("g"));
}

#[test]
fn an_existing_false_marker_becomes_true_and_is_not_duplicated() {
    let original = parse(&full_message(false));
    for as_property in [false, true] {
        let marked = original.with_marker("first", as_property);
        let bytes = marked.bytes();
        assert_eq!(key_count(bytes, 0x72, "first", KeyType::Symbol), 1);
        assert_eq!(key_count(bytes, 0x74, "first", KeyType::String), 1);
        let mut expected = full_message(as_property);
        if let Some(annotations) = expected.message_annotations.as_mut() {
            annotations.insert(Symbol::from("first").into(), Value::Bool(true));
        }
        // Header, delivery-annotations, properties, body and footer decode as sent,
        // and the other entries keep their values and order.
        assert_eq!(decode(bytes), expected);
        // The view still sees what the annotations and header say.
        assert_eq!(marked.delivery_delay_ms(), Some(250));
        assert_eq!(marked.header(), original.header());
        assert_eq!(marked.message_format(), original.message_format());
        // Marking a marked message changes nothing.
        assert_eq!(marked.with_marker("first", as_property).bytes(), bytes);
    }
}

#[test]
fn a_repeated_key_is_collapsed_and_a_null_map_filled() {
    // Annotations as null; application properties repeating "first".
    let bytes = [
        &[0x00, 0x53, 0x72, 0x40][..],
        &[0x00, 0x53, 0x74, 0xc1, 21, 6],
        &[0xa1, 5, b'f', b'i', b'r', b's', b't', 0x42],
        &[0xa1, 1, b'a', 0x41],
        &[0xa1, 5, b'f', b'i', b'r', b's', b't', 0x41],
        &[0x00, 0x53, 0x77, 0x40],
    ]
    .concat();
    let original = Message::parse(Bytes::from(bytes)).expect("parse");
    let marked = original.with_marker("first", true);
    assert_ne!(marked.bytes(), original.bytes());
    assert_eq!(key_count(marked.bytes(), 0x72, "first", KeyType::Symbol), 1);
    assert_eq!(key_count(marked.bytes(), 0x74, "first", KeyType::String), 1);
    let expected = AmqpMessage::builder()
        .message_annotations(
            MessageAnnotations::builder().insert(Symbol::from("first"), Value::Bool(true)),
        )
        .application_properties(
            ApplicationProperties::builder()
                .insert("first", true)
                .insert("a", true),
        )
        .body(Body::Value(AmqpValue(Value::Null)))
        .build();
    assert_eq!(decode(marked.bytes()), expected);
}

#[test]
fn a_large_map_is_re_encoded_as_map32() {
    let mut properties = ApplicationProperties::builder();
    for i in 0..100 {
        properties = properties.insert(format!("key-{i}"), i);
    }
    let sent = AmqpMessage::builder()
        .application_properties(properties)
        .body(body())
        .build();
    let marked = parse(&sent).with_marker("first", true);
    let (_, section) = sections(marked.bytes())[1];
    assert_eq!(section[3], 0xd1);
    let mut expected = sent;
    if let Some(properties) = expected.application_properties.as_mut() {
        properties.insert("first".into(), true.into());
    }
    expected.message_annotations = Some(
        MessageAnnotations::builder()
            .insert(Symbol::from("first"), Value::Bool(true))
            .build(),
    );
    assert_eq!(decode(marked.bytes()), expected);
    assert_eq!(
        marked.application_property("key-99"),
        Some(PropertyValue::Int(99))
    );
}

#[test]
fn unmarkable_messages_come_back_unchanged() {
    let opaque = Message::opaque(Bytes::from_static(b"\x01\x02"), 0x8000_0001);
    let marked = opaque.with_marker("first", true);
    assert!(marked.is_opaque());
    assert_eq!(marked.bytes(), opaque.bytes());
    assert_eq!(marked.message_format(), 0x8000_0001);
    let message = parse(&full_message(false));
    // A symbol must be ASCII.
    let marked = message.with_marker("först", true);
    assert_eq!(marked.bytes().as_ptr(), message.bytes().as_ptr());
}

/// A str8 or sym8 (by `code`) holding `text`, which need not be UTF-8.
fn text(code: u8, text: Vec<u8>) -> Vec<u8> {
    [vec![code, text.len() as u8], text].concat()
}

/// One encoded value: mostly well formed, now and then random bytes.
fn item() -> impl Strategy<Value = Vec<u8>> {
    let bytes = |max| proptest::collection::vec(any::<u8>(), 0..max);
    prop_oneof![
        4 => Just(vec![0x40]),
        4 => Just(vec![0x41]),
        4 => Just(vec![0x44]),
        4 => any::<u8>().prop_map(|b| vec![0x54, b]),
        4 => any::<u64>().prop_map(|n| [&[0x80][..], &n.to_be_bytes()].concat()),
        4 => "k|first|[a-z]{0,3}".prop_map(|s| text(0xa1, s.into_bytes())),
        4 => "k|first|[a-z]{0,3}".prop_map(|s| text(0xa3, s.into_bytes())),
        4 => bytes(6).prop_map(|s| text(0xa1, s)),
        1 => (any::<u8>(), bytes(9)).prop_map(|(code, rest)| [vec![code], rest].concat()),
    ]
}

proptest! {
    #[test]
    fn any_bytes_as_a_section_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = lookup(&bytes, "k");
        let _ = lookup(&[&[0x00, 0x53, 0x74][..], &bytes].concat(), "k");
    }

    #[test]
    /// Mostly well-formed maps (so most reach the lookup), some with one byte changed.
    fn any_application_properties_are_read_and_marked_without_panic(
        entries in proptest::collection::vec((item(), item()), 0..6),
        change in proptest::option::of((any::<usize>(), any::<u8>())),
    ) {
        let count = 2 * entries.len() as u8;
        let entries: Vec<u8> = entries.into_iter().flat_map(|(k, v)| [k, v].concat()).collect();
        let mut bytes = vec![0x00, 0x53, 0x74, 0xc1, entries.len() as u8 + 1, count];
        bytes.extend(entries);
        if let Some((at, byte)) = change {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        bytes.extend([0x00, 0x53, 0x77, 0x40]);
        if let Ok(message) = Message::parse(Bytes::from(bytes)) {
            let _ = message.application_property("k");
            let _ = message.application_property("first");
            let marked = message.with_marker("k", true);
            // Either marked, or (for a map it cannot make sense of) left exactly as it was.
            let unchanged = marked.bytes() == message.bytes();
            prop_assert!(
                unchanged
                    || marked.application_property("k") == Some(PropertyValue::Bool(true)),
                "marked but unreadable: {:?}",
                marked.bytes()
            );
        }
    }

    #[test]
    /// The same for annotations: either set, each key once, or left exactly as it was.
    fn any_message_annotations_are_edited_without_panic(
        entries in proptest::collection::vec((item(), item()), 0..6),
        change in proptest::option::of((any::<usize>(), any::<u8>())),
    ) {
        let count = 2 * entries.len() as u8;
        let entries: Vec<u8> = entries.into_iter().flat_map(|(k, v)| [k, v].concat()).collect();
        let mut bytes = vec![0x00, 0x53, 0x72, 0xc1, entries.len() as u8 + 1, count];
        bytes.extend(entries);
        if let Some((at, byte)) = change {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        bytes.extend([0x00, 0x53, 0x77, 0x40]);
        if let Ok(message) = Message::parse(Bytes::from(bytes)) {
            let edited = message.with_annotations(&[
                ("k", AnnotationValue::Str("v")),
                ("x-opt-scheduled-enqueue-time", AnnotationValue::Timestamp(7)),
            ]);
            if edited.bytes() != message.bytes() {
                prop_assert_eq!(edited.scheduled_enqueue_time_ms(), Some(7));
                prop_assert_eq!(key_count(edited.bytes(), 0x72, "k", KeyType::Symbol), 1);
            }
        }
    }
}

mod annotations;
