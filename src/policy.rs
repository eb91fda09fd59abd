//! The MTA-STS policy (RFC 8461 §3.2): its mode, MX patterns and max_age, the exact bytes
//! served, and the policy id derived from those bytes.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::name::{check_hostname, to_a_labels, Converted, NameError};

/// RFC 8461 §3.3: the policy is at this path on `mta-sts.<domain>`.
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// RFC 8461 §3.2: "max_age: Max lifetime of the policy ... up to 31557600".
pub const MAX_AGE_LIMIT: u32 = 31_557_600;

/// The policy mode, in the order RFC 8461 §5 lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "enforce" => Ok(Mode::Enforce),
            "testing" => Ok(Mode::Testing),
            "none" => Ok(Mode::None),
            _ => Err(format!(
                "mode `{s}` is not one of `enforce`, `testing`, `none`"
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `mx` pattern: a lowercase A-label host name, or `*.` and one: RFC 8461 §3.2
/// "the left-most label ... may be the wildcard character ("*")".
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MxPattern(Box<str>);

impl MxPattern {
    pub fn parse(input: &str) -> Result<(Self, Converted), NameError> {
        if input.ends_with('.') {
            return Err(NameError(format!(
                "mx `{input}`: policy mx patterns are written without the trailing dot (RFC 8461 §3.2)"
            )));
        }
        let (wild, host) = match input.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, input),
        };
        if host.contains('*') {
            return Err(NameError(format!(
                "mx `{input}`: `*` is allowed only as the whole left-most label, as in `*.example.net`"
            )));
        }
        let (ascii, converted) = to_a_labels(host)?;
        check_hostname(&ascii).map_err(|e| NameError(format!("mx {e}")))?;
        let text = if wild { format!("*.{ascii}") } else { ascii };
        Ok((MxPattern(text.into_boxed_str()), converted))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// RFC 8461 §4.1: a wildcard "matches any single label" left of the suffix; names compare
    /// case-insensitively and a trailing dot on the MX host is ignored.
    pub fn matches(&self, mx_host: &str) -> bool {
        let host = mx_host.strip_suffix('.').unwrap_or(mx_host);
        match self.0.strip_prefix("*.") {
            Some(suffix) => match host.split_once('.') {
                Some((first, rest)) => !first.is_empty() && rest.eq_ignore_ascii_case(suffix),
                None => false,
            },
            None => host.eq_ignore_ascii_case(&self.0),
        }
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// RFC 8461 §3.1: `id` is 1–32 characters of `[A-Za-z0-9]`. Clones share the text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PolicyId(Arc<str>);

impl PolicyId {
    /// The first 128 bits of SHA-256 over the exact body, in lowercase hex: 32 characters,
    /// the same on every build, platform and replica.
    pub fn of_body(body: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(body);
        let mut id = String::with_capacity(32);
        for b in &digest[..16] {
            id.push(HEX[usize::from(b >> 4)] as char);
            id.push(HEX[usize::from(b & 0xf)] as char);
        }
        PolicyId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, shared (no copy).
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A policy with its body rendered once; cloning the body is a reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub mx: Vec<MxPattern>,
    pub max_age: u32,
    body: Bytes,
    id: PolicyId,
}

impl Policy {
    /// Callers have checked `max_age <= MAX_AGE_LIMIT`.
    pub fn new(mode: Mode, mx: Vec<MxPattern>, max_age: u32) -> Self {
        debug_assert!(max_age <= MAX_AGE_LIMIT);
        let body = render(mode, &mx, max_age);
        let id = PolicyId::of_body(&body);
        Policy {
            mode,
            mx,
            max_age,
            body: Bytes::from(body),
            id,
        }
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub fn id(&self) -> &PolicyId {
        &self.id
    }

    /// Reads back a body this program rendered (from the id history): `None` unless it
    /// renders to exactly the same bytes, so the id is the same too.
    pub fn parse_own(body: &str) -> Option<Policy> {
        let mut lines = body.strip_suffix("\r\n")?.split("\r\n");
        if lines.next()? != "version: STSv1" {
            return None;
        }
        let mode = lines.next()?.strip_prefix("mode: ")?.parse().ok()?;
        let mut mx = Vec::new();
        let mut max_age = None;
        for line in lines {
            if let Some(p) = line.strip_prefix("mx: ") {
                mx.push(MxPattern::parse(p).ok()?.0);
            } else {
                max_age = Some(line.strip_prefix("max_age: ")?.parse::<u32>().ok()?);
            }
        }
        let max_age = max_age.filter(|&m| m <= MAX_AGE_LIMIT)?;
        let p = Policy::new(mode, mx, max_age);
        (p.body() == body.as_bytes()).then_some(p)
    }

    /// Whether an MX host is covered by one of the patterns (RFC 8461 §4.1).
    pub fn matches_mx(&self, host: &str) -> bool {
        self.mx.iter().any(|p| p.matches(host))
    }
}

/// RFC 8461 §3.2: "key/value pairs separated by CRLF"; version first, then mode, one `mx`
/// line per pattern in config order, then max_age.
fn render(mode: Mode, mx: &[MxPattern], max_age: u32) -> Vec<u8> {
    let mut body = String::with_capacity(48 + mx.iter().map(|p| p.0.len() + 6).sum::<usize>());
    body.push_str("version: STSv1\r\nmode: ");
    body.push_str(mode.as_str());
    body.push_str("\r\n");
    for pattern in mx {
        body.push_str("mx: ");
        body.push_str(&pattern.0);
        body.push_str("\r\n");
    }
    body.push_str("max_age: ");
    body.push_str(&max_age.to_string());
    body.push_str("\r\n");
    body.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mx(patterns: &[&str]) -> Vec<MxPattern> {
        patterns
            .iter()
            .map(|p| MxPattern::parse(p).unwrap().0)
            .collect()
    }

    #[test]
    fn body_is_byte_exact() {
        let p = Policy::new(
            Mode::Enforce,
            mx(&["mail.example.org", "*.mx.example.net"]),
            604800,
        );
        assert_eq!(
            &p.body()[..],
            b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.mx.example.net\r\nmax_age: 604800\r\n"
        );
    }

    #[test]
    fn own_bodies_parse_back_to_the_same_policy() {
        for p in [
            Policy::new(
                Mode::Enforce,
                mx(&["mail.example.org", "*.mx.example.net"]),
                604800,
            ),
            Policy::new(Mode::None, vec![], 86400),
        ] {
            let body = std::str::from_utf8(p.body()).unwrap();
            assert_eq!(Policy::parse_own(body), Some(p.clone()));
        }
        for bad in [
            "version: STSv1\r\nmode: enforce\r\nmax_age: 1\r\nmx: a.example\r\n",
            "version: STSv1\nmode: none\nmax_age: 1\n",
            "version: STSv1\r\nmode: none\r\nmax_age: 99999999999\r\n",
        ] {
            assert_eq!(Policy::parse_own(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn none_without_mx() {
        let p = Policy::new(Mode::None, vec![], 86400);
        assert_eq!(
            &p.body()[..],
            b"version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"
        );
    }

    /// Golden: the id of one known body is pinned, so no refactor changes every published id.
    #[test]
    fn id_is_pinned() {
        let p = Policy::new(Mode::Testing, mx(&["mail.example.org"]), 604800);
        assert_eq!(p.id().as_str(), "53489ece145c54a18e5e1e0b1091f6a8");
        assert_eq!(
            PolicyId::of_body(b"").as_str(),
            "e3b0c44298fc1c149afbf4c8996fb924"
        );
    }

    #[test]
    fn id_alphabet_and_length() {
        let id = Policy::new(Mode::Enforce, mx(&["a.example"]), 1)
            .id()
            .clone();
        assert_eq!(id.as_str().len(), 32);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn mx_patterns() {
        let (p, _) = MxPattern::parse("*.MX.Example.NET").unwrap();
        assert_eq!(p.as_str(), "*.mx.example.net");
        assert!(p.matches("a.mx.example.net"));
        assert!(p.matches("A.MX.example.net."));
        assert!(
            !p.matches("a.b.mx.example.net"),
            "RFC 8461 §4.1: one label only"
        );
        assert!(!p.matches("mx.example.net"));
        let (p, _) = MxPattern::parse("mail.example.org").unwrap();
        assert!(p.matches("MAIL.example.org."));
        assert!(!p.matches("x.mail.example.org"));
        let (p, c) = MxPattern::parse("mäil.example").unwrap();
        assert_eq!((p.as_str(), c), ("xn--mil-qla.example", Converted::Idna));
        for bad in [
            "mail.example.org.",
            "*",
            "*.",
            "a.*.example",
            "*mail.example",
            "**.example",
            "192.0.2.25",
            "mail",
            "mail_1.example",
        ] {
            assert!(MxPattern::parse(bad).is_err(), "{bad} accepted");
        }
    }

    fn policy_strategy() -> impl Strategy<Value = (Mode, Vec<MxPattern>, u32)> {
        let mode = prop_oneof![Just(Mode::Enforce), Just(Mode::Testing), Just(Mode::None)];
        let pattern =
            "(\\*\\.)?[a-c]{1,2}\\.(example|test)".prop_map(|s| MxPattern::parse(&s).unwrap().0);
        (
            mode,
            proptest::collection::vec(pattern, 0..4),
            0..=MAX_AGE_LIMIT,
        )
    }

    proptest! {
        /// The id changes when, and only when, the served body changes.
        #[test]
        fn id_follows_body(a in policy_strategy(), b in policy_strategy()) {
            let pa = Policy::new(a.0, a.1, a.2);
            let pb = Policy::new(b.0, b.1, b.2);
            prop_assert_eq!(pa.body() == pb.body(), pa.id() == pb.id());
            prop_assert_eq!(pa.id(), &PolicyId::of_body(pa.body()));
        }
    }
}
