//! Publishing over time against a real BIND: retirement and the id history (`lifecycle`), a
//! killed `apply` (`apply_crash`), what `serve` logs (`logs`, `reload_log`), RFC 8461 §8.2
//! delegation (`delegation`), and how few DNS reads a reconcile takes (`dns_reads`).

mod apply_crash;
mod delegation;
mod dns_reads;
pub(crate) mod lifecycle;
mod logs;
mod reload_log;
