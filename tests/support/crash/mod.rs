//! Helpers of the crash test (tests/crash.rs): the clients that stream through crashes, the
//! ledger that checks what they saw, and the seeded random numbers that place the kills.

pub mod clients;
pub mod ledger;
pub mod rng;
