//! X25519, the key exchange nearly every client offers first, computed by AWS-LC (aws-lc-rs)
//! rather than ring: AWS-LC's X25519 (s2n-bignum's assembly) takes about half of ring's time
//! here (keygen and agreement 33 µs against 63 µs), and ring's took about a third of a full
//! TLS 1.3 handshake's CPU on the policy listeners (`PROFILE=1 bench/serve-vs-nginx.sh`).
//! Everything else (signatures, AEAD, hashes, the other groups) stays ring's.

use aws_lc_rs::agreement;
use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{Error, NamedGroup, PeerMisbehaved};

/// The X25519 group (RFC 7748, RFC 8446 §4.2.7).
pub(crate) struct X25519;

impl std::fmt::Debug for X25519 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("X25519 (aws-lc-rs)")
    }
}

impl SupportedKxGroup for X25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng)
            .map_err(|_| Error::FailedToGetRandomBytes)?;
        let public = key
            .compute_public_key()
            .map_err(|_| Error::FailedToGetRandomBytes)?;
        Ok(Box::new(Exchange { key, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// One side of an exchange: our ephemeral key, used once.
struct Exchange {
    key: agreement::EphemeralPrivateKey,
    public: agreement::PublicKey,
}

impl ActiveKeyExchange for Exchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        let invalid = || Error::from(PeerMisbehaved::InvalidKeyShare);
        // RFC 8446 §4.2.8.2: an X25519 key share is the 32-byte u-coordinate.
        if peer.len() != 32 {
            return Err(invalid());
        }
        let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, peer);
        agreement::agree_ephemeral(self.key, peer, invalid(), |secret| {
            // RFC 8446 §7.4.2: an all-zero shared secret (a small-order peer point) aborts.
            if secret.iter().all(|&b| b == 0) {
                return Err(invalid());
            }
            Ok(SharedSecret::from(secret))
        })
    }

    fn pub_key(&self) -> &[u8] {
        self.public.as_ref()
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both sides of an exchange, one side ours, the other ring's: the same secret.
    #[test]
    fn agrees_with_ring() {
        let ring_x25519 = rustls::crypto::ring::kx_group::X25519;
        for _ in 0..8 {
            let ours = X25519.start().unwrap();
            let theirs = ring_x25519.start().unwrap();
            let their_pub = theirs.pub_key().to_vec();
            let a = theirs.complete(ours.pub_key()).unwrap();
            let b = ours.complete(&their_pub).unwrap();
            assert_eq!(a.secret_bytes(), b.secret_bytes());
            assert_eq!(a.secret_bytes().len(), 32);
        }
    }

    #[test]
    fn refuses_a_bad_key_share() {
        // Not 32 bytes.
        let e = X25519.start().unwrap().complete(&[9; 31]).err();
        assert_eq!(e, Some(PeerMisbehaved::InvalidKeyShare.into()));
        // A small-order point (0): the shared secret would be all zero.
        let e = X25519.start().unwrap().complete(&[0; 32]).err();
        assert_eq!(e, Some(PeerMisbehaved::InvalidKeyShare.into()));
        // 1, another small-order point.
        let mut one = [0u8; 32];
        one[0] = 1;
        let e = X25519.start().unwrap().complete(&one).err();
        assert_eq!(e, Some(PeerMisbehaved::InvalidKeyShare.into()));
    }

    /// RFC 7748 §6.1's test vector, through aws-lc-rs's static-key API, so the group used is
    /// the real X25519 and not merely self-consistent.
    #[test]
    fn rfc7748_vector() {
        let hex = |s: &str| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        };
        let alice = agreement::PrivateKey::from_private_key(
            &agreement::X25519,
            &hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
        )
        .unwrap();
        let bob_pub = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let shared = agreement::agree(
            &alice,
            agreement::UnparsedPublicKey::new(&agreement::X25519, &bob_pub),
            (),
            |s| Ok(s.to_vec()),
        )
        .unwrap();
        assert_eq!(
            shared,
            hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        );
    }
}
