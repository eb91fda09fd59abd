//! Findings on the HTTPS and SMTP paths: the served policy, its certificate, the MX, and a
//! dead nameserver or a policy host without address.

use crate::harness::daemon::{Daemon, TestCa};

use super::canned::*;
use super::schema::*;
use super::world::*;

#[test]
fn served_policy_differing_from_the_config_is_critical() {
    // drift checks the config with max_age 604800 (the TXT ids are its ids); the daemon still
    // serves the one with 86400: only the body differs.
    let w = world().max_age(604800).start();
    let served = w.dir.write(
        "served.toml",
        w.config.replace("max_age = 604800", "max_age = 86400"),
    );
    let _daemon = Daemon::start(&served);
    let r = w.drift();
    r.assert_exit(2);
    for domain in ["a.example.org", "b.example.org"] {
        r.assert_findings(
            domain,
            &[(
                "critical",
                "policy-fetch",
                &format!("the served policy differs from the config's (served {BODY:?})"),
            )],
        );
    }
}

/// Domain `a` alone, its policy fetched from a [`CannedHttps`] giving `response` with the
/// certificate `leaf` makes.
#[track_caller]
fn canned(
    w: &World,
    leaf: impl FnOnce(&TestCa) -> (String, String),
    response: String,
) -> (Drift, CannedHttps) {
    let server = CannedHttps::start(leaf(&w.ca), response);
    (w.drift_via(server.port), server)
}

fn leaf_a(ca: &TestCa) -> (String, String) {
    ca.leaf(&["mta-sts.a.example.org"])
}

#[test]
fn wrong_content_type_is_critical() {
    let w = world().domains(&["a"]).start();
    // The canned server itself is a correct policy host; media type parameters are fine.
    let (r, server) = canned(&w, leaf_a, ok_response("text/plain; charset=utf-8", BODY));
    r.assert_exit(0).assert_clean("a.example.org");
    // Fetched as a sender does: SNI, the well-known path, the Host header.
    let requests = server.requests();
    assert!(!requests.is_empty());
    for (sni, head) in &requests {
        assert_eq!(sni.as_deref(), Some("mta-sts.a.example.org"));
        assert!(
            head.starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\nhost: mta-sts.a.example.org\r\n"),
            "{head}"
        );
    }
    let (r, _server) = canned(&w, leaf_a, ok_response("text/html", BODY));
    r.assert_exit(2).assert_findings(
        "a.example.org",
        &[(
            "critical",
            "policy-fetch",
            "the policy is served as Some(\"text/html\"); RFC 8461 §3.2 requires text/plain",
        )],
    );
}

#[test]
fn redirect_is_critical_and_not_followed() {
    let w = world().domains(&["a"]).start();
    let (r, server) = canned(
        &w,
        leaf_a,
        "HTTP/1.1 301 Moved Permanently\r\nLocation: /.well-known/elsewhere.txt\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
            .to_owned(),
    );
    r.assert_exit(2).assert_findings(
        "a.example.org",
        &[(
            "critical",
            "policy-fetch",
            "https://mta-sts.a.example.org/.well-known/mta-sts.txt redirects (301 Moved Permanently) \
             to /.well-known/elsewhere.txt; RFC 8461 §3.3: senders MUST NOT follow redirects",
        )],
    );
    let requests = server.requests();
    assert!(
        requests.iter().all(|(_, head)| !head.contains("elsewhere")),
        "the redirect was followed: {requests:?}"
    );
}

#[test]
fn expired_certificate_is_critical() {
    let w = world().domains(&["a"]).start();
    let (r, _server) = canned(
        &w,
        |ca| ca.leaf_with(&["mta-sts.a.example.org"], |p| validity(p, -30 * DAY, -DAY)),
        ok_response("text/plain", BODY),
    );
    r.assert_exit(2).assert_findings(
        "a.example.org",
        &[(
            "critical",
            "certificate",
            "the certificate of mta-sts.a.example.org is not valid: it expired on ",
        )],
    );
}

#[test]
fn certificate_expiring_within_14_days_is_a_warning() {
    let w = world().domains(&["a"]).start();
    let expiring = |days: i64| {
        move |ca: &TestCa| {
            ca.leaf_with(&["mta-sts.a.example.org"], |p| {
                validity(p, -DAY, days * DAY + DAY / 2)
            })
        }
    };
    let (r, _server) = canned(&w, expiring(14), ok_response("text/plain", BODY));
    r.assert_exit(0).assert_clean("a.example.org");
    let (r, _server) = canned(&w, expiring(13), ok_response("text/plain", BODY));
    r.assert_exit(1).assert_findings(
        "a.example.org",
        &[(
            "warning",
            "certificate",
            "the certificate of mta-sts.a.example.org expires in 13 days",
        )],
    );
}

#[test]
fn certificate_expiring_within_3_days_is_critical() {
    let w = world().domains(&["a"]).start();
    let expiring = |days: i64| {
        move |ca: &TestCa| {
            ca.leaf_with(&["mta-sts.a.example.org"], |p| {
                validity(p, -DAY, days * DAY + DAY / 2)
            })
        }
    };
    let (r, _server) = canned(&w, expiring(3), ok_response("text/plain", BODY));
    r.assert_exit(1).assert_findings(
        "a.example.org",
        &[(
            "warning",
            "certificate",
            "the certificate of mta-sts.a.example.org expires in 3 days",
        )],
    );
    let (r, _server) = canned(&w, expiring(2), ok_response("text/plain", BODY));
    r.assert_exit(2).assert_findings(
        "a.example.org",
        &[(
            "critical",
            "certificate",
            "the certificate of mta-sts.a.example.org expires in 2 days",
        )],
    );
}

#[test]
fn certificate_for_another_name_is_critical() {
    let w = world().domains(&["a"]).start();
    let (r, _server) = canned(
        &w,
        |ca| ca.leaf(&["mta-sts.other.example.org", "a.example.org"]),
        ok_response("text/plain", BODY),
    );
    r.assert_exit(2).assert_findings(
        "a.example.org",
        &[(
            "critical",
            "certificate",
            "the certificate of mta-sts.a.example.org is not valid: it is issued for mta-sts.other.example.org, a.example.org, not this name",
        )],
    );
}

#[test]
fn mx_not_covered_in_enforce_is_critical() {
    // `*.` matches exactly one label (RFC 8461 §4.1): mx1 is covered, deep.mx2 is not.
    let w = world()
        .domains(&["a"])
        .domain_toml("a", "mx = [\"*.example.org\"]")
        .records(|ids| {
            replace(
                correct(ids),
                "a MX ",
                &[
                    "a MX 10 mx1.example.org.".into(),
                    "a MX 20 deep.mx2.example.org.".into(),
                ],
            )
        });
    let _daemon = w.serve();
    w.drift().assert_exit(2).assert_findings(
        "a.example.org",
        &[(
            "critical",
            "mx",
            "MX deep.mx2.example.org is not covered by the policy's mx patterns; in `enforce` mode senders refuse to deliver to it",
        )],
    );
}

#[test]
fn mx_not_covered_in_testing_is_a_warning() {
    let w = world()
        .domains(&["a"])
        .domain_toml("a", "mode = \"testing\"")
        .records(|ids| {
            replace(
                correct(ids),
                "a MX ",
                &[
                    "a MX 10 mx1.example.org.".into(),
                    "a MX 20 mx2.example.org.".into(),
                ],
            )
        });
    let _daemon = w.serve();
    w.drift().assert_exit(1).assert_findings(
        "a.example.org",
        &[(
            "warning",
            "mx",
            "MX mx2.example.org is not covered by the policy's mx patterns; in `testing` mode senders report failures for it",
        )],
    );
}

#[test]
fn mx_pattern_matching_no_mx_is_a_warning() {
    let w = world()
        .domains(&["a"])
        .domain_toml("a", "mx = [\"mx1.example.org\", \"mx-old.example.org\"]")
        .start();
    let _daemon = w.serve();
    w.drift().assert_exit(1).assert_findings(
        "a.example.org",
        &[(
            "warning",
            "mx",
            "mx pattern mx-old.example.org matches none of the domain's MX hosts",
        )],
    );
}

#[test]
fn dead_nameserver_is_could_not_check() {
    let mut w = world().start();
    let _daemon = w.serve();
    w.ns[1].stop();
    let r = w.drift();
    r.assert_exit(3);
    for label in ["a", "b"] {
        r.assert_findings(
            &fqdn(label),
            &[(
                "unknown",
                "sts-txt",
                &format!(
                    "could not ask nameserver ns2.example.org. (127.0.0.3) for _mta-sts.{label}.example.org.: "
                ),
            )],
        );
    }
    assert!(
        r.text.stdout.starts_with(
            "MTA-STS UNKNOWN: 0 critical, 0 warning, 2 could not check, in 2 domains\n"
        ),
        "{}",
        r.dump()
    );
    w.ns[1].restart();
    w.drift().assert_exit(0);
}

#[test]
fn policy_host_without_address_is_critical() {
    // No daemon: were the policy fetched anyway, a "could not connect" finding would show.
    let w = world().records(|ids| {
        let r = replace(correct(ids), "mta-sts.a ", &[]);
        replace(
            r,
            "mta-sts.b ",
            &["mta-sts.b CNAME gone.example.org.".into()],
        )
    });
    w.drift()
        .assert_exit(2)
        .assert_findings(
            "a.example.org",
            &[(
                "critical",
                "policy-host",
                "mta-sts.a.example.org. has no address: senders cannot fetch the policy",
            )],
        )
        .assert_findings(
            "b.example.org",
            &[
                (
                    "critical",
                    "policy-host",
                    "mta-sts.b.example.org. has no address",
                ),
                (
                    "warning",
                    "policy-host",
                    "mta-sts.b.example.org. is a CNAME to gone.example.org., the config says mail.example.org.",
                ),
            ],
        );
}
