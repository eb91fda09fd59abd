//! The integration tests: one binary driving the real `mta-stsd`, grouped by feature.

mod acme;
mod cli;
mod config;
mod dane;
mod dashboard;
mod dns_harness_selftest;
mod drift;
mod exec;
mod harness;
mod layout;
mod monitoring;
mod operator;
mod providers;
mod publish;
mod readme;
mod serve;
mod store;
mod tlsrpt;
