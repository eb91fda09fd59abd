//! The writer side of the store: reports queued by [`super::Store::insert`] are committed in groups,
//! one transaction (one fsync) for all that arrived meanwhile.

use std::collections::HashMap;
use std::sync::Arc;

use std::sync::atomic::Ordering;

use sqlx::{AnyPool, AssertSqlSafe, Row};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{utc_day, Quota, StoreError, Stored, MAX_COUNT};
use crate::tlsrpt::report::Report;

/// Rows per multi-row INSERT: well below either backend's bound-parameter limit.
const ROWS_PER_INSERT: usize = 400;

/// A report waiting for the writer, and where its outcome goes.
#[derive(Debug)]
pub(super) struct Job {
    /// With `report_id`, the key: see [`super::Source`].
    pub(super) sender: String,
    pub(super) report: Arc<Report>,
    pub(super) json: String,
    pub(super) source: &'static str,
    pub(super) auth: &'static str,
    pub(super) signer: Option<String>,
    pub(super) received_at: i64,
    pub(super) policy_ids: Vec<Option<String>>,
    pub(super) done: oneshot::Sender<Result<Stored, StoreError>>,
}

/// Reports queued for the writer before `insert` waits to queue (each holds its JSON).
pub(super) const QUEUE: usize = 256;
/// The most reports, and JSON bytes, one commit takes.
const BATCH_REPORTS: usize = 128;
const BATCH_BYTES: usize = 16 << 20;

/// A writer: takes what is queued (at least one report), writes it in one transaction, and
/// answers each report. If that transaction fails, each report is tried alone, so one that
/// fails does not take the others with it. Ends when every
/// [`super::Store`] is dropped.
pub(super) async fn write_reports(
    pool: AnyPool,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    quota: Arc<Quota>,
) {
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
        match write_batch(&pool, &batch, &quota).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.done.send(outcome);
                }
            }
            Err(_) if batch.len() > 1 => {
                for job in batch {
                    let outcome = write_batch(&pool, std::slice::from_ref(&job), &quota)
                        .await
                        .and_then(|mut o| o.remove(0));
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

/// `batch` in one transaction: every report's outcome (stored, duplicate, or over a quota),
/// or the error that undid them all.
async fn write_batch(
    pool: &AnyPool,
    batch: &[Job],
    quota: &Quota,
) -> Result<Vec<Result<Stored, StoreError>>, StoreError> {
    // What the store holds, read once per batch and before the transaction: a SQLite read
    // transaction that then writes fails at once (SQLITE_BUSY) when another process wrote
    // meanwhile. So a quota may be passed by what other writers commit at the same moment
    // (at most a batch each).
    let mut read = pool.begin().await?;
    let row =
        sqlx::query("SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM tlsrpt_reports")
            .persistent(false)
            .fetch_one(&mut *read)
            .await?;
    read.commit().await?;
    let mut tx = pool.begin().await?;
    let (mut reports, mut bytes): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    let max_reports = quota.reports.load(Ordering::Relaxed);
    let max_bytes = quota.bytes.load(Ordering::Relaxed);
    let per_sender_day = quota.per_sender_day.load(Ordering::Relaxed);
    // Reports of this batch, not yet visible outside its transaction, by (sender, domain).
    let mut today: HashMap<(String, String), u64> = HashMap::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let size = job.json.len() as i64;
        let over = if reports as u64 >= max_reports {
            Some(format!(
                "{reports} reports stored, [tlsrpt] max_reports = {max_reports}"
            ))
        } else if bytes.saturating_add(size) as u64 > max_bytes {
            Some(format!(
                "{bytes} bytes stored, this report {size} more, [tlsrpt] max_store_bytes = {max_bytes}"
            ))
        } else {
            None
        };
        let over = match over {
            Some(why) => Some(StoreError::Full(why)),
            None => over_sender_day(pool, job, per_sender_day, &today)
                .await?
                .map(StoreError::SenderLimit),
        };
        if let Some(err) = over {
            // A resend of a stored report is still answered as one, full or not.
            let mut read = pool.begin().await?;
            let stored =
                sqlx::query("SELECT 1 FROM tlsrpt_reports WHERE sender = $1 AND report_id = $2")
                    .persistent(false)
                    .bind(job.sender.as_str())
                    .bind(job.report.report_id.as_str())
                    .fetch_optional(&mut *read)
                    .await?;
            read.commit().await?;
            outcomes.push(match stored {
                Some(_) => Ok(Stored::Duplicate),
                None => Err(err),
            });
            continue;
        }
        let outcome = insert_in(&mut tx, job).await?;
        if outcome == Stored::New {
            reports += 1;
            bytes = bytes.saturating_add(size);
            for d in policy_domains(job) {
                *today.entry((job.sender.clone(), d.to_owned())).or_default() += 1;
            }
        }
        outcomes.push(Ok(outcome));
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// The distinct policy domains a report is about.
fn policy_domains(job: &Job) -> impl Iterator<Item = &str> {
    let mut seen = std::collections::BTreeSet::new();
    job.report
        .policies
        .iter()
        .filter_map(|p| p.domain.as_deref())
        .filter(move |d| seen.insert(*d))
}

/// Why `job` is past `[tlsrpt] max_reports_per_sender_day` for one of its policy domains
/// (counted by UTC day of receipt, with `batch`'s reports not yet committed), if it is.
async fn over_sender_day(
    pool: &AnyPool,
    job: &Job,
    max: u64,
    batch: &HashMap<(String, String), u64>,
) -> Result<Option<String>, StoreError> {
    if max == u64::MAX {
        return Ok(None);
    }
    let day_start = job.received_at - job.received_at.rem_euclid(86_400);
    for domain in policy_domains(job) {
        let mut read = pool.begin().await?;
        let stored: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT r.report_id) FROM tlsrpt_reports r \
             JOIN tlsrpt_policies p ON p.sender = r.sender AND p.report_id = r.report_id \
             WHERE r.sender = $1 AND p.domain = $2 AND r.received_at >= $3",
        )
        .persistent(false)
        .bind(job.sender.as_str())
        .bind(domain)
        .bind(day_start)
        .fetch_one(&mut *read)
        .await?;
        read.commit().await?;
        let pending = batch
            .get(&(job.sender.clone(), domain.to_owned()))
            .copied()
            .unwrap_or(0);
        let n = u64::try_from(stored).unwrap_or(0).saturating_add(pending);
        if n >= max {
            return Ok(Some(format!(
                "{n} reports for {domain} stored today (UTC), [tlsrpt] max_reports_per_sender_day = {max}"
            )));
        }
    }
    Ok(None)
}

/// One report's rows inside `tx`; a duplicate `report-id` writes nothing.
async fn insert_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &Job,
) -> Result<Stored, StoreError> {
    let Job {
        sender,
        report,
        json,
        source,
        auth,
        signer,
        received_at,
        policy_ids,
        ..
    } = job;
    // RFC 8460 §4.4: "report-id" is unique per report (of one sender); a resend is a duplicate.
    let inserted = sqlx::query(
        "INSERT INTO tlsrpt_reports (sender, report_id, organization, contact, start_time, \
         end_time, received_at, source, auth, signer, bytes, json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (sender, report_id) DO NOTHING RETURNING report_id",
    )
    .persistent(false)
    .bind(sender)
    .bind(&report.report_id)
    .bind(&report.organization)
    .bind(report.contact.as_deref())
    .bind(report.start)
    .bind(report.end)
    .bind(*received_at)
    .bind(*source)
    .bind(*auth)
    .bind(signer.as_deref())
    .bind(json.len() as i64)
    .bind(json.as_str())
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
            "INSERT INTO tlsrpt_policies (sender, report_id, idx, policy_type, domain, \
             policy_string, policy_id, day, successful, failed) VALUES ",
        );
        push_placeholders(&mut sql, chunk.len(), 10);
        // Only placeholders are generated; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for &(i, p) in chunk {
            q = q
                .bind(sender.as_str())
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
            "INSERT INTO tlsrpt_failures (sender, report_id, idx, n, result_type, receiving_mx, \
             sending_ip, receiving_ip, reason, count) VALUES ",
        );
        push_placeholders(&mut sql, chunk.len(), 10);
        // Only placeholders are generated; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for &(i, n, f) in chunk {
            q = q
                .bind(sender.as_str())
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

/// Counts are u64 in JSON, BIGINT in SQL; a reporter's absurd count is capped at
/// [`MAX_COUNT`], not refused.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX).min(MAX_COUNT)
}
