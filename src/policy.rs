//! The MTA-STS policy (RFC 8461 §3.2): its mode, MX patterns and max_age, the exact bytes
//! served, and the policy id derived from those bytes; the `_mta-sts` TXT record that
//! announces the id (RFC 8461 §3.1). Both grammars are rendered and parsed here only.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::name::{check_hostname, to_a_labels, Converted, NameError};

/// RFC 8461 §3.3: the policy is at this path on `mta-sts.<domain>`.
pub(crate) const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// RFC 8461 §3.2: "max_age: Max lifetime of the policy ... up to 31557600".
pub(crate) const MAX_AGE_LIMIT: u32 = 31_557_600;

/// The policy mode, in the order RFC 8461 §5 lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) struct MxPattern(Box<str>);

impl MxPattern {
    pub(crate) fn parse(input: &str) -> Result<(Self, Converted), NameError> {
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

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// RFC 8461 §4.1: a wildcard "matches any single label" left of the suffix; names compare
    /// case-insensitively and a trailing dot on the MX host is ignored.
    pub(crate) fn matches(&self, mx_host: &str) -> bool {
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

impl AsRef<str> for MxPattern {
    fn as_ref(&self) -> &str {
        &self.0
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
    pub(crate) fn of_body(body: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(body);
        let mut id = String::with_capacity(32);
        for b in &digest[..16] {
            id.push(HEX[usize::from(b >> 4)] as char);
            id.push(HEX[usize::from(b & 0xf)] as char);
        }
        PolicyId(id.into())
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, shared (no copy).
    pub(crate) fn shared(&self) -> Arc<str> {
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

/// The `_mta-sts` TXT record (RFC 8461 §3.1): `v=STSv1; id=<id>;`, extensions allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StsRecord<'a> {
    id: &'a str,
}

impl<'a> StsRecord<'a> {
    /// RFC 8461 §3.1: the record "MUST begin with" this version tag.
    pub(crate) const VERSION: &'static str = "v=STSv1";

    /// The record we publish for a policy id.
    pub(crate) fn render(id: &PolicyId) -> String {
        format!("{}; id={id};", Self::VERSION)
    }

    /// Whether a TXT record is an MTA-STS record at all (ours to manage, one senders count):
    /// the version tag ends at `;`, whitespace or the end, so `v=STSv10` is not one.
    pub(crate) fn is_ours(text: &str) -> bool {
        text.strip_prefix(Self::VERSION).is_some_and(|rest| {
            rest.is_empty() || rest.starts_with(';') || rest.starts_with(char::is_whitespace)
        })
    }

    /// RFC 8461 §3.1 `sts-text-record`, as a sender must read it: "if the resulting record is
    /// syntactically invalid, senders MUST assume" no policy, so anything off is refused.
    pub(crate) fn parse(text: &'a str) -> Result<Self, String> {
        let mut fields = text.split(';').map(|f| f.trim_matches([' ', '\t']));
        if fields.next() != Some(Self::VERSION) {
            return Err(format!("{text:?} does not begin with `v=STSv1;`"));
        }
        let mut id = None;
        let mut rest: Vec<&str> = fields.collect();
        // A trailing delimiter leaves one empty field.
        if rest.last() == Some(&"") {
            rest.pop();
        }
        if rest.is_empty() {
            return Err(format!("{text:?} has no `id` field"));
        }
        for f in rest {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| format!("{text:?}: field {f:?} is not key=value"))?;
            if k == "id" {
                if id.is_some() {
                    return Err(format!("{text:?} has two `id` fields"));
                }
                if v.is_empty() || v.len() > 32 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(format!("{text:?}: id {v:?} is not 1-32 letters and digits"));
                }
                id = Some(v);
            } else {
                let name_ok = !k.is_empty()
                    && k.len() <= 32
                    && k.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
                let value_ok = !v.is_empty()
                    && v.bytes()
                        .all(|b| (0x21..=0x7e).contains(&b) && b != b';' && b != b'=');
                if !name_ok || !value_ok {
                    return Err(format!("{text:?}: extension field {f:?} is malformed"));
                }
            }
        }
        let id = id.ok_or_else(|| format!("{text:?} has no `id` field"))?;
        Ok(StsRecord { id })
    }

    /// The id as it reads in any MTA-STS record, even one `parse` refuses: for saying which
    /// record a change replaced, not for deciding anything.
    pub(crate) fn loose_id(text: &'a str) -> Option<&'a str> {
        if !Self::is_ours(text) {
            return None;
        }
        text.split(';')
            .find_map(|field| field.trim().strip_prefix("id="))
    }

    pub(crate) fn id(&self) -> &'a str {
        self.id
    }
}

/// A policy with its body rendered once; cloning the body is a reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(crate) mode: Mode,
    pub(crate) mx: Vec<MxPattern>,
    pub(crate) max_age: u32,
    body: Bytes,
    id: PolicyId,
}

impl Policy {
    /// Callers have checked `max_age <= MAX_AGE_LIMIT`.
    pub(crate) fn new(mode: Mode, mx: Vec<MxPattern>, max_age: u32) -> Self {
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

    pub(crate) fn body(&self) -> &Bytes {
        &self.body
    }

    pub fn id(&self) -> &PolicyId {
        &self.id
    }

    /// Reads back a body this program rendered (the id history): refused unless it is exactly
    /// the bytes `Policy::new` renders for its fields, so the id is the same too.
    pub(crate) fn parse(body: &[u8]) -> Result<Policy, String> {
        let text = PolicyText::parse(body, Reading::Strict)?;
        let mut mx = Vec::with_capacity(text.mx.len());
        for p in text.mx {
            let (pattern, _) = MxPattern::parse(p).map_err(|e| e.0)?;
            if pattern.as_str() != p {
                return Err(format!(
                    "mx `{p}` is not written as we render it: `{pattern}`"
                ));
            }
            mx.push(pattern);
        }
        let policy = Policy::new(text.mode, mx, text.max_age);
        debug_assert_eq!(&policy.body()[..], body);
        Ok(policy)
    }

    /// Whether an MX host is covered by one of the patterns (RFC 8461 §4.1).
    pub(crate) fn matches_mx(&self, host: &str) -> bool {
        self.mx.iter().any(|p| p.matches(host))
    }
}

/// How a policy body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// What we serve and keep in the id history: the sender's rules, and exactly the bytes
    /// we render for the fields read.
    Strict,
    /// What a sending MTA accepts in a fetched policy (RFC 8461 §3.2): LF line ends, blanks
    /// around values, unknown keys, repeated fields (the first counts), `mx` values unchecked.
    Sender,
}

/// A policy body's fields as read; `mx` values as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyText<'a> {
    pub(crate) mode: Mode,
    pub(crate) mx: Vec<&'a str>,
    pub(crate) max_age: u32,
}

impl<'a> PolicyText<'a> {
    /// RFC 8461 §3.2: `key: value` lines, `version`, `mode`, `max_age` required, `mx`
    /// required unless mode is `none`.
    pub(crate) fn parse(body: &'a [u8], reading: Reading) -> Result<Self, String> {
        let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_owned())?;
        let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
        for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
            if line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| format!("line {line:?} is not `key: value`"))?;
            let v = v.trim_matches([' ', '\t']);
            // RFC 8461 §3.2: of a repeated field, senders use the first; later ones are ignored.
            match k {
                "version" if version.is_none() => version = Some(v),
                "mode" if mode.is_none() => mode = Some(v),
                "max_age" if max_age.is_none() => {
                    let n: u64 = v
                        .parse()
                        .map_err(|_| format!("max_age {v:?} is not a number"))?;
                    if n > u64::from(MAX_AGE_LIMIT) {
                        return Err(format!("max_age {n} exceeds {MAX_AGE_LIMIT}"));
                    }
                    max_age = Some(n as u32);
                }
                "mx" => mx.push(v),
                _ => {}
            }
        }
        if version != Some("STSv1") {
            return Err("no `version: STSv1`".into());
        }
        let mode = mode.ok_or("no `mode`")?;
        let mode = match mode {
            "enforce" => Mode::Enforce,
            "testing" => Mode::Testing,
            "none" => Mode::None,
            _ => return Err(format!("mode {mode:?} is not enforce, testing or none")),
        };
        let max_age = max_age.ok_or("no `max_age`")?;
        if mx.is_empty() && mode != Mode::None {
            return Err("no `mx` line".into());
        }
        let read = PolicyText { mode, mx, max_age };
        if reading == Reading::Strict && render(mode, &read.mx, max_age) != body {
            return Err(
                "not in the form we render (CRLF, one space, fields in order, each once)".into(),
            );
        }
        Ok(read)
    }
}

/// RFC 8461 §3.2: "key/value pairs separated by CRLF"; version first, then mode, one `mx`
/// line per pattern in config order, then max_age.
fn render<P: AsRef<str>>(mode: Mode, mx: &[P], max_age: u32) -> Vec<u8> {
    let mx = mx.iter().map(AsRef::as_ref);
    let mut body = String::with_capacity(48 + mx.clone().map(|p| p.len() + 6).sum::<usize>());
    body.push_str("version: STSv1\r\nmode: ");
    body.push_str(mode.as_str());
    body.push_str("\r\n");
    for pattern in mx {
        body.push_str("mx: ");
        body.push_str(pattern);
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
            assert_eq!(Policy::parse(p.body()), Ok(p.clone()));
        }
        for bad in [
            "version: STSv1\r\nmode: enforce\r\nmax_age: 1\r\nmx: a.example\r\n",
            "version: STSv1\nmode: none\nmax_age: 1\n",
            "version: STSv1\r\nmode: none\r\nmax_age: 99999999999\r\n",
            // What a sender tolerates, we do not write.
            "version: STSv1\r\nmode:  none\r\nmax_age: 1\r\n",
            "version: STSv1\r\nmode: none\r\nmax_age: 1\r\nmax_age: 2\r\n",
            "version: STSv1\r\nmode: none\r\nmax_age: 1\r\nfoo: x\r\n",
            "version: STSv1\r\nmode: none\r\nmax_age: 01\r\n",
            "version: STSv1\r\nmode: none\r\nmax_age: 1",
            "version: STSv1\r\nmode: enforce\r\nmx: MAIL.example\r\nmax_age: 1\r\n",
            "version: STSv1\r\nmode: enforce\r\nmx: mail\r\nmax_age: 1\r\n",
        ] {
            assert!(Policy::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    /// RFC 8461 §3.2 as a sender reads it (moved from drift's own parser).
    #[test]
    fn sender_reading() {
        fn ok(body: &[u8]) -> Result<PolicyText<'_>, String> {
            PolicyText::parse(body, Reading::Sender)
        }
        assert_eq!(
            ok(b"version: STSv1\r\nmode: enforce\r\nmx: a.example\r\nmax_age: 86400\r\n"),
            Ok(PolicyText {
                mode: Mode::Enforce,
                mx: vec!["a.example"],
                max_age: 86400
            })
        );
        assert!(ok(b"version: STSv1\nmode: none\nmax_age: 0\n").is_ok());
        // Values unchecked beyond the grammar, unknown keys and blanks around values ignored.
        assert!(
            ok(b"version: STSv1\r\nmode:\tenforce \r\nmx: a\r\nx: y\r\nmax_age: 1\r\n").is_ok()
        );
        // The first of a repeated field counts (RFC 8461 §3.2): a later bad one is ignored,
        // a first bad one is not rescued by a later good one.
        assert!(ok(
            b"version: STSv1\r\nmode: none\r\nmode: strict\r\nmax_age: 1\r\nmax_age: 99999999999\r\n"
        )
        .is_ok());
        assert!(ok(b"version: STSv1\r\nmode: strict\r\nmode: none\r\nmax_age: 1\r\n").is_err());
        for bad in [
            &b"mode: enforce\r\nmx: a\r\nmax_age: 1\r\n"[..],
            b"version: STSv1\r\nmode: strict\r\nmx: a\r\nmax_age: 1\r\n",
            b"version: STSv1\r\nmode: enforce\r\nmax_age: 1\r\n",
            b"version: STSv1\r\nmode: enforce\r\nmx: a\r\nmax_age: 31557601\r\n",
            b"version: STSv1\r\nmode: enforce\r\nmx: a\r\n",
            b"version: STSv1\r\nmode: none\r\nmax_age: -1\r\n",
            b"version: STSv1\r\nmode: none\r\nmax_age: 1\r\nno colon\r\n",
            b"version: STSv1\r\nmode: none\r\nmax_age: 1\r\n\xff\r\n",
            b"<html>",
        ] {
            assert!(ok(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn sts_record_renders_and_reads_back() {
        let id = Policy::new(Mode::Testing, mx(&["mail.example.org"]), 604800)
            .id()
            .clone();
        let text = StsRecord::render(&id);
        assert_eq!(text, "v=STSv1; id=53489ece145c54a18e5e1e0b1091f6a8;");
        assert!(StsRecord::is_ours(&text));
        assert_eq!(StsRecord::parse(&text).map(|r| r.id()), Ok(id.as_str()));
    }

    /// RFC 8461 §3.1 `sts-text-record` (moved from drift's own parser).
    #[test]
    fn sts_record_syntax() {
        let id = |t| StsRecord::parse(t).map(|r| r.id());
        assert_eq!(id("v=STSv1; id=20160831085700Z;"), Ok("20160831085700Z"));
        assert_eq!(id("v=STSv1;id=abc"), Ok("abc"));
        assert_eq!(id("v=STSv1; id=abc; ext_1=x"), Ok("abc"));
        for bad in [
            "v=STSv1;",
            "v=STSv1; id=;",
            "v=STSv1; id=a-b;",
            &format!("v=STSv1; id={};", "a".repeat(33)),
            "id=abc; v=STSv1;",
            "v=STSv1; id=a; id=b;",
            "v=STSv1; id=a; =x;",
            "v=STSv10; id=a;",
        ] {
            assert!(StsRecord::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sts_record_ownership_and_loose_id() {
        assert!(StsRecord::is_ours("v=STSv1; id=1;"));
        assert!(StsRecord::is_ours("v=STSv1"));
        assert!(StsRecord::is_ours("v=STSv1 id=1"));
        assert!(!StsRecord::is_ours("v=STSv10; id=1;"));
        assert!(!StsRecord::is_ours("x v=STSv1"));
        assert!(!StsRecord::is_ours("v=TLSRPTv1; rua=mailto:a@b.example"));
        // The id of a record `parse` refuses, to name what a change replaced.
        assert_eq!(StsRecord::loose_id("v=STSv1; id=a-b;"), Some("a-b"));
        assert_eq!(StsRecord::loose_id("v=STSv1;  id=abc ; id=x"), Some("abc"));
        assert_eq!(StsRecord::loose_id("v=STSv1;"), None);
        assert_eq!(StsRecord::loose_id("v=STSv10; id=abc"), None);
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
