//! Changes over time against a real BIND: removed domains retire (RFC 8461 §8.3) and come
//! back, the guard refuses mass removals, the id history survives restarts and crashes.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::harness::daemon::{eventually, plain_client, Daemon};
use crate::harness::dns::{DnsServer, Kind, TsigKey};
use crate::harness::{ConfigDir, MAIN};
use crate::providers::battery::ZONE;

pub(crate) struct World {
    pub dns: DnsServer,
    pub dir: ConfigDir,
    provider: String,
}

impl World {
    pub(crate) fn new() -> World {
        let key = TsigKey::generate("mta-stsd", "hmac-sha256");
        let dns = DnsServer::start(Kind::Bind, ZONE, &key, &[]);
        let dir = ConfigDir::new();
        let key_file = dns.key_file(dir.path());
        let provider = format!(
            "[providers.p]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n",
            dns.addr,
            key_file.display()
        );
        World { dns, dir, provider }
    }

    /// The config with `domains` (under example.org), `max_age` and `[state]` keys.
    pub(crate) fn write(&self, domains: &[&str], max_age: u32, state: &str) {
        self.write_with(domains, max_age, state, "", "")
    }

    /// [`World::write`] with more `[dns]` keys and more sections.
    pub(crate) fn write_with(
        &self,
        domains: &[&str],
        max_age: u32,
        state: &str,
        dns: &str,
        more: &str,
    ) {
        let mut text = format!(
            "[server]\nhttps = [\"127.0.0.1:0\"]\nhttp = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n[tls]\nself_signed = true\n\n[state]\nretire_after = \"1s\"\n{state}\n\n[policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\nmax_age = {max_age}\n\n[dns]\ntarget = \"mail.example.org.\"\nprovider = \"p\"\ntlsrpt = [\"mailto:tlsrpt@example.org\"]\n{dns}\n\n{more}\n\n{}\n",
            self.provider
        );
        for d in domains {
            text.push_str(&format!("[domains.\"{d}.example.org\"]\n"));
        }
        // By rename, as config management writes.
        let tmp = self.dir.write(".next.toml", text);
        std::fs::rename(tmp, self.dir.config_path()).unwrap();
    }

    pub(crate) fn txt(&self, domain: &str) -> Vec<String> {
        let mut v = self
            .dns
            .query(&format!("_mta-sts.{domain}.example.org."), RecordType::TXT);
        v.sort();
        v
    }

    pub(crate) fn cname(&self, domain: &str) -> Vec<String> {
        self.dns
            .query(&format!("mta-sts.{domain}.example.org."), RecordType::CNAME)
    }

    pub(crate) fn history(&self, domain: &str) -> Value {
        let out = self.dir.run(&[
            "history",
            &format!("{domain}.example.org"),
            "--format",
            "json",
        ]);
        out.assert_status(0);
        serde_json::from_str(&out.stdout).expect("history JSON")
    }
}

async fn body(d: &Daemon, domain: &str) -> (u16, String) {
    let r = plain_client()
        .get(format!(
            "http://{}/.well-known/mta-sts.txt",
            d.http.unwrap()
        ))
        .header("host", format!("mta-sts.{domain}.example.org"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub(crate) fn domain_status<'s>(s: &'s Value, name: &str) -> Option<&'s Value> {
    s["domains"]
        .as_array()?
        .iter()
        .find(|d| d["domain"] == format!("{name}.example.org"))
}

pub(crate) fn sts(id: &str) -> Vec<String> {
    vec![format!("v=STSv1; id={id};")]
}

pub(crate) async fn published(w: &World, domain: &str, id: &str) {
    eventually(&format!("{domain}'s id {id} in DNS"), || async {
        (w.txt(domain) == sts(id)).then_some(())
    })
    .await;
}

pub(crate) fn id_of(w: &World, domain: &str) -> String {
    crate::providers::battery::policy_id(&w.dir, &format!("{domain}.example.org"))
}

/// Removed → served unchanged → `mode: none` under a new id in DNS → withdrawn after
/// max_age; the other domain is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_domain_retires_end_to_end() {
    let w = World::new();
    w.write(&["a", "b"], 4, "");
    let (a_id, b_id) = (id_of(&w, "a"), id_of(&w, "b"));
    let d = Daemon::start(&w.dir.config_path());
    published(&w, "a", &a_id).await;
    published(&w, "b", &b_id).await;

    w.write(&["a"], 4, "");
    // Within retire_after (1 s) nothing changes for senders; then `mode: none`.
    let none_body = "version: STSv1\r\nmode: none\r\nmx: mail.example.org\r\nmax_age: 4\r\n";
    eventually("b served with mode none", || async {
        (body(&d, "b").await == (200, none_body.to_owned())).then_some(())
    })
    .await;
    let status = d.status().await;
    let b = domain_status(&status, "b").expect("b still listed").clone();
    assert_eq!(b["lifecycle"]["state"], "retiring", "{b}");
    // RFC 3339 UTC to the second: ordered as strings.
    let withdraw_at = b["lifecycle"]["withdraw_at"].as_str().unwrap().to_owned();
    let none_id = b["policy_id"].as_str().unwrap().to_owned();
    assert_ne!(none_id, b_id);
    published(&w, "b", &none_id).await;
    // `plan` tells what the retiring domain will do.
    let plan = w.dir.run(&["plan"]);
    assert!(
        plan.stdout.contains("b.example.org is retiring") && plan.stdout.contains(&none_id),
        "{}",
        plan.dump()
    );

    // After the longest max_age it published (4 s): our records go, foreign ones stay.
    w.dns
        .nsupdate("update add _mta-sts.b.example.org. 3600 TXT \"not ours\"\nsend\n");
    eventually("b's records withdrawn", || async {
        (w.txt("b") == vec!["not ours".to_owned()] && w.cname("b").is_empty()).then_some(())
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let now = mta_stsd::clock::rfc3339(now);
    assert!(
        now >= withdraw_at,
        "withdrawn at {now}, before {withdraw_at}"
    );
    eventually("b no longer served", || async {
        (body(&d, "b").await.0 == 404).then_some(())
    })
    .await;
    let tlsrpt = w.dns.query("_smtp._tls.b.example.org.", RecordType::TXT);
    assert!(tlsrpt.is_empty(), "{tlsrpt:?}");

    // a: the same record throughout, still served.
    assert_eq!(w.txt("a"), sts(&a_id));
    assert_eq!(body(&d, "a").await.0, 200);
    let h = w.history("b");
    let ids: Vec<&str> = h["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![b_id.as_str(), none_id.as_str()]);
    assert!(h["withdrawn_at"].as_u64().is_some(), "{h}");
}

/// Putting a removed domain back cancels its retirement, and a restart keeps the schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_adding_cancels_and_a_restart_keeps_the_schedule() {
    let w = World::new();
    w.write(&["a", "b"], 600, "");
    let b_id = id_of(&w, "b");
    let mut d = Daemon::start(&w.dir.config_path());
    published(&w, "b", &b_id).await;
    w.write(&["a"], 600, "");
    let retiring = eventually("b retiring", || async {
        let s = d.status().await;
        let b = domain_status(&s, "b")?.clone();
        (b["lifecycle"]["state"] == "retiring").then_some(b)
    })
    .await;
    let none_id = retiring["policy_id"].as_str().unwrap().to_owned();
    published(&w, "b", &none_id).await;

    // A restart in between: the same retirement, the same deadline.
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(15));
    let d = Daemon::start(&w.dir.config_path());
    let s = d.status().await;
    let b = domain_status(&s, "b").expect("b still served after the restart");
    assert_eq!(b["lifecycle"], retiring["lifecycle"]);
    assert_eq!(b["policy_id"], none_id.as_str());

    // Back in the config: its own policy and id again.
    w.write(&["a", "b"], 600, "");
    published(&w, "b", &b_id).await;
    let s = d.status().await;
    assert_eq!(
        domain_status(&s, "b").unwrap()["lifecycle"]["state"],
        "configured"
    );
    assert!(body(&d, "b").await.1.contains("mode: enforce"));
    // The store takes the event after it was served (serving never waits on it).
    eventually("b's removal cancelled in the history", || async {
        w.history("b")["missing_since"].is_null().then_some(())
    })
    .await;
}

/// More removals at once than `max_retire`, or none left: refused like a bad config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_refuses_mass_removal_and_keeps_serving() {
    let w = World::new();
    w.write(&["a", "b", "c"], 600, "max_retire = 1");
    let ids: Vec<String> = ["a", "b", "c"].iter().map(|n| id_of(&w, n)).collect();
    let d = Daemon::start(&w.dir.config_path());
    for (n, id) in ["a", "b", "c"].iter().zip(&ids) {
        published(&w, n, id).await;
    }
    w.write(&["a"], 600, "max_retire = 1");
    let s = eventually("the refused reload", || async {
        let s = d.status().await;
        (s["config"]["last_reload"]["ok"] == false).then_some(s)
    })
    .await;
    let problems = s["config"]["last_reload"]["problems"].to_string();
    assert!(problems.contains("max_retire = 1"), "{problems}");
    assert!(problems.contains("b.example.org"), "{problems}");
    d.wait_log("max_retire");
    for n in ["b", "c"] {
        let st = domain_status(&s, n).unwrap();
        assert_eq!(st["lifecycle"]["state"], "configured", "{st}");
        assert!(body(&d, n).await.1.contains("mode: enforce"));
    }
    // `apply` refuses the same config for the same reason, and changes nothing.
    let apply = w.dir.run(&["apply"]);
    apply.assert_status(1);
    assert!(apply.stderr.contains("max_retire = 1"), "{}", apply.dump());
    assert_eq!(w.txt("c"), sts(&ids[2]));
    // One removal is within the limit.
    w.write(&["a", "b"], 600, "max_retire = 1");
    eventually("c missing, within the limit", || async {
        let s = d.status().await;
        let c = domain_status(&s, "c")?.clone();
        (s["config"]["last_reload"]["ok"] == true && c["lifecycle"]["state"] != "configured")
            .then_some(())
    })
    .await;
    // No domain at all: refused.
    w.write(&[], 600, "max_retire = \"100%\"");
    eventually("the empty config refused", || async {
        let s = d.status().await;
        let p = s["config"]["last_reload"]["problems"].to_string();
        (s["config"]["last_reload"]["ok"] == false && p.contains("no domains left")).then_some(())
    })
    .await;
    assert_eq!(body(&d, "a").await.0, 200);
    assert_eq!(w.txt("b"), sts(&ids[1]));
}

/// The history survives restarts: an edit, a restart, and both ids are there with their times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart() {
    let w = World::new();
    w.write(&["a"], 600, "");
    let first = id_of(&w, "a");
    let mut d = Daemon::start(&w.dir.config_path());
    published(&w, "a", &first).await;
    w.write(&["a"], 700, "");
    let second = id_of(&w, "a");
    published(&w, "a", &second).await;
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(15));
    let _d = Daemon::start(&w.dir.config_path());
    let h = w.history("a");
    let p = h["policies"].as_array().unwrap();
    assert_eq!(p.len(), 2, "{h}");
    assert_eq!(p[0]["id"], first.as_str());
    assert_eq!(p[1]["id"], second.as_str());
    assert_eq!(p[0]["last_served"], p[1]["first_served"]);
    assert!(p[1]["last_served"].is_null(), "still served: {h}");
    assert!(p[0]["body"].as_str().unwrap().contains("max_age: 600\r\n"));
    let text = w.dir.run(&["history", "a.example.org"]);
    text.assert_status(0);
    assert!(text.stdout.contains(&second), "{}", text.stdout);
    w.dir.run(&["history", "z.example.org"]).assert_status(1);
}

/// SIGKILL at random points of a start (loading, recording 2,000 new policies in the
/// history, serving), over and over: every restart reads a consistent history whose
/// current entry is the policy served, and every id has its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_writing_state_loses_nothing_acknowledged() {
    let w = World::new();
    let many: Vec<String> = (0..2000).map(|i| format!("d{i}")).collect();
    let names: Vec<&str> = many.iter().map(String::as_str).collect();
    let state = crate::harness::state_dir_for(&w.dir.config_path());
    for round in 0..12u32 {
        // Each round serves a new policy for every domain: a large append to kill into.
        w.write(&names, 600 + round, "");
        let mut child = crate::harness::command()
            .env("STATE_DIRECTORY", &state)
            .arg("--config")
            .arg(w.dir.config_path())
            .arg("serve")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Fault injection, not synchronisation: a different moment of the start each round.
        std::thread::sleep(Duration::from_millis(u64::from(round) * 25));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    w.write(&names, 900, "");
    let d = Daemon::start(&w.dir.config_path());
    for n in ["d0", "d7", "d1999"] {
        let want = id_of(&w, n);
        let h = w.history(n);
        let p = h["policies"].as_array().unwrap();
        assert_eq!(p.last().unwrap()["id"], want.as_str(), "{h}");
        assert!(p.last().unwrap()["last_served"].is_null());
        for e in p {
            assert!(e["body"].is_string(), "a served id without its body: {h}");
        }
        // Ids follow each other: each entry ends where the next begins.
        for pair in p.windows(2) {
            assert_eq!(pair[0]["last_served"], pair[1]["first_served"], "{h}");
        }
    }
    assert!(d.status().await["state"]["error"].is_null());
    let _ = MAIN;
}

/// `[dns] reconcile`: records changed behind the daemon's back are read back and repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_repairs_a_rogue_txt_and_a_deleted_tlsrpt_record() {
    let w = World::new();
    w.write_with(&["a"], 600, "", "reconcile = \"1s\"", "");
    let a_id = id_of(&w, "a");
    let d = Daemon::start(&w.dir.config_path());
    published(&w, "a", &a_id).await;
    let tlsrpt = || w.dns.query("_smtp._tls.a.example.org.", RecordType::TXT);
    let want_tlsrpt = vec!["v=TLSRPTv1; rua=mailto:tlsrpt@example.org;".to_owned()];
    eventually("the TLSRPT record", || async {
        (tlsrpt() == want_tlsrpt).then_some(())
    })
    .await;
    let seen = d.lines().len();
    w.dns.nsupdate(
        "update add _mta-sts.a.example.org. 3600 TXT \"v=STSv1; id=rogue;\"\nupdate delete _smtp._tls.a.example.org. TXT\nsend\n",
    );
    assert_eq!(w.txt("a").len(), 2);
    eventually("both repaired", || async {
        (w.txt("a") == sts(&a_id) && tlsrpt() == want_tlsrpt).then_some(())
    })
    .await;
    let line = d.wait_log_after(seen, "repaired records changed behind our back");
    assert!(line.contains("a.example.org"), "{line}");
    let m = d.metrics().await;
    assert!(m.contains("mta_stsd_dns_repairs_total 1"), "{m}");
    let s = d.status().await;
    let dns = &domain_status(&s, "a").unwrap()["dns"];
    assert_eq!(dns["state"], "published");
    assert!(dns["last_read"].is_string(), "{dns}");
}

/// Hot config: `[drift]` added by a reload starts the periodic checks; a changed interval
/// reschedules them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_added_by_a_reload_runs_and_follows_its_interval() {
    let w = World::new();
    w.write(&["a"], 600, "");
    let d = Daemon::start(&w.dir.config_path());
    let drift = |interval: &str| {
        format!(
            "[drift]\ninterval = \"{interval}\"\nresolver = \"{}\"\ndns_port = {}\n",
            w.dns.addr,
            w.dns.addr.port()
        )
    };
    let runs = |d: &Daemon| {
        d.lines()
            .iter()
            .filter(|l| l.contains("drift checked"))
            .count()
    };
    assert_eq!(runs(&d), 0);
    w.write_with(&["a"], 600, "", "", &drift("1h"));
    d.wait_log("drift checked");
    assert_eq!(d.status().await["config"]["last_reload"]["ok"], true);
    w.write_with(&["a"], 600, "", "", &drift("1s"));
    eventually("drift rescheduled to every second", || async {
        (runs(&d) >= 3).then_some(())
    })
    .await;
    // What cannot change without a restart says so.
    let text = std::fs::read_to_string(w.dir.config_path())
        .unwrap()
        .replace(
            "admin = \"127.0.0.1:0\"\n",
            "admin = \"127.0.0.1:0\"\nmax_connections = 500\n",
        );
    let tmp = w.dir.write(".next.toml", text);
    std::fs::rename(tmp, w.dir.config_path()).unwrap();
    eventually("the [server] warning", || async {
        let s = d.status().await;
        let p = s["config"]["last_reload"]["problems"].to_string();
        p.contains("[server] changed").then_some(())
    })
    .await;
}

/// Cache-aware MX coverage: a new MX listed in the current policy but not in the previous
/// one, which senders may still cache, is a warning naming when it is safe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_knows_the_policies_senders_still_cache() {
    let w = World::new();
    let drift = format!(
        "[drift]\nresolver = \"{}\"\ndns_port = {}\n",
        w.dns.addr,
        w.dns.addr.port()
    );
    w.write_with(&["a"], 600, "", "", &drift);
    let d = Daemon::start(&w.dir.config_path());
    published(&w, "a", &id_of(&w, "a")).await;
    // The admin adds the new MX to the policy, then switches DNS at once.
    let text = std::fs::read_to_string(w.dir.config_path())
        .unwrap()
        .replace(
            "mx = [\"mail.example.org\"]",
            "mx = [\"mail.example.org\", \"new.example.org\"]",
        );
    let tmp = w.dir.write(".next.toml", text);
    std::fs::rename(tmp, w.dir.config_path()).unwrap();
    let new_id = id_of(&w, "a");
    published(&w, "a", &new_id).await;
    w.dns.nsupdate(
        // BIND wants in-zone MX targets to have addresses.
        "update add mail.example.org. 3600 A 127.0.0.1\nupdate add new.example.org. 3600 A 127.0.0.1\nupdate add a.example.org. 3600 MX 10 mail.example.org.\nupdate add a.example.org. 3600 MX 20 new.example.org.\nsend\n",
    );
    drop(d);
    let out = w.dir.run(&["drift", "--format", "json"]);
    let report: Value = serde_json::from_str(&out.stdout).expect("drift JSON");
    let findings = report["domains"][0]["findings"].as_array().unwrap();
    let cached: Vec<&Value> = findings
        .iter()
        .filter(|f| {
            f["message"]
                .as_str()
                .unwrap()
                .contains("may still have cached")
        })
        .collect();
    assert_eq!(cached.len(), 1, "{findings:#?}");
    assert_eq!(cached[0]["severity"], "warning");
    let msg = cached[0]["message"].as_str().unwrap();
    assert!(msg.contains("MX new.example.org"), "{msg}");
    assert!(msg.contains("safe after 20"), "{msg}");
    // The current policy covers both: no finding about it.
    assert!(
        !findings.iter().any(|f| f["message"]
            .as_str()
            .unwrap()
            .contains("is not covered by the policy's mx patterns")),
        "{findings:#?}"
    );
}
