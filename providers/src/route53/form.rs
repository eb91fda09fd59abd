//! How Route 53 writes what we read and send: TXT values as quoted strings, and the order of
//! names in its listings.

use crate::record::txt_strings;

/// Route 53's listing order: "first by DNS name with the labels reversed, for example:
/// com.example.www." (API Reference, ListResourceRecordSets), trailing dot included.
pub fn aws_key(name: &str) -> String {
    let mut labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    labels.reverse();
    format!("{}.", labels.join("."))
}

/// Whether `a` is listed before `b` for certain: by Route 53's order and by the same without
/// the trailing dot (as the moto emulator sorts), which differ only for names holding a
/// character below `.` (`-`, `*`).
pub fn before(a: &str, b: &str) -> bool {
    let (ka, kb) = (aws_key(a), aws_key(b));
    ka < kb && ka.trim_end_matches('.') < kb.trim_end_matches('.')
}

/// A TXT text as Route 53 takes it: strings of at most 255 octets (RFC 1035 §3.3.14), each
/// quoted, `"` and `\` escaped with `\`, other non-printable octets as `\ooo` octal (Route 53
/// Developer Guide, "TXT record type").
pub fn txt_value(text: &str) -> String {
    let mut out = String::new();
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
                _ => out.push_str(&format!("\\{b:03o}")),
            }
        }
        out.push('"');
    }
    out
}

/// The logical text of a listed TXT value: its quoted strings joined, escapes resolved. A
/// value without quotes is taken as it is.
pub fn txt_text(value: &str) -> String {
    let b = value.trim().as_bytes();
    if b.first() != Some(&b'"') {
        return value.trim().to_owned();
    }
    let mut out = Vec::with_capacity(b.len());
    let (mut i, mut quoted) = (0, false);
    while i < b.len() {
        match b[i] {
            b'"' => quoted = !quoted,
            b'\\' => {
                let octal = b
                    .get(i + 1..i + 4)
                    .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
                if let Some(d) = octal {
                    out.push(
                        d.iter()
                            .fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')),
                    );
                    i += 3;
                } else if let Some(&c) = b.get(i + 1) {
                    out.push(c);
                    i += 1;
                }
            }
            c if quoted => out.push(c),
            _ => {} // the space between strings
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_values_round_trip_in_255_octet_strings() {
        for text in ["v=STSv1; id=1;", "", "q\"b\\s\u{1}", &"x".repeat(600)] {
            let v = txt_value(text);
            assert_eq!(txt_text(&v), text, "{v}");
        }
        assert_eq!(txt_value(&"y".repeat(300)).matches('"').count(), 4);
        assert_eq!(txt_text("\"a\" \"b\""), "ab");
        assert_eq!(txt_text("\"\\042\""), "\"");
        assert_eq!(txt_text("bare"), "bare");
    }

    #[test]
    fn listing_order() {
        assert!(before("_mta-sts.a.example.org.", "mta-sts.a.example.org."));
        assert!(before("mta-sts.a.example.org.", "_mta-sts.b.example.org."));
        // `-` sorts below `.`: the two orders disagree, so neither is "certainly before".
        assert!(!before("mta.a.example.org.", "mta-sts.a.example.org."));
        assert!(!before("mta-sts.a.example.org.", "mta.a.example.org."));
    }
}
