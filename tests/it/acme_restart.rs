//! The CA's limits survive a restart (issue 16): the `Retry-After` of a `rateLimited` problem,
//! the orders of the hour under `[acme] orders_per_hour`, and a damaged limits file taken
//! as the hour used up. Each daemon is killed (SIGKILL, nothing written on the way out) and
//! started again on the same state directory; orders are counted at the fault proxy in
//! front of a real pebble.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::acme::{acme_status, config, wait_acme, Ports, ACME_DEADLINE};
use crate::acme_scale::acme_via;
use crate::harness::acme_proxy::FaultProxy;
use crate::harness::daemon::Daemon;
use crate::harness::pebble::{Pebble, PebbleOptions};
use crate::harness::{epoch, ConfigDir};

/// `Retry-After` of the refusals: well past a restart.
const RETRY_AFTER: u64 = 8;

/// The limits file in the ACME state directory (one per directory URL), once there is one.
fn limits_file(state: &Path) -> Option<PathBuf> {
    std::fs::read_dir(state).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        (name.starts_with("limits-") && name.ends_with(".json")).then(|| e.path())
    })
}

/// Polls until `ok` holds for the limits file's text.
async fn wait_file(state: &Path, what: &str, ok: impl Fn(&str) -> bool) -> PathBuf {
    let deadline = Instant::now() + ACME_DEADLINE;
    loop {
        if let Some(p) = limits_file(state) {
            if std::fs::read_to_string(&p).is_ok_and(|t| ok(&t)) {
                return p;
            }
        }
        assert!(Instant::now() < deadline, "the limits file never {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Both first newOrders are refused (`rateLimited` for the account, `Retry-After: 8`); the
/// daemon is killed once the wait is shown and written, and started again: it shows both
/// names waiting with the same next attempt and the same pause, sends no newOrder before
/// the 8 s have passed, then gets both certificates.
#[tokio::test]
async fn a_restart_keeps_the_cas_retry_after() {
    let ports = Ports::new();
    let pebble = Pebble::start(PebbleOptions::new(ports.http, ports.https)).await;
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
    wait_file(&dir.file("acme"), "held both waits", |t| {
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
    for domain in ["a.example", "b.example"] {
        wait_acme(
            &d,
            domain,
            ACME_DEADLINE,
            || pebble.log(),
            |s| s["state"] == "valid",
        )
        .await;
    }
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
    let deadline = Instant::now() + ACME_DEADLINE;
    loop {
        let mut valid = 0;
        let mut queued = None;
        for domain in DOMAINS {
            let s = acme_status(&d, domain).await;
            valid += usize::from(s["state"] == "valid");
            if s["detail"]
                .as_str()
                .is_some_and(|t| t.contains("orders_per_hour"))
            {
                queued = Some((domain, s));
            }
        }
        if let (2, Some((domain, s))) = (valid, queued) {
            return (d, domain, s);
        }
        assert!(
            Instant::now() < deadline,
            "not two valid and one queued\n{}\n{}",
            d.lines().join("\n"),
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let pebble = Pebble::start(PebbleOptions::new(ports.http, ports.https)).await;
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

/// As above, but the limits file is damaged before the restart: the daemon starts, logs an
/// error naming the file, moves it aside, takes the hour as used up (it cannot know
/// otherwise) and orders nothing; and it wrote that down: a second restart still orders
/// nothing.
#[tokio::test]
async fn a_damaged_limits_file_is_an_hour_used_up() {
    let ports = Ports::new();
    let pebble = Pebble::start(PebbleOptions::new(ports.http, ports.https)).await;
    let proxy = FaultProxy::start(&pebble, 0, "0").await;
    let dir = ConfigDir::with_config(&three_names(&ports, &acme_via(&proxy.directory(), &pebble)));
    let (d, queued, was) = use_up_the_hour(&dir, &pebble).await;
    drop(d);
    let file = limits_file(&dir.file("acme")).expect("a limits file");
    std::fs::write(&file, b"{\"version\": 1, \"orders\": [{\"at\": 17").unwrap();

    let d = Daemon::start(&dir.config_path());
    still_waits(&d, queued, &was, &proxy, &pebble).await;
    let shown = file.display().to_string();
    assert!(
        d.lines()
            .iter()
            .any(|l| l.contains("ERROR") && l.contains(&shown)),
        "no error naming {shown}:\n{}",
        d.lines().join("\n")
    );
    assert!(file.with_extension("json.damaged").exists());
    wait_file(&dir.file("acme"), "was written again", |t| {
        t.contains("\"at\"")
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
