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
    /// Any other type found at one of our names: never written, only reported as a conflict.
    Other { rtype: String, text: String },
}

impl RData {
    pub fn type_name(&self) -> &str {
        match self {
            RData::Txt(_) => "TXT",
            RData::Cname(_) => "CNAME",
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
            RData::Other { text, .. } => f.write_str(text),
        }
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
