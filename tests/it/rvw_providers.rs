//! The read-verify-write providers (Hetzner, …) against fakes of their APIs: the provider
//! battery for each, and what each must show besides: a foreign write racing ours survives,
//! paging is followed, 429s are waited out, a TXT over 255 octets round-trips, errors quote the
//! API's own code and text, and the requests of one `apply` and of an unchanged `plan`.

use std::time::{Duration, Instant};

use mta_stsd_providers::{Changes, DomainChange, Provider, ProviderError, Record, Secret};

use crate::battery::{self, Backend, ZONE};
use crate::harness::fakeapi::FakeApi;
use crate::harness::{desec, digitalocean, gandi, hetzner, ovh, ConfigDir, MAIN};

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

const HETZNER: Vendor = Vendor {
    kind: "hetzner",
    start: hetzner::start,
    base_url: hetzner::base_url,
    provider: |url, token| Box::new(mta_stsd_providers::hetzner::hetzner("p", url, token).unwrap()),
    bad_token: "HTTP 401 Unauthorized: unauthorized unable to authenticate",
    race_after: None,
};

const DESEC: Vendor = Vendor {
    kind: "desec",
    start: desec::start,
    base_url: desec::base_url,
    provider: |url, token| Box::new(mta_stsd_providers::desec::desec("p", url, token).unwrap()),
    bad_token: "HTTP 401 Unauthorized: Invalid token.",
    race_after: Some("/rrsets"),
};

const DIGITALOCEAN: Vendor = Vendor {
    kind: "digitalocean",
    start: digitalocean::start,
    base_url: digitalocean::base_url,
    provider: |url, token| {
        Box::new(mta_stsd_providers::digitalocean::digitalocean("p", url, token).unwrap())
    },
    bad_token: "HTTP 401 Unauthorized: Unauthorized Unable to authenticate you.",
    race_after: None,
};

const GANDI: Vendor = Vendor {
    kind: "gandi",
    start: gandi::start,
    base_url: gandi::base_url,
    provider: |url, token| Box::new(mta_stsd_providers::gandi::gandi("p", url, token).unwrap()),
    bad_token: "HTTP 401 Unauthorized: HTTPUnauthorized: Unauthorized: The server could not verify",
    race_after: Some("/records"),
};

const OVH: Vendor = Vendor {
    kind: "ovh",
    start: ovh::start,
    base_url: ovh::base_url,
    provider: |url, secret| {
        let keys = mta_stsd_providers::ovh::Keys {
            application_key: Secret::new(ovh::APPLICATION_KEY.into()),
            application_secret: secret,
            consumer_key: Secret::new(ovh::CONSUMER_KEY.into()),
        };
        Box::new(mta_stsd_providers::ovh::ovh("p", url, keys).unwrap())
    },
    bad_token: "HTTP 400 Bad Request: INVALID_SIGNATURE Invalid signature",
    race_after: None,
};

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

crate::battery!(hetzner_battery, || Fake::start(&HETZNER));
crate::battery!(desec_battery, || Fake::start(&DESEC));
crate::battery!(digitalocean_battery, || Fake::start(&DIGITALOCEAN));
crate::battery!(gandi_battery, || Fake::start(&GANDI));
crate::battery!(ovh_battery, || Fake::start(&OVH));

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

#[test]
fn hetzner_foreign_write_racing_ours_survives() {
    foreign_write_racing_ours_survives(&HETZNER);
}

#[test]
fn hetzner_pages_are_followed() {
    pages_are_followed(&HETZNER);
}

#[test]
fn hetzner_rate_limit_is_honoured() {
    rate_limit_is_honoured(
        &HETZNER,
        "rate_limit_exceeded limit of 3600 requests per hour",
    );
}

#[tokio::test]
async fn hetzner_long_txt_round_trips() {
    long_txt_round_trips(&HETZNER).await;
}

#[test]
fn hetzner_errors_quote_the_api() {
    errors_quote_the_api(&HETZNER);
}

/// One zone listing (a page: one zone) and the zone's RRsets (six, three pages of two).
#[test]
fn hetzner_requests_of_apply_and_plan() {
    requests_of_apply_and_plan(&HETZNER, 1 + 3);
}

#[test]
fn desec_foreign_write_racing_ours_survives() {
    foreign_write_racing_ours_survives(&DESEC);
}

/// Past the pagination limit (500 at deSEC, 2 here), the `cursor` pages are followed.
#[test]
fn desec_pages_are_followed() {
    let b = Fake::start(&DESEC);
    desec::set_pagination_limit(&b.api, 2);
    let dir = ConfigDir::new();
    battery::config(
        &b,
        &dir,
        r#"tlsrpt = ["mailto:a@example.org"]"#,
        86400,
        false,
    );
    dir.run(&["apply"]).assert_status(0);
    dir.run(&["plan"]).assert_status(0);
    let requests = b.api.requests();
    assert!(
        requests.iter().any(|r| r.contains("/rrsets/?cursor=4 ")),
        "{requests:#?}"
    );
}

#[test]
fn desec_rate_limit_is_honoured() {
    rate_limit_is_honoured(
        &DESEC,
        "Request was throttled. Expected available in 1 second.",
    );
}

/// deSEC's documented write limit (2 a second per domain) is kept by the client: three applies
/// in a row to one domain are spaced, and the fake (which enforces it) answers no 429.
#[tokio::test]
async fn desec_write_limit_is_kept_client_side() {
    let b = Fake::start(&DESEC);
    let p = b.provider();
    let zone = p.zone_of("a.example.org.").await.unwrap();
    let started = Instant::now();
    for i in 0..3 {
        let name = format!("_smtp._tls.d{i}.example.org.");
        let add = Changes {
            domains: vec![DomainChange {
                domain: format!("d{i}.example.org"),
                expect: vec![],
                delete: vec![],
                add: vec![Record::txt(
                    &name,
                    3600,
                    "v=TLSRPTv1; rua=mailto:a@example.org;",
                )],
            }],
        };
        p.apply(&zone, &add).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let requests = b.api.requests();
    assert_eq!(
        requests.iter().filter(|r| r.starts_with("PATCH ")).count(),
        3,
        "{requests:#?}"
    );
    assert!(
        !requests.iter().any(|r| r.ends_with("-> 429")),
        "{requests:#?}"
    );
}

/// A refused RRset fails the whole bulk request: nothing of it is applied, and the field's
/// message is quoted.
#[tokio::test]
async fn desec_bulk_is_all_or_nothing() {
    let b = Fake::start(&DESEC);
    let p = b.provider();
    let zone = p.zone_of("a.example.org.").await.unwrap();
    let add = Changes {
        domains: vec![DomainChange {
            domain: "a.example.org".into(),
            expect: vec![],
            delete: vec![],
            add: vec![
                Record::txt("_mta-sts.a.example.org.", 3600, "v=STSv1; id=1;"),
                Record::txt(
                    "_smtp._tls.a.example.org.",
                    60,
                    "v=TLSRPTv1; rua=mailto:a@example.org;",
                ),
            ],
        }],
    };
    let err = p.apply(&zone, &add).await.unwrap_err();
    assert!(
        err.to_string().contains(
            "HTTP 400 Bad Request: ttl: Ensure this value is greater than or equal to 3600."
        ),
        "{err}"
    );
    assert!(b.query("_mta-sts.a.example.org.", "TXT").is_empty());
}

#[tokio::test]
async fn desec_long_txt_round_trips() {
    long_txt_round_trips(&DESEC).await;
}

#[test]
fn desec_errors_quote_the_api() {
    errors_quote_the_api(&DESEC);
}

/// One domain listing and one RRset listing.
#[test]
fn desec_requests_of_apply_and_plan() {
    requests_of_apply_and_plan(&DESEC, 2);
}

#[test]
fn digitalocean_foreign_write_racing_ours_survives() {
    foreign_write_racing_ours_survives(&DIGITALOCEAN);
}

#[test]
fn digitalocean_pages_are_followed() {
    pages_are_followed(&DIGITALOCEAN);
}

#[test]
fn digitalocean_rate_limit_is_honoured() {
    rate_limit_is_honoured(&DIGITALOCEAN, "too_many_requests API Rate limit exceeded.");
}

#[tokio::test]
async fn digitalocean_long_txt_round_trips() {
    long_txt_round_trips(&DIGITALOCEAN).await;
}

#[test]
fn digitalocean_errors_quote_the_api() {
    errors_quote_the_api(&DIGITALOCEAN);
}

/// One domain listing and the domain's six records, three pages of two.
#[test]
fn digitalocean_requests_of_apply_and_plan() {
    requests_of_apply_and_plan(&DIGITALOCEAN, 1 + 3);
}

/// An id change, a new CNAME target and a new TLSRPT address: each record rewritten in place
/// by id (PUT), none deleted and created again.
#[test]
fn digitalocean_replacement_updates_in_place() {
    let b = Fake::start(&DIGITALOCEAN);
    let dir = ConfigDir::new();
    battery::config(
        &b,
        &dir,
        r#"tlsrpt = ["mailto:a@example.org"]"#,
        86400,
        false,
    );
    dir.run(&["apply"]).assert_status(0);
    let ids = |b: &Fake| {
        let mut v: Vec<u64> = b.api.store().records.iter().map(|r| r.id).collect();
        v.sort();
        v
    };
    let before = ids(&b);
    b.api.clear_requests();
    config_edit(&dir, "max_age = 86400", "max_age = 90000");
    config_edit(
        &dir,
        "target = \"mail.example.org.\"",
        "target = \"mx.example.org.\"",
    );
    config_edit(&dir, "mailto:a@example.org", "mailto:b@example.org");
    dir.run(&["apply"]).assert_status(0);
    assert_eq!(ids(&b), before);
    let requests = b.api.requests();
    assert_eq!(
        requests.iter().filter(|r| r.starts_with("PUT ")).count(),
        6,
        "{requests:#?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("POST ") || r.starts_with("DELETE ")),
        "{requests:#?}"
    );
    assert_eq!(
        b.query("mta-sts.b.example.org.", "CNAME"),
        vec!["mx.example.org."]
    );
}

#[test]
fn gandi_foreign_write_racing_ours_survives() {
    foreign_write_racing_ours_survives(&GANDI);
}

#[test]
fn gandi_pages_are_followed() {
    pages_are_followed(&GANDI);
}

#[test]
fn gandi_rate_limit_is_honoured() {
    rate_limit_is_honoured(&GANDI, "HTTPTooManyRequests: Rate limit exceeded");
}

#[tokio::test]
async fn gandi_long_txt_round_trips() {
    long_txt_round_trips(&GANDI).await;
}

#[test]
fn gandi_errors_quote_the_api() {
    errors_quote_the_api(&GANDI);
}

/// One domain listing and the domain's six RRsets, three pages of two.
#[test]
fn gandi_requests_of_apply_and_plan() {
    requests_of_apply_and_plan(&GANDI, 1 + 3);
}

#[test]
fn ovh_foreign_write_racing_ours_survives() {
    foreign_write_racing_ours_survives(&OVH);
}

#[test]
fn ovh_rate_limit_is_honoured() {
    rate_limit_is_honoured(&OVH, "Client::TooManyRequests Too many requests");
}

#[tokio::test]
async fn ovh_long_txt_round_trips() {
    long_txt_round_trips(&OVH).await;
}

/// A refused signature (the wrong application secret) is an auth error quoting OVH's code.
#[test]
fn ovh_errors_quote_the_api() {
    errors_quote_the_api(&OVH);
}

/// OVH lists ids per name and a record per id: `/auth/time` once, one zone listing, then for
/// each of the six names one id listing and one GET per record there (six records).
#[test]
fn ovh_requests_of_apply_and_plan() {
    requests_of_apply_and_plan(&OVH, 1 + 1 + 6 + 6);
}

/// Changes go live only with `refresh`: one per zone and apply, after the record calls.
#[test]
fn ovh_refresh_follows_the_changes() {
    let b = Fake::start(&OVH);
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, false);
    dir.run(&["apply"]).assert_status(0);
    let requests = b.api.requests();
    let refreshes: Vec<usize> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.starts_with("POST /1.0/domain/zone/example.org/refresh"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(refreshes.len(), 1, "{requests:#?}");
    let last_write = requests
        .iter()
        .rposition(|r| r.starts_with("POST /1.0/domain/zone/example.org/record"))
        .unwrap();
    assert!(last_write < refreshes[0], "{requests:#?}");
    b.api.clear_requests();
    dir.run(&["apply"]).assert_status(0);
    assert!(
        !b.api.requests().iter().any(|r| r.contains("/refresh")),
        "an apply with nothing to change refreshed"
    );
}

/// `check` names each provider's kind and what it guarantees against a concurrent writer.
#[test]
fn check_prints_each_providers_guarantee() {
    let dir = ConfigDir::new();
    let key = dir.write(
        "k.key",
        crate::harness::tsig_key_file("mta-stsd", "hmac-sha256"),
    );
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let token = dir.write("api.token", "t\n");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut providers = format!(
        "[providers.ns]\nkind = \"rfc2136\"\nserver = \"127.0.0.1:53\"\ntsig_key = \"{}\"\n",
        key.display()
    );
    for kind in ["cloudflare", "hetzner", "desec", "digitalocean", "gandi"] {
        providers.push_str(&format!(
            "[providers.{kind}-1]\nkind = \"{kind}\"\napi_token_file = \"{}\"\n",
            token.display()
        ));
    }
    providers.push_str(&format!(
        "[providers.ovh-1]\nkind = \"ovh\"\nregion = \"ovh-ca\"\napplication_key_file = \"{0}\"\n\
         application_secret_file = \"{0}\"\nconsumer_key_file = \"{0}\"\n",
        token.display()
    ));
    battery::config_with(
        &providers.replace("[providers.ns]", "[providers.p]"),
        &dir,
        "",
        86400,
    );
    let out = dir.check();
    out.assert_status(0);
    for line in [
        "provider cloudflare-1: cloudflare, read-verify-write",
        "provider hetzner-1: hetzner, read-verify-write",
        "provider desec-1: desec, read-verify-write",
        "provider digitalocean-1: digitalocean, read-verify-write",
        "provider gandi-1: gandi, read-verify-write",
        "provider ovh-1: ovh, read-verify-write",
        "provider p: rfc2136, compare-and-swap",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "no `{line}`\n{}",
            out.dump()
        );
    }
}

/// The new kinds' keys: secrets only from files or the environment, unknown keys and a bad OVH
/// region refused at their place.
#[test]
fn check_refuses_inline_secrets_unknown_keys_and_bad_regions() {
    let dir = ConfigDir::new();
    let providers = "[providers.p]\nkind = \"hetzner\"\napi_token = \"inline\"\n\
                     [providers.d]\nkind = \"desec\"\napi_token_env = \"HOME\"\nzone_id = \"1\"\n\
                     [providers.o]\nkind = \"ovh\"\nregion = \"ovh-xx\"\napplication_key_env = \"HOME\"\n\
                     application_secret_env = \"HOME\"\nconsumer_key_env = \"HOME\"\n";
    battery::config_with(providers, &dir, "", 86400);
    let out = dir.check();
    out.assert_status(1);
    for want in [
        "`api_token`: secrets are not allowed inline",
        "zone_id",
        "region `ovh-xx` is not one of ovh-eu, ovh-ca, ovh-us",
    ] {
        assert!(out.stderr.contains(want), "no `{want}`\n{}", out.dump());
    }
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

#[tokio::test]
async fn desec_read_back_catches_a_lost_write() {
    read_back_catches_a_lost_write(&DESEC).await;
}

#[tokio::test]
async fn hetzner_read_back_catches_a_lost_write() {
    read_back_catches_a_lost_write(&HETZNER).await;
}

/// Two applies at once to one name through one provider of an API that replaces whole RRsets:
/// the per-name lock makes the second read after the first wrote, so both values stay and
/// neither apply fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gandi_writes_to_one_name_are_serialised() {
    let b = Fake::start(&GANDI);
    let p = b.provider();
    let zone = p.zone_of("a.example.org.").await.unwrap();
    let name = "_smtp._tls.a.example.org.";
    let one = add_txt("a.example.org", name, "one");
    let two = add_txt("a.example.org", name, "two");
    let (r1, r2) = tokio::join!(p.apply(&zone, &one), p.apply(&zone, &two));
    r1.unwrap();
    r2.unwrap();
    assert_eq!(sorted(b.query(name, "TXT")), vec!["one", "two"]);
}
