//! The reading side of the store: the sums `reports` and `/status` show.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{DayRow, FailureRow, Store, StoreError, Sums};

impl Store {
    /// The JSON of one report exactly as it was received (the first received, when several
    /// senders used this id).
    pub async fn json(&self, report_id: &str) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT json FROM tlsrpt_reports WHERE report_id = $1 \
             ORDER BY received_at, sender LIMIT 1",
        )
        .persistent(false)
        .bind(report_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
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
            "SELECT p.domain, p.day, r.organization, r.auth, p.policy_id, \
             {}, {} \
             FROM tlsrpt_policies p {JOIN} \
             WHERE p.domain IS NOT NULL AND p.day >= $1{} \
             GROUP BY p.domain, p.day, r.organization, r.auth, p.policy_id \
             ORDER BY p.domain, p.day, r.organization, r.auth, p.policy_id",
            sum("p.successful"),
            sum("p.failed"),
            domain_filter(domains.len())
        );
        let rows = self.fetch_since(sql, since_day, domains).await?;
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
             {} \
             FROM tlsrpt_failures f JOIN tlsrpt_policies p \
             ON p.sender = f.sender AND p.report_id = f.report_id AND p.idx = f.idx \
             WHERE p.domain IS NOT NULL AND p.day >= $1{} \
             GROUP BY p.domain, p.day, f.result_type, f.receiving_mx, p.policy_id \
             ORDER BY p.domain, p.day, f.result_type, f.receiving_mx, p.policy_id",
            sum("f.count"),
            domain_filter(domains.len())
        );
        let rows = self.fetch_since(sql, since_day, domains).await?;
        rows.iter()
            .map(|r| {
                Ok(FailureRow {
                    domain: r.try_get(0)?,
                    day: r.try_get(1)?,
                    result_type: r.try_get(2)?,
                    receiving_mx: r.try_get(3)?,
                    policy_id: r.try_get(4)?,
                    count: saturate(r.try_get(5)?),
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
    ) -> Result<HashMap<String, Sums>, StoreError> {
        let mut out = HashMap::new();
        if domains.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT p.domain, MAX(r.received_at), {}, {} \
             FROM tlsrpt_policies p {JOIN} \
             WHERE p.domain IS NOT NULL{} GROUP BY p.domain",
            sum("CASE WHEN p.day >= $1 THEN p.successful ELSE 0 END"),
            sum("CASE WHEN p.day >= $1 THEN p.failed ELSE 0 END"),
            domain_filter(domains.len())
        );
        for r in self.fetch_since(sql, since_day, domains).await? {
            out.insert(
                r.try_get(0)?,
                Sums {
                    last_received: r.try_get(1)?,
                    successful: saturate(r.try_get(2)?),
                    failed: saturate(r.try_get(3)?),
                },
            );
        }
        Ok(out)
    }

    /// Runs `sql`, whose `$1` is the day and whose `$2…` are the domains of [`domain_filter`].
    async fn fetch_since(
        &self,
        sql: String,
        since_day: &str,
        domains: &[String],
    ) -> Result<Vec<AnyRow>, StoreError> {
        // Only placeholders are generated; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .persistent(false)
            .bind(since_day);
        for d in domains {
            q = q.bind(d.as_str());
        }
        let mut tx = self.pool.begin().await?;
        let rows = q.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows)
    }
}

fn day_row(r: &AnyRow) -> Result<DayRow, StoreError> {
    Ok(DayRow {
        domain: r.try_get(0)?,
        day: r.try_get(1)?,
        organization: r.try_get(2)?,
        auth: r.try_get(3)?,
        policy_id: r.try_get(4)?,
        successful: saturate(r.try_get(5)?),
        failed: saturate(r.try_get(6)?),
    })
}

/// A report's rows and the report they belong to.
const JOIN: &str = "JOIN tlsrpt_reports r ON r.sender = p.sender AND r.report_id = p.report_id";

/// `SUM(x)` that cannot overflow: BIGINT sums fail past 2^63 (SQLite "integer overflow",
/// PostgreSQL "bigint out of range"), doubles do not; each count is at most 2^53 − 1
/// ([`super::MAX_COUNT`]), so sums are exact up to 2^53 and saturate beyond.
fn sum(x: &str) -> String {
    format!("SUM(CAST({x} AS DOUBLE PRECISION))")
}

/// A double sum as a count: `as` saturates (and takes NaN to 0).
fn saturate(x: f64) -> i64 {
    x as i64
}

/// ` AND p.domain IN ($2, …)` for `n` domains (`$1` is the day).
fn domain_filter(n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    let list: Vec<String> = (0..n).map(|i| format!("${}", i + 2)).collect();
    format!(" AND p.domain IN ({})", list.join(", "))
}
