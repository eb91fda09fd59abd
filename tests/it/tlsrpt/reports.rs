//! `mta-stsd reports`: the stored reports per domain and day, the id in force, and the
//! `enforce` verdict for a domain in `testing`, as text and JSON.

use mta_stsd::tlsrpt::store::{Backend, Source, Store};
use mta_stsd::tlsrpt::Report;
use serde_json::Value;

use crate::harness::{state_dir_for, ConfigDir};

const CONFIG: &str = r#"[tls]
self_signed = true

[policy]
mx = ["mail.example.org"]
max_age = 86400

[domains."example.org"]
mode = "testing"

[domains."example.com"]
mode = "enforce"
mx = ["mail.example.com"]

[tlsrpt]
retention = "100000d"
"#;

/// A one-policy report for `domain` on `day` (YYYY-MM-DD) from `org`; `failures` are
/// `(result type, count)`.
fn report(
    id: &str,
    org: &str,
    domain: &str,
    day: &str,
    ok: u64,
    failures: &[(&str, u64)],
) -> String {
    let details: Vec<String> = failures
        .iter()
        .map(|(t, n)| {
            format!(r#"{{"result-type":"{t}","receiving-mx-hostname":"mail.{domain}","failed-session-count":{n}}}"#)
        })
        .collect();
    let failed: u64 = failures.iter().map(|(_, n)| n).sum();
    format!(
        r#"{{"organization-name":"{org}","date-range":{{"start-datetime":"{day}T00:00:00Z","end-datetime":"{day}T23:59:59Z"}},"report-id":"{id}","policies":[{{"policy":{{"policy-type":"sts","policy-domain":"{domain}"}},"summary":{{"total-successful-session-count":{ok},"total-failure-session-count":{failed}}},"failure-details":[{}]}}]}}"#,
        details.join(",")
    )
}

/// As a DKIM-signed mail report: only those count as evidence for `enforce`.
async fn put(store: &Store, json: &str, policy_id: Option<&str>) {
    let r = Report::parse(json.as_bytes()).unwrap();
    let signer = r.organization.to_ascii_lowercase().replace(' ', "-") + ".example";
    store
        .insert(
            r.into(),
            json.to_owned(),
            &Source::Mail { signer },
            0,
            vec![policy_id.map(Into::into)],
        )
        .await
        .unwrap();
}

fn policy_id(dir: &ConfigDir, domain: &str) -> String {
    let out = dir.run(&["policy", domain]);
    out.assert_status(0);
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_owned()
}

fn json(dir: &ConfigDir, args: &[&str]) -> Value {
    let mut all = vec!["reports", "--since", "2024-01-01", "--format", "json"];
    all.extend_from_slice(args);
    let out = dir.run(&all);
    out.assert_status(0);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_per_day_and_enforce_readiness() {
    let dir = ConfigDir::with_config(CONFIG);
    let state = state_dir_for(&dir.config_path());
    std::fs::create_dir(&state).unwrap();
    let org_id = policy_id(&dir, "example.org");
    let store = Store::open(&Backend::Sqlite(state)).await.unwrap();

    // Nothing stored yet: a named domain is listed without reports, and not ready.
    let v = json(&dir, &["example.org"]);
    let d = &v["domains"][0];
    assert_eq!(d["days"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(d["readiness"]["ready"], false);

    // Six clean days under the id in force, and one day whose reports quote an older policy
    // with an MTA-STS failure: not ready, six days covered.
    for i in 1..=6 {
        let day = format!("2024-01-0{i}");
        put(
            &store,
            &report(
                &format!("g{i}"),
                "Google Inc.",
                "example.org",
                &day,
                100,
                &[],
            ),
            Some(&org_id),
        )
        .await;
    }
    put(
        &store,
        &report(
            "old",
            "Microsoft Corporation",
            "example.org",
            "2024-01-06",
            5,
            &[("sts-webpki-invalid", 4)],
        ),
        Some("20230101T000000"),
    )
    .await;
    let v = json(&dir, &["example.org"]);
    let d = &v["domains"][0];
    assert_eq!(d["mode"], "testing");
    assert_eq!(d["policy_id"], org_id.as_str());
    let r = &d["readiness"];
    assert_eq!(
        (r["ready"].as_bool(), r["days_covered"].as_u64()),
        (Some(false), Some(6)),
        "{v}"
    );
    assert_eq!(r["sts_failures"], 0, "an old id's failures do not count");
    let jan6 = &d["days"][5];
    assert_eq!(
        (
            jan6["day"].as_str(),
            jan6["successful"].as_i64(),
            jan6["failed"].as_i64()
        ),
        (Some("2024-01-06"), Some(105), Some(4))
    );
    let in_force: Vec<bool> = jan6["reporters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["in_force"].as_bool().unwrap())
        .collect();
    assert_eq!(in_force, [true, false]);
    assert_eq!(jan6["failures"][0]["result_type"], "sts-webpki-invalid");
    assert_eq!(jan6["failures"][0]["receiving_mx"], "mail.example.org");
    assert_eq!(jan6["failures"][0]["sts"], true);

    // The seventh clean day: ready.
    put(
        &store,
        &report("g7", "Google Inc.", "example.org", "2024-01-07", 100, &[]),
        Some(&org_id),
    )
    .await;
    let r = &json(&dir, &["example.org"])["domains"][0]["readiness"];
    assert_eq!(
        (r["ready"].as_bool(), r["days_covered"].as_u64()),
        (Some(true), Some(7))
    );
    assert_eq!(r["reporters"], serde_json::json!(["Google Inc."]));

    // An MTA-STS failure under the id in force takes it back; a DANE one would not.
    put(
        &store,
        &report(
            "m8",
            "Mail.ru",
            "example.org",
            "2024-01-08",
            50,
            &[("starttls-not-supported", 3), ("dane-required", 9)],
        ),
        Some(&org_id),
    )
    .await;
    let r = &json(&dir, &["example.org"])["domains"][0]["readiness"];
    assert_eq!(
        (r["ready"].as_bool(), r["sts_failures"].as_i64()),
        (Some(false), Some(3))
    );

    // An enforce domain: days, no verdict; all domains when none is named; --since cuts.
    let com_id = policy_id(&dir, "example.com");
    put(
        &store,
        &report("c1", "Google Inc.", "example.com", "2024-01-02", 7, &[]),
        Some(&com_id),
    )
    .await;
    let v = json(&dir, &[]);
    let names: Vec<&str> = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["domain"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["example.com", "example.org"]);
    assert!(v["domains"][0]["readiness"].is_null());
    let out = dir.run(&["reports", "example.org", "--since", "2024-01-08"]);
    out.assert_status(0);
    assert!(
        out.stdout.starts_with(&format!(
            "example.org (testing, policy id {org_id})\n  2024-01-08  50 successful, 12 failed\n"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("    Mail.ru (DKIM-signed): 50 successful, 12 failed, id "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("      3 starttls-not-supported at mail.example.org\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "enforce: not ready: 1 of 7 days covered, 3 MTA-STS failures, reporters: Mail.ru"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("2024-01-07"), "{}", out.stdout);

    // A bad date is an error, not an empty answer.
    let out = dir.run(&["reports", "--since", "last week"]);
    out.assert_status(1);
    assert!(out.stderr.contains("YYYY-MM-DD"), "{}", out.stderr);
}
