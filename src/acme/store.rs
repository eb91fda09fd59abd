//! The state directory (`[acme] state`), which several replicas may share: the account of each
//! ACME directory, and per name `<name>.crt` (the chain, leaf first) and `<name>.key` (0600),
//! each written whole to a temporary file and renamed into place; `<name>.lock` while one
//! replica orders that name.
//!
//! The key is written before the certificate, and a reader takes the pair only if the key
//! matches the leaf: a reader that comes between the two renames sees a mismatch and tries
//! again later, never a torn pair.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tracing::warn;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::certs;

/// A certificate from the store, ready to serve.
#[derive(Debug, Clone)]
pub struct StoredCert {
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
pub const RENEW_FROM: i64 = 6_000;
pub const RENEW_UNTIL: i64 = 7_500;

/// The name's point in `[60 %, 75 %)` of the lifetime (Let's Encrypt advises renewing 90-day
/// certificates at about 60 days): spread by a hash of the name, so that names issued
/// together are not all renewed together, and the same on every replica and after every
/// restart.
pub fn renewal_point(name: &str, not_before: i64, not_after: i64) -> i64 {
    let bp = RENEW_FROM + (name_hash(name) % (RENEW_UNTIL - RENEW_FROM) as u64) as i64;
    let lifetime = i128::from((not_after - not_before).max(0));
    not_before + (lifetime * i128::from(bp) / 10_000) as i64
}

fn name_hash(name: &str) -> u64 {
    let hash = Sha256::digest(name.as_bytes());
    u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"))
}

impl StoredCert {
    pub fn renew_at(&self) -> i64 {
        self.renew_at
    }

    /// RFC 9773 §4.2: the CA's suggested window `[start, end)` wins over our own point; the
    /// name's place in it comes from the same hash (the RFC's "uniformly random" point, yet
    /// the same on every replica), never after the certificate expires.
    pub fn follow_window(&mut self, name: &str, start: i64, end: i64) {
        let width = (end - start).max(0) as u64;
        let at = start + (name_hash(name) % width.max(1)) as i64;
        self.renew_at = at.min(self.not_after - 1);
    }

    /// Valid now and not yet due for renewal.
    pub fn fresh(&self, now: i64) -> bool {
        now >= self.not_before && now < self.renew_at() && now < self.not_after
    }
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens the directory, creating it (0700) if missing.
    pub fn open(dir: &Path) -> io::Result<Store> {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        Ok(Store {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    pub fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lock"))
    }

    /// The certificate stored for `name`: `Ok(None)` when there is none, or when the pair is
    /// unusable (being replaced, key not matching, not covering `name`), said in the error.
    pub fn load(&self, name: &str) -> Result<Option<StoredCert>, String> {
        let cert_path = self.cert_path(name);
        let pem = match fs::read(&cert_path) {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("reading {}: {e}", cert_path.display())),
        };
        let key_path = self.key_path(name);
        let key_pem = match fs::read(&key_path) {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("reading {}: {e}", key_path.display())),
        };
        parse(name, &pem, &key_pem)
            .map(Some)
            .map_err(|e| format!("{}: {e}", cert_path.display()))
    }

    /// Writes the key (0600), then the chain, each atomically.
    pub fn save(&self, name: &str, chain_pem: &str, key_pem: &str) -> io::Result<()> {
        write_atomic(&self.key_path(name), key_pem.as_bytes(), 0o600)?;
        write_atomic(&self.cert_path(name), chain_pem.as_bytes(), 0o644)
    }

    /// Takes `<name>.lock`, made with `O_EXCL` so that one replica at a time gets it; a lock
    /// older than `stale` is taken to be a crashed replica's and broken. `Ok(None)`: another
    /// replica holds it.
    pub fn try_lock(&self, name: &str, stale: Duration) -> io::Result<Option<Lock>> {
        let path = self.lock_path(name);
        let token = unique();
        for _ in 0..2 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(format!("{token}\n").as_bytes())?;
                    return Ok(Some(Lock { path, token }));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let age = match fs::metadata(&path).and_then(|m| m.modified()) {
                Ok(modified) => SystemTime::now()
                    .duration_since(modified)
                    .unwrap_or_default(),
                // Released in between: try again.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if age < stale {
                return Ok(None);
            }
            // Renamed aside first, so that of two replicas breaking it at once only one
            // removes it; the worst a race here can do is one extra order, never a torn file.
            let aside = self.dir.join(format!(".{name}.lock.stale.{token}"));
            match fs::rename(&path, &aside) {
                Ok(()) => {
                    warn!(lock = %path.display(), ?age, "breaking a stale lock");
                    let _ = fs::remove_file(&aside);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The stored credentials (JSON) of our account at `directory`.
    pub fn read_account(&self, directory: &str) -> io::Result<Option<String>> {
        match fs::read_to_string(self.account_path(directory)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn write_account(&self, directory: &str, json: &str) -> io::Result<()> {
        write_atomic(&self.account_path(directory), json.as_bytes(), 0o600)
    }

    /// Removes the stored account of `directory`, which the server no longer knows.
    pub fn forget_account(&self, directory: &str) -> io::Result<()> {
        fs::remove_file(self.account_path(directory))
    }

    /// One account per directory URL, so that pointing `directory` elsewhere (staging, then
    /// production) never sends one server's credentials to another.
    fn account_path(&self, directory: &str) -> PathBuf {
        let hash = Sha256::digest(directory.as_bytes());
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("account-{hex}.json"))
    }

    /// The name of the lock for account creation, kept apart from every `mta-sts.` name.
    pub const ACCOUNT_LOCK: &'static str = "account";
}

/// Held while ordering; removes the lock file on drop, unless another replica broke it and
/// took it over in the meantime.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    token: String,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let mut content = String::new();
        let ours = File::open(&self.path)
            .and_then(|mut f| f.read_to_string(&mut content))
            .is_ok_and(|_| content.trim() == self.token);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
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

/// Writes `data` to a temporary file beside `path`, flushes it, and renames it into place.
pub(super) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", unique()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    // The rename itself durable too; not every filesystem lets a directory be synced.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Unique enough for temporary names and lock tokens: pid, time and a random hash.
fn unique() -> String {
    use std::hash::BuildHasher;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let random = std::collections::hash_map::RandomState::new().hash_one(nanos);
    format!("{}-{nanos:x}-{random:016x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn leaf(name: &str) -> (String, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (cert.pem(), signing_key.serialize_pem())
    }

    #[test]
    fn creates_the_directory_private_and_round_trips_a_pair() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let store = Store::open(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let name = "mta-sts.example.org";
        assert!(store.load(name).unwrap().is_none());
        let (cert, key) = leaf(name);
        store.save(name, &cert, &key).unwrap();
        let key_mode = fs::metadata(store.key_path(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let got = store.load(name).unwrap().expect("a stored certificate");
        assert!(got.not_after > got.not_before);
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_mismatched_or_foreign_pair_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let name = "mta-sts.example.org";
        let (cert, _) = leaf(name);
        let (_, other_key) = leaf(name);
        store.save(name, &cert, &other_key).unwrap();
        let err = store.load(name).unwrap_err();
        assert!(err.contains("do not go together"), "{err}");
        let (cert, key) = leaf("mta-sts.example.net");
        store.save(name, &cert, &key).unwrap();
        let err = store.load(name).unwrap_err();
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

    #[test]
    fn one_lock_holder_at_a_time_and_stale_locks_are_broken() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let name = "mta-sts.example.org";
        let hour = Duration::from_secs(3600);
        let first = store.try_lock(name, hour).unwrap().expect("a free lock");
        assert!(store.try_lock(name, hour).unwrap().is_none(), "held");
        drop(first);
        assert!(!store.lock_path(name).exists(), "released on drop");

        let held = store.try_lock(name, hour).unwrap().expect("free again");
        // An hour-old lock is a crashed replica's.
        let old = SystemTime::now() - 2 * hour;
        File::options()
            .write(true)
            .open(store.lock_path(name))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let taken = store
            .try_lock(name, hour)
            .unwrap()
            .expect("stale lock broken");
        // The old holder finishing must not remove the new holder's lock.
        drop(held);
        assert!(store.lock_path(name).exists());
        drop(taken);
        assert!(!store.lock_path(name).exists());
    }

    #[test]
    fn accounts_are_kept_per_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        store.write_account("https://a/dir", "{\"a\":1}").unwrap();
        assert_eq!(
            store.read_account("https://a/dir").unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        assert!(store.read_account("https://b/dir").unwrap().is_none());
    }
}
