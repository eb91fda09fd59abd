//! TLS for the policy listeners: the certificate for `mta-sts.<domain>` chosen by SNI, and a
//! handshake refused with `unrecognized_name` for any other name.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedCipherSuite};
use rustls_pki_types::PrivateKeyDer;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use tracing::{info, warn};

use super::devca::DevCa;
use super::Site;
use crate::acme::ACME_TLS_ALPN;
use crate::certs::provider;
use crate::config::CertSource;

/// Certificates for `self_signed = true`, signed by the development CA in `[state] dir`
/// (throwaway self-signed ones if that directory cannot hold it), made on a name's first
/// handshake and kept across reloads, so that a million-domain development config starts at
/// once.
#[derive(Debug, Default)]
pub(crate) struct SelfSigned {
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    ca: OnceLock<Option<DevCa>>,
}

impl SelfSigned {
    /// The development CA, loaded or made on first use; its path is logged for the user to
    /// trust once.
    pub(crate) fn ca(&self, state_dir: &Path) -> Option<&DevCa> {
        self.ca
            .get_or_init(|| match DevCa::open(state_dir) {
                Ok(ca) => {
                    info!(path = %ca.cert_path.display(),
                        "development CA: trust {} to reach the self-signed names", ca.cert_path.display());
                    Some(ca)
                }
                Err(e) => {
                    warn!("no development CA ({e}): throwaway self-signed certificates instead");
                    None
                }
            })
            .as_ref()
    }

    pub(crate) fn get(&self, state_dir: &Path, host: &str) -> Option<Arc<CertifiedKey>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = cache.get(host) {
            return Some(k.clone());
        }
        let made = match self.ca(state_dir) {
            Some(ca) => ca.leaf(host),
            None => make_self_signed(host),
        };
        let key = Arc::new(made.ok()?);
        cache.insert(host.to_owned(), key.clone());
        Some(key)
    }
}

fn make_self_signed(host: &str) -> Result<CertifiedKey, String> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![host.to_owned()]).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::try_from(signing_key.serialize_der()).map_err(|e| e.to_string())?;
    crate::certs::certified_key(vec![cert.der().clone()], key).map_err(|e| e.to_string())
}

/// Chooses the certificate by SNI against the live config at handshake time.
#[derive(Debug)]
pub(crate) struct Resolver(pub Arc<Site>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name()?;
        let live = self.0.live.load();
        let (cert, host) = match live.domain_for_sni(sni) {
            Some(domain) => (domain.cert, domain.name.policy_host()),
            None => {
                let i = live.tlsrpt_host(sni)?;
                let t = live.config.tlsrpt.as_ref()?;
                (*t.certs.get(i)?, t.hosts[i].to_string())
            }
        };
        match cert {
            CertSource::Configured(i) => live.certs.configured(i),
            CertSource::SelfSigned => self.0.self_signed.get(&live.config.state.dir, &host),
            // Until the manager has one, the handshake fails.
            CertSource::Acme => {
                let cert = self.0.acme.cert(&host);
                // Issue 16: the name's handshake queues it first; only configured names
                // get here, so the config is the allow list.
                if cert.is_none() && live.config.acme.as_ref().is_some_and(|a| a.on_demand) {
                    self.0.acme.demand(&host);
                }
                cert
            }
            // Never asked: there is no HTTPS listener.
            CertSource::NotNeeded => None,
        }
    }
}

/// The server config for every HTTPS listener: TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN.
#[allow(clippy::expect_used, reason = "ring supports TLS 1.2 and 1.3")]
pub(crate) fn server_config(site: Arc<Site>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(sha256_first(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(site)));
    // RFC 8446 §4.1.1: the server picks the suite; ours, not the client's order (OpenSSL
    // lists AES-256 first).
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // A sender fetches a policy about once per max_age (days to weeks): resumption is rarely
    // used, so one ticket rather than rustls's two. Not none: the ticket is what the server
    // sends after the client's Finished, which lets the client's first request through at
    // once instead of after a delayed ACK (~40 ms for clients that keep Nagle on).
    config.send_tls13_tickets = 1;
    Arc::new(config)
}

/// `provider` with the SHA-256 suites (AES-128-GCM, ChaCha20-Poly1305) before the SHA-384
/// ones, ring's order kept otherwise: ring's SHA-384 has no hardware path here and took about
/// a tenth of a full handshake's CPU (transcript and key schedule), SHA-256 uses the CPU's SHA
/// extensions (bench/serve-vs-nginx.sh).
fn sha256_first(provider: Arc<CryptoProvider>) -> Arc<CryptoProvider> {
    let hash = |s: &SupportedCipherSuite| match s {
        SupportedCipherSuite::Tls12(t) => t.common.hash_provider.algorithm(),
        SupportedCipherSuite::Tls13(t) => t.common.hash_provider.algorithm(),
    };
    let mut p = Arc::unwrap_or_clone(provider);
    p.cipher_suites
        .sort_by_key(|s| hash(s) != HashAlgorithm::SHA256);
    Arc::new(p)
}

/// A fatal `unrecognized_name` alert record (RFC 8446 §6.2, RFC 6066 §3): sent ourselves,
/// since rustls answers a resolver's refusal with `access_denied`.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("no SNI in the ClientHello")]
    NoSni,
    #[error("SNI {0} is not a served mta-sts name")]
    UnknownName(String),
    #[error("TLS: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the ClientHello, refuses names we do not serve, then completes the handshake. The
/// stream comes boxed: a connection's task moves it through nested futures, each of which kept
/// room for a whole rustls connection (the task of an idle connection was 9.3 kB).
pub(crate) async fn accept<IO>(
    io: IO,
    site: &Site,
    config: Arc<ServerConfig>,
) -> Result<Box<TlsStream<IO>>, HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
    let sni = start.client_hello().server_name().map(str::to_owned);
    let refusal = match &sni {
        None => Some(HandshakeError::NoSni),
        Some(name)
            if site.live.load().domain_for_sni(name).is_none()
                && site.live.load().tlsrpt_host(name).is_none() =>
        {
            Some(HandshakeError::UnknownName(name.clone()))
        }
        Some(_) => None,
    };
    if let Some(err) = refusal {
        let mut io = start.io;
        // Best effort: the client may already be gone.
        let _ = io.write_all(&UNRECOGNIZED_NAME_ALERT).await;
        let _ = io.shutdown().await;
        return Err(err);
    }
    // RFC 8737 §3: a validation handshake offers ALPN `acme-tls/1`; it gets the challenge
    // certificate and that protocol only (see `is_acme_validation`).
    let validation = start
        .client_hello()
        .alpn()
        .is_some_and(|mut p| p.any(|p| p == ACME_TLS_ALPN));
    let config = if validation {
        // The CA may reach this replica for another's order: its answer is in the store.
        if let Some(name) = sni
            .as_deref()
            .filter(|n| crate::acme::is_acme_name(&site.live.load(), n))
        {
            site.acme.fetch_tls_alpn01(name).await;
        }
        site.acme.validation_config()
    } else {
        config
    };
    Ok(Box::new(start.into_stream(config).await?))
}

/// Whether a completed handshake was an ACME validation: RFC 8737 §3 "Once the handshake is
/// completed, the client MUST NOT exchange any further data with the server and MUST
/// immediately close the connection", so neither do we serve HTTP on it.
pub(crate) fn is_acme_validation<IO>(stream: &TlsStream<IO>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN)
}
