//! DANE for the MX hosts (issue 28): the TLSA records published (`records`), `[[dane]]` in
//! the config (`config`), and a real Postfix sending with DANE through them (`postfix`).

mod config;
mod postfix;
pub(crate) mod records;
