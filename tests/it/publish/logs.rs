//! Issue 23, against a real BIND: what `serve` logs when it publishes, repairs and withdraws
//! (each line says what happened), a `reconcile` interval changed by a reload, and a name the
//! DNS cannot hold that must not block its zone.

use hickory_proto::rr::RecordType;

use crate::harness::daemon::{eventually, Daemon};
use crate::harness::state_dir_for;
use crate::publish::lifecycle::{domain_status, id_of, published, World};

/// The `key=value` field of a log line, up to the next space.
fn field<'l>(line: &'l str, key: &str) -> &'l str {
    let start = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        + key.len()
        + 1;
    line[start..].split(' ').next().unwrap_or_default()
}

/// A reload that sets `reconcile` takes effect without a restart: a TLSRPT record deleted
/// behind the daemon's back is put back within seconds, and the log line says which record
/// came back with the id unchanged (not `id (none) → …`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_reconcile_by_reload_and_a_repair_logged_as_such() {
    let w = World::new();
    w.write(&["a"], 600, "");
    let a_id = id_of(&w, "a");
    let d = Daemon::start(&w.dir.config_path());
    published(&w, "a", &a_id).await;
    let tlsrpt = || w.dns.query("_smtp._tls.a.example.org.", RecordType::TXT);
    eventually("the TLSRPT record", || async {
        (!tlsrpt().is_empty()).then_some(())
    })
    .await;

    // The default reconcile is an hour; a reload makes it a second.
    let seen = d.lines().len();
    w.write_with(&["a"], 600, "", "reconcile = \"1s\"", "");
    d.wait_log_after(seen, "reconcile interval changed by the reload");
    let seen = d.lines().len();
    w.dns
        .nsupdate("update delete _smtp._tls.a.example.org. TXT\nsend\n");
    eventually("the TLSRPT record put back", || async {
        (!tlsrpt().is_empty()).then_some(())
    })
    .await;
    let line = d.wait_log_after(seen, "published a.example.org:");
    assert!(
        line.contains(&format!(
            "id {a_id} unchanged; records put right at _smtp._tls.a.example.org. TXT"
        )),
        "{line}"
    );
    assert!(!line.contains("(none)"), "{line}");
}

/// A removed domain: `withdraw_at` is logged as an RFC 3339 time, and the withdrawal is
/// logged as one, not as `published … (unchanged)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_a_withdrawal_is_logged_as_a_withdrawal() {
    let w = World::new();
    w.write(&["a", "b"], 2, "");
    let (a_id, b_id) = (id_of(&w, "a"), id_of(&w, "b"));
    let d = Daemon::start(&w.dir.config_path());
    published(&w, "a", &a_id).await;
    published(&w, "b", &b_id).await;
    let seen = d.lines().len();
    w.write(&["a"], 2, "");
    let retiring = d.wait_log_after(seen, "retiring: served `mode: none`");
    let at = field(&retiring, "withdraw_at");
    assert!(
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
        "withdraw_at is not RFC 3339: {retiring}"
    );
    let withdrawn = d.wait_log_after(seen, "withdrew b.example.org:");
    assert!(
        withdrawn.contains("records removed (id ") && withdrawn.contains("RFC 8461 §8.3"),
        "{withdrawn}"
    );
    let lines = d.lines();
    let misleading: Vec<&String> = lines[seen..]
        .iter()
        .filter(|l| l.contains("published b.example.org") && l.contains("unchanged"))
        .collect();
    assert!(misleading.is_empty(), "{misleading:?}");
}

/// A removed domain from the id history whose `_mta-sts.` name is 259 octets (a config of an
/// older version let it in): it fails alone, the other domain of its zone is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_6_one_unpublishable_name_never_blocks_its_zone() {
    let w = World::new();
    w.write(&["a"], 600, "");
    let a_id = id_of(&w, "a");
    let body = w.dir.run(&["policy", "a.example.org"]);
    body.assert_status(0);
    let long = format!(
        "{}.{}.{}.{}.example.org",
        "x".repeat(63),
        "y".repeat(63),
        "z".repeat(63),
        "w".repeat(45)
    );
    assert_eq!(long.len(), 249);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let lines = [
        serde_json::json!({ "policy": { "id": a_id, "body": body.stdout } }),
        serde_json::json!({ "served": { "domain": long, "id": a_id, "at": now - 100 } }),
        serde_json::json!({ "missing": { "domain": long, "at": now - 50, "dns": {
            "provider": "p", "zone": null, "target": "mail.example.org", "ttl": 3600,
            "tlsrpt": [] } } }),
    ];
    let state = state_dir_for(&w.dir.config_path());
    std::fs::create_dir_all(&state).unwrap();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(state.join("history.jsonl"), text).unwrap();

    let d = Daemon::start(&w.dir.config_path());
    published(&w, "a", &a_id).await;
    let s = eventually("the long name failed alone", || async {
        let s = d.status().await;
        let state = s["domains"]
            .as_array()?
            .iter()
            .find(|x| x["domain"] == long.as_str())?["dns"]["state"]
            .clone();
        (state == "failed").then_some(s)
    })
    .await;
    let entry = s["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["domain"] == long.as_str())
        .unwrap();
    let error = entry["dns"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("over the limit of 255"), "{entry}");
    assert_eq!(
        domain_status(&s, "a").unwrap()["dns"]["state"],
        "published",
        "{s}"
    );
}
