//! The report store: one query layer (sqlx `Any`) over SQLite in `[state] dir` or a shared
//! PostgreSQL database; the schema is `migrations/`, the same SQL for both.

use std::path::Path;
use std::time::Duration;

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
    /// The database cannot be reached or refused the statement: try again later (the mail
    /// path answers EX_TEMPFAIL, HTTPS 503).
    #[error("report store unavailable: {0}")]
    Unavailable(#[from] sqlx::Error),
    #[error("report store schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// How a report came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Https,
    Mail,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Https => "https",
            Source::Mail => "mail",
        }
    }
}

/// The outcome of [`Store::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// A report with this `report-id` is stored already; nothing was written.
    Duplicate,
}

/// One domain's sessions on one day from one reporter under one policy id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DayRow {
    pub domain: String,
    pub day: String,
    pub organization: String,
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
            match MIGRATOR.run(&pool).await {
                Ok(()) => break,
                Err(_) if tries < 3 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (writer, jobs) = mpsc::channel(QUEUE);
        // SQLite has one writer at a time anyway; PostgreSQL commits several at once.
        let writers = if is_sqlite { 1 } else { 4 };
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..writers {
            tokio::spawn(write_reports(pool.clone(), jobs.clone()));
        }
        Ok(Store { pool, writer })
    }

    /// Stores `report` with its JSON as received and, per policy, the id matched to it
    /// (`policy_ids[i]` for `report.policies[i]`). All or nothing per report. Reports that
    /// arrive while one is being written are committed together (group commit: one fsync for
    /// all of them), and each gets its own outcome.
    pub async fn insert(
        &self,
        report: &Report,
        json: &str,
        source: Source,
        received_at: i64,
        policy_ids: &[Option<String>],
    ) -> Result<Stored, StoreError> {
        let (done, outcome) = oneshot::channel();
        let job = Job {
            report: report.clone(),
            json: json.to_owned(),
            source,
            received_at,
            policy_ids: policy_ids.to_vec(),
            done,
        };
        let gone = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        self.writer.send(job).await.map_err(|_| gone())?;
        outcome.await.unwrap_or_else(|_| Err(gone()))
    }

    /// Retention: removes reports whose range ended before `before` (unix seconds).
    pub async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        // Reports first, then rows left without one: a report committed meanwhile by another
        // writer keeps its rows, one still being written is invisible here.
        let gone = sqlx::query("DELETE FROM tlsrpt_reports WHERE end_time < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if gone > 0 {
            for sql in [
                "DELETE FROM tlsrpt_failures WHERE NOT EXISTS \
                 (SELECT 1 FROM tlsrpt_reports r WHERE r.report_id = tlsrpt_failures.report_id)",
                "DELETE FROM tlsrpt_policies WHERE NOT EXISTS \
                 (SELECT 1 FROM tlsrpt_reports r WHERE r.report_id = tlsrpt_policies.report_id)",
            ] {
                sqlx::query(sql).execute(&self.pool).await?;
            }
        }
        Ok(gone)
    }
}

/// `YYYY-MM-DD` of a unix time, UTC.
pub fn utc_day(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn sqlite_url(path: &Path) -> String {
    // mode=rwc: create the file when missing.
    format!("sqlite://{}?mode=rwc", path.display())
}
