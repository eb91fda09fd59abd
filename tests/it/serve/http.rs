//! `serve`'s HTTP: byte-exact bodies, routing and status codes, limits on heads and slow
//! clients, pipelining, HTTP/1.0, h2c, and the admin endpoints.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Version};
use rustls_pki_types::ServerName;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{policy_url, sample, two_domains, BODY_A, BODY_B, PATH};
use crate::harness::daemon::{plain_client, Daemon, TestCa};

#[tokio::test]
async fn get_is_byte_exact_and_head_has_the_same_headers_without_body() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let client = ca.client(&["mta-sts.a.example", "mta-sts.b.example"], https, true);
    for (host, body) in [("mta-sts.a.example", BODY_A), ("mta-sts.b.example", BODY_B)] {
        let r = client.get(policy_url(host, https)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.version(), Version::HTTP_11);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(
            r.headers()["content-length"],
            body.len().to_string().as_str()
        );
        assert_eq!(r.bytes().await.unwrap(), body.as_bytes(), "{host}");

        let r = client.head(policy_url(host, https)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(
            r.headers()["content-length"],
            body.len().to_string().as_str()
        );
        assert!(r.bytes().await.unwrap().is_empty());
    }
    // The same bytes as `mta-stsd policy` prints.
    let out = std::process::Command::new(crate::harness::BIN)
        .args([
            "--config",
            dir.config_path().to_str().unwrap(),
            "policy",
            "a.example",
        ])
        .output()
        .unwrap();
    assert_eq!(out.stdout, BODY_A.as_bytes());
}

#[tokio::test]
async fn routing_404_405_400_and_never_a_redirect() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let c = plain_client();
    let url = |path: &str| format!("http://{http}{path}");
    let cases: Vec<(reqwest::RequestBuilder, StatusCode)> = vec![
        (
            c.get(url(PATH)).header("host", "mta-sts.a.example"),
            StatusCode::OK,
        ),
        (
            c.get(url(PATH)).header("host", "MTA-STS.A.Example.:8080"),
            StatusCode::OK,
        ),
        (c.get(url(PATH)).header("host", "a.example"), StatusCode::OK),
        (
            c.get(url(&format!("{PATH}?x=1")))
                .header("host", "mta-sts.a.example"),
            StatusCode::OK,
        ),
        (
            c.get(url(PATH)).header("host", "mta-sts.unknown.example"),
            StatusCode::NOT_FOUND,
        ),
        (
            c.get(url("/")).header("host", "mta-sts.a.example"),
            StatusCode::NOT_FOUND,
        ),
        (
            c.get(url("/.well-known/mta-sts.txt/"))
                .header("host", "mta-sts.a.example"),
            StatusCode::NOT_FOUND,
        ),
        (
            c.get(url("/metrics")).header("host", "mta-sts.a.example"),
            StatusCode::NOT_FOUND,
        ),
        (
            c.get(url("/status")).header("host", "mta-sts.a.example"),
            StatusCode::NOT_FOUND,
        ),
        (
            c.post(url(PATH)).header("host", "mta-sts.a.example"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            c.delete(url(PATH)).header("host", "mta-sts.a.example"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            c.get(url(PATH))
                .header("host", "mta-sts.a.example")
                .body("x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            c.get(url(PATH)).header("host", "[::1]:80"),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (req, want) in cases {
        let req = req.build().unwrap();
        let what = format!(
            "{} {} host={:?}",
            req.method(),
            req.url(),
            req.headers().get("host")
        );
        let r = c.execute(req).await.unwrap();
        assert_eq!(r.status(), want, "{what}");
        assert!(!r.status().is_redirection(), "{what}");
        if want == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(r.headers()["allow"], "GET, HEAD");
        }
    }
    // The admin endpoints are not on the public HTTPS listener either.
    let https = d.https.unwrap();
    let client = ca.client(&["mta-sts.a.example"], https, false);
    for path in ["/metrics", "/status", "/healthz"] {
        let r = client
            .get(format!("https://mta-sts.a.example:{}{path}", https.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn oversize_headers_and_missing_host_get_4xx() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "max_header_bytes = 8192");
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let r = plain_client()
        .get(format!("http://{http}{PATH}"))
        .header("host", "mta-sts.a.example")
        .header("x-filler", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    // HTTP/1.0 allows a request without Host.
    let mut tcp = TcpStream::connect(http).await.unwrap();
    tcp.write_all(format!("GET {PATH} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    // The daemon is still there.
    let r = plain_client()
        .get(d.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn admin_endpoints() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let c = plain_client();
    let r = c.get(d.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let http = d.http.unwrap();
    for _ in 0..3 {
        c.get(format!("http://{http}{PATH}"))
            .header("host", "mta-sts.a.example")
            .send()
            .await
            .unwrap();
    }
    c.get(format!("http://{http}/nope"))
        .header("host", "mta-sts.a.example")
        .send()
        .await
        .unwrap();

    let s = d.status().await;
    assert_eq!(s["domains_total"], 2);
    assert_eq!(s["config"]["last_reload"]["ok"], true);
    let a = &s["domains"][0];
    assert_eq!(a["domain"], "a.example");
    let id = String::from_utf8(
        std::process::Command::new(crate::harness::BIN)
            .args([
                "--config",
                dir.config_path().to_str().unwrap(),
                "policy",
                "a.example",
            ])
            .output()
            .unwrap()
            .stderr,
    )
    .unwrap();
    assert_eq!(format!("id: {}\n", a["policy_id"].as_str().unwrap()), id);
    assert_eq!(a["mode"], "enforce");
    assert_eq!(a["certificate"], "configured");
    assert!(crate::harness::epoch(&a["served_since"]).unwrap() > 1_700_000_000);
    assert_eq!(a["dns"]["state"], "manual");

    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "mta_stsd_http_requests_total{status=\"200\"}"),
        3.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "mta_stsd_http_requests_total{status=\"404\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(sample(&m, "mta_stsd_domains"), 2.0);
    assert_eq!(sample(&m, "mta_stsd_config_last_reload_success"), 1.0);
    assert!(m.contains("mta_stsd_certificate_expiry_timestamp_seconds{name=\"mta-sts.a.example\",source=\"configured\"}"), "{m}");
    assert!(m.contains("mta_stsd_certificate_expiry_timestamp_seconds{name=\"*.b.example\",source=\"configured\"}"), "{m}");
}

#[tokio::test]
async fn idle_and_slow_clients_are_cut_off() {
    let ca = TestCa::new();
    let dir = two_domains(
        &ca,
        "idle_timeout = \"1s\"\nheader_timeout = \"1s\"\nhandshake_timeout = \"1s\"",
    );
    let d = Daemon::start(&dir.config_path());
    let started = std::time::Instant::now();
    // Silent connections on each listener: closed by the server, not by us.
    for addr in [d.http.unwrap(), d.https.unwrap()] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut buf))
            .await
            .expect("the server must close an idle connection")
            .unwrap_or(0);
        assert!(n == 0 || addr == d.http.unwrap(), "unexpected data");
    }
    // A slowloris: half a request line, then nothing.
    let mut tcp = TcpStream::connect(d.http.unwrap()).await.unwrap();
    tcp.write_all(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-s")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut rest))
        .await
        .expect("the server must cut a slow header")
        .ok();
    assert!(started.elapsed() < Duration::from_secs(30));
    // Others are still served meanwhile.
    let r = plain_client()
        .get(format!("http://{}{PATH}", d.http.unwrap()))
        .header("host", "mta-sts.a.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Pipelined requests, HTTP/1.0 and keep-alive over real sockets: the plain listener, and TLS
/// with HTTP/1.1 by ALPN and with no ALPN at all.
#[tokio::test]
async fn http1_pipelining_and_http10_over_tcp_and_tls() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    // The last request is HTTP/1.0 without keep-alive: the server closes after it. `second`
    // is the host of all but the first request: over TLS, the SNI's (else 421).
    let pipelined = |second: &str| {
        format!(
            "GET {PATH} HTTP/1.1\r\nHost: mta-sts.a.example\r\n\r\n\
             HEAD {PATH} HTTP/1.1\r\nHost: {second}\r\n\r\n\
             GET /nope?x HTTP/1.1\r\nHost: {second}\r\n\r\n\
             GET {PATH} HTTP/1.0\r\nHost: {second}\r\n\r\n"
        )
    };
    let check = |out: &str, second_body: &str| {
        let heads: Vec<&str> = out.lines().filter(|l| l.starts_with("HTTP/1.")).collect();
        assert_eq!(
            heads,
            [
                "HTTP/1.1 200 OK",
                "HTTP/1.1 200 OK",
                "HTTP/1.1 404 Not Found",
                "HTTP/1.0 200 OK"
            ],
            "{out}"
        );
        let a = out.find(BODY_A).expect("the first body");
        let len = format!("content-length: {}\r\n", second_body.len());
        assert!(out[a + BODY_A.len()..].contains(&len), "{out}");
        assert!(out.ends_with(second_body), "{out}");
        assert_eq!(out.matches("version: STSv1").count(), 2, "{out}");
    };

    let mut tcp = TcpStream::connect(d.http.unwrap()).await.unwrap();
    tcp.write_all(pipelined("mta-sts.b.example").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    check(&out, BODY_B);

    let https = d.https.unwrap();
    for alpn in [vec![b"http/1.1".to_vec()], vec![]] {
        let mut config = ca.client_config();
        config.alpn_protocols = alpn;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(https).await.unwrap();
        let name = ServerName::try_from("mta-sts.a.example").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        // One request, its answer, then the rest pipelined: the connection was kept alive.
        let first = format!("GET {PATH} HTTP/1.1\r\nHost: mta-sts.a.example\r\n\r\n");
        tls.write_all(first.as_bytes()).await.unwrap();
        let mut buf = vec![0; 4096];
        let mut n = 0;
        while !String::from_utf8_lossy(&buf[..n]).ends_with(BODY_A) {
            let m = tls.read(&mut buf[n..]).await.unwrap();
            assert!(m > 0, "closed after one request");
            n += m;
        }
        tls.write_all(pipelined("mta-sts.a.example").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        tls.read_to_string(&mut out).await.unwrap();
        check(&out, BODY_A);
    }
}

/// The plain listener still speaks HTTP/2 with prior knowledge (h2c), beside HTTP/1.1.
#[tokio::test]
async fn h2c_prior_knowledge_on_the_plain_listener() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let _ = plain_client();
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("mta-sts.b.example", http)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("http://mta-sts.b.example:{}{PATH}", http.port());
    for _ in 0..2 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.version(), Version::HTTP_2);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.bytes().await.unwrap(), BODY_B.as_bytes());
    }
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-length"],
        BODY_B.len().to_string().as_str()
    );
    let r = c.post(&url).body("x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    // And HTTP/1.1 on the same listener, with the Date header RFC 9110 §6.6.1 asks for.
    let r = plain_client()
        .get(format!("http://{http}{PATH}"))
        .header("host", "mta-sts.b.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), Version::HTTP_11);
    assert!(r.headers().contains_key("date"));
    assert_eq!(r.bytes().await.unwrap(), BODY_B.as_bytes());
}
