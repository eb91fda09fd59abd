//! mta-stsd: MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) for mail domains, from one config file.
//!
//! `config` loads and checks the TOML; `policy` renders bodies and ids; `desired` derives the
//! records; `cli` runs the commands.

pub mod acme;
pub mod admin;
pub mod alerts;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod desired;
pub mod dns;
pub mod drift;
#[doc(hidden)]
pub mod fuzzing;
pub mod lifecycle;
pub mod metrics;
pub mod name;
pub mod policy;
pub mod serve;
pub mod state;
pub mod tlsrpt;
