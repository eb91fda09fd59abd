//! `/status` per domain: the last TLS report received and the sessions of the last 7 days,
//! read from the store, so reports stored by HTTPS and by `tlsrpt ingest` both show.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::daemon::{plain_client, Daemon, TestCa};
use crate::harness::epoch;
use crate::tlsrpt::receiver::{fixture, setup, start, Poster, JSON};

/// A report for example.org starting `days_ago` days before today (UTC).
fn dated(id: &str, days_ago: i64, ok: u64, failed: u64) -> Vec<u8> {
    let day = (time::OffsetDateTime::now_utc() - time::Duration::days(days_ago)).date();
    format!(
        r#"{{"organization-name":"Google Inc.","date-range":{{"start-datetime":"{day}T00:00:00Z","end-datetime":"{day}T23:59:59Z"}},"report-id":"{id}","policies":[{{"policy":{{"policy-type":"sts","policy-domain":"example.org"}},"summary":{{"total-successful-session-count":{ok},"total-failure-session-count":{failed}}}}}]}}"#
    )
    .into_bytes()
}

async fn entry(d: &Daemon, domain: &str) -> Value {
    let r = plain_client()
        .get(d.admin_url(&format!("/status?domain={domain}")))
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["tlsrpt"]["store"], "open", "{v}");
    v["domains"][0]["tlsrpt"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_sums_reports_per_domain() {
    let ca = TestCa::new();
    let dir = setup(&ca, "");
    let d = start(&dir, &[]);
    let p = Poster::new(&ca, &d, false);

    // Nothing received: zero sums, no last report.
    let t = entry(&d, "example.org").await;
    assert_eq!(
        (
            t["last_report"].clone(),
            t["successful"].as_i64(),
            t["days"].as_i64()
        ),
        (Value::Null, Some(0), Some(7)),
        "{t}"
    );

    // An old report (2016) is the last one received but outside the 7 days; today's and
    // six days ago count, eight days ago does not.
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(
        p.post(JSON, fixture("rfc8460.json")).await.0,
        StatusCode::CREATED
    );
    let t = entry(&d, "example.org").await;
    assert_eq!(
        (t["successful"].as_i64(), t["failed"].as_i64()),
        (Some(0), Some(0)),
        "{t}"
    );
    let last = epoch(&t["last_report"]).expect("a last report time");
    assert!(last >= before - 1, "{t}");
    for (id, ago, ok, failed) in [
        ("today", 0, 10, 2),
        ("six", 6, 5, 1),
        ("eight", 8, 1000, 1000),
    ] {
        assert_eq!(
            p.post(JSON, dated(id, ago, ok, failed)).await.0,
            StatusCode::CREATED,
            "{id}"
        );
    }
    let t = entry(&d, "example.org").await;
    assert_eq!(
        (t["successful"].as_i64(), t["failed"].as_i64()),
        (Some(15), Some(3)),
        "{t}"
    );

    // The full listing carries the same sums; a domain without reports has zeros.
    let all = d.status().await;
    let by = |name: &str| {
        all["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["domain"] == name)
            .unwrap()["tlsrpt"]
            .clone()
    };
    assert_eq!(by("example.org")["successful"], 15);
    assert_eq!(
        (
            by("example.com")["successful"].as_i64(),
            by("example.com")["last_report"].clone()
        ),
        (Some(0), Value::Null)
    );
}

/// The store down: `/status` still answers, says so, and shows no sums rather than zeros.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_without_the_store_says_unavailable() {
    let ca = TestCa::new();
    let dir = setup(&ca, "store = \"postgres\"\nurl_env = \"TEST_REPORTS_URL\"");
    let url = format!(
        "postgres://mta@127.0.0.1:{}/mtasts",
        crate::harness::dns::free_port()
    );
    let state = dir.path().join("state");
    let d = Daemon::start_with(
        &dir.config_path(),
        &[
            ("TEST_REPORTS_URL", url.as_str()),
            ("STATE_DIRECTORY", state.to_str().unwrap()),
        ],
    );
    d.wait_log("TLS-RPT store not open");
    let v = d.status().await;
    assert_eq!(v["tlsrpt"]["store"], "unavailable", "{v}");
    let org = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["domain"] == "example.org")
        .unwrap();
    assert!(org["tlsrpt"].is_null(), "{org}");
}
