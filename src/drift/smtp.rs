//! One MX address probed as a sending MTA does: connect, banner, EHLO, STARTTLS (RFC 3207),
//! TLS handshake. The certificate is judged by WebPKI for the MX name (RFC 8461 §4.2) but the
//! handshake completes either way, so the chain is there for DANE and the error for the report.
//! Every step is bounded in time and size.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; we allow a few more lines' worth.
const MAX_REPLY: usize = 16 * 1024;

/// What one address did.
#[derive(Debug, Clone)]
pub(crate) enum Probe {
    /// No TCP connection: nothing learnt about the MX (port 25 may be blocked from here).
    Unreachable(String),
    /// Connected, then the dialogue failed the way a sender's would.
    Failed(Failure, String),
    /// TLS was negotiated; the verdict is WebPKI's for the MX name.
    Tls(Box<Session>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No reply within the timeout (banner, EHLO or STARTTLS).
    Timeout,
    /// A banner or reply that is not the expected code, or not SMTP at all.
    Refused,
    /// RFC 3207: EHLO did not list STARTTLS.
    NoStarttls,
    /// The TLS handshake failed (no common version ≥ 1.2 or cipher, or a broken peer).
    Handshake,
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub version: rustls::ProtocolVersion,
    /// Leaf first, as presented.
    pub chain: Vec<CertificateDer<'static>>,
    /// WebPKI's verdict for the MX name; `None` when valid.
    pub invalid: Option<rustls::CertificateError>,
}

/// Trust as a sender has it: system roots plus `[drift] ca`.
pub(crate) struct Trust {
    verifier: Arc<WebPkiServerVerifier>,
}

impl Trust {
    pub(crate) fn new(roots: Arc<rustls::RootCertStore>) -> Result<Self, String> {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, crate::certs::provider())
            .build()
            .map_err(|e| format!("no trust roots for the MX check: {e}"))?;
        Ok(Trust { verifier })
    }
}

/// Probes `addr` for MX `host` (no trailing dot), each step within `timeout`.
pub(crate) async fn probe(trust: &Trust, addr: SocketAddr, host: &str, timeout: Duration) -> Probe {
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Probe::Unreachable(e.to_string()),
        Err(_) => return Probe::Unreachable(format!("no connection within {timeout:?}")),
    };
    let mut c = Conn {
        tcp,
        buf: Vec::new(),
        timeout,
    };
    match dialogue(&mut c).await {
        Ok(()) => {}
        Err((f, why)) => return Probe::Failed(f, why),
    }
    handshake(trust, c, host).await
}

/// Banner, EHLO, STARTTLS; `Ok` once the server said 220 to STARTTLS.
async fn dialogue(c: &mut Conn) -> Result<(), (Failure, String)> {
    let (code, lines) = c.reply("banner").await?;
    if code != 220 {
        return Err((
            Failure::Refused,
            format!("banner {code} {}", lines.join(" ")),
        ));
    }
    c.send(format!("EHLO {}\r\n", ehlo_name()).as_bytes())
        .await?;
    let (code, lines) = c.reply("EHLO reply").await?;
    if code != 250 {
        return Err((
            Failure::Refused,
            format!("EHLO answered {code} {}", lines.join(" ")),
        ));
    }
    // RFC 3207 §4: the EHLO keyword, one per line after the first (the greeting).
    let offered = lines.iter().skip(1).any(|l| {
        l.split_ascii_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
    });
    if !offered {
        return Err((Failure::NoStarttls, "EHLO does not list STARTTLS".into()));
    }
    c.send(b"STARTTLS\r\n").await?;
    let (code, lines) = c.reply("STARTTLS reply").await?;
    if code != 220 {
        return Err((
            Failure::Refused,
            format!("STARTTLS answered {code} {}", lines.join(" ")),
        ));
    }
    // RFC 3207 §4.2 (and CVE-2011-0411): nothing may follow the 220 before the handshake.
    if !c.buf.is_empty() {
        return Err((
            Failure::Refused,
            "plaintext data after the STARTTLS reply".into(),
        ));
    }
    Ok(())
}

#[allow(clippy::expect_used, reason = "ring supports the default versions")]
async fn handshake(trust: &Trust, c: Conn, host: &str) -> Probe {
    let Ok(name) = ServerName::try_from(host.to_owned()) else {
        return Probe::Failed(Failure::Handshake, format!("{host} is not a TLS name"));
    };
    let recorder = Arc::new(Recorder {
        inner: trust.verifier.clone(),
        verdict: Mutex::new(None),
    });
    // RFC 8461 §4: "TLS version 1.2 or higher"; rustls offers nothing older.
    let config = ClientConfig::builder_with_provider(crate::certs::provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let connect = TlsConnector::from(Arc::new(config)).connect(name, c.tcp);
    let mut tls = match tokio::time::timeout(c.timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Probe::Failed(Failure::Handshake, e.to_string()),
        Err(_) => {
            return Probe::Failed(
                Failure::Timeout,
                format!("no TLS handshake within {:?}", c.timeout),
            )
        }
    };
    let (_, session) = tls.get_ref();
    let version = session
        .protocol_version()
        .unwrap_or(rustls::ProtocolVersion::Unknown(0));
    let chain = session
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let invalid = match recorder
        .verdict
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        Some(Ok(())) => None,
        Some(Err(rustls::Error::InvalidCertificate(e))) => Some(e),
        Some(Err(e)) => Some(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(std::io::Error::other(e.to_string())),
        ))),
        None => Some(rustls::CertificateError::BadEncoding),
    };
    // Polite, and bounded: the result does not depend on it.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tls.write_all(b"QUIT\r\n").await?;
        tls.shutdown().await
    })
    .await;
    Probe::Tls(Box::new(Session {
        version,
        chain,
        invalid,
    }))
}

struct Conn {
    tcp: TcpStream,
    /// Bytes read past the last reply.
    buf: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), (Failure, String)> {
        match tokio::time::timeout(self.timeout, self.tcp.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err((Failure::Refused, format!("connection lost: {e}"))),
            Err(_) => Err((
                Failure::Timeout,
                format!("no progress within {:?}", self.timeout),
            )),
        }
    }

    /// One reply, multi-line (RFC 5321 §4.2.1: `250-…` lines, then `250 …`): the code and
    /// each line's text.
    async fn reply(&mut self, what: &str) -> Result<(u16, Vec<String>), (Failure, String)> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\r', '\n']);
                let n = line
                    .get(..3)
                    .and_then(|c| c.parse::<u16>().ok())
                    .filter(|_| matches!(line.as_bytes().get(3), None | Some(b' ' | b'-')));
                let Some(n) = n else {
                    return Err((
                        Failure::Refused,
                        format!("the {what} is not SMTP: {line:?}"),
                    ));
                };
                if code.is_some_and(|c| c != n) {
                    return Err((Failure::Refused, format!("the {what} mixes reply codes")));
                }
                code = Some(n);
                lines.push(line.get(4..).unwrap_or("").to_owned());
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Ok((n, lines));
                }
            }
            if self.buf.len() > MAX_REPLY {
                return Err((
                    Failure::Refused,
                    format!("the {what} exceeds {MAX_REPLY} bytes"),
                ));
            }
            let mut chunk = [0u8; 2048];
            match tokio::time::timeout(self.timeout, self.tcp.read(&mut chunk)).await {
                Ok(Ok(0)) => {
                    return Err((
                        Failure::Refused,
                        format!("connection closed before the {what}"),
                    ))
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => {
                    return Err((
                        Failure::Refused,
                        format!("connection lost before the {what}: {e}"),
                    ))
                }
                Err(_) => {
                    return Err((
                        Failure::Timeout,
                        format!("no {what} within {:?}", self.timeout),
                    ))
                }
            }
        }
    }
}

/// This host's name for EHLO (RFC 5321 §4.1.1.1 wants our FQDN).
fn ehlo_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        })
        .unwrap_or_else(|| "localhost".into())
}

/// WebPKI's verdict kept aside; the handshake goes on so the chain can be read. Signatures are
/// still verified: the chain is the peer's own.
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    verdict: Mutex<Option<Result<(), rustls::Error>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map(|_| ());
        *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(verdict);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
