//! The attacks of the hardening issue kept as tests, bounded in time, loopback only: a 1 MiB
//! header, request smuggling shapes, HTTP/2 rapid reset and CONTINUATION flood, a DNS server
//! that accepts and never answers. (Slowloris, idle holders and the caps are in `serve` and
//! `limits`; odd config files in `files`.)

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::daemon::{eventually_within, plain_client, Daemon, TestCa};
use crate::harness::process::wait_bounded;
use crate::harness::{command, tsig_key_file};
use crate::serve::limits::tls_from;
use crate::serve::{two_domains, BODY_A, PATH};

/// Everything the server sends until it closes, or what came within `bound`.
async fn read_all_within<R: AsyncReadExt + Unpin>(r: &mut R, bound: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(bound, async {
        let mut buf = [0u8; 16384];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (out, closed)
}

/// The daemon still answers a plain sender.
async fn still_serving(d: &Daemon) {
    let r = plain_client()
        .get(format!("http://{}{PATH}", d.http.unwrap()))
        .header("host", "mta-sts.a.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), BODY_A);
}

#[tokio::test]
async fn a_1_mib_header_gets_one_431_over_tls() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let tls = tls_from(&ca, "127.0.0.2", d.https.unwrap(), b"http/1.1")
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let head = format!("GET {PATH} HTTP/1.1\r\nHost: mta-sts.a.example\r\nX-Big: ");
        let _ = wr.write_all(head.as_bytes()).await;
        // The server stops reading after its limit: errors here are expected.
        let _ = wr.write_all(&vec![b'a'; 1 << 20]).await;
        let _ = wr.write_all(b"\r\n\r\n").await;
    });
    let (out, closed) = read_all_within(&mut rd, Duration::from_secs(15)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(closed, "the connection was not closed");
    assert!(
        out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{out}"
    );
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    writer.abort();
    still_serving(&d).await;
}

/// Each shape hides a second request where a lenient parser would see one: exactly one answer
/// comes back, and the connection closes.
#[tokio::test]
async fn smuggling_shapes_are_answered_exactly_once() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let hidden = format!("GET {PATH} HTTP/1.1\r\nHost: mta-sts.b.example\r\n\r\n");
    let head = format!("GET {PATH} HTTP/1.1\r\nHost: mta-sts.a.example\r\n");
    let chunked = format!("0\r\n\r\n{hidden}");
    let shapes = [
        // CL.TE and TE.CL: both framings at once.
        format!(
            "{head}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}",
            chunked.len()
        ),
        format!("{head}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{chunked}"),
        // Two lengths that differ.
        format!(
            "{head}Content-Length: 0\r\nContent-Length: {}\r\n\r\n{hidden}",
            hidden.len()
        ),
        // A folded (obs-fold) header line, RFC 9112 §5.2.
        format!("{head}X-Folded: a\r\n Transfer-Encoding: chunked\r\n\r\n{chunked}"),
        // A space before the colon (RFC 9112 §5.1: 400).
        format!("{head}Transfer-Encoding : chunked\r\n\r\n{chunked}"),
        // An obfuscated coding.
        format!("{head}Transfer-Encoding: xchunked\r\n\r\n{chunked}"),
    ];
    for shape in &shapes {
        let mut tcp = TcpStream::connect(d.http.unwrap()).await.unwrap();
        tcp.write_all(shape.as_bytes()).await.unwrap();
        let (out, closed) = read_all_within(&mut tcp, Duration::from_secs(10)).await;
        let out = String::from_utf8_lossy(&out);
        assert!(closed, "not closed after {shape:?}");
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{shape:?}\n{out}");
        assert!(out.starts_with("HTTP/1.1 400 "), "{shape:?}\n{out}");
        assert!(
            !out.contains("mx.b.example"),
            "the hidden request was answered"
        );
    }
    still_serving(&d).await;
}

/// An HTTP/2 frame (RFC 9113 §4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// A GET of the policy as an HPACK block (RFC 7541): static-table `:method GET`, `:scheme
/// https`, `:path /`, and a literal `:authority`.
fn get_block() -> Vec<u8> {
    let authority = b"mta-sts.a.example";
    let mut b = vec![0x82, 0x87, 0x84, 0x01, authority.len() as u8];
    b.extend(authority);
    b
}

/// Whether the frames in `out` include a GOAWAY.
fn has_goaway(mut out: &[u8]) -> bool {
    while out.len() >= 9 {
        let len = u32::from_be_bytes([0, out[0], out[1], out[2]]) as usize;
        if out[3] == GOAWAY {
            return true;
        }
        out = &out[(9 + len).min(out.len())..];
    }
    false
}

/// Rapid reset (CVE-2023-44487): streams opened and reset at once, without end. The server
/// sends GOAWAY and closes, and serves others all the while.
#[tokio::test]
async fn http2_rapid_reset_is_cut_off() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let tls = tls_from(&ca, "127.0.0.2", d.https.unwrap(), b"h2")
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let mut start = PREFACE.to_vec();
        start.extend(frame(SETTINGS, 0, 0, &[]));
        if wr.write_all(&start).await.is_err() {
            return 0;
        }
        let mut sent = 0u32;
        for batch in 0..200u32 {
            let mut out = Vec::new();
            for i in 0..100u32 {
                let stream = 2 * (batch * 100 + i) + 1;
                out.extend(frame(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    stream,
                    &get_block(),
                ));
                out.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
            }
            if wr.write_all(&out).await.is_err() {
                break;
            }
            sent += 100;
        }
        sent
    });
    let (out, closed) = read_all_within(&mut rd, Duration::from_secs(15)).await;
    assert!(closed, "the flooding connection stayed open");
    assert!(has_goaway(&out), "no GOAWAY");
    let sent = writer.await.unwrap();
    still_serving(&d).await;
    eprintln!("rapid reset: {sent} streams sent before the server closed");
}

/// CONTINUATION flood (CVE-2024-27316 and kin): one header block of 64 MiB that never ends.
/// The server sends GOAWAY and closes long before (what was sent includes what the kernel's
/// socket buffers on loopback took: a few MiB).
#[tokio::test]
async fn http2_continuation_flood_is_cut_off() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let tls = tls_from(&ca, "127.0.0.2", d.https.unwrap(), b"h2")
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let mut start = PREFACE.to_vec();
        start.extend(frame(SETTINGS, 0, 0, &[]));
        start.extend(frame(HEADERS, END_STREAM, 1, &get_block()));
        if wr.write_all(&start).await.is_err() {
            return 0usize;
        }
        // Literal headers without indexing, `x-a: aaa…`, 16 KiB frames.
        let mut field = vec![0x00, 3];
        field.extend(b"x-a");
        field.push(0x7f);
        field.push(0x81);
        field.push(0x07); // 127 + 1 + 7 * 128 = 1024
        field.extend(vec![b'a'; 1024]);
        let payload: Vec<u8> = field.iter().copied().cycle().take(16 * 1024).collect();
        let mut sent = 0usize;
        while sent < 64 << 20 {
            if wr
                .write_all(&frame(CONTINUATION, 0, 1, &payload))
                .await
                .is_err()
            {
                break;
            }
            sent += payload.len();
        }
        sent
    });
    let started = Instant::now();
    let (out, closed) = read_all_within(&mut rd, Duration::from_secs(15)).await;
    assert!(closed, "the flooding connection stayed open");
    assert!(has_goaway(&out), "no GOAWAY");
    let sent = tokio::time::timeout(Duration::from_secs(15), writer)
        .await
        .expect("the writer was never stopped")
        .unwrap();
    assert!(sent < 16 << 20, "{sent} bytes of one header block taken");
    eprintln!("CONTINUATION flood: {sent} bytes sent before the server closed");
    assert!(started.elapsed() < Duration::from_secs(15));
    still_serving(&d).await;
}

/// A DNS server that accepts TCP connections and never answers: `apply` fails within its
/// bound naming the server, and `serve` keeps serving while its publication fails.
#[tokio::test]
async fn a_dns_server_that_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let blackhole = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let text = std::fs::read_to_string(dir.config_path()).unwrap().replace(
        "[policy]",
        &format!(
            "[dns]\nprovider = \"ns\"\n\n[providers.ns]\nkind = \"rfc2136\"\n\
             server = \"{addr}\"\ntsig_key = \"ns.key\"\n\n[policy]"
        ),
    );
    dir.write("ns.key", tsig_key_file("mta-stsd", "hmac-sha256"));
    crate::serve::replace_config(&dir, &text);
    let mut apply = command()
        .env(
            "STATE_DIRECTORY",
            crate::harness::state_dir_for(&dir.config_path()),
        )
        .arg("--config")
        .arg(dir.config_path())
        .arg("apply")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Waited for off the runtime, which keeps the black hole running.
    let (status, apply) = tokio::task::spawn_blocking(move || {
        let status = wait_bounded(&mut apply, Duration::from_secs(40), "apply");
        (status, apply)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let out = apply.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");

    let d = Daemon::start(&dir.config_path());
    still_serving(&d).await;
    let what = "a DNS error in /status, served throughout";
    eventually_within(Duration::from_secs(40), what, || async {
        // Served throughout, until the failure shows.
        still_serving(&d).await;
        let s = d.status().await.to_string();
        if s.contains(&addr.to_string()) {
            Ok(())
        } else {
            Err(s)
        }
    })
    .await;
    still_serving(&d).await;
    blackhole.abort();
}
