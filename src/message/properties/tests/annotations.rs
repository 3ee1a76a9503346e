//! Tests of `with_annotations`: every value type, replacing keys, inserting the section, and
//! what it leaves alone.

use super::*;

/// The annotations a dead-lettered message gets, one of each value type.
fn dead_letter_entries(description: &str) -> Vec<(&str, AnnotationValue<'_>)> {
    vec![
        (
            "x-opt-dead-letter-reason",
            AnnotationValue::Symbol("rejected"),
        ),
        (
            "x-opt-dead-letter-condition",
            AnnotationValue::Symbol("amqp:not-allowed"),
        ),
        (
            "x-opt-dead-letter-description",
            AnnotationValue::Str(description),
        ),
        ("x-opt-original-queue", AnnotationValue::Str("orders")),
        (
            "x-opt-dead-letter-time",
            AnnotationValue::Timestamp(1_700_000_000_123),
        ),
        ("x-opt-redelivered", AnnotationValue::Bool(false)),
        ("x-opt-attempts", AnnotationValue::Uint(70_000)),
        ("x-opt-small", AnnotationValue::Uint(3)),
        ("x-opt-zero", AnnotationValue::Uint(0)),
    ]
}

/// The same entries as fe2o3 models them.
fn dead_letter_values(description: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "x-opt-dead-letter-reason",
            Value::Symbol(Symbol::from("rejected")),
        ),
        (
            "x-opt-dead-letter-condition",
            Value::Symbol(Symbol::from("amqp:not-allowed")),
        ),
        (
            "x-opt-dead-letter-description",
            Value::String(description.into()),
        ),
        ("x-opt-original-queue", Value::String("orders".into())),
        (
            "x-opt-dead-letter-time",
            Value::Timestamp(Timestamp::from_milliseconds(1_700_000_000_123)),
        ),
        ("x-opt-redelivered", Value::Bool(false)),
        ("x-opt-attempts", Value::Uint(70_000)),
        ("x-opt-small", Value::Uint(3)),
        ("x-opt-zero", Value::Uint(0)),
    ]
}

fn annotation_keys(message: &Decoded) -> Vec<OwnedKey> {
    let annotations = message.message_annotations.as_ref().expect("annotations");
    annotations.0.keys().cloned().collect()
}

#[test]
fn annotations_of_every_type_are_added_and_nothing_else_changes() {
    let sent = full_message(false);
    let original = parse(&sent);
    let description = "délai dépassé: consumer rejected it";
    let edited = original.with_annotations(&dead_letter_entries(description));
    // Only the annotations section differs.
    let kept: Vec<_> = sections(edited.bytes())
        .into_iter()
        .filter(|s| s.0 != 0x72)
        .collect();
    let unchanged: Vec<_> = sections(original.bytes())
        .into_iter()
        .filter(|s| s.0 != 0x72)
        .collect();
    assert_eq!(kept, unchanged);
    let decoded = decode(edited.bytes());
    let mut expected = sent;
    let annotations = expected.message_annotations.as_mut().expect("set");
    for (key, value) in dead_letter_values(description) {
        annotations.insert(Symbol::from(key).into(), value);
    }
    assert_eq!(decoded, expected);
    // Each value has its own AMQP type, and the new keys follow the old ones in order.
    let got = decoded.message_annotations.as_ref().expect("annotations");
    for (key, value) in dead_letter_values(description) {
        assert_eq!(got.0.get(&OwnedKey::from(key)), Some(&value), "{key}");
    }
    let mut keys: Vec<OwnedKey> = ["x-opt-delivery-delay", "first"].map(OwnedKey::from).into();
    keys.push(OwnedKey::from(9u64));
    keys.extend(
        dead_letter_values("")
            .iter()
            .map(|(k, _)| OwnedKey::from(*k)),
    );
    assert_eq!(annotation_keys(&decoded), keys);
    // The view is that of the original message.
    assert_eq!(edited.header(), original.header());
    assert_eq!(edited.message_format(), original.message_format());
    assert_eq!(edited.delivery_delay_ms(), Some(250));
    assert_eq!(
        (edited.to(), edited.group_id()),
        (Some("orders"), Some("g"))
    );
    assert_eq!(
        edited.application_property("region"),
        Some(PropertyValue::Str("eu"))
    );
    // Setting the same values again changes nothing.
    let again = edited.with_annotations(&dead_letter_entries(description));
    assert_eq!(again.bytes(), edited.bytes());
}

#[test]
fn annotations_replace_existing_keys_and_never_duplicate_them() {
    // Dead-lettered before (say from another queue), with a repeated reason key.
    let entries = [
        &[0xa3, 24][..],
        b"x-opt-dead-letter-reason",
        &[0xa3, 7],
        b"expired",
        &[0xa3, 1, b'a', 0x41],
        &[0xa3, 24],
        b"x-opt-dead-letter-reason",
        &[0x40],
    ]
    .concat();
    let bytes = [
        &[0x00, 0x53, 0x72, 0xc1, entries.len() as u8 + 1, 6][..],
        &entries,
        &[0x00, 0x53, 0x77, 0x40],
    ]
    .concat();
    let original = Message::parse(Bytes::from(bytes)).expect("parse");
    let edited = original.with_annotations(&[
        ("a", AnnotationValue::Str("first value")),
        (
            "x-opt-dead-letter-reason",
            AnnotationValue::Symbol("delivery-limit"),
        ),
        ("x-opt-original-queue", AnnotationValue::Str("q1")),
        // Named twice: the last value wins, in the first one's place.
        ("a", AnnotationValue::Uint(2)),
    ]);
    for key in ["x-opt-dead-letter-reason", "a", "x-opt-original-queue"] {
        assert_eq!(
            key_count(edited.bytes(), 0x72, key, KeyType::Symbol),
            1,
            "{key}"
        );
    }
    let decoded = decode(edited.bytes());
    assert_eq!(
        annotation_keys(&decoded),
        ["x-opt-dead-letter-reason", "a", "x-opt-original-queue"].map(OwnedKey::from)
    );
    let expected = AmqpMessage::builder()
        .message_annotations(
            MessageAnnotations::builder()
                .insert(
                    Symbol::from("x-opt-dead-letter-reason"),
                    Value::Symbol(Symbol::from("delivery-limit")),
                )
                .insert(Symbol::from("a"), Value::Uint(2))
                .insert(
                    Symbol::from("x-opt-original-queue"),
                    Value::String("q1".into()),
                ),
        )
        .body(Body::Value(AmqpValue(Value::Null)))
        .build();
    assert_eq!(decoded, expected);
}

#[test]
fn a_bare_message_gets_an_annotations_section_before_its_properties() {
    let mut sent = full_message(false);
    sent.message_annotations = None;
    sent.delivery_annotations = None;
    let original = parse(&sent);
    let edited = original.with_annotations(&dead_letter_entries("x"));
    let codes: Vec<u64> = sections(edited.bytes()).iter().map(|s| s.0).collect();
    assert_eq!(codes, [0x70, 0x72, 0x73, 0x74, 0x77, 0x78]);
    let mut expected = sent;
    expected.message_annotations = Some(
        dead_letter_values("x")
            .into_iter()
            .fold(MessageAnnotations::builder(), |map, (key, value)| {
                map.insert(Symbol::from(key), value)
            })
            .build(),
    );
    assert_eq!(decode(edited.bytes()), expected);
    // Application properties are left alone (only the marker may write them).
    assert_eq!(
        edited.application_property("first"),
        Some(PropertyValue::Bool(false))
    );
    let body_only = parse(&AmqpMessage::builder().body(body()).build());
    let edited = body_only.with_annotations(&[("k", AnnotationValue::Bool(true))]);
    let codes: Vec<u64> = sections(edited.bytes()).iter().map(|s| s.0).collect();
    assert_eq!(codes, [0x72, 0x77]);
}

#[test]
fn long_values_and_large_maps_get_their_32_bit_encodings() {
    let long = "d".repeat(300);
    let original = parse(&AmqpMessage::builder().body(body()).build());
    let edited = original.with_annotations(&[
        ("x-opt-dead-letter-description", AnnotationValue::Str(&long)),
        ("s", AnnotationValue::Symbol(&long)),
    ]);
    let (_, section) = sections(edited.bytes())[0];
    assert_eq!(section[3], 0xd1);
    let decoded = decode(edited.bytes());
    let annotations = decoded.message_annotations.as_ref().expect("annotations");
    assert_eq!(
        annotations
            .0
            .get(&OwnedKey::from("x-opt-dead-letter-description")),
        Some(&Value::String(long.clone()))
    );
    assert_eq!(
        annotations.0.get(&OwnedKey::from("s")),
        Some(&Value::Symbol(Symbol::from(long.as_str())))
    );
}

#[test]
fn annotations_set_the_view_too() {
    let original = parse(&AmqpMessage::builder().body(body()).build());
    let scheduled = original.with_annotations(&[(
        "x-opt-scheduled-enqueue-time",
        AnnotationValue::Timestamp(-1),
    )]);
    assert_eq!(scheduled.scheduled_enqueue_time_ms(), Some(-1));
    let delayed = scheduled.with_annotations(&[("x-opt-delivery-delay", AnnotationValue::Uint(9))]);
    assert_eq!(delayed.delivery_delay_ms(), Some(9));
    assert_eq!(delayed.scheduled_enqueue_time_ms(), Some(-1));
    // A value the view cannot take leaves the message as it was.
    let unchanged =
        delayed.with_annotations(&[("x-opt-delivery-time", AnnotationValue::Str("tomorrow"))]);
    assert_eq!(unchanged.bytes().as_ptr(), delayed.bytes().as_ptr());
}

#[test]
fn unannotatable_messages_come_back_unchanged() {
    let opaque = Message::opaque(Bytes::from_static(b"\x01\x02"), 0x8000_0001);
    let edited = opaque.with_annotations(&[("k", AnnotationValue::Bool(true))]);
    assert!(edited.is_opaque());
    assert_eq!(edited.bytes(), opaque.bytes());
    assert_eq!(edited.message_format(), 0x8000_0001);
    let message = parse(&full_message(false));
    for entries in [
        vec![],
        // Symbols, keys included, must be ASCII; one bad entry spoils the whole edit.
        vec![
            ("ok", AnnotationValue::Bool(true)),
            ("först", AnnotationValue::Bool(true)),
        ],
        vec![
            ("ok", AnnotationValue::Bool(true)),
            ("reason", AnnotationValue::Symbol("abgelehnt-für-immer")),
        ],
    ] {
        let edited = message.with_annotations(&entries);
        assert_eq!(
            edited.bytes().as_ptr(),
            message.bytes().as_ptr(),
            "{entries:?}"
        );
    }
    // Strings need not be ASCII.
    let edited = message.with_annotations(&[("why", AnnotationValue::Str("für immer"))]);
    assert_ne!(edited.bytes(), message.bytes());
}
