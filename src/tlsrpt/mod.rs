//! SMTP TLS Reporting (RFC 8460): the `_smtp._tls` record we publish and the reports we
//! receive.

pub mod budget;
pub(crate) mod mail;
pub mod matching;
pub(crate) mod metrics;
pub(crate) mod ratelimit;
pub(crate) mod receiver;
mod report;
pub(crate) mod status;
pub mod store;
pub(crate) mod summary;
pub(crate) mod task;
pub(crate) mod untrusted;

use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;

use crate::live::{Live, Reloads};
use crate::state::history::History;

pub use report::{is_sts_failure, PolicyType, Report};
pub(crate) use untrusted::Untrusted;

/// What the receiver and the store task share with the daemon, handed in by it: the live
/// snapshot (hosts, domains, `[tlsrpt]`), the store once open, the id history (to match a
/// report's policies to the ids we served), the counters and the per-sender rate limits.
#[derive(Debug, Clone)]
pub(crate) struct ReceiverContext {
    pub live: Arc<ArcSwap<Live>>,
    /// Set by the store task once the database is open.
    pub reports: Arc<OnceLock<store::Store>>,
    pub history: Arc<Mutex<History>>,
    pub metrics: metrics::TlsrptMetrics,
    /// Each reload: `[tlsrpt]` may have been added or changed.
    pub reloads: Reloads,
    /// HTTPS POSTs per client address (`[tlsrpt] rate_burst`, `rate_refill`).
    pub limiter: Arc<ratelimit::Limiter>,
    /// The daemon's store: a `[tlsrpt]` without a store of its own uses its PostgreSQL pool.
    pub state_store: Option<crate::state::store::Store>,
}

/// Whether the store `[tlsrpt]` names is a PostgreSQL database (its own or `[state]`'s).
pub(crate) fn on_postgres(t: &crate::config::Tlsrpt, state: &crate::config::State) -> bool {
    use crate::config::StoreKind;
    matches!(
        (&t.store, &state.url),
        (StoreKind::Postgres(_), _) | (StoreKind::State, Some(_))
    )
}

/// The store `[tlsrpt]` names: its own, or `[state]`'s PostgreSQL, or its SQLite file in
/// `[state] dir` (created when missing).
pub(crate) fn backend(
    t: &crate::config::Tlsrpt,
    state: &crate::config::State,
) -> std::io::Result<store::Backend> {
    use crate::config::StoreKind;
    Ok(match (&t.store, &state.url) {
        (StoreKind::Postgres(url), _) | (StoreKind::State, Some(url)) => {
            store::Backend::Postgres(url.clone())
        }
        (StoreKind::Sqlite | StoreKind::State, _) => {
            std::fs::create_dir_all(&state.dir)?;
            store::Backend::Sqlite(state.dir.clone())
        }
    })
}
