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
            RData::Txt(text) => {
                for (i, chunk) in txt_strings(text.as_bytes()).enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write_quoted(f, chunk)?;
                }
                Ok(())
            }
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

/// RFC 1035 §5.1: `"` and `\` are escaped with `\`, other non-printable octets as `\DDD`.
fn write_quoted(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str("\"")?;
    for &b in bytes {
        match b {
            b'"' | b'\\' => write!(f, "\\{}", b as char)?,
            0x20..=0x7e => write!(f, "{}", b as char)?,
            _ => write!(f, "\\{b:03}")?,
        }
    }
    f.write_str("\"")
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
}
