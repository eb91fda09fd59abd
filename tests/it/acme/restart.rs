//! The CA's limits survive a restart (issue 16): the `Retry-After` of a `rateLimited` problem,
//! the orders of the hour under `[acme] orders_per_hour`, and damaged limits in the store
//! taken as the hour used up. Each daemon is killed (SIGKILL, nothing written on the way out)
//! and started again on the same store; orders are counted at the fault proxy in front of a
//! real pebble.

use crate::harness::acme::pebble_for;
use crate::harness::acme::wait_valid;
use crate::harness::daemon::eventually_within;
use std::time::Duration;

use serde_json::Value;

use crate::acme::scale::acme_via;
use crate::harness::acme::{acme_status, config, store_of, wait_acme, Ports, ACME_DEADLINE};
use crate::harness::acme_proxy::FaultProxy;
use crate::harness::daemon::Daemon;
use crate::harness::pebble::Pebble;
use crate::harness::{db, epoch, ConfigDir};

/// `Retry-After` of the refusals: well past a restart.
const RETRY_AFTER: u64 = 8;

/// The limits document in the store (one per directory URL), once there is one.
async fn limits(dir: &ConfigDir) -> Option<String> {
    db::texts(
        &store_of(dir),
        "SELECT limits FROM store_acme_limits WHERE directory NOT LIKE '%#damaged'",
    )
    .await
    .into_iter()
    .next()
}

/// Polls until `ok` holds for the limits document.
async fn wait_limits(dir: &ConfigDir, what: &str, ok: impl Fn(&str) -> bool) {
    let what = format!("the limits in the store: {what}");
    eventually_within(ACME_DEADLINE, &what, || async {
        match limits(dir).await {
            Some(t) if ok(&t) => Ok(()),
            last => Err(format!("{last:?}")),
        }
    })
    .await
}

/// Both first newOrders are refused (`rateLimited` for the account, `Retry-After: 8`); the
/// daemon is killed once the wait is shown and written, and started again: it shows both
/// names waiting with the same next attempt and the same pause, sends no newOrder before
/// the 8 s have passed, then gets both certificates.
#[tokio::test]
async fn a_restart_keeps_the_cas_retry_after() {
    let ports = Ports::new();
    let pebble = pebble_for(&ports).await;
    let proxy = FaultProxy::start(&pebble, 2, &RETRY_AFTER.to_string()).await;
    let dir = ConfigDir::with_config(&config(&ports, "", &acme_via(&proxy.directory(), &pebble)));
    let waiting = |s: &Value| {
        s["state"] == "queued"
            && s["detail"]
                .as_str()
                .is_some_and(|t| t.contains("rateLimited"))
    };
    let d = Daemon::start(&dir.config_path());
    let mut before = Vec::new();
    for domain in ["a.example", "b.example"] {
        before.push(wait_acme(&d, domain, ACME_DEADLINE, || pebble.log(), waiting).await);
    }
    let paused = d.status().await["acme"]["paused_until"].clone();
    assert!(epoch(&paused).is_some(), "{paused}");
    // Both refusals written down (the pause and each name's wait).
    wait_limits(&dir, "held both waits", |t| {
        t.contains("mta-sts.a.example") && t.contains("mta-sts.b.example") && t.contains("pause")
    })
    .await;
    drop(d);
    let refused_at = proxy.new_orders().iter().map(|o| o.at).max().unwrap();
    assert_eq!(proxy.new_orders().len(), 2, "{:?}", proxy.new_orders());

    let d = Daemon::start(&dir.config_path());
    for (domain, was) in ["a.example", "b.example"].iter().zip(&before) {
        let s = wait_acme(&d, domain, ACME_DEADLINE, || pebble.log(), waiting).await;
        assert_eq!(
            s["next_attempt"], was["next_attempt"],
            "{domain}: the same next attempt after the restart: {s} (before: {was})"
        );
        assert_eq!(s["attempts"], 0, "a rate limit is no failure: {s}");
    }
    let top = d.status().await["acme"].clone();
    assert_eq!(top["paused_until"], paused, "{top}");
    wait_valid(&d, &pebble, &["a.example", "b.example"]).await;
    let orders = proxy.new_orders();
    let forwarded: Vec<_> = orders.iter().filter(|o| !o.refused).collect();
    assert_eq!(forwarded.len(), 2, "one order per name: {orders:?}");
    for o in forwarded {
        let after = o.at.duration_since(refused_at);
        assert!(
            after >= Duration::from_secs(RETRY_AFTER),
            "{:?} ordered {after:?} after the 429 (Retry-After: {RETRY_AFTER}), across a \
             restart\n{}",
            o.names,
            d.lines().join("\n")
        );
    }
    assert!(d
        .lines()
        .iter()
        .any(|l| l.contains("the CA's limits as the last run left them")));
}

/// Three names, `orders_per_hour = 2`: two are ordered, the third waits for the hour to pass.
/// Returns the daemon, that third name and its `/status`.
async fn use_up_the_hour(dir: &ConfigDir, pebble: &Pebble) -> (Daemon, &'static str, Value) {
    let d = Daemon::start(&dir.config_path());
    let what = "two names valid and one queued by orders_per_hour";
    let (domain, s) = eventually_within(ACME_DEADLINE, what, || async {
        let mut valid = 0;
        let mut queued = None;
        let mut seen = Vec::new();
        for domain in DOMAINS {
            let s = acme_status(&d, domain).await;
            valid += usize::from(s["state"] == "valid");
            seen.push(s.to_string());
            if s["detail"]
                .as_str()
                .is_some_and(|t| t.contains("orders_per_hour"))
            {
                queued = Some((domain, s));
            }
        }
        match (valid, queued) {
            (2, Some(found)) => Ok(found),
            _ => Err(format!("{}\n{}", seen.join("\n"), pebble.log())),
        }
    })
    .await;
    (d, domain, s)
}

const DOMAINS: [&str; 3] = ["a.example", "b.example", "c.example"];

fn three_names(ports: &Ports, acme: &str) -> String {
    config(ports, "", &format!("{acme}orders_per_hour = 2\n")).replace(
        "[domains.\"b.example\"]\n",
        "[domains.\"b.example\"]\n\n[domains.\"c.example\"]\n",
    )
}

/// After a restart the name still waits for the same hour, and nothing is ordered.
async fn still_waits(d: &Daemon, domain: &str, was: &Value, proxy: &FaultProxy, pebble: &Pebble) {
    let s = wait_acme(
        d,
        domain,
        ACME_DEADLINE,
        || pebble.log(),
        |s| {
            s["state"] == "queued"
                && s["detail"]
                    .as_str()
                    .is_some_and(|t| t.contains("orders_per_hour"))
        },
    )
    .await;
    let (next, then) = (epoch(&s["next_attempt"]), epoch(&was["next_attempt"]));
    assert!(
        next.is_some_and(|n| n >= then.unwrap()),
        "{domain} waits at least as long as before: {s} (before: {was})"
    );
    for other in DOMAINS.iter().filter(|o| **o != domain) {
        wait_acme(
            d,
            other,
            ACME_DEADLINE,
            || pebble.log(),
            |s| s["state"] == "valid",
        )
        .await;
    }
    assert_eq!(
        proxy.new_orders().len(),
        2,
        "ordered again after the restart: {:?}\n{}",
        proxy.new_orders(),
        d.lines().join("\n")
    );
}

/// `orders_per_hour = 2` used up by two of three names, then a restart: the certificates are
/// read from the store, the third name still waits for the same hour, and no newOrder
/// reaches the proxy.
#[tokio::test]
async fn a_restart_keeps_the_hours_orders() {
    let ports = Ports::new();
    let pebble = pebble_for(&ports).await;
    let proxy = FaultProxy::start(&pebble, 0, "0").await;
    let dir = ConfigDir::with_config(&three_names(&ports, &acme_via(&proxy.directory(), &pebble)));
    let (d, queued, was) = use_up_the_hour(&dir, &pebble).await;
    assert_eq!(proxy.new_orders().len(), 2, "{:?}", proxy.new_orders());
    drop(d);

    let d = Daemon::start(&dir.config_path());
    still_waits(&d, queued, &was, &proxy, &pebble).await;
    let s = acme_status(&d, queued).await;
    assert_eq!(s["next_attempt"], was["next_attempt"], "the same hour: {s}");
}

/// As above, but the limits in the store are damaged before the restart: the daemon starts,
/// logs an error, keeps a copy (`<directory>#damaged`), takes the hour as used up (it cannot
/// know otherwise) and orders nothing; and it wrote that down: a second restart still orders
/// nothing.
#[tokio::test]
async fn damaged_limits_are_an_hour_used_up() {
    let ports = Ports::new();
    let pebble = pebble_for(&ports).await;
    let proxy = FaultProxy::start(&pebble, 0, "0").await;
    let dir = ConfigDir::with_config(&three_names(&ports, &acme_via(&proxy.directory(), &pebble)));
    let (d, queued, was) = use_up_the_hour(&dir, &pebble).await;
    drop(d);
    assert!(limits(&dir).await.is_some(), "limits in the store");
    db::execute(
        &store_of(&dir),
        "UPDATE store_acme_limits SET limits = '{\"version\": 1, \"orders\": [{\"at\": 17'",
    )
    .await;

    let d = Daemon::start(&dir.config_path());
    still_waits(&d, queued, &was, &proxy, &pebble).await;
    assert!(
        d.lines()
            .iter()
            .any(|l| l.contains("ERROR") && l.contains("limits in the store are unreadable")),
        "no error about the limits:\n{}",
        d.lines().join("\n")
    );
    let aside = db::texts(
        &store_of(&dir),
        "SELECT limits FROM store_acme_limits WHERE directory LIKE '%#damaged'",
    )
    .await;
    assert_eq!(
        aside,
        vec!["{\"version\": 1, \"orders\": [{\"at\": 17".to_owned()]
    );
    wait_limits(&dir, "was written again", |t| {
        t.contains("\"at\"") && !t.ends_with("17")
    })
    .await;
    drop(d);

    let d = Daemon::start(&dir.config_path());
    still_waits(&d, queued, &was, &proxy, &pebble).await;
    assert!(
        !d.lines().iter().any(|l| l.contains("ERROR")),
        "{}",
        d.lines().join("\n")
    );
}
