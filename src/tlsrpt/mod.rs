//! SMTP TLS Reporting (RFC 8460): the `_smtp._tls` record we publish and the reports we
//! receive.

pub mod mail;
pub mod matching;
pub mod metrics;
pub mod receiver;
mod report;
pub mod status;
pub mod store;
pub mod summary;
pub mod task;

/// Kept for drift and the fuzz targets, which still import them from here.
pub use crate::rua::{record_text, Rua};
pub use report::{is_sts_failure, FailureDetail, Malformed, PolicyResult, PolicyType, Report};

/// The store `[tlsrpt]` names, its SQLite file in `state_dir` (created when missing).
pub fn backend(
    t: &crate::config::Tlsrpt,
    state_dir: &std::path::Path,
) -> std::io::Result<store::Backend> {
    Ok(match &t.store {
        crate::config::StoreKind::Sqlite => {
            std::fs::create_dir_all(state_dir)?;
            store::Backend::Sqlite(state_dir.to_owned())
        }
        crate::config::StoreKind::Postgres(url) => store::Backend::Postgres(url.clone()),
    })
}
