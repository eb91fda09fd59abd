//! The MX check against a real Postfix: one master with an smtpd per case on its own loopback
//! address (valid, expired, wrong name, self-signed, expiring, no STARTTLS), a listener that
//! accepts and never answers, MX and TLSA records in a real BIND, and the real binary's `drift`.
//! Each case is seen in `enforce` (critical) and `testing` (warning); probes are shared by the
//! domains naming the same MX; TLSA published without DNSSEC is reported as not in effect.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::harness::daemon::TestCa;
use crate::harness::dns::{free_port, free_port_on};
use crate::harness::drift::{example_org, NS};
use crate::harness::postfix::{Listener, Postfix};
use crate::harness::{run_with_config, ConfigDir, MAIN};

const ZONE: &str = "example.org";
const DAY: i64 = 86400;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sets a leaf's validity to `[now + from, now + to]` (seconds, may be negative).
fn validity(p: &mut rcgen::CertificateParams, from: i64, to: i64) {
    let at = |offset: i64| {
        rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs((now() as i64 + offset) as u64)
    };
    p.not_before = at(from);
    p.not_after = at(to);
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

/// The MX-TLS and DANE findings of each domain: (severity, check, message).
fn mx_findings(report: &Value, domain: &str) -> Vec<(String, String, String)> {
    let d = report["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == domain)
        .unwrap_or_else(|| panic!("no {domain} in {report:#}"));
    d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "mx-tls" || f["check"] == "dane")
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap().to_owned();
            (s("severity"), s("check"), s("message"))
        })
        .collect()
}

#[track_caller]
fn assert_findings(report: &Value, domain: &str, want: &[(&str, &str, &str)]) {
    let got = mx_findings(report, domain);
    let ok = got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|((s, c, m), (ws, wc, wm))| s == ws && c == wc && m.contains(wm));
    assert!(ok, "{domain}: wanted {want:#?}\ngot {got:#?}");
}

/// An MX: its label, address, and certificate (none: no STARTTLS).
type Case = (&'static str, Ipv4Addr, Option<(String, String)>);

#[test]
fn each_mx_failure_with_its_severity_per_mode_and_probes_shared() {
    let ca = TestCa::new();
    let host = |label: &str| format!("mx-{label}.{ZONE}");
    let valid = ca.leaf(&[&host("valid")]);
    let expired = ca.leaf_with(&[&host("expired")], |p| validity(p, -30 * DAY, -DAY));
    let wrong = ca.leaf(&["mail.example.net"]);
    let own = rcgen::generate_simple_self_signed(vec![host("self")]).unwrap();
    let own = (own.cert.pem(), own.signing_key.serialize_pem());
    let soon = ca.leaf_with(&[&host("soon")], |p| validity(p, -DAY, 2 * DAY + 3600));
    let ip = |n: u8| Ipv4Addr::new(127, 0, 0, n);
    let cases: Vec<Case> = vec![
        ("valid", ip(11), Some(valid.clone())),
        ("expired", ip(12), Some(expired)),
        ("wrongname", ip(13), Some(wrong)),
        ("self", ip(14), Some(own)),
        ("soon", ip(15), Some(soon)),
        ("plain", ip(16), None),
    ];
    let silent_ip = ip(17);
    let mut ips: Vec<Ipv4Addr> = cases.iter().map(|c| c.1).collect();
    ips.push(silent_ip);
    let smtp_port = free_port_on(&ips);
    let postfix = Postfix::start(
        &cases
            .iter()
            .map(|(_, ip, tls)| Listener {
                ip: *ip,
                tls: tls.clone(),
            })
            .collect::<Vec<_>>(),
        smtp_port,
    );
    // Accepts, then never says a word, until the test ends.
    let silent = TcpListener::bind((silent_ip, smtp_port)).unwrap();
    silent.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let held = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut kept = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match silent.accept() {
                    Ok((s, _)) => kept.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            kept.len()
        }
    });

    let mut records = vec![format!(
        "_25._tcp.mx-valid TLSA 3 1 1 {}",
        spki_sha256(&valid.0)
    )];
    records.push(format!(
        "_25._tcp.mx-wrongname TLSA 3 1 1 {}",
        "ab".repeat(32)
    ));
    let mut labels: Vec<&str> = cases.iter().map(|c| c.0).collect();
    labels.push("silent");
    for (label, ip) in cases
        .iter()
        .map(|c| (c.0, c.1))
        .chain([("silent", silent_ip)])
    {
        records.push(format!("mx-{label} A {ip}"));
        for mode in ["enforce", "testing"] {
            records.push(format!("{label}-{mode} MX 10 mx-{label}"));
        }
    }
    let dns = example_org(
        "mx-test",
        &records.iter().map(String::as_str).collect::<Vec<_>>(),
        false,
    );
    let dns_port = dns.addr.port();

    let dir = ConfigDir::new();
    dir.write("ca.pem", &ca.pem);
    let mut config = format!(
        "[server]\nhttps = [\"127.0.0.1:{}\"]\nadmin = \"127.0.0.1:0\"\n\n\
         [tls]\nself_signed = true\n\n[policy]\nmode = \"enforce\"\nmx = [\"*.example.org\"]\nmax_age = 86400\n\n\
         [drift]\nresolver = \"{NS}:{dns_port}\"\ndns_port = {dns_port}\nhttps_port = {}\n\
         ca = \"ca.pem\"\nsmtp_port = {smtp_port}\nsmtp_timeout = \"1s\"\n",
        free_port(),
        free_port()
    );
    for label in &labels {
        config += &format!("\n[domains.\"{label}-enforce.{ZONE}\"]\n");
        config += &format!("\n[domains.\"{label}-testing.{ZONE}\"]\nmode = \"testing\"\n");
    }
    dir.write(MAIN, &config);

    let started = Instant::now();
    let out = run_with_config(&dir.config_path(), &["drift", "--format", "json"]);
    let took = started.elapsed();
    let report: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.dump()));
    // The silent MX costs one timeout per step reached, not a hang.
    assert!(took < Duration::from_secs(15), "drift took {took:?}");
    // Twelve domains, six Postfix listeners: one connection each.
    assert_eq!(
        postfix.ehlo_sessions_at_least(6),
        6,
        "probes are not shared per MX host\n{}",
        postfix.log()
    );

    let dane_ok = (
        "warning",
        "dane",
        "without DNSSEC (the resolver set no AD bit): not in effect, DANE senders ignore them; the presented certificates would match",
    );
    let dane_bad = (
        "warning",
        "dane",
        &*format!(
            "not in effect, DANE senders ignore them; it would not match at 127.0.0.13:{smtp_port}"
        ),
    );
    for (mode, failing) in [("enforce", "critical"), ("testing", "warning")] {
        let d = |label: &str| format!("{label}-{mode}.{ZONE}");
        assert_findings(&report, &d("valid"), &[dane_ok]);
        assert_findings(
            &report,
            &d("expired"),
            &[(failing, "mx-tls", &format!("the certificate of MX mx-expired.example.org (127.0.0.12:{smtp_port}) is not valid for mx-expired.example.org: it expired on"))],
        );
        let wrong_mx = (
            failing,
            "mx-tls",
            "is not valid for mx-wrongname.example.org: it is issued for mail.example.net, not this name",
        );
        assert_findings(&report, &d("wrongname"), &[wrong_mx, dane_bad]);
        assert_findings(
            &report,
            &d("self"),
            &[(
                failing,
                "mx-tls",
                "is not valid for mx-self.example.org: its issuer is not trusted",
            )],
        );
        assert_findings(&report, &d("soon"), &[(failing, "mx-tls", "(127.0.0.15:")]);
        assert!(mx_findings(&report, &d("soon"))[0]
            .2
            .ends_with("expires in 2 days"));
        assert_findings(
            &report,
            &d("plain"),
            &[(failing, "mx-tls", "does not offer STARTTLS")],
        );
        assert_findings(
            &report,
            &d("silent"),
            &[(failing, "mx-tls", &format!("MX mx-silent.example.org (127.0.0.17:{smtp_port}) accepts connections but does not answer: no banner within 1s"))],
        );
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(held.join().unwrap(), 1, "the silent MX is probed once");
    let consequence = |d: &str| mx_findings(&report, d)[0].2.clone();
    assert!(consequence("expired-enforce.example.org")
        .ends_with("senders with MTA-STS defer mail to it"));
    assert!(consequence("expired-testing.example.org")
        .ends_with("senders report failures for it (mode testing)"));
}
