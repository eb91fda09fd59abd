//! DNS providers for mta-stsd: the interface the daemon publishes through, and one
//! implementation per provider kind.
//!
//! Providers see only the names mta-stsd owns (`_mta-sts`, `mta-sts`, `_smtp._tls` under each
//! domain), never a whole zone: a hosting provider may publish a million domains.
//! The interface that `plan` and `apply` drive (see README.md) lands with the RFC 2136 provider;
//! what exists today is what the config loader needs: secrets and TSIG key files.

mod secret;
pub mod tsig;

pub use secret::{Secret, SecretSource};
