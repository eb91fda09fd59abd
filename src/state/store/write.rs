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

/// Many events made only as they are written, from what they are about: a million domains'
/// start is a million events of 48 bytes, or a million domains of 8.
pub(crate) trait Events: Send + std::fmt::Debug {
    fn len(&self) -> usize;
    /// The `i`th event, `i < len()`.
    fn event(&self, i: usize) -> Event;
}

#[derive(Debug)]
enum Queued {
    One(Event),
    /// `events` from `next` on.
    Many {
        events: Box<dyn Events>,
        next: usize,
    },
}

/// The events not written yet, in order.
#[derive(Debug, Default)]
struct Pending {
    items: VecDeque<Queued>,
    /// Events in `items`.
    len: usize,
}

impl Pending {
    fn push(&mut self, q: Queued) {
        let n = match &q {
            Queued::One(_) => 1,
            Queued::Many { events, next } => events.len().saturating_sub(*next),
        };
        if n > 0 {
            self.len += n;
            self.items.push_back(q);
        }
    }

    /// Copies of the first `n` events (fewer if fewer wait).
    fn first(&self, n: usize) -> Vec<Event> {
        let mut out = Vec::with_capacity(n.min(self.len));
        for q in &self.items {
            let room = n - out.len();
            if room == 0 {
                break;
            }
            match q {
                Queued::One(e) => out.push(e.clone()),
                Queued::Many { events, next } => {
                    let end = events.len().min(next + room);
                    out.extend((*next..end).map(|i| events.event(i)));
                }
            }
        }
        out
    }

    /// Drops the first `n` events (written).
    fn drop_first(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.items.front_mut() else {
                break;
            };
            match front {
                Queued::One(_) => n -= 1,
                Queued::Many { events, next } => {
                    let k = n.min(events.len() - *next);
                    *next += k;
                    n -= k;
                    if *next < events.len() {
                        break;
                    }
                }
            }
            self.items.pop_front();
        }
        // A drained queue gives its room back: a burst would otherwise keep its buffer.
        if self.items.is_empty() {
            self.items = VecDeque::new();
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    events: Mutex<Pending>,
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
        self.queue_all(events.iter().cloned().map(Queued::One));
    }

    /// [`Writer::record`] of events the caller no longer needs: moved, not copied.
    pub(crate) fn record_owned(&self, events: Vec<Event>) {
        self.queue_all(events.into_iter().map(Queued::One));
    }

    /// Queues `events`, made as they are written (after those queued before).
    pub(crate) fn record_many(&self, events: Box<dyn Events>) {
        self.queue_all(std::iter::once(Queued::Many { events, next: 0 }));
    }

    fn queue_all(&self, items: impl Iterator<Item = Queued>) {
        let pending = {
            let mut q = self.queue.events.lock().unwrap_or_else(|e| e.into_inner());
            let before = q.len;
            for item in items {
                q.push(item);
            }
            if q.len == before {
                return;
            }
            q.len
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
            .len
    }

    async fn run(self) {
        let mut backoff = BACKOFF_MIN;
        let mut failing = false;
        loop {
            // Copied, not taken: they leave the queue only once the store has them.
            let batch: Vec<Event> = self
                .queue
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .first(BATCH);
            if batch.is_empty() {
                self.queue.wake.notified().await;
                continue;
            }
            match self.store.append(&batch).await {
                Ok(seq) => {
                    let pending = {
                        let mut q = self.queue.events.lock().unwrap_or_else(|e| e.into_inner());
                        q.drop_first(batch.len());
                        q.len
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` events of `name`, made when asked.
    #[derive(Debug)]
    struct Made(&'static str, usize);

    impl Events for Made {
        fn len(&self) -> usize {
            self.1
        }

        fn event(&self, i: usize) -> Event {
            Event::Withdrawn {
                domain: self.0.into(),
                at: i as u64,
            }
        }
    }

    fn one(name: &str, at: u64) -> Queued {
        Queued::One(Event::Withdrawn {
            domain: name.into(),
            at,
        })
    }

    fn many(name: &'static str, n: usize) -> Queued {
        Queued::Many {
            events: Box::new(Made(name, n)),
            next: 0,
        }
    }

    fn names(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Withdrawn { domain, at } => format!("{domain}{at}"),
                _ => unreachable!("only withdrawals here"),
            })
            .collect()
    }

    #[test]
    fn made_events_are_written_in_their_place_batch_by_batch() {
        let mut q = Pending::default();
        q.push(one("a", 1));
        q.push(many("m", 5));
        q.push(many("empty", 0));
        q.push(one("b", 2));
        assert_eq!((q.len, q.items.len()), (7, 3));
        assert_eq!(names(&q.first(3)), ["a1", "m0", "m1"]);
        assert_eq!(names(&q.first(100)).len(), 7);
        q.drop_first(3);
        assert_eq!(q.len, 4);
        assert_eq!(names(&q.first(10)), ["m2", "m3", "m4", "b2"]);
        q.drop_first(3);
        assert_eq!((q.len, q.items.len()), (1, 1));
        assert_eq!(names(&q.first(10)), ["b2"]);
        q.drop_first(1);
        assert_eq!((q.len, q.items.len(), q.items.capacity()), (0, 0, 0));
        assert!(q.first(10).is_empty());
    }
}
