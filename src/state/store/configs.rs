//! Who serves from this store: each start records its replica and config file, so that a
//! second, unrelated config on the same store can be named when it is refused (S3 of the
//! hardening issue).

use super::{bounded, Store, StoreError};

/// One replica's config file, as its last start recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    pub replica: String,
    pub config: String,
    /// Unix seconds, the store's clock.
    pub started_at: u64,
}

/// Claims shown at most.
const SHOWN: i64 = 10;

impl Store {
    /// Records that `config` on this replica serves from this store now.
    pub(crate) async fn claim(&self, config: &str) -> Result<(), StoreError> {
        bounded(async {
            let sql = format!(
                "INSERT INTO store_configs (replica, config, started_at) VALUES ($1, $2, {}) \
                 ON CONFLICT (replica, config) DO UPDATE SET started_at = excluded.started_at",
                self.clock_sql()
            );
            let mut tx = self.pool.begin().await?;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(self.replica.to_string())
                .bind(config.to_owned())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The configs recorded, latest start first.
    pub(crate) async fn claims(&self) -> Result<Vec<Claim>, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT replica, config, started_at FROM store_configs \
                 ORDER BY started_at DESC, replica, config LIMIT $1",
            )
            .persistent(false)
            .bind(SHOWN)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(rows
                .into_iter()
                .map(|(replica, config, at)| Claim {
                    replica,
                    config,
                    started_at: u64::try_from(at).unwrap_or(0),
                })
                .collect())
        })
        .await
    }
}
