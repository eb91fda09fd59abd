//! SMTP TLS Reporting (RFC 8460): the `_smtp._tls` record we publish and the reports we
//! receive.

mod report;
mod rua;
pub mod store;

pub use report::{is_sts_failure, FailureDetail, Malformed, PolicyResult, PolicyType, Report};
pub use rua::{record_text, Rua};

use std::path::PathBuf;

/// The directory holding the SQLite store: `$STATE_DIRECTORY` (systemd's `StateDirectory=`),
/// else `/var/lib/mta-stsd`, the `[state] dir` defaults.
// TODO(lifecycle): `config.state.dir` once `[state]` is on main.
pub fn state_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/mta-stsd"))
}

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
