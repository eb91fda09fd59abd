//! ACME at scale (issue 16): the CA's `rateLimited` problem and `Retry-After` honoured, from a
//! fault-injecting proxy in front of a real pebble; new names before renewals; on-demand
//! issuance.

use crate::harness::acme::pebble_for;
use crate::harness::daemon::eventually_within;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::harness::acme::{
    acme_section, acme_status, addr, client_trusting, config, fetch_policy, store_of, stored_leaf,
    wait_acme, Ports, ACME_DEADLINE,
};
use crate::harness::acme_proxy::FaultProxy;
use crate::harness::daemon::{Daemon, TestCa};
use crate::harness::pebble::{Pebble, PebbleOptions};
use crate::harness::{epoch, ConfigDir};

const A: &str = "mta-sts.a.example";
const B: &str = "mta-sts.b.example";

/// `[acme]` pointing at `directory` (the proxy), trusting pebble's API CA.
pub(crate) fn acme_via(directory: &str, pebble: &Pebble) -> String {
    format!(
        "directory = \"{directory}\"\nchallenge = \"tls-alpn-01\"\nca = \"{}\"\nstate = \"acme\"\n",
        pebble.ca_file().display()
    )
}

/// Both first newOrders are answered `rateLimited` with `Retry-After: 3` (an account-wide
/// limit, as the problem names no domain): no order reaches pebble before those 3 s have
/// passed, `/status` shows the wait meanwhile without counting a failure, then both names
/// get their certificates.
#[tokio::test]
async fn a_rate_limited_new_order_waits_for_retry_after_then_is_issued() {
    let ports = Ports::new();
    let pebble = pebble_for(&ports).await;
    let proxy = FaultProxy::start(&pebble, 2, "3").await;
    let dir = ConfigDir::with_config(&config(&ports, "", &acme_via(&proxy.directory(), &pebble)));
    let d = Daemon::start(&dir.config_path());
    let logs = || {
        format!(
            "{}\n{}\n{:?}",
            d.lines().join("\n"),
            pebble.log(),
            proxy.new_orders()
        )
    };

    // What /status showed on the way (the first wait of each name), kept across the polls.
    let waits: RefCell<Vec<Option<Value>>> = RefCell::new(vec![None, None]);
    let top: RefCell<Option<Value>> = RefCell::new(None);
    eventually_within(ACME_DEADLINE, "both names valid", || async {
        let mut valid = 0;
        for (i, domain) in ["a.example", "b.example"].iter().enumerate() {
            let s = acme_status(&d, domain).await;
            let waiting = s["state"] == "queued"
                && s["detail"]
                    .as_str()
                    .is_some_and(|t| t.contains("rateLimited"));
            if waiting && waits.borrow()[i].is_none() {
                waits.borrow_mut()[i] = Some(s.clone());
                let acme = d.status().await["acme"].clone();
                top.borrow_mut().get_or_insert(acme);
            }
            valid += usize::from(s["state"] == "valid");
        }
        if valid == 2 {
            Ok(())
        } else {
            Err(logs())
        }
    })
    .await;
    let (waits, top) = (waits.into_inner(), top.into_inner());

    // The wait as /status showed it: queued, until a time in the future, no failure.
    for (w, domain) in waits.iter().zip(["a.example", "b.example"]) {
        let w = w
            .as_ref()
            .unwrap_or_else(|| panic!("{domain}: the wait never showed in /status\n{}", logs()));
        assert_eq!(w["attempts"], 0, "a rate limit is no failure: {w}");
        assert!(w["last_error"].is_null(), "{w}");
        assert!(epoch(&w["next_attempt"]).is_some(), "{w}");
        assert!(
            w["detail"].as_str().unwrap().contains("every name"),
            "an account-wide limit: {w}"
        );
    }
    let top = top.unwrap();
    assert!(epoch(&top["paused_until"]).is_some(), "{top}");
    assert!(
        top["paused_why"]
            .as_str()
            .is_some_and(|t| t.contains("rateLimited")),
        "{top}"
    );

    // At the proxy: two refused, then nothing forwarded before Retry-After had passed.
    let orders = proxy.new_orders();
    let refused: Vec<_> = orders.iter().filter(|o| o.refused).collect();
    assert_eq!(refused.len(), 2, "{orders:?}");
    let mut asked: Vec<&str> = refused.iter().map(|o| o.names[0].as_str()).collect();
    asked.sort();
    assert_eq!(asked, [A, B], "{orders:?}");
    let last_refusal = refused.iter().map(|o| o.at).max().unwrap();
    let forwarded: Vec<_> = orders.iter().filter(|o| !o.refused).collect();
    assert_eq!(
        forwarded.len(),
        2,
        "one order per name after the wait: {orders:?}"
    );
    for o in &forwarded {
        let after = o.at.duration_since(last_refusal);
        assert!(
            after >= Duration::from_secs(3),
            "{:?} ordered {after:?} after the last 429 (Retry-After: 3)\n{}",
            o.names,
            logs()
        );
    }
    assert_eq!(pebble.issued(), 2, "{}", pebble.log());
    let m = d.metrics().await;
    assert!(
        m.contains("mta_stsd_acme_orders_total{result=\"throttled\"} 2"),
        "{m}"
    );
    assert!(!m.contains("acme_orders_total{result=\"error\"}"), "{m}");
    let root = pebble.issuing_root().await;
    let client = client_trusting(&root, addr(ports.https));
    for host in [A, B] {
        fetch_policy(&client, host, ports.https).await;
    }
}

/// With `orders_per_hour = 1`, a name without a certificate goes before a renewal that is due
/// as well (and would come first by name): the new name is ordered, the renewal waits queued
/// with the reason in `/status`, and its old certificate is still served.
#[tokio::test]
async fn a_new_name_is_ordered_before_a_due_renewal() {
    let ports = Ports::new();
    let pebble = pebble_for(&ports).await;
    let dir = ConfigDir::with_config(&config(
        &ports,
        "",
        &format!(
            "{}orders_per_hour = 1\n",
            acme_section(&pebble, "tls-alpn-01")
        ),
    ));
    // a's certificate is valid for ten more days but 80 of its 90 days are gone: past any
    // point of the renewal window.
    let ca = TestCa::new();
    let now = time::OffsetDateTime::now_utc();
    let (cert, key) = ca.leaf_with(&[A], |p| {
        p.not_before = now - time::Duration::days(80);
        p.not_after = now + time::Duration::days(10);
    });
    let state = dir.file("acme");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join(format!("{A}.key")), key).unwrap();
    std::fs::write(state.join(format!("{A}.crt")), &cert).unwrap();
    let started = now.unix_timestamp();

    let d = Daemon::start(&dir.config_path());
    let b = wait_acme(
        &d,
        "b.example",
        ACME_DEADLINE,
        || pebble.log(),
        |s| s["state"] == "valid" && !s["last_issued"].is_null(),
    )
    .await;
    let a = wait_acme(
        &d,
        "a.example",
        ACME_DEADLINE,
        || pebble.log(),
        |s| {
            s["detail"]
                .as_str()
                .is_some_and(|t| t.contains("orders_per_hour"))
        },
    )
    .await;
    assert!(b["detail"].is_null(), "{b}");
    // Still serving its old certificate, renewal due, waiting for the hour to pass.
    assert_eq!(a["state"], "valid", "{a}");
    assert!(a["last_issued"].is_null(), "{a}");
    assert!(epoch(&a["renew_at"]).is_some_and(|t| t <= started), "{a}");
    let next = epoch(&a["next_attempt"]).expect("a next attempt");
    assert!(
        next >= started + 3600 - 5 && next <= started + 3600 + 120,
        "next attempt {next}, started {started}: {a}"
    );
    assert_eq!(pebble.issued(), 1, "{}", pebble.log());
    assert_eq!(
        crate::harness::db::chain(&store_of(&dir), A).await.unwrap(),
        cert,
        "a was not renewed (the certificate imported from the state directory)"
    );
    let served = fetch_policy(&ca.client(&[A], addr(ports.https), false), A, ports.https).await;
    assert_eq!(served, stored_leaf(&dir, A).await);
    let top = d.status().await["acme"].clone();
    assert_eq!(top["names"]["valid"], 2, "{top}");
}

/// `[acme] on_demand = true` with twelve names, ordered four at a time in name order: a
/// handshake for the last of them (twenty, in fact) moves it to the front, so its order is
/// among the first eight, not the last four; a handshake for a name not in the config does
/// nothing.
#[tokio::test]
async fn on_demand_a_handshake_moves_its_name_to_the_front() {
    let ports = Ports::new();
    let pebble = pebble_for(&ports).await;
    let proxy = FaultProxy::start(&pebble, 0, "0").await;
    let names: Vec<String> = (0..12).map(|i| format!("d{i:02}.example")).collect();
    let domains: String = names
        .iter()
        .map(|n| format!("[domains.\"{n}\"]\n"))
        .collect();
    let dir = ConfigDir::with_config(&format!(
        r#"[server]
https = ["127.0.0.1:{https}"]
http = ["127.0.0.1:{http}"]
admin = "127.0.0.1:0"

[policy]
mode = "enforce"
mx = ["mail.example"]
max_age = 86400

{domains}
[acme]
{acme}on_demand = true
"#,
        https = ports.https,
        http = ports.http,
        acme = acme_via(&proxy.directory(), &pebble),
    ));
    let d = Daemon::start(&dir.config_path());
    let last = "mta-sts.d11.example";
    let tls = Arc::new(TestCa::new().client_config());
    for host in std::iter::repeat_n(last, 20).chain(["mta-sts.unknown.example"]) {
        let tcp = TcpStream::connect(addr(ports.https)).await.unwrap();
        let name = ServerName::try_from(host.to_owned()).unwrap();
        // No certificate yet (or not ours): the handshake fails, the name is queued.
        let _ = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await;
    }
    wait_acme(
        &d,
        "d11.example",
        ACME_DEADLINE,
        || pebble.log(),
        |s| s["state"] == "valid",
    )
    .await;
    let orders = proxy.new_orders();
    let at = orders
        .iter()
        .position(|o| o.names == [last])
        .unwrap_or_else(|| panic!("{last} never ordered: {orders:?}"));
    assert!(
        at < 8,
        "{last} was order {} of {}: {:?}\n{}",
        at + 1,
        orders.len(),
        orders.iter().map(|o| &o.names[0]).collect::<Vec<_>>(),
        d.lines().join("\n")
    );
    let asked = d
        .lines()
        .iter()
        .filter(|l| l.contains("a handshake asked for it"))
        .count();
    assert_eq!(asked, 1, "{}", d.lines().join("\n"));
    assert!(!d
        .lines()
        .iter()
        .any(|l| l.contains("unknown.example") && l.contains("ACME")));
}

/// Where the CA offers renewal information (RFC 9773; added by the proxy, as pebble here
/// has none), its window wins: a 30 s certificate whose window opens 8 s after issuance is
/// renewed then, not at our own point in [60 %, 75 %) (18 s or later).
#[tokio::test]
async fn the_cas_renewal_window_wins_over_our_point() {
    let ports = Ports::new();
    let mut opts = PebbleOptions::new(ports.http, ports.https);
    opts.validity = Some(30);
    let pebble = Pebble::start(opts).await;
    let proxy = FaultProxy::with_ari(&pebble, 8).await;
    let dir = ConfigDir::with_config(&config(&ports, "", &acme_via(&proxy.directory(), &pebble)));
    let d = Daemon::start(&dir.config_path());
    let first = wait_acme(
        &d,
        "a.example",
        ACME_DEADLINE,
        || pebble.log(),
        |s| s["state"] == "valid" && !s["last_issued"].is_null(),
    )
    .await;
    let not_after = epoch(&first["not_after"]).unwrap();
    let issued = epoch(&first["last_issued"]).unwrap();
    let renew_at = epoch(&first["renew_at"]).unwrap();
    assert!(
        renew_at < not_after - 30 * 25 / 100 - 2 && renew_at <= issued + 10,
        "the CA's window, not our point: {first}"
    );
    let second = wait_acme(
        &d,
        "a.example",
        ACME_DEADLINE,
        || pebble.log(),
        |s| epoch(&s["not_after"]).is_some_and(|t| t > not_after),
    )
    .await;
    let renewed = epoch(&second["last_issued"]).unwrap();
    assert!(
        (issued + 7..issued + 16).contains(&renewed),
        "renewed {} s after issuance (window at 8 s, our point at 18 s or later): {second}\n{}",
        renewed - issued,
        d.lines().join("\n")
    );
    assert!(proxy.ari_asked() >= 2, "{}", proxy.ari_asked());
}
