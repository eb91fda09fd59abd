//! The store: what the daemon must remember, in one database shared by every replica —
//! SQLite in `[state] dir` (the embedded default) or PostgreSQL (`[state] url_env` /
//! `url_file`). The schema is `migrations/`, the same SQL for both engines and for the
//! TLS-RPT store.
//!
//! Serving never waits on it: events are applied in memory at once and written by one task
//! from a queue (`write`), which retries until the store takes them; others' events are read
//! by a poll of the last `seq` (`read`), woken early by a notification where one is
//! listened to (`listen`).
//!
//! PgBouncer in transaction pooling mode: no session state is relied on. Statements with
//! parameters are never prepared by name (`persistent(false)`) and always run inside an
//! explicit transaction, because sqlx sends an unnamed statement's Parse and its Bind in two
//! round trips, which the pooler may give to two server connections outside a transaction;
//! migrations run without sqlx's session-level advisory lock.

mod acme;
mod configs;
mod dane;
mod import;
mod lease;
mod listen;
mod migrate;
mod read;
mod seal;
mod write;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mta_stsd_providers::Secret;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

pub(crate) use acme::{acme_job, CertRow, NewCert};
pub(crate) use dane::DANE_JOB;
pub(crate) use lease::{zone_job, Held, Lease};
pub(crate) use listen::Topic;
pub(crate) use write::{Events, Writer};

/// The SQLite file name inside `[state] dir`.
pub(crate) const SQLITE_FILE: &str = "state.sqlite";

/// How long a statement may wait for a connection: a store that does not answer is an error
/// after this, not a hang.
const ACQUIRE: Duration = Duration::from_secs(5);
/// How long one exchange (a transaction) may take: a pooler queues a query while the server
/// is down (PgBouncer: `query_wait_timeout`, 120 s), which must show as an error sooner.
const EXCHANGE: Duration = Duration::from_secs(10);

/// Runs `f` within [`EXCHANGE`].
async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(EXCHANGE, f)
        .await
        .unwrap_or(Err(StoreError::Timeout(EXCHANGE)))
}

/// Which store, and who is asking.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub dir: PathBuf,
    /// PostgreSQL; `None`: SQLite in `dir`.
    pub url: Option<Secret>,
    /// This replica's name, written with each event.
    pub replica: String,
    /// `[state] key_file` / `key_env`: private keys are sealed with it (see `seal`).
    pub key: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(#[from] sqlx::Error),
    #[error("store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("store schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Sealed(String),
    #[error("importing {path}: {error}")]
    Import {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// What `/status` and `/metrics` show of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Health {
    /// The last write or read failed (and is being retried).
    pub error: Option<String>,
    /// Events taken in memory and not yet in the store.
    pub pending: usize,
    /// Unix seconds of the last successful exchange with the store.
    pub last_ok: Option<u64>,
    /// The last `seq` read or written.
    pub seq: i64,
    /// Rows that could not be read (damage): their events are missing from the history.
    pub damaged: usize,
}

/// An open store. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pool: AnyPool,
    postgres: bool,
    replica: Arc<str>,
    health: Arc<Mutex<Health>>,
    /// The leases this process took, by job: held now or not.
    held: Arc<Mutex<std::collections::BTreeMap<String, bool>>>,
    /// The last `seq` [`Store::follow`] applied: where a catch-up reads from.
    followed: Arc<std::sync::atomic::AtomicI64>,
    /// Seals private keys before they are written (`[state] key_file` / `key_env`).
    sealer: Option<Arc<seal::Sealer>>,
    /// The `seq` ranges this process wrote and the follow has not passed yet: the follow
    /// leaves them out (by process, not by `replica` name, which two processes may share).
    written: Arc<Mutex<Vec<std::ops::RangeInclusive<i64>>>>,
    /// Wakes the follows on another's notification (`listen`), and counts their reads.
    wakes: Arc<listen::Wakes>,
}

impl Store {
    /// Connects (creating the SQLite file and `dir` when missing) and applies pending
    /// migrations.
    pub(crate) async fn open(target: &Target) -> Result<Store, StoreError> {
        let url = match &target.url {
            Some(u) => u.expose().to_owned(),
            None => {
                std::fs::create_dir_all(&target.dir).map_err(|e| StoreError::Import {
                    path: target.dir.clone(),
                    error: e,
                })?;
                sqlite_url(&target.dir.join(SQLITE_FILE), "rwc")
            }
        };
        let store = Store::connect(&url, target).await?;
        if target.url.is_none() {
            // It holds private keys (ACME): this user's only. SQLite gives its -wal and -shm
            // files the same mode.
            let file = target.dir.join(SQLITE_FILE);
            let open_to_others =
                std::fs::metadata(&file).is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
            if open_to_others {
                if let Err(e) =
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                {
                    tracing::warn!(file = %file.display(), "the store holds private keys and others may read it: {e}");
                }
            }
        }
        store.migrate().await?;
        Ok(store)
    }

    /// Opens what exists without creating anything: `None` when the SQLite file is missing.
    pub(crate) async fn open_existing(target: &Target) -> Result<Option<Store>, StoreError> {
        if target.url.is_none() && !target.dir.join(SQLITE_FILE).exists() {
            return Ok(None);
        }
        Store::open(target).await.map(Some)
    }

    async fn connect(url: &str, target: &Target) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let postgres = target.url.is_some();
        let pool = AnyPoolOptions::new()
            // On PostgreSQL the TLS-RPT store may share this pool (a `[tlsrpt]` naming no store of
            // its own): room for its writers beside the lease renewals.
            .max_connections(if postgres { 8 } else { 2 })
            .acquire_timeout(ACQUIRE)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if !postgres {
                        // Writers from other processes wait rather than fail at once.
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        if !postgres {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        let sealer = match &target.key {
            Some(k) => Some(Arc::new(seal::Sealer::new(
                &seal::parse_key(k.expose())
                    .map_err(|e| StoreError::Sealed(format!("[state] key_file/key_env: {e}")))?,
            ))),
            None => None,
        };
        Ok(Store {
            pool,
            postgres,
            sealer,
            replica: target.replica.as_str().into(),
            health: Arc::default(),
            held: Arc::default(),
            followed: Arc::default(),
            written: Arc::default(),
            wakes: Arc::default(),
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // Replicas racing on the first migration: the loser sees the tables made on its
        // next try.
        let mut tries = 0;
        loop {
            let result = if self.postgres {
                migrate::postgres(&self.pool).await
            } else {
                migrate::sqlite(&self.pool).await
            };
            match result {
                Ok(()) => return Ok(()),
                Err(_) if tries < 4 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn engine(&self) -> &'static str {
        if self.postgres {
            "postgresql"
        } else {
            "sqlite"
        }
    }

    pub(crate) fn replica(&self) -> &str {
        &self.replica
    }

    pub(crate) fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_health(&self, f: impl FnOnce(&mut Health)) {
        f(&mut self.health.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The store's clock (unix seconds): PostgreSQL's `now()`, so that every replica measures
    /// a schedule against the same time; SQLite's is this machine's.
    pub(crate) async fn now(&self) -> Result<u64, StoreError> {
        let sql = format!("SELECT {}", self.clock_sql());
        let mut tx = self.pool.begin().await?;
        let t: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(u64::try_from(t).unwrap_or(0))
    }

    /// The store's clock as SQL (unix seconds).
    /// A transaction that will write after reading: on SQLite taken as a writer at once
    /// (`BEGIN IMMEDIATE`), so that another process's write in between makes it wait for
    /// `busy_timeout` rather than fail at its first write (a read transaction cannot be
    /// upgraded once another wrote).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        if self.postgres {
            self.pool.begin().await
        } else {
            self.pool.begin_with("BEGIN IMMEDIATE").await
        }
    }

    fn clock_sql(&self) -> &'static str {
        if self.postgres {
            "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)"
        } else {
            "CAST(strftime('%s', 'now') AS BIGINT)"
        }
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// The history for a command that reads, never writes: from the store when there is one,
/// else from an earlier version's `history.jsonl` (not imported: that is `serve`'s first
/// start), else empty.
pub(crate) async fn read_history(
    target: &Target,
) -> Result<crate::state::history::History, StoreError> {
    if let Some(store) = Store::open_existing(target).await? {
        let loaded = store.load_history().await?;
        if loaded.seq > 0 || crate::state::Journal::open_existing(&target.dir, "history").is_none()
        {
            return Ok(loaded.history);
        }
    }
    let mut history = crate::state::history::History::in_memory();
    if let Some(j) = crate::state::Journal::open_existing(&target.dir, "history") {
        let read = j
            .read::<crate::state::history::Event>(0)
            .map_err(|e| StoreError::Import {
                path: j.path().to_owned(),
                error: e,
            })?;
        history.record(&read.records);
    }
    Ok(history)
}

/// One domain's history for a command that reads, never writes (`history DOMAIN`): an
/// indexed query when the store has the history, else [`read_history`]'s way.
pub(crate) async fn read_domain_history(
    target: &Target,
    name: &str,
) -> Result<crate::state::history::History, StoreError> {
    if let Some(store) = Store::open_existing(target).await? {
        let history = store.domain_history(name).await?;
        if history.domain(name).is_some()
            || store.has_history().await?
            || crate::state::Journal::open_existing(&target.dir, "history").is_none()
        {
            return Ok(history);
        }
    }
    read_history(target).await
}

/// [`read_history`] from code that is not async (or is inside another runtime): on a thread
/// of its own.
pub(crate) fn read_history_blocking(
    target: &Target,
) -> Result<crate::state::history::History, StoreError> {
    block_on(target, |t| async move { read_history(&t).await })
}

/// [`read_domain_history`] from code that is not async.
pub(crate) fn read_domain_history_blocking(
    target: &Target,
    name: &str,
) -> Result<crate::state::history::History, StoreError> {
    let name = name.to_owned();
    block_on(target, move |t| async move {
        read_domain_history(&t, &name).await
    })
}

/// Runs `f` on a runtime of its own, on a thread of its own (the caller may be inside another).
fn block_on<F, Fut>(target: &Target, f: F) -> Result<crate::state::history::History, StoreError>
where
    F: FnOnce(Target) -> Fut + Send,
    Fut: std::future::Future<Output = Result<crate::state::history::History, StoreError>>,
{
    let target = target.clone();
    std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Import {
                    path: target.dir.clone(),
                    error: e,
                })?;
            rt.block_on(f(target))
        })
        .join()
        .unwrap_or_else(|_| Err(StoreError::Unavailable(sqlx::Error::PoolClosed)))
    })
}

/// Applies `migrations/` to a PostgreSQL pool as the store does (one transaction, no
/// session-level lock: fine behind PgBouncer), for the TLS-RPT store on its own database.
pub(crate) async fn migrate_postgres(pool: &AnyPool) -> Result<(), StoreError> {
    migrate::postgres(pool).await
}

fn sqlite_url(path: &Path, mode: &str) -> String {
    format!("sqlite://{}?mode={mode}", path.display())
}

/// Unix seconds, for `Health::last_ok`.
fn unix_now() -> u64 {
    crate::clock::unix_now()
}

#[cfg(test)]
mod tests;

/// A SQLite store in `dir` written as `replica`, for unit tests.
#[cfg(test)]
pub(crate) async fn open_sqlite(dir: &std::path::Path, replica: &str) -> Store {
    Store::open(&Target {
        dir: dir.to_owned(),
        url: None,
        replica: replica.into(),
        key: None,
    })
    .await
    .unwrap()
}
