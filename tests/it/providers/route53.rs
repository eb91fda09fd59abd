//! Route 53 through moto's server (behind the logging proxy of `harness/moto`): the provider
//! battery, and what is particular to Route 53 — compare-and-swap change batches against a
//! concurrent writer, TXT strings over 255 octets, throttling, the requests of a plan.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mta_stsd_providers::route53::{Credentials, Route53};
use mta_stsd_providers::{Changes, DomainChange, Expect, Provider, Record, Secret};

use crate::harness::moto::proxy::Proxy;
use crate::harness::moto::{txt_text, Moto};
use crate::harness::ConfigDir;
use crate::providers::battery::{self, Backend, ZONE};

struct R53 {
    moto: Arc<Moto>,
    proxy: Proxy,
}

impl R53 {
    fn start() -> R53 {
        let moto = Arc::new(Moto::start(ZONE));
        let proxy = Proxy::start(moto.clone());
        R53 { moto, proxy }
    }

    fn provider(&self) -> Route53 {
        Route53::new(
            "p",
            &self.proxy.url(),
            Credentials {
                access_key_id: self.moto.access_key_id.clone(),
                secret_access_key: Secret::new(self.moto.secret_access_key.clone()),
                session_token: None,
            },
        )
        .expect("a Route 53 provider")
    }

    fn toml(&self, dir: &ConfigDir, secret: &str) -> String {
        let id = dir.write("aws.id", format!("{}\n", self.moto.access_key_id));
        let key = dir.write("aws.secret", format!("{secret}\n"));
        format!(
            "[providers.p]\nkind = \"route53\"\nendpoint = \"{}\"\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n",
            self.proxy.url(),
            id.display(),
            key.display()
        )
    }
}

impl Backend for R53 {
    fn provider_toml(&self, dir: &ConfigDir) -> String {
        self.toml(dir, &self.moto.secret_access_key)
    }

    fn bad_auth_provider_toml(&self, dir: &ConfigDir) -> String {
        self.toml(dir, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    }

    fn query(&self, name: &str, rtype: &str) -> Vec<String> {
        let values = self
            .moto
            .rrset(name, rtype)
            .map(|(_, v)| v)
            .unwrap_or_default();
        match rtype {
            "TXT" => values.iter().map(|v| txt_text(v)).collect(),
            _ => values,
        }
    }

    fn add(&self, name: &str, rtype: &str, data: &str) {
        let (ttl, mut values) = self.moto.rrset(name, rtype).unwrap_or((300, Vec::new()));
        values.push(match rtype {
            "TXT" => format!("\"{}\"", data.replace('\\', "\\\\").replace('"', "\\\"")),
            _ => data.to_owned(),
        });
        self.moto.put(name, rtype, ttl, &values);
    }

    fn kill(&mut self) {
        self.proxy.set_down(true);
    }

    fn revive(&mut self) {
        self.proxy.set_down(false);
    }
}

crate::battery!(route53, R53::start);

fn count(requests: &[String], prefix: &str) -> usize {
    requests.iter().filter(|r| r.starts_with(prefix)).count()
}

/// A foreign write between our read and our change batch: the batch's DELETE/CREATE no longer
/// match, Route 53 refuses it whole (InvalidChangeBatch), and the second round reads again and
/// keeps the foreign value.
#[test]
fn concurrent_write_fails_the_batch_and_is_retried() {
    let b = R53::start();
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, false);
    let moto = b.moto.clone();
    b.proxy.before_change(move || {
        let v = vec!["\"google-site-verification=sneaky\"".to_owned()];
        moto.put("_mta-sts.a.example.org.", "TXT", 300, &v);
    });
    let out = dir.run(&["apply"]);
    out.assert_status(0);
    let id = battery::policy_id(&dir, "a.example.org");
    let mut got = b.query("_mta-sts.a.example.org.", "TXT");
    got.sort();
    assert_eq!(
        got,
        vec![
            "google-site-verification=sneaky".to_owned(),
            format!("v=STSv1; id={id};")
        ]
    );
    let requests = b.proxy.requests();
    let posts: Vec<&String> = requests.iter().filter(|r| r.starts_with("POST")).collect();
    assert_eq!(posts.len(), 2, "{requests:#?}");
    assert!(
        posts[0].ends_with("-> 400") && posts[1].ends_with("-> 200"),
        "{requests:#?}"
    );
    dir.run(&["plan"]).assert_status(0);
}

/// The same race seen by the provider itself: a conflict, and nothing of ours written.
#[tokio::test]
async fn lost_race_is_a_conflict() {
    let b = R53::start();
    let p = b.provider();
    let name = "_mta-sts.a.example.org.";
    b.add(name, "TXT", "v=STSv1; id=old;");
    let seen = p.records(ZONE, &[name.into()]).await.unwrap();
    assert_eq!(seen, vec![Record::txt(name, 300, "v=STSv1; id=old;")]);
    let change = Changes {
        domains: vec![DomainChange {
            domain: "a.example.org".into(),
            expect: vec![Expect::RRset {
                name: name.into(),
                rtype: "TXT",
                records: seen.clone(),
            }],
            delete: seen,
            add: vec![Record::txt(name, 3600, "v=STSv1; id=new;")],
        }],
    };
    let moto = b.moto.clone();
    b.proxy.before_change(move || {
        let v = vec!["\"v=STSv1; id=old;\"".to_owned(), "\"foreign\"".to_owned()];
        moto.put("_mta-sts.a.example.org.", "TXT", 300, &v);
    });
    let err = p.apply(ZONE, &change).await.unwrap_err();
    assert!(
        matches!(err, mta_stsd_providers::ProviderError::Conflict { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("InvalidChangeBatch"), "{err}");
    let mut got = b.query(name, "TXT");
    got.sort();
    assert_eq!(got, vec!["foreign", "v=STSv1; id=old;"]);
}

/// A TXT longer than 255 octets: written as several strings, read back joined.
#[tokio::test]
async fn long_txt_is_chunked_and_joined() {
    let b = R53::start();
    let p = b.provider();
    let name = "_smtp._tls.a.example.org.";
    let text = format!("v=TLSRPTv1; rua=mailto:{}@example.org;", "r".repeat(300));
    let add = Changes {
        domains: vec![DomainChange {
            domain: "a.example.org".into(),
            expect: vec![],
            delete: vec![],
            add: vec![Record::txt(name, 3600, text.clone())],
        }],
    };
    p.apply(ZONE, &add).await.unwrap();
    let (_, raw) = b.moto.rrset(name, "TXT").unwrap();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].matches('"').count(), 4, "two strings: {}", raw[0]);
    assert_eq!(
        p.records(ZONE, &[name.into()]).await.unwrap(),
        vec![Record::txt(name, 3600, text)]
    );
}

/// Route 53's throttling (HTTP 400 `Throttling`, and 429 with `Retry-After`) is waited out;
/// past the bound, the error quotes it.
#[test]
fn throttling_is_waited_out() {
    let b = R53::start();
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, false);
    b.proxy.throttle(2, 400);
    dir.run(&["plan"]).assert_status(2);
    b.proxy.throttle(2, 429);
    let started = Instant::now();
    dir.run(&["apply"]).assert_status(0);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 twice"
    );
    let requests = b.proxy.requests();
    // Three tries of the plan's zone listing, three of the apply's.
    assert_eq!(
        count(&requests, "GET /2013-04-01/hostedzone?"),
        6,
        "{requests:#?}"
    );
    assert_eq!(requests.iter().filter(|r| r.ends_with("-> 429")).count(), 2);
    assert_eq!(b.query("_mta-sts.a.example.org.", "TXT").len(), 1);

    b.proxy.throttle(1000, 400);
    let out = dir.run(&["plan"]);
    out.assert_status(1);
    assert!(
        out.stderr.contains("Throttling: Rate exceeded"),
        "{}",
        out.dump()
    );
}

/// What one `apply` and an unchanged `plan` ask of Route 53: one zone listing, one record
/// listing (the zone is small), one change batch.
#[test]
fn requests_of_apply_and_unchanged_plan() {
    let b = R53::start();
    let dir = ConfigDir::new();
    battery::config(
        &b,
        &dir,
        r#"tlsrpt = ["mailto:tlsrpt@example.org"]"#,
        86400,
        false,
    );
    dir.run(&["apply"]).assert_status(0);
    let applied = b.proxy.requests();
    eprintln!("apply: {applied:#?}");
    assert_eq!(
        count(&applied, "GET /2013-04-01/hostedzone?"),
        1,
        "{applied:#?}"
    );
    assert_eq!(count(&applied, "POST "), 1, "{applied:#?}");
    dir.run(&["plan"]).assert_status(0);
    let planned = b.proxy.requests()[applied.len()..].to_vec();
    eprintln!("plan: {planned:#?}");
    assert_eq!(planned.len(), 2, "{planned:#?}");
    assert_eq!(count(&planned, "GET /2013-04-01/hostedzone?"), 1);
    assert_eq!(
        count(
            &planned,
            &format!("GET /2013-04-01/hostedzone/{}/rrset?", b.moto.zone_id)
        ),
        1
    );
}

/// A wrong secret: moto's SignatureDoesNotMatch is quoted, the secret is not.
#[test]
fn wrong_secret_is_quoted() {
    let b = R53::start();
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, true);
    let out = dir.run(&["apply"]);
    out.assert_status(1);
    assert!(
        out.stderr.contains("SignatureDoesNotMatch"),
        "{}",
        out.dump()
    );
    assert!(!out.stderr.contains("EXAMPLEKEY"), "the secret leaked");
}

/// 350 foreign RRsets between a domain's names (`f*.a` sorts between `_smtp._tls.a` and
/// `mta-sts.a`): the read pages past them by jumping to the next name it wants, our records
/// are all found, and the names the first page spanned are not asked for again.
#[test]
fn records_listing_pages_and_skips_foreign_names() {
    let b = R53::start();
    let foreign: Vec<String> = (0..350)
        .map(|i| format!("f{i:03}.a.example.org."))
        .collect();
    b.moto.create_txts(&foreign, "\"foreign\"");
    let dir = ConfigDir::new();
    battery::config(
        &b,
        &dir,
        r#"tlsrpt = ["mailto:tlsrpt@example.org"]"#,
        86400,
        false,
    );
    dir.run(&["apply"]).assert_status(0);
    let before = b.proxy.requests().len();
    dir.run(&["plan"]).assert_status(0);
    let plan = b.proxy.requests()[before..].to_vec();
    let reads: Vec<&String> = plan.iter().filter(|r| r.contains("/rrset?")).collect();
    assert_eq!(reads.len(), 2, "{plan:#?}");
    assert!(
        reads[0].contains("name=_mta-sts.a.example.org."),
        "{plan:#?}"
    );
    assert!(
        reads[1].contains("name=mta-sts.a.example.org."),
        "{plan:#?}"
    );
    assert_eq!(
        b.query("mta-sts.a.example.org.", "CNAME"),
        vec!["mail.example.org."]
    );
    assert_eq!(b.query("f349.a.example.org.", "TXT"), vec!["foreign"]);
}

/// More hosted zones than one ListHostedZones page (100): the zone on the second page is
/// found, from one listing (two pages) for every name.
#[tokio::test]
async fn zone_listing_follows_next_marker() {
    let b = R53::start();
    for i in 0..120 {
        b.moto.create_zone(&format!("z{i:03}.test."));
    }
    let p = b.provider();
    let names: Vec<String> = ["_mta-sts.a.example.org.", "_mta-sts.x.z119.test."]
        .map(String::from)
        .to_vec();
    let got = p.zones_of(&names).await;
    assert_eq!(got[0].as_deref(), Ok("example.org."));
    assert_eq!(got[1].as_deref(), Ok("z119.test."));
    let requests = b.proxy.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(requests[1].contains("marker="), "{requests:#?}");
}

/// A `[[dane]]` entry through Route 53 (which has TLSA since 2023).
#[test]
fn tlsa_is_published_beside_a_foreign_value() {
    crate::dane::records::published_beside_a_foreign_value(&R53::start());
}
