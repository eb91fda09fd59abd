//! `kill -9` during a large `apply` against a real BIND (the hardening issue): wherever the
//! kill lands, no name ever holds two `v=STSv1` TXT records (each UPDATE message replaces a
//! domain's record atomically, RFC 2136 §3.7), and the next `apply` converges.

use std::process::Stdio;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::daemon::DEADLINE;
use crate::harness::dns::{exchange, rdata_text, DnsServer, Kind, TsigKey};
use crate::harness::{command, state_dir_for, ConfigDir, MAIN};
use crate::providers::battery::{policy_id, ZONE};

/// Enough domains for several 64 KiB UPDATE messages, so a kill can fall between two.
const DOMAINS: usize = 2000;

fn write_config(dir: &ConfigDir, server: &DnsServer, mode: &str) {
    let key = server.key_file(dir.path());
    let mut text = format!(
        "[server]\nhttps = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n[tls]\nself_signed = true\n\
         [policy]\nmode = \"{mode}\"\nmx = [\"mail.example.org\"]\nmax_age = 86400\n\
         [dns]\ntarget = \"mail.example.org.\"\nprovider = \"p\"\n\
         [providers.p]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n",
        server.addr,
        key.display()
    );
    for i in 0..DOMAINS {
        text.push_str(&format!("[domains.\"d{i}.example.org\"]\n"));
    }
    dir.write(MAIN, text);
}

/// The `v=STSv1` TXT records at `_mta-sts.<domain>`, asked over UDP (fast enough for
/// thousands of names; TCP would open a connection each).
fn sts(server: &DnsServer, domain: &str) -> Vec<String> {
    let name = format!("_mta-sts.{domain}.");
    let msg = exchange(
        server.addr,
        &name,
        RecordType::TXT,
        false,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("querying {name}: {e}"));
    msg.answers
        .iter()
        .filter(|r| r.record_type() == RecordType::TXT)
        .map(|r| rdata_text(&r.data))
        .filter(|t| t.starts_with("v=STSv1"))
        .collect()
}

/// How many domains publish `id`; panics at a name with more than one STS record.
fn published(server: &DnsServer, id: &str) -> usize {
    let want = format!("v=STSv1; id={id};");
    (0..DOMAINS)
        .filter(|i| {
            let d = format!("d{i}.example.org");
            let got = sts(server, &d);
            assert!(got.len() <= 1, "{d} has {} STS records: {got:?}", got.len());
            got.first() == Some(&want)
        })
        .count()
}

fn apply(dir: &ConfigDir) {
    let out = dir.run(&["apply"]);
    out.assert_status(0);
}

#[test]
fn kill_9_during_a_large_apply_never_leaves_two_sts_records_and_apply_converges() {
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    let server = DnsServer::start(Kind::Bind, ZONE, &key, &[]);
    let dir = ConfigDir::new();
    write_config(&dir, &server, "testing");
    apply(&dir);
    let first = policy_id(&dir, "d0.example.org");
    assert_eq!(published(&server, &first), DOMAINS);

    // Each round changes every domain's id, kills apply as soon as the first domain shows
    // the new one (its first UPDATE is in), then checks and re-applies.
    let mut partial = 0;
    for (round, mode) in ["enforce", "testing"].iter().enumerate() {
        write_config(&dir, &server, mode);
        let id = policy_id(&dir, "d0.example.org");
        let mut child = command()
            .env("STATE_DIRECTORY", state_dir_for(&dir.config_path()))
            .arg("--config")
            .arg(dir.config_path())
            .arg("apply")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Polled without a pause, not with `eventually`: the kill should land right after
        // the first UPDATE, the moment this test is about.
        let deadline = Instant::now() + DEADLINE;
        let new = format!("v=STSv1; id={id};");
        while sts(&server, "d0.example.org") != [new.clone()] {
            assert!(
                Instant::now() < deadline,
                "round {round}: apply published nothing"
            );
            if child.try_wait().unwrap().is_some() {
                break;
            }
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let done = published(&server, &id);
        eprintln!("round {round}: {done} of {DOMAINS} domains had the new id at the kill");
        if done > 0 && done < DOMAINS {
            partial += 1;
        }
        apply(&dir);
        assert_eq!(
            published(&server, &id),
            DOMAINS,
            "round {round}: after re-apply"
        );
        let plan = dir.run(&["plan"]);
        plan.assert_status(0);
    }
    // The test is only worth its name if some kill fell between two UPDATE messages.
    assert!(partial > 0, "no kill landed mid-apply in 2 rounds");
}
