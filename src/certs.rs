//! Certificates: the one crypto provider every TLS config uses, and the configured
//! certificate files with the `mta-sts.<domain>` names each one covers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// ring, for every client and server config: one provider, so no process-wide default is
/// needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A `[tls] certs` entry, read and checked at load.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// DNS names from the subjectAltName extension, lowercase (`*.example.org` kept as is).
    pub names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
}

impl CertFiles {
    /// Reads the chain and key; the leaf's SANs decide which names it serves.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("certificate {}: {e}", cert.display()))?;
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
        PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("cannot read a PEM private key from {}: {e}", key.display()))?;
        Ok(CertFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            names,
            not_after: x509.validity().not_after.timestamp(),
        })
    }
}

/// Which configured certificate serves a host name: exact SANs first, then wildcards.
#[derive(Debug, Default)]
pub struct Coverage {
    exact: HashMap<String, usize>,
    /// `*.example.org` is stored as `example.org`: it covers exactly one more label.
    wildcard: HashMap<String, usize>,
}

impl Coverage {
    pub fn new(certs: &[CertFiles]) -> Self {
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
    pub fn find(&self, host: &str) -> Option<usize> {
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
