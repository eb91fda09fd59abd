//! The local development CA behind `self_signed = true`: one CA key and certificate kept in
//! `[state] dir`/dev-ca/, so a client (or `[drift] ca`) that trusts `ca.pem` once keeps
//! working across restarts; per-name certificates signed by it and named after the host.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::certs::provider;

const CA_NAME: &str = "mta-stsd development CA";

#[derive(Debug)]
pub(crate) struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    ca: CertificateDer<'static>,
    /// `ca.pem`: what a client is told to trust.
    pub cert_path: PathBuf,
}

/// The CA's parameters: the same on every start, so that the stored key signs leaves whose
/// issuer is the stored `ca.pem`.
fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p
}

impl DevCa {
    /// Loads the CA from `state_dir/dev-ca/`, or makes one there (the key 0600).
    pub(crate) fn open(state_dir: &Path) -> Result<DevCa, String> {
        let dir = state_dir.join("dev-ca");
        let (key_path, cert_path) = (dir.join("ca.key"), dir.join("ca.pem"));
        let key = match fs::read_to_string(&key_path) {
            Ok(pem) => KeyPair::from_pem(&pem)
                .map_err(|e| format!("development CA key {}: {e}", key_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyPair::generate().map_err(|e| e.to_string())?;
                let cert = ca_params().self_signed(&key).map_err(|e| e.to_string())?;
                fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
                crate::state::write_atomic(&cert_path, cert.pem().as_bytes())
                    .map_err(|e| format!("{}: {e}", cert_path.display()))?;
                key
            }
            Err(e) => return Err(format!("{}: {e}", key_path.display())),
        };
        let ca = CertificateDer::from_pem_file(&cert_path)
            .map_err(|e| format!("development CA {}: {e}", cert_path.display()))?;
        Ok(DevCa {
            issuer: Issuer::new(ca_params(), key),
            ca,
            cert_path,
        })
    }

    /// A certificate for `host` (CN and SAN), signed by the CA, served with the CA's cert.
    pub(crate) fn leaf(&self, host: &str) -> Result<CertifiedKey, String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut p = CertificateParams::new(vec![host.to_owned()]).map_err(|e| e.to_string())?;
        p.distinguished_name.push(DnType::CommonName, host);
        let cert = p.signed_by(&key, &self.issuer).map_err(|e| e.to_string())?;
        let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
        CertifiedKey::from_der(vec![cert.der().clone(), self.ca.clone()], der, &provider())
            .map_err(|e| e.to_string())
    }
}

/// A new file with `mode` from its creation: the key is never readable by others, not even
/// for a moment. Another replica that wins the race is fine: its key is then read.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_kept_and_signs_leaves_named_after_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let first = DevCa::open(dir.path()).unwrap();
        let pem = fs::read(&first.cert_path).unwrap();
        let again = DevCa::open(dir.path()).unwrap();
        assert_eq!(
            fs::read(&again.cert_path).unwrap(),
            pem,
            "a second start keeps it"
        );
        let mode = fs::metadata(dir.path().join("dev-ca/ca.key"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let leaf = again.leaf("mta-sts.example.org").unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(&leaf.cert[0]).unwrap();
        assert_eq!(
            x509.subject().to_string(),
            "CN=mta-sts.example.org",
            "named after the host"
        );
        assert_eq!(x509.issuer().to_string(), format!("CN={CA_NAME}"));
    }
}
