//! Answers to the challenges of the orders in flight: HTTP-01 (RFC 8555 §8.3) on the plain
//! listeners, TLS-ALPN-01 (RFC 8737) on the HTTPS listeners. Each answer is published for the
//! life of a [`Published`] guard, which the order holds until the server has validated.
//!
//! Behind a load balancer the CA's validation may reach another replica than the one that
//! ordered, so answers are also written to `challenges/` in the shared state directory, and a
//! replica that has no answer of its own in memory looks there.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::PrivateKeyDer;
use sha2::{Digest, Sha256};
use tracing::warn;

use super::store::write_atomic;
use crate::certs::provider;

/// RFC 8737 §6.2: the ALPN protocol ID of a validation handshake.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// RFC 8555 §8.3: "http://{domain}/.well-known/acme-challenge/{token}".
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

const HTTP01_DIR: &str = "http-01";
const TLS_ALPN01_DIR: &str = "tls-alpn-01";

/// The answers currently published, by HTTP-01 token and by TLS-ALPN-01 host name.
#[derive(Debug, Default)]
pub struct Challenges {
    http01: Mutex<HashMap<String, Bytes>>,
    tls_alpn01: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// `<state>/challenges`, once `[acme]` is known.
    shared_dir: RwLock<Option<PathBuf>>,
    /// Validation certificates made for other replicas' answers, with the key authorization
    /// each was made for.
    foreign: Mutex<HashMap<String, (String, Arc<CertifiedKey>)>>,
}

impl Challenges {
    pub fn set_shared_dir(&self, dir: Option<PathBuf>) {
        *self.shared_dir.write().unwrap_or_else(|e| e.into_inner()) = dir;
        lock(&self.foreign).clear();
    }

    /// Publishes the key authorization for `token` until the guard is dropped.
    pub fn publish_http01(self: &Arc<Self>, token: &str, key_authorization: &str) -> Published {
        lock(&self.http01).insert(
            token.to_owned(),
            Bytes::copy_from_slice(key_authorization.as_bytes()),
        );
        let file = self.share(HTTP01_DIR, token, key_authorization);
        Published {
            challenges: self.clone(),
            what: What::Http01(token.to_owned()),
            file,
        }
    }

    /// Publishes the validation certificate for `host` until the guard is dropped.
    pub fn publish_tls_alpn01(
        self: &Arc<Self>,
        host: &str,
        key_authorization: &str,
    ) -> Result<Published, String> {
        let digest = Sha256::digest(key_authorization.as_bytes());
        let cert = Arc::new(validation_cert(host, &digest)?);
        lock(&self.tls_alpn01).insert(host.to_owned(), cert);
        let file = self.share(TLS_ALPN01_DIR, host, key_authorization);
        Ok(Published {
            challenges: self.clone(),
            what: What::TlsAlpn01(host.to_owned()),
            file,
        })
    }

    /// The body of the plain listener's answer to `GET` or `HEAD
    /// /.well-known/acme-challenge/<token>` (the key authorization) for a token published here
    /// or by another replica; `None` lets the policy handler answer (404).
    pub fn http01_body(&self, method: &str, path: &str) -> Option<Bytes> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        if method != "GET" && method != "HEAD" {
            return None;
        }
        let own = lock(&self.http01).get(token).cloned();
        match own {
            Some(b) => Some(b),
            None => Some(Bytes::from(self.shared(HTTP01_DIR, token)?)),
        }
    }

    /// The validation certificate for `host`: ours, or one made for another replica's answer.
    pub fn tls_alpn01(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = lock(&self.tls_alpn01).get(&host) {
            return Some(k.clone());
        }
        let Some(key_authorization) = self.shared(TLS_ALPN01_DIR, &host) else {
            lock(&self.foreign).remove(&host);
            return None;
        };
        let mut foreign = lock(&self.foreign);
        if let Some((ka, cert)) = foreign.get(&host) {
            if *ka == key_authorization {
                return Some(cert.clone());
            }
        }
        let digest = Sha256::digest(key_authorization.as_bytes());
        let cert = Arc::new(validation_cert(&host, &digest).ok()?);
        foreign.insert(host, (key_authorization, cert.clone()));
        Some(cert)
    }

    /// Writes an answer for the other replicas; the file to remove when it is withdrawn.
    fn share(&self, kind: &str, key: &str, key_authorization: &str) -> Option<PathBuf> {
        let dir = self.dir(kind)?;
        let path = dir.join(key);
        let written = fs::DirBuilder::new()
            .recursive(true)
            .create(&dir)
            .and_then(|()| write_atomic(&path, key_authorization.as_bytes(), 0o644));
        match written {
            Ok(()) => Some(path),
            Err(e) => {
                warn!(file = %path.display(), error = %e, "cannot share the challenge answer");
                None
            }
        }
    }

    /// Another replica's answer, read from the shared directory.
    fn shared(&self, kind: &str, key: &str) -> Option<String> {
        // Tokens are base64url (RFC 8555 §8.1), host names LDH with dots: nothing else may
        // become part of a path.
        let safe = !key.is_empty()
            && !key.starts_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !safe || key.len() > 255 {
            return None;
        }
        let text = fs::read_to_string(self.dir(kind)?.join(key)).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    }

    fn dir(&self, kind: &str) -> Option<PathBuf> {
        let base = self.shared_dir.read().unwrap_or_else(|e| e.into_inner());
        base.as_deref().map(|d: &Path| d.join(kind))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
enum What {
    Http01(String),
    TlsAlpn01(String),
}

/// Withdraws its answer when dropped.
#[derive(Debug)]
pub struct Published {
    challenges: Arc<Challenges>,
    what: What,
    /// The shared copy of the answer.
    file: Option<PathBuf>,
}

impl Drop for Published {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = fs::remove_file(f);
        }
        match &self.what {
            What::Http01(token) => {
                lock(&self.challenges.http01).remove(token);
            }
            What::TlsAlpn01(host) => {
                lock(&self.challenges.tls_alpn01).remove(host);
            }
        }
    }
}

/// RFC 8737 §3: a self-signed certificate whose subjectAltName is the name being validated
/// (and nothing else), with the critical acmeIdentifier extension holding the SHA-256 digest
/// of the key authorization.
fn validation_cert(host: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    if digest.len() != 32 {
        return Err(format!(
            "a SHA-256 digest has 32 bytes, not {}",
            digest.len()
        ));
    }
    let mut params =
        rcgen::CertificateParams::new(vec![host.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    // Not `CertifiedKey::from_der`: its consistency check parses the certificate with webpki,
    // which refuses the critical extension it does not know.
    let key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], key))
}

/// Chooses the validation certificate by SNI; no answer published, no handshake.
#[derive(Debug)]
struct ValidationResolver(Arc<Challenges>);

impl ResolvesServerCert for ValidationResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.tls_alpn01(hello.server_name()?)
    }
}

/// The server config for validation handshakes: RFC 8737 §4 "MUST only negotiate TLS 1.2 or
/// higher", and `acme-tls/1` the only protocol, so that no HTTP follows.
pub fn validation_config(challenges: Arc<Challenges>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ValidationResolver(challenges)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn validation_cert_carries_the_critical_acme_identifier() {
        let digest = [7u8; 32];
        let key = validation_cert("mta-sts.example.org", &digest).unwrap();
        let (_, x509) = X509Certificate::from_der(&key.cert[0]).unwrap();
        // id-pe-acmeIdentifier, RFC 8737 §6.1.
        let ext = x509
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // An OCTET STRING of 32 bytes: tag, length, digest.
        assert_eq!(ext.value, [&[0x04, 0x20][..], &digest].concat());
        let san = x509.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 1);
    }

    #[test]
    fn http01_answers_published_tokens_only_while_published() {
        let c = Arc::new(Challenges::default());
        let get = |path: &str| c.http01_body("GET", path).map(|_| StatusCode::OK);
        assert_eq!(get("/.well-known/acme-challenge/tok"), None);
        let guard = c.publish_http01("tok", "tok.thumb");
        assert_eq!(get("/.well-known/acme-challenge/tok"), Some(StatusCode::OK));
        assert_eq!(get("/.well-known/acme-challenge/other"), None);
        assert_eq!(get("/.well-known/mta-sts.txt"), None);
        drop(guard);
        assert_eq!(get("/.well-known/acme-challenge/tok"), None);
    }

    #[test]
    fn another_replicas_answers_are_found_in_the_shared_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (ordering, other) = (
            Arc::new(Challenges::default()),
            Arc::new(Challenges::default()),
        );
        for c in [&ordering, &other] {
            c.set_shared_dir(Some(tmp.path().join("challenges")));
        }
        let get = |c: &Challenges, path: &str| c.http01_body("GET", path).map(|_| StatusCode::OK);
        let host = "mta-sts.example.org";
        let token = ordering.publish_http01("tok-1_x", "tok-1_x.thumb");
        let cert = ordering.publish_tls_alpn01(host, "ka.thumb").unwrap();
        let path = "/.well-known/acme-challenge/tok-1_x";
        assert_eq!(get(&other, path), Some(StatusCode::OK));
        let theirs = other
            .tls_alpn01(host)
            .expect("a certificate for the shared answer");
        assert_eq!(
            other.tls_alpn01(host).unwrap().cert,
            theirs.cert,
            "made once"
        );
        // Nothing outside the directory is ever read.
        assert_eq!(get(&other, "/.well-known/acme-challenge/..%2Fx"), None);
        assert!(other.tls_alpn01("../challenges/tls-alpn-01/x").is_none());
        drop((token, cert));
        assert_eq!(get(&other, path), None);
        assert!(other.tls_alpn01(host).is_none());
    }
}
