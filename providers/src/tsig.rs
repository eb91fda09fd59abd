//! TSIG keys (RFC 8945) from BIND key files, as `tsig-keygen` writes them:
//!
//! ```text
//! key "mta-stsd" {
//!         algorithm hmac-sha256;
//!         secret "base64…";
//! };
//! ```

use std::fmt;

use base64::Engine;

use crate::Secret;

/// The HMAC algorithms we sign with (RFC 8945 §6); older ones are refused on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

/// A TSIG key: its name, algorithm and decoded secret (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"***")
            .finish()
    }
}

impl TsigKey {
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Parses the first `key` clause of a BIND key file. Errors never quote the secret.
    pub fn parse_bind(text: &Secret) -> Result<Self, String> {
        let tokens = tokenize(text.expose())?;
        let mut it = tokens.iter().map(String::as_str).peekable();
        if it.next() != Some("key") {
            return Err("expected `key \"name\" { … };`".into());
        }
        let name = it.next().ok_or("missing key name")?.trim_end_matches('.');
        if name.is_empty() || name == "{" {
            return Err("missing key name".into());
        }
        if it.next() != Some("{") {
            return Err("expected `{` after the key name".into());
        }
        let (mut algorithm, mut secret) = (None, None);
        loop {
            match it.next() {
                Some("}") => break,
                Some("algorithm") => {
                    let a = it.next().ok_or("missing algorithm")?;
                    algorithm = Some(match a.to_ascii_lowercase().as_str() {
                        "hmac-sha256" => TsigAlgorithm::HmacSha256,
                        "hmac-sha384" => TsigAlgorithm::HmacSha384,
                        "hmac-sha512" => TsigAlgorithm::HmacSha512,
                        other => {
                            return Err(format!(
                                "algorithm `{other}` is not supported; use hmac-sha256, hmac-sha384 or hmac-sha512"
                            ))
                        }
                    });
                }
                Some("secret") => {
                    let s = it.next().ok_or("missing secret")?;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map_err(|_| "the secret is not valid base64".to_string())?;
                    secret = Some(bytes);
                }
                Some(other) => return Err(format!("unexpected `{other}` in the key clause")),
                None => return Err("unterminated key clause: missing `}`".into()),
            }
            if it.next() != Some(";") {
                return Err("expected `;` after each statement".into());
            }
        }
        Ok(TsigKey {
            name: name.to_owned(),
            algorithm: algorithm.ok_or("the key clause has no `algorithm`")?,
            secret: secret.ok_or("the key clause has no `secret`")?,
        })
    }
}

/// Splits named.conf syntax into words, quoted strings and `{ } ;`, dropping comments.
fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                loop {
                    match chars.next() {
                        Some('/') if prev == '*' => break,
                        Some(c) => prev = c,
                        None => return Err("unterminated comment".into()),
                    }
                }
            }
            '{' | '}' | ';' => tokens.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err("unterminated string".into()),
                    }
                }
                tokens.push(s);
            }
            c => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"') {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                tokens.push(s);
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tsig_keygen_output() {
        let text = "key \"mta-stsd\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LXNlY3JldC1zZWNyZXQ=\";\n};\n";
        let key = TsigKey::parse_bind(&Secret::new(text.into())).unwrap();
        assert_eq!(key.name, "mta-stsd");
        assert_eq!(key.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(key.secret(), b"secret-secret-secret");
        assert!(!format!("{key:?}").contains("c2Vj"));
    }

    #[test]
    fn refuses_md5_and_garbage() {
        for text in [
            "key k { algorithm hmac-md5; secret \"AAAA\"; };",
            "key k { algorithm hmac-sha256; };",
            "key k { algorithm hmac-sha256; secret \"!!\"; };",
            "zone x {};",
            "",
        ] {
            assert!(
                TsigKey::parse_bind(&Secret::new(text.into())).is_err(),
                "{text}"
            );
        }
    }
}
