//! Real Microsoft reports (fixtures after public samples, see tests/fixtures/tlsrpt/README.md):
//! parsed with their quirks, and matched to the policy we serve by the quoted body.

use mta_stsd::tlsrpt::matching::same_body;
use mta_stsd::tlsrpt::{PolicyType, Report};

use crate::tlsrpt::receiver::fixture;

#[test]
fn microsoft_sts_and_dane_report() {
    let r = Report::parse(&fixture("microsoft-tlsa.json")).unwrap();
    assert_eq!(r.organization, "Microsoft Corporation");
    assert_eq!(r.contact.as_deref(), Some("tlsrpt-noreply@microsoft.com"));
    assert_eq!(r.report_id, "133925885310113267+example.org");
    assert_eq!(r.end - r.start, 86_399);
    assert_eq!(r.policies.len(), 2);
    let sts = &r.policies[0];
    assert_eq!(sts.policy_type, PolicyType::Sts);
    assert!(
        sts.mx_hosts.is_empty(),
        "Microsoft quotes the body but sends no mx-host"
    );
    assert!(sts.failures.is_empty());
    assert_eq!((sts.successful, sts.failed), (2, 0));
    // The quoted lines are the body we serve for that policy (CRLF, trailing newline).
    let body = "version: STSv1\r\nmode: enforce\r\nmx: *.example.org\r\nmax_age: 2592000\r\n";
    assert!(same_body(
        body.as_bytes(),
        sts.policy_string.as_ref().unwrap()
    ));
    assert!(!same_body(
        body.replace("enforce", "testing").as_bytes(),
        sts.policy_string.as_ref().unwrap()
    ));
    // DANE: one string that is itself a JSON array of TLSA records, kept as given.
    let tlsa = &r.policies[1];
    assert_eq!(tlsa.policy_type, PolicyType::Tlsa);
    let s = &tlsa.policy_string.as_ref().unwrap()[0];
    assert!(
        s.starts_with("[\"3 1 1 6007EEE5") && s.ends_with("998B\"]"),
        "{s}"
    );
    assert_eq!(tlsa.domain.as_deref(), Some("example.org"));
}

#[test]
fn microsoft_fetch_error_report() {
    let r = Report::parse(&fixture("microsoft-fetch-error.json")).unwrap();
    assert_eq!(r.report_id, "133944192000000000+");
    let p = &r.policies[0];
    assert_eq!(
        (p.policy_string.as_ref(), p.successful, p.failed),
        (None, 0, 3)
    );
    let f = &p.failures[0];
    assert_eq!(
        (f.result_type.as_str(), f.count),
        ("sts-policy-fetch-error", 3)
    );
    assert_eq!(
        (
            f.sending_mta_ip.as_ref(),
            f.receiving_mx_hostname.as_ref(),
            f.receiving_ip.as_ref()
        ),
        (None, None, None)
    );
    assert!(mta_stsd::tlsrpt::is_sts_failure(&f.result_type));
}
