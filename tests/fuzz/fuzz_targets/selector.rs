//! Fuzzes the selector parser and evaluator: any text must compile or be refused with an
//! error (never a panic or unbounded recursion), and a compiled selector must evaluate
//! against a message without panicking, in both dialects.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::testing::{Dialect, Selector};
use sluice::Message;

/// A message with a header, annotations, properties and application properties (encoded by
/// hand: strings `colour = "green"`, `size = 10`).
const MESSAGE: &[u8] = &[
    0x00, 0x53, 0x70, 0xc0, 0x04, 0x02, 0x41, 0x50, 0x07, // header: durable, priority 7
    0x00, 0x53, 0x72, 0xc1, 0x0c, 0x02, 0xa3, 0x05, b'x', b'-', b'o', b'p', b't', 0xa1, 0x02,
    b'h', b'i', // message annotations: x-opt = "hi"
    0x00, 0x53, 0x73, 0xc0, 0x08, 0x04, 0x40, 0x40, 0x40, 0xa1, 0x02, b'n', b'o', // subject
    0x00, 0x53, 0x74, 0xc1, 0x18, 0x04, 0xa1, 0x06, b'c', b'o', b'l', b'o', b'u', b'r', 0xa1,
    0x05, b'g', b'r', b'e', b'e', b'n', 0xa1, 0x04, b's', b'i', b'z', b'e', 0x54, 0x0a,
    0x00, 0x53, 0x77, 0x40, // amqp-value null
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let message = Message::parse(Bytes::from_static(MESSAGE)).expect("the fixed message parses");
    for dialect in [Dialect::Jms, Dialect::Sql] {
        if let Ok(selector) = Selector::parse(text, dialect) {
            let _ = selector.matches(&message, 1);
        }
    }
});
