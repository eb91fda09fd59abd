//! Replicas: two `serve` daemons with the same config and `[state] dir`, against one real BIND,
//! racing each other through config edits. The RFC 2136 prerequisites decide who writes; the
//! loser reads again. BIND's journal shows every version of the zone there ever was.

use std::collections::HashMap;

use hickory_proto::rr::RecordType;

use crate::harness::daemon::{eventually, Daemon};
use crate::harness::dns::{DnsServer, Kind, Options, TsigKey};
use crate::harness::{ConfigDir, MAIN};

const ZONE: &str = "example.org.";
const DOMAINS: usize = 6;
const EDITS: u32 = 20;

/// Edit `n`: every domain's `max_age` (so every id) changes, and so does d0's mode.
fn write_config(dns: &DnsServer, dir: &ConfigDir, n: u32) {
    let key = dns.key_file(dir.path());
    let mode = if n.is_multiple_of(2) {
        "enforce"
    } else {
        "testing"
    };
    let mut text = format!(
        "[server]\nhttps = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n[tls]\nself_signed = true\n\n\
         [policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\nmax_age = {}\n\n\
         [dns]\ntarget = \"mail.example.org.\"\nprovider = \"p\"\n\
         tlsrpt = [\"mailto:tlsrpt@example.org\"]\n\n\
         [providers.p]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n\n\
         [domains.\"d0.example.org\"]\nmode = \"{mode}\"\n",
        86400 + n,
        dns.addr,
        key.display()
    );
    for i in 1..DOMAINS {
        text.push_str(&format!("[domains.\"d{i}.example.org\"]\n"));
    }
    let tmp = dir.write(".next.toml", text);
    std::fs::rename(tmp, dir.file(MAIN)).unwrap();
}

fn domains() -> impl Iterator<Item = String> {
    (0..DOMAINS).map(|i| format!("d{i}.example.org"))
}

/// Every domain's `(policy_id, dns.published_id, dns.state)` in a `/status`.
fn ids(status: &serde_json::Value) -> HashMap<String, (String, String, String)> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    status["domains"]
        .as_array()
        .expect("domains listed")
        .iter()
        .map(|d| {
            (
                s(&d["domain"]),
                (
                    s(&d["policy_id"]),
                    s(&d["dns"]["published_id"]),
                    s(&d["dns"]["state"]),
                ),
            )
        })
        .collect()
}

/// Replays BIND's journal (every committed update, in order, from a zone without our names)
/// and returns, for each version of the zone, the names holding more than one `v=STSv1` TXT.
fn doubled_sts_in_any_version(dns: &DnsServer) -> (usize, Vec<String>, String) {
    let journal = dns.zone_file().with_extension("db.jnl");
    let out = std::process::Command::new("named-journalprint")
        .arg(&journal)
        .output()
        .expect("named-journalprint (bind9-utils)");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut sts: HashMap<String, Vec<String>> = HashMap::new();
    let (mut versions, mut doubled) = (0, Vec::new());
    let mut check = |sts: &HashMap<String, Vec<String>>, versions: &mut usize| {
        *versions += 1;
        for (name, v) in sts {
            if v.len() > 1 {
                doubled.push(format!("version {versions}: {name} {v:?}"));
            }
        }
    };
    let mut in_transaction = false;
    for line in text.lines() {
        // `add name ttl IN type data…`, separated by spaces or tabs.
        let f: Vec<&str> = line.split_whitespace().collect();
        let [op, name, _ttl, _class, rtype, ..] = f[..] else {
            continue;
        };
        let data = f[5..].join(" ");
        // A transaction starts by deleting the old SOA (the IXFR form, RFC 1995 §4).
        if op == "del" && rtype == "SOA" {
            if in_transaction {
                check(&sts, &mut versions);
            }
            in_transaction = true;
        }
        if rtype != "TXT" || !data.contains("v=STSv1") {
            continue;
        }
        let at = sts.entry(name.to_ascii_lowercase()).or_default();
        match op {
            "add" => at.push(data),
            "del" => at.retain(|d| *d != data),
            _ => {}
        }
    }
    if in_transaction {
        check(&sts, &mut versions);
    }
    (versions, doubled, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_through_edits_agree_and_never_publish_two_sts_records() {
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    let dns = DnsServer::start_with(Kind::Bind, &Options::default(), ZONE, &key, &[]);
    let dir = ConfigDir::new();
    write_config(&dns, &dir, 0);
    let replicas = [
        Daemon::start(&dir.config_path()),
        Daemon::start(&dir.config_path()),
    ];
    let mut expected = HashMap::new();
    for n in 1..=EDITS {
        write_config(&dns, &dir, n);
        expected = domains()
            .map(|d| {
                let id = crate::providers::battery::policy_id(&dir, &d);
                (d, id)
            })
            .collect::<HashMap<_, _>>();
        // Both serve this edit (so both push it) before the next: a race at every edit, with
        // no waiting for DNS in between.
        for r in &replicas {
            eventually("the edit served", || async {
                let ids = ids(&r.status().await);
                expected
                    .iter()
                    .all(|(d, id)| ids.get(d).is_some_and(|(served, _, _)| served == id))
                    .then_some(())
            })
            .await;
        }
    }
    // Both end published with the same (last) ids, and DNS holds exactly them.
    for r in &replicas {
        eventually("the last edit published", || async {
            let ids = ids(&r.status().await);
            expected
                .iter()
                .all(|(d, id)| {
                    ids.get(d).is_some_and(|(_, published, state)| {
                        published == id && state == "published"
                    })
                })
                .then_some(())
        })
        .await;
    }
    for (d, id) in &expected {
        let txt = dns.query(&format!("_mta-sts.{d}."), RecordType::TXT);
        assert_eq!(txt, vec![format!("v=STSv1; id={id};")], "{d}");
        let cname = dns.query(&format!("mta-sts.{d}."), RecordType::CNAME);
        assert_eq!(cname, vec!["mail.example.org.".to_owned()], "{d}");
    }
    let (versions, doubled, journal) = doubled_sts_in_any_version(&dns);
    // Every edit changed every id: at least one committed update per edit.
    assert!(
        versions > EDITS as usize,
        "{versions} versions in the journal:\n{}",
        &journal[..journal.len().min(2000)]
    );
    assert!(
        doubled.is_empty(),
        "two v=STSv1 records at a name: {doubled:#?}"
    );
}
