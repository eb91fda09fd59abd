//! `serve` and the store: opened (with an earlier version's state dir imported) before
//! anything is served.

use crate::config::State;
use crate::state::history::History;
use crate::state::store::{Store, StoreError};

pub struct Opened {
    pub store: Store,
    pub history: History,
    /// The last `seq` read.
    pub seq: i64,
}

/// Opens the store, imports `history.jsonl` on the first start, reads the history.
pub async fn open(state: &State) -> Result<Opened, StoreError> {
    let store = Store::open(&crate::lifecycle::store_target(state)).await?;
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
pub fn describe(state: &State) -> String {
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
