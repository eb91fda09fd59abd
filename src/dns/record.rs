//! DNS records as mta-stsd manages them, and their zone-file (RFC 1035 §5.1) form.

use std::fmt;

use crate::name::DomainName;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RData {
    /// The logical text; split into 255-octet strings only on the wire and in zone files.
    Txt(String),
    Cname(DomainName),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// Fully qualified, with the trailing dot.
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

impl fmt::Display for Record {
    /// One zone-file line: `name TTL IN TYPE rdata`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\t{}\tIN\t", self.name, self.ttl)?;
        match &self.data {
            RData::Txt(text) => {
                f.write_str("TXT\t")?;
                for (i, chunk) in txt_strings(text.as_bytes()).enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write_quoted(f, chunk)?;
                }
                Ok(())
            }
            RData::Cname(target) => write!(f, "CNAME\t{}.", target),
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
        let r = Record {
            name: "_mta-sts.example.org.".into(),
            ttl: 300,
            data: RData::Txt(format!("{}\"\\\u{1}", "a".repeat(256))),
        };
        let line = r.to_string();
        assert!(line.starts_with("_mta-sts.example.org.\t300\tIN\tTXT\t\""));
        assert!(line.ends_with(r#"" "a\"\\\001""#), "{line}");
        assert_eq!(txt_strings(b"").count(), 1);
        assert_eq!(txt_strings(&[b'x'; 510]).count(), 2);
        assert_eq!(txt_strings(&[b'x'; 511]).count(), 3);
    }
}
