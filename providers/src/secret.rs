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
