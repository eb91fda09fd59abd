//! main's ACME state directory (`tests/fixtures/main-acme`, written by main's daemon against
//! pebble: see its README) imported by `serve` on its first start: the certificates served at
//! once with no order (the ACME server of the fixture is long gone), the files left as they
//! were, and a second start imports nothing. The entry-by-entry comparison is
//! `acme::import`'s unit test on the same fixture.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::acme::ACME_DEADLINE;
use crate::harness::acme::{
    addr, client_trusting, config, fetch_policy, store_of, wait_acme, Ports,
};
use crate::harness::daemon::Daemon;
use crate::harness::{db, ConfigDir};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/main-acme");

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn main_acme_state_is_imported_and_served_without_an_order() {
    let directory = std::fs::read_to_string(format!("{FIXTURE}/directory")).unwrap();
    let ports = Ports::new();
    let dir = ConfigDir::new();
    let state = dir.file("acme");
    std::fs::create_dir_all(&state).unwrap();
    let fixture = files(&Path::new(FIXTURE).join("acme"));
    for (name, bytes) in &fixture {
        std::fs::write(state.join(name), bytes).unwrap();
    }
    let acme = format!(
        "directory = \"{}\"\nchallenge = \"tls-alpn-01\"\nstate = \"acme\"\n",
        directory.trim()
    );
    dir.write(crate::harness::MAIN, config(&ports, "", &acme));
    let d = Daemon::start(&dir.config_path());
    for domain in ["a.example", "b.example"] {
        wait_acme(&d, domain, ACME_DEADLINE, String::new, |s| {
            s["state"] == "valid"
        })
        .await;
    }
    assert!(
        d.lines()
            .iter()
            .any(|l| l.contains("imported the state directory")),
        "{}",
        d.lines().join("\n")
    );
    let root = std::fs::read_to_string(format!("{FIXTURE}/pebble-root.pem")).unwrap();
    let client = client_trusting(&root, addr(ports.https));
    for host in ["mta-sts.a.example", "mta-sts.b.example"] {
        let served = fetch_policy(&client, host, ports.https).await;
        let file = String::from_utf8(fixture[&format!("{host}.crt")].clone()).unwrap();
        assert_eq!(served, db::leaf_of(&file), "{host}");
        assert_eq!(db::chain(&store_of(&dir), host).await.unwrap(), file);
    }
    assert!(!d.metrics().await.contains("mta_stsd_acme_orders_total"));
    drop(d);
    assert_eq!(files(&state), fixture, "the files are left as they were");

    let d = Daemon::start(&dir.config_path());
    wait_acme(&d, "a.example", ACME_DEADLINE, String::new, |s| {
        s["state"] == "valid"
    })
    .await;
    assert!(
        !d.lines()
            .iter()
            .any(|l| l.contains("imported the state directory")),
        "imported again"
    );
}
