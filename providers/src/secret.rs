//! Secrets (TSIG keys, API tokens): read from a file or the environment, never printed.

use std::fmt;
use std::path::PathBuf;

/// A secret value. `Debug` and `Display` print `***`, so a secret cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Where a secret comes from; the config names the place, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl Secret {
    /// Reads the secret: a file is read whole with surrounding whitespace trimmed; an
    /// environment variable must be set and non-empty.
    pub fn read(source: &SecretSource) -> Result<Self, String> {
        let value = match source {
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?,
            SecretSource::Env(var) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
            }
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(match source {
                SecretSource::File(path) => format!("secret file {} is empty", path.display()),
                SecretSource::Env(var) => format!("environment variable {var} is empty"),
            });
        }
        Ok(Secret(value.to_owned()))
    }

    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value, for the one place that sends it (an Authorization header, a TSIG signer).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// `url` as messages and logs may show it: without userinfo (`user:password@`), and with the
/// value of every query parameter named like a credential (`api_key`, `token`, `sig`…) as
/// `***`. A URL that does not parse loses everything before an `@` in its authority and its
/// whole query.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return redact_unparsed(url);
    };
    let userinfo = !parsed.username().is_empty() || parsed.password().is_some();
    let secret_query = parsed.query_pairs().any(|(k, _)| credential_param(&k));
    if !userinfo && !secret_query {
        return url.to_owned();
    }
    if userinfo {
        // Only fails for URLs that cannot have userinfo, which have none.
        let _ = parsed.set_password(None);
        let _ = parsed.set_username("");
    }
    if secret_query {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if credential_param(&k) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

fn credential_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "pass",
        "auth",
        "sig",
        "credential",
        "session",
    ]
    .iter()
    .any(|w| name.contains(w))
}

fn redact_unparsed(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match scheme {
        "" => format!("{host}{path}"),
        s => format!("{s}://{host}{path}"),
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }

    #[test]
    fn file_is_trimmed() {
        let dir = std::env::temp_dir().join(format!("mta-stsd-secret-{}", std::process::id()));
        std::fs::write(&dir, "  token\n").unwrap();
        let s = Secret::read(&SecretSource::File(dir.clone())).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(s.expose(), "token");
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn userinfo_and_credential_parameters_are_removed() {
        for (url, shown) in [
            ("http://user:pass@127.0.0.1:8081", "http://127.0.0.1:8081/"),
            ("https://token@api.example/v4", "https://api.example/v4"),
            (
                "https://api.example/v4?api_key=s3cr3t&zone=a",
                "https://api.example/v4?api_key=***&zone=a",
            ),
            (
                "https://u:p@h.example/x?X-Amz-Signature=abc",
                "https://h.example/x?X-Amz-Signature=***",
            ),
            // Nothing to hide: the text as configured.
            ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
            (
                "https://api.example/v4?zone=a",
                "https://api.example/v4?zone=a",
            ),
            // Not a URL the parser takes: still no credentials.
            ("http://us er:pa ss@[bad/path?token=x", "http://[bad/path"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
