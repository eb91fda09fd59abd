//! README's Postfix recipe for mailed reports, end to end with a stock Postfix (issue 23, what
//! a new admin hit): the rua's domain relayed (not in mydestination) to a pipe transport that
//! runs `tlsrpt ingest` as an unprivileged user, the TSIG key unreadable to it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::harness::daemon::eventually_within;
use crate::harness::dns::{free_port, DnsServer, Kind, TsigKey};
use crate::harness::postfix::{Listener, Postfix};
use crate::harness::{tsig_key_file, ConfigDir, MAIN};
use crate::tlsrpt::ingest::{fixture, message, stored, Signer, REPORTER, RFC_ID};

/// One SMTP transaction; each reply's code checked.
fn smtp_send(port: u16, from: &str, to: &str, msg: &str) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut expect = |code: &str| loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with(code), "wanted {code}, got {line:?}");
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    };
    expect("220");
    for (cmd, code) in [
        ("EHLO reporter.example".to_owned(), "250"),
        (format!("MAIL FROM:<{from}>"), "250"),
        (format!("RCPT TO:<{to}>"), "250"),
        ("DATA".to_owned(), "354"),
    ] {
        write!(w, "{cmd}\r\n").unwrap();
        expect(code);
    }
    // RFC 5321 §4.5.2: a line starting with "." is doubled; base64 lines never do.
    w.write_all(msg.as_bytes()).unwrap();
    w.write_all(b".\r\n").unwrap();
    expect("250");
    w.write_all(b"QUIT\r\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mailed_through_postfix_ends_in_the_store() {
    let signer = Signer::new();
    let bind = DnsServer::start(
        Kind::Bind,
        REPORTER,
        &TsigKey::generate("k", "hmac-sha256"),
        &[&signer.record()],
    );
    let dir = ConfigDir::new();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    dir.write(
        MAIN,
        format!(
            r#"[state]
dir = "{}"

[tls]
self_signed = true

[dns]
provider = "ns"

[providers.ns]
kind = "rfc2136"
server = "127.0.0.1:53"
tsig_key = "ns.key"

[policy]
mode = "testing"
mx = ["*.mail.example.org"]
max_age = 86400

[domains."example.org"]

[tlsrpt]
resolver = "{}"
retention = "100000d"
"#,
            state.display(),
            bind.addr
        ),
    );
    let key = dir.write("ns.key", tsig_key_file("k", "hmac-sha256"));
    let mode = |p: &std::path::Path, m| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(&key, 0o600);
    mode(dir.path(), 0o755);
    mode(&dir.config_path(), 0o644);
    mode(&state, 0o777);

    let port = free_port();
    let bin = env!("CARGO_BIN_EXE_mta-stsd");
    let postfix = Postfix::start_with(
        &[Listener {
            ip: std::net::Ipv4Addr::LOCALHOST,
            tls: None,
        }],
        port,
        "relay_domains = reports.example.org\n\
         smtpd_relay_restrictions = reject_unauth_destination\n\
         transport_maps = inline:{ reports.example.org=tlsrpt: }\n\
         tlsrpt_destination_recipient_limit = 1\n",
        &format!(
            "tlsrpt unix - n n - 2 pipe\n  user=nobody argv={bin} --config {} tlsrpt ingest\n",
            dir.config_path().display()
        ),
    );
    let from = format!("tlsrpt@{REPORTER}");
    let msg = signer.sign(&message(&from, RFC_ID, &fixture("rfc8460.json")), false);
    let sent =
        std::panic::catch_unwind(|| smtp_send(port, &from, "tlsrpt@reports.example.org", &msg));
    assert!(sent.is_ok(), "postfix log:\n{}", postfix.log());
    // Polled with a deadline; on failure, Postfix's log says why (the pipe's stderr too).
    // The store is opened here only once delivered: a file root made would be read-only to
    // the pipe's user.
    eventually_within(Duration::from_secs(30), "delivery", || async {
        let log = postfix.log();
        log.contains("status=sent").then_some(()).ok_or(log)
    })
    .await;
    let json = stored(&dir, RFC_ID).await.expect("the report in the store");
    assert!(json.contains("Company-X"), "{json}");
}
