//! mta-stsd: MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) for mail domains, from one config file.
//!
//! # Layout
//!
//! From the bottom up, one line per module: what it owns, and the modules it may use, all on
//! lines above its own — so no layer imports one above it and there are no import cycles.
//! `tests/it/layout.rs` checks every `crate::` path outside `mod tests` against this list (and
//! README's copy of it), with no exceptions.
//!
//! - `name`: domain names, parsed once (lowercase A-labels). Uses: nothing.
//! - `clock`: the time the daemon reads and RFC 3339 for people. Uses: nothing.
//! - `errors`: an error and its causes as one line. Uses: nothing.
//! - `certs`: the crypto provider (ring; X25519, ECDSA keys and random bytes by aws-lc-rs), configured certificate files and what they cover. Uses: nothing.
//! - `policy`: the MTA-STS policy (RFC 8461 §3.2), its bytes and id. Uses: `name`.
//! - `rua`: the TLS-RPT record we publish (RFC 8460 §3), its `rua` URIs. Uses: `name`.
//! - `state`: `[state] dir`, the store (SQLite or PostgreSQL) and the id history in it, atomic durable writes. Uses: `clock`.
//! - `config`: TOML loaded, checked in full and resolved per domain. Uses: `certs`, `name`, `policy`, `rua`.
//! - `live`: the snapshot a request reads: config, domain index, served certificates. Uses: `certs`, `clock`, `config`, `name`.
//! - `tlsrpt`: TLS-RPT (RFC 8460) reports, their store and receiver. Uses: `clock`, `config`, `live`, `name`, `rua`, `state`.
//! - `desired`: the records and bodies the config wants, pure. Uses: `config`, `policy`, `rua`.
//! - `dns`: plan (pure diff) and sync through the providers. Uses: `config`, `desired`, `name`, `policy`, `rua`.
//! - `dane`: TLSA for our MX hosts (RFC 7672) from their certificates, and safe rollovers. Uses: `config`, `dns`, `state`.
//! - `lifecycle`: removed domains on their way out (RFC 8461 §8.3). Uses: `certs`, `clock`, `config`, `name`, `policy`, `rua`, `state`.
//! - `metrics`: the Prometheus registry and its handles. Uses: `tlsrpt`.
//! - `alerts`: drift events to a webhook or command. Uses: `config`, `errors`.
//! - `drift`: the world as a sender sees it, against the config. Uses: `alerts`, `certs`, `clock`, `config`, `desired`, `dns`, `name`, `policy`, `rua`, `state`.
//! - `acme`: ACME (RFC 8555) certificates, challenge answers, the renewal task. Uses: `certs`, `clock`, `config`, `errors`, `live`, `metrics`, `name`, `state`.
//! - `serve`: the public listeners: TLS by SNI, HTTP/1.1 and HTTP/2, routing, limits. Uses: `acme`, `certs`, `config`, `live`, `metrics`, `name`, `policy`, `state`.
//! - `dashboard`: the admin listener's HTML pages: templates, paging and search, the SVG chart. Uses: `tlsrpt`.
//! - `daemon`: wires the tasks together; reload, publication, shutdown, the admin endpoints. Uses: `acme`, `alerts`, `clock`, `config`, `dane`, `dashboard`, `desired`, `dns`, `drift`, `lifecycle`, `live`, `metrics`, `name`, `policy`, `serve`, `state`, `tlsrpt`.
//! - `cli`: one function per command; anyhow stops here. Uses: `alerts`, `clock`, `config`, `daemon`, `dane`, `desired`, `dns`, `drift`, `lifecycle`, `name`, `state`, `tlsrpt`.
//! - `fuzzing`: ways in for the fuzz targets and property tests. Uses: `config`, `drift`, `live`, `policy`, `rua`, `serve`, `tlsrpt`.

// No `unwrap()` outside tests: a failure is handled, or says what failed; an `expect` only
// where an invariant holds, allowed at its function with the invariant as the reason.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
// Only what the binary, tests/ and fuzz/ use is `pub`; the rest is `pub(crate)`, so the dead-code
// lint sees it. scripts/narrow-pub.sh narrows again after a change.
#![warn(unreachable_pub)]

pub(crate) mod acme;
pub(crate) mod alerts;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod config;
pub(crate) mod daemon;
pub(crate) mod dane;
pub(crate) mod dashboard;
pub(crate) mod desired;
pub mod dns;
pub(crate) mod drift;
pub(crate) mod errors;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod lifecycle;
pub(crate) mod live;
pub(crate) mod metrics;
pub(crate) mod name;
pub(crate) mod policy;
pub(crate) mod rua;
pub(crate) mod serve;
pub(crate) mod state;
pub mod tlsrpt;
