//! Leases: a job that must happen once across replicas (and hand-run commands) is done by
//! whoever holds its row in `store_leases`. Taken and renewed by one conditional statement
//! each (no advisory lock, no session state: fine behind a transaction pooler); expiry by
//! the store's clock; the token grows at every change of holder, and a write made under a
//! lease checks it in the same transaction.

use std::time::Duration;

use super::{bounded, Store, StoreError};

/// A lease held by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job: String,
    pub token: i64,
    holder: String,
    ttl: Duration,
}

impl Lease {
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl Store {
    /// `<replica>/<pid>`: a hand-run command on the same machine is another holder.
    fn holder(&self) -> String {
        format!("{}/{}", self.replica, std::process::id())
    }

    /// Takes `job` for `ttl` unless another holder's lease has not expired. `None`: held.
    pub async fn acquire(&self, job: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let holder = self.holder();
        let now = self.clock_sql();
        // An expired lease (or none) is taken with a new token; our own is renewed.
        let sql = format!(
            "INSERT INTO store_leases (job, holder, token, expires_at) VALUES ($1, $2, 1, {now} + $3) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, \
             token = CASE WHEN store_leases.holder = excluded.holder THEN store_leases.token \
                          ELSE store_leases.token + 1 END \
             WHERE store_leases.expires_at <= {now} OR store_leases.holder = excluded.holder \
             RETURNING token"
        );
        let ttl_secs = ttl.as_secs().max(1) as i64;
        let token: Option<i64> = bounded(async {
            let mut tx = self.pool.begin().await?;
            let t = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(job)
                .bind(&holder)
                .bind(ttl_secs)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(t)
        })
        .await?;
        Ok(token.map(|token| Lease {
            job: job.to_owned(),
            token,
            holder,
            ttl,
        }))
    }

    /// Extends `lease` by its ttl; false: it was lost (expired and taken, or expired).
    pub async fn renew(&self, lease: &Lease) -> Result<bool, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let held = self.renew_in(&mut tx, lease).await?;
            tx.commit().await?;
            Ok(held)
        })
        .await
    }

    /// Renews inside `tx`: a write made after it in the same transaction is fenced (the row
    /// stays locked until the commit).
    pub(super) async fn renew_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        lease: &Lease,
    ) -> Result<bool, StoreError> {
        let now = self.clock_sql();
        let sql = format!(
            "UPDATE store_leases SET expires_at = {now} + $1 \
             WHERE job = $2 AND holder = $3 AND token = $4 AND expires_at > {now}"
        );
        let n = sqlx::query(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .bind(lease.ttl.as_secs().max(1) as i64)
            .bind(&lease.job)
            .bind(&lease.holder)
            .bind(lease.token)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Gives `lease` up at once, so that the next holder need not wait for its expiry.
    pub async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "UPDATE store_leases SET expires_at = 0 WHERE job = $1 AND holder = $2 AND token = $3",
            )
            .persistent(false)
            .bind(&lease.job)
            .bind(&lease.holder)
            .bind(lease.token)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Who holds each lease, for `/status`: (job, holder, token, expires_at).
    pub async fn leases(&self) -> Result<Vec<(String, String, i64, i64)>, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let rows = sqlx::query_as(
                "SELECT job, holder, token, expires_at FROM store_leases ORDER BY job",
            )
            .persistent(false)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(rows)
        })
        .await
    }

    /// The last drift findings (JSON) and when they were checked.
    pub async fn drift_findings(&self) -> Result<Option<(String, i64)>, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let row =
                sqlx::query_as("SELECT report, checked_at FROM store_drift WHERE name = 'last'")
                    .persistent(false)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok(row)
        })
        .await
    }

    /// Keeps the drift findings if `lease` (the "drift" job) is still held; false: lost, and
    /// nothing was written.
    pub async fn save_drift(
        &self,
        lease: &Lease,
        report: &str,
        checked_at: i64,
    ) -> Result<bool, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            if !self.renew_in(&mut tx, lease).await? {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO store_drift (name, report, token, checked_at) VALUES ('last', $1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET report = excluded.report, token = excluded.token, \
                 checked_at = excluded.checked_at",
            )
            .persistent(false)
            .bind(report)
            .bind(lease.token)
            .bind(checked_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }
}
