//! The one writer of id-history events: a queue in memory, emptied into the store by a task
//! that retries until the store takes each event. A failed write is never dropped and never
//! cleared by a later success: the events stay first in the queue (S2 of the hardening
//! issue), and `Health` says how many wait.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{error, info};

use super::{unix_now, Store, StoreError};
use crate::state::history::Event;

/// Events per transaction, and rows per INSERT (4 parameters each).
const BATCH: usize = 10_000;
const ROWS_PER_INSERT: usize = 500;
/// Retries after a failed write: from 1 s, doubling, to 30 s.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Queue {
    events: Mutex<VecDeque<Event>>,
    wake: Notify,
    /// Told after each write, for [`Writer::flush`].
    written: Notify,
}

/// Takes events for the store; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: Arc<Queue>,
    store: Store,
}

impl Writer {
    /// Starts the task that writes the queue (it ends with the runtime).
    pub(crate) fn start(store: Store) -> Writer {
        let w = Writer {
            queue: Arc::default(),
            store,
        };
        tokio::spawn(w.clone().run());
        w
    }

    /// Queues `events`; returns at once, whatever the store's state.
    pub(crate) fn record(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let pending = {
            let mut q = self.queue.events.lock().unwrap_or_else(|e| e.into_inner());
            q.extend(events.iter().cloned());
            q.len()
        };
        self.store.set_health(|h| h.pending = pending);
        self.queue.wake.notify_one();
    }

    /// [`Writer::record`] of events the caller no longer needs: into an empty queue they move
    /// without a copy (a million domains' start is a million events).
    pub(crate) fn record_owned(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let pending = {
            let mut q = self.queue.events.lock().unwrap_or_else(|e| e.into_inner());
            if q.is_empty() {
                *q = VecDeque::from(events);
            } else {
                q.extend(events);
            }
            q.len()
        };
        self.store.set_health(|h| h.pending = pending);
        self.queue.wake.notify_one();
    }

    /// Waits until the queue is empty or `within` has passed; false: events are left.
    pub(crate) async fn flush(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let written = self.queue.written.notified();
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, written).await.is_err() {
                return self.pending() == 0;
            }
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn pending(&self) -> usize {
        self.queue
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    async fn run(self) {
        let mut backoff = BACKOFF_MIN;
        let mut failing = false;
        loop {
            // Copied, not taken: they leave the queue only once the store has them.
            let batch: Vec<Event> = {
                let q = self.queue.events.lock().unwrap_or_else(|e| e.into_inner());
                q.iter().take(BATCH).cloned().collect()
            };
            if batch.is_empty() {
                self.queue.wake.notified().await;
                continue;
            }
            match self.store.append(&batch).await {
                Ok(seq) => {
                    let pending = {
                        let mut q = self.queue.events.lock().unwrap_or_else(|e| e.into_inner());
                        q.drain(..batch.len());
                        // A drained queue gives its room back: the start's million events
                        // would otherwise keep their buffer for good.
                        if q.is_empty() {
                            *q = VecDeque::new();
                        }
                        q.len()
                    };
                    if failing {
                        info!(pending, "the store takes writes again");
                    }
                    failing = false;
                    backoff = BACKOFF_MIN;
                    self.store.set_health(|h| {
                        h.pending = pending;
                        h.error = None;
                        h.last_ok = Some(unix_now());
                        h.seq = h.seq.max(seq);
                    });
                    self.queue.written.notify_waiters();
                }
                Err(e) => {
                    let msg = format!("writing {} id-history events: {e}", batch.len());
                    if !failing {
                        error!(retry_in = ?backoff, "{msg}; kept in memory and retried");
                    }
                    failing = true;
                    self.store.set_health(|h| h.error = Some(msg));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

impl Store {
    /// Appends `events` in one transaction after the last row; returns the last `seq`.
    pub(super) async fn append(&self, events: &[Event]) -> Result<i64, StoreError> {
        super::bounded(self.append_unbounded(events)).await
    }

    async fn append_unbounded(&self, events: &[Event]) -> Result<i64, StoreError> {
        let clock = self.clock_sql();
        let mut tx = self.begin_write().await?;
        // Two writers reading the same maximum: the second's insert conflicts on the key
        // and is retried, so rows become visible in `seq` order.
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM store_history")
            .persistent(false)
            .fetch_one(&mut *tx)
            .await?;
        let mut seq = last;
        for chunk in events.chunks(ROWS_PER_INSERT) {
            // Placeholders written as `$n`, which both engines read (sqlx's `Any` builder
            // writes `?`, which PostgreSQL does not).
            let mut sql = String::from(
                "INSERT INTO store_history (seq, replica, recorded_at, event, subject) VALUES ",
            );
            for i in 0..chunk.len() {
                let p = i * 4;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, {clock}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4
                ));
            }
            // Only placeholders and a constant are spliced in; values are bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            for e in chunk {
                seq += 1;
                q = q
                    .bind(seq)
                    .bind(self.replica.to_string())
                    .bind(serde_json::to_string(e).unwrap_or_default())
                    .bind(e.subject());
            }
            q.execute(&mut *tx).await?;
        }
        self.notify_in(&mut tx, super::Topic::History).await?;
        // Known as ours before the rows can be seen, so the follow never takes them for
        // another's; forgotten again if the commit fails.
        let ours = last + 1..=seq;
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ours.clone());
        if let Err(e) = tx.commit().await {
            self.written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|r| *r != ours);
            return Err(e.into());
        }
        Ok(seq)
    }
}
