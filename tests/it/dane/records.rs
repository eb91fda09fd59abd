//! DANE for the MX hosts (SPEC "DANE for the MX hosts", issue 28) against a real BIND that
//! signs the zone (`dnssec-policy default`) and takes TSIG-signed updates: the TLSA records
//! published from the certificate files, answered signed; a rollover done the announced way
//! (next key out a TTL ahead, old key withdrawn a TTL after the switch), timed from BIND's
//! answers; an unannounced switch published at once and reported; `check` on an unsigned zone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PublicKeyData};
use sha2::{Digest, Sha256};

use crate::harness::daemon::{eventually, Daemon};
use crate::harness::dns::{DnsServer, Kind, Options, TsigKey};
use crate::harness::{ConfigDir, MAIN};

const ZONE: &str = "example.org.";
pub(crate) const NAME: &str = "_25._tcp.mail.example.org.";
/// Short, so a rollover's waits take seconds.
const TTL: u64 = 3;

/// A CA and leaf certificates for `mail.example.org` it signs with a given key.
pub(crate) struct Ca {
    pub(crate) key: KeyPair,
    params: CertificateParams,
    pem: String,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.clone().self_signed(&key).unwrap().pem();
        Ca { key, params, pem }
    }

    /// The full chain a certbot `fullchain.pem` holds: the leaf, then the CA.
    pub(crate) fn fullchain(&self, leaf_key: &KeyPair) -> String {
        let issuer = Issuer::new(self.params.clone(), &self.key);
        let leaf = CertificateParams::new(vec!["mail.example.org".into()])
            .unwrap()
            .signed_by(leaf_key, &issuer)
            .unwrap();
        format!("{}{}", leaf.pem(), self.pem)
    }
}

/// RFC 6698 §2.1 "3 1 1" / "2 1 1" data, computed here from the key, not by the daemon.
pub(crate) fn spki_sha256(key: &KeyPair) -> Vec<u8> {
    Sha256::digest(key.subject_public_key_info()).to_vec()
}

fn start_bind(dnssec: bool) -> DnsServer {
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    let options = Options {
        dnssec,
        ..Options::default()
    };
    DnsServer::start_with(Kind::Bind, &options, ZONE, &key, &[])
}

fn config(dns: &DnsServer, dir: &ConfigDir, dane: &str) {
    let key = dns.key_file(dir.path());
    dir.write(
        MAIN,
        format!(
            r#"[server]
https = []
admin = "127.0.0.1:0"

[policy]
mode = "enforce"
mx = ["mail.example.org"]

[dns]
provider = "p"
ttl = {TTL}
reconcile = "1h"

[state]
dir = "state"

[providers.p]
kind = "rfc2136"
server = "{}"
tsig_key = "{}"

[domains."example.org"]

[[dane]]
host = "mail.example.org"
cert = "fullchain.pem"
{dane}
"#,
            dns.addr,
            key.display()
        ),
    );
}

/// BIND's TLSA answer at [`NAME`], asked with the DO bit: (usage, data) of each record, and
/// whether an RRSIG covering them came along.
fn tlsa(addr: SocketAddr) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii(NAME).unwrap(),
        RecordType::TLSA,
    ));
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true).set_max_payload(4096);
    m.set_edns(edns);
    let wire = m.to_vec().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&(wire.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&wire).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    let answer = Message::from_vec(&buf).unwrap();
    let mut records: Vec<(u8, Vec<u8>)> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TLSA(t) => Some((t.cert_usage.into(), t.cert_data.to_vec())),
            _ => None,
        })
        .collect();
    records.sort();
    let signed = answer
        .answers
        .iter()
        .any(|r| r.record_type() == RecordType::RRSIG);
    (records, signed)
}

fn has(records: &[(u8, Vec<u8>)], usage: u8, data: &[u8]) -> bool {
    records.iter().any(|(u, d)| *u == usage && d == data)
}

/// The announced way: `next_key` published with the current key; the certificate switches
/// to it a TTL later; the old key's record is withdrawn only one TTL after the switch, and
/// nothing is reported. Every step timed from BIND's answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_rollover_on_a_signed_zone() {
    let dns = start_bind(true);
    let dir = ConfigDir::new();
    let ca = Ca::new();
    let (a, b, c) = (
        KeyPair::generate().unwrap(),
        KeyPair::generate().unwrap(),
        KeyPair::generate().unwrap(),
    );
    dir.write("fullchain.pem", ca.fullchain(&a));
    dir.write("next.pem", b.serialize_pem());
    config(&dns, &dir, "next_key = \"next.pem\"\nissuer = false\n");

    // `check` on a signed zone says nothing about signing.
    eventually("BIND signs the zone (DNSKEY at the apex)", || async {
        (!dns.query(ZONE, RecordType::DNSKEY).is_empty()).then_some(())
    })
    .await;
    let out = crate::harness::run_with_config(&dir.config_path(), &["check"]);
    let stderr = &out.stderr;
    assert!(!stderr.contains("not DNSSEC-signed"), "{stderr}");

    let d = Daemon::start(&dir.config_path());
    let published = eventually("3 1 1 of the key and of next_key, signed", || async {
        let (r, signed) = tlsa(dns.addr);
        (r.len() == 2 && has(&r, 3, &spki_sha256(&a)) && has(&r, 3, &spki_sha256(&b)) && signed)
            .then(Instant::now)
    })
    .await;

    // The certbot deploy hook: the new certificate uses the announced key; a new next key.
    tokio::time::sleep_until((published + Duration::from_secs(TTL + 1)).into()).await;
    dir.write("next.pem", c.serialize_pem());
    dir.write("fullchain.pem", ca.fullchain(&b));
    let switched = Instant::now();
    eventually("the new next key published", || async {
        has(&tlsa(dns.addr).0, 3, &spki_sha256(&c)).then_some(())
    })
    .await;
    let withdrawn = eventually("the old key's record withdrawn", || async {
        let (r, signed) = tlsa(dns.addr);
        assert!(signed, "an unsigned TLSA answer: {r:?}");
        assert!(
            has(&r, 3, &spki_sha256(&b)),
            "the presented key's record went: {r:?}"
        );
        (!has(&r, 3, &spki_sha256(&a))).then(Instant::now)
    })
    .await;
    let after = withdrawn - switched;
    assert!(
        after >= Duration::from_secs(TTL),
        "old key withdrawn {after:?} after the switch, under one TTL ({TTL} s)"
    );
    assert!(
        after < Duration::from_secs(TTL + 8),
        "withdrawn only after {after:?}"
    );
    let (r, _) = tlsa(dns.addr);
    assert_eq!(r.len(), 2, "the presented key and the next key: {r:?}");
    eprintln!(
        "timeline: A+B published; switch to B at +{:?}; C published; A withdrawn {after:?} after the switch",
        switched - published
    );
    // Announced: no finding anywhere.
    assert!(
        !d.lines().iter().any(|l| l.contains("switched to a key")),
        "{}",
        d.lines().join("\n")
    );
    let status = d.status().await;
    assert_eq!(
        status["dane"]["findings"],
        serde_json::json!([]),
        "{status}"
    );
}

/// No `next_key`: a certificate that switches to a new key has it published at once and
/// reported (log ERROR, `/status`, `check`), naming `next_key` and `issuer = true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unannounced_switch_is_published_at_once_and_reported() {
    let dns = start_bind(true);
    let dir = ConfigDir::new();
    let ca = Ca::new();
    let (a, b) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    dir.write("fullchain.pem", ca.fullchain(&a));
    config(&dns, &dir, "");
    let d = Daemon::start(&dir.config_path());
    eventually("3 1 1 of the first key", || async {
        has(&tlsa(dns.addr).0, 3, &spki_sha256(&a)).then_some(())
    })
    .await;
    let skip = d.lines().len();
    dir.write("fullchain.pem", ca.fullchain(&b));
    let switched = Instant::now();
    eventually("the new key published", || async {
        let (r, _) = tlsa(dns.addr);
        // The old one stays for its TTL: senders may still hold it.
        has(&r, 3, &spki_sha256(&b)).then(|| {
            assert!(has(&r, 3, &spki_sha256(&a)) || switched.elapsed() >= Duration::from_secs(TTL))
        })
    })
    .await;
    let line = d.wait_log_after(skip, "switched to a key");
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("next_key") && line.contains("issuer = true"),
        "{line}"
    );
    let status = d.status().await;
    let findings = status["dane"]["findings"]
        .as_array()
        .expect("findings")
        .clone();
    assert_eq!(findings.len(), 1, "{status}");
    let out = crate::harness::run_with_config(&dir.config_path(), &["check"]);
    let stderr = &out.stderr;
    assert!(stderr.contains("switched to a key"), "{stderr}");
}

/// `check` warns when the zone holding the TLSA records is not signed: DANE has no effect.
#[test]
fn check_warns_when_the_zone_is_not_signed() {
    let dns = start_bind(false);
    let dir = ConfigDir::new();
    let a = KeyPair::generate().unwrap();
    dir.write("fullchain.pem", Ca::new().fullchain(&a));
    config(&dns, &dir, "");
    let out = crate::harness::run_with_config(&dir.config_path(), &["check"]);
    let stderr = &out.stderr;
    assert!(
        stderr.contains("zone example.org. is not DNSSEC-signed"),
        "{stderr}"
    );
}

/// PowerDNS through its API: `apply` publishes our TLSA beside a foreign one, a second
/// `apply` changes nothing, and a removed entry's record goes only a TTL later, the foreign
/// one never.
#[test]
fn powerdns_publishes_and_withdraws_only_ours() {
    let pdns = crate::harness::pdns::PdnsServer::start(ZONE);
    let foreign = format!("3 1 1 {}", "AB".repeat(32));
    pdns.add(NAME, "TLSA", &foreign);
    let dir = ConfigDir::new();
    let a = KeyPair::generate().unwrap();
    dir.write("fullchain.pem", Ca::new().fullchain(&a));
    let key = dir.write("pdns.key", format!("{}\n", pdns.api_key));
    let base = format!(
        "[server]\nhttps = []\n[policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\n[dns]\nprovider = \"p\"\nttl = {TTL}\n[state]\ndir = \"state\"\n[providers.p]\nkind = \"powerdns\"\nurl = \"{}\"\napi_key_file = \"{}\"\n",
        pdns.url(),
        key.display()
    );
    let with_entry =
        format!("{base}[[dane]]\nhost = \"mail.example.org\"\ncert = \"fullchain.pem\"\n");
    dir.write(MAIN, &with_entry);
    let ours = format!(
        "3 1 1 {}",
        spki_sha256(&a)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    );
    let seen = || {
        let mut v: Vec<String> = pdns
            .query(NAME, RecordType::TLSA)
            .iter()
            .map(|t| t.to_ascii_uppercase())
            .collect();
        v.sort();
        v
    };
    let mut both = vec![foreign.clone(), ours.clone()];
    both.sort();
    let apply = || crate::harness::run_with_config(&dir.config_path(), &["apply"]);
    let out = apply();
    out.assert_status(0);
    assert!(
        out.stdout
            .contains(&format!("+ {NAME}\t{TTL}\tIN\tTLSA\t{ours}")),
        "{}",
        out.dump()
    );
    assert_eq!(seen(), both);
    let out = apply();
    out.assert_status(0);
    assert!(out.stdout.contains("; 0 records changed"), "{}", out.dump());

    // The entry removed: the record stays for a TTL, then only ours goes.
    dir.write(MAIN, &base);
    let removed = Instant::now();
    apply().assert_status(0);
    assert_eq!(seen(), both, "withdrawn at once");
    std::thread::sleep((removed + Duration::from_secs(TTL + 2)) - Instant::now());
    let out = apply();
    out.assert_status(0);
    assert!(out.stdout.contains(&format!("- {NAME}")), "{}", out.dump());
    assert_eq!(seen(), vec![foreign]);
}

/// Any provider that writes TLSA (the API fakes, moto, an exec program): `apply` publishes
/// the entry's `3 1 1` record beside a foreign one, reads it back as ours (a second `apply`
/// changes nothing), and leaves the foreign one.
pub(crate) fn published_beside_a_foreign_value(b: &dyn crate::providers::battery::Backend) {
    let dir = ConfigDir::new();
    let key = KeyPair::generate().unwrap();
    dir.write("fullchain.pem", Ca::new().fullchain(&key));
    // 3600: deSEC's least TTL.
    dir.write(
        MAIN,
        format!(
            "[server]\nhttps = []\n[policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\n[dns]\nprovider = \"p\"\nttl = 3600\n[state]\ndir = \"state\"\n{}[[dane]]\nhost = \"mail.example.org\"\ncert = \"fullchain.pem\"\n",
            b.provider_toml(&dir)
        ),
    );
    let foreign = format!("3 1 1 {}", "AB".repeat(32));
    b.add(NAME, "TLSA", &foreign);
    let ours = format!(
        "3 1 1 {}",
        spki_sha256(&key)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    );
    let out = dir.run(&["apply"]);
    out.assert_status(0);
    let mut seen: Vec<String> = b
        .query(NAME, "TLSA")
        .iter()
        .map(|v| v.to_ascii_uppercase())
        .collect();
    seen.sort();
    let mut want = vec![foreign, ours];
    want.sort();
    assert_eq!(seen, want, "{}", out.dump());
    let out = dir.run(&["apply"]);
    out.assert_status(0);
    assert!(out.stdout.contains("; 0 records changed"), "{}", out.dump());
}

/// A config for `replica` on the PostgreSQL of `URL_ENV`, with or without the `[[dane]]`
/// entry of `mail.example.org`.
fn replica_config(dns: &DnsServer, dir: &ConfigDir, replica: &str, dane: bool) {
    let key = dns.key_file(dir.path());
    let entry = if dane {
        "[[dane]]\nhost = \"mail.example.org\"\ncert = \"fullchain.pem\"\n"
    } else {
        ""
    };
    let tmp = dir.write(
        ".next.toml",
        format!(
            "[server]\nhttps = []\nadmin = \"127.0.0.1:0\"\n\n\
             [policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\n\n\
             [dns]\nprovider = \"p\"\nttl = {REPLICA_TTL}\nreconcile = \"1h\"\n\n\
             [state]\nurl_env = \"{URL_ENV}\"\nreplica = \"{replica}\"\nlease = \"4s\"\n\n\
             [providers.p]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n\n\
             [domains.\"example.org\"]\n\n{entry}",
            dns.addr,
            key.display()
        ),
    );
    std::fs::rename(tmp, dir.config_path()).unwrap();
}

const URL_ENV: &str = "MTA_STSD_TEST_STATE_URL";
/// Long enough for A to be killed before its withdrawal is due on a loaded machine.
const REPLICA_TTL: u64 = 10;

/// Replicas on one PostgreSQL, each with its own state dir: the `[[dane]]` entry removed
/// from A's config makes A schedule its record's withdrawal one TTL later (kept in the
/// store); A is killed before then, and B — whose config never had the entry and whose state
/// dir is empty — withdraws it, not before the time A scheduled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_scheduled_by_one_replica_is_done_by_another() {
    let dns = start_bind(false);
    let pg = crate::harness::postgres::Postgres::start();
    let url = pg.url();
    let (da, db) = (ConfigDir::new(), ConfigDir::new());
    let ca = Ca::new();
    let key = KeyPair::generate().unwrap();
    da.write("fullchain.pem", ca.fullchain(&key));
    replica_config(&dns, &da, "a", true);
    let a = Daemon::start_with(&da.config_path(), &[(URL_ENV, &url)]);
    eventually("A publishes 3 1 1 of the key", || async {
        has(&tlsa(dns.addr).0, 3, &spki_sha256(&key)).then_some(())
    })
    .await;

    replica_config(&dns, &da, "a", false);
    let due = eventually("A schedules the withdrawal", || async {
        let s = a.status().await;
        s["dane"]["next_due"].as_str().map(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .unwrap()
                .unix_timestamp()
        })
    })
    .await;
    a.signal("KILL");
    assert!(
        has(&tlsa(dns.addr).0, 3, &spki_sha256(&key)),
        "withdrawn before its TTL was up"
    );
    assert!(
        !a.lines().iter().any(|l| l.contains("DANE: withdrew")),
        "A withdrew it itself"
    );

    replica_config(&dns, &db, "b", false);
    let b = Daemon::start_with(&db.config_path(), &[(URL_ENV, &url)]);
    eventually("B withdraws the record", || async {
        (!has(&tlsa(dns.addr).0, 3, &spki_sha256(&key))).then_some(())
    })
    .await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(now >= due, "withdrawn at {now}, scheduled for {due}");
    let line = b.wait_log("DANE: withdrew");
    assert!(line.contains("example.org"), "{line}");
    assert!(
        !state_dir(&db).join("dane.json").exists(),
        "B keeps no file of its own"
    );
}

fn state_dir(dir: &ConfigDir) -> std::path::PathBuf {
    crate::harness::state_dir_for(&dir.config_path())
}
