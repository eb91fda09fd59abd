//! DANE publication's memory (`store_dane`): one row per MX host, its JSON opaque here (the
//! `dane` module reads it). Written under the "dane" lease, fenced by its token; read by the
//! next holder at the start of its round, so a withdrawal one replica scheduled is every
//! replica's.

use super::{bounded, Lease, Store, StoreError};

/// The lease DANE publication runs under (`serve` and `apply`): one round at a time.
pub(crate) const DANE_JOB: &str = "dane";

/// The `store_meta` row that says `dane.json` was imported (or that there was none).
const IMPORTED: &str = "dane_import";

impl Store {
    /// Every host's row: (host, JSON), by host.
    pub(crate) async fn dane_rows(&self) -> Result<Vec<(String, String)>, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let rows = sqlx::query_as("SELECT host, entry FROM store_dane ORDER BY host")
                .persistent(false)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(rows)
        })
        .await
    }

    /// Replaces every row by `rows` if `lease` (the "dane" job) is still held; false: lost,
    /// nothing written.
    pub(crate) async fn save_dane(
        &self,
        lease: &Lease,
        rows: &[(String, String)],
    ) -> Result<bool, StoreError> {
        let clock = self.clock_sql();
        let insert = format!(
            "INSERT INTO store_dane (host, entry, token, updated_at) VALUES ($1, $2, $3, {clock}) \
             ON CONFLICT (host) DO UPDATE SET entry = excluded.entry, token = excluded.token, \
             updated_at = excluded.updated_at"
        );
        bounded(async {
            let mut tx = self.begin_write().await?;
            if !self.renew_in(&mut tx, lease).await? {
                return Ok(false);
            }
            let old: Vec<(String, String)> = sqlx::query_as("SELECT host, entry FROM store_dane")
                .persistent(false)
                .fetch_all(&mut *tx)
                .await?;
            for (host, _) in old.iter().filter(|(h, _)| !rows.iter().any(|r| &r.0 == h)) {
                sqlx::query("DELETE FROM store_dane WHERE host = $1")
                    .persistent(false)
                    .bind(host)
                    .execute(&mut *tx)
                    .await?;
            }
            // Unchanged rows keep their token and time: they say who last changed them.
            for (host, entry) in rows.iter().filter(|r| !old.contains(r)) {
                sqlx::query(sqlx::AssertSqlSafe(insert.as_str()))
                    .persistent(false)
                    .bind(host)
                    .bind(entry)
                    .bind(lease.token)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Whether an earlier version's `dane.json` was imported into this store (or found
    /// missing) by any replica.
    pub(crate) async fn dane_imported(&self) -> Result<bool, StoreError> {
        bounded(async {
            let mut tx = self.pool.begin().await?;
            let done: Option<String> =
                sqlx::query_scalar("SELECT value FROM store_meta WHERE name = $1")
                    .persistent(false)
                    .bind(IMPORTED)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok(done.is_some())
        })
        .await
    }

    /// Imports `rows` (an earlier version's `dane.json`) once per store, in one transaction
    /// with its marker `note`: a host that has a row already keeps it. False: another process
    /// imported first, nothing written.
    pub(crate) async fn import_dane(
        &self,
        rows: &[(String, String)],
        note: &str,
    ) -> Result<bool, StoreError> {
        let clock = self.clock_sql();
        let insert = format!(
            "INSERT INTO store_dane (host, entry, token, updated_at) VALUES ($1, $2, 0, {clock}) \
             ON CONFLICT (host) DO NOTHING"
        );
        bounded(async {
            let mut tx = self.begin_write().await?;
            let marked = sqlx::query(
                "INSERT INTO store_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .persistent(false)
            .bind(IMPORTED)
            .bind(note)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if marked == 0 {
                return Ok(false);
            }
            for (host, entry) in rows {
                sqlx::query(sqlx::AssertSqlSafe(insert.as_str()))
                    .persistent(false)
                    .bind(host)
                    .bind(entry)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }
}
