//! Reading the id history back: whole at start, then what others wrote since (the poll that
//! brings one replica's decisions into every replica's snapshot).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{error, warn};

use super::{unix_now, Store, StoreError};
use crate::state::history::{Event, History};

/// Rows per read: a million-domain history is read in pages, never all rows at once.
const PAGE: i64 = 10_000;

/// Rows after some `seq`.
#[derive(Debug, Default)]
pub struct Rows {
    pub events: Vec<Event>,
    /// The `seq` of each row that did not parse (damage).
    pub damaged: Vec<i64>,
    /// The last `seq` read (the one asked from when nothing was new).
    pub last: i64,
    /// Some rows were written by another replica.
    pub foreign: bool,
}

/// A history read whole from the store.
#[derive(Debug)]
pub struct Loaded {
    pub history: History,
    pub seq: i64,
    pub damaged: Vec<i64>,
}

impl Store {
    /// Up to one page of rows after `after`, in order; with `others_only`, the rows this
    /// process wrote are left out (what the follow wants; a whole read takes every row).
    pub async fn read_since(&self, after: i64, others_only: bool) -> Result<Rows, StoreError> {
        super::bounded(self.read_since_unbounded(after, others_only)).await
    }

    async fn read_since_unbounded(
        &self,
        after: i64,
        others_only: bool,
    ) -> Result<Rows, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, replica, event FROM store_history WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .persistent(false)
        .bind(after)
        .bind(PAGE)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut out = Rows {
            last: rows.last().map_or(after, |r| r.0),
            ..Rows::default()
        };
        // This process's own rows are in memory already, and a newer event of ours may
        // still wait in the writer's queue, which an older row applied again would undo.
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        for (seq, replica, json) in rows {
            if others_only && written.iter().any(|r| r.contains(&seq)) {
                continue;
            }
            out.foreign |= *replica != *self.replica;
            match serde_json::from_str(&json) {
                Ok(e) => out.events.push(e),
                Err(_) => out.damaged.push(seq),
            }
        }
        if others_only {
            written.retain(|r| *r.end() > out.last);
        }
        drop(written);
        Ok(out)
    }

    /// The whole history, read page by page. Damaged rows are counted and named in the log
    /// (S4 of the hardening issue: a damaged history is never dropped without a word).
    pub async fn load_history(&self) -> Result<Loaded, StoreError> {
        let mut history = History::in_memory();
        let mut seq = 0;
        let mut damaged = Vec::new();
        loop {
            let rows = self.read_since(seq, false).await?;
            if rows.last == seq {
                break;
            }
            for e in &rows.events {
                history.apply(e);
            }
            damaged.extend(rows.damaged);
            seq = rows.last;
        }
        self.note_damage(&damaged);
        self.set_health(|h| {
            h.seq = h.seq.max(seq);
            h.last_ok = Some(unix_now());
            h.damaged += damaged.len();
        });
        Ok(Loaded {
            history,
            seq,
            damaged,
        })
    }

    fn note_damage(&self, damaged: &[i64]) {
        if let Some(first) = damaged.first() {
            error!(
                rows = damaged.len(),
                first_seq = first,
                "the store's id history has unreadable rows (store_history.seq): their events are missing, so a retirement they hold may never finish; restore them from a backup"
            );
        }
    }

    /// Applies at once what other replicas wrote since the follow's last read (a job under
    /// a lease reads its predecessor's decisions first). This replica's own rows are left
    /// out: they are in memory already, and a newer event of ours may still wait in the
    /// writer's queue, which an older row applied again would undo. The follow reads the
    /// others' rows again: harmless.
    pub async fn catch_up(&self, history: &Mutex<History>) -> Result<(), StoreError> {
        let mut seq = self.followed.load(std::sync::atomic::Ordering::Acquire);
        loop {
            let (events, last) = super::bounded(self.read_foreign_since(seq)).await?;
            if last == seq {
                return Ok(());
            }
            let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
            for e in &events {
                h.apply(e);
            }
            seq = last;
        }
    }

    /// Up to one page of rows after `after`: the events of other replicas (unreadable rows
    /// skipped: the follow reports them), and the last `seq` looked at.
    async fn read_foreign_since(&self, after: i64) -> Result<(Vec<Event>, i64), StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, replica, event FROM store_history WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .persistent(false)
        .bind(after)
        .bind(PAGE)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let last = rows.last().map_or(after, |r| r.0);
        let events = rows
            .into_iter()
            .filter(|(_, replica, _)| **replica != *self.replica)
            .filter_map(|(_, _, json)| serde_json::from_str(&json).ok())
            .collect();
        Ok((events, last))
    }

    /// Applies what other processes wrote since `seq`, every `every`, until the runtime
    /// ends; `changed` is called after another replica's events were applied, outside the
    /// lock.
    pub async fn follow(
        self,
        history: Arc<Mutex<History>>,
        mut seq: i64,
        every: Duration,
        changed: impl Fn() + Send + 'static,
    ) {
        self.followed
            .store(seq, std::sync::atomic::Ordering::Release);
        let mut failing = false;
        loop {
            tokio::time::sleep(every).await;
            let mut any = false;
            loop {
                // The read is done before the lock is taken: no I/O under it.
                let rows = match self.read_since(seq, true).await {
                    Ok(r) => r,
                    Err(e) => {
                        if !failing {
                            warn!("reading the store: {e}; serving from memory meanwhile");
                        }
                        failing = true;
                        self.set_health(|h| h.error = Some(format!("reading: {e}")));
                        break;
                    }
                };
                if failing {
                    failing = false;
                    self.set_health(|h| {
                        if h.error
                            .as_deref()
                            .is_some_and(|e| e.starts_with("reading: "))
                        {
                            h.error = None;
                        }
                    });
                }
                if rows.last == seq {
                    break;
                }
                self.note_damage(&rows.damaged);
                {
                    let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
                    for e in &rows.events {
                        h.apply(e);
                    }
                }
                any |= rows.foreign && !rows.events.is_empty();
                seq = rows.last;
                self.followed
                    .store(seq, std::sync::atomic::Ordering::Release);
                self.set_health(|h| {
                    h.seq = h.seq.max(seq);
                    h.last_ok = Some(unix_now());
                    h.damaged += rows.damaged.len();
                });
            }
            if any {
                changed();
            }
        }
    }
}
