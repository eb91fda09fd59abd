//! Private keys sealed at rest: with `[state] key_file` / `key_env` (32 bytes, hex or
//! base64), the ACME account's credentials and each certificate's key are encrypted with
//! AES-256-GCM before they are written, the row's identity as associated data (a sealed value
//! moved to another row does not open). A sealed value reads `sealed:v1:<base64 of nonce and
//! ciphertext>`; anything else is plaintext (written before a key was set).

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "sealed:v1:";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The key, never printed.
pub(super) struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

/// A 32-byte key from its text: 64 hex digits, or base64 (padded or not).
pub(super) fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| e.to_string())?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| "not 64 hex digits nor base64".to_owned())?
    };
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, not 32", b.len()))
}

pub(super) fn is_sealed(text: &str) -> bool {
    text.starts_with(PREFIX)
}

impl Sealer {
    #[allow(clippy::expect_used, reason = "32 bytes")]
    pub(super) fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32 bytes")),
            random: SystemRandom::new(),
        }
    }

    /// `plain` sealed for the row `row`.
    pub(super) fn seal(&self, row: &str, plain: &str) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| "no randomness for a nonce".to_owned())?;
        let mut data = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(row.as_bytes()),
                &mut data,
            )
            .map_err(|_| "sealing failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{PREFIX}{}", B64.encode(out)))
    }

    /// The plaintext of `text` (sealed for `row`, or plaintext as written before a key was
    /// set).
    #[allow(clippy::expect_used, reason = "NONCE_LEN bytes")]
    pub(super) fn open(&self, row: &str, text: &str) -> Result<String, String> {
        let Some(sealed) = text.strip_prefix(PREFIX) else {
            return Ok(text.to_owned());
        };
        let mut data = B64
            .decode(sealed)
            .map_err(|_| format!("{row}: the sealed value is damaged"))?;
        if data.len() < NONCE_LEN {
            return Err(format!("{row}: the sealed value is damaged"));
        }
        let body = data.split_off(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = data.try_into().expect("NONCE_LEN bytes");
        let mut body = body;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(row.as_bytes()),
                &mut body,
            )
            .map_err(|_| {
                format!("{row}: does not open with [state] key_file/key_env (sealed with another key, or damaged)")
            })?;
        String::from_utf8(plain.to_vec()).map_err(|_| format!("{row}: not text once opened"))
    }
}

/// `text` of `row` as plaintext: sealed values need the key.
pub(super) fn open(sealer: Option<&Sealer>, row: &str, text: &str) -> Result<String, String> {
    match sealer {
        Some(s) => s.open(row, text),
        None if is_sealed(text) => Err(format!(
            "{row}: the store's private keys are sealed; set [state] key_file or key_env to the key they were sealed with"
        )),
        None => Ok(text.to_owned()),
    }
}

/// `plain` as written for `row`: sealed when there is a key.
pub(super) fn seal(sealer: Option<&Sealer>, row: &str, plain: &str) -> Result<String, String> {
    match sealer {
        Some(s) => s.seal(row, plain),
        None => Ok(plain.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hex_or_base64_of_32_bytes() {
        let hex = "00".repeat(31) + "ff";
        assert_eq!(parse_key(&hex).unwrap()[31], 0xff);
        let b64 = B64.encode([7u8; 32]);
        assert_eq!(parse_key(&b64).unwrap(), [7u8; 32]);
        assert_eq!(parse_key(b64.trim_end_matches('=')).unwrap(), [7u8; 32]);
        assert!(parse_key(&B64.encode([7u8; 16]))
            .unwrap_err()
            .contains("16 bytes"));
        assert!(parse_key("not a key").is_err());
    }

    /// Sealed, the value is not readable; it opens with the key and its row only, and not
    /// without the key; plaintext written before a key reads as it is.
    #[test]
    fn sealed_values_open_with_their_key_and_row_only() {
        let (k, other) = (Sealer::new(&[1; 32]), Sealer::new(&[2; 32]));
        let pem = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n";
        let sealed = k.seal("cert:x", pem).unwrap();
        assert!(is_sealed(&sealed) && !sealed.contains("PRIVATE KEY"));
        assert_ne!(
            sealed,
            k.seal("cert:x", pem).unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(k.open("cert:x", &sealed).unwrap(), pem);
        assert!(k.open("cert:y", &sealed).is_err(), "another row");
        assert!(other
            .open("cert:x", &sealed)
            .unwrap_err()
            .contains("another key"));
        assert!(open(None, "cert:x", &sealed)
            .unwrap_err()
            .contains("key_file"));
        assert_eq!(open(Some(&k), "cert:x", pem).unwrap(), pem);
        assert_eq!(format!("{k:?}"), "Sealer(***)");
    }
}
