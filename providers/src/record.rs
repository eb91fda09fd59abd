//! DNS records at the names mta-stsd owns, as read from and written to providers, and their
//! zone-file (RFC 1035 §5.1) form.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RData {
    /// The logical text: the character-strings concatenated (RFC 7208 §3.3 style, as RFC 8461
    /// §3.1 and RFC 8460 §3 read TXT records).
    Txt(String),
    /// A fully qualified, lowercase target with its trailing dot.
    Cname(String),
    /// RFC 6698 §2.1: a TLSA record, at `_25._tcp.<mx host>.` for DANE (RFC 7672).
    Tlsa(Tlsa),
    /// Any other type found at one of our names: never written, only reported as a conflict.
    Other { rtype: String, text: String },
}

impl RData {
    /// TLSA data as an API lists it (RFC 6698 §2.2 presentation form); what does not parse is
    /// kept as it was read, so it is reported and never rewritten.
    pub fn tlsa_text(text: &str) -> RData {
        Tlsa::parse(text).map_or_else(
            || RData::Other {
                rtype: "TLSA".to_owned(),
                text: text.to_owned(),
            },
            RData::Tlsa,
        )
    }

    pub fn type_name(&self) -> &str {
        match self {
            RData::Txt(_) => "TXT",
            RData::Cname(_) => "CNAME",
            RData::Tlsa(_) => "TLSA",
            RData::Other { rtype, .. } => rtype,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    /// Fully qualified and lowercase, with the trailing dot.
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

impl Record {
    pub fn txt(name: impl Into<String>, ttl: u32, text: impl Into<String>) -> Self {
        Record {
            name: name.into(),
            ttl,
            data: RData::Txt(text.into()),
        }
    }

    pub fn cname(name: impl Into<String>, ttl: u32, target: impl Into<String>) -> Self {
        Record {
            name: name.into(),
            ttl,
            data: RData::Cname(target.into()),
        }
    }

    pub fn tlsa(name: impl Into<String>, ttl: u32, tlsa: Tlsa) -> Self {
        Record {
            name: name.into(),
            ttl,
            data: RData::Tlsa(tlsa),
        }
    }

    /// The data as a zone file shows it (`3 1 1 AB…`, a quoted TXT, a CNAME target).
    pub fn data_text(&self) -> String {
        match &self.data {
            RData::Txt(text) => txt_presentation(text),
            RData::Cname(target) => target.clone(),
            RData::Tlsa(t) => t.to_string(),
            RData::Other { text, .. } => text.clone(),
        }
    }

    /// Same name, type and data; the TTL aside.
    pub fn same_data(&self, other: &Record) -> bool {
        self.name == other.name && self.data == other.data
    }
}

impl fmt::Display for Record {
    /// One zone-file line: `name TTL IN TYPE rdata`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\t{}\tIN\t{}\t",
            self.name,
            self.ttl,
            self.data.type_name()
        )?;
        match &self.data {
            RData::Txt(text) => f.write_str(&txt_presentation(text)),
            RData::Cname(target) => f.write_str(target),
            RData::Tlsa(t) => write!(f, "{t}"),
            RData::Other { text, .. } => f.write_str(text),
        }
    }
}

/// RFC 6698 §2.1 TLSA data; names per RFC 7218 (`DANE-EE(3) SPKI(1) SHA2-256(1)` is "3 1 1").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tlsa {
    /// Certificate usage: 2 DANE-TA, 3 DANE-EE (RFC 7218 §2.1).
    pub usage: u8,
    /// 0 Cert, 1 SPKI (RFC 7218 §2.2).
    pub selector: u8,
    /// 0 Full, 1 SHA2-256, 2 SHA2-512 (RFC 7218 §2.3).
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// RFC 6698 §2.2 presentation form: three numbers and the data in hex, which may be split
    /// by whitespace. `None` when it is not that.
    pub fn parse(s: &str) -> Option<Tlsa> {
        let mut parts = s.split_ascii_whitespace();
        let usage = parts.next()?.parse().ok()?;
        let selector = parts.next()?.parse().ok()?;
        let matching = parts.next()?.parse().ok()?;
        let hex: String = parts.collect();
        if hex.is_empty() || !hex.len().is_multiple_of(2) || hex.len() > 2 * 1024 {
            return None;
        }
        let data = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Tlsa {
            usage,
            selector,
            matching,
            data,
        })
    }
}

impl fmt::Display for Tlsa {
    /// `3 1 1 ABCD…`, the data in upper-case hex as BIND prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} ", self.usage, self.selector, self.matching)?;
        for b in &self.data {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// RFC 1035 §3.3.14: a TXT record is a sequence of character-strings of at most 255 octets.
/// An empty text is still one (empty) string.
pub fn txt_strings(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let empty: &[u8] = &[];
    let first = text.is_empty().then_some(empty);
    first.into_iter().chain(text.chunks(255))
}

/// The text as RFC 1035 §5.1 character-strings: split per [`txt_strings`], each quoted, `"` and
/// `\` escaped with `\`, other non-printable octets as `\DDD`, separated by spaces. What a zone
/// file holds, and what PowerDNS's API takes as TXT `content`.
pub fn txt_presentation(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for (i, chunk) in txt_strings(text.as_bytes()).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push('"');
        for &b in chunk {
            match b {
                b'"' | b'\\' => {
                    out.push('\\');
                    out.push(b as char);
                }
                0x20..=0x7e => out.push(b as char),
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
        out.push('"');
    }
    out
}

/// The logical text of TXT data in presentation form: character-strings (quoted, or bare words)
/// separated by whitespace, concatenated, escapes (`\X`, `\DDD`) resolved. `None` when the
/// input is not well formed (an unterminated quote, a bad escape).
pub fn parse_txt_presentation(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let quoted = bytes[i] == b'"';
        if quoted {
            i += 1;
        }
        loop {
            let Some(&b) = bytes.get(i) else {
                // The end of the input ends a bare word, never a quoted string.
                if quoted {
                    return None;
                }
                break;
            };
            match b {
                b'"' if quoted => {
                    i += 1;
                    break;
                }
                b'"' => return None,
                b if !quoted && b.is_ascii_whitespace() => break,
                b'\\' => {
                    let digits = bytes
                        .get(i + 1..i + 4)
                        .filter(|d| d.iter().all(u8::is_ascii_digit));
                    if let Some(d) = digits {
                        let n = d.iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'));
                        out.push(u8::try_from(n).ok()?);
                        i += 4;
                    } else {
                        out.push(*bytes.get(i + 1)?);
                        i += 2;
                    }
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `name` lowercase with its trailing dot: how providers compare names.
pub fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_quotes() {
        let r = Record::txt(
            "_mta-sts.example.org.",
            300,
            format!("{}\"\\\u{1}", "a".repeat(256)),
        );
        let line = r.to_string();
        assert!(line.starts_with("_mta-sts.example.org.\t300\tIN\tTXT\t\""));
        assert!(line.ends_with(r#"" "a\"\\\001""#), "{line}");
        assert_eq!(txt_strings(b"").count(), 1);
        assert_eq!(txt_strings(&[b'x'; 510]).count(), 2);
        assert_eq!(txt_strings(&[b'x'; 511]).count(), 3);
        let c = Record::cname("mta-sts.example.org.", 60, "mail.example.org.");
        assert_eq!(
            c.to_string(),
            "mta-sts.example.org.\t60\tIN\tCNAME\tmail.example.org."
        );
    }

    #[test]
    fn tlsa_presentation() {
        let t = Tlsa::parse("3 1 1 0aFF 10").expect("valid");
        assert_eq!((t.usage, t.selector, t.matching), (3, 1, 1));
        assert_eq!(t.data, vec![0x0a, 0xff, 0x10]);
        let r = Record::tlsa("_25._tcp.mail.example.org.", 300, t.clone());
        assert_eq!(
            r.to_string(),
            "_25._tcp.mail.example.org.\t300\tIN\tTLSA\t3 1 1 0AFF10"
        );
        assert_eq!(Tlsa::parse(&t.to_string()), Some(t));
        for bad in ["3 1 1", "3 1 1 abc", "3 1 x ab", "300 1 1 ab", "3 1 1 zz"] {
            assert_eq!(Tlsa::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn presentation_round_trips() {
        for text in [
            "v=STSv1; id=20240101;",
            "",
            "quote \" and backslash \\",
            "caf\u{e9}",
            &"x".repeat(600),
        ] {
            let p = txt_presentation(text);
            assert_eq!(parse_txt_presentation(&p).as_deref(), Some(text), "{p}");
        }
    }

    #[test]
    fn presentation_forms() {
        let table: &[(&str, Option<&str>)] = &[
            (r#""v=STSv1; id=1;""#, Some("v=STSv1; id=1;")),
            (r#""foo" "bar""#, Some("foobar")),
            (r#""a\"b""#, Some("a\"b")),
            (r#""\065\066""#, Some("AB")),
            ("bare words", Some("barewords")),
            (r#""unterminated"#, None),
            (r#""bad\"#, None),
            (r#""\999""#, None),
        ];
        for (input, want) in table {
            assert_eq!(parse_txt_presentation(input).as_deref(), *want, "{input}");
        }
    }
}
