//! What is particular to Cloudflare's API, against its fake: paging, rate limits, the order
//! of single-record calls, error codes quoted, the zone by the longest suffix.

use std::time::{Duration, Instant};

use mta_stsd_providers::cloudflare::Cloudflare;
use mta_stsd_providers::{Expect, Provider, ProviderError, Record, Secret};

use crate::harness::cloudflare::FakeCloudflare;
use crate::harness::{ConfigDir, MAIN};
use crate::providers::battery::{self, Backend};

use super::api::{sts_change, Cf, CF_TOKEN};

/// More records at a name than fit in a page: the client follows `result_info` to the last
/// page (where a stale STS record waits to be removed).
#[test]
fn cloudflare_pagination_is_followed() {
    let b = Cf::start();
    let name = "_mta-sts.a.example.org.";
    for i in 1..=4 {
        b.0.add(name, "TXT", &format!("note {i}"), 300);
    }
    b.0.add(name, "TXT", "v=STSv1; id=stale;", 300);
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, false);
    dir.run(&["apply"]).assert_status(0);
    let id = battery::policy_id(&dir, "a.example.org");
    let mut got = b.query(name, "TXT");
    got.sort();
    let mut want: Vec<String> = (1..=4).map(|i| format!("note {i}")).collect();
    want.push(format!("v=STSv1; id={id};"));
    want.sort();
    assert_eq!(got, want);
    let requests = b.0.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("name=_mta-sts.a.example.org") && r.contains("page=3 ")),
        "{requests:#?}"
    );
    dir.run(&["plan"]).assert_status(0);
}

/// 429 with `Retry-After`: waited out and retried; past the bound, a transient error quoting
/// Cloudflare's code.
#[test]
fn cloudflare_rate_limit_is_honoured() {
    let b = Cf::start();
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, false);
    b.0.throttle(2);
    let started = Instant::now();
    dir.run(&["apply"]).assert_status(0);
    let took = started.elapsed();
    let requests = b.0.requests();
    assert_eq!(
        requests.iter().filter(|r| r.ends_with("-> 429")).count(),
        2,
        "{requests:#?}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "two `Retry-After: 1` answers were waited out in {took:?}"
    );
    assert_eq!(b.query("_mta-sts.a.example.org.", "TXT").len(), 1);

    config_edit(&dir, "max_age = 86400", "max_age = 90000");
    b.0.throttle(1000);
    let started = Instant::now();
    let out = dir.run(&["apply"]);
    out.assert_status(1);
    assert!(
        out.stderr.contains("HTTP 429 Too Many Requests") && out.stderr.contains("971 Please wait"),
        "{}",
        out.dump()
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// An id change and a new CNAME target: each record is rewritten in place, so no moment shows
/// two `v=STSv1` records at a name, or none, or no CNAME.
#[test]
fn cloudflare_replacement_never_shows_two_or_zero() {
    let b = Cf::start();
    let dir = ConfigDir::new();
    battery::config(
        &b,
        &dir,
        r#"tlsrpt = ["mailto:a@example.org"]"#,
        86400,
        false,
    );
    dir.run(&["apply"]).assert_status(0);
    let ids = |b: &Cf| {
        let mut v: Vec<String> = ["_mta-sts.a.example.org.", "_mta-sts.b.example.org."]
            .iter()
            .flat_map(|n| b.0.records(n, "TXT"))
            .chain(b.0.records("mta-sts.a.example.org.", "CNAME"))
            .chain(b.0.records("_smtp._tls.a.example.org.", "TXT"))
            .map(|r| r.id)
            .collect();
        v.sort();
        v
    };
    let before = ids(&b);
    b.0.clear_history();
    config_edit(&dir, "max_age = 86400", "max_age = 90000");
    config_edit(
        &dir,
        "target = \"mail.example.org.\"",
        "target = \"mx.example.org.\"",
    );
    config_edit(&dir, "mailto:a@example.org", "mailto:b@example.org");
    dir.run(&["apply"]).assert_status(0);
    let history = b.0.history();
    // Per domain: the TXT, the CNAME and the TLSRPT record, each one call.
    assert_eq!(history.len(), 1 + 2 * 3, "{history:#?}");
    for (i, state) in history.iter().enumerate() {
        for d in ["a.example.org", "b.example.org"] {
            let at = |name: String, rtype: &str, prefix: &str| {
                state
                    .iter()
                    .filter(|r| r.name == name && r.rtype == rtype && r.content.starts_with(prefix))
                    .count()
            };
            assert_eq!(
                at(format!("_mta-sts.{d}"), "TXT", "v=STSv1"),
                1,
                "state {i}: {state:#?}"
            );
            assert_eq!(
                at(format!("mta-sts.{d}"), "CNAME", ""),
                1,
                "state {i}: {state:#?}"
            );
            assert_eq!(
                at(format!("_smtp._tls.{d}"), "TXT", "v=TLSRPTv1"),
                1,
                "state {i}"
            );
        }
    }
    assert_eq!(
        ids(&b),
        before,
        "records were replaced, not updated in place"
    );
    let id = battery::policy_id(&dir, "a.example.org");
    assert_eq!(
        b.query("_mta-sts.a.example.org.", "TXT"),
        vec![format!("v=STSv1; id={id};")]
    );
    assert_eq!(
        b.query("mta-sts.b.example.org.", "CNAME"),
        vec!["mx.example.org."]
    );
    // The new host is in place before the new id is: the `_mta-sts` TXT changes last.
    let first_txt = history
        .windows(2)
        .position(|w| sts_of(&w[0], "a.example.org") != sts_of(&w[1], "a.example.org"))
        .unwrap();
    let first_cname = history
        .windows(2)
        .position(|w| cname_of(&w[0], "a.example.org") != cname_of(&w[1], "a.example.org"))
        .unwrap();
    assert!(first_cname < first_txt, "{history:#?}");
}

fn sts_of(state: &[crate::harness::cloudflare::FakeRecord], d: &str) -> Vec<String> {
    let name = format!("_mta-sts.{d}");
    state
        .iter()
        .filter(|r| r.name == name)
        .map(|r| r.content.clone())
        .collect()
}

fn cname_of(state: &[crate::harness::cloudflare::FakeRecord], d: &str) -> Vec<String> {
    let name = format!("mta-sts.{d}");
    state
        .iter()
        .filter(|r| r.name == name)
        .map(|r| r.content.clone())
        .collect()
}

/// Cloudflare's `errors[].code` and `message` are in every error: a bad token (403, 9109), a
/// failing API (500), a refused record (400, 81053).
#[tokio::test]
async fn cloudflare_errors_quote_code_and_message() {
    let b = Cf::start();
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, true);
    let out = dir.run(&["apply"]);
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("HTTP 403 Forbidden: 9109 Invalid access token"),
        "{}",
        out.dump()
    );
    assert!(!out.stderr.contains(CF_TOKEN) && !out.stderr.contains("expired-token"));

    let p = b.provider();
    b.0.set_failing(true);
    let err = p.zone_of("a.example.org.").await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("HTTP 500 Internal Server Error: 10001"),
        "{err}"
    );
    b.0.set_failing(false);

    b.0.add("mta-sts.b.example.org.", "A", "192.0.2.1", 300);
    let zone = p.zone_of("b.example.org.").await.unwrap();
    let cname = sts_change(
        "b.example.org",
        vec![],
        vec![Record::cname(
            "mta-sts.b.example.org.",
            3600,
            "mail.example.org.",
        )],
    );
    let err = p.apply(&zone, &cname).await.unwrap_err();
    assert!(matches!(err, ProviderError::Refused { .. }), "{err:?}");
    assert_eq!(err.code(), "81053");
    assert!(
        err.to_string()
            .contains("HTTP 400 Bad Request: 81053 An A, AAAA, or CNAME record with that host already exists."),
        "{err}"
    );
}

/// No prerequisites at Cloudflare either: the fresh read before the first call catches a
/// change made since the plan's read.
#[tokio::test]
async fn cloudflare_concurrent_change_is_a_conflict() {
    let b = Cf::start();
    let p = b.provider();
    let name = "_mta-sts.a.example.org.";
    let zone = p.zone_of("a.example.org.").await.unwrap();
    assert!(p.records(&zone, &[name.into()]).await.unwrap().is_empty());
    let ours = sts_change(
        "a.example.org",
        vec![Expect::NoRRset {
            name: name.into(),
            rtype: "TXT",
        }],
        vec![Record::txt(name, 3600, "v=STSv1; id=ours;")],
    );
    b.0.add(name, "TXT", "v=STSv1; id=sneaky;", 300);
    let err = p.apply(&zone, &ours).await.unwrap_err();
    assert!(matches!(err, ProviderError::Conflict { .. }), "{err:?}");
    assert_eq!(b.query(name, "TXT"), vec!["v=STSv1; id=sneaky;"]);
}

/// A name's zone is its longest suffix the account holds, from one listing of the account's
/// zones (paged: the fake sends two a page), not a request per candidate suffix; zones are
/// remembered, and listed again only for a name none of them holds.
#[tokio::test]
async fn cloudflare_zone_found_by_longest_suffix_from_one_listing() {
    let fake = FakeCloudflare::start(CF_TOKEN, &["example.org", "b.example.org", "other.test"]);
    let p = Cloudflare::new("p", &fake.base_url(), Secret::new(CF_TOKEN.into())).unwrap();
    let names: Vec<String> = [
        "x.a.b.example.org.",
        "a.example.org.",
        "C.Example.org",
        "nope.test.",
    ]
    .map(String::from)
    .to_vec();
    let got = p.zones_of(&names).await;
    assert_eq!(got[0].as_deref(), Ok("b.example.org."));
    assert_eq!(got[1].as_deref(), Ok("example.org."));
    assert_eq!(got[2].as_deref(), Ok("example.org."));
    assert!(
        matches!(got[3], Err(ProviderError::Config { .. })),
        "{:?}",
        got[3]
    );
    let zone_requests = || -> Vec<String> {
        fake.requests()
            .iter()
            .filter(|r| r.starts_with("GET /client/v4/zones"))
            .map(|r| r.split(' ').nth(1).unwrap().to_owned())
            .collect()
    };
    let listing = [
        "/client/v4/zones?per_page=50&page=1",
        "/client/v4/zones?per_page=50&page=2",
    ];
    // nope.test is in no zone: listed once, not once per suffix.
    assert_eq!(zone_requests(), listing);
    // Known zones: no request at all.
    let again = p.zones_of(&names[..3]).await;
    assert!(again.iter().all(Result::is_ok), "{again:?}");
    assert_eq!(zone_requests(), listing);
    // A zone added to the account since: one listing more finds it.
    fake.add_zone("nope.test");
    let added = p.zone_of("nope.test.").await;
    assert_eq!(added.as_deref(), Ok("nope.test."));
    assert_eq!(zone_requests().len(), 4, "{:?}", zone_requests());
}

/// TXT content shown raw (the API's older behaviour) reads the same as quoted.
#[test]
fn cloudflare_raw_txt_content() {
    let b = Cf::start();
    b.0.set_quote_txt(false);
    let dir = ConfigDir::new();
    battery::config(
        &b,
        &dir,
        r#"tlsrpt = ["mailto:a@example.org"]"#,
        86400,
        false,
    );
    dir.run(&["apply"]).assert_status(0);
    let out = dir.run(&["plan"]);
    out.assert_status(0);
    b.0.set_quote_txt(true);
    dir.run(&["plan"]).assert_status(0);
}

fn config_edit(dir: &ConfigDir, from: &str, to: &str) {
    let text = std::fs::read_to_string(dir.config_path()).unwrap();
    assert!(text.contains(from), "`{from}` is not in the config");
    dir.write(MAIN, text.replace(from, to));
}
