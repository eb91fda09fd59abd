//! Issue 23 item 1: connections busy without progress do not lock senders out. Four addresses
//! hold the whole `max_connections`, each connection moving a byte every 100 ms (a report body
//! dripped, or HTTP/2 PINGs); a policy fetch from a fifth address is answered within the
//! handshake timeout (SPEC "Limits"), by closing connections that made no progress.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::client::TlsStream;

use crate::harness::daemon::{eventually, Daemon, TestCa};
use crate::harness::{ConfigDir, MAIN};
use crate::serve::sample;
use crate::tlsrpt::receiver::{setup, start};

pub(crate) const REPORTS: &str = "tlsrpt.example.org";
const POLICY: &str = "mta-sts.example.org";
const SOURCES: [&str; 4] = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
const MAX: usize = 200;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// The receiver's config, its `[server]` with `extra`.
pub(crate) fn config(ca: &TestCa, extra: &str) -> ConfigDir {
    let dir = setup(ca, "");
    let path = dir.path().join(MAIN);
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "admin = \"127.0.0.1:0\"\n",
        &format!("admin = \"127.0.0.1:0\"\n{extra}\n"),
        1,
    );
    std::fs::write(&path, text).unwrap();
    dir
}

/// A TLS connection for `name` from `src`, offering `alpn`.
pub(crate) async fn tls(
    ca: &TestCa,
    src: &str,
    addr: SocketAddr,
    name: &str,
    alpn: &[u8],
) -> TlsStream<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{src}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let mut config = ca.client_config();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Reads and drops whatever the server sends, so that its writes never block.
fn drain<R: AsyncRead + Unpin + Send + 'static>(mut r: R) {
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
    });
}

/// `MAX` connections from the four addresses, each started by `begin` and then sending
/// `tick` every 100 ms until closed.
async fn hold_all<F>(
    ca: &TestCa,
    d: &Daemon,
    name: &str,
    alpn: &[u8],
    begin: Vec<u8>,
    tick: F,
) -> JoinSet<()>
where
    F: Fn() -> Vec<u8> + Clone + Send + 'static,
{
    let addr = d.https.unwrap();
    let mut held = JoinSet::new();
    for i in 0..MAX {
        let stream = tls(ca, SOURCES[i % 4], addr, name, alpn).await;
        let (rd, mut wr) = tokio::io::split(stream);
        drain(rd);
        let (begin, tick) = (begin.clone(), tick.clone());
        held.spawn(async move {
            if wr.write_all(&begin).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if wr.write_all(&tick()).await.is_err() {
                    return;
                }
            }
        });
    }
    eventually("every place taken", || async {
        (sample(&d.metrics().await, "mta_stsd_connections_open") == MAX as f64).then_some(())
    })
    .await;
    held
}

/// A policy fetch from 127.0.0.6: answered 200 within the handshake timeout.
async fn fifth_address_is_served(ca: &TestCa, d: &Daemon) {
    let start = Instant::now();
    let fetch = async {
        let mut s = tls(ca, "127.0.0.6", d.https.unwrap(), POLICY, b"http/1.1").await;
        s.write_all(
            format!("GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {POLICY}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let answer = tokio::time::timeout(Duration::from_secs(15), fetch)
        .await
        .expect("the fifth address was locked out");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("version: STSv1"), "{answer}");
    assert!(
        start.elapsed() < HANDSHAKE_TIMEOUT,
        "answered after {:?}",
        start.elapsed()
    );
    let evicted = sample(&d.metrics().await, "mta_stsd_connections_evicted_total");
    assert!(evicted >= 1.0, "{evicted} evicted");
}

/// `extra`: more of `[server]`.
fn daemon(ca: &TestCa, extra: &str) -> (ConfigDir, Daemon) {
    let dir = config(
        ca,
        &format!(
            "max_connections = {MAX}\nhandshake_timeout = \"{}s\"\n{extra}",
            HANDSHAKE_TIMEOUT.as_secs()
        ),
    );
    let d = start(&dir, &[]);
    (dir, d)
}

#[tokio::test]
async fn dripped_report_bodies_do_not_lock_out_a_fifth_address() {
    let ca = TestCa::new();
    // The bodies are not cut for slowness meanwhile (conn_caps tests that): places are made
    // by eviction alone.
    let (_dir, d) = daemon(&ca, "body_grace = \"5m\"");
    let head = format!(
        "POST /v1/tlsrpt HTTP/1.1\r\nHost: {REPORTS}\r\n\
         Content-Type: application/tlsrpt+json\r\nContent-Length: 100000\r\n\r\n{{"
    );
    let mut held = hold_all(&ca, &d, REPORTS, b"http/1.1", head.into_bytes(), || {
        b" ".to_vec()
    })
    .await;
    fifth_address_is_served(&ca, &d).await;
    held.abort_all();
}

/// An HTTP/2 frame (RFC 9113 §4.1).
pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

#[tokio::test]
async fn http2_pings_do_not_lock_out_a_fifth_address() {
    let ca = TestCa::new();
    let (_dir, d) = daemon(&ca, "");
    // The preface and an empty SETTINGS (RFC 9113 §3.4), then a PING (type 6) each tick.
    let mut begin = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    begin.extend(frame(0x4, 0, 0, &[]));
    let mut held = hold_all(&ca, &d, POLICY, b"h2", begin, || frame(0x6, 0, 0, &[7; 8])).await;
    fifth_address_is_served(&ca, &d).await;
    held.abort_all();
}
