//! `serve` over TLS: SNI picks each domain's certificate, unknown names fail the handshake,
//! HTTP/2 by ALPN.

use std::sync::Arc;

use reqwest::{StatusCode, Version};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use tokio::net::TcpStream;

use super::{policy_url, sample, two_domains, BODY_B};
use crate::harness::daemon::{Daemon, TestCa};

#[tokio::test]
async fn sni_chooses_each_domains_certificate() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let client = ca.client(&["mta-sts.a.example", "mta-sts.b.example"], https, false);
    for (host, cert_file) in [
        ("mta-sts.a.example", "a.pem"),
        ("mta-sts.b.example", "b.pem"),
    ] {
        let r = client.get(policy_url(host, https)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{host}");
        let served = r
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .expect("TLS info")
            .to_vec();
        let pem = std::fs::read(dir.file(cert_file)).unwrap();
        let want = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(served, want.as_ref(), "{host} got another certificate");
    }
}

/// A raw rustls handshake; the error it ends with.
async fn handshake_error(
    addr: std::net::SocketAddr,
    ca: &TestCa,
    name: ServerName<'static>,
) -> rustls::Error {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(ca.client_config()));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let err = connector
        .connect(name, tcp)
        .await
        .expect_err("handshake must fail");
    *err.into_inner()
        .expect("a TLS error")
        .downcast::<rustls::Error>()
        .expect("a rustls error")
}

#[tokio::test]
async fn unknown_or_missing_sni_fails_with_unrecognized_name() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let unrecognized = rustls::Error::AlertReceived(rustls::AlertDescription::UnrecognisedName);
    for name in ["mta-sts.unknown.example", "a.example", "www.b.example"] {
        let err = handshake_error(https, &ca, ServerName::try_from(name.to_owned()).unwrap()).await;
        assert_eq!(err, unrecognized, "SNI {name}");
    }
    // rustls sends no SNI for an IP address.
    let err = handshake_error(https, &ca, ServerName::IpAddress(https.ip().into())).await;
    assert_eq!(err, unrecognized, "no SNI");
    let m = d.metrics().await;
    assert!(
        sample(&m, "mta_stsd_tls_handshake_failures_total") >= 4.0,
        "{m}"
    );
}

#[tokio::test]
async fn http2_by_alpn() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let client = ca.client(&["mta-sts.b.example"], https, false);
    let r = client
        .get(policy_url("mta-sts.b.example", https))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), BODY_B.as_bytes());
}

/// The suite a client with `suites` (in its order of preference) gets from the daemon at
/// `addr` for `mta-sts.a.example`.
async fn negotiated(
    addr: std::net::SocketAddr,
    ca: &TestCa,
    suites: &[rustls::SupportedCipherSuite],
) -> rustls::CipherSuite {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites.to_vec(),
        ..rustls::crypto::ring::default_provider()
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("mta-sts.a.example").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.negotiated_cipher_suite().unwrap().suite()
}

/// The server picks a SHA-256 suite (its SHA-384 is the dearer hash) even from a client that
/// lists AES-256-GCM-SHA384 first, as OpenSSL and rustls do; a client offering only SHA-384
/// suites still gets one.
#[tokio::test]
async fn the_server_prefers_the_sha256_suites() {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    use rustls::CipherSuite;
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let client_order = [
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS13_AES_128_GCM_SHA256,
    ];
    assert_eq!(
        negotiated(https, &ca, &client_order).await,
        CipherSuite::TLS13_AES_128_GCM_SHA256
    );
    assert_eq!(
        negotiated(https, &ca, &client_order[..2]).await,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    );
    assert_eq!(
        negotiated(https, &ca, &[TLS13_AES_256_GCM_SHA384]).await,
        CipherSuite::TLS13_AES_256_GCM_SHA384
    );
}

/// `Connection: close` over TLS (the last answer leaves corked with the close): the whole
/// answer, then close_notify and the end; rustls would report an end without close_notify as
/// an unexpected EOF.
#[tokio::test]
async fn a_last_answer_over_tls_ends_with_close_notify() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    for round in 0..3 {
        let tcp = TcpStream::connect(https).await.unwrap();
        let name = ServerName::try_from("mta-sts.b.example").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(ca.client_config()))
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(
            b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.b.example\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got)
            .await
            .unwrap_or_else(|e| panic!("round {round}: no clean end: {e}"));
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
        assert!(text.ends_with(BODY_B), "{text}");
    }
}
