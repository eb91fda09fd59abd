//! ACME (issue 8): certificates from a real pebble, validated over the daemon's own listeners,
//! fetched by a client that trusts only pebble's root, kept in the store (SQLite here); reuse
//! across restarts, renewal, a dead ACME server, `orders_per_hour`. (Replicas sharing the
//! store are in `shared_store`.)

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use reqwest::StatusCode;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::harness::acme::{
    acme_section, acme_status, addr, client_trusting, config, fetch_policy, now, pebble_for,
    store_of, stored_leaf, wait_acme, wait_valid, Ports, A, ACME_DEADLINE, B, PATH,
};
use crate::harness::daemon::{eventually_within, plain_client, Daemon, TestCa};
use crate::harness::db;
use crate::harness::dns::free_port;
use crate::harness::pebble::{Pebble, PebbleOptions};
use crate::harness::{epoch, state_dir_for, ConfigDir, MAIN};

/// Obtains certificates for both names with `challenge`, serves them with their chain, and
/// keeps the state private. Returns the running pieces for more checks.
async fn obtain_both(challenge: &str) -> (Pebble, ConfigDir, Ports, Daemon) {
    let ports = Ports::new();
    let pebble = pebble_for(&ports).await;
    let dir = ConfigDir::with_config(&config(&ports, "", &acme_section(&pebble, challenge)));
    let d = Daemon::start(&dir.config_path());
    wait_valid(&d, &pebble, &["a.example", "b.example"]).await;
    let root = pebble.issuing_root().await;
    let client = client_trusting(&root, addr(ports.https));
    let store = store_of(&dir);
    for host in [A, B] {
        let served = fetch_policy(&client, host, ports.https).await;
        assert_eq!(
            served,
            db::leaf(&store, host).await,
            "{host}: not the stored certificate"
        );
        let chain = db::chain(&store, host).await.unwrap();
        assert!(
            chain.matches("BEGIN CERTIFICATE").count() >= 2,
            "{host}: no intermediate"
        );
    }
    // The store holds the keys: this user's only.
    let file = state_dir_for(&dir.config_path()).join("state.sqlite");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "state.sqlite");
    assert!(
        !dir.file("acme").exists(),
        "nothing written to the ACME state directory"
    );
    let m = d.metrics().await;
    assert!(
        m.contains("mta_stsd_acme_orders_total{result=\"ok\"} 2"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "mta_stsd_certificate_expiry_timestamp_seconds{{name=\"{A}\",source=\"acme\"}}"
        )),
        "{m}"
    );
    assert_eq!(pebble.issued(), 2, "{}", pebble.log());
    // Pebble logs each HTTP-01 request it makes (TLS-ALPN-01 it does silently).
    let http_validations = pebble
        .log()
        .matches("Attempting to validate w/ HTTP")
        .count();
    assert_eq!(
        http_validations > 0,
        challenge == "http-01",
        "{challenge}: {http_validations} HTTP validations\n{}",
        pebble.log()
    );
    (pebble, dir, ports, d)
}

#[tokio::test]
async fn tls_alpn_01_for_two_domains_then_a_restart_orders_nothing() {
    let (pebble, dir, ports, d) = obtain_both("tls-alpn-01").await;
    assert!(
        d.lines()
            .iter()
            .any(|l| l.contains("ordering a certificate")),
        "the first start ordered"
    );
    let store = store_of(&dir);
    let mut before = Vec::new();
    for h in [A, B] {
        before.push(db::chain(&store, h).await.unwrap());
    }
    drop(d);

    let d = Daemon::start(&dir.config_path());
    wait_valid(&d, &pebble, &["a.example", "b.example"]).await;
    let root = pebble.issuing_root().await;
    let client = client_trusting(&root, addr(ports.https));
    for (host, old) in [A, B].iter().zip(&before) {
        let served = fetch_policy(&client, host, ports.https).await;
        assert_eq!(served, db::leaf_of(old));
        let now = db::chain(&store, host).await.unwrap();
        assert_eq!(&now, old, "{host}: the stored certificate changed");
    }
    assert!(
        !d.lines()
            .iter()
            .any(|l| l.contains("ordering a certificate")),
        "ordered again after a restart:\n{}",
        d.lines().join("\n")
    );
    assert!(!d.metrics().await.contains("mta_stsd_acme_orders_total"));
    assert_eq!(pebble.issued(), 2, "pebble issued more:\n{}", pebble.log());
}

#[tokio::test]
async fn http_01_for_two_domains() {
    let (_pebble, _dir, _ports, d) = obtain_both("http-01").await;
    // The plain listener answers nothing but pending tokens: the order's answer is withdrawn.
    let r = plain_client()
        .get(format!(
            "http://{}/.well-known/acme-challenge/anything",
            d.http.unwrap()
        ))
        .header("host", A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_within_its_window() {
    let ports = Ports::new();
    let mut opts = PebbleOptions::new(ports.http, ports.https);
    opts.validity = Some(15);
    let pebble = Pebble::start(opts).await;
    let dir = ConfigDir::with_config(&config(&ports, "", &acme_section(&pebble, "tls-alpn-01")));
    let d = Daemon::start(&dir.config_path());
    let first = wait_acme(
        &d,
        "a.example",
        ACME_DEADLINE,
        || pebble.log(),
        |s| s["state"] == "valid",
    )
    .await;
    let not_after = epoch(&first["not_after"]).unwrap();
    let renew_at = epoch(&first["renew_at"]).unwrap();
    assert!(renew_at < not_after, "{first}");
    // [60 %, 75 %) of 15 s leaves 3.75 to 6 s, a second either way for pebble's rounding.
    assert!(
        (3..=7).contains(&(not_after - renew_at)),
        "renewal planned in [60 %, 75 %) of 15 s: {first}"
    );
    let old_leaf = stored_leaf(&dir, A).await;
    let second = wait_acme(
        &d,
        "a.example",
        ACME_DEADLINE,
        || pebble.log(),
        |s| s["state"] == "valid" && epoch(&s["not_after"]).is_some_and(|t| t > not_after),
    )
    .await;
    // Renewed before the old one ran out.
    assert!(
        epoch(&second["last_issued"]).unwrap() < not_after,
        "{second}"
    );
    let new_leaf = stored_leaf(&dir, A).await;
    assert_ne!(new_leaf, old_leaf);
    let root = pebble.issuing_root().await;
    let served = fetch_policy(&client_trusting(&root, addr(ports.https)), A, ports.https).await;
    assert!(
        served == new_leaf || stored_leaf(&dir, A).await == served,
        "the renewed certificate is served"
    );
}

#[tokio::test]
async fn a_dead_acme_server_is_retried_while_the_rest_is_served() {
    let ports = Ports::new();
    let acme_port = free_port();
    // a.example has its own certificate; b.example waits for ACME at a port nobody listens on.
    let ca = TestCa::new();
    let api_ca = TestCa::new();
    let dir = ConfigDir::new();
    let (cert, key) = ca.leaf(&[A]);
    dir.write("a.pem", cert);
    dir.write("a.key", key);
    let api_ca_file = dir.write("pebble-ca.pem", &api_ca.pem);
    let acme = format!(
        "directory = \"https://127.0.0.1:{acme_port}/dir\"\nca = \"{}\"\nstate = \"acme\"\n",
        api_ca_file.display()
    );
    dir.write(
        MAIN,
        config(
            &ports,
            "[tls]\ncerts = [{ cert = \"a.pem\", key = \"a.key\" }]",
            &acme,
        ),
    );
    let d = Daemon::start(&dir.config_path());
    let failed = wait_acme(&d, "b.example", ACME_DEADLINE, String::new, |s| {
        s["state"] == "failed" && s["attempts"].as_u64().is_some_and(|n| n >= 2)
    })
    .await;
    assert!(
        failed["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    assert!(
        epoch(&failed["next_attempt"]).is_some_and(|t| t >= now()),
        "{failed}"
    );
    assert!(d.status().await["domains"][0]["acme"].is_null());

    // Meanwhile a.example is served, and b.example's handshake fails cleanly.
    let https = addr(ports.https);
    let client = ca.client(&[A, B], https, false);
    let r = client
        .get(format!("https://{A}:{}{PATH}", ports.https))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(client
        .get(format!("https://{B}:{}{PATH}", ports.https))
        .send()
        .await
        .is_err());
    // A validation handshake with no challenge pending gets no certificate, not a's own.
    let mut alpn = ca.client_config();
    alpn.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let tcp = TcpStream::connect(https).await.unwrap();
    let name = ServerName::try_from(A).unwrap();
    assert!(tokio_rustls::TlsConnector::from(Arc::new(alpn))
        .connect(name, tcp)
        .await
        .is_err());
    let m = d.metrics().await;
    assert!(
        m.contains("mta_stsd_acme_orders_total{result=\"error\"}"),
        "{m}"
    );

    // The server comes up: the next retry gets the certificate.
    let mut opts = PebbleOptions::new(ports.http, ports.https);
    opts.listen_port = Some(acme_port);
    opts.api_ca = Some(api_ca);
    let pebble = Pebble::start(opts).await;
    wait_acme(
        &d,
        "b.example",
        ACME_DEADLINE,
        || pebble.log(),
        |s| s["state"] == "valid",
    )
    .await;
    let root = pebble.issuing_root().await;
    fetch_policy(&client_trusting(&root, https), B, ports.https).await;
}

/// `[acme] orders_per_hour = 1` with two names due: one is ordered, the other waits queued
/// in `/status` until that order leaves the hour, and pebble issues one certificate.
#[tokio::test]
async fn orders_per_hour_queues_what_exceeds_it() {
    let ports = Ports::new();
    let pebble = pebble_for(&ports).await;
    let acme = format!(
        "{}orders_per_hour = 1\n",
        acme_section(&pebble, "tls-alpn-01")
    );
    let dir = ConfigDir::with_config(&config(&ports, "", &acme));
    let d = Daemon::start(&dir.config_path());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Whichever name went first gets its certificate; the other is queued behind it.
    let states = || async {
        let a = acme_status(&d, "a.example").await;
        let b = acme_status(&d, "b.example").await;
        (a, b)
    };
    let queued = eventually_within(ACME_DEADLINE, "one valid and one queued", || async {
        let (a, b) = states().await;
        match (a["state"].as_str(), b["state"].as_str()) {
            (Some("valid"), Some("queued")) => Ok(b),
            (Some("queued"), Some("valid")) => Ok(a),
            _ => Err(format!("{a} {b}\n{}", pebble.log())),
        }
    })
    .await;
    let next = epoch(&queued["next_attempt"]).expect("a next attempt");
    assert!(
        next >= started + 3600 - 5 && next <= started + 3600 + 120,
        "next attempt {next}, started {started}: {queued}"
    );
    assert!(
        queued["detail"]
            .as_str()
            .is_some_and(|t| t.contains("orders_per_hour")),
        "{queued}"
    );
    assert!(queued["not_after"].is_null(), "{queued}");
    assert_eq!(pebble.issued(), 1, "{}", pebble.log());
}
