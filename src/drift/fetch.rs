//! The policy fetched as a sending MTA does (RFC 8461 §3.3): HTTPS to `mta-sts.<domain>` with
//! SNI and WebPKI validation, no redirects, 200, `text/plain`, at most 64 KiB within 60 s;
//! then compared with the body we serve, and the certificate's expiry checked.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, LOCATION};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::report::{Check, Finding, Severity};
use crate::config::Domain;
use crate::policy::{PolicyText, Reading, POLICY_PATH};

/// RFC 8461 §3.3: senders "SHOULD" limit the body (64 KiB) and the time (60 s).
const MAX_BODY: usize = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const EXPIRY_WARNING_DAYS: i64 = 14;
const EXPIRY_CRITICAL_DAYS: i64 = 3;

/// A TLS version as admins write it ("TLS 1.3"), not rustls' `TLSv1_3`.
pub(crate) fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".into(),
        rustls::ProtocolVersion::TLSv1_1 => "TLS 1.1".into(),
        rustls::ProtocolVersion::TLSv1_0 => "TLS 1.0".into(),
        other => format!("{other:?}"),
    }
}

/// System roots plus `[drift] ca`, as a sender would trust.
pub(crate) fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    client_config_with(roots(extra_ca)?)
}

/// [`client_config`] with the roots already read.
pub(crate) fn client_config_with(
    roots: Arc<rustls::RootCertStore>,
) -> Result<Arc<ClientConfig>, String> {
    let mut config = ClientConfig::builder_with_provider(crate::certs::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The roots a sender trusts: the system's plus `[drift] ca`.
pub(crate) fn roots(extra_ca: Option<&Path>) -> Result<Arc<rustls::RootCertStore>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        for cert in
            CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?
        {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(Arc::new(roots))
}

pub(crate) async fn check(
    tls: &Arc<ClientConfig>,
    d: &Domain,
    addrs: &[IpAddr],
    port: u16,
    now: i64,
) -> Vec<Finding> {
    match tokio::time::timeout(FETCH_TIMEOUT, fetch(tls, d, addrs, port, now)).await {
        Ok(findings) => findings,
        Err(_) => vec![Finding::new(
            Severity::Critical,
            Check::PolicyFetch,
            format!(
                "the policy at mta-sts.{} did not arrive within {FETCH_TIMEOUT:?}",
                d.name
            ),
            "check that the HTTPS listener answers",
        )],
    }
}

async fn fetch(
    tls: &Arc<ClientConfig>,
    d: &Domain,
    addrs: &[IpAddr],
    port: u16,
    now: i64,
) -> Vec<Finding> {
    let host = d.name.policy_host();
    let stream = match connect(tls, &host, addrs, port).await {
        Ok(s) => s,
        Err(findings) => return findings,
    };
    let mut findings: Vec<Finding> = certificate(&stream, &host, now).into_iter().collect();
    let response = match get(stream, &host).await {
        Ok(r) => r,
        Err(f) => return f,
    };
    check_response(response, d, &host, &mut findings).await;
    findings
}

/// A finding of a fetch that could not be made: nothing is known of the policy.
fn unknown(m: String) -> Vec<Finding> {
    vec![Finding::new(
        Severity::Unknown,
        Check::PolicyFetch,
        m,
        "check that the policy host is reachable from here",
    )]
}

/// TCP to the first of `addrs` that answers, then TLS with SNI `host`, validated.
async fn connect(
    tls: &Arc<ClientConfig>,
    host: &str,
    addrs: &[IpAddr],
    port: u16,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Vec<Finding>> {
    let mut tcp = None;
    let mut errors = Vec::new();
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                // The handshake's last flight and the request are separate writes: without
                // this, the request may wait for the server's ACK of the first (Nagle).
                let _ = s.set_nodelay(true);
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
            Err(_) => errors.push(format!("{addr}: no connection within {CONNECT_TIMEOUT:?}")),
        }
    }
    let Some(tcp) = tcp else {
        return Err(unknown(format!(
            "could not connect to {host}: {}",
            errors.join("; ")
        )));
    };
    let Ok(server_name) = ServerName::try_from(host.to_owned()) else {
        return Err(unknown(format!("{host} is not a valid TLS server name")));
    };
    let stream = match TlsConnector::from(tls.clone())
        .connect(server_name, tcp)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let tls_error = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .cloned();
            return Err(match tls_error {
                Some(rustls::Error::InvalidCertificate(why)) => vec![Finding::new(
                    Severity::Critical,
                    Check::Certificate,
                    format!(
                        "the certificate of {host} is not valid: {}; senders refuse the policy",
                        describe(&why)
                    ),
                    "install a certificate valid for mta-sts.<domain> (or use [acme])",
                )],
                _ => unknown(format!("TLS handshake with {host} failed: {e}")),
            });
        }
    };
    Ok(stream)
}

/// The certificate's expiry as a finding.
fn certificate(
    stream: &tokio_rustls::client::TlsStream<TcpStream>,
    host: &str,
    now: i64,
) -> Option<Finding> {
    let version = stream
        .get_ref()
        .1
        .protocol_version()
        .map(version_name)
        .unwrap_or_default();
    let leaf = stream.get_ref().1.peer_certificates()?.first()?;
    let (_, x509) = X509Certificate::from_der(leaf).ok()?;
    let days = (x509.validity().not_after.timestamp() - now) / 86400;
    let severity = if days < EXPIRY_CRITICAL_DAYS {
        Some(Severity::Critical)
    } else if days < EXPIRY_WARNING_DAYS {
        Some(Severity::Warning)
    } else {
        None
    };
    Some(match severity {
        Some(severity) => Finding::new(
            severity,
            Check::Certificate,
            format!("the certificate of {host} expires in {days} days"),
            "renew it (certbot renew, or [acme])",
        ),
        None => Finding::passed(
            Check::Certificate,
            format!("the certificate of {host} is valid for it ({version}), {days} days left"),
        ),
    })
}

/// `GET` of the policy on `stream`.
#[allow(clippy::expect_used, reason = "a valid request")]
async fn get(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    host: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, Vec<Finding>> {
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(p) => p,
        Err(e) => return Err(unknown(format!("HTTP with {host} failed: {e}"))),
    };
    tokio::spawn(conn);
    let request = Request::get(POLICY_PATH)
        .header(HOST, host)
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    sender
        .send_request(request)
        .await
        .map_err(|e| unknown(format!("GET https://{host}{POLICY_PATH} failed: {e}")))
}

/// What a sender checks of the answer (RFC 8461 §3.3), and the body against ours.
async fn check_response(
    response: hyper::Response<hyper::body::Incoming>,
    d: &Domain,
    host: &str,
    findings: &mut Vec<Finding>,
) {
    let status = response.status();
    if status.is_redirection() {
        let to = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        findings.push(Finding::new(
            Severity::Critical,
            Check::PolicyFetch,
            format!("https://{host}{POLICY_PATH} redirects ({status}) to {to}; RFC 8461 §3.3: senders MUST NOT follow redirects"),
            "serve the policy directly at that URL",
        ));
        return;
    }
    if status != StatusCode::OK {
        findings.push(Finding::new(
            Severity::Critical,
            Check::PolicyFetch,
            format!("https://{host}{POLICY_PATH} answers {status}"),
            "serve the policy with status 200",
        ));
        return;
    }
    let media = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if media.as_deref() != Some("text/plain") {
        findings.push(Finding::new(
            Severity::Critical,
            Check::PolicyFetch,
            format!("the policy is served as {media:?}; RFC 8461 §3.2 requires text/plain"),
            "serve it with Content-Type: text/plain",
        ));
    }
    let body = match Limited::new(response.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            findings.push(Finding::new(
                Severity::Critical,
                Check::PolicyFetch,
                format!("the policy body could not be read within 64 KiB: {e}"),
                "serve the policy itself, nothing larger",
            ));
            return;
        }
    };
    if let Err(e) = PolicyText::parse(&body, Reading::Sender) {
        findings.push(Finding::new(
            Severity::Critical,
            Check::PolicyFetch,
            format!("the served policy is invalid: {e}"),
            "serve the body `mta-stsd policy <domain>` prints",
        ));
    } else if body != d.policy.body() {
        findings.push(Finding::new(
            Severity::Critical,
            Check::PolicyFetch,
            format!(
                "the served policy differs from the config's (served {:?})",
                String::from_utf8_lossy(&body)
            ),
            "serve the body `mta-stsd policy <domain>` prints (is another server answering?)",
        ));
    }
    if !findings.iter().any(|f| f.check == Check::PolicyFetch) {
        findings.push(Finding::passed(
            Check::PolicyFetch,
            format!(
                "GET https://{host}{POLICY_PATH}: 200 text/plain, {} bytes, the policy served for id {}",
                body.len(),
                d.policy.id().as_str()
            ),
        ));
    }
}

/// A certificate error in words, with dates rather than Unix times.
pub(super) fn describe(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    let date = |t: rustls::pki_types::UnixTime| {
        x509_parser::time::ASN1Time::from_timestamp(t.as_secs() as i64)
            .map_or_else(|_| t.as_secs().to_string(), |d| d.to_string())
    };
    match e {
        E::Expired => "it has expired".into(),
        E::ExpiredContext { not_after, .. } => format!("it expired on {}", date(*not_after)),
        E::NotValidYet => "it is not valid yet".into(),
        E::NotValidYetContext { not_before, .. } => {
            format!("it is valid only from {}", date(*not_before))
        }
        E::NotValidForName => "it is not issued for this name".into(),
        E::NotValidForNameContext { presented, .. } => {
            // rustls renders each as `DnsName("…")`.
            let names: Vec<&str> = presented
                .iter()
                .map(|p| {
                    p.trim_start_matches("DnsName(")
                        .trim_start_matches("IpAddress(")
                        .trim_end_matches(')')
                        .trim_matches('"')
                })
                .collect();
            format!("it is issued for {}, not this name", names.join(", "))
        }
        E::UnknownIssuer => "its issuer is not trusted".into(),
        E::BadSignature => "its signature does not verify".into(),
        E::Revoked => "it is revoked".into(),
        other => format!("{other:?}"),
    }
}
