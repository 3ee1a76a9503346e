//! Fuzzes `Message::parse`: the broker's parser of a transfer's payload. Any bytes must
//! parse or be refused with an error; never panic, never recurse without bound.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::Message;

fuzz_target!(|data: &[u8]| {
    let _ = Message::parse(Bytes::copy_from_slice(data));
});
