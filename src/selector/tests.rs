//! Tests of the selector language: a conformance table against one message, parse errors
//! and where they point, and a property test of the compiled evaluator against a naive
//! interpreter.

mod conformance;
mod naive;

use bytes::Bytes;
use fe2o3_amqp_types::messaging::message::__private::Serializable;
use fe2o3_amqp_types::messaging::{AmqpValue, Body, Message as AmqpMessage};
use fe2o3_amqp_types::primitives::Value;

use crate::message::Message;

/// Encodes a message built with fe2o3-amqp-types and parses it as the broker does.
fn message(m: AmqpMessage<Body<Value>>) -> Message {
    let bytes = serde_amqp::to_vec(&Serializable(&m)).expect("encode");
    Message::parse(Bytes::from(bytes)).expect("parse")
}

fn body() -> Body<Value> {
    Body::Value(AmqpValue(Value::String("body".into())))
}
