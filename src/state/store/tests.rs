//! The store on SQLite: faults made with SQL on the same file, from another connection.

use std::time::Duration;

use super::*;
use crate::state::history::{Event, History};

fn target(dir: &Path) -> Target {
    Target {
        dir: dir.to_owned(),
        url: None,
        replica: "test".into(),
        key: None,
    }
}

fn served(domain: &str, id: &str, at: u64) -> Event {
    Event::Served {
        domain: domain.into(),
        id: id.into(),
        at,
    }
}

async fn raw(dir: &Path, sql: &'static str) {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&sqlite_url(&dir.join(SQLITE_FILE), "rw"))
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

/// S2 of the hardening issue: an event whose write failed is written once the store takes
/// writes again, and the failure shows until then (a later success does not hide it: the
/// event stays first in the queue).
#[tokio::test]
async fn a_failed_write_is_retried_until_the_store_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&target(dir.path())).await.unwrap();
    // The table gone: every write fails as a full disk's would, with an error.
    raw(dir.path(), "ALTER TABLE store_history RENAME TO parked").await;
    let writer = Writer::start(store.clone());
    writer.record(&[served("a.example", "x", 100)]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.health().error.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no error shown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.health().pending, 1);
    writer.record(&[served("a.example", "y", 200)]);
    raw(dir.path(), "ALTER TABLE parked RENAME TO store_history").await;
    assert!(writer.flush(Duration::from_secs(10)).await, "not written");
    let h = store.health();
    assert_eq!((h.error, h.pending), (None, 0));
    let loaded = store.load_history().await.unwrap();
    let d = loaded.history.domain("a.example").unwrap();
    let got: Vec<_> = d
        .served()
        .iter()
        .map(|e| (&*e.id, e.first, e.last))
        .collect();
    assert_eq!(got, vec![("x", 100, Some(200)), ("y", 200, None)]);
}

/// S4: a damaged row is counted, named and kept out, never silently dropped.
#[tokio::test]
async fn a_damaged_row_is_loud() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&target(dir.path())).await.unwrap();
    let writer = Writer::start(store.clone());
    writer.record(&[served("a.example", "x", 100)]);
    assert!(writer.flush(Duration::from_secs(10)).await);
    raw(
        dir.path(),
        "INSERT INTO store_history (seq, replica, recorded_at, event) VALUES (2, 'other', 0, '{\"retired\":{\"domain\":')",
    )
    .await;
    writer.record(&[served("b.example", "z", 300)]);
    assert!(writer.flush(Duration::from_secs(10)).await);
    let again = Store::open(&target(dir.path())).await.unwrap();
    let loaded = again.load_history().await.unwrap();
    assert_eq!(loaded.damaged, vec![2]);
    assert_eq!(again.health().damaged, 1);
    assert_eq!(loaded.seq, 3);
    assert!(loaded.history.domain("b.example").is_some());
}

/// Every row is read back in pages: more rows than a page.
#[tokio::test]
async fn a_history_longer_than_a_page_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&target(dir.path())).await.unwrap();
    let writer = Writer::start(store.clone());
    let events: Vec<Event> = (0..25_000)
        .map(|i| served(&format!("d{i}.example"), "x", 100))
        .collect();
    writer.record(&events);
    assert!(writer.flush(Duration::from_secs(60)).await);
    let loaded = store.load_history().await.unwrap();
    assert_eq!((loaded.history.len(), loaded.seq), (25_000, 25_000));
}

/// Events made as they are written (the start's) reach the store after those queued
/// before them, batch after batch, every one.
#[tokio::test]
async fn events_made_when_written_are_written_whole_in_order() {
    #[derive(Debug)]
    struct Domains(usize);
    impl super::Events for Domains {
        fn len(&self) -> usize {
            self.0
        }
        fn event(&self, i: usize) -> Event {
            served(&format!("d{i}.example"), "y", 200)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&target(dir.path())).await.unwrap();
    let writer = Writer::start(store.clone());
    writer.record(&[served("d7.example", "x", 100)]);
    writer.record_many(Box::new(Domains(25_000)));
    assert!(writer.pending() > 20_000);
    assert!(writer.flush(Duration::from_secs(60)).await);
    assert_eq!(writer.pending(), 0);
    let loaded = store.load_history().await.unwrap();
    assert_eq!((loaded.history.len(), loaded.seq), (25_000, 25_001));
    let d7: Vec<_> = loaded
        .history
        .domain("d7.example")
        .unwrap()
        .served()
        .iter()
        .map(|e| (e.id.to_string(), e.first, e.last))
        .collect();
    assert_eq!(d7, [("x".into(), 100, Some(200)), ("y".into(), 200, None)]);
}

/// A command on a machine where `serve` never ran creates nothing.
#[tokio::test]
async fn reading_creates_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let h = read_history(&target(dir.path())).await.unwrap();
    assert!(h.is_empty());
    assert!(!dir.path().join(SQLITE_FILE).exists());
}

/// The store's clock is the database's: on SQLite, this machine's.
#[tokio::test]
async fn the_clock_is_the_databases() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&target(dir.path())).await.unwrap();
    let t = store.now().await.unwrap();
    assert!(t.abs_diff(crate::clock::unix_now()) <= 2, "{t}");
}

/// A lease is one holder's until released or expired; each new holder gets a larger token,
/// and a write under a lost lease is refused.
#[tokio::test]
async fn a_lease_fences_the_holder_that_lost_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(&target(dir.path())).await.unwrap();
    let mut other = target(dir.path());
    other.replica = "other".into();
    let b = Store::open(&other).await.unwrap();
    let ttl = Duration::from_secs(30);
    let la = a.acquire("drift", ttl).await.unwrap().expect("free");
    assert!(
        b.acquire("drift", ttl).await.unwrap().is_none(),
        "held by a"
    );
    assert!(a.save_drift(&la, "{}", 1).await.unwrap());
    // Expired (as by a stalled holder), then taken by b.
    raw(dir.path(), "UPDATE store_leases SET expires_at = 0").await;
    let lb = b.acquire("drift", ttl).await.unwrap().expect("expired");
    assert!(lb.token > la.token);
    assert!(!a.renew(&la).await.unwrap());
    assert!(!a.save_drift(&la, "{\"late\":1}", 2).await.unwrap());
    assert_eq!(
        a.drift_findings().await.unwrap(),
        Some(("{}".to_owned(), 1))
    );
    b.release(&lb).await.unwrap();
    assert!(a.acquire("drift", ttl).await.unwrap().is_some());
}

/// The follow leaves this process's own rows out: a removal it wrote, followed by a re-add
/// still waiting in its queue, is not undone when the follow reads the removal back. A row
/// of another process (even with the same `replica` name) is applied.
#[tokio::test]
async fn the_follow_never_applies_this_process_own_rows_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&target(dir.path())).await.unwrap();
    let writer = Writer::start(store.clone());
    let missing = Event::Missing {
        domain: "b.example".into(),
        at: 100,
        dns: Box::default(),
    };
    writer.record(std::slice::from_ref(&missing));
    assert!(writer.flush(Duration::from_secs(10)).await);
    // In memory: the removal, then the re-add, not yet written.
    let history = Arc::new(Mutex::new(History::in_memory()));
    {
        let mut h = history.lock().unwrap();
        h.apply(&missing);
        h.apply(&Event::Present {
            domain: "b.example".into(),
            at: 150,
        });
        assert!(h.domain("b.example").unwrap().missing().is_none());
    }
    // Another process under the same name removes c.example.
    raw(
        dir.path(),
        "INSERT INTO store_history (seq, replica, recorded_at, event) VALUES (2, 'test', 0, '{\"missing\":{\"domain\":\"c.example\",\"at\":120,\"dns\":{\"provider\":null,\"zone\":null,\"target\":null,\"ttl\":0,\"tlsrpt\":[]}}}')",
    )
    .await;
    let follow = tokio::spawn(store.clone().follow(
        history.clone(),
        0,
        Duration::from_millis(10),
        || {},
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.followed.load(std::sync::atomic::Ordering::Acquire) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follow read nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    follow.abort();
    let h = history.lock().unwrap();
    assert!(
        h.domain("b.example").unwrap().missing().is_none(),
        "our own older row undid the re-add"
    );
    assert!(h.domain("c.example").unwrap().missing().is_some());
}

/// `history DOMAIN` reads one domain's rows by the index on `subject`: the same history of
/// that domain as the whole read gives (its policies' bodies too), with rows an older
/// version wrote without a subject filled in (by `serve`, in the background) — and still
/// sorted out while they are not.
#[tokio::test]
async fn one_domains_history_is_an_indexed_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&target(dir.path())).await.unwrap();
    let policy = |id: &str| Event::Policy {
        id: id.into(),
        body: format!("version: STSv1\r\nmode: {id}\r\n"),
    };
    let events = vec![
        policy("p1"),
        served("a.example", "p1", 100),
        served("b.example", "p1", 100),
        policy("p2"),
        served("a.example", "p2", 200),
        Event::Present {
            domain: "b.example".into(),
            at: 300,
        },
    ];
    store.append(&events).await.unwrap();
    let whole = store.load_history().await.unwrap().history;
    let one = store.domain_history("a.example").await.unwrap();
    assert_eq!(one.domain("a.example"), whole.domain("a.example"));
    assert!(
        one.domain("b.example").is_none(),
        "another domain's rows read"
    );
    assert_eq!(one.body("p1"), whole.body("p1"));
    assert_eq!(one.body("p2"), whole.body("p2"));

    // Rows as an older version wrote them: no subject, found all the same, then filled in.
    raw(dir.path(), "UPDATE store_history SET subject = NULL").await;
    assert_eq!(
        store
            .domain_history("a.example")
            .await
            .unwrap()
            .domain("a.example"),
        whole.domain("a.example")
    );
    let reopened = Store::open(&target(dir.path())).await.unwrap();
    assert_eq!(reopened.fill_subjects().await.unwrap(), 6);
    let unfilled: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM store_history WHERE subject IS NULL")
            .fetch_one(reopened.pool())
            .await
            .unwrap();
    assert_eq!(unfilled, 0);
    let subjects: Vec<String> =
        sqlx::query_scalar("SELECT subject FROM store_history ORDER BY seq")
            .fetch_all(reopened.pool())
            .await
            .unwrap();
    assert_eq!(
        subjects,
        [
            "policy:p1",
            "a.example",
            "b.example",
            "policy:p2",
            "a.example",
            "b.example"
        ]
    );
    let one = reopened.domain_history("a.example").await.unwrap();
    assert_eq!(one.domain("a.example"), whole.domain("a.example"));
    assert_eq!(one.body("p2"), whole.body("p2"));
}
