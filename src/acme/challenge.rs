//! Answers to the challenges of the orders in flight: HTTP-01 (RFC 8555 §8.3) on the plain
//! listeners, TLS-ALPN-01 (RFC 8737) on the HTTPS listeners. Each answer is published for the
//! life of a [`Published`] guard, which the order holds until the server has validated.
//!
//! The CA's validation may reach any replica, not the one that ordered. So an answer is
//! written to the store before the CA is told it is ready, and a replica asked for a token or
//! a validation name it does not know looks it up there, at the moment it is asked (a poll
//! would leave the first seconds after "ready" unanswered, and the CA does not come back).
//! Those lookups are bounded: well-formed tokens and names of domains we serve only (the
//! listeners check), one per answer however many requests ask for it at once (a CA asks from
//! several places at the same moment), [`LOOKUPS`] at once, each within [`LOOKUP`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::PrivateKeyDer;
use sha2::{Digest, Sha256};
use tokio::sync::{OnceCell, Semaphore};
use tracing::warn;

use crate::certs::provider;
use crate::state::store::Store;

/// RFC 8737 §6.2: the ALPN protocol ID of a validation handshake.
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// RFC 8555 §8.3: "http://{domain}/.well-known/acme-challenge/{token}".
pub(crate) const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

const HTTP01: &str = "http-01";
const TLS_ALPN01: &str = "tls-alpn-01";

/// How long an answer stays in the store unless withdrawn first: past any order.
const IN_STORE: Duration = Duration::from_secs(600);
/// One lookup of another replica's answer in the store, at most.
pub(crate) const LOOKUP: Duration = Duration::from_secs(3);
/// Lookups running at once, at most; more wait (within [`LOOKUP`]).
const LOOKUPS: usize = 8;
/// Answers being looked up at once, at most: beyond, a request for another unknown one gets
/// no answer.
const MAX_PENDING: usize = 256;
/// Another replica's answer is kept in memory this long after it was read (the CA asks
/// several times from several places within seconds).
const FOREIGN_FOR: Duration = Duration::from_secs(30);
/// Other replicas' answers kept at most.
const MAX_FOREIGN: usize = 1024;

/// One lookup of an answer in the store, shared by the requests that wait for it.
type Lookup = Arc<OnceCell<Option<String>>>;

/// The answers currently published, by HTTP-01 token and by TLS-ALPN-01 host name.
#[derive(Debug)]
pub(crate) struct Challenges {
    http01: Mutex<HashMap<String, Bytes>>,
    tls_alpn01: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// Where answers are shared with the other replicas, once the task has opened it.
    store: RwLock<Option<Store>>,
    /// Other replicas' answers read from the store, with when they were read.
    foreign_http01: Mutex<HashMap<String, (Instant, Bytes)>>,
    foreign_tls_alpn01: Mutex<HashMap<String, (Instant, Arc<CertifiedKey>)>>,
    lookups: Semaphore,
    /// The lookups under way, by kind and id: a second request for the same answer waits for
    /// the first's rather than asking the store again.
    pending: Mutex<HashMap<(&'static str, String), Lookup>>,
}

impl Default for Challenges {
    fn default() -> Self {
        Challenges {
            http01: Mutex::default(),
            tls_alpn01: Mutex::default(),
            store: RwLock::default(),
            foreign_http01: Mutex::default(),
            foreign_tls_alpn01: Mutex::default(),
            lookups: Semaphore::new(LOOKUPS),
            pending: Mutex::default(),
        }
    }
}

impl Challenges {
    pub(crate) fn set_store(&self, store: Option<Store>) {
        *self.store.write().unwrap_or_else(|e| e.into_inner()) = store;
        lock(&self.foreign_http01).clear();
        lock(&self.foreign_tls_alpn01).clear();
    }

    fn store(&self) -> Option<Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes the key authorization for `token` until the guard is dropped: here at once,
    /// and in the store for the other replicas before this returns.
    pub(crate) async fn publish_http01(
        self: &Arc<Self>,
        token: &str,
        key_authorization: &str,
    ) -> Published {
        lock(&self.http01).insert(
            token.to_owned(),
            Bytes::copy_from_slice(key_authorization.as_bytes()),
        );
        let shared = self.share(HTTP01, token, key_authorization).await;
        Published {
            challenges: self.clone(),
            what: What::Http01(token.to_owned()),
            shared,
        }
    }

    /// Publishes the validation certificate for `host` until the guard is dropped (the
    /// other replicas make theirs from the key authorization in the store).
    pub(crate) async fn publish_tls_alpn01(
        self: &Arc<Self>,
        host: &str,
        key_authorization: &str,
    ) -> Result<Published, String> {
        let digest = Sha256::digest(key_authorization.as_bytes());
        let cert = Arc::new(validation_cert(host, &digest)?);
        lock(&self.tls_alpn01).insert(host.to_owned(), cert);
        let shared = self.share(TLS_ALPN01, host, key_authorization).await;
        Ok(Published {
            challenges: self.clone(),
            what: What::TlsAlpn01(host.to_owned()),
            shared,
        })
    }

    /// The body of the plain listener's answer to `GET` or `HEAD
    /// /.well-known/acme-challenge/<token>` (the key authorization) for a token published here
    /// or read from the store; `None` lets the policy handler answer (404).
    pub(crate) fn http01_body(&self, method: &str, path: &str) -> Option<Bytes> {
        let token = http01_token(method, path)?;
        if let Some(b) = lock(&self.http01).get(token) {
            return Some(b.clone());
        }
        lock(&self.foreign_http01)
            .get(token)
            .filter(|(at, _)| at.elapsed() < FOREIGN_FOR)
            .map(|(_, b)| b.clone())
    }

    /// A well-formed HTTP-01 token asked for that is not known here, while answers are
    /// shared: worth a look in the store ([`Challenges::fetch_http01`]).
    pub(crate) fn http01_unknown<'p>(&self, method: &str, path: &'p str) -> Option<&'p str> {
        let token = http01_token(method, path)?;
        (well_formed(token) && self.http01_body(method, path).is_none() && self.sharing())
            .then_some(token)
    }

    /// Looks `token` up in the store (bounded), for [`Challenges::http01_body`].
    pub(crate) async fn fetch_http01(&self, token: &str) {
        if !well_formed(token) {
            return;
        }
        if let Some(ka) = self.look_up(HTTP01, token).await {
            remember(
                &self.foreign_http01,
                token,
                Bytes::copy_from_slice(ka.as_bytes()),
            );
        }
    }

    /// The validation certificate for `host`: ours, or one made for another replica's answer.
    pub(crate) fn tls_alpn01(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = lock(&self.tls_alpn01).get(&host) {
            return Some(k.clone());
        }
        lock(&self.foreign_tls_alpn01)
            .get(&host)
            .filter(|(at, _)| at.elapsed() < FOREIGN_FOR)
            .map(|(_, k)| k.clone())
    }

    /// Before a validation handshake for `host` (a name we serve): another replica's answer
    /// is looked up in the store (bounded) unless one is known here.
    pub(crate) async fn fetch_tls_alpn01(&self, host: &str) {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if !well_formed(&host) || self.tls_alpn01(&host).is_some() || !self.sharing() {
            return;
        }
        let Some(ka) = self.look_up(TLS_ALPN01, &host).await else {
            return;
        };
        let digest = Sha256::digest(ka.as_bytes());
        match validation_cert(&host, &digest) {
            Ok(cert) => remember(&self.foreign_tls_alpn01, &host, Arc::new(cert)),
            Err(e) => warn!(host, "cannot make the validation certificate: {e}"),
        }
    }

    fn sharing(&self) -> bool {
        self.store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    async fn look_up(&self, kind: &'static str, id: &str) -> Option<String> {
        let store = self.store()?;
        let key = (kind, id.to_owned());
        let cell = {
            let mut pending = lock(&self.pending);
            match pending.get(&key) {
                Some(c) => c.clone(),
                None if pending.len() >= MAX_PENDING => return None,
                None => pending.entry(key.clone()).or_default().clone(),
            }
        };
        let found = cell
            .get_or_init(|| async {
                let asked = async {
                    let _permit = self.lookups.acquire().await.ok()?;
                    match store.acme_challenge(kind, id).await {
                        Ok(v) => {
                            tracing::debug!(
                                kind,
                                id,
                                found = v.is_some(),
                                "challenge answer looked up in the store"
                            );
                            Some(v)
                        }
                        Err(e) => {
                            warn!(kind, "looking up a challenge answer in the store: {e}");
                            None
                        }
                    }
                };
                match tokio::time::timeout(LOOKUP, asked).await {
                    Ok(v) => v.flatten(),
                    Err(_) => {
                        warn!(
                            kind,
                            "the store did not answer a challenge lookup within {LOOKUP:?}"
                        );
                        None
                    }
                }
            })
            .await
            .clone();
        let mut pending = lock(&self.pending);
        if pending.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            pending.remove(&key);
        }
        found
    }

    /// Writes an answer for the other replicas; whether it is in the store.
    async fn share(&self, kind: &str, id: &str, key_authorization: &str) -> bool {
        let Some(store) = self.store() else {
            return false;
        };
        match store
            .put_acme_challenge(kind, id, key_authorization, IN_STORE)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                warn!(kind, "cannot share the challenge answer in the store (only this replica answers it): {e}");
                false
            }
        }
    }
}

/// The token of an HTTP-01 request.
fn http01_token<'p>(method: &str, path: &'p str) -> Option<&'p str> {
    let token = path.strip_prefix(HTTP01_PREFIX)?;
    (method == "GET" || method == "HEAD").then_some(token)
}

/// Tokens are base64url (RFC 8555 §8.1), host names LDH with dots: nothing else is looked up.
fn well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Keeps another replica's answer, within [`MAX_FOREIGN`] (stale ones go first).
fn remember<T>(map: &Mutex<HashMap<String, (Instant, T)>>, id: &str, v: T) {
    let mut map = lock(map);
    if map.len() >= MAX_FOREIGN {
        map.retain(|_, (at, _)| at.elapsed() < FOREIGN_FOR);
    }
    if map.len() < MAX_FOREIGN {
        map.insert(id.to_owned(), (Instant::now(), v));
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
pub(crate) struct Published {
    challenges: Arc<Challenges>,
    what: What,
    /// The answer is in the store too.
    shared: bool,
}

impl Drop for Published {
    fn drop(&mut self) {
        let (kind, id) = match &self.what {
            What::Http01(token) => {
                lock(&self.challenges.http01).remove(token);
                (HTTP01, token.clone())
            }
            What::TlsAlpn01(host) => {
                lock(&self.challenges.tls_alpn01).remove(host);
                (TLS_ALPN01, host.clone())
            }
        };
        if !self.shared {
            return;
        }
        // Withdrawn from the store in the background; if that fails, it expires.
        if let (Some(store), Ok(rt)) = (
            self.challenges.store(),
            tokio::runtime::Handle::try_current(),
        ) {
            rt.spawn(async move {
                let _ = store.drop_acme_challenge(kind, &id).await;
            });
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
#[allow(clippy::expect_used, reason = "ring supports TLS 1.2 and 1.3")]
pub(crate) fn validation_config(challenges: Arc<Challenges>) -> Arc<ServerConfig> {
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

    #[tokio::test]
    async fn http01_answers_published_tokens_only_while_published() {
        let c = Arc::new(Challenges::default());
        let get = |path: &str| c.http01_body("GET", path).map(|_| StatusCode::OK);
        assert_eq!(get("/.well-known/acme-challenge/tok"), None);
        let guard = c.publish_http01("tok", "tok.thumb").await;
        assert_eq!(get("/.well-known/acme-challenge/tok"), Some(StatusCode::OK));
        assert_eq!(get("/.well-known/acme-challenge/other"), None);
        assert_eq!(get("/.well-known/mta-sts.txt"), None);
        drop(guard);
        assert_eq!(get("/.well-known/acme-challenge/tok"), None);
    }

    /// An answer published by one replica is in the store before `publish` returns; another
    /// replica finds it when asked (and only well-formed ids are looked up), and not once it
    /// is withdrawn.
    #[tokio::test]
    async fn another_replicas_answers_are_looked_up_in_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let target = crate::state::store::Target {
            dir: tmp.path().to_owned(),
            url: None,
            replica: "r".into(),
            key: None,
        };
        let store = Store::open(&target).await.unwrap();
        let (ordering, other) = (
            Arc::new(Challenges::default()),
            Arc::new(Challenges::default()),
        );
        for c in [&ordering, &other] {
            c.set_store(Some(store.clone()));
        }
        let host = "mta-sts.example.org";
        let token = ordering.publish_http01("tok-1_x", "tok-1_x.thumb").await;
        let cert = ordering.publish_tls_alpn01(host, "ka.thumb").await.unwrap();
        let path = "/.well-known/acme-challenge/tok-1_x";
        assert_eq!(other.http01_body("GET", path), None, "not read yet");
        assert_eq!(other.http01_unknown("GET", path), Some("tok-1_x"));
        other.fetch_http01("tok-1_x").await;
        assert_eq!(other.http01_body("GET", path).unwrap(), "tok-1_x.thumb");
        assert!(other.tls_alpn01(host).is_none());
        other.fetch_tls_alpn01(host).await;
        let theirs = other
            .tls_alpn01(host)
            .expect("a certificate for the stored answer");
        other.fetch_tls_alpn01(host).await;
        assert_eq!(
            other.tls_alpn01(host).unwrap().cert,
            theirs.cert,
            "made once"
        );
        assert!(other
            .http01_unknown("GET", "/.well-known/acme-challenge/..%2Fx")
            .is_none());
        // A CA asks from several places at once, for several names: more requests than
        // lookups may run at once all get their answer.
        let many = Arc::new(Challenges::default());
        many.set_store(Some(store.clone()));
        let mut tokens = Vec::new();
        for i in 0..3 {
            let t = format!("t{i}");
            tokens.push(ordering.publish_http01(&t, &format!("{t}.ka")).await);
        }
        let asks = (0..3 * LOOKUPS).map(|i| {
            let many = many.clone();
            async move {
                let t = format!("t{}", i % 3);
                many.fetch_http01(&t).await;
                many.http01_body("GET", &format!("{HTTP01_PREFIX}{t}"))
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        assert!(answers.iter().all(Option::is_some), "{answers:?}");
        drop(tokens);
        drop((token, cert));
        // Withdrawn in the background.
        let deadline = Instant::now() + Duration::from_secs(5);
        while store
            .acme_challenge(HTTP01, "tok-1_x")
            .await
            .unwrap()
            .is_some()
        {
            assert!(Instant::now() < deadline, "not withdrawn");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let fresh = Arc::new(Challenges::default());
        fresh.set_store(Some(store.clone()));
        fresh.fetch_http01("tok-1_x").await;
        assert_eq!(fresh.http01_body("GET", path), None);
    }
}
