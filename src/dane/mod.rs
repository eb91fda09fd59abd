//! DANE for the MX hosts we run (RFC 7672, RFC 6698): TLSA records published from the
//! certificate files of each `[[dane]]` entry, with rollovers that never break delivery.
//!
//! - `keys`: the TLSA values the files give (`3 1 1` leaf and `next_key`, `2 1 1` issuer).
//! - `memory`: what must survive a restart and a change of replica (in the store).
//! - `rollover`: the rules, pure: what is wanted, what may go when, unannounced switches.
//! - `check`: what `check` warns about (provider, unsigned zone, standing findings).
//! - `sync`: one round through the providers, for `plan`, `apply` and `serve`.

pub(crate) mod check;
pub(crate) mod keys;
pub(crate) mod memory;
pub(crate) mod rollover;
pub(crate) mod sync;
