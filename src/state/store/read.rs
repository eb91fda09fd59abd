//! Reading the id history back: whole at start, then what others wrote since (the poll that
//! brings one replica's decisions into every replica's snapshot).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{error, warn};

use super::{unix_now, Store, StoreError};
use crate::state::history::{Event, History};

/// Rows per read: a million-domain history is read in pages, never all rows at once.
const PAGE: i64 = 10_000;
/// Rows per UPDATE when subjects are filled in (2 parameters each).
const FILL_PER_UPDATE: usize = 500;

/// Rows after some `seq`.
#[derive(Debug, Default)]
pub(crate) struct Rows {
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
pub(crate) struct Loaded {
    pub history: History,
    pub seq: i64,
    /// The rows that did not read, for the tests (the count is in the store's health).
    #[cfg(test)]
    pub damaged: Vec<i64>,
}

impl Store {
    /// Up to one page of rows after `after`, in order; with `others_only`, the rows this
    /// process wrote are left out (what the follow wants; a whole read takes every row).
    pub(crate) async fn read_since(
        &self,
        after: i64,
        others_only: bool,
    ) -> Result<Rows, StoreError> {
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
    pub(crate) async fn load_history(&self) -> Result<Loaded, StoreError> {
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
            #[cfg(test)]
            damaged,
        })
    }

    /// One domain's history, by the index on `subject`: its events, and the bodies of the ids
    /// it served; the other domains' rows are never read. Rows an older version wrote without
    /// a subject (not yet filled in) are read and sorted out here.
    pub(crate) async fn domain_history(&self, name: &str) -> Result<History, StoreError> {
        let rows: Vec<(Option<String>, String)> = super::bounded(async {
            let mut tx = self.pool.begin().await?;
            let rows = sqlx::query_as(
                "SELECT subject, event FROM store_history WHERE subject = $1 OR subject IS NULL \
                 ORDER BY seq",
            )
            .persistent(false)
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(rows)
        })
        .await?;
        let mut history = History::in_memory();
        for (subject, json) in rows {
            let Ok(e) = serde_json::from_str::<Event>(&json) else {
                continue;
            };
            if subject.is_some() || e.subject() == name {
                history.apply(&e);
            }
        }
        let ids: std::collections::BTreeSet<String> = history
            .domain(name)
            .map(|d| d.served().iter().map(|e| e.id.to_string()).collect())
            .unwrap_or_default();
        for id in ids {
            let body: Option<String> = super::bounded(async {
                let mut tx = self.pool.begin().await?;
                let row = sqlx::query_scalar(
                    "SELECT event FROM store_history WHERE subject = $1 ORDER BY seq LIMIT 1",
                )
                .persistent(false)
                .bind(format!("policy:{id}"))
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(row)
            })
            .await?;
            if let Some(e) = body.and_then(|j| serde_json::from_str::<Event>(&j).ok()) {
                history.apply(&e);
            }
        }
        Ok(history)
    }

    /// Fills in the `subject` of rows written before the column (or by an older replica
    /// since), a page per transaction; a row that does not parse gets ''. Returns how many.
    /// Run by `serve` in the background: a million rows take most of a minute, once.
    pub(crate) async fn fill_subjects(&self) -> Result<usize, StoreError> {
        let mut filled = 0;
        loop {
            let rows: Vec<(i64, String)> = super::bounded(async {
                let mut tx = self.pool.begin().await?;
                let rows = sqlx::query_as(
                    "SELECT seq, event FROM store_history WHERE subject IS NULL ORDER BY seq LIMIT $1",
                )
                .persistent(false)
                .bind(PAGE)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(rows)
            })
            .await?;
            if rows.is_empty() {
                return Ok(filled);
            }
            super::bounded(async {
                let mut tx = self.begin_write().await?;
                for chunk in rows.chunks(FILL_PER_UPDATE) {
                    // `UPDATE … SET subject = CASE seq WHEN $1 THEN $2 … END WHERE seq IN (…)`:
                    // only placeholders are spliced in; values are bound.
                    let mut sql = String::from("UPDATE store_history SET subject = CASE seq");
                    for i in 0..chunk.len() {
                        sql.push_str(&format!(" WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2));
                    }
                    sql.push_str(" END WHERE subject IS NULL AND seq IN (");
                    for i in 0..chunk.len() {
                        let sep = if i == 0 { "" } else { ", " };
                        sql.push_str(&format!("{sep}${}", 2 * i + 1));
                    }
                    sql.push(')');
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
                    for (seq, json) in chunk {
                        let subject = serde_json::from_str::<Event>(json)
                            .map(|e| e.subject())
                            .unwrap_or_default();
                        q = q.bind(*seq).bind(subject);
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            })
            .await?;
            filled += rows.len();
        }
    }

    /// Whether the store holds any history (else an earlier version's journal may).
    pub(crate) async fn has_history(&self) -> Result<bool, StoreError> {
        super::bounded(async {
            let mut tx = self.pool.begin().await?;
            let any: Option<i64> = sqlx::query_scalar("SELECT seq FROM store_history LIMIT 1")
                .persistent(false)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(any.is_some())
        })
        .await
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
    pub(crate) async fn catch_up(&self, history: &Mutex<History>) -> Result<(), StoreError> {
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

    /// Applies what other processes wrote since `seq`, every `every` and at once on another's
    /// notification, until the runtime ends; `changed` is called after another replica's events were applied, outside the
    /// lock.
    pub(crate) async fn follow(
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
            self.wait_follow(super::Topic::History, every).await;
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
