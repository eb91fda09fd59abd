//! The receiver's background work in `serve`: open the store once the config has `[tlsrpt]`
//! (at start or added by a reload; retrying while the database is down) and apply
//! `[tlsrpt] retention` once a day.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use super::store::Store;
use super::ReceiverContext;
use crate::clock::unix_now;
use crate::config::{StoreKind, Tlsrpt};

const DAY: Duration = Duration::from_secs(86_400);

/// Aborts the task when dropped (at shutdown).
pub(crate) type Task = AbortOnDropHandle<()>;

/// Starts the task; without `[tlsrpt]` it waits, doing nothing, for a reload that adds it.
pub(crate) fn start(mut shared: ReceiverContext) -> Task {
    AbortOnDropHandle::new(tokio::spawn(async move {
        let (cfg, state) = loop {
            {
                let live = shared.live.load();
                if let Some(t) = &live.config.tlsrpt {
                    break (t.clone(), live.config.state.clone());
                }
            }
            shared.reloads.next().await;
        };
        let state_dir = state.dir.clone();
        let backend = match super::backend(&cfg, &state) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "TLS-RPT: cannot create the state directory; reports are refused");
                return;
            }
        };
        let mut backoff = Duration::from_secs(1);
        // `[state]`'s PostgreSQL: its pool, migrated already (one folder of migrations).
        let shared_pool = match (&cfg.store, &shared.state_store) {
            (StoreKind::State, Some(s)) if s.engine() == "postgresql" => Some(s.pool().clone()),
            _ => None,
        };
        let store = loop {
            let opened = match &shared_pool {
                Some(pool) => {
                    Ok::<_, super::store::StoreError>(Store::on_pool(pool.clone(), false))
                }
                None => Store::open(&backend).await,
            };
            match opened {
                Ok(s) => break s,
                Err(e) => {
                    // Reports get 503 meanwhile: senders retry (RFC 8460 §5.3).
                    warn!(error = %e, "TLS-RPT store not open; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        };
        // Set before it is said: whoever waits for the line finds the store.
        let _ = shared.reports.set(store.clone());
        info!("TLS-RPT store open");
        let mut next_prune = Instant::now();
        loop {
            let retention = {
                let live = shared.live.load();
                if let Some(t) = &live.config.tlsrpt {
                    if !same_store(t, &cfg)
                        || live.config.state.dir != state_dir
                        || !same_url(&live.config.state.url, &state.url)
                    {
                        warn!("[tlsrpt] store changed by reload: reports go to the store opened at start until a restart");
                    }
                }
                live.config.tlsrpt.as_ref().map(|t| t.retention)
            };
            // The retention of the config in force, so a reload that changes it applies.
            if let Some(retention) = retention.filter(|_| Instant::now() >= next_prune) {
                let cut = unix_now().saturating_sub(retention.as_secs()) as i64;
                match store.prune(cut).await {
                    Ok(0) => {}
                    Ok(n) => info!(removed = n, "TLS-RPT retention applied"),
                    Err(e) => warn!(error = %e, "TLS-RPT retention failed; next try in a day"),
                }
                next_prune = Instant::now() + DAY;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next_prune) => {}
                _ = shared.reloads.next() => {}
            }
        }
    }))
}

/// Whether a reload left the store `[tlsrpt]` names as it was.
fn same_store(a: &Tlsrpt, b: &Tlsrpt) -> bool {
    match (&a.store, &b.store) {
        (StoreKind::Sqlite, StoreKind::Sqlite) | (StoreKind::State, StoreKind::State) => true,
        (StoreKind::Postgres(x), StoreKind::Postgres(y)) => x.expose() == y.expose(),
        _ => false,
    }
}

fn same_url(
    a: &Option<mta_stsd_providers::Secret>,
    b: &Option<mta_stsd_providers::Secret>,
) -> bool {
    a.as_ref().map(|s| s.expose()) == b.as_ref().map(|s| s.expose())
}
