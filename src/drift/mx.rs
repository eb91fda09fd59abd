//! Every MX host of the domain against the policy's `mx` patterns (RFC 8461 §4.1): an MX the
//! policy does not cover loses mail in `enforce`.

use hickory_proto::rr::RecordType;

use super::dns::Dns;
use super::report::{Check, Finding, Severity};
use crate::config::Domain;
use crate::policy::Mode;

pub async fn check(dns: &Dns, d: &Domain) -> Vec<Finding> {
    if d.policy.mode == Mode::None {
        return Vec::new();
    }
    let name = format!("{}.", d.name);
    let hosts: Vec<String> = match dns.lookup(&name, RecordType::MX).await {
        Ok(a) => a.mx,
        Err(e) => {
            return vec![Finding::new(
                Severity::Unknown,
                Check::Mx,
                format!("could not look up the MX records of {name}: {e}"),
                "check the resolver ([drift] resolver)",
            )]
        }
    };
    // RFC 7505 null MX: the domain takes no mail.
    if hosts.iter().any(|h| h == ".") {
        return Vec::new();
    }
    if hosts.is_empty() {
        return vec![Finding::new(
            Severity::Warning,
            Check::Mx,
            format!("{name} has no MX records; MTA-STS applies to MX hosts only (RFC 8461 §4.1)"),
            "publish MX records for the domain",
        )];
    }
    let mut findings = Vec::new();
    let severity = if d.policy.mode == Mode::Enforce {
        Severity::Critical
    } else {
        Severity::Warning
    };
    for h in &hosts {
        if !d.policy.matches_mx(h) {
            findings.push(Finding::new(
                severity,
                Check::Mx,
                format!(
                    "MX {} is not covered by the policy's mx patterns; in `{}` mode senders {}",
                    h.trim_end_matches('.'),
                    d.policy.mode,
                    if severity == Severity::Critical {
                        "refuse to deliver to it"
                    } else {
                        "report failures for it"
                    }
                ),
                "add the host (or a `*.` pattern covering it) to mx",
            ));
        }
    }
    for p in &d.policy.mx {
        if !hosts.iter().any(|h| p.matches(h)) {
            findings.push(Finding::new(
                Severity::Warning,
                Check::Mx,
                format!("mx pattern {p} matches none of the domain's MX hosts"),
                "remove the pattern, or publish the MX it was meant for",
            ));
        }
    }
    findings
}
