//! The TLSA values of one `[[dane]]` entry, read from its files: `3 1 1` of the leaf's key,
//! `3 1 1` of `next_key`, `2 1 1` of the issuing CA's key.

use std::path::Path;

use mta_stsd_providers::Tlsa;
use rcgen::{KeyPair, PublicKeyData};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::Dane;

/// Certificate and key files are small; a larger one is not what it should be.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What the entry's files say now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    /// RFC 7671 §5.1: "3 1 1" of the key the MX presents.
    pub leaf: Tlsa,
    /// `3 1 1` of `next_key`.
    pub next: Option<Tlsa>,
    /// `2 1 1` of the issuing CA's key (RFC 7671 §5.2), with `issuer = true`.
    pub issuer: Option<Tlsa>,
}

impl Keys {
    /// Every value to publish, the leaf first.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Tlsa> {
        std::iter::once(&self.leaf)
            .chain(&self.next)
            .chain(&self.issuer)
    }
}

/// Reads the entry's files; the error names the file and what is wrong with it.
pub(crate) fn read(entry: &Dane) -> Result<Keys, String> {
    let pem = read_small(&entry.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", entry.cert.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{}: no certificate in it", entry.cert.display()));
    };
    let leaf = tlsa(3, &spki_of(leaf, &entry.cert)?);
    let issuer = if entry.issuer {
        let Some(ca) = chain.get(1) else {
            return Err(format!(
                "{}: `issuer = true` needs the issuing CA's certificate after the leaf (a fullchain file)",
                entry.cert.display()
            ));
        };
        Some(tlsa(2, &spki_of(ca, &entry.cert)?))
    } else {
        None
    };
    let next = match &entry.next_key {
        Some(path) => Some(tlsa(3, &key_spki(path)?)),
        None => None,
    };
    Ok(Keys { leaf, next, issuer })
}

/// RFC 6698 §2.1: selector 1 (SubjectPublicKeyInfo), matching type 1 (SHA-256).
pub(crate) fn tlsa(usage: u8, spki: &[u8]) -> Tlsa {
    Tlsa {
        usage,
        selector: 1,
        matching: 1,
        data: Sha256::digest(spki).to_vec(),
    }
}

fn spki_of(cert: &CertificateDer<'_>, path: &Path) -> Result<Vec<u8>, String> {
    let (_, x) = X509Certificate::from_der(cert)
        .map_err(|e| format!("{}: a certificate that does not parse: {e}", path.display()))?;
    Ok(x.tbs_certificate.subject_pki.raw.to_vec())
}

/// The SubjectPublicKeyInfo of a `PUBLIC KEY` PEM, or of the public half of a PKCS #8
/// `PRIVATE KEY` (the private key is used for nothing else).
fn key_spki(path: &Path) -> Result<Vec<u8>, String> {
    let pem = read_small(path)?;
    if let Ok(spki) = SubjectPublicKeyInfoDer::from_pem_slice(&pem) {
        return Ok(spki.to_vec());
    }
    let text = String::from_utf8_lossy(&pem);
    match KeyPair::from_pem(&text) {
        Ok(k) => Ok(k.subject_public_key_info()),
        Err(_) => Err(format!(
            "{}: neither a PUBLIC KEY nor a PKCS #8 PRIVATE KEY PEM (convert with `openssl pkey -in KEY -pubout`)",
            path.display()
        )),
    }
}

fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("{}: larger than 1 MiB", path.display()));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_next_key_and_issuer_hash_the_spki() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["mail.example.org".into()])
            .expect("params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf");
        let cert = dir.path().join("fullchain.pem");
        std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).expect("write");
        let next_key = KeyPair::generate().expect("key");
        let next_priv = dir.path().join("next.pem");
        std::fs::write(&next_priv, next_key.serialize_pem()).expect("write");
        let next_pub = dir.path().join("next.pub");
        std::fs::write(&next_pub, next_key.public_key_pem()).expect("write");
        let mut entry = Dane {
            host: crate::name::DomainName::parse("mail.example.org")
                .expect("name")
                .0,
            cert,
            next_key: Some(next_priv),
            issuer: true,
            zone: None,
            provider: None,
            ttl: 60,
        };
        let k = read(&entry).expect("keys");
        assert_eq!(k.leaf, tlsa(3, &leaf_key.subject_public_key_info()));
        assert_eq!(k.issuer, Some(tlsa(2, &ca_key.subject_public_key_info())));
        assert_eq!(k.next, Some(tlsa(3, &next_key.subject_public_key_info())));
        assert_ne!(k.leaf, k.next.clone().expect("next"));
        entry.next_key = Some(next_pub);
        assert_eq!(read(&entry).expect("keys").next, k.next);
        // A leaf alone cannot give its issuer.
        std::fs::write(&entry.cert, leaf.pem()).expect("write");
        assert!(read(&entry).unwrap_err().contains("issuer = true"));
    }
}
