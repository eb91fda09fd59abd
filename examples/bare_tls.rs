//! The floor for bench/serve-vs-nginx.sh: a bare tokio-rustls server with the same TLS setup
//! as mta-stsd (its crypto provider, TLS 1.3 and 1.2, SHA-256 suites first, one ticket; ALPN http/1.1, the bench's
//! clients offer none) that
//! answers every request head with one fixed 200 and nothing else: no routing, no limits, no
//! metrics, no timers. What mta-stsd spends beyond it is what its own code costs.
//!
//! `bare_tls <port> <cert.pem> <key.pem> <body-file>`; loopback only.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, SupportedCipherSuite};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, cert, key, body] = args.as_slice() else {
        return Err("usage: bare_tls <port> <cert.pem> <key.pem> <body-file>".into());
    };
    let port: u16 = port.parse()?;
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let body = std::fs::read(body)?;
    // Two answers: keep-alive, and the last one (`connection: close`, which tells the client
    // the close is no error).
    let answer = |close: &str| -> Arc<[u8]> {
        let mut a = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{close}\r\n",
            body.len()
        )
        .into_bytes();
        a.extend_from_slice(&body);
        a.into()
    };
    let answers = (answer(""), answer("connection: close\r\n"));

    let mut provider = Arc::unwrap_or_clone(mta_stsd::certs::provider());
    // As src/serve/tls.rs: the SHA-256 suites first.
    let hash = |s: &SupportedCipherSuite| match s {
        SupportedCipherSuite::Tls12(t) => t.common.hash_provider.algorithm(),
        SupportedCipherSuite::Tls13(t) => t.common.hash_provider.algorithm(),
    };
    provider
        .cipher_suites
        .sort_by_key(|s| hash(s) != HashAlgorithm::SHA256);
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider) as Arc<CryptoProvider>)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.send_tls13_tickets = 1;
    let acceptor = TlsAcceptor::from(Arc::new(config));

    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind(("127.0.0.1", port)).await?;
            loop {
                let (tcp, _) = listener.accept().await?;
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let answers = answers.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    // Empty while idle, as mta-stsd's: a read takes a stack buffer of one poll.
                    let mut buf: Vec<u8> = Vec::new();
                    loop {
                        let n = std::future::poll_fn(|cx| {
                            let mut chunk = [0u8; 4096];
                            let mut rb = ReadBuf::new(&mut chunk);
                            let r = Pin::new(&mut tls).poll_read(cx, &mut rb);
                            r.map_ok(|()| {
                                buf.extend_from_slice(rb.filled());
                                rb.filled().len()
                            })
                        })
                        .await;
                        match n {
                            Ok(n) if n > 0 => {}
                            _ => return,
                        }
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            if buf.len() > 8192 {
                                return;
                            }
                            continue;
                        };
                        let close = buf[..end]
                            .to_ascii_lowercase()
                            .windows(17)
                            .any(|w| w == b"connection: close");
                        let answer = if close { &answers.1 } else { &answers.0 };
                        if tls.write_all(answer).await.is_err() {
                            return;
                        }
                        if close {
                            // As mta-stsd: close_notify, then read until the client closes
                            // (a close with unread bytes would be a reset).
                            let _ = tls.shutdown().await;
                            let mut sink = [0u8; 512];
                            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                                while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
                            })
                            .await;
                            return;
                        }
                        buf.drain(..end + 4);
                        if buf.is_empty() {
                            buf = Vec::new();
                        }
                    }
                });
            }
        })
}
