//! The report store: one query layer (sqlx `Any`) over SQLite in `[state] dir` or a shared
//! PostgreSQL database; the schema is `migrations/`, the same SQL for both.

use std::path::Path;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mta_stsd_providers::Secret;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::report::Report;
use write::{write_reports, Job, QUEUE};

mod read;
mod write;

/// The embedded schema migrations (`migrations/`, applied in version order).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQLite file name inside `[state] dir`.
pub const SQLITE_FILE: &str = "tlsrpt.sqlite";

/// Where the reports live.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `<dir>/tlsrpt.sqlite`, created when missing.
    Sqlite(std::path::PathBuf),
    /// A `postgres://` URL (it may carry a password: never printed).
    Postgres(Secret),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, or refused the statement for a reason that may pass:
    /// try again later (the mail path answers EX_TEMPFAIL, HTTPS 503).
    #[error("report store unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// The database refuses this report and always will (a value out of range or too large
    /// for an index, a constraint): answered as final (HTTPS 422, mail dropped and logged).
    #[error("report store refuses this report: {0}")]
    Refused(sqlx::Error),
    /// A quota of `[tlsrpt]` is used up: try again once retention made room.
    #[error("report store full: {0}")]
    Full(String),
    /// The sender has `[tlsrpt] max_reports_per_sender_day` reports stored for a policy
    /// domain of this one today (UTC): refused until the next day (HTTPS 429, mail dropped).
    #[error("sender over its daily limit: {0}")]
    SenderLimit(String),
    #[error("report store schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_permanent(&e) {
            StoreError::Refused(e)
        } else {
            StoreError::Unavailable(e)
        }
    }
}

/// Errors by class (the database's code), not by message: the same report would fail again.
fn is_permanent(e: &sqlx::Error) -> bool {
    use sqlx::error::ErrorKind;
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if matches!(
        db.kind(),
        ErrorKind::CheckViolation | ErrorKind::NotNullViolation | ErrorKind::ForeignKeyViolation
    ) {
        return true;
    }
    let code = db.code();
    let code = code.as_deref().unwrap_or("");
    // PostgreSQL SQLSTATE class 22 "data exception" (22001 string too long, 22003 numeric
    // out of range, 22021 bad encoding…) and 54000 "program limit exceeded" ("index row size
    // … exceeds btree maximum"); SQLite 18 SQLITE_TOOBIG, 20 SQLITE_MISMATCH.
    code.starts_with("22") || code == "54000" || code == "18" || code == "20"
}

/// How a report came in, and who vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// POSTed: RFC 8460 §5.3 has no authentication, so the sender is only what the report
    /// claims (its organization).
    Https,
    /// Mailed with a valid DKIM signature (RFC 8460 §3) by this `d=` domain.
    Mail { signer: String },
}

impl Source {
    fn as_str(&self) -> &'static str {
        match self {
            Source::Https => "https",
            Source::Mail { .. } => "mail",
        }
    }

    /// How the report was authenticated: `dkim` or `none`.
    fn auth(&self) -> &'static str {
        match self {
            Source::Https => "none",
            Source::Mail { .. } => "dkim",
        }
    }

    /// The first half of the key: report ids are unique per sender only (RFC 8460 §4.4 gives
    /// no more), and an unauthenticated sender must not take a signed one's id.
    fn sender(&self, report: &Report) -> String {
        match self {
            Source::Https => format!("https:{}", report.organization),
            Source::Mail { signer } => format!("dkim:{signer}"),
        }
    }
}

/// Counts are u64 in JSON; stored at most this (2^53 − 1): far above any real report, and
/// exact as a double, in which the store sums them (a sum never overflows, see `read.rs`).
pub const MAX_COUNT: i64 = (1 << 53) - 1;

/// `[tlsrpt] max_reports`, `max_store_bytes` and `max_reports_per_sender_day`; read per
/// batch, so a reload applies.
#[derive(Debug, Default)]
struct Quota {
    reports: AtomicU64,
    bytes: AtomicU64,
    per_sender_day: AtomicU64,
}

/// The outcome of [`Store::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// A report with this `report-id` from this sender is stored already; nothing was written.
    Duplicate,
}

/// One domain's sessions on one day from one reporter under one policy id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DayRow {
    pub domain: String,
    pub day: String,
    pub organization: String,
    /// How its reports were authenticated: `dkim` or `none` (HTTPS).
    pub auth: String,
    pub policy_id: Option<String>,
    pub successful: i64,
    pub failed: i64,
}

/// Failed sessions of one domain and day by result type and receiving MX, under one
/// matched policy id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailureRow {
    pub domain: String,
    pub day: String,
    pub result_type: String,
    pub receiving_mx: Option<String>,
    pub policy_id: Option<String>,
    pub count: i64,
}

/// One domain's reports in `/status`: the last one received, and the sessions of recent days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sums {
    /// Unix seconds.
    pub last_received: Option<i64>,
    pub successful: i64,
    pub failed: i64,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// The one writer of reports: it commits what arrived meanwhile in one transaction.
    writer: mpsc::Sender<Job>,
    quota: Arc<Quota>,
}

impl Store {
    /// Connects, creating the SQLite file (WAL, so `serve`, `ingest` and `reports` can run at
    /// once) and applying pending migrations.
    pub async fn open(backend: &Backend) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, max) = match backend {
            Backend::Sqlite(dir) => (sqlite_url(&dir.join(SQLITE_FILE)), 4),
            Backend::Postgres(url) => (url.expose().to_owned(), 8),
        };
        let is_sqlite = matches!(backend, Backend::Sqlite(_));
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if is_sqlite {
                        // Writers from other processes wait rather than fail at once.
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if is_sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        // Two processes starting together may race on the first migration; the loser sees
        // the tables made and succeeds on its second look.
        let mut tries = 0;
        loop {
            let migrated = if is_sqlite {
                MIGRATOR.run(&pool).await.map_err(StoreError::from)
            } else {
                // The state store's runner: no advisory lock, nothing prepared by name.
                crate::state::store::migrate_postgres(&pool)
                    .await
                    .map_err(|e| match e {
                        crate::state::store::StoreError::Unavailable(e) => StoreError::from(e),
                        crate::state::store::StoreError::Migrate(e) => StoreError::Migrate(e),
                        other => StoreError::Unavailable(sqlx::Error::Protocol(other.to_string())),
                    })
            };
            match migrated {
                Ok(()) => break,
                Err(_) if tries < 3 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Store::on_pool(pool, is_sqlite))
    }

    /// The store on a pool whose database has the migrations applied already: the daemon's
    /// store (`[state]`) on PostgreSQL, shared with a `[tlsrpt]` that names no store of its own.
    pub(crate) fn on_pool(pool: AnyPool, is_sqlite: bool) -> Store {
        let (writer, jobs) = mpsc::channel(QUEUE);
        // SQLite has one writer at a time anyway; PostgreSQL commits several at once.
        let writers = if is_sqlite { 1 } else { 4 };
        let jobs = Arc::new(Mutex::new(jobs));
        let quota = Arc::new(Quota {
            reports: AtomicU64::new(u64::MAX),
            bytes: AtomicU64::new(u64::MAX),
            per_sender_day: AtomicU64::new(u64::MAX),
        });
        for _ in 0..writers {
            tokio::spawn(write_reports(pool.clone(), jobs.clone(), quota.clone()));
        }
        Store {
            pool,
            writer,
            quota,
        }
    }

    /// The quotas (`[tlsrpt] max_reports`, `max_store_bytes`) the next reports are held to;
    /// without a call, none.
    pub fn set_quota(&self, reports: u64, bytes: u64) {
        self.quota.reports.store(reports, Ordering::Relaxed);
        self.quota.bytes.store(bytes, Ordering::Relaxed);
    }

    /// All the quotas of `cfg`, the per-sender daily limit too.
    pub(crate) fn set_quotas(&self, cfg: &crate::config::Tlsrpt) {
        self.set_quota(cfg.max_reports, cfg.max_store_bytes);
        self.quota
            .per_sender_day
            .store(cfg.max_reports_per_sender_day, Ordering::Relaxed);
    }

    /// Stores `report` with its JSON as received and, per policy, the id matched to it
    /// (`policy_ids[i]` for `report.policies[i]`). All or nothing per report. Reports that
    /// arrive while one is being written are committed together (group commit: one fsync for
    /// all of them), and each gets its own outcome. The report and its JSON are moved to the
    /// writer, not copied (they may be megabytes).
    pub async fn insert(
        &self,
        report: Arc<Report>,
        json: String,
        source: &Source,
        received_at: i64,
        policy_ids: Vec<Option<String>>,
    ) -> Result<Stored, StoreError> {
        let (done, outcome) = oneshot::channel();
        let job = Job {
            sender: source.sender(&report),
            report,
            json,
            source: source.as_str(),
            auth: source.auth(),
            signer: match source {
                Source::Mail { signer } => Some(signer.clone()),
                Source::Https => None,
            },
            received_at,
            policy_ids,
            done,
        };
        let gone = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        self.writer.send(job).await.map_err(|_| gone())?;
        outcome.await.unwrap_or_else(|_| Err(gone()))
    }

    /// Retention: removes reports whose range ended, or that were received, before `before`
    /// (unix seconds): a far-future `end-datetime` does not keep a report forever.
    pub async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        // Reports first, then rows left without one: a report committed meanwhile by another
        // writer keeps its rows, one still being written is invisible here.
        let mut tx = self.pool.begin().await?;
        let gone =
            sqlx::query("DELETE FROM tlsrpt_reports WHERE end_time < $1 OR received_at < $1")
                .persistent(false)
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        if gone > 0 {
            for sql in [
                "DELETE FROM tlsrpt_failures WHERE NOT EXISTS (SELECT 1 FROM tlsrpt_reports r \
                 WHERE r.sender = tlsrpt_failures.sender AND r.report_id = tlsrpt_failures.report_id)",
                "DELETE FROM tlsrpt_policies WHERE NOT EXISTS (SELECT 1 FROM tlsrpt_reports r \
                 WHERE r.sender = tlsrpt_policies.sender AND r.report_id = tlsrpt_policies.report_id)",
            ] {
                // No parameters: a simple query, nothing prepared.
                sqlx::raw_sql(sql).execute(&self.pool).await?;
            }
        }
        Ok(gone)
    }
}

/// `YYYY-MM-DD` of a unix time, UTC.
pub(crate) fn utc_day(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn sqlite_url(path: &Path) -> String {
    // mode=rwc: create the file when missing.
    format!("sqlite://{}?mode=rwc", path.display())
}
