//! Fuzzes the SCRAM-SHA-256 exchange: the input is a client's first message and its final
//! message, split at the first NUL byte. Any bytes must be answered or refused with a reason,
//! never a panic, and a made-up proof must never log in.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice::config::password::ScramKeys;
use sluice::testing::scram;

fuzz_target!(|data: &[u8]| {
    let (first, last) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    // Derived once: 4096 PBKDF2 rounds per input would leave little time for the parser.
    static KEYS: OnceLock<ScramKeys> = OnceLock::new();
    let keys = KEYS.get_or_init(|| ScramKeys::derive("pencil", b"fixed salt", 4096));
    let Ok((exchange, _server_first)) = scram::start(first, |_| Ok(keys.clone())) else {
        return;
    };
    // The server's nonce is random, so an input cannot carry the right proof.
    assert!(
        exchange.finish(last).is_err(),
        "a proof made without the password logged in"
    );
});
