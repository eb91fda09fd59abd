//! SMTP TLS Reporting (RFC 8460): the `_smtp._tls` record we publish and the reports we
//! receive.

mod report;
mod rua;

pub use report::{is_sts_failure, FailureDetail, Malformed, PolicyResult, PolicyType, Report};
pub use rua::{record_text, Rua};
