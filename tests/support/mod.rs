//! Helpers shared by the integration tests; each test binary uses only some of them.
#![allow(dead_code)]

pub mod admin;
pub mod broker;
pub mod browser;
pub mod certs;
pub mod clock;
pub mod crash;
pub mod ctl;
pub mod groups;
pub mod http;
pub mod process;
pub mod proton;
pub mod raw;
pub mod rhea;
pub mod time;
