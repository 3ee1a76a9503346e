//! Tests of the message view against messages encoded by fe2o3-amqp-types.

use super::*;
use fe2o3_amqp_types::messaging::message::__private::{Deserializable, Serializable};
use fe2o3_amqp_types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, DeliveryAnnotations, Footer,
    Header as AmqpHeader, Message as AmqpMessage, MessageAnnotations, Properties,
};
use fe2o3_amqp_types::primitives::{Symbol, Timestamp, Value};
use proptest::prelude::*;

/// A message as fe2o3-amqp-types models it, to encode test input and decode output.
pub(super) type Decoded = AmqpMessage<Body<Value>>;

pub(super) fn encode(message: &Decoded) -> Bytes {
    Bytes::from(serde_amqp::to_vec(&Serializable(message)).expect("encode message"))
}

pub(super) fn decode(bytes: &[u8]) -> Decoded {
    let decoded: Deserializable<Decoded> = serde_amqp::from_slice(bytes).expect("decode");
    decoded.0
}

fn wire(message: &Message, delivery_count: u32) -> Vec<u8> {
    let (header, rest) = message.wire_chunks(delivery_count);
    [header.unwrap_or_default(), rest].concat()
}

fn full_message() -> Decoded {
    AmqpMessage::builder()
        .header(AmqpHeader {
            durable: true,
            priority: 7.into(),
            ttl: Some(5_000),
            first_acquirer: false,
            delivery_count: 2,
        })
        .delivery_annotations(
            DeliveryAnnotations::builder().insert(Symbol::from("x-hop"), Value::Uint(1)),
        )
        .message_annotations(
            MessageAnnotations::builder()
                .insert(
                    Symbol::from("x-opt-delivery-time"),
                    Value::Timestamp(Timestamp::from_milliseconds(1_700_000_000_000)),
                )
                .insert(Symbol::from("x-opt-delivery-delay"), Value::Long(250))
                .insert(
                    Symbol::from("x-opt-scheduled-enqueue-time"),
                    Value::Timestamp(Timestamp::from_milliseconds(1_700_000_000_500)),
                )
                .insert(7u64, Value::Null),
        )
        .properties(
            Properties::builder()
                .message_id(String::from("m-1"))
                .to("orders")
                .subject("created")
                .absolute_expiry_time(Timestamp::from_milliseconds(2_000))
                .creation_time(Timestamp::from_milliseconds(1_000))
                .group_id(String::from("customer-9"))
                .group_sequence(3)
                .build(),
        )
        .application_properties(ApplicationProperties::builder().insert("region", "eu"))
        .footer(Footer::builder().insert(Symbol::from("x-sum"), Value::Uint(9)))
        .body(Body::Value(AmqpValue(Value::String("hello".into()))))
        .build()
}

#[test]
fn a_full_message_yields_its_view() {
    let message = Message::parse(encode(&full_message())).expect("parse");
    let expected = Header {
        durable: Some(true),
        priority: Some(7),
        ttl_ms: Some(5_000),
        // fe2o3 writes a default field as null.
        first_acquirer: None,
        delivery_count: 2,
    };
    assert_eq!(message.header, expected);
    assert_eq!(message.to(), Some("orders"));
    assert_eq!(message.subject(), Some("created"));
    assert_eq!(message.group_id(), Some("customer-9"));
    assert_eq!(message.group_sequence(), Some(3));
    assert_eq!(message.creation_time_ms(), Some(1_000));
    assert_eq!(message.absolute_expiry_time_ms(), Some(2_000));
    assert_eq!(message.delivery_time_ms(), Some(1_700_000_000_000));
    assert_eq!(message.delivery_delay_ms(), Some(250));
    assert_eq!(message.scheduled_enqueue_time_ms(), Some(1_700_000_000_500));
    let encoded = message
        .application_properties()
        .expect("application properties");
    let properties: ApplicationProperties = serde_amqp::from_slice(&encoded).expect("decode");
    assert_eq!(
        properties,
        full_message().application_properties.expect("set")
    );
}

/// A bare message whose only annotations are `annotations`.
fn annotated(annotations: &[(&str, Value)]) -> Result<Message, MessageError> {
    let map = annotations
        .iter()
        .fold(MessageAnnotations::builder(), |map, (key, value)| {
            map.insert(Symbol::from(*key), value.clone())
        });
    let sent = AmqpMessage::builder()
        .message_annotations(map)
        .body(Body::Value(AmqpValue(Value::Null)))
        .build();
    Message::parse(encode(&sent))
}

#[test]
fn scheduling_annotations_are_read_as_timestamps_or_any_integer() {
    let keys = [
        "x-opt-delivery-time",
        "x-opt-delivery-delay",
        "x-opt-scheduled-enqueue-time",
    ];
    let forms = [
        (
            Value::Timestamp(Timestamp::from_milliseconds(1_700_000_000_000)),
            1_700_000_000_000,
        ),
        (Value::Timestamp(Timestamp::from_milliseconds(-5)), -5),
        (Value::Long(1_700_000_000_000), 1_700_000_000_000),
        (Value::Long(-1), -1),
        (Value::Ulong(0), 0),
        (Value::Ulong(200), 200),
        (Value::Ulong(1_700_000_000_000), 1_700_000_000_000),
        (Value::Uint(70_000), 70_000),
        (Value::Int(-300), -300),
        (Value::Ushort(65_535), 65_535),
        (Value::Ubyte(9), 9),
    ];
    for key in keys {
        for (value, ms) in forms.clone() {
            let message = annotated(&[(key, value.clone())]).expect("parse");
            let read = [
                message.delivery_time_ms(),
                message.delivery_delay_ms(),
                message.scheduled_enqueue_time_ms(),
            ];
            let expected = keys.map(|k| (k == key).then_some(ms));
            assert_eq!(read, expected, "{key} = {value:?}");
        }
        // Null counts as absent; any other type is a decode error naming the annotation.
        let message = annotated(&[(key, Value::Null)]).expect("parse");
        assert_eq!(message.scheduled_enqueue_time_ms(), None);
        assert_eq!(message.delivery_time_ms(), None);
        for wrong in [
            Value::String("soon".into()),
            Value::Double(1.5.into()),
            Value::Ulong(u64::MAX),
        ] {
            assert_eq!(
                annotated(&[(key, wrong.clone())]).expect_err("must be rejected"),
                MessageError::InvalidField {
                    section: "message-annotations",
                    field: key
                },
                "{key} = {wrong:?}"
            );
        }
    }
    let plain = annotated(&[("x-other", Value::Uint(1))]).expect("parse");
    assert_eq!(plain.scheduled_enqueue_time_ms(), None);
}

fn same_bytes(a: &Bytes, b: &[u8]) -> bool {
    (a.as_ptr(), a.len()) == (b.as_ptr(), b.len())
}

#[test]
fn an_unchanged_header_and_no_delivery_annotations_go_out_zero_copy() {
    let mut sent = full_message();
    sent.delivery_annotations = None;
    let headerless = AmqpMessage::builder()
        .body(Body::Data(vec![Data(vec![1u8, 2, 3].into())].into()))
        .build();
    for (sent, delivery_count) in [(sent, 2), (headerless, 0)] {
        let bytes = encode(&sent);
        let message = Message::parse(bytes.clone()).expect("parse");
        let (header, rest) = message.wire_chunks(delivery_count);
        assert!(header.is_none() && same_bytes(&rest, &bytes));
    }
}

#[test]
fn delivery_annotations_are_dropped_and_the_rest_is_sliced_not_copied() {
    let bytes = encode(&full_message());
    let message = Message::parse(bytes.clone()).expect("parse");
    let (header, rest) = message.wire_chunks(2);
    assert!(same_bytes(
        &header.expect("header"),
        &bytes[..message.header_end as usize]
    ));
    assert!(same_bytes(&rest, &bytes[message.bare_start as usize..]));
    let mut expected = full_message();
    expected.delivery_annotations = None;
    assert_eq!(decode(&wire(&message, 2)), expected);
}

#[test]
fn a_new_delivery_count_re_encodes_only_the_header() {
    let bytes = encode(&full_message());
    let message = Message::parse(bytes.clone()).expect("parse");
    let (_, rest) = message.wire_chunks(3);
    assert!(same_bytes(&rest, &bytes[message.bare_start as usize..]));
    let mut expected = full_message();
    expected.delivery_annotations = None;
    if let Some(header) = expected.header.as_mut() {
        header.delivery_count = 3;
    }
    assert_eq!(decode(&wire(&message, 3)), expected);
}

/// Every field in a different legal encoding, under the symbolic descriptor.
#[test]
fn any_legal_header_encoding_is_read() {
    let mut bytes = vec![0x00, 0xa3, 16];
    bytes.extend(b"amqp:header:list");
    bytes.extend([
        0xd0, 0, 0, 0, 11, 0, 0, 0, 5, 0x56, 1, 0x40, 0x43, 0x42, 0x52, 9,
    ]);
    bytes.extend([0x00, 0x53, 0x77, 0x40]);
    let message = Message::parse(Bytes::from(bytes)).expect("parse");
    let expected = Header {
        durable: Some(true),
        priority: None,
        ttl_ms: Some(0),
        first_acquirer: Some(false),
        delivery_count: 9,
    };
    assert_eq!(message.header, expected);
    // A short list leaves the rest at their defaults.
    let bytes = [0x00, 0x53, 0x70, 0xc0, 2, 1, 0x41, 0x00, 0x53, 0x77, 0x40];
    let message = Message::parse(Bytes::copy_from_slice(&bytes)).expect("parse");
    assert_eq!(message.header.durable, Some(true));
    assert_eq!(message.header.delivery_count, 0);
}

#[test]
fn bodies_of_several_data_or_sequence_sections_are_accepted() {
    let data = AmqpMessage::builder()
        .data_batch([vec![1u8], vec![2u8]])
        .build();
    assert!(Message::parse(Bytes::from(
        serde_amqp::to_vec(&Serializable(data)).expect("encode")
    ))
    .is_ok());
    let value = |b: u8| [0x00, 0x53, 0x76, 0xc0, 3, 1, 0x50, b];
    let bytes = [value(1), value(2)].concat();
    assert!(Message::parse(Bytes::from(bytes)).is_ok());
}

fn parse_err(bytes: &[u8]) -> MessageError {
    Message::parse(Bytes::copy_from_slice(bytes)).expect_err("must be rejected")
}

#[test]
fn malformed_layouts_are_rejected_with_a_reason() {
    let value = [0x00, 0x53, 0x77, 0x40];
    let header = [0x00, 0x53, 0x70, 0x45];
    assert_eq!(parse_err(&[]), MessageError::Empty);
    assert_eq!(parse_err(&header), MessageError::MissingBody);
    assert!(matches!(
        parse_err(&[&value[..], &header].concat()),
        MessageError::OutOfOrder { index: 2, .. }
    ));
    assert!(matches!(
        parse_err(&[value, value].concat()),
        MessageError::OutOfOrder { .. }
    ));
    let err = parse_err(&[0x00, 0x53, 0x79, 0x40]);
    assert_eq!(
        err.to_string(),
        "message section 1 (at byte 0) has descriptor 0x79, not a message section"
    );
    assert!(matches!(
        parse_err(&[0x40]),
        MessageError::NotDescribed { byte: 0x40, .. }
    ));
    assert!(matches!(
        parse_err(&[0x00, 0x53, 0x77, 0xa1, 5]),
        MessageError::Malformed { .. }
    ));
    let bad_ttl = [
        0x00, 0x53, 0x70, 0xc0, 4, 3, 0x40, 0x40, 0x41, 0x00, 0x53, 0x77, 0x40,
    ];
    assert_eq!(
        parse_err(&bad_ttl),
        MessageError::InvalidField {
            section: "header",
            field: "ttl"
        }
    );
    let mut bad_to = vec![0x00, 0x53, 0x73, 0xc0, 6, 3, 0x40, 0x40, 0xa1, 1, 0xff];
    bad_to.extend(value);
    assert!(matches!(
        parse_err(&bad_to),
        MessageError::InvalidField { field: "to", .. }
    ));
}

#[test]
fn opaque_messages_go_out_as_received() {
    let message = Message::opaque(Bytes::from_static(b"\x01\x02"), 0x8001_3700);
    assert!(message.is_opaque());
    assert_eq!(
        message.wire_chunks(5),
        (None, Bytes::from_static(b"\x01\x02"))
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(message) = Message::parse(Bytes::from(bytes)) {
            let _ = (message.to(), message.wire_chunks(1));
        }
    }

    #[test]
    fn any_header_round_trips_through_a_redelivery(
        durable in any::<bool>(),
        priority in any::<u8>(),
        ttl in proptest::option::of(any::<u32>()),
        first_acquirer in any::<bool>(),
        count in any::<u32>(),
        new_count in any::<u32>(),
    ) {
        let header = AmqpHeader { durable, priority: priority.into(), ttl, first_acquirer, delivery_count: count };
        let mut expected = AmqpMessage::builder()
            .header(header)
            .body(Body::Value(AmqpValue(Value::Uint(1))))
            .build();
        let message = Message::parse(encode(&expected)).expect("parse");
        prop_assert_eq!(message.header.delivery_count, count);
        if let Some(header) = expected.header.as_mut() {
            header.delivery_count = new_count;
            header.first_acquirer &= new_count == 0;
        }
        prop_assert_eq!(decode(&wire(&message, new_count)), expected);
    }
}

#[test]
fn the_routing_key_is_the_subject_else_the_routing_key_annotation() {
    let full = Message::parse(encode(&full_message())).unwrap();
    assert_eq!(full.routing_key(), Some("created"), "the subject first");
    let keyed = annotated(&[("x-opt-routing-key", Value::String("log.error".into()))]);
    assert_eq!(keyed.unwrap().routing_key(), Some("log.error"));
    let neither = annotated_none();
    assert_eq!(neither.routing_key(), None);
    let wrong_type = annotated(&[("x-opt-routing-key", Value::Uint(7))]).unwrap();
    assert_eq!(wrong_type.routing_key(), None, "not a string: no key");
}

fn annotated_none() -> Message {
    annotated(&[("x-other", Value::Bool(true))]).unwrap()
}
