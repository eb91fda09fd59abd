//! Issue 23, what a hostile sender broke in the report path: each attack on loopback, bounded,
//! against the real daemon (what it did to the store itself is in `store_hardening`).

use std::io::Write;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
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
pub(crate) fn report(id: &str, org: &str, day: &str, policies: &str) -> String {
    format!(
        r#"{{"organization-name":"{org}","date-range":{{"start-datetime":"{day}T00:00:00Z","end-datetime":"{day}T23:59:59Z"}},"report-id":"{id}","policies":[{policies}]}}"#
    )
}

pub(crate) fn policy(domain: &str, ok: u64, failed: u64) -> String {
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
