//! Reading and writing the daemon's store from a test, as a second client would: SQLite in a
//! test's `[state] dir`, or a PostgreSQL URL. Statements are never prepared by name, so that
//! the same code runs through PgBouncer.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sqlx::AnyPool;

/// The SQLite store in `dir` (a `[state] dir`).
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rw", dir.join("state.sqlite").display())
}

pub async fn connect(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to the store: {e}"))
}

/// The chain PEM stored for `name`, if any.
pub async fn chain(url: &str, name: &str) -> Option<String> {
    let pool = connect(url).await;
    let v = sqlx::query_scalar("SELECT chain_pem FROM store_acme_certs WHERE name = $1")
        .persistent(false)
        .bind(name)
        .fetch_optional(&pool)
        .await
        .unwrap();
    pool.close().await;
    v
}

/// The leaf (DER) stored for `name`.
pub async fn leaf(url: &str, name: &str) -> Vec<u8> {
    let pem = chain(url, name)
        .await
        .unwrap_or_else(|| panic!("no certificate stored for {name}"));
    leaf_of(&pem)
}

/// The first certificate of a PEM chain (DER).
pub fn leaf_of(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a PEM certificate")
        .unwrap()
        .to_vec()
}

/// Rows of a one-column text query.
pub async fn texts(url: &str, sql: &'static str) -> Vec<String> {
    let pool = connect(url).await;
    let v = sqlx::query_scalar(sql)
        .persistent(false)
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    v
}

/// Runs one statement (no parameters).
pub async fn execute(url: &str, sql: &str) {
    let pool = connect(url).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
}
