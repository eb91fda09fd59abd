//! Findings in DNS: the TXT records, the nameservers' agreement, TLSRPT.

use hickory_proto::rr::RecordType;

use super::world::*;

#[test]
fn clean_world_exits_0_without_findings() {
    // b's record split in two strings (concatenated, RFC 8461 §3.1), c's delegated by CNAME;
    // the MX a real Postfix with a valid certificate.
    let w = world().domains(&["a", "b", "c"]).mx_tls().records(|ids| {
        let r = replace(
            correct(ids),
            "_mta-sts.b ",
            &[format!("_mta-sts.b TXT \"v=STSv1; \" \"id={};\"", ids["b"])],
        );
        replace(
            r,
            "_mta-sts.c ",
            &[
                "_mta-sts.c CNAME sts-c.policies.example.org.".into(),
                format!("sts-c.policies TXT \"v=STSv1; id={};\"", ids["c"]),
            ],
        )
    });
    let _daemon = w.serve();
    let r = w.drift();
    r.assert_exit(0);
    for label in ["a", "b", "c"] {
        r.assert_clean(&fqdn(label));
    }
    assert_eq!(
        r.text.stdout,
        "MTA-STS OK: 0 critical, 0 warning, 0 could not check, in 3 domains\n"
    );
}

#[test]
fn stale_id_is_critical() {
    let w = world().records(|ids| {
        replace(
            correct(ids),
            "_mta-sts.a ",
            &[sts("a", "v=STSv1; id=20240101000000Z;")],
        )
    });
    let _daemon = w.serve();
    let r = w.drift();
    r.assert_exit(2)
        .assert_findings(
            "a.example.org",
            &[(
                "critical",
                "sts-txt",
                &format!(
                    "stale id at _mta-sts.a.example.org.: 20240101000000Z, the served policy's is {}",
                    w.id("a")
                ),
            )],
        )
        .assert_clean("b.example.org");
    assert!(
        r.text.stdout.starts_with(
            "MTA-STS CRITICAL: 1 critical, 0 warning, 0 could not check, in 2 domains\n\
             CRITICAL a.example.org [sts-txt] stale id at _mta-sts.a.example.org.: "
        ),
        "{}",
        r.dump()
    );
}

#[test]
fn two_sts_records_are_critical() {
    let w = world().records(|ids| {
        let ours = sts("a", &format!("v=STSv1; id={};", ids["a"]));
        let other = sts("a", "v=STSv1; id=other1;");
        // Not an STS record: ignored.
        let foreign = sts("a", "site-verification=abc");
        replace(correct(ids), "_mta-sts.a ", &[ours, other, foreign])
    });
    let _daemon = w.serve();
    w.drift()
        .assert_exit(2)
        .assert_findings(
            "a.example.org",
            &[(
                "critical",
                "sts-txt",
                "2 v=STSv1 TXT records at _mta-sts.a.example.org.: RFC 8461 §3.1 says senders then assume no policy",
            )],
        )
        .assert_clean("b.example.org");
}

#[test]
fn missing_sts_record_is_critical() {
    let w = world().records(|ids| replace(correct(ids), "_mta-sts.a ", &[]));
    let _daemon = w.serve();
    w.drift()
        .assert_exit(2)
        .assert_findings(
            "a.example.org",
            &[(
                "critical",
                "sts-txt",
                "no v=STSv1 TXT record at _mta-sts.a.example.org.: senders do not know there is a policy",
            )],
        )
        .assert_clean("b.example.org");
}

#[test]
fn nameservers_disagreeing_is_a_warning_beside_the_stale_view() {
    let w = world().start();
    let _daemon = w.serve();
    w.drift().assert_exit(0);
    // ns2 only: each BIND is a primary with its own copy of the zone.
    w.ns[1].nsupdate(
        "update delete _mta-sts.a.example.org. TXT\n\
         update add _mta-sts.a.example.org. 300 IN TXT \"v=STSv1; id=behind1;\"",
    );
    let ours = format!("v=STSv1; id={};", w.id("a"));
    assert_eq!(
        w.ns[0].query("_mta-sts.a.example.org", RecordType::TXT),
        std::slice::from_ref(&ours)
    );
    assert_eq!(
        w.ns[1].query("_mta-sts.a.example.org", RecordType::TXT),
        ["v=STSv1; id=behind1;"]
    );
    let r = w.drift();
    r.assert_exit(2)
        .assert_findings(
            "a.example.org",
            &[
                (
                    "critical",
                    "sts-txt",
                    &format!(
                        "stale id at _mta-sts.a.example.org. (at ns2.example.org. (127.0.0.3)): behind1, the served policy's is {}",
                        w.id("a")
                    ),
                ),
                (
                    "warning",
                    "ns-agreement",
                    "nameservers disagree on _mta-sts.a.example.org.: ",
                ),
            ],
        )
        .assert_clean("b.example.org");
    // The disagreement names each side and what it says.
    let message = &r.findings("a.example.org")[1].2;
    for side in [
        format!("ns1.example.org. (127.0.0.2) say [{ours:?}]"),
        "ns2.example.org. (127.0.0.3) say [\"v=STSv1; id=behind1;\"]".to_owned(),
    ] {
        assert!(message.contains(&side), "{side} not in {message}");
    }
}

#[test]
fn nameservers_disagreeing_on_text_alone_is_only_a_warning() {
    let w = world().start();
    let _daemon = w.serve();
    // The same id, written differently: both views are valid, they still differ.
    w.ns[1].nsupdate(&format!(
        "update delete _mta-sts.a.example.org. TXT\n\
         update add _mta-sts.a.example.org. 300 IN TXT \"v=STSv1;id={}\"",
        w.id("a")
    ));
    w.drift()
        .assert_exit(1)
        .assert_findings(
            "a.example.org",
            &[(
                "warning",
                "ns-agreement",
                "nameservers disagree on _mta-sts.a.example.org.: ",
            )],
        )
        .assert_clean("b.example.org");
}

#[test]
fn tlsrpt_mismatch_is_a_warning() {
    let w = world().records(|ids| {
        let r = replace(
            correct(ids),
            "_smtp._tls.a ",
            &["_smtp._tls.a TXT \"v=TLSRPTv1; rua=mailto:other@example.net;\"".into()],
        );
        replace(r, "_smtp._tls.b ", &[])
    });
    let _daemon = w.serve();
    w.drift()
        .assert_exit(1)
        .assert_findings(
            "a.example.org",
            &[(
                "warning",
                "tlsrpt",
                &format!(
                    "_smtp._tls.a.example.org. is \"v=TLSRPTv1; rua=mailto:other@example.net;\"; the config wants {TLSRPT:?}"
                ),
            )],
        )
        .assert_findings(
            "b.example.org",
            &[(
                "warning",
                "tlsrpt",
                &format!("no v=TLSRPTv1 record at _smtp._tls.b.example.org.; the config wants {TLSRPT:?}"),
            )],
        );
}
