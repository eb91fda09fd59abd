//! ECDSA certificate keys (P-256, P-384) and every handshake's random bytes by AWS-LC
//! (aws-lc-rs), as X25519 is ([`super::kx`]). Its ECDSA signature takes 15-16 µs against
//! ring's 18-19 here, and its random bytes come from a user-space DRBG seeded by the kernel,
//! where ring asks the kernel (`getrandom`) for each of a full handshake's five fills (server
//! random, signature nonce, ticket). Other key types (RSA, Ed25519) stay ring's.

use std::sync::Arc;

use aws_lc_rs::rand::SecureRandom as _;
use aws_lc_rs::signature::{self, EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair};
use rustls::crypto::{GetRandomFailed, KeyProvider, SecureRandom};
use rustls::pki_types::{alg_id, AlgorithmIdentifier, PrivateKeyDer, SubjectPublicKeyInfoDer};
use rustls::sign::{public_key_to_spki, Signer, SigningKey};
use rustls::{Error, SignatureAlgorithm, SignatureScheme};

/// Loads certificate keys: ECDSA ones as AWS-LC keys, the rest as ring's.
#[derive(Debug)]
pub(crate) struct Keys;

impl KeyProvider for Keys {
    fn load_private_key(&self, der: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, Error> {
        let curves: [(
            SignatureScheme,
            &'static EcdsaSigningAlgorithm,
            AlgorithmIdentifier,
        ); 2] = [
            (
                SignatureScheme::ECDSA_NISTP256_SHA256,
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                alg_id::ECDSA_P256,
            ),
            (
                SignatureScheme::ECDSA_NISTP384_SHA384,
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                alg_id::ECDSA_P384,
            ),
        ];
        for (scheme, alg, id) in curves {
            if let Some(key) = ecdsa_key(&der, alg) {
                return Ok(Arc::new(EcdsaKey {
                    key: Arc::new(key),
                    scheme,
                    id,
                }));
            }
        }
        rustls::crypto::ring::sign::any_supported_type(&der)
    }
}

/// `der` as a key of curve `alg`, if it is one (PKCS#8 or SEC1).
fn ecdsa_key(der: &PrivateKeyDer<'_>, alg: &'static EcdsaSigningAlgorithm) -> Option<EcdsaKeyPair> {
    match der {
        PrivateKeyDer::Pkcs8(k) => EcdsaKeyPair::from_pkcs8(alg, k.secret_pkcs8_der()).ok(),
        PrivateKeyDer::Sec1(k) => EcdsaKeyPair::from_private_key_der(alg, k.secret_sec1_der()).ok(),
        _ => None,
    }
}

/// An ECDSA key and the one scheme it signs with (RFC 8446 §4.2.3: the curve fixes the hash).
struct EcdsaKey {
    key: Arc<EcdsaKeyPair>,
    scheme: SignatureScheme,
    id: AlgorithmIdentifier,
}

impl std::fmt::Debug for EcdsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcdsaKey({:?}, aws-lc-rs)", self.scheme)
    }
}

impl SigningKey for EcdsaKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&self.scheme).then(|| {
            Box::new(EcdsaSigner {
                key: Arc::clone(&self.key),
                scheme: self.scheme,
            }) as Box<dyn Signer>
        })
    }

    /// Lets rustls check that a certificate and its key belong together.
    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(public_key_to_spki(&self.id, self.key.public_key()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

struct EcdsaSigner {
    key: Arc<EcdsaKeyPair>,
    scheme: SignatureScheme,
}

impl std::fmt::Debug for EcdsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcdsaSigner({:?}, aws-lc-rs)", self.scheme)
    }
}

impl Signer for EcdsaSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key
            .sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| Error::General("ECDSA signing failed".into()))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// AWS-LC's random bytes (its DRBG, seeded from the kernel).
#[derive(Debug)]
pub(crate) struct Random;

impl SecureRandom for Random {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        aws_lc_rs::rand::SystemRandom::new()
            .fill(buf)
            .map_err(|_| GetRandomFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

    fn keys(alg: &'static rcgen::SignatureAlgorithm) -> (rcgen::KeyPair, rcgen::Certificate) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mta-sts.a.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (key, cert)
    }

    fn der(key: &rcgen::KeyPair) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
    }

    /// A P-256 or P-384 key signs by AWS-LC with its curve's one scheme, and ring verifies the
    /// signature against the certificate's public key.
    #[test]
    fn ecdsa_keys_sign_what_ring_verifies() {
        for (alg, scheme, verify) in [
            (
                &rcgen::PKCS_ECDSA_P256_SHA256,
                SignatureScheme::ECDSA_NISTP256_SHA256,
                &ring::signature::ECDSA_P256_SHA256_ASN1,
            ),
            (
                &rcgen::PKCS_ECDSA_P384_SHA384,
                SignatureScheme::ECDSA_NISTP384_SHA384,
                &ring::signature::ECDSA_P384_SHA384_ASN1,
            ),
        ] {
            let (key, _) = keys(alg);
            let signing = Keys.load_private_key(der(&key)).unwrap();
            assert!(format!("{signing:?}").contains("aws-lc-rs"), "{signing:?}");
            assert_eq!(signing.algorithm(), SignatureAlgorithm::ECDSA);
            let offered = [SignatureScheme::RSA_PSS_SHA256, scheme];
            let signer = signing
                .choose_scheme(&offered)
                .expect("its scheme is offered");
            assert_eq!(signer.scheme(), scheme);
            assert!(signing
                .choose_scheme(&[SignatureScheme::RSA_PSS_SHA256])
                .is_none());
            let message = b"TLS 1.3, server CertificateVerify";
            let sig = signer.sign(message).unwrap();
            ring::signature::UnparsedPublicKey::new(verify, key.public_key_raw())
                .verify(message, &sig)
                .expect("ring verifies AWS-LC's signature");
        }
    }

    /// A key and its certificate match; another key's certificate does not (rustls checks
    /// through `public_key`); RSA and Ed25519 keys still load (ring's).
    #[test]
    fn keys_are_checked_against_certificates_and_others_stay_rings() {
        let provider = crate::certs::provider();
        let (key, cert) = keys(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other) = keys(&rcgen::PKCS_ECDSA_P256_SHA256);
        let chain = |c: &rcgen::Certificate| vec![CertificateDer::from(c.der().to_vec())];
        rustls::sign::CertifiedKey::from_der(chain(&cert), der(&key), &provider)
            .expect("a key and its own certificate");
        let err = rustls::sign::CertifiedKey::from_der(chain(&other), der(&key), &provider)
            .expect_err("another key's certificate");
        assert!(matches!(err, Error::InconsistentKeys(_)), "{err:?}");
        let (ed, _) = keys(&rcgen::PKCS_ED25519);
        let signing = provider.key_provider.load_private_key(der(&ed)).unwrap();
        assert_eq!(signing.algorithm(), SignatureAlgorithm::ED25519);
        assert!(!format!("{signing:?}").contains("aws-lc-rs"));
    }

    #[test]
    fn random_bytes_fill_and_differ() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        Random.fill(&mut a).unwrap();
        Random.fill(&mut b).unwrap();
        assert_ne!(a, [0u8; 32]);
        assert_ne!(a, b);
    }
}
