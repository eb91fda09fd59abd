//! What is particular to PowerDNS's HTTP API, against a real PowerDNS: its error texts quoted,
//! compare-and-swap emulated by a fresh read, one zone listing, long TXT records.

use mta_stsd_providers::{Expect, Provider, ProviderError, Record};

use crate::harness::daemon::{eventually_blocking, DEADLINE};
use crate::harness::ConfigDir;
use crate::providers::battery::{self, Backend, ZONE};

use super::api::{sts_change, Pdns};

/// A wrong API key: the 401 and PowerDNS's text are quoted, the key is not, nothing changes.
#[test]
fn powerdns_wrong_key_is_quoted() {
    let b = Pdns::start();
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, true);
    let out = dir.run(&["apply"]);
    out.assert_status(1);
    assert!(
        out.stderr.contains("HTTP 401 Unauthorized: Unauthorized"),
        "{}",
        out.dump()
    );
    assert!(!out.stderr.contains(&b.0.api_key), "the key leaked");
    assert!(b.query("_mta-sts.a.example.org.", "TXT").is_empty());
}

/// PowerDNS refuses invalid data with 422 and `{"error": …}`; an unknown zone with 404.
#[tokio::test]
async fn powerdns_refusals_quote_the_server() {
    let b = Pdns::start();
    let p = b.provider();
    let bad = sts_change(
        "a.example.org",
        vec![Expect::NameUnused {
            name: "mta-sts.a.example.org.".into(),
        }],
        vec![Record::cname("mta-sts.a.example.org.", 3600, "bad name!.")],
    );
    let err = p.apply("example.org.", &bad).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ProviderError::Refused { .. }), "{err:?}");
    assert_eq!(err.code(), "422");
    assert!(
        text.contains("HTTP 422 Unprocessable Entity")
            && text.contains("When parsing CNAME trailing data was not parsed"),
        "{text}"
    );
    assert!(b.query("mta-sts.a.example.org.", "CNAME").is_empty());

    let err = p
        .records("nope.test.", &["_mta-sts.x.nope.test.".into()])
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("HTTP 404 Not Found"), "{err}");
}

/// No prerequisites in PowerDNS: a change made between our read and our write is caught by
/// the fresh read before the PATCH, and nothing is overwritten.
#[tokio::test]
async fn powerdns_concurrent_change_is_a_conflict() {
    let b = Pdns::start();
    let p = b.provider();
    let name = "_mta-sts.a.example.org.";
    assert!(p.records(ZONE, &[name.into()]).await.unwrap().is_empty());
    let ours = sts_change(
        "a.example.org",
        vec![Expect::NoRRset {
            name: name.into(),
            rtype: "TXT",
        }],
        vec![Record::txt(name, 3600, "v=STSv1; id=ours;")],
    );
    b.add(name, "TXT", "v=STSv1; id=sneaky;");
    let err = p.apply(ZONE, &ours).await.unwrap_err();
    assert!(matches!(err, ProviderError::Conflict { .. }), "{err:?}");
    assert_eq!(b.query(name, "TXT"), vec!["v=STSv1; id=sneaky;"]);
}

/// Zone discovery: one zone list for every name, the longest zone wins.
#[tokio::test]
async fn powerdns_zones_of_lists_once_and_picks_the_longest() {
    let b = Pdns::start();
    b.0.create_zone("b.example.org.");
    let p = b.provider();
    let lists = || {
        b.0.logged_requests("\"GET /api/v1/servers/localhost/zones HTTP/1.1\"")
    };
    let before = lists();
    let names: Vec<String> = [
        "a.example.org.",
        "x.b.example.org.",
        "B.example.org",
        "nope.test.",
    ]
    .map(String::from)
    .to_vec();
    let got = p.zones_of(&names).await;
    assert_eq!(got[0].as_deref(), Ok("example.org."));
    assert_eq!(got[1].as_deref(), Ok("b.example.org."));
    assert_eq!(got[2].as_deref(), Ok("b.example.org."));
    assert!(
        matches!(got[3], Err(ProviderError::Config { .. })),
        "{:?}",
        got[3]
    );
    // PowerDNS logs a request after answering it, from the thread that served it: the line
    // may follow a later request's, so wait for it, then check no second listing came.
    eventually_blocking(DEADLINE, "a zone listing logged", || {
        (lists() - before > 0)
            .then_some(())
            .ok_or_else(|| b.0.log())
    });
    assert_eq!(lists() - before, 1, "{}", b.0.log());
}

/// A TXT longer than one character-string: split on write, concatenated on read, the same
/// text over DNS.
#[tokio::test]
async fn powerdns_long_txt_round_trips() {
    let b = Pdns::start();
    let p = b.provider();
    let name = "_smtp._tls.a.example.org.";
    let text = format!("v=TLSRPTv1; rua=mailto:{}@example.org;", "r".repeat(300));
    let add = sts_change(
        "a.example.org",
        vec![Expect::NoRRset {
            name: name.into(),
            rtype: "TXT",
        }],
        vec![Record::txt(name, 3600, text.clone())],
    );
    p.apply(ZONE, &add).await.unwrap();
    assert_eq!(
        p.records(ZONE, &[name.into()]).await.unwrap(),
        vec![Record::txt(name, 3600, text.clone())]
    );
    assert_eq!(b.query(name, "TXT"), vec![text]);
}
