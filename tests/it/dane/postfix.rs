//! Issue 28 "Show": a real Postfix sending with `smtp_tls_security_level = dane` and
//! `smtp_dns_support_level = dnssec` through a real validating BIND resolver (trust anchor:
//! the test zone's key) to a real Postfix MX whose TLSA records mta-stsd publishes in a BIND
//! zone signed by `dnssec-policy`. Mail goes over a DANE-verified session before and after a
//! rollover done the announced way (`next_key`); an unannounced switch makes Postfix defer
//! until mta-stsd has published the new key (and reported it) and the old answer has expired.
//!
//! The MX listens on 127.0.0.2:25 (DANE looks up `_25._tcp`), the resolver on 127.0.0.3:53
//! (the libc resolver asks port 53 only); the sender sees it as /etc/resolv.conf in its own
//! mount namespace.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use rcgen::KeyPair;

use crate::dane::records::{Ca, NAME};
use crate::harness::daemon::eventually_blocking;
use crate::harness::dns::{DnsServer, Kind, Options, TsigKey};
use crate::harness::postfix::{Listener, Postfix};
use crate::harness::process::free_port_on;
use crate::harness::resolver::Resolver;
use crate::harness::{ConfigDir, MAIN};

const ZONE: &str = "example.org.";
const TTL: u64 = 3;
const MX_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// Bounds each wait for Postfix to log a delivery (its queue runs every second here).
const DELIVERY: Duration = Duration::from_secs(30);

/// The MX: smtpd on 127.0.0.2:25 with STARTTLS from `chain`/`key`, taking mail for
/// example.org and discarding it.
fn mx(ca: &Ca, key: &KeyPair) -> Postfix {
    Postfix::start_with(
        &[Listener {
            ip: MX_IP,
            tls: Some((ca.fullchain(key), key.serialize_pem())),
        }],
        25,
        "myhostname = mail.example.org\n\
         mydestination = example.org\n\
         local_transport = discard\n\
         smtpd_relay_restrictions = reject_unauth_destination\n",
        "# delivery services only\n",
    )
}

/// The sender: DANE on, DNSSEC from the resolver; mail submitted to its smtpd on
/// 127.0.0.3:`port`; retries every second.
fn sender(resolv_conf: &std::path::Path, port: u16) -> Postfix {
    Postfix::start_in(
        &[Listener {
            ip: RESOLVER_IP,
            tls: None,
        }],
        port,
        "myhostname = sender.test\n\
         inet_interfaces = 127.0.0.3\n\
         mydestination =\n\
         mynetworks = 127.0.0.0/8\n\
         smtpd_relay_restrictions = permit_mynetworks, reject\n\
         smtpd_peername_lookup = no\n\
         smtp_dns_support_level = dnssec\n\
         smtp_tls_security_level = dane\n\
         smtp_tls_loglevel = 1\n\
         smtp_connection_cache_on_demand = no\n\
         queue_run_delay = 1s\n\
         minimal_backoff_time = 1s\n\
         maximal_backoff_time = 2s\n",
        "smtp unix - - n - - smtp\n",
        Some(resolv_conf),
    )
}

/// One message to `rcpt` through the sender's smtpd; returns its queue id.
fn submit(port: u16, rcpt: &str) -> String {
    let s = TcpStream::connect((RESOLVER_IP, port)).expect("the sender's smtpd");
    // Generous on a loaded machine; the sender's smtpd makes no DNS lookup of its own
    // (`smtpd_peername_lookup = no`: the test's resolver knows only the test zone).
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).expect("an SMTP reply");
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    };
    let mut said = vec![reply()];
    for cmd in [
        "EHLO test\r\n".to_owned(),
        "MAIL FROM:<a@sender.test>\r\n".to_owned(),
        format!("RCPT TO:<{rcpt}>\r\n"),
        "DATA\r\n".to_owned(),
        "Subject: dane\r\n\r\nhello\r\n.\r\n".to_owned(),
    ] {
        w.write_all(cmd.as_bytes()).unwrap();
        said.push(reply());
    }
    w.write_all(b"QUIT\r\n").unwrap();
    let last = said.last().unwrap();
    assert!(last.starts_with("250"), "not queued: {said:?}");
    // "250 2.0.0 Ok: queued as 4XyZ".
    last.trim_end()
        .rsplit(' ')
        .next()
        .expect("a queue id")
        .to_owned()
}

/// Postfix's log lines for queue id `id` (as `id: `).
fn lines_of(p: &Postfix, id: &str) -> Vec<String> {
    p.log()
        .lines()
        .filter(|l| l.contains(&format!("{id}: ")))
        .map(str::to_owned)
        .collect()
}

/// Waits until the sender logged a delivery attempt of `id` with `status` (`sent`,
/// `deferred`); returns that line.
#[track_caller]
fn wait_status(p: &Postfix, id: &str, status: &str) -> String {
    let what = format!("status={status} for {id}");
    eventually_blocking(DELIVERY, &what, || {
        lines_of(p, id)
            .into_iter()
            .find(|l| l.contains(&format!("status={status}")))
            .ok_or_else(|| p.log())
    })
}

/// The sender logged a DANE-verified session to the MX since `from` lines into its log. The
/// sender has no CA file: without DANE its sessions are "Untrusted" at best, never "Verified".
fn verified_since(p: &Postfix, from: usize) -> bool {
    p.log().lines().skip(from).any(|l| {
        l.contains("Verified TLS connection established to mail.example.org[127.0.0.2]:25")
    })
}

fn apply(dir: &ConfigDir) -> crate::harness::Output {
    let out = crate::harness::run_with_config(&dir.config_path(), &["apply"]);
    out.assert_status(0);
    out
}

#[test]
fn postfix_delivers_over_dane_across_an_announced_rollover_and_defers_on_an_unannounced_one() {
    // The signed zone: MX and address of the MX host; the TLSA records are mta-stsd's.
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    let dns = DnsServer::start_with(
        Kind::Bind,
        &Options {
            dnssec: true,
            ..Options::default()
        },
        ZONE,
        &key,
        &["@ 3 IN MX 10 mail.example.org.", "mail 3 IN A 127.0.0.2"],
    );
    let dnskey = eventually_blocking(Duration::from_secs(20), "BIND to sign the zone", || {
        let keys = dns.query(ZONE, RecordType::DNSKEY);
        keys.iter()
            .find(|k| k.starts_with("257 "))
            .cloned()
            .ok_or_else(|| format!("DNSKEY {keys:?}"))
    });
    let resolver = Resolver::start(RESOLVER_IP, ZONE, dns.addr, &dnskey);

    let dir = ConfigDir::new();
    let ca = Ca::new();
    let (a, b, c, d) = (
        KeyPair::generate().unwrap(),
        KeyPair::generate().unwrap(),
        KeyPair::generate().unwrap(),
        KeyPair::generate().unwrap(),
    );
    dir.write("fullchain.pem", ca.fullchain(&a));
    dir.write("next.pem", b.serialize_pem());
    let tsig = dns.key_file(dir.path());
    dir.write(
        MAIN,
        format!(
            "[server]\nhttps = []\n[policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\n\
             [dns]\nprovider = \"p\"\nttl = {TTL}\n[state]\ndir = \"state\"\n\
             [providers.p]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n\
             [[dane]]\nhost = \"mail.example.org\"\ncert = \"fullchain.pem\"\nnext_key = \"next.pem\"\n",
            dns.addr,
            tsig.display()
        ),
    );
    let t0 = Instant::now();
    let at = || t0.elapsed().as_secs_f32();
    let mut timeline = Vec::new();

    apply(&dir);
    timeline.push(format!(
        "{:5.1}s TLSA 3 1 1 of A (cert) and B (next_key) published",
        at()
    ));
    assert_eq!(
        resolver.authenticated(NAME, RecordType::TLSA),
        Some(true),
        "the resolver validates our TLSA records\n{}",
        resolver.log()
    );

    let mut mx_a = Some(mx(&ca, &a));
    let port = free_port_on(&[RESOLVER_IP]);
    let sender = sender(&resolver.resolv_conf(dir.path()), port);

    // 1. Key A presented, A and B published: delivered, DANE-verified.
    let seen = sender.log().lines().count();
    let id = submit(port, "u@example.org");
    let sent = wait_status(&sender, &id, "sent");
    assert!(verified_since(&sender, seen), "{}", sender.log());
    timeline.push(format!(
        "{:5.1}s MX presents A: delivered, verified ({sent})",
        at()
    ));

    // 2. The announced rollover (a certbot deploy hook): the MX switches to B, published a
    // TTL ago; B becomes the cert, C the next key.
    std::thread::sleep(Duration::from_secs(TTL + 1));
    drop(mx_a.take());
    let mx_b = mx(&ca, &b);
    dir.write("fullchain.pem", ca.fullchain(&b));
    dir.write("next.pem", c.serialize_pem());
    let out = apply(&dir);
    assert!(
        !format!("{}{}", out.stdout, out.stderr).contains("switched to a key"),
        "{}",
        out.dump()
    );
    timeline.push(format!(
        "{:5.1}s MX presents B; C published, A kept a TTL",
        at()
    ));
    let seen = sender.log().lines().count();
    let id = submit(port, "u@example.org");
    wait_status(&sender, &id, "sent");
    assert!(verified_since(&sender, seen), "{}", sender.log());
    timeline.push(format!("{:5.1}s delivered, verified", at()));

    // A TTL after the switch A is withdrawn; mail still goes.
    std::thread::sleep(Duration::from_secs(TTL + 1));
    let out = apply(&dir);
    assert!(out.stdout.contains(&format!("- {NAME}")), "{}", out.dump());
    timeline.push(format!("{:5.1}s A withdrawn", at()));
    let seen = sender.log().lines().count();
    let id = submit(port, "u@example.org");
    wait_status(&sender, &id, "sent");
    assert!(verified_since(&sender, seen), "{}", sender.log());
    timeline.push(format!("{:5.1}s delivered, verified (B)", at()));

    // 3. Unannounced: the MX switches to D, whose record was never published. Postfix defers.
    drop(mx_b);
    let _mx_d = mx(&ca, &d);
    let id = submit(port, "u@example.org");
    let deferred = wait_status(&sender, &id, "deferred");
    // RFC 7672 §2.2: TLSA records that do not match are no reason to fall back to plain text.
    assert!(
        deferred.contains("dsn=4.7.5") && deferred.contains("Server certificate not verified"),
        "{deferred}"
    );
    timeline.push(format!(
        "{:5.1}s MX presents D (never published): deferred ({deferred})",
        at()
    ));
    assert!(
        !lines_of(&sender, &id)
            .iter()
            .any(|l| l.contains("status=sent")),
        "{}",
        sender.log()
    );
    // mta-stsd sees the cert switch: D published at once, and reported.
    dir.write("fullchain.pem", ca.fullchain(&d));
    let out = apply(&dir);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("switched to a key"), "{}", out.dump());
    timeline.push(format!(
        "{:5.1}s D published at once, reported as a finding",
        at()
    ));
    let check = crate::harness::run_with_config(&dir.config_path(), &["check"]);
    assert!(
        check.stderr.contains("switched to a key"),
        "{}",
        check.dump()
    );
    // The deferred message goes once the resolver has the new records (Postfix retries).
    let sent = wait_status(&sender, &id, "sent");
    assert!(
        lines_of(&sender, &id)
            .iter()
            .any(|l| l.contains("status=sent")),
        "{}",
        sender.log()
    );
    timeline.push(format!(
        "{:5.1}s the deferred message delivered ({sent})",
        at()
    ));
    eprintln!("timeline:\n{}", timeline.join("\n"));
}
