//! ACME private keys at rest (issue 24): with `[state] key_env` the account and the
//! certificates' keys are sealed in the store (SQLite here) and the certificates served as
//! usual; the same store started without the key, or with another, is refused with a message
//! saying so; with the key again it serves what it has, ordering nothing.

use crate::harness::acme::pebble_for;
use crate::harness::acme::wait_valid;
use crate::harness::acme::{
    acme_section, addr, client_trusting, config, fetch_policy, store_of, stored_leaf, wait_acme,
    Ports, ACME_DEADLINE,
};
use crate::harness::daemon::Daemon;
use crate::harness::db;
use crate::harness::ConfigDir;
use crate::store::state::refused_start;

const KEY_ENV: &str = "MTA_STSD_TEST_SEAL_KEY";

#[tokio::test]
async fn keys_are_sealed_with_the_configured_key_and_open_only_with_it() {
    let ports = Ports::new();
    let pebble = pebble_for(&ports).await;
    let with_key = format!("[state]\nkey_env = \"{KEY_ENV}\"\n");
    let dir = ConfigDir::with_config(&config(
        &ports,
        &with_key,
        &acme_section(&pebble, "tls-alpn-01"),
    ));
    let key = "5a".repeat(32);
    let d = Daemon::start_with(&dir.config_path(), &[(KEY_ENV, &key)]);
    wait_valid(&d, &pebble, &["a.example", "b.example"]).await;
    let store = store_of(&dir);
    let rows = db::texts(
        &store,
        "SELECT key_pem FROM store_acme_certs UNION ALL SELECT credentials FROM store_acme_accounts",
    )
    .await;
    assert_eq!(rows.len(), 3, "two keys and the account");
    for r in &rows {
        assert!(r.starts_with("sealed:v1:"), "{r}");
        assert!(!r.contains("PRIVATE KEY") && !r.contains("\"d\""), "{r}");
    }
    let leaf = stored_leaf(&dir, "mta-sts.a.example").await;
    let root = pebble.issuing_root().await;
    let client = client_trusting(&root, addr(ports.https));
    assert_eq!(
        fetch_policy(&client, "mta-sts.a.example", ports.https).await,
        leaf
    );
    drop(d);

    // Without the key, and with another: refused, saying why.
    dir.write(
        crate::harness::MAIN,
        config(&ports, "", &acme_section(&pebble, "tls-alpn-01")),
    );
    let (code, err) = refused_start(&dir, &[]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("sealed") && err.contains("key_file"), "{err}");
    dir.write(
        crate::harness::MAIN,
        config(&ports, &with_key, &acme_section(&pebble, "tls-alpn-01")),
    );
    let (code, err) = refused_start(&dir, &[(KEY_ENV, &"a5".repeat(32))]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("another key"), "{err}");

    // The key again: served from the store, nothing ordered.
    let d = Daemon::start_with(&dir.config_path(), &[(KEY_ENV, &key)]);
    wait_acme(
        &d,
        "a.example",
        ACME_DEADLINE,
        || pebble.log(),
        |s| s["state"] == "valid",
    )
    .await;
    assert_eq!(
        fetch_policy(&client, "mta-sts.a.example", ports.https).await,
        leaf
    );
    assert!(!d.metrics().await.contains("mta_stsd_acme_orders_total"));
    assert_eq!(pebble.issued(), 2, "{}", pebble.log());
}
