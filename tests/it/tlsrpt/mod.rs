//! TLS reports (RFC 8460): the HTTPS receiver and its hardening, mailed reports through
//! Postfix and `tlsrpt ingest`, the report store, and what `reports` and `/status` show.

mod config;
mod hardening;
pub(crate) mod ingest;
mod postfix;
pub(crate) mod receiver;
mod refused;
mod reload;
mod reports;
mod samples;
mod status;
mod store;
mod store_hardening;
