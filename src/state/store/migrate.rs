//! Applies `migrations/` (the TLS-RPT store's and ours: one set). SQLite through sqlx's
//! migrator; PostgreSQL by hand in one transaction, into the same `_sqlx_migrations` table,
//! because sqlx's migrator takes a session-level advisory lock and prepares its statements by
//! name, which a transaction pooler (PgBouncer 1.18) cannot carry.

use sqlx::AnyPool;

use super::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub(super) async fn sqlite(pool: &AnyPool) -> Result<(), StoreError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_locking(false);
    migrator.run(pool).await?;
    Ok(())
}

/// The table as sqlx's PostgreSQL migrator makes it, so that either may run next.
const TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)";

pub(super) async fn postgres(pool: &AnyPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    // Asked first: `IF NOT EXISTS` on an existing table logs a notice at every start.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .persistent(false)
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        // A plain string runs as a simple query: nothing prepared.
        sqlx::raw_sql(TABLE).execute(&mut *tx).await?;
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .persistent(false)
            .fetch_all(&mut *tx)
            .await?;
    for m in MIGRATOR.iter() {
        if let Some((_, sum)) = applied.iter().find(|(v, _)| *v == m.version) {
            if sum[..] != m.checksum[..] {
                return Err(sqlx::migrate::MigrateError::VersionMismatch(m.version).into());
            }
            continue;
        }
        sqlx::raw_sql(m.sql.clone()).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, $2, TRUE, $3, -1)",
        )
        .persistent(false)
        .bind(m.version)
        .bind(m.description.to_string())
        .bind(m.checksum.to_vec())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
