//! DANE (RFC 7672) as a DANE sender sees it: `example.org` signed with dnssec-keygen and
//! dnssec-signzone and served by a real BIND, `example.net` unsigned beside it; drift's
//! resolver a second BIND that validates, with a trust anchor for `example.org`, so the AD bit
//! comes from a real validation. The MX hosts are a real Postfix with certificates from a test
//! CA. TLSA matching: nothing found; not matching: critical; in the unsigned zone: not in effect.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::harness::daemon::{eventually_blocking, TestCa};
use crate::harness::dns::{
    ensure_loopback, find_program, free_port, free_port_on, unconfined_named,
};
use crate::harness::postfix::{Listener, Postfix};
use crate::harness::{run_with_config, ConfigDir, MAIN};

const AUTH: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 51);
const RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 52);
const MX_GOOD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);
const MX_BAD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 54);
const MX_NET: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 55);

/// A `named` started by the test in its own directory; killed on drop.
struct Named {
    child: Child,
    dir: tempfile::TempDir,
}

impl Named {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `named` on `conf` (written into `dir`, which holds the zone files it names).
fn named(dir: tempfile::TempDir, conf: &str) -> Named {
    let path = dir.path().join("named.conf");
    std::fs::write(&path, conf).unwrap();
    let program = unconfined_named(find_program("named", "bind9"), dir.path());
    let log = std::fs::File::create(dir.path().join("named.log")).unwrap();
    let child = Command::new(program)
        .args(["-g", "-4", "-n", "1", "-c"])
        .arg(&path)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting named");
    Named { child, dir }
}

/// One UDP question with recursion desired, DNSSEC OK and AD set, as drift asks TLSA.
fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> std::io::Result<Message> {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.authentic_data = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true).set_max_payload(1232);
    m.set_edns(edns);
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.connect(server)?;
    s.send(&m.to_vec().unwrap())?;
    let mut buf = vec![0u8; 65535];
    let n = s.recv(&mut buf)?;
    Message::from_vec(&buf[..n]).map_err(|e| std::io::Error::other(e.to_string()))
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        & 0xffff) as u16
}

/// Polls `server` until `ok` holds for its answer to `name`/`rtype`, or panics with the log.
#[track_caller]
fn wait_for(
    server: &Named,
    at: SocketAddr,
    name: &str,
    rtype: RecordType,
    ok: fn(&Message) -> bool,
) {
    let what = format!("{at}: {name} {rtype}");
    eventually_blocking(Duration::from_secs(20), &what, || {
        match ask(at, name, rtype) {
            Ok(m) if ok(&m) => Ok(()),
            Ok(m) => Err(format!(
                "{:?} ad={}\n{}",
                m.response_code,
                m.authentic_data,
                server.log()
            )),
            Err(e) => Err(format!("{e}\n{}", server.log())),
        }
    });
}

/// SHA-256 of the leaf's SubjectPublicKeyInfo: a `3 1 1` TLSA record's data, in hex.
fn spki_sha256(cert_pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let (_, x) = X509Certificate::from_der(&der).unwrap();
    Sha256::digest(x.tbs_certificate.subject_pki.raw)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `program args` in `dir`; panics with its output if it fails. Returns stdout.
#[track_caller]
fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(find_program(program, "bind9-utils"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn tlsa_matching_mismatching_and_unsigned_with_a_validating_resolver() {
    for ip in [AUTH, RESOLVER] {
        ensure_loopback(ip);
    }
    let ca = TestCa::new();
    let good = ca.leaf(&["mx-good.example.org"]);
    let bad = ca.leaf(&["mx-bad.example.org"]);
    let net = ca.leaf(&["mx.example.net"]);
    let smtp_port = free_port_on(&[MX_GOOD, MX_BAD, MX_NET]);
    let _postfix = Postfix::start(
        &[
            Listener {
                ip: MX_GOOD,
                tls: Some(good.clone()),
            },
            Listener {
                ip: MX_BAD,
                tls: Some(bad.clone()),
            },
            Listener {
                ip: MX_NET,
                tls: Some(net.clone()),
            },
        ],
        smtp_port,
    );

    // The authoritative server: example.org signed (a KSK and a ZSK), example.net not.
    let auth_port = free_port_on(&[AUTH]);
    let auth_dir = tempfile::Builder::new()
        .prefix("mta-stsd-dnssec-")
        .tempdir()
        .unwrap();
    let d = &auth_dir.path().to_path_buf();
    let soa = "@ IN SOA ns1.example.org. hostmaster.example.org. 1 3600 600 86400 300\n\
               @ IN NS ns1.example.org.\n";
    let org = format!(
        "$TTL 300\n{soa}ns1 IN A {AUTH}\n\
         good IN MX 10 mx-good\nbad IN MX 10 mx-bad\nnet IN MX 10 mx.example.net.\n\
         mx-good IN A {MX_GOOD}\nmx-bad IN A {MX_BAD}\n\
         _25._tcp.mx-good IN TLSA 3 1 1 {}\n\
         _25._tcp.mx-bad IN TLSA 3 1 1 {}\n",
        spki_sha256(&good.0),
        // The key of mx-good: a TLSA record, but not for mx-bad's certificate.
        spki_sha256(&good.0),
    );
    std::fs::write(d.join("example.org.db"), org).unwrap();
    let alg = ["-a", "ECDSAP256SHA256", "-n", "ZONE"];
    let ksk = run(
        d,
        "dnssec-keygen",
        &[&alg[..], &["-f", "KSK", "example.org"]].concat(),
    );
    run(d, "dnssec-keygen", &[&alg[..], &["example.org"]].concat());
    // -S: the keys found in the directory; -o: the origin.
    run(
        d,
        "dnssec-signzone",
        &[
            "-S",
            "-K",
            ".",
            "-o",
            "example.org",
            "-f",
            "example.org.signed",
            "example.org.db",
        ],
    );
    std::fs::write(
        d.join("example.net.db"),
        format!(
            "$TTL 300\n{soa}mx IN A {MX_NET}\n_25._tcp.mx IN TLSA 3 1 1 {}\n",
            spki_sha256(&net.0)
        ),
    )
    .unwrap();
    let auth = named(
        auth_dir,
        &format!(
            "options {{\n directory \"{}\";\n listen-on port {auth_port} {{ {AUTH}; }};\n\
             listen-on-v6 {{ none; }};\n pid-file \"named.pid\";\n session-keyfile \"session.key\";\n recursion no;\n\
             dnssec-validation no;\n notify no;\n}};\ncontrols {{ }};\n\
             zone \"example.org\" {{ type primary; file \"example.org.signed\"; }};\n\
             zone \"example.net\" {{ type primary; file \"example.net.db\"; }};\n",
            d.display()
        ),
    );
    let auth_at = SocketAddr::from((AUTH, auth_port));
    wait_for(&auth, auth_at, "example.org.", RecordType::SOA, |m| {
        !m.answers.is_empty()
    });

    // The validating resolver: forwards to the authoritative one, trusts example.org's KSK
    // and nothing else (no root anchor: example.net is insecure, not bogus).
    let key = std::fs::read_to_string(d.join(format!("{ksk}.key"))).unwrap();
    let dnskey = key
        .lines()
        .find(|l| !l.starts_with(';') && l.contains("DNSKEY"))
        .unwrap();
    let f: Vec<&str> = dnskey.split_whitespace().collect();
    let at = f.iter().position(|w| *w == "DNSKEY").unwrap();
    let anchor = format!(
        "example.org. static-key {} {} {} \"{}\";",
        f[at + 1],
        f[at + 2],
        f[at + 3],
        f[at + 4..].concat()
    );
    let resolver_port = free_port_on(&[RESOLVER]);
    let resolver_dir = tempfile::Builder::new()
        .prefix("mta-stsd-validator-")
        .tempdir()
        .unwrap();
    let resolver = named(
        resolver_dir,
        &format!(
            "options {{\n directory \".\";\n listen-on port {resolver_port} {{ {RESOLVER}; }};\n\
             listen-on-v6 {{ none; }};\n pid-file \"named.pid\";\n session-keyfile \"session.key\";\n recursion yes;\n\
             allow-query {{ any; }};\n allow-recursion {{ any; }};\n\
             dnssec-validation yes;\n forward only;\n forwarders {{ {AUTH} port {auth_port}; }};\n\
             }};\ncontrols {{ }};\ntrust-anchors {{ {anchor} }};\n"
        ),
    );
    let resolver_at = SocketAddr::from((RESOLVER, resolver_port));
    // The AD bit on the signed zone's TLSA: validation works before drift asks.
    wait_for(
        &resolver,
        resolver_at,
        "_25._tcp.mx-good.example.org.",
        RecordType::TLSA,
        |m| m.authentic_data && !m.answers.is_empty(),
    );

    let dir = ConfigDir::new();
    dir.write("ca.pem", &ca.pem);
    dir.write(
        MAIN,
        format!(
            "[server]\nhttps = [\"127.0.0.1:{}\"]\n\n[tls]\nself_signed = true\n\n\
             [policy]\nmode = \"enforce\"\nmx = [\"*.example.org\", \"*.example.net\"]\n\
             max_age = 86400\n\n\
             [domains.\"good.example.org\"]\n[domains.\"bad.example.org\"]\n\
             [domains.\"net.example.org\"]\n\n\
             [drift]\nresolver = \"{resolver_at}\"\ndns_port = {auth_port}\nhttps_port = {}\n\
             ca = \"ca.pem\"\nsmtp_port = {smtp_port}\nsmtp_timeout = \"2s\"\n",
            free_port(),
            free_port()
        ),
    );
    let out = run_with_config(
        &dir.config_path(),
        &["drift", "--verbose", "--format", "json"],
    );
    let report: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.dump()));
    let domain = |name: &str| -> &Value {
        report["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["domain"] == name)
            .unwrap_or_else(|| panic!("no {name} in {report:#}"))
    };
    let mx_findings = |name: &str| -> Vec<(String, String, String)> {
        domain(name)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == "dane" || f["check"] == "mx-tls")
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap().to_owned();
                (s("severity"), s("check"), s("message"))
            })
            .collect()
    };
    let dane_passed = |name: &str| -> Vec<String> {
        domain(name)["passed"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["check"] == "dane")
                    .map(|p| p["looked_at"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    // Validated and matching: nothing to report; the passed check says so.
    assert_eq!(mx_findings("good.example.org"), vec![], "{report:#}");
    assert_eq!(
        dane_passed("good.example.org"),
        vec![format!(
            "1 usable TLSA record(s) at _25._tcp.mx-good.example.org, DNSSEC-validated, match at {MX_GOOD}:{smtp_port}"
        )],
        "{report:#}"
    );
    // Validated, not matching: DANE senders defer mail.
    let bad_found = mx_findings("bad.example.org");
    assert_eq!(bad_found.len(), 1, "{report:#}");
    assert_eq!((&*bad_found[0].0, &*bad_found[0].1), ("critical", "dane"));
    assert!(
        bad_found[0].2.starts_with(&format!(
            "the certificate of MX mx-bad.example.org at {MX_BAD}:{smtp_port} matches none of the 1 usable TLSA record(s)"
        )),
        "{report:#}"
    );
    // Matching, but in an unsigned zone: the resolver set no AD bit, so not in effect.
    let net_found = mx_findings("net.example.org");
    assert_eq!(net_found.len(), 1, "{report:#}");
    assert_eq!((&*net_found[0].0, &*net_found[0].1), ("warning", "dane"));
    assert!(
        net_found[0].2.contains(
            "TLSA record(s) at _25._tcp.mx.example.net without DNSSEC (the resolver set no AD bit): not in effect"
        ) && net_found[0].2.ends_with("the presented certificates would match"),
        "{report:#}"
    );
}
