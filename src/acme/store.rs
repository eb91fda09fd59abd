//! Certificates as the store keeps them (`crate::state::store`, one row per name: chain and
//! key PEM, validity, renewal point), checked and parsed for serving; and the state directory
//! of an earlier version (`[acme] state`: the account of each ACME directory as
//! `account-<hash>.json`, per name `<name>.crt` and `<name>.key`), read once for the import.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::certs;
use crate::state::store::CertRow;

/// A certificate from the store, ready to serve.
#[derive(Debug, Clone)]
pub(super) struct StoredCert {
    pub key: Arc<CertifiedKey>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// When renewal is due (Unix seconds): see [`renewal_point`], or the CA's window.
    renew_at: i64,
    /// RFC 9773 §4.1: the leaf's Authority Key Identifier `keyIdentifier` and its serial
    /// number (DER), which name it to the CA's renewal information.
    pub ari_id: Option<(Vec<u8>, Vec<u8>)>,
}

/// Where in the lifetime renewal falls, in basis points: `[RENEW_FROM, RENEW_UNTIL)`.
pub(super) const RENEW_FROM: i64 = 6_000;
pub(super) const RENEW_UNTIL: i64 = 7_500;

/// The name's point in `[60 %, 75 %)` of the lifetime (Let's Encrypt advises renewing 90-day
/// certificates at about 60 days): spread by a hash of the name, so that names issued
/// together are not all renewed together, and the same on every replica and after every
/// restart.
pub(super) fn renewal_point(name: &str, not_before: i64, not_after: i64) -> i64 {
    let bp = RENEW_FROM + (name_hash(name) % (RENEW_UNTIL - RENEW_FROM) as u64) as i64;
    let lifetime = i128::from((not_after - not_before).max(0));
    not_before + (lifetime * i128::from(bp) / 10_000) as i64
}

#[allow(clippy::expect_used, reason = "8 bytes")]
fn name_hash(name: &str) -> u64 {
    let hash = Sha256::digest(name.as_bytes());
    u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"))
}

impl StoredCert {
    pub(super) fn renew_at(&self) -> i64 {
        self.renew_at
    }

    /// RFC 9773 §4.2: the CA's suggested window `[start, end)` wins over our own point; the
    /// name's place in it comes from the same hash (the RFC's "uniformly random" point, yet
    /// the same on every replica), never after the certificate expires.
    pub(super) fn follow_window(&mut self, name: &str, start: i64, end: i64) {
        let width = (end - start).max(0) as u64;
        let at = start + (name_hash(name) % width.max(1)) as i64;
        self.renew_at = at.min(self.not_after - 1);
    }

    /// Valid now and not yet due for renewal.
    pub(super) fn fresh(&self, now: i64) -> bool {
        now >= self.not_before && now < self.renew_at() && now < self.not_after
    }
}

impl StoredCert {
    /// A row of the store: the pair checked, the renewal point as stored (it may follow the
    /// CA's window).
    pub(super) fn from_row(row: &CertRow) -> Result<StoredCert, String> {
        let mut c = parse(&row.name, row.chain_pem.as_bytes(), row.key_pem.as_bytes())?;
        c.renew_at = row.renew_at.min(c.not_after);
        Ok(c)
    }

    /// What an order brought: the pair checked, renewal at the name's point.
    pub(super) fn from_pem(
        name: &str,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<StoredCert, String> {
        parse(name, chain_pem.as_bytes(), key_pem.as_bytes())
    }
}

/// An earlier version's ACME state directory, read for the import (never written).
#[derive(Debug)]
pub(super) struct Legacy {
    dir: PathBuf,
}

impl Legacy {
    pub(super) fn new(dir: &Path) -> Legacy {
        Legacy {
            dir: dir.to_owned(),
        }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The names with a `<name>.crt`, sorted; none when the directory is missing.
    pub(super) fn names(&self) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for e in entries {
            let name = e?.file_name();
            if let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".crt")) {
                if !n.starts_with('.') {
                    names.push(n.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// The chain and key PEM of `name`, when both files are there.
    pub(super) fn pair(&self, name: &str) -> io::Result<Option<(String, String)>> {
        let read = |p: PathBuf| match fs::read_to_string(p) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        let chain = read(self.dir.join(format!("{name}.crt")))?;
        let key = read(self.dir.join(format!("{name}.key")))?;
        Ok(chain.zip(key))
    }

    /// The stored credentials (JSON) of our account at `directory`.
    pub(super) fn read_account(&self, directory: &str) -> io::Result<Option<String>> {
        match fs::read_to_string(self.account_path(directory)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One account per directory URL (the file's name holds a hash of it).
    pub(super) fn account_path(&self, directory: &str) -> PathBuf {
        let hash = Sha256::digest(directory.as_bytes());
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("account-{hex}.json"))
    }
}

/// Checks the pair and reads the leaf's validity.
fn parse(name: &str, chain_pem: &[u8], key_pem: &[u8]) -> Result<StoredCert, String> {
    let chain = certs::chain_pem(chain_pem).map_err(|e| e.to_string())?;
    let leaf = chain.first().ok_or("no PEM certificate in the file")?;
    let (_, x509) = X509Certificate::from_der(leaf).map_err(|e| e.to_string())?;
    let covers = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|san| {
            san.value
                .general_names
                .iter()
                .any(|n| matches!(n, GeneralName::DNSName(d) if d.eq_ignore_ascii_case(name)))
        });
    if !covers {
        return Err(format!("the certificate does not name {name}"));
    }
    let not_before = x509.validity().not_before.timestamp();
    let not_after = x509.validity().not_after.timestamp();
    let aki = x509
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        });
    let ari_id = aki.map(|k| (k.to_vec(), x509.tbs_certificate.raw_serial().to_vec()));
    let key = certs::key_pem(key_pem).map_err(|e| format!("key: {e}"))?;
    let key = certs::certified_key(chain, key)
        .map_err(|e| format!("certificate and key do not go together: {e}"))?;
    Ok(StoredCert {
        key: Arc::new(key),
        not_before,
        not_after,
        renew_at: renewal_point(name, not_before, not_after),
        ari_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(name: &str) -> (String, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (cert.pem(), signing_key.serialize_pem())
    }

    #[test]
    fn a_mismatched_or_foreign_pair_is_refused() {
        let name = "mta-sts.example.org";
        let (cert, key) = leaf(name);
        let (_, other_key) = leaf(name);
        let got = StoredCert::from_pem(name, &cert, &key).unwrap();
        assert!(got.not_after > got.not_before);
        let err = StoredCert::from_pem(name, &cert, &other_key).unwrap_err();
        assert!(err.contains("do not go together"), "{err}");
        let (cert, key) = leaf("mta-sts.example.net");
        let err = StoredCert::from_pem(name, &cert, &key).unwrap_err();
        assert!(err.contains("does not name"), "{err}");
    }

    #[test]
    fn renewal_is_due_at_the_names_point() {
        let c = StoredCert {
            key: Arc::new(parse_any()),
            not_before: 0,
            not_after: 90,
            renew_at: 60,
            ari_id: None,
        };
        assert!(c.fresh(59));
        assert!(!c.fresh(60));
        assert!(!c.fresh(-1));
    }

    /// 1,000 names with certificates issued at the same moment: their renewals cover the
    /// whole window `[60 %, 75 %)`, none outside it, and each name's point is the same every
    /// time it is computed.
    #[test]
    fn renewals_are_spread_over_the_window_and_stable() {
        let (not_before, not_after) = (1_000_000, 1_000_000 + 90 * 86_400);
        let lifetime = not_after - not_before;
        let names: Vec<String> = (0..1000).map(|i| format!("mta-sts.d{i}.example")).collect();
        let mut buckets = [0usize; 15];
        for name in &names {
            let t = renewal_point(name, not_before, not_after);
            assert_eq!(t, renewal_point(name, not_before, not_after), "{name}");
            let at = t - not_before;
            assert!(at * 100 >= lifetime * 60, "{name}: {at}");
            assert!(at * 100 < lifetime * 75, "{name}: {at}");
            buckets[((at * 100 / lifetime) - 60) as usize] += 1;
        }
        // Each percent of the window holds about 1000/15 ≈ 67 names; none is empty or holds
        // a crowd.
        for (i, n) in buckets.iter().enumerate() {
            assert!(
                (30..=110).contains(n),
                "{}–{} %: {n} names {buckets:?}",
                60 + i,
                61 + i
            );
        }
        // Another lifetime moves the point with it.
        assert_eq!(renewal_point("x", 0, 0), 0);
        let short = renewal_point(&names[0], 0, 15);
        assert!((9..12).contains(&short), "{short}");
    }

    fn parse_any() -> CertifiedKey {
        let (cert, key) = leaf("mta-sts.example.org");
        let got = parse("mta-sts.example.org", cert.as_bytes(), key.as_bytes()).unwrap();
        Arc::try_unwrap(got.key).unwrap()
    }
}
