//! RFC 8461 §8.2 delegation against a real BIND serving two zones: ours
//! (`sts.provider.example.`, updatable with the daemon's key) and the customer's
//! (`customer.example.`, updatable only with the customer's key, which the daemon never has).

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::harness::daemon::{eventually, plain_client, Daemon};
use crate::harness::dns::{free_port, DnsServer, Kind, Options, TsigKey, Zone};
use crate::harness::ConfigDir;

const OURS: &str = "sts.provider.example.";
const CUSTOMER: &str = "customer.example.";

struct World {
    dns: DnsServer,
    customer_key: TsigKey,
    dir: ConfigDir,
    provider: String,
}

impl World {
    /// `customer.example` has set both CNAMEs; `shop.customer.example` (same zone) none.
    fn new() -> World {
        let key = TsigKey::generate("mta-stsd", "hmac-sha256");
        let customer_key = TsigKey::generate("customer", "hmac-sha256");
        let options = Options {
            more_zones: vec![Zone {
                name: CUSTOMER.into(),
                key: customer_key.clone(),
                records: vec![
                    "@ MX 10 mx1.customer.example.".into(),
                    "mx1 A 127.0.0.1".into(),
                    "www TXT \"unrelated\"".into(),
                    format!("_mta-sts CNAME customer.example.{OURS}"),
                    format!("mta-sts CNAME mail.{OURS}"),
                ],
            }],
            transfers: true,
            ..Options::default()
        };
        let dns = DnsServer::start_with(Kind::Bind, &options, OURS, &key, &["mail A 127.0.0.1"]);
        let dir = ConfigDir::new();
        let key_file = dns.key_file(dir.path());
        let provider = format!(
            "[providers.p]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n",
            dns.addr,
            key_file.display()
        );
        World {
            dns,
            customer_key,
            dir,
            provider,
        }
    }

    /// The config: both customer domains delegated (`[dns] delegated = true`), `more` appended.
    fn write(&self, domains: &[&str], more: &str) {
        let mut text = format!(
            "[server]\nhttps = [\"127.0.0.1:{https}\"]\nhttp = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n\
             [tls]\nself_signed = true\n\n[state]\nretire_after = \"1s\"\n\n\
             [policy]\nmode = \"enforce\"\nmx = [\"mx1.customer.example\"]\nmax_age = 4\n\n\
             [dns]\ntarget = \"mail.{OURS}\"\nprovider = \"p\"\ndelegated = true\n\n\
             [delegation]\nzone = \"{OURS}\"\n\n{}\n{more}\n",
            self.provider,
            https = free_port(),
        );
        for d in domains {
            text.push_str(&format!("[domains.\"{d}\"]\n"));
        }
        let tmp = self.dir.write(".next.toml", text);
        std::fs::rename(tmp, self.dir.config_path()).unwrap();
    }

    fn ours(&self, domain: &str) -> Vec<String> {
        self.dns.query(&format!("{domain}.{OURS}"), RecordType::TXT)
    }

    fn customer_zone(&self) -> String {
        self.dns.axfr(CUSTOMER, &self.customer_key)
    }

    fn id(&self, domain: &str) -> String {
        crate::providers::battery::policy_id(&self.dir, domain)
    }
}

/// Whitespace runs (zone-file tabs) as one space, lines kept.
fn words(text: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") + "\n")
        .collect()
}

fn sts(id: &str) -> Vec<String> {
    vec![format!("v=STSv1; id={id};")]
}

/// `records` shows the customer's CNAMEs apart from ours; `apply` writes only the delegation
/// zone, with a key that may update nothing else; the customer's zone stays byte for byte.
#[test]
fn delegated_publication_leaves_the_customer_zone_alone() {
    let w = World::new();
    w.write(&["customer.example", "shop.customer.example"], "");
    w.dir.check().assert_status(0);
    let before = w.customer_zone();
    // The daemon's key may not touch the customer's zone: nothing here relies on our good
    // behaviour alone.
    let refused = w.dns.nsupdate_zone(
        CUSTOMER,
        &w.dns.key,
        "update add x.customer.example. 300 TXT \"x\"",
    );
    assert!(!refused.status.success());

    let id = w.id("customer.example");
    let out = w.dir.run(&["records", "customer.example"]);
    out.assert_status(0);
    let text = words(&out.stdout);
    let customer_part = text.split("; ours,").next().expect("a customer part");
    for line in [
        format!("_mta-sts.customer.example. 3600 IN CNAME customer.example.{OURS}"),
        format!("mta-sts.customer.example. 3600 IN CNAME mail.{OURS}"),
    ] {
        assert!(customer_part.contains(&line), "{line}\n{}", out.dump());
    }
    let ours_part = text.split("; ours,").nth(1).expect("our part");
    assert!(
        ours_part.contains(&format!(
            "customer.example.{OURS} 3600 IN TXT \"v=STSv1; id={id};\""
        )),
        "{}",
        out.dump()
    );
    assert!(!ours_part.contains("_mta-sts."), "{}", out.dump());

    let plan = w.dir.run(&["plan"]);
    plan.assert_status(2);
    assert!(
        plan.stdout.contains(&format!("+ customer.example.{OURS}")),
        "{}",
        plan.dump()
    );
    assert!(!plan.stdout.contains("+ _mta-sts."), "{}", plan.dump());
    w.dir.run(&["apply"]).assert_status(0);
    assert_eq!(w.ours("customer.example"), sts(&id));
    assert_eq!(
        w.ours("shop.customer.example"),
        sts(&w.id("shop.customer.example"))
    );
    w.dir.run(&["plan"]).assert_status(0);
    // A sender asking for `_mta-sts.customer.example` is sent by the customer's CNAME to ours.
    assert_eq!(
        w.dns.query("_mta-sts.customer.example.", RecordType::CNAME),
        vec![format!("customer.example.{OURS}")]
    );
    assert_eq!(w.customer_zone(), before);
    assert!(
        !w.dns.dir().join("zone1.db.jnl").exists(),
        "the customer zone was updated"
    );
}

async fn domain_status(d: &Daemon, name: &str) -> Value {
    let s = d.status().await;
    s["domains"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["domain"] == name).cloned())
        .unwrap_or_else(|| panic!("{name} not in /status: {s}"))
}

/// Drift checks the customer's CNAMEs: a missing one is a finding naming the record to set,
/// and /status shows whether the customer side is in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_names_the_missing_customer_cname_and_status_shows_it() {
    let w = World::new();
    let drift = format!(
        "[drift]\ninterval = \"1h\"\nresolver = \"{}\"\ndns_port = {}\nsmtp = false\n",
        w.dns.addr,
        w.dns.addr.port()
    );
    w.write(&["customer.example", "shop.customer.example"], &drift);
    w.dir.run(&["apply"]).assert_status(0);
    let d = Daemon::start(&w.dir.config_path());
    let side = |v: &Value| v["delegation"]["customer_side"].as_str().map(str::to_owned);
    let shop = eventually("drift's first run in /status", || async {
        let s = domain_status(&d, "shop.customer.example").await;
        (side(&s).as_deref() != Some("not checked")).then_some(s)
    })
    .await;
    assert_eq!(side(&shop).as_deref(), Some("missing"), "{shop}");
    assert_eq!(shop["delegation"]["zone"], OURS, "{}", shop["delegation"]);
    let c = domain_status(&d, "customer.example").await;
    assert_eq!(side(&c).as_deref(), Some("in place"), "{c}");

    let of_check =
        |out: &crate::harness::Output, domain: &str, check: &str| -> Vec<(String, String)> {
            let v: Value = serde_json::from_str(&out.stdout).expect("drift JSON");
            v["domains"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["domain"] == domain)
                .flat_map(|x| x["findings"].as_array().unwrap().clone())
                .filter(|f| f["check"] == check)
                .map(|f| {
                    (
                        f["severity"].as_str().unwrap().to_owned(),
                        words(f["hint"].as_str().unwrap()),
                    )
                })
                .collect()
        };
    let findings = |out: &crate::harness::Output, domain: &str| of_check(out, domain, "delegation");
    let run = || w.dir.run(&["drift", "--format", "json"]);
    let clean = run();
    assert_eq!(findings(&clean, "customer.example"), vec![]);
    // What a sender resolves through the CNAME is our TXT with the served id.
    assert_eq!(
        of_check(&clean, "customer.example", "sts-txt"),
        vec![],
        "{}",
        clean.dump()
    );
    // The customer deletes their `_mta-sts` CNAME: critical, naming the record to put back.
    let out = w.dns.nsupdate_zone(
        CUSTOMER,
        &w.customer_key,
        "update delete _mta-sts.customer.example. CNAME",
    );
    assert!(out.status.success());
    let f = findings(&run(), "customer.example");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "critical");
    assert!(
        f[0].1.contains(&format!(
            "_mta-sts.customer.example. 3600 IN CNAME customer.example.{OURS}"
        )),
        "{f:?}"
    );
    // shop has neither CNAME: one finding for each, each naming its record.
    let f = findings(&run(), "shop.customer.example");
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(
        f.iter().any(|(_, h)| h.contains(&format!(
            "mta-sts.shop.customer.example. 3600 IN CNAME mail.{OURS}"
        ))),
        "{f:?}"
    );
    let _ = plain_client;
}

/// Retirement (RFC 8461 §8.3) of a delegated domain: `mode: none` under a new id at our
/// delegated name, then our TXT withdrawn; the customer's zone never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_delegated_domain_retires_in_the_delegation_zone() {
    let w = World::new();
    w.write(&["customer.example", "shop.customer.example"], "");
    let before = w.customer_zone();
    let shop_id = w.id("shop.customer.example");
    let d = Daemon::start(&w.dir.config_path());
    eventually("shop published", || async {
        (w.ours("shop.customer.example") == sts(&shop_id)).then_some(())
    })
    .await;
    w.write(&["customer.example"], "");
    let none_id = eventually("shop retiring under a new id", || async {
        let s = domain_status(&d, "shop.customer.example").await;
        (s["lifecycle"]["state"] == "retiring").then(|| s["policy_id"].as_str().unwrap().to_owned())
    })
    .await;
    assert_ne!(none_id, shop_id);
    eventually("the retiring id at our delegated name", || async {
        (w.ours("shop.customer.example") == sts(&none_id)).then_some(())
    })
    .await;
    eventually("our TXT withdrawn after max_age", || async {
        w.ours("shop.customer.example").is_empty().then_some(())
    })
    .await;
    assert_eq!(w.ours("customer.example"), sts(&w.id("customer.example")));
    assert_eq!(w.customer_zone(), before);
}

/// `delegated = true` needs `[delegation]`; a delegated domain's `zone` is refused (its zone
/// is the customer's; ours is the delegation zone).
#[test]
fn delegation_config_errors_have_their_place() {
    let dir = ConfigDir::new();
    let text = "[server]\nhttps = []\nhttp = [\"127.0.0.1:0\"]\n\n[policy]\nmode = \"enforce\"\nmx = [\"mx.example\"]\n\n[domains.\"a.example\"]\ndelegated = true\n";
    let f = dir.write(crate::harness::MAIN, text);
    let out = dir.check();
    out.assert_status(1);
    out.assert_error(
        &f,
        crate::harness::pos1(text, "true"),
        "needs a [delegation] section",
    );
    let text =
        format!("{text}zone = \"a.example\"\n\n[delegation]\nzone = \"sts.provider.example\"\n");
    let f = dir.write(crate::harness::MAIN, &text);
    let out = dir.check();
    out.assert_status(1);
    out.assert_error(
        &f,
        crate::harness::pos1(&text, "\"a.example\"\n"),
        "does not apply to the delegated domain",
    );
    out.assert_error_count(1);
}
