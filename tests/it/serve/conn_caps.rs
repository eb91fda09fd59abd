//! Issue 23 item 1, the bounds themselves: a report body slower than `min_body_rate` after
//! `body_grace` is cut with 408; a connection closes gracefully after
//! `max_requests_per_connection` answers and at `max_connection_lifetime` (HTTP/2: GOAWAY),
//! whatever it keeps sending.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::daemon::{Daemon, TestCa};
use crate::serve::busy::{frame, tls};
use crate::serve::limits::tls_from;
use crate::serve::{two_domains, PATH};
use crate::tlsrpt::receiver::start;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Everything the server sends until it closes (true), or what came within `bound`.
async fn read_until_closed<R: AsyncReadExt + Unpin>(r: &mut R, bound: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(bound, async {
        let mut buf = [0u8; 16384];
        while let Ok(n @ 1..) = r.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .is_ok();
    (out, closed)
}

/// Whether the HTTP/2 frames in `out` (after the server's preface) include a GOAWAY.
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

/// A GET of the policy of mta-sts.a.example as an HPACK block (RFC 7541): static-table
/// `:method GET`, `:scheme https`, `:path /` (the 404 is as good an answer as any here).
fn get_block() -> Vec<u8> {
    let authority = b"mta-sts.a.example";
    let mut b = vec![0x82, 0x87, 0x84, 0x01, authority.len() as u8];
    b.extend(authority);
    b
}

fn daemon(ca: &TestCa) -> (crate::harness::ConfigDir, Daemon) {
    let dir = two_domains(
        ca,
        "handshake_timeout = \"1s\"\nheader_timeout = \"1s\"\nshutdown_timeout = \"2s\"\n\
         max_connection_lifetime = \"3s\"\nmax_requests_per_connection = 3",
    );
    let d = Daemon::start(&dir.config_path());
    (dir, d)
}

#[tokio::test]
async fn a_report_body_slower_than_the_minimum_rate_gets_408() {
    let ca = TestCa::new();
    let dir = crate::serve::busy::config(&ca, "body_grace = \"1s\"\nmin_body_rate = 100");
    let d = start(&dir, &[]);
    let s = tls(
        &ca,
        "127.0.0.2",
        d.https.unwrap(),
        crate::serve::busy::REPORTS,
        b"http/1.1",
    )
    .await;
    let (mut rd, mut wr) = tokio::io::split(s);
    let head = format!(
        "POST /v1/tlsrpt HTTP/1.1\r\nHost: {}\r\nContent-Type: application/tlsrpt+json\r\n\
         Content-Length: 10000\r\n\r\n{{",
        crate::serve::busy::REPORTS
    );
    wr.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    // 10 bytes a second, a tenth of the minimum.
    let drip = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let (out, closed) = read_until_closed(&mut rd, Duration::from_secs(10)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert!(closed, "the connection stayed open after 408");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "cut within the grace: {took:?}"
    );
    drip.abort();
}

#[tokio::test]
async fn the_most_requests_close_http1_and_send_goaway_on_http2() {
    let ca = TestCa::new();
    let (_dir, d) = daemon(&ca);
    let https = d.https.unwrap();
    // HTTP/1.1, four pipelined: three answers, the third with `connection: close`, then closed.
    let mut s = tls_from(&ca, "127.0.0.2", https, b"http/1.1")
        .await
        .unwrap();
    let get = format!("GET {PATH} HTTP/1.1\r\nHost: mta-sts.a.example\r\n\r\n");
    s.write_all(get.repeat(4).as_bytes()).await.unwrap();
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(closed, "still open after three answers:\n{out}");
    assert_eq!(out.matches("HTTP/1.1 200 ").count(), 3, "{out}");
    assert_eq!(out.matches("connection: close").count(), 1, "{out}");

    // HTTP/2: three streams answered, then GOAWAY and the connection closed.
    let s = tls_from(&ca, "127.0.0.2", https, b"h2").await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(s);
    let mut start = PREFACE.to_vec();
    start.extend(frame(SETTINGS, 0, 0, &[]));
    for stream in [1, 3, 5] {
        start.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &get_block(),
        ));
    }
    wr.write_all(&start).await.unwrap();
    let (out, closed) = read_until_closed(&mut rd, Duration::from_secs(10)).await;
    assert!(has_goaway(&out), "no GOAWAY after three requests");
    assert!(closed, "still open after GOAWAY");
}

#[tokio::test]
async fn the_lifetime_ends_idle_http1_and_pinging_http2() {
    let ca = TestCa::new();
    let (_dir, d) = daemon(&ca);
    let https = d.https.unwrap();
    let start = Instant::now();
    // Kept alive after one answer, idle: closed at the end of its 3 s.
    let mut h1 = tls_from(&ca, "127.0.0.2", https, b"http/1.1")
        .await
        .unwrap();
    let get = format!("GET {PATH} HTTP/1.1\r\nHost: mta-sts.a.example\r\n\r\n");
    h1.write_all(get.as_bytes()).await.unwrap();
    // HTTP/2 sending PINGs every 100 ms, which keep the idle timeout away.
    let h2 = tls_from(&ca, "127.0.0.3", https, b"h2").await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(h2);
    let pinger = tokio::spawn(async move {
        let mut begin = PREFACE.to_vec();
        begin.extend(frame(SETTINGS, 0, 0, &[]));
        let _ = wr.write_all(&begin).await;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(&frame(PING, 0, 0, &[7; 8])).await.is_err() {
                return;
            }
        }
    });
    let (out, closed) = read_until_closed(&mut h1, Duration::from_secs(10)).await;
    let h1_took = start.elapsed();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200 "));
    assert!(closed, "HTTP/1.1 still open after 10 s");
    assert!(h1_took >= Duration::from_millis(2500), "{h1_took:?}");
    // The lifetime, then at most shutdown_timeout for the client to let go.
    let (out, closed) = read_until_closed(&mut rd, Duration::from_secs(10)).await;
    let h2_took = start.elapsed();
    assert!(has_goaway(&out), "no GOAWAY");
    assert!(closed, "HTTP/2 still open after {h2_took:?}");
    assert!(h2_took < Duration::from_secs(9), "{h2_took:?}");
    pinger.abort();
}
