//! How drift asks DNS, read from a real BIND's query log: over UDP, every question of a run
//! from one socket; an answer too long for UDP (truncated, RFC 7766 §5) asked again over TCP
//! and read whole; a resolver whose UDP is dropped on the way asked over TCP.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::harness::dns::free_port;
use crate::harness::drift::{example_org, NS};
use crate::harness::{run_with_config, ConfigDir, MAIN};

/// One question in BIND's query log: (client port, name, type, flags such as `+E(0)K`).
fn questions(log: &str) -> Vec<(u16, String, String, String)> {
    log.lines()
        .filter_map(|l| {
            // client @0x… 127.0.0.2#40000 (name): query: name IN TXT +E(0)K (127.0.0.2)
            let (_, rest) = l.split_once("client @")?;
            let port = rest.split_once('#')?.1.split_once(' ')?.0.parse().ok()?;
            let q = rest.split_once("): query: ")?.1;
            let f: Vec<&str> = q.split_whitespace().collect();
            Some((port, f[0].to_owned(), f[2].to_owned(), f[3].to_owned()))
        })
        .collect()
}

#[test]
fn udp_from_one_socket_and_tcp_for_a_truncated_answer() {
    // A TLSRPT record with 40 rua URIs: ~1.7 KB, over the 1232-byte EDNS payload drift asks.
    let rua: Vec<String> = (0..40)
        .map(|i| format!("mailto:tls-reports-{i:02}@reports.example.org"))
        .collect();
    let text = format!("v=TLSRPTv1; rua={};", rua.join(","));
    let chunks: Vec<String> = text
        .as_bytes()
        .chunks(200)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
        .collect();
    let long = format!("_smtp._tls.a TXT {}", chunks.join(" "));
    let dns = example_org(
        "transport-test",
        &[
            &long,
            "a MX 10 mx1",
            "mx1 A 127.0.0.1",
            "mta-sts.a CNAME mail",
            "mail A 127.0.0.1",
        ],
        true,
    );
    let port = dns.addr.port();
    let dir = ConfigDir::new();
    let uris: Vec<String> = rua.iter().map(|u| format!("\"{u}\"")).collect();
    dir.write(
        MAIN,
        format!(
            "[server]\nhttps = [\"127.0.0.1:{}\"]\n\n[tls]\nself_signed = true\n\n\
             [policy]\nmode = \"enforce\"\nmx = [\"mx1.example.org\"]\nmax_age = 86400\n\n\
             [dns]\ntarget = \"mail.example.org.\"\ntlsrpt = [{}]\n\n\
             [domains.\"a.example.org\"]\n\n\
             [drift]\nresolver = \"{NS}:{port}\"\ndns_port = {port}\nhttps_port = {}\nsmtp_port = {}\n",
            free_port(),
            uris.join(", "),
            free_port(),
            // The MX-TLS check runs too (nothing listens there): it asks for the MX as well.
            free_port()
        ),
    );
    // The harness asked its own questions while waiting for BIND to answer: not drift's.
    let before = dns.log().len();
    let out = run_with_config(&dir.config_path(), &["drift", "--format", "json"]);
    let report: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.dump()));
    let findings = report["domains"][0]["findings"].as_array().unwrap();
    // The long record was read whole: it is the configured one.
    assert!(
        !findings.iter().any(|f| f["check"] == "tlsrpt"),
        "{report:#}"
    );
    // The other checks did run (no policy is served here): a real report, not an empty one.
    assert!(
        findings.iter().any(|f| f["check"] == "policy-fetch"),
        "{report:#}"
    );

    let log = dns.log()[before..].to_owned();
    let asked = questions(&log);
    let tcp = |flags: &str| flags.contains('T');
    let long_name = "_smtp._tls.a.example.org";
    let over = |want_tcp: bool| {
        asked
            .iter()
            .filter(|(_, n, t, f)| n == long_name && t == "TXT" && tcp(f) == want_tcp)
            .count()
    };
    assert_eq!((over(false), over(true)), (1, 1), "{log}");
    // Every other question over UDP only, each with EDNS (so TXT and TLSA answers fit).
    let others: Vec<_> = asked.iter().filter(|(_, n, _, _)| n != long_name).collect();
    for want in [
        ("_mta-sts.a.example.org", "TXT"),
        ("a.example.org", "MX"),
        ("mta-sts.a.example.org", "A"),
        ("mta-sts.a.example.org", "AAAA"),
    ] {
        assert!(
            others
                .iter()
                .any(|(_, n, t, _)| (n.as_str(), t.as_str()) == want),
            "{want:?} never asked\n{log}"
        );
    }
    for (_, n, t, f) in &others {
        assert!(!tcp(f) && f.contains("E(0)"), "{n} {t} {f}\n{log}");
    }
    // The MX coverage and MX-TLS checks share one MX lookup.
    let mx = asked
        .iter()
        .filter(|(_, n, t, _)| n == "a.example.org" && t == "MX")
        .count();
    assert_eq!(mx, 1, "{log}");
    // One UDP socket for the whole run.
    let ports: BTreeSet<u16> = asked
        .iter()
        .filter(|(_, _, _, f)| !tcp(f))
        .map(|(p, _, _, _)| *p)
        .collect();
    assert_eq!(ports.len(), 1, "{ports:?}\n{log}");
}

/// A resolver address that reads and drops every UDP question, and passes each TCP one to
/// `upstream` over TCP: a path that filters UDP. Counts both; stops when dropped.
struct TcpOnly {
    addr: std::net::SocketAddr,
    udp_dropped: Arc<AtomicUsize>,
    tcp_answered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TcpOnly {
    fn start(upstream: std::net::SocketAddr) -> TcpOnly {
        let port = free_port();
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (udp_dropped, tcp_answered) =
            (Arc::<AtomicUsize>::default(), Arc::<AtomicUsize>::default());
        let stop = Arc::new(AtomicBool::new(false));
        std::thread::spawn({
            let (n, stop) = (udp_dropped.clone(), stop.clone());
            move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if udp.recv(&mut buf).is_ok() {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        std::thread::spawn({
            let (n, stop) = (tcp_answered.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut client, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let n = n.clone();
                    std::thread::spawn(move || {
                        client.set_nonblocking(false).unwrap();
                        let mut up = TcpStream::connect(upstream).unwrap();
                        // One framed question, one framed answer, as drift asks.
                        let mut len = [0u8; 2];
                        client.read_exact(&mut len).unwrap();
                        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                        client.read_exact(&mut q).unwrap();
                        up.write_all(&len).unwrap();
                        up.write_all(&q).unwrap();
                        up.read_exact(&mut len).unwrap();
                        let mut a = vec![0u8; u16::from_be_bytes(len) as usize];
                        up.read_exact(&mut a).unwrap();
                        client.write_all(&len).unwrap();
                        client.write_all(&a).unwrap();
                        n.fetch_add(1, Ordering::Relaxed);
                    });
                }
            }
        });
        TcpOnly {
            addr: (Ipv4Addr::LOCALHOST, port).into(),
            udp_dropped,
            tcp_answered,
            stop,
        }
    }
}

impl Drop for TcpOnly {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_resolver_that_drops_udp_is_asked_over_tcp() {
    let dns = example_org("transport-test", &["a MX 10 mx1", "mx1 A 127.0.0.1"], false);
    let resolver = TcpOnly::start(dns.addr);
    let dir = ConfigDir::new();
    dir.write(
        MAIN,
        format!(
            "[server]\nhttps = [\"127.0.0.1:{}\"]\n\n[tls]\nself_signed = true\n\n\
             [policy]\nmode = \"enforce\"\nmx = [\"mx1.example.org\"]\nmax_age = 86400\n\n\
             [domains.\"a.example.org\"]\n\n\
             [drift]\nresolver = \"{}\"\ndns_port = {}\nhttps_port = {}\nsmtp = false\n",
            free_port(),
            resolver.addr,
            dns.addr.port(),
            free_port()
        ),
    );
    let started = std::time::Instant::now();
    let out = run_with_config(&dir.config_path(), &["drift", "--format", "json"]);
    let took = started.elapsed();
    let report: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.dump()));
    let findings = report["domains"][0]["findings"].as_array().unwrap();
    // The resolver's answers arrived: the MX is covered, and nothing is "could not check"
    // for want of them.
    assert!(
        !findings.iter().any(|f| f["check"] == "mx"
            || f["check"] == "tlsrpt"
            || f["check"] == "policy-host" && f["severity"] == "unknown"),
        "{report:#}"
    );
    let (udp, tcp) = (
        resolver.udp_dropped.load(Ordering::Relaxed),
        resolver.tcp_answered.load(Ordering::Relaxed),
    );
    // Each question sent over UDP at most three times, then over TCP; the later ones
    // straight over TCP.
    assert!(
        udp > 0 && udp % 3 == 0 && udp < 3 * tcp,
        "{udp} datagrams dropped, {tcp} questions over TCP"
    );
    // Three unanswered sends for the questions asked first; the rest of the run at once over
    // TCP: one wait of 2.1 s, not one per lookup in a chain (SOA, NS, address: 8 s).
    assert!(took < Duration::from_secs(6), "drift took {took:?}");
}
