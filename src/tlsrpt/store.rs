//! The report store: one query layer (sqlx `Any`) over SQLite in `[state] dir` or a shared
//! PostgreSQL database; the schema is `migrations/`, the same SQL for both.

use std::path::Path;
use std::time::Duration;

use mta_stsd_providers::Secret;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::report::Report;

/// The embedded schema migrations (`migrations/`, applied in version order).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQLite file name inside `[state] dir`.
pub const SQLITE_FILE: &str = "tlsrpt.sqlite";

/// Rows per multi-row INSERT: well below either backend's bound-parameter limit.
const ROWS_PER_INSERT: usize = 400;

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

/// A report waiting for the writer, and where its outcome goes.
#[derive(Debug)]
struct Job {
    report: Report,
    json: String,
    source: Source,
    received_at: i64,
    policy_ids: Vec<Option<String>>,
    done: oneshot::Sender<Result<Stored, StoreError>>,
}

/// Reports queued for the writer before `insert` waits to queue (each holds its JSON).
const QUEUE: usize = 256;
/// The most reports, and JSON bytes, one commit takes.
const BATCH_REPORTS: usize = 128;
const BATCH_BYTES: usize = 16 << 20;

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

    /// The JSON of one report exactly as it was received.
    pub async fn json(&self, report_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT json FROM tlsrpt_reports WHERE report_id = $1")
            .bind(report_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Per domain, day, reporter and policy id, from `since_day` (YYYY-MM-DD) on; all
    /// domains when `domains` is empty. Sorted by domain, then day.
    pub async fn days(
        &self,
        domains: &[String],
        since_day: &str,
    ) -> Result<Vec<DayRow>, StoreError> {
        let sql = format!(
            "SELECT p.domain, p.day, r.organization, p.policy_id, \
             CAST(SUM(p.successful) AS BIGINT), CAST(SUM(p.failed) AS BIGINT) \
             FROM tlsrpt_policies p JOIN tlsrpt_reports r ON r.report_id = p.report_id \
             WHERE p.domain IS NOT NULL AND p.day >= $1{} \
             GROUP BY p.domain, p.day, r.organization, p.policy_id \
             ORDER BY p.domain, p.day, r.organization, p.policy_id",
            domain_filter(domains.len())
        );
        // Only placeholders are generated; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(since_day);
        for d in domains {
            q = q.bind(d.as_str());
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(day_row).collect()
    }

    /// Failed sessions per domain, day, result type and receiving MX, like [`Store::days`].
    pub async fn failures(
        &self,
        domains: &[String],
        since_day: &str,
    ) -> Result<Vec<FailureRow>, StoreError> {
        let sql = format!(
            "SELECT p.domain, p.day, f.result_type, f.receiving_mx, p.policy_id, \
             CAST(SUM(f.count) AS BIGINT) \
             FROM tlsrpt_failures f JOIN tlsrpt_policies p \
             ON p.report_id = f.report_id AND p.idx = f.idx \
             WHERE p.domain IS NOT NULL AND p.day >= $1{} \
             GROUP BY p.domain, p.day, f.result_type, f.receiving_mx, p.policy_id \
             ORDER BY p.domain, p.day, f.result_type, f.receiving_mx, p.policy_id",
            domain_filter(domains.len())
        );
        // Only placeholders are generated; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(since_day);
        for d in domains {
            q = q.bind(d.as_str());
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(FailureRow {
                    domain: r.try_get(0)?,
                    day: r.try_get(1)?,
                    result_type: r.try_get(2)?,
                    receiving_mx: r.try_get(3)?,
                    policy_id: r.try_get(4)?,
                    count: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Per domain of `domains` that has reports: the last one received (ever) and the
    /// sessions of reports from `since_day` (YYYY-MM-DD) on.
    pub async fn sums(
        &self,
        domains: &[String],
        since_day: &str,
    ) -> Result<std::collections::HashMap<String, Sums>, StoreError> {
        let mut out = std::collections::HashMap::new();
        if domains.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT p.domain, MAX(r.received_at), \
             CAST(SUM(CASE WHEN p.day >= $1 THEN p.successful ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN p.day >= $1 THEN p.failed ELSE 0 END) AS BIGINT) \
             FROM tlsrpt_policies p JOIN tlsrpt_reports r ON r.report_id = p.report_id \
             WHERE p.domain IS NOT NULL{} GROUP BY p.domain",
            domain_filter(domains.len())
        );
        // Only placeholders are generated; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(since_day);
        for d in domains {
            q = q.bind(d.as_str());
        }
        for r in q.fetch_all(&self.pool).await? {
            out.insert(
                r.try_get(0)?,
                Sums {
                    last_received: r.try_get(1)?,
                    successful: r.try_get(2)?,
                    failed: r.try_get(3)?,
                },
            );
        }
        Ok(out)
    }
}

fn day_row(r: &AnyRow) -> Result<DayRow, StoreError> {
    Ok(DayRow {
        domain: r.try_get(0)?,
        day: r.try_get(1)?,
        organization: r.try_get(2)?,
        policy_id: r.try_get(3)?,
        successful: r.try_get(4)?,
        failed: r.try_get(5)?,
    })
}

/// ` AND p.domain IN ($2, …)` for `n` domains (`$1` is the day).
fn domain_filter(n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    let list: Vec<String> = (0..n).map(|i| format!("${}", i + 2)).collect();
    format!(" AND p.domain IN ({})", list.join(", "))
}

/// `($1, …, $k), ($k+1, …)` for `rows` rows of `cols` values.
fn push_placeholders(sql: &mut String, rows: usize, cols: usize) {
    use std::fmt::Write;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            let sep = if c == 0 { "" } else { ", " };
            let _ = write!(sql, "{sep}${}", r * cols + c + 1);
        }
        sql.push(')');
    }
}

/// Counts are u64 in JSON, BIGINT in SQL; a reporter's absurd count is capped, not refused.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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

/// A writer: takes what is queued (at least one report), writes it in one transaction, and
/// answers each report. If that transaction fails, each report is tried alone, so one that
/// fails does not take the others with it. Ends when every [`Store`] is dropped.
async fn write_reports(pool: AnyPool, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        // One writer takes a batch while the others write theirs.
        let mut batch = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut bytes = first.json.len();
            let mut batch = vec![first];
            while batch.len() < BATCH_REPORTS && bytes < BATCH_BYTES {
                match jobs.try_recv() {
                    Ok(job) => {
                        bytes += job.json.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        match write_batch(&pool, &batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.done.send(Ok(outcome));
                }
            }
            Err(_) if batch.len() > 1 => {
                for job in batch {
                    let outcome = write_batch(&pool, std::slice::from_ref(&job))
                        .await
                        .map(|o| o[0]);
                    let _ = job.done.send(outcome);
                }
            }
            Err(e) => {
                if let Some(job) = batch.pop() {
                    let _ = job.done.send(Err(e));
                }
            }
        }
    }
}

/// `batch` in one transaction: every report's outcome, or the error that undid them all.
async fn write_batch(pool: &AnyPool, batch: &[Job]) -> Result<Vec<Stored>, StoreError> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        outcomes.push(insert_in(&mut tx, job).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// One report's rows inside `tx`; a duplicate `report-id` writes nothing.
async fn insert_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &Job,
) -> Result<Stored, StoreError> {
    let Job {
        report,
        json,
        source,
        received_at,
        policy_ids,
        ..
    } = job;
    let (source, received_at) = (*source, *received_at);
    // RFC 8460 §4.4: "report-id" is unique per report; a resend is a duplicate.
    let inserted = sqlx::query(
        "INSERT INTO tlsrpt_reports (report_id, organization, contact, start_time, end_time, \
         received_at, source, json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (report_id) DO NOTHING RETURNING report_id",
    )
    .bind(&report.report_id)
    .bind(&report.organization)
    .bind(report.contact.as_deref())
    .bind(report.start)
    .bind(report.end)
    .bind(received_at)
    .bind(source.as_str())
    .bind(json)
    .fetch_optional(&mut **tx)
    .await?;
    if inserted.is_none() {
        // Nothing was written: the transaction goes on with the other reports.
        return Ok(Stored::Duplicate);
    }
    let day = utc_day(report.start);
    let policies: Vec<_> = report.policies.iter().enumerate().collect();
    for chunk in policies.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO tlsrpt_policies (report_id, idx, policy_type, domain, policy_string, \
             policy_id, day, successful, failed) VALUES ",
        );
        push_placeholders(&mut sql, chunk.len(), 9);
        // Only placeholders are generated; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for &(i, p) in chunk {
            q = q
                .bind(&report.report_id)
                .bind(i as i64)
                .bind(p.policy_type.as_str())
                .bind(p.domain.as_deref())
                .bind(p.policy_string.as_ref().map(|l| l.join("\n")))
                .bind(policy_ids.get(i).cloned().flatten())
                .bind(day.as_str())
                .bind(clamp(p.successful))
                .bind(clamp(p.failed));
        }
        q.execute(&mut **tx).await?;
    }
    let failures: Vec<_> = report
        .policies
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.failures.iter().enumerate().map(move |(n, f)| (i, n, f)))
        .collect();
    for chunk in failures.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO tlsrpt_failures (report_id, idx, n, result_type, receiving_mx, \
             sending_ip, receiving_ip, reason, count) VALUES ",
        );
        push_placeholders(&mut sql, chunk.len(), 9);
        // Only placeholders are generated; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for &(i, n, f) in chunk {
            q = q
                .bind(&report.report_id)
                .bind(i as i64)
                .bind(n as i64)
                .bind(f.result_type.as_str())
                .bind(f.receiving_mx_hostname.as_deref())
                .bind(f.sending_mta_ip.as_deref())
                .bind(f.receiving_ip.as_deref())
                .bind(f.failure_reason_code.as_deref())
                .bind(clamp(f.count));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(Stored::New)
}
