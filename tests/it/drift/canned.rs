//! What the daemon never does, served over HTTPS by a canned server, and certificates with
//! chosen validity.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::schema::*;

/// A TLS acceptor with one certificate chain and key (PEM), for the test servers here.
pub fn acceptor(cert_pem: &str, key_pem: &str) -> tokio_rustls::TlsAcceptor {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// The SNI and the head of one request a [`CannedHttps`] received.
pub type Request = (Option<String>, String);

/// What the daemon never does, served over HTTPS: every request on `127.0.0.1:<port>` gets
/// one canned HTTP/1.1 response, with one certificate for every name.
pub struct CannedHttps {
    pub port: u16,
    /// SNI and request head of every request received.
    pub requests: Arc<Mutex<Vec<Request>>>,
    pub _runtime: tokio::runtime::Runtime,
}

impl CannedHttps {
    pub fn start((cert_pem, key_pem): (String, String), response: String) -> CannedHttps {
        let acceptor = acceptor(&cert_pem, &key_pem);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let response = Arc::new(response.into_bytes());
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, response, seen) = (acceptor.clone(), response.clone(), seen.clone());
                tokio::spawn(async move {
                    // A client refusing the certificate ends here.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_owned);
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push((sni, String::from_utf8_lossy(&head).into_owned()));
                    let _ = tls.write_all(&response).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        CannedHttps {
            port,
            requests,
            _runtime: runtime,
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// A `200` with the given content type and body.
pub fn ok_response(content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The policy body the config of the default [`world`] makes.
pub const BODY: &str =
    "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.org\r\nmax_age: 86400\r\n";

pub const DAY: i64 = 86400;

/// Sets the validity of a leaf to `[now + from, now + to]`, in seconds.
pub fn validity(p: &mut rcgen::CertificateParams, from: i64, to: i64) {
    let now = unix_now() as i64;
    let at =
        |offset: i64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs((now + offset) as u64);
    p.not_before = at(from);
    p.not_after = at(to);
}
