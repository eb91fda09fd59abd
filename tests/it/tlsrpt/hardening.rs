//! Issue 23, what a hostile sender broke in the report path: each attack on loopback, bounded,
//! against the real daemon or the real store (SQLite and PostgreSQL).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use mta_stsd::tlsrpt::store::{Backend, Source, Store, StoreError, Stored, MAX_COUNT};
use mta_stsd::tlsrpt::Report;
use mta_stsd_providers::Secret;
use reqwest::StatusCode;

use crate::harness::daemon::TestCa;
use crate::harness::postgres::Postgres;
use crate::tlsrpt::receiver::{setup, start, Poster, JSON};

const GZIP: &str = "application/tlsrpt+gzip";

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A report on example.org: `policies` is the inside of its "policies" array.
fn report(id: &str, org: &str, day: &str, policies: &str) -> String {
    format!(
        r#"{{"organization-name":"{org}","date-range":{{"start-datetime":"{day}T00:00:00Z","end-datetime":"{day}T23:59:59Z"}},"report-id":"{id}","policies":[{policies}]}}"#
    )
}

fn policy(domain: &str, ok: u64, failed: u64) -> String {
    format!(
        r#"{{"policy":{{"policy-type":"sts","policy-domain":"{domain}"}},"summary":{{"total-successful-session-count":{ok},"total-failure-session-count":{failed}}},"failure-details":[{{"result-type":"sts-webpki-invalid","receiving-mx-hostname":"mx.{domain}","failed-session-count":{failed}}}]}}"#
    )
}

fn vm_kib(pid: i32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Item 2: one policy, then 1.39M `{}` (about 4 KB gzipped, just under max_report_bytes
/// inflated) cost 530 MB and seconds of the runtime's workers on main. Refused at once now,
/// the daemon's peak memory barely moving; dated in 2099 or with a 257-byte id: 400 too.
/// Item 7: a report-id with a newline and ANSI escapes stays on its log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_amplification_future_dates_and_log_injection() {
    let ca = TestCa::new();
    let dir = setup(&ca, "");
    let d = start(&dir, &[]);
    let p = Poster::new(&ca, &d, false);

    let bomb = report(
        "bomb",
        "Bomb",
        "2024-10-01",
        &format!("{}{}", policy("example.org", 1, 0), ",{}".repeat(1_390_000)),
    );
    assert!(
        bomb.len() < 4 << 20,
        "{} bytes: under max_report_bytes",
        bomb.len()
    );
    let bomb = gz(bomb.as_bytes());
    assert!(bomb.len() < 8_000, "{} bytes gzipped", bomb.len());
    std::fs::write(format!("/proc/{}/clear_refs", d.pid()), "5").unwrap();
    let before = vm_kib(d.pid(), "VmRSS:");
    let t = Instant::now();
    for _ in 0..4 {
        let (s, text) = p.post(GZIP, bomb.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("policies: more than 100"), "{text}");
    }
    let (took, peak) = (t.elapsed(), vm_kib(d.pid(), "VmHWM:"));
    // Each inflates to 4 MB (the body limit); on main each also built a 500 MB tree.
    assert!(
        peak < before + 64 * 1024,
        "peak RSS {peak} KiB vs {before} KiB before four bombs"
    );
    assert!(took < Duration::from_secs(10), "four bombs took {took:?}");

    let ok = policy("example.org", 5, 0);
    let future = report("future", "Google Inc.", "2099-01-01", &ok);
    let (s, text) = p.post(JSON, future.into_bytes()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("in the future"), "{text}");
    let long_id = report(&"x".repeat(257), "Long", "2024-10-01", &ok);
    let (s, text) = p.post(JSON, long_id.into_bytes()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("report-id is longer than 256 bytes"),
        "{text}"
    );

    let forged = report(
        r"evil\n2026-12-07T00:00:00.000000Z  INFO FORGED: a line of our own\u001b[2K",
        "Evil\\r",
        "2024-10-02",
        &ok,
    );
    assert_eq!(
        p.post(JSON, forged.into_bytes()).await.0,
        StatusCode::CREATED
    );
    let line = d.wait_log("TLS report stored");
    assert!(line.contains(r"evil\n2026-12-07"), "{line}");
    for l in d.lines() {
        assert!(!l.contains('\x1b'), "an escape reached the log: {l:?}");
        assert!(
            !l.contains("FORGED") || l.contains("TLS report stored"),
            "a forged line: {l:?}"
        );
    }
}

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

/// Item 8: a report PostgreSQL can never index (a 16 KB random policy-domain beside one of
/// ours: "index row size exceeds btree maximum") was answered 503 at every resend. Now 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_unstorable_report_is_final() {
    let pg = Postgres::start();
    let ca = TestCa::new();
    let dir = setup(&ca, "store = \"postgres\"\nurl_env = \"TEST_REPORTS_URL\"");
    let d = start(&dir, &[("TEST_REPORTS_URL", pg.url().as_str())]);
    let p = Poster::new(&ca, &d, false);
    let junk: String = (0..1024)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect();
    let json = report(
        "huge-domain",
        "X",
        "2024-10-01",
        &format!("{},{}", policy("example.org", 1, 0), policy(&junk, 1, 0)),
    );
    for _ in 0..2 {
        let (s, text) = p.post(JSON, json.clone().into_bytes()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
        assert!(text.contains("cannot hold this report"), "{text}");
    }
    // The store still takes other reports.
    let fine = report("fine", "X", "2024-10-01", &policy("example.org", 1, 0));
    assert_eq!(p.post(JSON, fine.into_bytes()).await.0, StatusCode::CREATED);
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

/// Item 8 by mail: the same unstorable report, DKIM-signed, was deferred (75) for the five
/// days Postfix retries, holding up the message. Now dropped and logged (0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_unstorable_report_by_mail_is_dropped() {
    use crate::harness::dns::{DnsServer, Kind, TsigKey};
    use crate::tlsrpt::ingest::{ingest, message, setup as ingest_setup, Signer, REPORTER};
    let pg = Postgres::start();
    let signer = Signer::new();
    let bind = DnsServer::start(
        Kind::Bind,
        REPORTER,
        &TsigKey::generate("k", "hmac-sha256"),
        &[&signer.record()],
    );
    let dir = ingest_setup(
        bind.addr,
        "store = \"postgres\"\nurl_env = \"TEST_REPORTS_URL\"",
    );
    let junk: String = (0..1024)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect();
    let json = report(
        "huge-domain",
        "X",
        "2024-10-01",
        &format!("{},{}", policy("example.org", 1, 0), policy(&junk, 1, 0)),
    );
    let from = format!("tlsrpt@{REPORTER}");
    let msg = signer.sign(&message(&from, "huge-domain", json.as_bytes()), false);
    let out = ingest(&dir, msg.as_bytes(), &[("TEST_REPORTS_URL", &pg.url())]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("report dropped") && out.stderr.contains("refuses this report"),
        "{}",
        out.stderr
    );
}

/// Item 5, per-sender rate limits: one loopback address past `rate_burst` gets 429 with
/// `Retry-After` before its body is read, counted and logged once; a second address
/// (127.0.0.2) is still answered, and policy fetches from the limited address too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_report_posts_are_rate_limited_per_address() {
    let ca = TestCa::new();
    let dir = setup(&ca, "rate_burst = 3\nrate_refill = \"1h\"");
    let d = start(&dir, &[]);
    let first = Poster::from(&ca, &d, false, Some("127.0.0.1".parse().unwrap()));
    let second = Poster::from(&ca, &d, true, Some("127.0.0.2".parse().unwrap()));
    let ok = policy("example.org", 5, 0);
    let day = |i: u32| format!("2024-10-{:02}", i + 1);

    for i in 0..3 {
        let r = report(&format!("first-{i}"), "First", &day(i), &ok);
        let (s, text) = first.post(JSON, r.into_bytes()).await;
        assert_eq!(s, StatusCode::CREATED, "{text}");
    }
    for i in 3..6 {
        let r = report(&format!("first-{i}"), "First", &day(i), &ok);
        let resp = first
            .client
            .post(&first.url)
            .header("content-type", JSON)
            .body(r)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        // One token an hour: the wait is most of it.
        let retry: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((3000..=3600).contains(&retry), "Retry-After: {retry}");
    }

    // Another address has a bucket of its own: stored, then a duplicate.
    let r = report("second-0", "Second", &day(0), &ok);
    let (s, text) = second.post(JSON, r.clone().into_bytes()).await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    let (s, text) = second.post(JSON, r.into_bytes()).await;
    assert_eq!(s, StatusCode::OK, "{text}");

    // Policy fetches from the limited address are not reports: served.
    let port = d.https.unwrap().port();
    let policy = first
        .client
        .get(format!(
            "https://mta-sts.example.org:{port}/.well-known/mta-sts.txt"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(policy.status(), StatusCode::OK);

    let m = d.metrics().await;
    assert!(
        m.contains("mta_stsd_tlsrpt_reports_total{result=\"rate_limited\"} 3\n")
            && m.contains("mta_stsd_tlsrpt_reports_total{result=\"stored\"} 4\n"),
        "{m}"
    );
    // Logged once for three refusals, naming the address.
    d.wait_log("over the rate limit");
    let logged: Vec<String> = d
        .lines()
        .into_iter()
        .filter(|l| l.contains("over the rate limit"))
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains("127.0.0.1"), "{logged:?}");
}

/// Issue 23 item 5, per sender: a sender (here by HTTPS, its organization) may have
/// `max_reports_per_sender_day` reports stored per policy domain and UTC day of receipt; past
/// it 429 until the next UTC day, while its reports for another domain, another sender's
/// for the same domain, and a resend of a stored report are answered as before.
#[tokio::test]
async fn issue23_a_sender_past_its_daily_reports_for_a_domain_gets_429() {
    let ca = TestCa::new();
    let dir = setup(&ca, "max_reports_per_sender_day = 2");
    let d = start(&dir, &[]);
    let poster = Poster::new(&ca, &d, false);
    let org = policy("example.org", 5, 0);
    let com = policy("example.com", 5, 0);
    let day = |i: u32| format!("2024-10-{:02}", i + 1);

    for i in 0..2 {
        let r = report(&format!("a-{i}"), "Alpha", &day(i), &org);
        let (s, text) = poster.post(JSON, r.into_bytes()).await;
        assert_eq!(s, StatusCode::CREATED, "{text}");
    }
    let third = report("a-2", "Alpha", &day(2), &org);
    let resp = poster
        .client
        .post(&poster.url)
        .header("content-type", JSON)
        .body(third)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "Retry-After: {retry}");

    // The same sender for another domain, another sender for this one: stored.
    let r = report("a-3", "Alpha", &day(3), &com);
    let (s, text) = poster.post(JSON, r.into_bytes()).await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    let r = report("b-0", "Beta", &day(0), &org);
    let (s, text) = poster.post(JSON, r.into_bytes()).await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    // A resend of a stored report is still a duplicate, not refused.
    let r = report("a-0", "Alpha", &day(0), &org);
    let (s, text) = poster.post(JSON, r.into_bytes()).await;
    assert_eq!(s, StatusCode::OK, "{text}");

    let m = d.metrics().await;
    assert!(
        m.contains("mta_stsd_tlsrpt_reports_total{result=\"rate_limited\"} 1\n")
            && m.contains("mta_stsd_tlsrpt_reports_total{result=\"stored\"} 4\n"),
        "{m}"
    );
    d.wait_log("sender over its daily limit");
}
