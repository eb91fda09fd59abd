//! Tests of the DNS server harness itself (`harness::dns`), against both real servers: it
//! starts them, seeds and reads the zone, updates it behind a daemon's back, keeps updates
//! across a restart, and the servers refuse updates signed with the wrong key.

use std::process::Command;

use hickory_proto::rr::RecordType;

use crate::harness::dns::{DnsServer, Kind, TsigKey};

const ZONE: &str = "example.org";

fn seeded(kind: Kind, key: &TsigKey) -> DnsServer {
    DnsServer::start(
        kind,
        ZONE,
        key,
        &[
            r#"_mta-sts 300 IN TXT "foreign""#,
            r#"split IN TXT "v=STSv1; " "id=1""#,
            "mta-sts IN CNAME web.example.net.",
            "www IN A 192.0.2.7",
        ],
    )
}

fn seeded_records_are_answered(kind: Kind) {
    let server = seeded(kind, &TsigKey::generate("harness-key", "hmac-sha256"));
    assert_eq!(server.kind, kind);
    assert_eq!(server.zone, "example.org.");
    assert!(server.addr.ip().is_loopback() && server.addr.port() != 53);
    assert_eq!(
        server.query("_mta-sts.example.org.", RecordType::TXT),
        ["foreign"]
    );
    // Case and the trailing dot do not matter; strings of one TXT record are concatenated.
    assert_eq!(
        server.query("_MTA-STS.Example.Org", RecordType::TXT),
        ["foreign"]
    );
    assert_eq!(
        server.query("split.example.org", RecordType::TXT),
        ["v=STSv1; id=1"]
    );
    assert_eq!(
        server.query("mta-sts.example.org", RecordType::CNAME),
        ["web.example.net."]
    );
    assert_eq!(
        server.query("www.example.org", RecordType::A),
        ["192.0.2.7"]
    );
    assert_eq!(
        server.query("ns1.example.org", RecordType::A),
        ["127.0.0.1"]
    );
    assert_eq!(
        server.query("example.org", RecordType::NS),
        ["ns1.example.org."]
    );
    // Only records owned by the name asked: the CNAME an A query follows is left out.
    assert_eq!(
        server.query("mta-sts.example.org", RecordType::A),
        Vec::<String>::new()
    );
    assert_eq!(
        server.query("absent.example.org", RecordType::TXT),
        Vec::<String>::new()
    );
    assert_eq!(server.serial(), 1);
}

#[test]
fn dns_harness_bind_answers_seeded_records() {
    seeded_records_are_answered(Kind::Bind);
}

#[test]
fn dns_harness_knot_answers_seeded_records() {
    seeded_records_are_answered(Kind::Knot);
}

fn updates_survive_restart(kind: Kind, algorithm: &'static str) {
    let mut server = seeded(kind, &TsigKey::generate("mta-stsd-test.", algorithm));
    server.nsupdate(r#"update add _mta-sts.example.org. 300 IN TXT "v=STSv1; id=20240101""#);
    let mut both = server.query("_mta-sts.example.org", RecordType::TXT);
    both.sort();
    assert_eq!(both, ["foreign", "v=STSv1; id=20240101"]);
    server.nsupdate("update delete _mta-sts.example.org. TXT \"foreign\"");
    assert_eq!(
        server.query("_mta-sts.example.org", RecordType::TXT),
        ["v=STSv1; id=20240101"]
    );
    let serial = server.serial();
    assert!(serial > 1, "updates must bump the serial, got {serial}");

    // Killed outright, started again on the same port from its files: the updates stay.
    let addr = server.addr;
    server.stop();
    assert!(
        server
            .query_message("example.org", RecordType::SOA)
            .is_err(),
        "a stopped server must not answer"
    );
    server.restart();
    assert_eq!(server.addr, addr);
    assert_eq!(
        server.query("_mta-sts.example.org", RecordType::TXT),
        ["v=STSv1; id=20240101"],
        "updates lost across a restart\n{}",
        server.dump()
    );
    assert_eq!(server.serial(), serial);

    // It still takes updates, and keeps them across a second restart (without a stop first).
    server.nsupdate(
        "update delete _mta-sts.example.org. TXT\n\
         update add _mta-sts.example.org. 300 IN TXT \"v=STSv1; id=2\"",
    );
    server.restart();
    assert_eq!(
        server.query("_mta-sts.example.org", RecordType::TXT),
        ["v=STSv1; id=2"]
    );
}

#[test]
fn dns_harness_bind_keeps_updates_across_restart() {
    updates_survive_restart(Kind::Bind, "hmac-sha384");
}

#[test]
fn dns_harness_knot_keeps_updates_across_restart() {
    updates_survive_restart(Kind::Knot, "hmac-sha512");
}

fn wrong_keys_are_refused(kind: Kind) {
    let server = seeded(kind, &TsigKey::generate("harness-key", "hmac-sha256"));
    let add = r#"update add intruder.example.org. 300 IN TXT "x""#;
    for (what, key) in [
        // The right name with another secret: the signature does not verify.
        (
            "another secret",
            TsigKey::generate("harness-key", "hmac-sha256"),
        ),
        // A key the server does not know.
        ("unknown key", TsigKey::generate("other-key", "hmac-sha256")),
    ] {
        let out = server.nsupdate_with_key(&key, add);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "{kind:?} accepted an update signed with {what}\n{text}"
        );
        assert!(
            ["NOTAUTH", "BADSIG", "BADKEY", "REFUSED"]
                .iter()
                .any(|e| text.contains(e)),
            "{kind:?}: no TSIG refusal reported for {what}\n{text}"
        );
    }
    assert_eq!(
        server.query("intruder.example.org", RecordType::TXT),
        Vec::<String>::new()
    );
    assert_eq!(server.serial(), 1);
}

#[test]
fn dns_harness_bind_refuses_wrong_keys() {
    wrong_keys_are_refused(Kind::Bind);
}

#[test]
fn dns_harness_knot_refuses_wrong_keys() {
    wrong_keys_are_refused(Kind::Knot);
}

#[test]
fn dns_harness_servers_run_side_by_side() {
    let key = TsigKey::generate("shared", "hmac-sha256");
    let bind = DnsServer::start(Kind::Bind, "example.com.", &key, &[]);
    let knot = DnsServer::start(Kind::Knot, "example.com.", &key, &[]);
    assert_ne!(bind.addr, knot.addr);
    bind.nsupdate(r#"update add a.example.com. 60 IN TXT "bind""#);
    knot.nsupdate(r#"update add a.example.com. 60 IN TXT "knot""#);
    assert_eq!(bind.query("a.example.com", RecordType::TXT), ["bind"]);
    assert_eq!(knot.query("a.example.com", RecordType::TXT), ["knot"]);
}

#[test]
fn dns_harness_key_file_is_what_tsig_keygen_writes() {
    for (algorithm, secret_len) in [
        ("hmac-sha256", 44),
        ("hmac-sha384", 64),
        ("hmac-sha512", 88),
    ] {
        let key = TsigKey::generate("mta-stsd", algorithm);
        assert_eq!(key.algorithm, algorithm);
        assert_eq!(key.secret_b64.len(), secret_len, "{key:?}");
        assert_ne!(
            key.secret_b64,
            TsigKey::generate("mta-stsd", algorithm).secret_b64
        );
        assert_eq!(
            key.bind_key_file(),
            format!(
                "key \"mta-stsd\" {{\n\talgorithm {algorithm};\n\tsecret \"{}\";\n}};\n",
                key.secret_b64
            )
        );

        // The real tsig-keygen writes the same shape with a secret of the same size.
        let out = Command::new(sbin("tsig-keygen"))
            .args(["-a", algorithm, "mta-stsd"])
            .output()
            .expect("running tsig-keygen (Debian package bind9-utils)");
        assert!(out.status.success(), "{out:?}");
        let real = String::from_utf8(out.stdout).unwrap();
        let real_secret = real
            .split('"')
            .nth(3)
            .unwrap_or_else(|| panic!("no secret in {real}"));
        assert_eq!(real_secret.len(), secret_len, "{real}");
        assert_eq!(
            real.replace(real_secret, &key.secret_b64),
            key.bind_key_file()
        );
    }

    // The daemon's copy of the key, written into its config directory.
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    let server = DnsServer::start(Kind::Bind, ZONE, &key, &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = server.key_file(dir.path());
    assert!(path.starts_with(dir.path()));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), key.bind_key_file());
    let check = Command::new(sbin("named-checkconf"))
        .arg(&path)
        .output()
        .expect("running named-checkconf (Debian package bind9-utils)");
    assert!(check.status.success(), "{check:?}");
}

/// A program from /usr/sbin, which a non-root PATH lacks on Debian.
fn sbin(name: &str) -> std::path::PathBuf {
    let p = std::path::Path::new("/usr/sbin").join(name);
    if p.is_file() {
        p
    } else {
        name.into()
    }
}

fn broken_zone_fails_fast(kind: Kind) {
    let key = TsigKey::generate("harness-key", "hmac-sha256");
    let started = std::time::Instant::now();
    let panic = std::panic::catch_unwind(|| {
        DnsServer::start(kind, ZONE, &key, &[r#"bad IN TXT "unterminated"#])
    })
    .err()
    .unwrap_or_else(|| panic!("{kind:?} started with a broken zone file"));
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("did not load the zone") && message.contains("zone.db"),
        "{kind:?}: the panic must say why, with the server's log\n{message}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{kind:?}: a broken zone must fail at once, not at the readiness deadline"
    );
}

#[test]
fn dns_harness_bind_broken_zone_fails_fast() {
    broken_zone_fails_fast(Kind::Bind);
}

#[test]
fn dns_harness_knot_broken_zone_fails_fast() {
    broken_zone_fails_fast(Kind::Knot);
}
