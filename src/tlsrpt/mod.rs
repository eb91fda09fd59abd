//! SMTP TLS Reporting (RFC 8460): the `_smtp._tls` record we publish and the reports we
//! receive.

mod rua;

pub use rua::{record_text, Rua};
