//! SPEC "Limits" and "Misdirected requests" against the real daemon: peers on distinct 127.x
//! source addresses holding connections, and requests for another domain than the SNI.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::harness::daemon::{eventually, Daemon, TestCa};
use crate::serve::{sample, two_domains, BODY_A, PATH};

/// A TCP connection to `addr` from the loopback address `src` (any 127.x is a local address).
async fn tcp_from(src: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{src}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// A TLS connection for `mta-sts.a.example` from `src`, offering `alpn`.
pub(crate) async fn tls_from(
    ca: &TestCa,
    src: &str,
    addr: SocketAddr,
    alpn: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut config = ca.client_config();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("mta-sts.a.example").unwrap();
    connector.connect(name, tcp_from(src, addr).await).await
}

/// One HTTP/1.1 request on a kept-alive connection: the status line and the body.
async fn request(tls: &mut TlsStream<TcpStream>, target: &str, host: &str) -> (String, String) {
    tls.write_all(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a content-length")
                .parse()
                .unwrap();
            if body.len() >= len {
                let status = head.lines().next().unwrap().to_owned();
                return (status, body[..len].to_owned());
            }
        }
    }
}

/// Whether the server has closed `tls` (end of stream or reset) within a second.
async fn closed_by_server(tls: &mut TlsStream<TcpStream>) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), tls.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_peer_at_its_address_cap_while_another_is_served() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "max_connections_per_ip = 3");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut tls = tls_from(&ca, "127.0.0.2", https, b"http/1.1")
            .await
            .unwrap();
        assert_eq!(request(&mut tls, PATH, "mta-sts.a.example").await.1, BODY_A);
        held.push(tls);
    }
    // A fourth from the same address: closed before its handshake completes.
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        tls_from(&ca, "127.0.0.2", https, b"http/1.1"),
    )
    .await
    .expect("the handshake was neither refused nor served");
    assert!(
        refused.is_err(),
        "a fourth connection from 127.0.0.2 was served"
    );
    // Another address is served at once, and the three held are still served.
    let start = Instant::now();
    let mut other = tls_from(&ca, "127.0.0.3", https, b"http/1.1")
        .await
        .unwrap();
    assert_eq!(
        request(&mut other, PATH, "mta-sts.a.example").await.1,
        BODY_A
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    for tls in &mut held {
        assert_eq!(request(tls, PATH, "mta-sts.a.example").await.1, BODY_A);
    }
    let m = d.metrics().await;
    assert_eq!(sample(&m, "mta_stsd_connections_refused_total"), 1.0);
    assert_eq!(sample(&m, "mta_stsd_connections_evicted_total"), 0.0);
    // One closed: the address may connect again.
    held.pop();
    eventually("a place for 127.0.0.2 again", || async {
        let mut tls = tls_from(&ca, "127.0.0.2", https, b"http/1.1").await.ok()?;
        Some(request(&mut tls, PATH, "mta-sts.a.example").await)
    })
    .await;
}

/// One peer holds every connection the global cap allows, idle after a request each; a new
/// sender is answered within the handshake timeout, and one idle connection made room.
#[tokio::test]
async fn at_the_global_cap_an_idle_connection_makes_room() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "max_connections = 4\nhandshake_timeout = \"3s\"");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut tls = tls_from(&ca, "127.0.0.2", https, b"http/1.1")
            .await
            .unwrap();
        assert_eq!(request(&mut tls, PATH, "mta-sts.a.example").await.1, BODY_A);
        held.push(tls);
    }
    eventually("four connections open", || async {
        (sample(&d.metrics().await, "mta_stsd_connections_open") == 4.0).then_some(())
    })
    .await;
    let start = Instant::now();
    let served = async {
        let mut new = tls_from(&ca, "127.0.0.3", https, b"http/1.1")
            .await
            .unwrap();
        assert_eq!(request(&mut new, PATH, "mta-sts.a.example").await.1, BODY_A);
        new
    };
    // Bounded, so that a lockout fails rather than hangs.
    let new = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the new sender was not served");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "answered after {:?}",
        start.elapsed()
    );
    // One of the four made room (which one, oldest idle first, is the unit test's in
    // src/serve/conns.rs, with time under control); the other three are still served.
    let mut open = Vec::new();
    for mut tls in held {
        if !closed_by_server(&mut tls).await {
            open.push(tls);
        }
    }
    assert_eq!(open.len(), 3, "not exactly one connection closed");
    for tls in &mut open {
        assert_eq!(request(tls, PATH, "mta-sts.a.example").await.1, BODY_A);
    }
    let m = d.metrics().await;
    assert_eq!(sample(&m, "mta_stsd_connections_evicted_total"), 1.0);
    assert_eq!(sample(&m, "mta_stsd_connections_open"), 4.0);

    // Connections that never finish a handshake are quiet too: a peer holding them all does
    // not lock a sender out either.
    drop(open);
    drop(new);
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(tcp_from("127.0.0.2", https).await);
    }
    let start = Instant::now();
    let served = async {
        let new = tls_from(&ca, "127.0.0.3", https, b"h2").await.unwrap();
        h2_get(&mut h2(new).await, "mta-sts.a.example").await
    };
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the new sender was not served");
    assert_eq!(status, 200);
    assert!(start.elapsed() < Duration::from_secs(3));
}

/// An HTTP/2 session on `tls`, driven by a task of its own.
async fn h2(tls: TlsStream<TcpStream>) -> SendRequest<Empty<Bytes>> {
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

/// An HTTP/2 GET of the policy with `:authority` `authority`: status and body.
async fn h2_get(send: &mut SendRequest<Empty<Bytes>>, authority: &str) -> (u16, Bytes) {
    let request = http::Request::get(format!("https://{authority}{PATH}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = send.send_request(request).await.unwrap();
    let status = r.status().as_u16();
    (status, r.into_body().collect().await.unwrap().to_bytes())
}

/// RFC 9110 §15.5.20: over TLS for `mta-sts.a.example`, a request for `mta-sts.b.example`
/// (whose certificate this is not) gets 421, whether named by Host, an absolute URI or
/// `:authority`; the same connection still serves its own domain.
#[tokio::test]
async fn a_request_for_another_domain_than_the_sni_gets_421() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();

    let mut tls = tls_from(&ca, "127.0.0.1", https, b"http/1.1")
        .await
        .unwrap();
    let misdirected = "HTTP/1.1 421 Misdirected Request";
    let (status, _) = request(&mut tls, PATH, "mta-sts.b.example").await;
    assert_eq!(status, misdirected);
    let (status, _) = request(&mut tls, PATH, "mta-sts.unknown.example").await;
    assert_eq!(status, misdirected);
    let absolute = format!("https://mta-sts.b.example{PATH}");
    let (status, _) = request(&mut tls, &absolute, "mta-sts.a.example").await;
    assert_eq!(status, misdirected);
    // Case, port and trailing dot do not make another domain.
    let (status, body) = request(&mut tls, PATH, "MTA-STS.A.example.:443").await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", BODY_A)
    );

    let mut send = h2(tls_from(&ca, "127.0.0.1", https, b"h2").await.unwrap()).await;
    assert_eq!(h2_get(&mut send, "mta-sts.b.example").await.0, 421);
    let (status, body) = h2_get(&mut send, "mta-sts.a.example").await;
    assert_eq!((status, body.as_ref()), (200, BODY_A.as_bytes()));

    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "mta_stsd_http_requests_total{status=\"421\"}"),
        4.0
    );
    // Plain HTTP has no SNI: Host alone decides.
    let mut tcp = TcpStream::connect(d.http.unwrap()).await.unwrap();
    tcp.write_all(format!("GET {PATH} HTTP/1.0\r\nHost: mta-sts.b.example\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
}
