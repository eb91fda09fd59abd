//! Publishing through DNS providers: the conformance battery written once (`battery`), run
//! against RFC 2136 (BIND, Knot), PowerDNS and Cloudflare (`api`; what is particular to each in
//! `powerdns` and `cloudflare`), Route 53 (`route53`) and
//! the read-verify-write APIs (`rvw`).

pub(crate) mod battery;

mod api;
mod cloudflare;
mod powerdns;
mod rfc2136;
mod route53;
mod rvw;
