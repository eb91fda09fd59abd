//! `mta-stsd tlsrpt ingest`: report mails on stdin as Postfix's pipe(8) hands them over,
//! DKIM-signed in the test with a key a real BIND serves; what is stored, what is dropped,
//! and when the MTA is told to retry (75).

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mta_stsd::tlsrpt::store::{Backend, Store};

use crate::harness::dns::{free_port, DnsServer, Kind, TsigKey};
use crate::harness::{command, state_dir_for, ConfigDir, MAIN};

pub(crate) const REPORTER: &str = "reporter.example";
const SELECTOR: &str = "tls2026";

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/tlsrpt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn b64(data: &[u8]) -> String {
    let s = base64::engine::general_purpose::STANDARD.encode(data);
    // RFC 2045 §6.8: lines of at most 76 characters.
    s.as_bytes()
        .chunks(76)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An RFC 8460 §5.3 report mail from `from`, with `json` gzipped as the report part.
pub(crate) fn message(from: &str, report_id: &str, json: &[u8]) -> String {
    format!(
        "From: TLS reports <{from}>\r\n\
         To: tlsrpt@example.org\r\n\
         Subject: Report Domain: example.org Submitter: {REPORTER} Report-ID: <{report_id}>\r\n\
         Date: Mon, 22 Jan 2024 01:02:03 +0000\r\n\
         Message-ID: <{report_id}@{REPORTER}>\r\n\
         TLS-Report-Domain: example.org\r\n\
         TLS-Report-Submitter: {REPORTER}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"=_b\"\r\n\
         \r\n\
         --=_b\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is an aggregate TLS report from {REPORTER}.\r\n\
         \r\n\
         --=_b\r\n\
         Content-Type: application/tlsrpt+gzip\r\n\
         Content-Disposition: attachment; filename=\"{REPORTER}!example.org!1453766400!1453852799.json.gz\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {}\r\n\
         --=_b--\r\n",
        b64(&gz(json))
    )
}

pub(crate) struct Signer {
    pkcs8: Vec<u8>,
}

impl Signer {
    pub(crate) fn new() -> Signer {
        Signer {
            pkcs8: Ed25519Key::generate_pkcs8().unwrap(),
        }
    }

    /// The `_domainkey` TXT record (RFC 8463 §4.2).
    pub(crate) fn record(&self) -> String {
        let key = Ed25519Key::from_pkcs8_der(&self.pkcs8).unwrap();
        format!(
            "{SELECTOR}._domainkey 300 IN TXT \"v=DKIM1; k=ed25519; p={}\"",
            base64::engine::general_purpose::STANDARD.encode(key.public_key())
        )
    }

    /// `msg` with a DKIM-Signature by `d=REPORTER` prepended; `l=` when `body_length`.
    pub(crate) fn sign(&self, msg: &str, body_length: bool) -> String {
        let key = Ed25519Key::from_pkcs8_der(&self.pkcs8).unwrap();
        let sig = DkimSigner::from_key(key)
            .domain(REPORTER)
            .selector(SELECTOR)
            .headers([
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "TLS-Report-Domain",
                "TLS-Report-Submitter",
                "MIME-Version",
                "Content-Type",
            ])
            .body_length(body_length)
            .sign(msg.as_bytes())
            .unwrap();
        format!("{}{msg}", sig.to_header())
    }
}

pub(crate) fn setup(resolver: std::net::SocketAddr, store: &str) -> ConfigDir {
    let dir = ConfigDir::with_config(&format!(
        r#"[tls]
self_signed = true

[policy]
mode = "testing"
mx = ["*.mail.example.org"]
max_age = 86400

[domains."example.org"]

[tlsrpt]
resolver = "{resolver}"
retention = "100000d"
{store}
"#
    ));
    std::fs::create_dir(state_dir_for(&dir.config_path())).unwrap();
    dir
}

pub(crate) struct Ingested {
    pub status: Option<i32>,
    pub stderr: String,
}

/// `mta-stsd tlsrpt ingest < msg`, as Postfix's pipe(8) runs it.
pub(crate) fn ingest(dir: &ConfigDir, msg: &[u8], env: &[(&str, &str)]) -> Ingested {
    let mut cmd: Command = command();
    cmd.env("STATE_DIRECTORY", state_dir_for(&dir.config_path()))
        .arg("--config")
        .arg(dir.config_path())
        .args(["tlsrpt", "ingest"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("running mta-stsd");
    // It may exit (75: the store is down) before reading the message, as an MTA's pipe
    // allows; the write then meets a closed pipe.
    match child.stdin.take().unwrap().write_all(msg) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {e}"),
        _ => {}
    }
    let out = child.wait_with_output().unwrap();
    Ingested {
        status: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) async fn stored(dir: &ConfigDir, report_id: &str) -> Option<String> {
    let store = Store::open(&Backend::Sqlite(state_dir_for(&dir.config_path())))
        .await
        .unwrap();
    store.json(report_id).await.unwrap()
}

pub(crate) const RFC_ID: &str = "5065427c-23d3-47ca-b6e0-946ea0e8c4be";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_stores_signed_mail_and_drops_the_rest() {
    let signer = Signer::new();
    let bind = DnsServer::start(
        Kind::Bind,
        REPORTER,
        &TsigKey::generate("k", "hmac-sha256"),
        &[&signer.record()],
    );
    let dir = setup(bind.addr, "");
    let json = fixture("rfc8460.json");
    let from = format!("noreply-smtp-tls-reporting@{REPORTER}");
    let good = signer.sign(&message(&from, RFC_ID, &json), false);

    // Unsigned, a bad body hash, `l=`, a signer not aligned with From: logged, exit 0,
    // nothing stored.
    let unsigned = message(&from, RFC_ID, &json);
    let tampered = good.replace("aggregate TLS report", "aggregate TLS rep0rt");
    let with_l = signer.sign(&message(&from, RFC_ID, &json), true);
    assert!(with_l.contains("l="), "{with_l}");
    let elsewhere = signer.sign(&message("tlsrpt@attacker.example", RFC_ID, &json), false);
    for (msg, says) in [
        (&unsigned, "not DKIM-signed"),
        (&tampered, "body hash"),
        (&with_l, "l="),
        (&elsewhere, "not aligned with From domain attacker.example"),
    ] {
        let out = ingest(&dir, msg.as_bytes(), &[]);
        assert_eq!(out.status, Some(0), "{}", out.stderr);
        assert!(
            out.stderr.contains("report dropped") && out.stderr.contains(says),
            "should say {says}: {}",
            out.stderr
        );
    }
    assert_eq!(stored(&dir, RFC_ID).await, None);

    // Signed with the key BIND serves: stored verbatim, once.
    let out = ingest(&dir, good.as_bytes(), &[]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("stored"), "{}", out.stderr);
    assert_eq!(
        stored(&dir, RFC_ID).await.as_deref().map(str::as_bytes),
        Some(&json[..])
    );
    let out = ingest(&dir, good.as_bytes(), &[]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("stored already"), "{}", out.stderr);

    // Signed, but about a domain not served here, or no report in it: dropped.
    let other = String::from_utf8(fixture("google.json")).unwrap();
    let msg = signer.sign(&message(&from, "g1", other.as_bytes()), false);
    let out = ingest(&dir, msg.as_bytes(), &[]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("no policy-domain"), "{}", out.stderr);
    let truncated = signer.sign(&message(&from, "t1", &json[..json.len() / 2]), false);
    let out = ingest(&dir, truncated.as_bytes(), &[]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("malformed report"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_asks_the_mta_to_retry_when_dns_or_the_store_is_down() {
    let signer = Signer::new();
    let json = fixture("rfc8460.json");
    let from = format!("tlsrpt@{REPORTER}");
    let good = signer.sign(&message(&from, RFC_ID, &json), false);

    // No DNS server where `resolver` points: the key lookup fails for now, not for good.
    let nothing = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let dir = setup(nothing, "");
    let out = ingest(&dir, good.as_bytes(), &[]);
    assert_eq!(out.status, Some(75), "{}", out.stderr);
    assert!(out.stderr.contains("will retry"), "{}", out.stderr);

    // The key is served but the PostgreSQL store is not reachable: 75, nothing lost.
    let bind = DnsServer::start(
        Kind::Bind,
        REPORTER,
        &TsigKey::generate("k", "hmac-sha256"),
        &[&signer.record()],
    );
    let dir = setup(
        bind.addr,
        "store = \"postgres\"\nurl_env = \"TEST_REPORTS_URL\"",
    );
    let url = format!("postgres://mta@127.0.0.1:{}/mtasts", free_port());
    let out = ingest(&dir, good.as_bytes(), &[("TEST_REPORTS_URL", &url)]);
    assert_eq!(out.status, Some(75), "{}", out.stderr);
    assert!(
        out.stderr.contains("report store unavailable"),
        "{}",
        out.stderr
    );

    // A config ingest cannot use: the message stays queued too.
    let broken = ConfigDir::new();
    broken.write(MAIN, "[policy]\nmode = \"sometimes\"\n");
    let out = ingest(&broken, good.as_bytes(), &[]);
    assert_eq!(out.status, Some(75), "{}", out.stderr);
}

/// Issue 23 (what a new admin hit): the pipe's user (here `nobody`) could not read the TSIG
/// key, so every report was deferred on "Permission denied". Ingest reads only what it uses;
/// a config it cannot read is named, and the message stays queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_runs_as_a_user_that_cannot_read_the_secrets() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let signer = Signer::new();
    let bind = DnsServer::start(
        Kind::Bind,
        REPORTER,
        &TsigKey::generate("k", "hmac-sha256"),
        &[&signer.record()],
    );
    let dir = setup(bind.addr, "");
    let text = std::fs::read_to_string(dir.config_path()).unwrap().replace(
        "[policy]",
        "[dns]\nprovider = \"ns\"\n\n[providers.ns]\nkind = \"rfc2136\"\n\
         server = \"127.0.0.1:53\"\ntsig_key = \"ns.key\"\n\n[policy]",
    );
    dir.write(MAIN, &text);
    let key = dir.write("ns.key", crate::harness::tsig_key_file("k", "hmac-sha256"));
    let mode = |p: &std::path::Path, m| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(&key, 0o600);
    mode(dir.path(), 0o755);
    mode(&dir.config_path(), 0o644);
    mode(&state_dir_for(&dir.config_path()), 0o777);
    let as_nobody = |msg: &[u8]| {
        let mut cmd: Command = command();
        cmd.uid(65534)
            .gid(65534)
            .env("STATE_DIRECTORY", state_dir_for(&dir.config_path()))
            .arg("--config")
            .arg(dir.config_path())
            .args(["tlsrpt", "ingest"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("running mta-stsd as nobody");
        let _ = child.stdin.take().unwrap().write_all(msg);
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let from = format!("tlsrpt@{REPORTER}");
    let good = signer.sign(&message(&from, RFC_ID, &fixture("rfc8460.json")), false);
    let (code, stderr) = as_nobody(good.as_bytes());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("stored"), "{stderr}");
    assert!(stored(&dir, RFC_ID).await.is_some());

    // The config itself unreadable: 75, and the file is named.
    mode(&dir.config_path(), 0o600);
    let (code, stderr) = as_nobody(good.as_bytes());
    assert_eq!(code, Some(75), "{stderr}");
    let name = dir.config_path().display().to_string();
    assert!(
        stderr.contains(&name) && stderr.contains("Permission denied"),
        "{stderr}"
    );
}

/// Issue 23 item 2 by mail: ingests running at once share `parse_budget_bytes`, one slot per
/// `max_report_bytes`; with every slot held, the mail stays queued (75) unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_over_the_parse_budget_asks_the_mta_to_retry() {
    let signer = Signer::new();
    let bind = DnsServer::start(
        Kind::Bind,
        REPORTER,
        &TsigKey::generate("k", "hmac-sha256"),
        &[&signer.record()],
    );
    let dir = setup(
        bind.addr,
        "max_report_bytes = 1048576\nparse_budget_bytes = 2097152",
    );
    let state = state_dir_for(&dir.config_path());
    let from = format!("tlsrpt@{REPORTER}");
    let good = signer.sign(&message(&from, RFC_ID, &fixture("rfc8460.json")), false);
    let held: Vec<_> = (0..2)
        .map(|_| {
            mta_stsd::tlsrpt::budget::ingest_slot(&state, 2)
                .unwrap()
                .unwrap()
        })
        .collect();
    let out = ingest(&dir, good.as_bytes(), &[]);
    assert_eq!(out.status, Some(75), "{}", out.stderr);
    assert!(
        out.stderr.contains("2 reports are being ingested already"),
        "{}",
        out.stderr
    );
    assert_eq!(stored(&dir, RFC_ID).await, None);
    drop(held);
    let out = ingest(&dir, good.as_bytes(), &[]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(stored(&dir, RFC_ID).await.is_some());
}

/// Issue 23 item 5 by mail: past `max_reports_per_sender_day` for the DKIM signer and policy
/// domain, a new report is dropped and logged with exit 0 (the MTA would otherwise retry it
/// for days), and nothing of it is stored; a resend of the stored one is still a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_drops_a_report_past_the_senders_daily_limit() {
    let signer = Signer::new();
    let bind = DnsServer::start(
        Kind::Bind,
        REPORTER,
        &TsigKey::generate("k", "hmac-sha256"),
        &[&signer.record()],
    );
    let dir = setup(bind.addr, "max_reports_per_sender_day = 1");
    let json = fixture("rfc8460.json");
    let from = format!("noreply-smtp-tls-reporting@{REPORTER}");
    let first = signer.sign(&message(&from, RFC_ID, &json), false);
    let out = ingest(&dir, first.as_bytes(), &[]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("stored"), "{}", out.stderr);

    const SECOND: &str = "second-report-of-the-day";
    let json2 = String::from_utf8(json.clone())
        .unwrap()
        .replace(RFC_ID, SECOND);
    assert!(json2.contains(SECOND));
    let second = signer.sign(&message(&from, SECOND, json2.as_bytes()), false);
    let out = ingest(&dir, second.as_bytes(), &[]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("report dropped") && out.stderr.contains("daily limit"),
        "{}",
        out.stderr
    );
    assert_eq!(stored(&dir, SECOND).await, None);

    let out = ingest(&dir, first.as_bytes(), &[]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("stored already"), "{}", out.stderr);
}
