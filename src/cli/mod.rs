//! The command-line tools of the `sluice` binary beside the broker itself: `sluice ctl`, a
//! client of the admin API, and `sluice repair`, which checks and mends a stopped broker's
//! journal. They use the library as any program would and sit above every layer of it.

pub mod ctl;
pub mod repair;
