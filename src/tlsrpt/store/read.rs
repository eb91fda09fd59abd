//! The reading side of the store: the sums `reports` and `/status` show.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{DayRow, FailureRow, Store, StoreError, Sums};

impl Store {
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
             CAST(SUM(f.count) AS BIGINT) \
             FROM tlsrpt_failures f JOIN tlsrpt_policies p \
             ON p.report_id = f.report_id AND p.idx = f.idx \
             WHERE p.domain IS NOT NULL AND p.day >= $1{} \
             GROUP BY p.domain, p.day, f.result_type, f.receiving_mx, p.policy_id \
             ORDER BY p.domain, p.day, f.result_type, f.receiving_mx, p.policy_id",
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
    ) -> Result<HashMap<String, Sums>, StoreError> {
        let mut out = HashMap::new();
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
        for r in self.fetch_since(sql, since_day, domains).await? {
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

    /// Runs `sql`, whose `$1` is the day and whose `$2…` are the domains of [`domain_filter`].
    async fn fetch_since(
        &self,
        sql: String,
        since_day: &str,
        domains: &[String],
    ) -> Result<Vec<AnyRow>, StoreError> {
        // Only placeholders are generated; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(since_day);
        for d in domains {
            q = q.bind(d.as_str());
        }
        Ok(q.fetch_all(&self.pool).await?)
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
