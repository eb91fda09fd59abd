//! The value readers every table uses: each reports a wrong type or value at its place and
//! returns `None`, so that one pass finds every problem.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::{Item, Key, Reader};
use crate::config::diag::{At, Loc, Sources};
use crate::name::{Converted, DomainName};

impl Reader<'_> {
    pub(super) fn at(&self, span: Range<usize>) -> Loc {
        Sources::loc(self.file, &span)
    }

    pub(super) fn path(&self, written: &str) -> PathBuf {
        self.dir.join(written)
    }

    pub(super) fn readable(&mut self, written: &str, at: Loc) -> Option<PathBuf> {
        let path = self.path(written);
        match std::fs::metadata(&path) {
            Ok(_) => Some(path),
            Err(e) => {
                self.problems
                    .error(at, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    pub(super) fn unknown(&mut self, section: &str, key: &Key<'_>, expected: &[&str]) {
        self.problems.error(
            self.at(key.span()),
            format!(
                "unknown key `{}` in {section}; expected one of: {}",
                key.get_ref(),
                expected.join(", ")
            ),
        );
    }

    pub(super) fn wrong_type(&mut self, key: &str, v: &Item<'_>, want: &str) {
        self.problems.error(
            self.at(v.span()),
            format!("`{key}` must be {want}, not {}", v.get_ref().type_str()),
        );
    }

    pub(super) fn string<'a>(&mut self, key: &str, v: &'a Item<'_>) -> Option<At<&'a str>> {
        match v.get_ref() {
            DeValue::String(s) => Some(At {
                value: s.as_ref(),
                at: self.at(v.span()),
            }),
            _ => {
                self.wrong_type(key, v, "a string");
                None
            }
        }
    }

    pub(super) fn integer(&mut self, key: &str, v: &Item<'_>) -> Option<At<i64>> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                let digits = digits
                    .trim_start_matches("0x")
                    .trim_start_matches("0o")
                    .trim_start_matches("0b");
                i64::from_str_radix(digits, i.radix()).ok()
            }
            _ => {
                self.wrong_type(key, v, "an integer");
                return None;
            }
        };
        if parsed.is_none() {
            self.problems
                .error(self.at(v.span()), format!("`{key}` is out of range"));
        }
        parsed.map(|value| At {
            value,
            at: self.at(v.span()),
        })
    }

    pub(super) fn boolean(&mut self, key: &str, v: &Item<'_>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(key, v, "true or false");
                None
            }
        }
    }

    pub(super) fn array<'a, 'i>(&mut self, key: &str, v: &'a Item<'i>) -> Option<&'a [Item<'i>]> {
        match v.get_ref() {
            DeValue::Array(a) => Some(a),
            _ => {
                self.wrong_type(key, v, "an array");
                None
            }
        }
    }

    pub(super) fn strings<'a>(&mut self, key: &str, v: &'a Item<'_>) -> Option<Vec<At<&'a str>>> {
        let items = match v.get_ref() {
            DeValue::Array(a) => a,
            _ => {
                self.wrong_type(key, v, "an array of strings");
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items.iter() {
            match self.string(&format!("{key}` entry `"), item) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn table<'a, 'i>(&mut self, key: &str, v: &'a Item<'i>) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(key, v, "a table");
                None
            }
        }
    }

    pub(super) fn duration(&mut self, key: &str, v: &Item<'_>) -> Option<Duration> {
        if let DeValue::Integer(_) = v.get_ref() {
            let n = self.integer(key, v)?;
            return match u64::try_from(n.value) {
                Ok(secs) if secs > 0 => Some(Duration::from_secs(secs)),
                _ => {
                    self.problems.error(
                        n.at,
                        format!("`{key}` must be a positive number of seconds"),
                    );
                    None
                }
            };
        }
        let s = self.string(key, v)?;
        match parse_duration(s.value) {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                self.problems.error(s.at, format!(
                    "`{key}`: `{}` is not a duration such as \"90s\", \"10m\", \"6h\" or \"1h30m\"", s.value
                ));
                None
            }
        }
    }

    pub(super) fn name_fqdn(&mut self, key: &str, s: At<&str>) -> Option<At<DomainName>> {
        match DomainName::parse_fqdn(s.value) {
            Ok((name, conv)) => {
                if conv == Converted::Idna {
                    self.problems.warn(
                        s.at,
                        format!(
                            "{key} `{}` converted to its A-label `{name}` (IDNA)",
                            s.value
                        ),
                    );
                }
                Some(At {
                    value: name,
                    at: s.at,
                })
            }
            Err(e) => {
                self.problems.error(s.at, format!("{key} {e}"));
                None
            }
        }
    }

    pub(super) fn socket_addr(&mut self, s: &str, at: Loc) -> Option<SocketAddr> {
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problems.error(at, format!(
                    "`{s}` is not an address with a port, such as \"127.0.0.1:8443\" or \"[::]:443\""
                ));
                None
            }
        }
    }
}

/// `90s`, `10m`, `6h`, `1d`, `1h30m`, `500ms`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            "d" => Duration::from_secs(n.checked_mul(86400)?),
            _ => return None,
        };
        total = total.checked_add(unit)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("6h"), Some(Duration::from_secs(21600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        for bad in ["", "h", "6", "6x", "1.5h", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
