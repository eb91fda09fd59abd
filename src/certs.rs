//! Certificates: the one crypto provider every TLS config uses, the one PEM reader (for the
//! configured files and ACME's stored pairs), and the configured certificate files with the
//! `mta-sts.<domain>` names each one covers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

mod kx;
mod sign;

/// ring, with AWS-LC's X25519 in place of ring's (see [`kx`]) and AWS-LC's ECDSA keys and
/// random bytes (see [`sign`]), for every client and server config: one provider, so no
/// process-wide default is needed. Public for
/// examples/bare_tls.rs, the serve bench's floor, which must shake hands as the daemon does.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    for g in &mut p.kx_groups {
        if g.name() == rustls::NamedGroup::X25519 {
            *g = &kx::X25519;
        }
    }
    p.key_provider = &sign::Keys;
    p.secure_random = &sign::Random;
    Arc::new(p)
}

/// Why a PEM certificate file could not be read: opening it, or what it holds.
#[derive(Debug)]
pub(crate) enum ReadError {
    Open(pem::Error),
    Content(pem::Error),
}

/// The certificates of a PEM file, in file order (a chain: leaf first).
pub(crate) fn chain_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, ReadError> {
    CertificateDer::pem_file_iter(path)
        .map_err(ReadError::Open)?
        .collect::<Result<_, _>>()
        .map_err(ReadError::Content)
}

/// The first private key of a PEM file.
pub(crate) fn key_file(path: &Path) -> Result<PrivateKeyDer<'static>, pem::Error> {
    PrivateKeyDer::from_pem_file(path)
}

/// The certificates of PEM text, in order (a chain: leaf first).
pub(crate) fn chain_pem(text: &[u8]) -> Result<Vec<CertificateDer<'static>>, pem::Error> {
    CertificateDer::pem_slice_iter(text).collect()
}

/// The first private key of PEM text.
pub(crate) fn key_pem(text: &[u8]) -> Result<PrivateKeyDer<'static>, pem::Error> {
    PrivateKeyDer::from_pem_slice(text)
}

/// A chain and its key as rustls serves them; an error if the key is not the leaf's.
pub(crate) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, rustls::Error> {
    CertifiedKey::from_der(chain, key, &provider())
}

/// The configured certificates, read when a config is (re)loaded; indexed like `[tls] certs`.
#[derive(Debug, Default)]
pub(crate) struct CertStore {
    configured: Vec<Arc<CertifiedKey>>,
}

impl CertStore {
    pub(crate) fn load(files: &[CertFiles]) -> Result<Self, String> {
        let configured = files
            .iter()
            .map(|f| f.certified_key().map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(CertStore { configured })
    }

    /// The `[tls] certs` entry at `i`, ready to serve.
    pub(crate) fn configured(&self, i: usize) -> Option<Arc<CertifiedKey>> {
        self.configured.get(i).cloned()
    }
}

/// A `[tls] certs` entry, read and checked at load.
#[derive(Debug, Clone)]
pub(crate) struct CertFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// DNS names from the subjectAltName extension, lowercase (`*.example.org` kept as is).
    pub(crate) names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub(crate) not_after: i64,
}

impl CertFiles {
    /// Reads the chain and key; the leaf's SANs decide which names it serves. Without
    /// `read_key` the key is not opened (a command that serves nothing, run as a user that may
    /// not read it).
    pub(crate) fn load_with(cert: &Path, key: &Path, read_key: bool) -> Result<Self, String> {
        let chain = chain_file(cert).map_err(|e| match e {
            ReadError::Open(e) => format!("cannot read certificate {}: {e}", cert.display()),
            ReadError::Content(e) => format!("certificate {}: {e}", cert.display()),
        })?;
        let leaf = chain
            .first()
            .ok_or_else(|| format!("{}: no PEM certificate in the file", cert.display()))?;
        let (_, x509) = X509Certificate::from_der(leaf)
            .map_err(|e| format!("certificate {}: {e}", cert.display()))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = x509.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(n) = name {
                    names.push(n.trim_end_matches('.').to_ascii_lowercase());
                }
            }
        }
        if names.is_empty() {
            return Err(format!(
                "certificate {} has no DNS names in subjectAltName",
                cert.display()
            ));
        }
        if read_key {
            key_file(key).map_err(|e| {
                format!("cannot read a PEM private key from {}: {e}", key.display())
            })?;
        }
        Ok(CertFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            names,
            not_after: x509.validity().not_after.timestamp(),
        })
    }

    /// The pair read again, as served: when a config is swapped in.
    fn certified_key(&self) -> Result<CertifiedKey, String> {
        let (cert, key) = (&self.cert, &self.key);
        let chain = chain_file(cert).map_err(|(ReadError::Open(e) | ReadError::Content(e))| {
            format!("certificate {}: {e}", cert.display())
        })?;
        let private = key_file(key).map_err(|e| format!("private key {}: {e}", key.display()))?;
        certified_key(chain, private).map_err(|e| {
            format!(
                "certificate {} and key {} do not go together: {e}",
                cert.display(),
                key.display()
            )
        })
    }
}

/// Which configured certificate serves a host name: exact SANs first, then wildcards.
#[derive(Debug, Default)]
pub(crate) struct Coverage {
    exact: HashMap<String, usize>,
    /// `*.example.org` is stored as `example.org`: it covers exactly one more label.
    wildcard: HashMap<String, usize>,
}

impl Coverage {
    pub(crate) fn new(certs: &[CertFiles]) -> Self {
        let mut c = Coverage::default();
        for (i, cert) in certs.iter().enumerate() {
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(parent) => c.wildcard.entry(parent.to_owned()).or_insert(i),
                    None => c.exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        c
    }

    /// The index of the first certificate that covers `host` (lowercase, no trailing dot).
    pub(crate) fn find(&self, host: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(host) {
            return Some(i);
        }
        let (_, parent) = host.split_once('.')?;
        self.wildcard.get(parent).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ring's groups in ring's order, its X25519 (first: what clients offer first) ours.
    #[test]
    fn the_provider_takes_x25519_from_kx() {
        let ring = rustls::crypto::ring::default_provider();
        let ours = provider();
        let names = |p: &CryptoProvider| p.kx_groups.iter().map(|g| g.name()).collect::<Vec<_>>();
        assert_eq!(names(&ours), names(&ring));
        assert_eq!(ours.kx_groups[0].name(), rustls::NamedGroup::X25519);
        assert_eq!(
            format!("{:?}", ours.kx_groups[0]),
            format!("{:?}", kx::X25519)
        );
        assert_ne!(
            format!("{:?}", ring.kx_groups[0]),
            format!("{:?}", kx::X25519)
        );
        // The certificate keys and the random bytes: sign's.
        assert_eq!(format!("{:?}", ours.key_provider), "Keys");
        assert_eq!(format!("{:?}", ours.secure_random), "Random");
        assert_ne!(format!("{:?}", ring.secure_random), "Random");
    }

    fn files(names: &[&str]) -> CertFiles {
        CertFiles {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            names: names.iter().map(|s| s.to_string()).collect(),
            not_after: 0,
        }
    }

    #[test]
    fn exact_then_wildcard_one_label() {
        let c = Coverage::new(&[files(&["*.example.org"]), files(&["mta-sts.example.org"])]);
        assert_eq!(c.find("mta-sts.example.org"), Some(1));
        assert_eq!(c.find("mta-sts.sub.example.org"), None);
        assert_eq!(c.find("mta-sts.example.net"), None);
        let c = Coverage::new(&[files(&["*.example.org"])]);
        assert_eq!(c.find("mta-sts.example.org"), Some(0));
    }
}
