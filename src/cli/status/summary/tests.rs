//! Summaries of canned `/status` documents.

use super::*;
use serde_json::json;

fn base(domains: Value) -> Value {
    json!({
        "version": "0.1.0", "started_at": "2026-12-01T00:00:00Z",
        "config": { "path": "/etc/mta-stsd/mta-stsd.toml", "loaded_at": "2026-12-01T00:00:00Z",
                    "last_reload": { "at": "2026-12-01T00:00:00Z", "ok": true, "problems": [] } },
        "drift": null, "domains_total": 1, "domains_listed": true, "domains": domains,
    })
}

const NOW: i64 = 1_795_000_000;

fn domain(cert_expires: Value, dns_state: &str) -> Value {
    json!([{ "domain": "example.org", "policy_id": "abc", "mode": "enforce",
             "certificate": "configured", "certificate_expires": cert_expires,
             "dns": { "state": dns_state, "provider": "p", "conflicts": [] }, "drift": null }])
}

fn at(secs: i64) -> Value {
    Value::String(crate::clock::rfc3339(secs))
}

#[test]
fn severity_follows_what_needs_doing() {
    let fine = Summary::of(&base(domain(at(NOW + 60 * 86_400), "published")), NOW);
    assert_eq!(fine.exit_code(), 0, "{}", fine.text);
    assert!(fine.text.contains("expires in 60 days"), "{}", fine.text);
    let soon = Summary::of(&base(domain(at(NOW + 10 * 86_400), "published")), NOW);
    assert_eq!(soon.exit_code(), 1, "{}", soon.text);
    let expired = Summary::of(&base(domain(at(NOW - 1), "published")), NOW);
    assert_eq!(expired.exit_code(), 2, "{}", expired.text);
    assert!(expired.text.contains("EXPIRED"), "{}", expired.text);
    let failed = Summary::of(&base(domain(Value::Null, "failed")), NOW);
    assert_eq!(failed.exit_code(), 2, "{}", failed.text);
    let mut bad_reload = base(domain(Value::Null, "manual"));
    bad_reload["config"]["last_reload"] =
        json!({ "at": "x", "ok": false, "problems": ["a.toml:1:1: error: boom"] });
    let s = Summary::of(&bad_reload, NOW);
    assert_eq!(s.exit_code(), 2);
    assert!(s.text.contains("  a.toml:1:1: error: boom\n"), "{}", s.text);
    assert!(
        s.text.ends_with("1 domain: 1 error, 0 warnings\n"),
        "{}",
        s.text
    );
}

/// The problems listed, one per line, as `warning:` and `ERROR:`.
fn listed(text: &str) -> (usize, usize) {
    let lines = || text.lines().map(str::trim_start);
    (
        lines().filter(|l| l.starts_with("warning: ")).count(),
        lines().filter(|l| l.starts_with("ERROR: ")).count(),
    )
}

/// Issue 23: "2 warnings" with one listed — the fleet's drift status counted on top of the
/// domain's own finding, an expiring certificate counted but not named.
#[test]
fn issue23_every_counted_problem_is_listed_once() {
    let mut s = base(domain(at(NOW + 10 * 86_400), "published"));
    s["drift"] = json!({ "checked_at": "x", "status": "warning",
                         "counts": { "critical": 0, "warning": 1, "unknown": 0 } });
    s["domains"][0]["drift"] = json!({ "status": "warning", "findings": [
        { "severity": "warning", "check": "mx", "message": "mx2 has no certificate" }] });
    let m = Summary::of(&s, NOW);
    assert_eq!(listed(&m.text), (m.warnings, m.errors), "{}", m.text);
    assert_eq!((m.warnings, m.errors), (2, 0), "{}", m.text);
    assert!(
        m.text.contains("warning: certificate expires"),
        "{}",
        m.text
    );
    assert!(
        m.text.ends_with("1 domain: 0 errors, 2 warnings\n"),
        "{}",
        m.text
    );
    // Too many domains to list: the fleet's status is what counts.
    s["domains_listed"] = json!(false);
    s["domains"] = json!([]);
    let m = Summary::of(&s, NOW);
    assert_eq!((m.warnings, listed(&m.text).0), (1, 1), "{}", m.text);
}

/// Issue 23: a removed domain is shown where it is in its retirement, and one whose
/// records are being withdrawn (no longer among the served domains) is listed too.
#[test]
fn issue23_retiring_and_withdrawing_domains_are_shown() {
    let mut s = base(domain(Value::Null, "published"));
    s["domains"][0]["mode"] = json!("none");
    s["domains"][0]["lifecycle"] = json!({ "state": "retiring",
        "retiring_since": "2026-12-01T00:00:00Z", "withdraw_at": "2026-12-08T00:00:00Z" });
    s["withdrawing"] = json!([{ "domain": "old.example.net",
        "lifecycle": { "state": "withdrawing", "withdraw_at": "2026-12-01T00:00:00Z" },
        "dns": { "state": "failed", "last_error": "REFUSED" } }]);
    let m = Summary::of(&s, NOW);
    assert!(
        m.text
            .contains("  retiring (RFC 8461 §8.3): served `mode: none`; records withdrawn at 2026-12-08T00:00:00Z\n"),
        "{}",
        m.text
    );
    assert!(
        m.text
            .contains("old.example.net: withdrawn at 2026-12-01T00:00:00Z")
            && m.text.contains("  ERROR: DNS: REFUSED\n"),
        "{}",
        m.text
    );
    assert_eq!(m.exit_code(), 2, "{}", m.text);
}

/// Issue 23: TLS-RPT failures of an `enforce` domain are mail not delivered: an error; of
/// a `testing` domain, a warning.
#[test]
fn issue23_tlsrpt_failures_count_by_mode() {
    let mut s = base(domain(Value::Null, "published"));
    s["domains"][0]["tlsrpt"] =
        json!({ "last_report": null, "days": 7, "successful": 90, "failed": 10 });
    let m = Summary::of(&s, NOW);
    assert_eq!(m.exit_code(), 2, "{}", m.text);
    assert!(
        m.text
            .contains("ERROR: TLS-RPT: 10 of 100 sessions failed in the last 7 days"),
        "{}",
        m.text
    );
    s["domains"][0]["mode"] = json!("testing");
    assert_eq!(Summary::of(&s, NOW).exit_code(), 1);
    s["domains"][0]["tlsrpt"]["failed"] = json!(0);
    assert_eq!(Summary::of(&s, NOW).exit_code(), 0);
}

/// Issue 24: the leases held now are listed with their holder and expiry; an expired one
/// (no holder) is not; a store that did not answer says so. None counts as a problem.
#[test]
fn issue24_leases_held_are_listed_with_holder_and_expiry() {
    let mut s = base(domain(Value::Null, "published"));
    s["state"] = json!({ "leases": [
        { "job": "zone:example.org", "holder": "mx-a/12", "last_holder": "mx-a/12",
          "this_process": true, "token": 3, "expires_at": "2026-12-07T10:00:30Z" },
        { "job": "reconcile", "holder": null, "last_holder": "mx-b/7",
          "this_process": false, "token": 1, "expires_at": "2026-12-07T09:00:00Z" },
    ] });
    let m = Summary::of(&s, NOW);
    assert!(
        m.text.contains(
            "leases: 1 held\n  zone:example.org: mx-a/12 (this process) until 2026-12-07T10:00:30Z\n"
        ),
        "{}",
        m.text
    );
    assert!(!m.text.contains("reconcile"), "{}", m.text);
    assert_eq!(m.exit_code(), 0, "{}", m.text);
    s["state"]["leases"] = Value::Null;
    let m = Summary::of(&s, NOW);
    assert!(
        m.text
            .contains("leases: unknown (the store did not answer)\n"),
        "{}",
        m.text
    );
}
