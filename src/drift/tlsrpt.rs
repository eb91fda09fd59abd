//! The `_smtp._tls` TXT record (RFC 8460 §3): exactly one `v=TLSRPTv1` equal to the config's,
//! or none when no TLSRPT is configured.

use hickory_proto::rr::RecordType;

use super::dns::Dns;
use super::report::{Check, Finding, Severity};
use crate::config::Domain;
use crate::rua::{is_ours, record_text};

pub(crate) async fn check(dns: &Dns, d: &Domain) -> Vec<Finding> {
    let name = format!("_smtp._tls.{}.", d.name);
    let ours: Vec<String> = match dns.lookup(&name, RecordType::TXT).await {
        Ok(a) => a.txt.into_iter().filter(|t| is_ours(t)).collect(),
        Err(e) => {
            return vec![Finding::new(
                Severity::Unknown,
                Check::Tlsrpt,
                format!("could not look up {name}: {e}"),
                "check the resolver ([drift] resolver)",
            )]
        }
    };
    let want = (!d.dns.tlsrpt.is_empty()).then(|| record_text(&d.dns.tlsrpt));
    let (severity, message, hint) = match (&want, ours.as_slice()) {
        (None, []) => {
            return vec![Finding::passed(
                Check::Tlsrpt,
                format!("{name}: no v=TLSRPTv1 record, and none configured"),
            )]
        }
        (Some(w), [one]) if same_record(one, w) => {
            return vec![Finding::passed(
                Check::Tlsrpt,
                format!("{name} TXT {one:?}, as configured"),
            )]
        }
        (None, found) => (
            Severity::Warning,
            format!("{name} publishes {found:?} but the config has no tlsrpt"),
            "add the rua to [dns] tlsrpt, or remove the record",
        ),
        (Some(w), []) => (
            Severity::Warning,
            format!("no v=TLSRPTv1 record at {name}; the config wants {w:?}"),
            "publish the record `mta-stsd records` prints",
        ),
        (Some(w), [one]) => (
            Severity::Warning,
            format!("{name} is {one:?}; the config wants {w:?}"),
            "publish the record `mta-stsd records` prints",
        ),
        (Some(_), many) => (
            Severity::Warning,
            format!(
                "{} v=TLSRPTv1 records at {name}: RFC 8460 §3 says reporters then send none",
                many.len()
            ),
            "keep exactly one",
        ),
    };
    vec![Finding::new(severity, Check::Tlsrpt, message, hint)]
}

/// RFC 8460 §3: fields separated by `;` with optional whitespace; `rua` a comma-separated list.
fn same_record(a: &str, b: &str) -> bool {
    let fields = |t: &str| -> Vec<String> {
        t.split(';')
            .map(|f| f.trim_matches([' ', '\t']))
            .filter(|f| !f.is_empty())
            .map(|f| match f.split_once('=') {
                Some((k, v)) => format!(
                    "{}={}",
                    k.trim(),
                    v.split(',').map(str::trim).collect::<Vec<_>>().join(",")
                ),
                None => f.to_owned(),
            })
            .collect()
    };
    fields(a) == fields(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_trailing_delimiters_do_not_matter() {
        let want = "v=TLSRPTv1; rua=mailto:a@example.org,https://r.example.org/x;";
        assert!(same_record(
            "v=TLSRPTv1;rua=mailto:a@example.org, https://r.example.org/x",
            want
        ));
        assert!(!same_record("v=TLSRPTv1; rua=mailto:b@example.org;", want));
    }
}
