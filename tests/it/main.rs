//! The integration tests: one binary driving the real `mta-stsd`.

mod config;
mod harness;
mod serve;
