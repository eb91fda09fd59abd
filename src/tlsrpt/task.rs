//! The receiver's background work in `serve`: open the store (retrying while the database is
//! down) and apply `[tlsrpt] retention` once a day.

use std::time::Duration;

use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use super::store::Store;
use super::Shared;
use crate::clock::unix_now;

const DAY: Duration = Duration::from_secs(86_400);

/// Aborts the task when dropped (at shutdown).
pub type Task = AbortOnDropHandle<()>;

/// Starts the task when the config has `[tlsrpt]`. The store settings are those at start.
pub fn start(shared: Shared) -> Option<Task> {
    let live = shared.live.load();
    let cfg = live.config.tlsrpt.clone()?;
    let state_dir = live.config.state.dir.clone();
    drop(live);
    Some(AbortOnDropHandle::new(tokio::spawn(async move {
        let backend = match super::backend(&cfg, &state_dir) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "TLS-RPT: cannot create the state directory; reports are refused");
                return;
            }
        };
        let mut backoff = Duration::from_secs(1);
        let store = loop {
            match Store::open(&backend).await {
                Ok(s) => break s,
                Err(e) => {
                    // Reports get 503 meanwhile: senders retry (RFC 8460 §5.3).
                    warn!(error = %e, "TLS-RPT store not open; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        };
        info!("TLS-RPT store open");
        let _ = shared.reports.set(store.clone());
        loop {
            let cut = unix_now().saturating_sub(cfg.retention.as_secs()) as i64;
            match store.prune(cut).await {
                Ok(0) => {}
                Ok(n) => info!(removed = n, "TLS-RPT retention applied"),
                Err(e) => warn!(error = %e, "TLS-RPT retention failed; next try in a day"),
            }
            tokio::time::sleep(DAY).await;
        }
    })))
}
