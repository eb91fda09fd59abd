//! The report store against real databases: the same battery on SQLite (a file in a temp
//! directory) and on a PostgreSQL server started for the test.

use mta_stsd::tlsrpt::store::{Backend, Source, Store, StoreError, Stored};
use mta_stsd::tlsrpt::Report;
use mta_stsd_providers::Secret;

use crate::harness::postgres::Postgres;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/tlsrpt/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

async fn put(store: &Store, json: &str) -> Stored {
    let r = Report::parse(json.as_bytes()).unwrap();
    let ids = vec![Some("id1".to_owned()); r.policies.len()];
    store
        .insert(
            r.into(),
            json.to_owned(),
            &Source::Https,
            1_735_689_600,
            ids,
        )
        .await
        .unwrap()
}

async fn battery(a: Store, b: Store) {
    // Every real report is stored once; the second time it is a duplicate.
    for f in [
        "rfc8460.json",
        "google.json",
        "microsoft.json",
        "mailru.json",
        "zoneless.json",
    ] {
        let json = fixture(f);
        assert_eq!(put(&a, &json).await, Stored::New, "{f}");
        assert_eq!(
            put(&b, &json).await,
            Stored::Duplicate,
            "{f} again, other connection"
        );
    }
    // Kept verbatim, whitespace and all.
    let raw = fixture("rfc8460.json");
    assert_eq!(
        b.json("5065427c-23d3-47ca-b6e0-946ea0e8c4be")
            .await
            .unwrap(),
        Some(raw)
    );

    let days = a.days(&["example.org".into()], "2000-01-01").await.unwrap();
    let got: Vec<_> = days
        .iter()
        .map(|d| {
            (
                d.day.as_str(),
                d.organization.as_str(),
                d.successful,
                d.failed,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("2016-04-01", "Company-X", 5326, 303),
            ("2024-09-03", "Microsoft Corporation", 118, 0)
        ]
    );
    assert!(days.iter().all(|d| d.policy_id.as_deref() == Some("id1")));
    let fails = a
        .failures(&["example.org".into()], "2000-01-01")
        .await
        .unwrap();
    let got: Vec<_> = fails
        .iter()
        .map(|f| (f.result_type.as_str(), f.receiving_mx.as_deref(), f.count))
        .collect();
    assert_eq!(
        got,
        [
            ("certificate-expired", Some("mx1.mail.example.org"), 100),
            ("starttls-not-supported", Some("mx2.mail.example.org"), 200),
            ("validation-failure", Some("mx-backup.mail.example.org"), 3),
        ]
    );
    // Mail.ru's details add up to 2 while its summary says 1: both kept as sent.
    let com = a.days(&["example.com".into()], "2024-02-01").await.unwrap();
    assert_eq!(
        (com[0].organization.as_str(), com[0].failed),
        ("Mail.ru", 1)
    );
    let com_fail = a
        .failures(&["example.com".into()], "2024-02-22")
        .await
        .unwrap();
    assert_eq!(com_fail[0].count, 2);
    // --since cuts by day; all domains when none is named.
    let since: Vec<_> = a.days(&[], "2024-06-01").await.unwrap();
    assert!(
        since.iter().all(|d| d.day.as_str() >= "2024-06-01"),
        "{since:?}"
    );
    assert!(since.iter().any(|d| d.domain == "lists.example.org"));

    // The same new report from both connections at once: stored exactly once.
    let one = fixture("google.json").replace("2024-09-03T00:00:00Z_example.net", "race");
    let (x, y) = tokio::join!(put(&a, &one), put(&b, &one));
    let mut outcomes = [x, y];
    outcomes.sort_by_key(|s| *s == Stored::New);
    assert_eq!(outcomes, [Stored::Duplicate, Stored::New]);

    // Many at once, as just after midnight UTC: committed together, each its own outcome (the
    // duplicate among them included).
    let burst: Vec<String> = (0..300)
        .map(|i| {
            fixture("google.json")
                .replace("2024-09-03T00:00:00Z_example.net", &format!("burst-{i}"))
        })
        .chain([one.clone()])
        .collect();
    let outcomes = futures_util::future::join_all(burst.iter().map(|j| put(&a, j))).await;
    assert_eq!(
        outcomes.iter().filter(|o| **o == Stored::New).count(),
        300,
        "{outcomes:?}"
    );
    assert_eq!(outcomes[300], Stored::Duplicate);
    let net = b.days(&["example.net".into()], "2024-09-03").await.unwrap();
    assert_eq!(
        net.iter().map(|d| d.successful).sum::<i64>(),
        41 * 302,
        "{net:?}"
    );

    // The most a report may carry: 100 policies of 1,000 failure-details (100,000 rows).
    let f = r#"{"result-type":"validation-failure","failed-session-count":1}"#;
    let p = format!(
        r#"{{"policy":{{"policy-type":"sts","policy-domain":"big.example"}},"summary":{{"total-successful-session-count":1,"total-failure-session-count":1000}},"failure-details":[{}]}}"#,
        vec![f; 1_000].join(",")
    );
    let big = format!(
        r#"{{"report-id":"big","organization-name":"Big","date-range":{{"start-datetime":"2024-10-01T00:00:00Z","end-datetime":"2024-10-01T23:59:59Z"}},"policies":[{}]}}"#,
        vec![p; 100].join(",")
    );
    assert_eq!(put(&a, &big).await, Stored::New);
    let d = b.days(&["big.example".into()], "2024-10-01").await.unwrap();
    assert_eq!((d[0].successful, d[0].failed), (100, 100_000));
    let fails = b
        .failures(&["big.example".into()], "2024-10-01")
        .await
        .unwrap();
    assert_eq!(fails[0].count, 100_000);

    // Retention: reports that ended before the cut go, with their rows; later ones stay.
    let cut = time::macros::datetime!(2024-01-01 0:00 UTC).unix_timestamp();
    assert_eq!(
        a.prune(cut).await.unwrap(),
        1,
        "only the 2016 report is older"
    );
    assert_eq!(
        b.json("5065427c-23d3-47ca-b6e0-946ea0e8c4be")
            .await
            .unwrap(),
        None
    );
    assert!(a
        .failures(&["example.org".into()], "2000-01-01")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        a.days(&["example.org".into()], "2000-01-01")
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(a.prune(cut).await.unwrap(), 0, "idle prune removes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::Sqlite(dir.path().to_owned());
    let a = Store::open(&backend).await.unwrap();
    let b = Store::open(&backend).await.unwrap();
    battery(a, b).await;
    // WAL, so readers and writers in other processes do not block each other.
    let mode = std::process::Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(dir.path().join("tlsrpt.sqlite"))
        .arg("PRAGMA journal_mode;")
        .output()
        .expect("sqlite3 (Debian package sqlite3)");
    assert_eq!(
        String::from_utf8_lossy(&mode.stdout).trim(),
        "wal",
        "{}",
        String::from_utf8_lossy(&mode.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_postgres() {
    let pg = Postgres::start();
    let backend = Backend::Postgres(Secret::new(pg.url()));
    let (a, b) = tokio::join!(Store::open(&backend), Store::open(&backend));
    battery(a.unwrap(), b.unwrap()).await;
}

/// A report PostgreSQL refuses (a NUL in a text field) among others written at the same time:
/// it fails alone, the others are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_report_does_not_fail_those_committed_with_it() {
    let pg = Postgres::start();
    let store = Store::open(&Backend::Postgres(Secret::new(pg.url())))
        .await
        .unwrap();
    let json = |i: usize| {
        fixture("google.json").replace("2024-09-03T00:00:00Z_example.net", &format!("n-{i}"))
    };
    // The parser keeps NUL out of what is stored: put it back by hand.
    let bad = json(999);
    let mut bad_report = Report::parse(bad.as_bytes()).unwrap();
    bad_report.organization = "Google\0Inc.".into();
    let ids = vec![None; 1];
    let good: Vec<String> = (0..40).map(json).collect();
    let (bad_outcome, outcomes) = tokio::join!(
        store.insert(bad_report.into(), bad, &Source::Https, 1_735_689_600, ids),
        futures_util::future::join_all(good.iter().map(|j| put(&store, j)))
    );
    // Issue 23 item 8: a refusal the database will repeat is permanent, not "unavailable".
    assert!(
        matches!(bad_outcome, Err(StoreError::Refused(_))),
        "{bad_outcome:?}"
    );
    assert!(outcomes.iter().all(|o| *o == Stored::New), "{outcomes:?}");
    let days = store
        .days(&["example.net".into()], "2024-09-03")
        .await
        .unwrap();
    assert_eq!(days.iter().map(|d| d.successful).sum::<i64>(), 41 * 40);
}

/// JSON may carry NUL (`\u0000`), PostgreSQL text may not: such a report is stored, its text
/// with U+FFFD instead, its JSON exactly as received; not refused at every resend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_with_nul_in_its_text_is_stored_on_postgres() {
    let pg = Postgres::start();
    let store = Store::open(&Backend::Postgres(Secret::new(pg.url())))
        .await
        .unwrap();
    let json = fixture("google.json").replace("Google Inc.", "Google\\u0000Inc.");
    assert!(json.contains("\\u0000"), "the fixture changed");
    let report = Report::parse(json.as_bytes()).unwrap();
    assert_eq!(report.organization, "Google\u{FFFD}Inc.");
    assert_eq!(put(&store, &json).await, Stored::New);
    assert_eq!(put(&store, &json).await, Stored::Duplicate);
    assert_eq!(
        store.json(&report.report_id).await.unwrap().as_deref(),
        Some(json.as_str())
    );
}

#[tokio::test]
async fn store_unreachable_is_unavailable() {
    let port = crate::harness::dns::free_port();
    let backend = Backend::Postgres(Secret::new(format!("postgres://mta@127.0.0.1:{port}/x")));
    let e = Store::open(&backend).await.unwrap_err();
    assert!(
        matches!(e, mta_stsd::tlsrpt::store::StoreError::Unavailable(_)),
        "{e}"
    );
}
