//! ACME between replicas sharing one store (SQLite here): the lease another replica holds
//! defers the order and its certificate is picked up; one replica orders while the other,
//! where the CA's validation arrives, answers from the store and serves what was stored.

use std::time::Duration;

use reqwest::StatusCode;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::harness::acme::{
    acme_section, addr, client_trusting, config, fetch_policy, now, store_of, wait_acme,
    wait_valid, Ports, A, ACME_DEADLINE, B,
};
use crate::harness::daemon::{eventually, plain_client, Daemon, TestCa};
use crate::harness::db;
use crate::harness::dns::free_port;
use crate::harness::pebble::{Pebble, PebbleOptions};
use crate::harness::{state_dir_for, ConfigDir, MAIN};

/// Another replica holds the lease `acme:mta-sts.b.example` (a row in the store, made before
/// the start): no order, `/status` names the holder; when it writes its certificate to the
/// store, this daemon serves it within the follow's poll, without an order of its own.
#[tokio::test]
async fn another_replicas_lease_defers_the_order_and_its_certificate_is_picked_up() {
    let ports = Ports::new();
    let dir = ConfigDir::new();
    let store = store_of(&dir);
    std::fs::create_dir_all(state_dir_for(&dir.config_path())).unwrap();
    {
        let pool = db::connect(&store.replace("mode=rw", "mode=rwc")).await;
        let mut m = sqlx::migrate!("./migrations");
        m.set_locking(false);
        m.run(&pool).await.unwrap();
        pool.close().await;
    }
    let far = now() + 3600;
    db::execute(
        &store,
        &format!(
            "INSERT INTO store_leases (job, holder, token, expires_at) \
             VALUES ('acme:{B}', 'other-replica/1', 3, {far})"
        ),
    )
    .await;
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&[A]);
    dir.write("a.pem", cert);
    dir.write("a.key", key);
    // No ACME server is needed, none is asked.
    let acme = format!("directory = \"https://127.0.0.1:{}/dir\"\n", free_port());
    dir.write(
        MAIN,
        config(
            &ports,
            "[tls]\ncerts = [{ cert = \"a.pem\", key = \"a.key\" }]",
            &acme,
        ),
    );
    // Debug: each lookup of a challenge answer in the store is logged.
    let d = Daemon::start_with(
        &dir.config_path(),
        &[("RUST_LOG", "info,mta_stsd::acme::challenge=debug")],
    );
    let waiting = wait_acme(&d, "b.example", ACME_DEADLINE, String::new, |s| {
        s["detail"]
            .as_str()
            .is_some_and(|t| t.contains("other-replica/1"))
    })
    .await;
    assert_eq!(waiting["state"], "pending", "{waiting}");
    assert_eq!(waiting["attempts"], 0, "{waiting}");
    assert!(waiting["last_error"].is_null(), "{waiting}");
    let s = d.status().await;
    assert!(
        s["state"]["leases"].as_array().is_some_and(|l| l
            .iter()
            .any(|l| l["job"] == format!("acme:{B}") && l["holder"] == "other-replica/1")),
        "{s:#}"
    );

    // The other replica writes its certificate (the lease still its own).
    let (cert, key) = ca.leaf(&[B]);
    let written = std::time::Instant::now();
    db::execute(
        &store,
        &format!(
            "INSERT INTO store_acme_certs (name, chain_pem, key_pem, not_before, not_after, \
             renew_at, token, seq, replica, updated_at) VALUES ('{B}', '{cert}', '{key}', 0, \
             {far}, {far}, 3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM store_acme_certs), \
             'other-replica', 0)"
        ),
    )
    .await;
    wait_acme(&d, "b.example", ACME_DEADLINE, String::new, |s| {
        s["state"] == "valid"
    })
    .await;
    // The follow's poll (2 s), with room for a loaded machine.
    assert!(
        written.elapsed() < Duration::from_secs(6),
        "{:?}",
        written.elapsed()
    );
    let served = fetch_policy(
        &ca.client(&[A, B], addr(ports.https), false),
        B,
        ports.https,
    )
    .await;
    assert_eq!(
        served,
        CertificateDer::from_pem_slice(cert.as_bytes())
            .unwrap()
            .to_vec()
    );
    assert!(!d.metrics().await.contains("mta_stsd_acme_orders_total"));

    // An unknown HTTP-01 token is looked up in the store for an ACME name only (b), not for
    // a name with a certificate of its own (a), nor for another host; none is found.
    for host in [A, B, "mta-sts.elsewhere.example"] {
        let r = plain_client()
            .get(format!(
                "http://{}/.well-known/acme-challenge/tok-{host}",
                d.http.unwrap()
            ))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{host}");
    }
    // The log is read from the daemon's stderr as it comes.
    let looked = eventually("the lookup logged", || async {
        let l: Vec<String> = d
            .lines()
            .into_iter()
            .filter(|l| l.contains("challenge answer looked up"))
            .collect();
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(looked.len(), 1, "{looked:?}");
    assert!(
        looked[0].contains(&format!("tok-{B}")) && looked[0].contains("found=false"),
        "{looked:?}"
    );
}

#[tokio::test]
async fn replicas_sharing_a_store_one_orders_the_other_answers_validation_and_serves() {
    // Replica X is where the CA's validation arrives (pebble's ports), but cannot reach the
    // CA itself; replica Y reaches the CA but no validation comes to it. Only by the store
    // (one SQLite file here) do they get certificates: Y orders, X answers from the store,
    // X serves what Y stored.
    let (x_ports, y_ports) = (Ports::new(), Ports::new());
    let pebble = Pebble::start(PebbleOptions::new(x_ports.http, x_ports.https)).await;
    let shared = tempfile::tempdir().unwrap();
    let state = |replica: &str| {
        format!(
            "[state]\ndir = \"{}\"\nreplica = \"{replica}\"\n",
            shared.path().display()
        )
    };
    let dead = format!(
        "directory = \"https://127.0.0.1:{}/dir\"\nchallenge = \"http-01\"\n",
        free_port()
    );
    let x_dir = ConfigDir::with_config(&config(&x_ports, &state("x"), &dead));
    let x = Daemon::start(&x_dir.config_path());
    wait_acme(&x, "a.example", ACME_DEADLINE, String::new, |s| {
        s["state"] == "failed"
    })
    .await;

    let y_dir = ConfigDir::with_config(&config(
        &y_ports,
        &state("y"),
        &acme_section(&pebble, "http-01"),
    ));
    let y = Daemon::start(&y_dir.config_path());
    wait_valid(&y, &pebble, &["a.example", "b.example"]).await;
    wait_valid(&x, &pebble, &["a.example", "b.example"]).await;
    assert!(y
        .lines()
        .iter()
        .any(|l| l.contains("ordering a certificate")));
    assert!(
        !x.lines()
            .iter()
            .any(|l| l.contains("ordering a certificate")),
        "X cannot reach the CA"
    );
    assert_eq!(pebble.issued(), 2, "{}", pebble.log());
    let store = db::sqlite_url(shared.path());
    let root = pebble.issuing_root().await;
    let client = client_trusting(&root, addr(x_ports.https));
    for host in [A, B] {
        let served = fetch_policy(&client, host, x_ports.https).await;
        assert_eq!(served, db::leaf(&store, host).await, "{host}");
    }
    // Answers are withdrawn once validated.
    eventually("the answers withdrawn", || async {
        db::texts(&store, "SELECT id FROM store_acme_challenges")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}
