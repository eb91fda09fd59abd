//! The rough edges a new operator hit (issue 17), each driven through the real binary against
//! real BIND servers: opting a domain out of the `[dns]` provider, `plan`/`apply` filters,
//! JSON and counts, manual domains, the conflict hint, progress while a server is silent,
//! secret file modes, publish logs, and no certificate behind a TLS-terminating proxy.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::harness::daemon::{eventually, plain_client, Daemon};
use crate::harness::dns::{DnsServer, Kind, TsigKey};
use crate::harness::{command, epoch, ConfigDir, MAIN};

const HEAD: &str = r#"[server]
https = ["127.0.0.1:0"]
admin = "127.0.0.1:0"

[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = 86400
"#;

fn provider(name: &str, server: &DnsServer, dir: &ConfigDir) -> String {
    let key = server.key_file(dir.path());
    format!(
        "[providers.{name}]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n",
        server.addr,
        key.display()
    )
}

fn bind(zone: &str, records: &[&str]) -> DnsServer {
    DnsServer::start(
        Kind::Bind,
        zone,
        // One key file per zone in a shared config dir.
        &TsigKey::generate(&format!("mta-stsd.{zone}"), "hmac-sha256"),
        records,
    )
}

fn json(out: &crate::harness::Output) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.dump()))
}

fn sts(server: &DnsServer, domain: &str) -> Vec<String> {
    server.query(&format!("_mta-sts.{domain}."), RecordType::TXT)
}

#[test]
fn provider_none_opts_a_domain_out_and_plan_lists_what_to_set() {
    let org = bind("example.org", &[]);
    let dir = ConfigDir::new();
    let text = format!(
        "{HEAD}\n[dns]\ntarget = \"mail.example.org.\"\nprovider = \"p\"\n\n{}\n\
         [domains.\"a.example.org\"]\n\n[domains.\"b.example.org\"]\nprovider = \"none\"\n",
        provider("p", &org, &dir)
    );
    dir.write(MAIN, &text);
    dir.check().assert_status(0);

    let out = dir.run(&["plan"]);
    out.assert_status(2);
    assert!(
        out.stdout.contains("+ _mta-sts.a.example.org.")
            && !out.stdout.contains("+ _mta-sts.b.example.org."),
        "{}",
        out.dump()
    );
    // b's records are listed as what to set by hand.
    assert!(
        out.stdout
            .contains("; b.example.org: no provider, set these by hand")
            && out
                .stdout
                .contains("\n_mta-sts.b.example.org.\t3600\tIN\tTXT"),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout.contains(
            "; 2 records to change in 1 zone (1 zone read), 0 errors, 1 domain set by hand\n"
        ),
        "{}",
        out.dump()
    );
    dir.run(&["apply"]).assert_status(0);
    assert_eq!(sts(&org, "a.example.org").len(), 1);
    assert!(sts(&org, "b.example.org").is_empty(), "b is set by hand");
    let out = dir.run(&["records", "b.example.org"]);
    assert!(out.stdout.contains("provider none"), "{}", out.dump());

    // `none` is reserved, not a provider name.
    dir.write(
        MAIN,
        format!(
            "{text}\n[providers.none]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"mta-stsd.key\"\n",
            org.addr
        ),
    );
    let out = dir.check();
    out.assert_status(1);
    assert!(out.stderr.contains("`none` is reserved"), "{}", out.dump());
}

#[test]
fn domain_filter_json_and_counts_of_changed_zones() {
    let org = bind("example.org", &[]);
    let net = bind("example.net", &[]);
    let dir = ConfigDir::new();
    let config = |max_age_c: u32| {
        format!(
            "{HEAD}\n[dns]\ntarget = \"mail.example.org.\"\nprovider = \"org\"\n\n{}\n{}\n\
             [domains.\"a.example.org\"]\n\n[domains.\"b.example.org\"]\n\n\
             [domains.\"c.example.net\"]\nprovider = \"net\"\nmax_age = {max_age_c}\n",
            provider("org", &org, &dir),
            provider("net", &net, &dir)
        )
    };
    dir.write(MAIN, config(86400));

    // Only a: its zone's other domain (b) is neither read nor changed.
    let out = dir.run(&["plan", "--domain", "a.example.org", "--format", "json"]);
    out.assert_status(2);
    let r = json(&out);
    assert_eq!(r["command"], "plan");
    assert_eq!(r["exit_code"], 2);
    assert_eq!(r["counts"]["records"], 2, "{r}");
    assert_eq!(r["counts"]["zones_changed"], 1, "{r}");
    assert_eq!(r["counts"]["errors"], 0, "{r}");
    let zones = r["zones"].as_array().unwrap();
    assert_eq!(zones.len(), 1);
    assert_eq!(zones[0]["zone"], "example.org.");
    let added: Vec<&str> = zones[0]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        added.iter().all(|a| a.contains("a.example.org.")),
        "{added:?}"
    );
    dir.run(&["apply", "--domain", "mta-sts.A.example.org."])
        .assert_status(0);
    assert_eq!(sts(&org, "a.example.org").len(), 1);
    assert!(sts(&org, "b.example.org").is_empty());
    assert!(sts(&net, "c.example.net").is_empty());
    let out = dir.run(&["plan", "--domain", "nope.example"]);
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("`nope.example` is not a configured domain"),
        "{}",
        out.dump()
    );

    // Everything, then one domain in one of the two zones changes.
    let out = dir.run(&["apply"]);
    out.assert_status(0);
    assert!(
        out.stdout
            .contains("; 4 records changed in 2 zones (2 zones read), 0 errors\n"),
        "{}",
        out.dump()
    );
    dir.write(MAIN, config(90000));
    let out = dir.run(&["plan"]);
    out.assert_status(2);
    assert!(
        out.stdout
            .contains("; 2 records to change in 1 zone (2 zones read), 0 errors\n"),
        "{}",
        out.dump()
    );
    let out = dir.run(&["apply", "--format", "json"]);
    out.assert_status(0);
    let r = json(&out);
    assert_eq!(r["counts"]["records"], 2, "{r}");
    assert_eq!(r["counts"]["zones_changed"], 1, "{r}");
    assert_eq!(r["counts"]["zones_read"], 2, "{r}");
    assert_eq!(r["zones"][0]["zone"], "example.net.");
    let out = dir.run(&["plan"]);
    out.assert_status(0);
    assert!(
        out.stdout
            .contains("; 0 records to change in 0 zones (2 zones read), 0 errors\n"),
        "{}",
        out.dump()
    );
}

#[test]
fn deliberate_address_record_gets_a_hint_and_target_false_ends_the_conflict() {
    let org = bind("example.org", &["mta-sts.b 300 IN A 192.0.2.1"]);
    let dir = ConfigDir::new();
    let config = |b: &str| {
        format!(
            "{HEAD}\n[dns]\ntarget = \"mail.example.org.\"\nprovider = \"p\"\n\n{}\n\
             [domains.\"a.example.org\"]\n\n[domains.\"b.example.org\"]\n{b}\n",
            provider("p", &org, &dir)
        )
    };
    dir.write(MAIN, config(""));
    let out = dir.run(&["plan"]);
    assert!(
        out.stdout.contains("! conflict: mta-sts.b.example.org. has A 192.0.2.1")
            && out.stdout.contains(
                "(if that is deliberate, set `target = false` for b.example.org: then no CNAME is managed there)"
            )
            && out.stdout.contains(", 1 conflict\n"),
        "{}",
        out.dump()
    );
    dir.write(MAIN, config("target = false"));
    dir.check().assert_status(0);
    let out = dir.run(&["apply"]);
    out.assert_status(0);
    assert!(!out.stdout.contains("conflict"), "{}", out.dump());
    assert_eq!(
        org.query("mta-sts.a.example.org.", RecordType::CNAME),
        vec!["mail.example.org."]
    );
    assert_eq!(
        org.query("mta-sts.b.example.org.", RecordType::A),
        vec!["192.0.2.1"]
    );
    assert_eq!(sts(&org, "b.example.org").len(), 1, "the rest is published");
    dir.run(&["plan"]).assert_status(0);
    dir.write(MAIN, config("target = 7"));
    let out = dir.check();
    out.assert_status(1);
    assert!(
        out.stderr.contains("a host name, or false for no CNAME"),
        "{}",
        out.dump()
    );
}

#[test]
fn plan_against_a_silent_server_says_what_it_waits_for() {
    // Accepts connections and never answers a byte.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = silent.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for s in silent.incoming().take(8) {
            open.push(s);
        }
    });
    let dir = ConfigDir::new();
    let key = dir.write(
        "k.key",
        crate::harness::tsig_key_file("mta-stsd", "hmac-sha256"),
    );
    dir.write(
        MAIN,
        format!(
            "{HEAD}\n[dns]\nprovider = \"p\"\n[providers.p]\nkind = \"rfc2136\"\nserver = \"{addr}\"\ntsig_key = \"{}\"\n\
             [domains.\"a.example.org\"]\n",
            key.display()
        ),
    );
    let started = Instant::now();
    let mut child = command()
        .env(
            "STATE_DIRECTORY",
            crate::harness::state_dir_for(&dir.config_path()),
        )
        .arg("--config")
        .arg(dir.config_path())
        .arg("plan")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let waited = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    drop(held);
    assert!(
        first.starts_with("mta-stsd: finding the zones of 1 domain (0/0 zones done, "),
        "first stderr line: {first:?}"
    );
    // The exchange timeout is 15 s; the first progress line comes long before.
    assert!(waited < Duration::from_secs(10), "after {waited:?}");
}

#[test]
fn check_warns_about_a_secret_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = ConfigDir::new();
    let key = dir.write(
        "k.key",
        crate::harness::tsig_key_file("mta-stsd", "hmac-sha256"),
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!(
        "{HEAD}\n[dns]\nprovider = \"p\"\n[providers.p]\nkind = \"rfc2136\"\nserver = \"127.0.0.1:53\"\ntsig_key = \"k.key\"\n\
         [domains.\"a.example.org\"]\n"
    );
    dir.write(MAIN, &text);
    let out = dir.check();
    out.assert_status(0);
    let at = crate::harness::pos1(&text, "\"k.key\"");
    out.assert_warning(
        &dir.config_path(),
        at,
        "is readable by every user (mode 644): `chmod 640` it",
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    dir.check().assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_logs_name_the_domain_and_the_old_and_new_id() {
    let org = bind("example.org", &[]);
    let dir = ConfigDir::new();
    let config = |max_age: u32| {
        format!(
            "{}\n[dns]\nprovider = \"p\"\n\n{}\n[domains.\"a.example.org\"]\nmax_age = {max_age}\n",
            HEAD,
            provider("p", &org, &dir)
        )
    };
    dir.write(MAIN, config(86400));
    let first = crate::providers::battery::policy_id(&dir, "a.example.org");
    let d = Daemon::start(&dir.config_path());
    let line = d.wait_log("published a.example.org: id (none) → ");
    assert!(
        line.contains(&first) && line.contains("zone=example.org.") && line.contains("changed=1"),
        "{line}"
    );
    let skip = d.lines().len();
    dir.write(MAIN, config(90000));
    let second = crate::providers::battery::policy_id(&dir, "a.example.org");
    let line = d.wait_log_after(skip, "published a.example.org: id ");
    assert!(line.contains(&format!("id {first} → {second}")), "{line}");

    // /status times are RFC 3339.
    let s = d.status().await;
    let started = epoch(&s["started_at"]).unwrap_or_else(|| panic!("{s}"));
    let a = &s["domains"][0];
    assert!(epoch(&a["served_since"]).unwrap() >= started, "{a}");
    let published = eventually("published_id to be the second", || async {
        let s = d.status().await;
        let dns = s["domains"][0]["dns"].clone();
        (dns["published_id"] == second.as_str()).then_some(dns)
    })
    .await;
    assert!(epoch(&published["last_published"]).unwrap() >= started);
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_only_needs_no_certificate() {
    let dir = ConfigDir::with_config(
        "[server]\nhttps = []\nhttp = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\nmax_age = 86400\n\
         [domains.\"example.org\"]\n",
    );
    dir.check().assert_clean();
    let d = Daemon::start(&dir.config_path());
    let r = plain_client()
        .get(format!(
            "http://{}/.well-known/mta-sts.txt",
            d.http.expect("an http listener")
        ))
        .header("host", "mta-sts.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmax_age: 86400\r\n"
    );
    assert_eq!(d.status().await["domains"][0]["certificate"], "none");
    // With an HTTPS listener a certificate is required again.
    dir.write(
        MAIN,
        "[server]\nhttps = [\"127.0.0.1:0\"]\n[policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\n\
         [domains.\"example.org\"]\n",
    );
    let out = dir.check();
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("no certificate for mta-sts.example.org"),
        "{}",
        out.dump()
    );
}
