//! Issue 23 in the report store itself, on SQLite and on a real PostgreSQL: session counts
//! that overflowed the sums, a POST taking a signed report's place, quotas and retention by
//! the time received, and the first schema's rows kept by the upgrade.

use std::sync::Arc;

use mta_stsd::tlsrpt::store::{Backend, Source, Store, StoreError, Stored, MAX_COUNT};
use mta_stsd::tlsrpt::Report;
use mta_stsd_providers::Secret;

use crate::harness::postgres::Postgres;

use super::hardening::{policy, report};

/// What a store test inserts: over HTTPS unless `signer`.
async fn put(store: &Store, json: &str, signer: Option<&str>, received: i64) -> Stored {
    try_put(store, json, signer, received).await.unwrap()
}

async fn try_put(
    store: &Store,
    json: &str,
    signer: Option<&str>,
    received: i64,
) -> Result<Stored, StoreError> {
    let r = Report::parse(json.as_bytes()).unwrap();
    let ids = vec![Some("NOW".to_owned()); r.policies.len()];
    let source = match signer {
        Some(s) => Source::Mail { signer: s.into() },
        None => Source::Https,
    };
    store
        .insert(Arc::new(r), json.to_owned(), &source, received, ids)
        .await
}

/// Item 3: two reports of 2^64 − 1 sessions made the sums fail ("integer overflow" on SQLite,
/// "bigint out of range" on PostgreSQL), so /status and `reports` failed for every domain.
/// Item 4: an unauthenticated POST with the id of a signed mail report does not take its
/// place; each row says how it was authenticated.
async fn counts_and_senders(store: Store) {
    let max = u64::MAX;
    for id in ["a", "b"] {
        let json = report(id, "Big", "2024-10-01", &policy("example.org", max, max));
        assert_eq!(put(&store, &json, None, 1).await, Stored::New);
    }
    let days = store
        .days(&["example.org".into()], "2024-01-01")
        .await
        .unwrap();
    assert_eq!(
        (days[0].successful, days[0].failed),
        (2 * MAX_COUNT, 2 * MAX_COUNT)
    );
    let fails = store
        .failures(&["example.org".into()], "2024-01-01")
        .await
        .unwrap();
    assert_eq!(fails[0].count, 2 * MAX_COUNT);
    let sums = store
        .sums(&["example.org".into()], "2024-01-01")
        .await
        .unwrap();
    assert_eq!(sums["example.org"].successful, 2 * MAX_COUNT);

    // Google's id format, POSTed first claiming Google, then the signed mail report.
    let id = "2024-10-02T00:00:00Z_example.net";
    let claim = report(
        id,
        "Google Inc.",
        "2024-10-02",
        &policy("example.net", 7, 0),
    );
    let real = report(
        id,
        "Google Inc.",
        "2024-10-02",
        &policy("example.net", 5, 3),
    );
    assert_eq!(put(&store, &claim, None, 1).await, Stored::New);
    assert_eq!(put(&store, &real, Some("google.com"), 2).await, Stored::New);
    assert_eq!(
        put(&store, &real, Some("google.com"), 3).await,
        Stored::Duplicate
    );
    let days = store
        .days(&["example.net".into()], "2024-01-01")
        .await
        .unwrap();
    let seen: Vec<_> = days
        .iter()
        .map(|d| (d.auth.as_str(), d.successful, d.failed))
        .collect();
    assert_eq!(seen, [("dkim", 5, 3), ("none", 7, 0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_counts_and_senders_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    counts_and_senders(
        Store::open(&Backend::Sqlite(dir.path().into()))
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_counts_and_senders_postgres() {
    let pg = Postgres::start();
    let store = Store::open(&Backend::Postgres(Secret::new(pg.url())))
        .await
        .unwrap();
    counts_and_senders(store).await;
}

/// Item 5: quotas on reports and bytes refuse for now (not forever, not silently), and
/// retention goes by received time too (a far-future end escaped it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_quotas_and_retention_by_received_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Backend::Sqlite(dir.path().into()))
        .await
        .unwrap();
    let json = |id: &str, day: &str| report(id, "Q", day, &policy("example.org", 1, 0));
    store.set_quota(2, 1 << 20);
    assert_eq!(
        put(&store, &json("1", "2024-10-01"), None, 100).await,
        Stored::New
    );
    assert_eq!(
        put(&store, &json("2", "2999-10-01"), None, 100).await,
        Stored::New
    );
    let full = try_put(&store, &json("3", "2024-10-01"), None, 100).await;
    assert!(
        matches!(&full, Err(StoreError::Full(m)) if m.contains("max_reports = 2")),
        "{full:?}"
    );
    // A duplicate is still a duplicate when full.
    assert_eq!(
        put(&store, &json("1", "2024-10-01"), None, 100).await,
        Stored::Duplicate
    );
    store.set_quota(10, 500);
    let full = try_put(&store, &json("3", "2024-10-01"), None, 100).await;
    assert!(
        matches!(&full, Err(StoreError::Full(m)) if m.contains("max_store_bytes = 500")),
        "{full:?}"
    );
    // Both received at 100: a cut at 200 removes the one that ends in 2999 too.
    assert_eq!(store.prune(200).await.unwrap(), 2);
    assert_eq!(
        put(&store, &json("3", "2024-10-01"), None, 300).await,
        Stored::New
    );
}

/// Item 4's migration: a store written by the first schema (report-id the only key) is
/// upgraded with its rows; mail rows count as DKIM-signed, HTTPS ones as not.
async fn upgrade(url: &str) {
    sqlx::any::install_default_drivers();
    let first = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/20261201000001_tlsrpt.sql"
        ),
        first.path().join("20261201000001_tlsrpt.sql"),
    )
    .unwrap();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::migrate::Migrator::new(first.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for (id, source, ok) in [("m", "mail", 3i64), ("h", "https", 4)] {
        sqlx::query(
            "INSERT INTO tlsrpt_reports (report_id, organization, contact, start_time, \
             end_time, received_at, source, json) VALUES ($1, 'Old', NULL, 1727740800, \
             1727827199, 1, $2, '{}')",
        )
        .bind(id)
        .bind(source)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO tlsrpt_policies VALUES ($1, 0, 'sts', 'example.org', NULL, 'NOW', \
             '2024-10-01', $2, 1)",
        )
        .bind(id)
        .bind(ok)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO tlsrpt_failures VALUES ($1, 0, 0, 'sts-webpki-invalid', 'mx', NULL, \
             NULL, NULL, 1)",
        )
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let backend = match url.strip_prefix("sqlite://") {
        Some(path) => Backend::Sqlite(
            std::path::Path::new(path.split('?').next().unwrap())
                .parent()
                .unwrap()
                .into(),
        ),
        None => Backend::Postgres(Secret::new(url.to_owned())),
    };
    let store = Store::open(&backend).await.unwrap();
    let days = store.days(&[], "2024-01-01").await.unwrap();
    let seen: Vec<_> = days
        .iter()
        .map(|d| (d.auth.as_str(), d.successful))
        .collect();
    assert_eq!(seen, [("dkim", 3), ("none", 4)]);
    let fails = store.failures(&[], "2024-01-01").await.unwrap();
    assert_eq!(fails[0].count, 2);
    assert_eq!(store.json("m").await.unwrap().as_deref(), Some("{}"));
    // The new key: the old HTTPS row's id is free for a signed sender.
    let again = report("h", "Old", "2024-10-01", &policy("example.org", 1, 0));
    assert_eq!(
        put(&store, &again, Some("old.example"), 2).await,
        Stored::New
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_upgrade_keeps_rows_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(mta_stsd::tlsrpt::store::SQLITE_FILE);
    upgrade(&format!("sqlite://{}?mode=rwc", file.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_upgrade_keeps_rows_postgres() {
    let pg = Postgres::start();
    upgrade(&pg.url()).await;
}
