//! The read-verify-write providers (Hetzner, deSEC, Gandi, DigitalOcean, OVH) against fakes of
//! their APIs. Here: one [`Vendor`] per API and the scenarios each runs; `vendors.rs` the
//! battery and the scenarios instantiated per vendor, with what is particular to each;
//! `check.rs` what `check` says of the new kinds.

mod check;
mod vendors;

use std::time::{Duration, Instant};

use mta_stsd_providers::{Changes, DomainChange, Provider, ProviderError, Record, Secret};

use crate::harness::fakeapi::FakeApi;
use crate::harness::{ovh, ConfigDir, MAIN};
use crate::providers::battery::{self, Backend, ZONE};

const TOKEN: &str = "test-token-0123456789";

/// One vendor: its `kind`, its fake, and how a provider is built for it directly.
pub struct Vendor {
    kind: &'static str,
    start: fn(&str, &[&str]) -> FakeApi,
    base_url: fn(&FakeApi) -> String,
    provider: fn(&str, Secret) -> Box<dyn Provider>,
    /// What a refused token's error says.
    bad_token: &'static str,
    /// Where a foreign write racing ours lands: `None`, just before our write (an API that
    /// writes by value keeps it); else just after the first read of a path holding this (an
    /// API that replaces whole RRsets: our fresh read before writing must see it).
    race_after: Option<&'static str>,
}

pub struct Fake {
    v: &'static Vendor,
    api: FakeApi,
}

impl Fake {
    fn start(v: &'static Vendor) -> Fake {
        Fake {
            v,
            api: (v.start)(TOKEN, &[ZONE]),
        }
    }

    fn url(&self) -> String {
        (self.v.base_url)(&self.api)
    }

    fn toml(&self, dir: &ConfigDir, token: &str) -> String {
        let path = dir.write("api.token", format!("{token}\n"));
        if self.v.kind == "ovh" {
            let ak = dir.write("ovh.ak", ovh::APPLICATION_KEY);
            let ck = dir.write("ovh.ck", ovh::CONSUMER_KEY);
            return format!(
                "[providers.p]\nkind = \"ovh\"\nbase_url = \"{}\"\napplication_key_file = \"{}\"\n\
                 application_secret_file = \"{}\"\nconsumer_key_file = \"{}\"\n",
                self.url(),
                ak.display(),
                path.display(),
                ck.display()
            );
        }
        format!(
            "[providers.p]\nkind = \"{}\"\nbase_url = \"{}\"\napi_token_file = \"{}\"\n",
            self.v.kind,
            self.url(),
            path.display()
        )
    }

    fn provider(&self) -> Box<dyn Provider> {
        (self.v.provider)(&self.url(), Secret::new(TOKEN.into()))
    }
}

impl Backend for Fake {
    fn provider_toml(&self, dir: &ConfigDir) -> String {
        self.toml(dir, TOKEN)
    }

    fn bad_auth_provider_toml(&self, dir: &ConfigDir) -> String {
        self.toml(dir, "expired-token")
    }

    fn query(&self, name: &str, rtype: &str) -> Vec<String> {
        self.api.values(name, rtype)
    }

    fn add(&self, name: &str, rtype: &str, data: &str) {
        self.api.add(name, rtype, data);
    }

    fn kill(&mut self) {
        self.api.set_failing(true);
    }

    fn revive(&mut self) {
        self.api.set_failing(false);
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn config_edit(dir: &ConfigDir, from: &str, to: &str) {
    let text = std::fs::read_to_string(dir.config_path()).unwrap();
    assert!(text.contains(from), "`{from}` is not in the config");
    dir.write(MAIN, text.replace(from, to));
}

/// An id change while someone else adds a value at the same name just before our write: ours
/// replaces the old id, theirs stays.
fn foreign_write_racing_ours_survives(v: &'static Vendor) {
    let b = Fake::start(v);
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, false);
    dir.run(&["apply"]).assert_status(0);
    let old = battery::policy_id(&dir, "a.example.org");
    config_edit(&dir, "max_age = 86400", "max_age = 90000");
    let new = battery::policy_id(&dir, "a.example.org");
    let name = "_mta-sts.a.example.org.";
    b.api.race(name, "TXT", "racer=foreign", v.race_after);
    dir.run(&["apply"]).assert_status(0);
    assert!(b.api.store().race.is_empty(), "the race never ran");
    assert_eq!(
        sorted(b.query(name, "TXT")),
        vec!["racer=foreign".to_owned(), format!("v=STSv1; id={new};")],
        "old id {old}"
    );
}

/// Paging (the fake sends two items a page): three zones and five records at a name, all
/// seen; the stale STS record on the last page removed.
fn pages_are_followed(v: &'static Vendor) {
    let b = Fake {
        v,
        api: (v.start)(TOKEN, &["aaa.test", "bbb.test", ZONE]),
    };
    let name = "_mta-sts.a.example.org.";
    for i in 1..=4 {
        b.add(name, "TXT", &format!("note {i}"));
    }
    b.add(name, "TXT", "v=STSv1; id=stale;");
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, false);
    dir.run(&["apply"]).assert_status(0);
    let id = battery::policy_id(&dir, "a.example.org");
    let mut want: Vec<String> = (1..=4).map(|i| format!("note {i}")).collect();
    want.push(format!("v=STSv1; id={id};"));
    assert_eq!(sorted(b.query(name, "TXT")), sorted(want));
    dir.run(&["plan"]).assert_status(0);
}

/// 429: waited out and retried; past the bound, a transient error quoting the API.
fn rate_limit_is_honoured(v: &'static Vendor, quoted: &str) {
    let b = Fake::start(v);
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, false);
    b.api.throttle(2);
    let started = Instant::now();
    dir.run(&["apply"]).assert_status(0);
    let took = started.elapsed();
    let requests = b.api.requests();
    assert_eq!(
        requests.iter().filter(|r| r.ends_with("-> 429")).count(),
        2,
        "{requests:#?}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "two 429s waited out in {took:?}"
    );
    assert_eq!(b.query("_mta-sts.a.example.org.", "TXT").len(), 1);
    config_edit(&dir, "max_age = 86400", "max_age = 90000");
    b.api.throttle(1000);
    let out = dir.run(&["apply"]);
    out.assert_status(1);
    assert!(
        out.stderr.contains("HTTP 429 Too Many Requests") && out.stderr.contains(quoted),
        "{}",
        out.dump()
    );
}

/// A TXT longer than one character-string: split on write, joined on read.
async fn long_txt_round_trips(v: &'static Vendor) {
    let b = Fake::start(v);
    let p = b.provider();
    let name = "_smtp._tls.a.example.org.";
    let text = format!("v=TLSRPTv1; rua=mailto:{}@example.org;", "r".repeat(300));
    let zone = p.zone_of("a.example.org.").await.unwrap();
    let add = Changes {
        domains: vec![DomainChange {
            domain: "a.example.org".into(),
            expect: vec![],
            delete: vec![],
            add: vec![Record::txt(name, 3600, text.clone())],
        }],
    };
    p.apply(&zone, &add).await.unwrap();
    assert_eq!(
        p.records(&zone, &[name.into()]).await.unwrap(),
        vec![Record::txt(name, 3600, text.clone())]
    );
    assert_eq!(b.query(name, "TXT"), vec![text]);
}

/// A refused token: the API's code and text, never the token.
fn errors_quote_the_api(v: &'static Vendor) {
    let b = Fake::start(v);
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, true);
    let out = dir.run(&["apply"]);
    out.assert_status(1);
    assert!(out.stderr.contains(v.bad_token), "{}", out.dump());
    assert!(!out.stderr.contains(TOKEN) && !out.stderr.contains("expired-token"));
}

/// The requests of a first `apply` (printed for the report) and of an unchanged `plan`: one
/// zone listing and one listing of the zone's records, nothing written.
fn requests_of_apply_and_plan(v: &'static Vendor, plan_requests: usize) {
    let b = Fake::start(v);
    let dir = ConfigDir::new();
    battery::config(
        &b,
        &dir,
        r#"tlsrpt = ["mailto:tlsrpt@example.org"]"#,
        86400,
        false,
    );
    dir.run(&["apply"]).assert_status(0);
    eprintln!("{} apply:\n{}", v.kind, b.api.requests().join("\n"));
    b.api.clear_requests();
    dir.run(&["plan"]).assert_status(0);
    let requests = b.api.requests();
    eprintln!("{} unchanged plan:\n{}", v.kind, requests.join("\n"));
    assert!(
        requests.iter().all(|r| r.starts_with("GET ")),
        "{requests:#?}"
    );
    assert_eq!(requests.len(), plan_requests, "{requests:#?}");
}

fn add_txt(domain: &str, name: &str, text: &str) -> Changes {
    Changes {
        domains: vec![DomainChange {
            domain: domain.into(),
            expect: vec![],
            delete: vec![],
            add: vec![Record::txt(name, 3600, text)],
        }],
    }
}

/// A write the API answered as done but lost is caught by the read-back after writing: a
/// conflict (read again, retry), not a success; the retry then publishes.
async fn read_back_catches_a_lost_write(v: &'static Vendor) {
    let b = Fake::start(v);
    let p = b.provider();
    let zone = p.zone_of("a.example.org.").await.unwrap();
    let name = "_mta-sts.a.example.org.";
    b.api.lose_writes(1_000);
    let err = p
        .apply(&zone, &add_txt("a.example.org", name, "v=STSv1; id=1;"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("read back after writing"), "{err}");
    b.api.lose_writes(0);
    p.apply(&zone, &add_txt("a.example.org", name, "v=STSv1; id=1;"))
        .await
        .unwrap();
    assert_eq!(b.query(name, "TXT"), vec!["v=STSv1; id=1;"]);
}

/// A `[[dane]]` entry through the vendor, whose API takes TLSA.
fn tlsa_is_published(v: &'static Vendor) {
    crate::dane::records::published_beside_a_foreign_value(&Fake::start(v));
}

/// A vendor whose API has no TLSA: `check` fails naming it, `plan` and `apply` say so, and
/// nothing is written.
fn tlsa_is_refused(v: &'static Vendor) {
    let b = Fake::start(v);
    let dir = ConfigDir::new();
    let key = rcgen::KeyPair::generate().unwrap();
    dir.write(
        "fullchain.pem",
        crate::dane::records::Ca::new().fullchain(&key),
    );
    dir.write(
        MAIN,
        format!(
            "[server]\nhttps = []\n[policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\n[dns]\nprovider = \"p\"\n[state]\ndir = \"state\"\n{}[[dane]]\nhost = \"mail.example.org\"\ncert = \"fullchain.pem\"\n",
            b.toml(&dir, TOKEN)
        ),
    );
    let out = dir.run(&["check"]);
    assert_eq!(out.status, Some(1), "{}", out.dump());
    assert!(
        out.stderr.contains("provider p cannot publish TLSA"),
        "{}",
        out.dump()
    );
    for cmd in ["plan", "apply"] {
        let out = dir.run(&[cmd]);
        assert!(
            format!("{}{}", out.stdout, out.stderr).contains("cannot publish TLSA"),
            "{}",
            out.dump()
        );
    }
    assert!(b.query(crate::dane::records::NAME, "TLSA").is_empty());
}
