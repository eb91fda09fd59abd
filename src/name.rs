//! Domain names as mta-stsd stores them: lowercase A-labels without a trailing dot.
//!
//! A [`DomainName`] exists only if it parsed, so the rest of the code never re-checks names.

use std::fmt;
use std::sync::Arc;

/// Why a name was refused; the text is shown to the admin as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameError(pub String);

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What parsing had to change in the input, worth a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Converted {
    No,
    /// U-labels were turned into A-labels (IDNA).
    Idna,
}

/// A lowercase A-label hostname of two or more labels, without a trailing dot. Clones share
/// the text: a million names are held once by the reload cache, the config, the served
/// snapshot and the id history together.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct DomainName(Arc<str>);

impl DomainName {
    /// Parses a name written without a trailing dot.
    pub(crate) fn parse(input: &str) -> Result<(Self, Converted), NameError> {
        if input.ends_with('.') {
            return Err(NameError(format!(
                "`{input}`: write the name without the trailing dot"
            )));
        }
        let (ascii, converted) = to_a_labels(input)?;
        check_hostname(&ascii)?;
        Ok((DomainName(ascii.into()), converted))
    }

    /// Parses a fully qualified name, with or without its trailing dot.
    pub(crate) fn parse_fqdn(input: &str) -> Result<(Self, Converted), NameError> {
        Self::parse(input.strip_suffix('.').unwrap_or(input))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, shared (no copy).
    pub(crate) fn shared(&self) -> Arc<str> {
        self.0.clone()
    }

    /// The name with its trailing dot, as zone files and DNS messages want it.
    pub(crate) fn fqdn(&self) -> String {
        format!("{}.", self.0)
    }

    /// `mta-sts.<domain>`, the policy host (RFC 8461 §3.3).
    pub(crate) fn policy_host(&self) -> String {
        format!("mta-sts.{}", self.0)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The configured domain a host name asks for (SPEC "Host → domain"): port and trailing dot
/// stripped, lowercased, U-labels converted, `mta-sts.` removed. `None` for IP literals.
pub(crate) fn domain_of_host(host: &str) -> Option<String> {
    let (mut name, _) = to_a_labels(bare_host(host)?).ok()?;
    if let Some(rest) = name.strip_prefix("mta-sts.") {
        name = rest.to_owned();
    }
    Some(name)
}

/// A Host header or SNI without its `:port` and one trailing dot; `None` for IP literals in
/// brackets. Case is left alone.
pub(crate) fn bare_host(host: &str) -> Option<&str> {
    if host.starts_with('[') {
        return None;
    }
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    Some(host.strip_suffix('.').unwrap_or(host))
}

/// Lowercases ASCII names; runs UTS #46 (IDNA) when the name has U-labels or A-labels to check.
pub(crate) fn to_a_labels(input: &str) -> Result<(String, Converted), NameError> {
    if input.is_empty() {
        return Err(NameError("empty name".into()));
    }
    if input.is_ascii() && !input.to_ascii_lowercase().contains("xn--") {
        return Ok((input.to_ascii_lowercase(), Converted::No));
    }
    let ascii = idna::domain_to_ascii_strict(input).map_err(|_| {
        NameError(format!(
            "`{input}` is not a valid internationalized name (IDNA)"
        ))
    })?;
    let converted = if input.is_ascii() {
        Converted::No
    } else {
        Converted::Idna
    };
    Ok((ascii, converted))
}

/// RFC 1123 §2.1 host names: LDH labels of 1–63 octets, 253 octets in all; at least two labels.
pub(crate) fn check_hostname(name: &str) -> Result<(), NameError> {
    if looks_like_ip(name) {
        return Err(NameError(format!(
            "`{name}` is an IP address; a host name is required"
        )));
    }
    if name.len() > 253 {
        return Err(NameError(format!("`{name}` is longer than 253 characters")));
    }
    let mut labels = 0;
    for label in name.split('.') {
        labels += 1;
        if label.is_empty() {
            return Err(NameError(format!("`{name}` has an empty label")));
        }
        if label.len() > 63 {
            return Err(NameError(format!(
                "`{name}`: label `{label}` is longer than 63 characters"
            )));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(NameError(format!(
                "`{name}`: character `{c}` is not allowed in a host name (letters, digits and `-` only)"
            )));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameError(format!(
                "`{name}`: label `{label}` begins or ends with `-`"
            )));
        }
    }
    if labels < 2 {
        return Err(NameError(format!(
            "`{name}` is a single label; a fully qualified name is required"
        )));
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(NameError(format!(
            "`{name}`: the last label is all digits, which no top-level domain is"
        )));
    }
    Ok(())
}

/// Why a fully qualified name (trailing dot optional) cannot be held by the DNS, if so.
/// RFC 1035 §2.3.4: "labels 63 octets or less", "names 255 octets or less" (in wire form:
/// each label's length octet, its text, and the root's zero octet).
pub(crate) fn wire_problem(fqdn: &str) -> Option<String> {
    let text = fqdn.strip_suffix('.').unwrap_or(fqdn);
    if let Some(label) = text.split('.').find(|l| l.len() > 63) {
        return Some(format!(
            "`{fqdn}`: label `{label}` is {} octets, over the DNS limit of 63 (RFC 1035 §2.3.4)",
            label.len()
        ));
    }
    let octets = text.len() + 2;
    (octets > 255).then(|| {
        format!("`{fqdn}` is {octets} octets in DNS, over the limit of 255 (RFC 1035 §2.3.4)")
    })
}

fn looks_like_ip(name: &str) -> bool {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_length_counts_length_octets_and_the_root() {
        // 253 characters of text are 255 octets on the wire: the most a name may be.
        let label = "a".repeat(63);
        let longest = format!("{label}.{label}.{label}.{}.", "b".repeat(61));
        assert_eq!(longest.len(), 254);
        assert_eq!(wire_problem(&longest), None);
        let over = format!("{label}.{label}.{label}.{}.", "b".repeat(62));
        let why = wire_problem(&over).expect("256 octets");
        assert!(why.contains("256 octets"), "{why}");
        let why = wire_problem(&format!("{}.example.", "d".repeat(64))).expect("long label");
        assert!(why.contains("64 octets, over the DNS limit of 63"), "{why}");
        assert_eq!(wire_problem("_smtp._tls.example.org."), None);
    }

    #[test]
    fn accepts_and_normalizes() {
        let cases = [
            ("Example.ORG", "example.org", Converted::No),
            ("mail-1.example.org", "mail-1.example.org", Converted::No),
            ("bücher.example", "xn--bcher-kva.example", Converted::Idna),
            (
                "xn--bcher-kva.example",
                "xn--bcher-kva.example",
                Converted::No,
            ),
        ];
        for (input, want, conv) in cases {
            let (name, c) = DomainName::parse(input).unwrap();
            assert_eq!(name.as_str(), want, "{input}");
            assert_eq!(c, conv, "{input}");
        }
    }

    #[test]
    fn rejects() {
        for input in [
            "",
            "example.org.",
            "localhost",
            "192.0.2.1",
            "[2001:db8::1]",
            "a..b",
            "-a.example",
            "a_b.example",
            "a.123",
            "xn--zz.example",
            &format!("{}.example", "a".repeat(64)),
        ] {
            assert!(DomainName::parse(input).is_err(), "{input:?} accepted");
        }
    }

    #[test]
    fn host_to_domain() {
        for (host, want) in [
            ("mta-sts.example.org", Some("example.org")),
            ("MTA-STS.Example.ORG.", Some("example.org")),
            ("mta-sts.example.org:8443", Some("example.org")),
            ("example.org", Some("example.org")),
            ("[::1]:443", None),
            ("", None),
        ] {
            assert_eq!(domain_of_host(host).as_deref(), want, "{host}");
        }
    }

    #[test]
    fn fqdn_takes_either_form() {
        assert_eq!(
            DomainName::parse_fqdn("mail.example.org.")
                .unwrap()
                .0
                .as_str(),
            "mail.example.org"
        );
        assert_eq!(
            DomainName::parse_fqdn("mail.example.org").unwrap().0.fqdn(),
            "mail.example.org."
        );
    }
}
