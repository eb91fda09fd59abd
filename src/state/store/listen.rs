//! Propagation hints: on PostgreSQL every write that other replicas follow (an id-history
//! append, a certificate) sends `NOTIFY` in its own transaction, delivered at its commit;
//! with `[state] listen` one dedicated direct connection LISTENs and wakes the follows at
//! once. A hint only: a notification sent while the listener is away is lost, so the poll
//! runs all the same. PgBouncer in transaction mode keeps no LISTEN session, so `listen`
//! is for a direct connection; NOTIFY inside a transaction works through it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use mta_stsd_providers::Secret;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::{Store, StoreError};

/// The one channel: the payload says what was written (`history`, `certs`) and by which
/// process (`<replica>/<pid>`), so that a process is not woken by its own writes.
pub(super) const CHANNEL: &str = "mta_stsd_store";
/// Reconnecting after a lost listener: from 1 s, doubling, to 30 s.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Connecting and subscribing may take this long before it counts as a failure.
const CONNECT: Duration = Duration::from_secs(10);

/// What was written: the follow to wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topic {
    History,
    Certs,
}

impl Topic {
    fn as_str(self) -> &'static str {
        match self {
            Topic::History => "history",
            Topic::Certs => "certs",
        }
    }
}

/// Why a follow read the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    Poll,
    Notify,
}

/// The follows' wake-ups and counts, shared by a store's clones.
#[derive(Debug, Default)]
pub(super) struct Wakes {
    history: Notify,
    certs: Notify,
    by_poll: AtomicU64,
    by_notify: AtomicU64,
    /// `None`: not listening; else the listener's state, for `/status`.
    listen: Mutex<Option<&'static str>>,
}

impl Store {
    /// Sends `topic`'s notification inside `tx`, on PostgreSQL (it is delivered at commit,
    /// and not at all on rollback). Cheap, and harmless when nobody listens.
    pub(super) async fn notify_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        topic: Topic,
    ) -> Result<(), sqlx::Error> {
        if !self.postgres {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .persistent(false)
            .bind(CHANNEL)
            .bind(format!("{} {}", topic.as_str(), self.holder()))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Waits for `every` or a notification of `topic`, whichever is first; counts the cause.
    pub(crate) async fn wait_follow(&self, topic: Topic, every: Duration) -> Cause {
        let notified = match topic {
            Topic::History => self.wakes.history.notified(),
            Topic::Certs => self.wakes.certs.notified(),
        };
        let cause = tokio::select! {
            () = tokio::time::sleep(every) => Cause::Poll,
            () = notified => Cause::Notify,
        };
        if topic == Topic::History {
            let n = match cause {
                Cause::Poll => &self.wakes.by_poll,
                Cause::Notify => &self.wakes.by_notify,
            };
            n.fetch_add(1, Ordering::Relaxed);
        }
        cause
    }

    /// How many history follows the poll and a notification started.
    pub(crate) fn follows(&self) -> (u64, u64) {
        (
            self.wakes.by_poll.load(Ordering::Relaxed),
            self.wakes.by_notify.load(Ordering::Relaxed),
        )
    }

    /// The listener's state (`connecting`, `listening`, `reconnecting`); `None`: off.
    pub(crate) fn listen_state(&self) -> Option<&'static str> {
        *self.wakes.listen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_listen(&self, state: &'static str) {
        *self.wakes.listen.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
    }

    /// Starts the listener on its own connection to `url` (a direct one: see the module);
    /// it reconnects with backoff until the runtime ends. Nothing on SQLite.
    pub(crate) fn listen(&self, url: &Secret) {
        if !self.postgres {
            return;
        }
        self.set_listen("connecting");
        tokio::spawn(self.clone().run_listener(url.clone()));
    }

    async fn run_listener(self, url: Secret) {
        let own = self.holder();
        let mut failures = 0u32;
        loop {
            let connected = tokio::time::timeout(CONNECT, async {
                let mut l = PgListener::connect(url.expose()).await?;
                // A lost connection ends this session; the loop reconnects with backoff.
                l.eager_reconnect(false);
                l.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(l)
            })
            .await;
            let mut listener = match connected {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => {
                    failures += 1;
                    self.lost(failures, &StoreError::from(e).to_string()).await;
                    continue;
                }
                Err(_) => {
                    failures += 1;
                    let why = format!("no connection within {CONNECT:?}");
                    self.lost(failures, &why).await;
                    continue;
                }
            };
            self.set_listen("listening");
            if failures > 0 {
                // What was sent meanwhile is lost: the next poll reads it.
                info!("listening to the store's notifications again");
            }
            failures = 0;
            let err = loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        let (topic, from) = n.payload().split_once(' ').unwrap_or(("", ""));
                        if from == own {
                            continue;
                        }
                        match topic {
                            "history" => self.wakes.history.notify_one(),
                            "certs" => self.wakes.certs.notify_one(),
                            _ => {}
                        }
                    }
                    Ok(None) => break "the connection was lost".to_owned(),
                    Err(e) => break StoreError::from(e).to_string(),
                }
            };
            drop(listener);
            failures += 1;
            self.lost(failures, &err).await;
        }
    }

    /// Logs the first failure in a row, then waits out the backoff.
    async fn lost(&self, failures: u32, e: &str) {
        self.set_listen("reconnecting");
        if failures == 1 {
            warn!("listening to the store's notifications: {e}; polling meanwhile");
        }
        tokio::time::sleep(crate::clock::backoff(BACKOFF_MIN, BACKOFF_MAX, failures)).await;
    }
}
