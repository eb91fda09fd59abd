//! Each vendor: its [`Vendor`], the battery, the shared scenarios, and its own tests.

use std::time::{Duration, Instant};

use mta_stsd_providers::{Changes, DomainChange, Secret};

use super::*;
use crate::harness::{desec, digitalocean, gandi, hetzner, ovh, ConfigDir};
use crate::providers::battery;

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

crate::battery!(hetzner_battery, || Fake::start(&HETZNER));
crate::battery!(desec_battery, || Fake::start(&DESEC));
crate::battery!(digitalocean_battery, || Fake::start(&DIGITALOCEAN));
crate::battery!(gandi_battery, || Fake::start(&GANDI));
crate::battery!(ovh_battery, || Fake::start(&OVH));

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

#[test]
fn hetzner_publishes_tlsa() {
    tlsa_is_published(&HETZNER);
}

#[test]
fn desec_publishes_tlsa() {
    tlsa_is_published(&DESEC);
}

#[test]
fn gandi_publishes_tlsa() {
    tlsa_is_published(&GANDI);
}

#[test]
fn ovh_publishes_tlsa() {
    tlsa_is_published(&OVH);
}

#[test]
fn digitalocean_refuses_tlsa() {
    tlsa_is_refused(&DIGITALOCEAN);
}
