//! A state directory written by an earlier version (`history.jsonl`, the JSON-lines journal)
//! is imported into the store once, on the first start; the file is left where it is.

use std::path::Path;

use serde_json::json;
use tracing::{error, info};

use super::{Store, StoreError};
use crate::state::history::Event;
use crate::state::Journal;

/// The `store_meta` row that says the import was done (or that there was nothing).
const DONE: &str = "history_import";

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Imported {
    pub events: usize,
    /// Unreadable lines of the journal (a torn last line, or damage).
    pub skipped: usize,
}

impl Store {
    /// Imports `<dir>/history.jsonl` unless this store has imported one already (any
    /// replica's: with PostgreSQL the first to start does it). `None`: nothing imported.
    pub(crate) async fn import_dir(&self, dir: &Path) -> Result<Option<Imported>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done: Option<String> =
            sqlx::query_scalar("SELECT value FROM store_meta WHERE name = $1")
                .persistent(false)
                .bind(DONE)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        if let Some(done) = done {
            if Journal::open_existing(dir, "history").is_some() {
                info!(import = %done, "history.jsonl in the state directory is not imported again (done before); it is no longer read or written");
            }
            return Ok(None);
        }
        let read = match Journal::open_existing(dir, "history") {
            Some(j) => Some(j.read::<Event>(0).map_err(|e| StoreError::Import {
                path: j.path().to_owned(),
                error: e,
            })?),
            None => None,
        };
        let (events, skipped) = read.map_or((Vec::new(), 0), |r| (r.records, r.skipped));
        if skipped > 0 {
            error!(
                skipped,
                "history.jsonl has unreadable lines: imported without them (the file is left as it is)"
            );
        }
        // Two replicas importing at once append the same events twice, which replaying
        // ignores; the first marker stays.
        let seq = if events.is_empty() {
            0
        } else {
            self.append(&events).await?
        };
        let note = json!({
            "from": dir.join("history.jsonl"),
            "replica": &*self.replica,
            "events": events.len(),
            "skipped": skipped,
            "last_seq": seq,
        })
        .to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO store_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .persistent(false)
        .bind(DONE)
        .bind(note)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if events.is_empty() {
            return Ok(None);
        }
        info!(
            events = events.len(),
            skipped,
            "imported the id history from history.jsonl into the store (the file is left as it is)"
        );
        Ok(Some(Imported {
            events: events.len(),
            skipped,
        }))
    }
}
