//! `serve` and the store: opened (with an earlier version's state dir imported) before
//! anything is served, then followed, so that a retirement step or an id decided by another
//! replica reaches this one's snapshot within [`POLL`].

use std::sync::Arc;
use std::time::Duration;

use super::context::Daemon;
use crate::config::State;
use crate::state::history::History;
use crate::state::store::{Store, StoreError};

/// How often the store is asked for what other replicas wrote: one indexed query.
pub(crate) const POLL: Duration = Duration::from_secs(2);

pub(crate) struct Opened {
    pub store: Store,
    pub history: History,
    /// The last `seq` read.
    pub seq: i64,
}

/// Opens the store, imports `history.jsonl` on the first start, reads the history
/// (`dane.json` is imported by the first DANE round: a damaged one stops DANE, not serving).
pub(crate) async fn open(state: &State) -> Result<Opened, StoreError> {
    let store = Store::open(&crate::lifecycle::store_target(state)).await?;
    store.check_sealing().await?;
    store.import_dir(&state.dir).await?;
    let loaded = store.load_history().await?;
    tracing::info!(
        engine = store.engine(),
        replica = store.replica(),
        domains = loaded.history.len(),
        seq = loaded.seq,
        "store open"
    );
    Ok(Opened {
        store,
        history: loaded.history,
        seq: loaded.seq,
    })
}

/// What a failure to open says: which store (never its URL, which may hold a password).
pub(crate) fn describe(state: &State) -> String {
    match state.url {
        Some(_) => {
            "cannot use the store: the PostgreSQL database of [state] url_env/url_file".into()
        }
        None => format!(
            "cannot use the store in the state directory {} (set [state] dir)",
            state.dir.display()
        ),
    }
}

/// Which store, in a few words (never its URL).
pub(crate) fn describe_short(state: &State) -> String {
    match state.url {
        Some(_) => "the PostgreSQL database of [state] url_env/url_file".into(),
        None => format!("SQLite in {}", state.dir.display()),
    }
}

/// Follows the store from `seq` on: another replica's events are applied, and the served
/// state re-evaluated (a retirement step it took shows here too). With `[state] listen` the
/// store's notifications wake the follow early.
pub(crate) fn follow(shared: &Arc<Daemon>, store: Store, seq: i64) {
    // Rows written before the `subject` column (an upgrade) are indexed by domain in the
    // background; `history DOMAIN` reads them all the same meanwhile, only slower.
    let filler = store.clone();
    tokio::spawn(async move {
        match filler.fill_subjects().await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "the id history's rows are indexed by domain now"),
            Err(e) => {
                tracing::warn!(error = %e, "indexing the id history's rows by domain stopped; the next start goes on")
            }
        }
    });
    // `[state] listen`, read at start: a notification wakes the follows at once.
    let state = &shared.live.load().config.state;
    if let (true, Some(url)) = (state.listen, &state.url) {
        store.listen(url);
    }
    let weak = Arc::downgrade(shared);
    let history = shared.history.clone();
    tokio::spawn(store.follow(history, seq, POLL, move || {
        if let Some(shared) = weak.upgrade() {
            shared.ask_lifecycle_step();
        }
    }));
}
