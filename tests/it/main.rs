//! The integration tests: one binary driving the real `mta-stsd`.

mod config;
mod dns_harness_selftest;
mod harness;
mod serve;
mod battery;
mod rfc2136;
