//! The integration tests: one binary driving the real `mta-stsd`.

mod acme;
mod api_providers;
mod attacks;
mod battery;
mod cli_edges;
mod config;
mod delegation;
mod devca;
mod dns_harness_selftest;
mod drift;
mod drift_alerts;
mod drift_mx;
mod files;
mod harness;
mod lifecycle;
mod limits;
mod operator;
mod proxy;
mod rfc2136;
mod serve;
mod tlsrpt_config;
mod tlsrpt_ingest;
mod tlsrpt_receiver;
mod tlsrpt_reports;
mod tlsrpt_status;
mod tlsrpt_store;
