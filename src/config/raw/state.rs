//! `[state]`: where the daemon keeps what it must remember, and the limits on retiring domains.

use toml::de::DeTable;

use std::collections::HashMap;

use super::keys::keys;
use super::{Item, Reader};
use crate::config::diag::At;
use crate::config::{RetireLimit, State};

keys! {
    /// `[state]` keys.
    enum Key {
        Dir = "dir",
        MaxRetire = "max_retire",
        RetireAfter = "retire_after",
        UrlEnv = "url_env",
        UrlFile = "url_file",
        Replica = "replica",
        Lease = "lease",
        SealEnv = "key_env",
        SealFile = "key_file",
        Listen = "listen",
    }
}

/// The length of a `key_file` / `key_env` secret: 32 bytes, as 64 hex digits or base64 (the
/// store reads it the same way).
fn key_bytes(text: &str) -> Result<usize, String> {
    use base64::Engine;
    let text = text.trim();
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(32);
    }
    let n = base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map_err(|_| "not 64 hex digits nor base64".to_owned())?
        .len();
    if n == 32 {
        Ok(n)
    } else {
        Err(format!("{n} bytes, not 32"))
    }
}

impl Reader<'_> {
    pub(super) fn state(&mut self, table: &DeTable<'_>, item: &Item<'_>) -> State {
        let at = self.at(item.span());
        let mut state = State::default();
        let mut url: HashMap<&str, At<&str>> = HashMap::new();
        let mut key: HashMap<&str, At<&str>> = HashMap::new();
        let mut listen = None;
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match Key::of(kname) {
                Some(Key::Dir) => {
                    if let Some(s) = self.string(kname, v) {
                        state.dir = self.path(s.value);
                    }
                }
                Some(Key::RetireAfter) => {
                    if let Some(d) = self.duration(kname, v) {
                        state.retire_after = d;
                    }
                }
                Some(Key::MaxRetire) => {
                    if let Some(limit) = self.retire_limit(v) {
                        state.max_retire = limit;
                    }
                }
                Some(Key::UrlEnv | Key::UrlFile) => {
                    if let Some(s) = self.string(kname, v) {
                        url.insert(kname, s);
                    }
                }
                Some(Key::SealEnv | Key::SealFile) => {
                    if let Some(s) = self.string(kname, v) {
                        key.insert(kname, s);
                    }
                }
                Some(Key::Replica) => {
                    if let Some(s) = self.string(kname, v) {
                        if s.value.is_empty() || s.value.len() > 253 {
                            self.problems
                                .error(s.at, "`replica` must be 1 to 253 characters");
                        } else {
                            state.replica = s.value.to_owned();
                        }
                    }
                }
                Some(Key::Lease) => {
                    if let Some(d) = self.duration(kname, v) {
                        // The store counts leases in whole seconds and renews every third.
                        if d < std::time::Duration::from_secs(2) {
                            self.problems.error(
                                self.at(v.span()),
                                "`lease` must be at least 2s: a shorter one could expire between its renewals",
                            );
                        } else {
                            state.lease = d;
                        }
                    }
                }
                Some(Key::Listen) => {
                    if let Some(b) = self.boolean(kname, v) {
                        state.listen = b;
                        listen = Some(self.at(v.span()));
                    }
                }
                // Not a key: a secret written inline.
                None if kname == "url" => self.problems.error(
                    self.at(k.span()),
                    "`url`: the database URL is not allowed inline; give `url_env` or `url_file`",
                ),
                None => self.unknown("[state]", k, Key::ALL),
            }
        }
        if !url.is_empty() {
            // Read now, so `check` fails on a missing URL.
            state.url = self.secret(&url, "url", "[state]", at);
        }
        if let (true, true, Some(at)) = (state.listen, url.is_empty(), listen) {
            // LISTEN/NOTIFY is PostgreSQL's: SQLite has no session to listen on.
            self.problems.error(
                at,
                "`listen` needs the store on PostgreSQL (`url_env` or `url_file`)",
            );
            state.listen = false;
        }
        if !key.is_empty() {
            state.key = self.secret(&key, "key", "[state]", at);
            if let Some(k) = &state.key {
                if let Err(e) = key_bytes(k.expose()) {
                    let at = key.values().next().map_or(at, |v| v.at);
                    self.problems.error(
                        at,
                        format!(
                            "[state] key_file/key_env: {e} (32 bytes, as 64 hex digits or base64)"
                        ),
                    );
                    state.key = None;
                }
            }
        }
        state
    }

    /// A count (`10`) or a share of the published domains (`"10%"`).
    fn retire_limit(&mut self, v: &super::Item<'_>) -> Option<RetireLimit> {
        if let toml::de::DeValue::Integer(_) = v.get_ref() {
            let n = self.integer("max_retire", v)?;
            return match u64::try_from(n.value) {
                Ok(n) => Some(RetireLimit::Count(n)),
                Err(_) => {
                    self.problems.error(
                        n.at,
                        "`max_retire` must be 0 or more domains, or a percentage such as \"10%\"",
                    );
                    None
                }
            };
        }
        let s = self.string("max_retire", v)?;
        match s
            .value
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<f64>().ok())
        {
            Some(p) if (0.0..=100.0).contains(&p) => Some(RetireLimit::Percent(p)),
            _ => {
                self.problems.error(
                    s.at,
                    format!(
                        "`max_retire`: `{}` is not a number of domains or a percentage such as \"10%\"",
                        s.value
                    ),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store's seal key is 32 bytes, as hex or base64; anything else fails `check`.
    #[test]
    fn seal_keys_are_32_bytes_as_hex_or_base64() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(key_bytes(&"ab".repeat(32)), Ok(32));
        assert_eq!(key_bytes(&b64.encode([1u8; 32])), Ok(32));
        assert_eq!(key_bytes(&format!(" {}\n", b64.encode([1u8; 32]))), Ok(32));
        assert_eq!(
            key_bytes(&b64.encode([1u8; 16])),
            Err("16 bytes, not 32".into())
        );
        assert!(key_bytes("correct horse battery staple").is_err());
        assert!(key_bytes(&"ab".repeat(31)).is_err());
    }
}
