//! Report fields in our logs: a sender writes them, so each is escaped (no newline, ANSI
//! escape or other control character reaches a log line as itself) and cut to a bound (a
//! 3 MB `report-id` is not a 3 MB line). The one helper every log of a report field uses.

use std::fmt;

/// Characters of a field shown before it is cut.
pub(crate) const SHOWN: usize = 128;

/// Characters of a whole line that quotes fields (an error message) before it is cut.
pub(crate) const LINE: usize = 1024;

/// `Display`s `s` escaped and cut: `"a\nb"` shows as `a\nb`, a long one as its first
/// [`SHOWN`] characters then `…(N bytes)`.
pub(crate) struct Untrusted<'a>(pub &'a str);

/// A whole log line or message that quotes untrusted text: escaped and cut at [`LINE`].
pub(crate) fn line(s: &str) -> String {
    escaped(s, LINE).to_string()
}

struct Escaped<'a>(&'a str, usize);

fn escaped(s: &str, max: usize) -> Escaped<'_> {
    Escaped(s, max)
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escaped(self.0, SHOWN).fmt(f)
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == self.1 {
                return write!(f, "…({} bytes)", self.0.len());
            }
            if c.is_control() || c == '\\' || is_invisible(c) {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Characters that change how a terminal shows the rest of the line (bidi overrides, line and
/// paragraph separators) without being control characters.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_and_cut() {
        let s = |x: &str| Untrusted(x).to_string();
        assert_eq!(s("abc-123@example"), "abc-123@example");
        assert_eq!(
            s("id\n2026-12-07T00:00:00Z INFO forged\x1b[2K\r\u{202e}"),
            "id\\n2026-12-07T00:00:00Z INFO forged\\u{1b}[2K\\r\\u{202e}"
        );
        assert_eq!(
            s("a\\n"),
            "a\\\\n",
            "a backslash is escaped, so an escape is unambiguous"
        );
        let long = "x".repeat(3_000_000);
        let shown = s(&long);
        assert_eq!(shown, format!("{}…(3000000 bytes)", "x".repeat(SHOWN)));
        assert_eq!(
            s(&"é".repeat(SHOWN)),
            "é".repeat(SHOWN),
            "exactly SHOWN: not cut"
        );
        assert_eq!(line("a\nb"), "a\\nb");
        assert!(line(&long).starts_with(&"x".repeat(LINE)));
        assert!(line(&long).ends_with("…(3000000 bytes)"));
    }
}
