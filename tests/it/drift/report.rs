//! The report itself: `--verbose` and named domains, and the JSON schema's validator.

use serde_json::Value;

use crate::harness::run_with_config;

use super::schema::*;
use super::world::*;

#[test]
fn verbose_lists_the_passed_checks_and_names_select_a_subset() {
    // a correct, with the MX a real Postfix; b with a stale id.
    let w = world().mx_tls().records(|ids| {
        replace(
            correct(ids),
            "_mta-sts.b ",
            &[sts("b", "v=STSv1; id=20240101000000Z;")],
        )
    });
    let _daemon = w.serve();
    let run = |args: &[&str]| run_with_config(&w.dir.config_path(), args);

    // Without --verbose only findings; b's stale id makes it critical.
    let all = run(&["drift", "--format", "text"]);
    all.assert_status(2);
    assert!(!all.stdout.contains("\nOK "), "{}", all.dump());

    // a alone: b's finding is neither printed nor counted, and every check a passed is listed
    // with what it looked at, in check order.
    let a = run(&["drift", "--verbose", "--format", "text", "a.example.org"]);
    a.assert_status(0);
    let lines: Vec<&str> = a.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "MTA-STS OK: 0 critical, 0 warning, 0 could not check, in 1 domains",
        "{}",
        a.dump()
    );
    assert!(!a.stdout.contains("b.example.org"), "{}", a.dump());
    let checks: Vec<&str> = lines[1..]
        .iter()
        .map(|l| {
            l.strip_prefix("OK a.example.org [")
                .and_then(|l| l.split_once("] "))
                .unwrap_or_else(|| panic!("not a passed check: {l:?}\n{}", a.dump()))
                .0
        })
        .collect();
    assert_eq!(
        checks,
        [
            "sts-txt",
            "ns-agreement",
            "policy-host",
            "tlsrpt",
            "policy-fetch",
            "certificate",
            "mx",
            "mx-tls",
            "dane"
        ],
        "{}",
        a.dump()
    );
    for want in [
        &format!(
            "[sts-txt] _mta-sts.a.example.org. TXT at ns1.example.org. (127.0.0.2), ns2.example.org. (127.0.0.3): id {}, the served policy's",
            w.id("a")
        ),
        "[ns-agreement] 2 nameserver(s) of example.org. agree on _mta-sts.a.example.org.",
        "[policy-host] mta-sts.a.example.org. (CNAME to mail.example.org.) resolves to 127.0.0.1",
        "[policy-fetch] GET https://mta-sts.a.example.org/.well-known/mta-sts.txt: 200 text/plain",
        "[mx] MX mx1.example.org covered by the policy's mx patterns (mx1.example.org)",
        "[mx-tls] MX mx1.example.org (127.0.0.1:",
        "[dane] no TLSA at _25._tcp.mx1.example.org: DANE not in use for MX mx1.example.org",
        "[tlsrpt] _smtp._tls.a.example.org. TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@example.org;\", as configured",
        "[certificate] the certificate of mta-sts.a.example.org is valid for it (TLS 1.3), ",
    ] {
        assert!(a.stdout.contains(want), "no {want:?}\n{}", a.dump());
    }

    // The same in JSON: `passed` beside the (empty) findings.
    let json = run(&["drift", "--verbose", "--format", "json", "a.example.org"]);
    json.assert_status(0);
    let r: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(r["counts"]["domains"], 1);
    let d = &r["domains"][0];
    assert_eq!(
        (&d["domain"], &d["findings"]),
        (&"a.example.org".into(), &serde_json::json!([]))
    );
    let passed = d["passed"].as_array().unwrap();
    assert_eq!(passed.len(), checks.len(), "{r:#}");
    assert_eq!(
        keys(&passed[0], "a passed check"),
        set(&["check", "looked_at"])
    );

    // b alone: its finding, and a's (kept from the run before) not in the output.
    let b = run(&["drift", "--format", "json", "b.example.org"]);
    b.assert_status(2);
    let r: Value = serde_json::from_str(&b.stdout).unwrap();
    validate_schema(&r);
    assert_eq!(r["counts"]["domains"], 1, "{r:#}");
    assert_eq!(r["domains"][0]["domain"], "b.example.org");
    assert_eq!(r["domains"][0]["findings"][0]["check"], "sts-txt");

    // A name that is not a domain of the config: could not check, nothing printed.
    let unknown = run(&["drift", "a.example.org", "nope.example.org"]);
    unknown.assert_status(3);
    assert_eq!(unknown.stdout, "");
    assert!(
        unknown
            .stderr
            .contains("nope.example.org is not a domain of the config"),
        "{}",
        unknown.dump()
    );
}

/// A change to a report that makes it break the schema.
type Mutation = fn(&mut Value);

#[test]
fn json_report_follows_the_documented_schema() {
    // Every severity at once: a stale id (critical), no TLSRPT record (warning), and ns2 down
    // (could not check) — critical outranks could-not-check.
    let mut w = world().records(|ids| {
        let r = replace(
            correct(ids),
            "_mta-sts.a ",
            &[sts("a", "v=STSv1; id=old1;")],
        );
        replace(r, "_smtp._tls.b ", &[])
    });
    let _daemon = w.serve();
    w.ns[1].stop();
    let r = w.drift();
    r.assert_exit(2)
        .assert_findings(
            "a.example.org",
            &[
                (
                    "critical",
                    "sts-txt",
                    "stale id at _mta-sts.a.example.org.: old1",
                ),
                (
                    "unknown",
                    "sts-txt",
                    "could not ask nameserver ns2.example.org.",
                ),
            ],
        )
        .assert_findings(
            "b.example.org",
            &[
                (
                    "unknown",
                    "sts-txt",
                    "could not ask nameserver ns2.example.org.",
                ),
                (
                    "warning",
                    "tlsrpt",
                    "no v=TLSRPTv1 record at _smtp._tls.b.example.org.",
                ),
            ],
        );
    let report = &r.report;
    assert_eq!(
        report["counts"],
        serde_json::json!({ "domains": 2, "critical": 1, "warning": 1, "unknown": 2 })
    );
    assert_eq!(report["domains"][0]["status"], "critical");
    assert_eq!(report["domains"][1]["status"], "unknown");
    // The validator itself rejects what the schema does not allow.
    let broken: [(&str, Mutation); 7] = [
        ("a missing hint", |r| {
            r["domains"][0]["findings"][0]
                .as_object_mut()
                .unwrap()
                .remove("hint");
        }),
        ("an unknown severity", |r| {
            r["domains"][0]["findings"][0]["severity"] = "fatal".into()
        }),
        ("an unknown check", |r| {
            r["domains"][0]["findings"][0]["check"] = "smtp-banner".into()
        }),
        ("a wrong exit code", |r| r["exit_code"] = 0.into()),
        ("a string count", |r| r["counts"]["critical"] = "1".into()),
        ("domains out of order", |r| {
            r["domains"].as_array_mut().unwrap().reverse()
        }),
        ("an extra field", |r| r["extra"] = true.into()),
    ];
    for (what, mutate) in broken {
        let mut bad = report.clone();
        mutate(&mut bad);
        let rejected = std::panic::catch_unwind(|| validate_schema(&bad)).is_err();
        assert!(rejected, "the validator accepted {what}");
    }
}
