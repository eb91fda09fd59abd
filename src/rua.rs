//! The TLS-RPT record we publish (RFC 8460 §3): the `rua` URIs and the `_smtp._tls` TXT text.

use std::fmt;

use crate::name::check_hostname;

/// One reporting URI: RFC 8460 §3 allows `mailto:` and `https:`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Rua(Box<str>);

impl Rua {
    pub(crate) fn parse(input: &str) -> Result<Self, String> {
        // RFC 8460 §3: "commas (ASCII 0x2C), exclamation points (ASCII 0x21), and semicolons
        // (ASCII 0x3B) MUST be encoded" since they delimit the record's fields.
        if let Some(c) = input.chars().find(|c| matches!(c, ',' | '!' | ';')) {
            let enc = match c {
                ',' => "%2C",
                '!' => "%21",
                _ => "%3B",
            };
            return Err(format!(
                "rua `{input}`: `{c}` must be percent-encoded as {enc} (RFC 8460 §3)"
            ));
        }
        if let Some(c) = input
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            return Err(format!(
                "rua `{input}`: {c:?} is not allowed in a URI; percent-encode it"
            ));
        }
        check_percent(input)?;
        let lower = input.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("mailto:") {
            let addr = rest.split('?').next().unwrap_or_default();
            let host = match addr.rsplit_once('@') {
                Some((local, host)) if !local.is_empty() => host,
                _ => {
                    return Err(format!(
                        "rua `{input}`: a mailto: URI needs an address, as in mailto:tlsrpt@example.org"
                    ))
                }
            };
            check_hostname(host).map_err(|e| format!("rua `{input}`: {e}"))?;
        } else if let Some(rest) = lower.strip_prefix("https://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if authority.contains('@') {
                // The URI is published in DNS: the credentials would be anyone's. Not repeated.
                return Err(format!(
                    "rua `{}`: credentials in the URI (`user:password@`) would be published in DNS for anyone to read",
                    mta_stsd_providers::redact_url(input)
                ));
            }
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
            check_hostname(host).map_err(|e| format!("rua `{input}`: {e}"))?;
        } else {
            return Err(format!(
                "rua `{input}` must be a mailto: or https:// URI (RFC 8460 §3)"
            ));
        }
        Ok(Rua(input.into()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// For an `https://` URI: its host (lowercased, without port) and path (`/` when empty).
    pub(crate) fn https_target(&self) -> Option<(String, &str)> {
        let rest = self
            .0
            .get(..8)?
            .eq_ignore_ascii_case("https://")
            .then(|| &self.0[8..])?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let path = rest[end..].split(['?', '#']).next().unwrap_or_default();
        let path = if path.is_empty() { "/" } else { path };
        Some((host.trim_end_matches('.').to_ascii_lowercase(), path))
    }
}

fn check_percent(input: &str) -> Result<(), String> {
    let b = input.as_bytes();
    for (i, _) in input.match_indices('%') {
        let ok = b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
        if !ok {
            return Err(format!(
                "rua `{input}`: `%` must start a percent-encoding such as %2C"
            ));
        }
    }
    Ok(())
}

impl fmt::Display for Rua {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Rua {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// RFC 8460 §3: the record begins with this version tag.
pub(crate) const VERSION: &str = "v=TLSRPTv1";

/// RFC 8460 §3: `v=TLSRPTv1; rua=<uri>[,<uri>…];`
pub(crate) fn record_text(rua: &[Rua]) -> String {
    let list: Vec<&str> = rua.iter().map(Rua::as_str).collect();
    format!("{VERSION}; rua={};", list.join(","))
}

/// Whether a TXT record is a TLS-RPT record (ours to manage): the version tag ends at `;`,
/// whitespace or the end, so `v=TLSRPTv10` is not one.
pub(crate) fn is_ours(text: &str) -> bool {
    text.strip_prefix(VERSION).is_some_and(|rest| {
        rest.is_empty() || rest.starts_with(';') || rest.starts_with(char::is_whitespace)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts() {
        for ok in [
            "mailto:tlsrpt@example.org",
            "mailto:tls%2Crpt@example.org",
            "https://reports.example.org/tlsrpt",
            "https://reports.example.org:8443/v1?a=b",
        ] {
            assert!(Rua::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn https_target() {
        let t = |s: &str| {
            let r = Rua::parse(s).unwrap();
            r.https_target().map(|(h, p)| (h, p.to_owned()))
        };
        assert_eq!(
            t("https://Reports.Example.org:8443/v1/tlsrpt?a=b"),
            Some(("reports.example.org".into(), "/v1/tlsrpt".into()))
        );
        assert_eq!(
            t("https://r.example.org"),
            Some(("r.example.org".into(), "/".into()))
        );
        assert_eq!(t("mailto:tlsrpt@example.org"), None);
    }

    #[test]
    fn rejects() {
        for bad in [
            "mailto:a@example.org,mailto:b@example.org",
            "mailto:a!b@example.org",
            "https://x.example/a;b",
            "http://reports.example.org/",
            "tlsrpt@example.org",
            "mailto:@example.org",
            "mailto:a@localhost",
            "https://exa mple.org/",
            "https://x.example/%zz",
        ] {
            assert!(Rua::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn record() {
        let rua = [
            Rua::parse("mailto:a@example.org").unwrap(),
            Rua::parse("https://r.example.org/x").unwrap(),
        ];
        assert_eq!(
            record_text(&rua),
            "v=TLSRPTv1; rua=mailto:a@example.org,https://r.example.org/x;"
        );
    }
}
