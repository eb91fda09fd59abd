//! `mta-sts.<domain>` resolves, and to what the config says.

use std::net::IpAddr;

use hickory_proto::rr::RecordType;

use super::dns::Dns;
use super::report::{Check, Finding, Severity};
use crate::config::Domain;

/// The policy host's addresses, for the fetch; findings when it does not resolve as configured.
pub(crate) async fn check(
    dns: &Dns,
    d: &Domain,
    findings: &mut Vec<Finding>,
) -> Option<Vec<IpAddr>> {
    let host = format!("mta-sts.{}.", d.name);
    let mut addrs = Vec::new();
    let mut cnames = Vec::new();
    let (a, aaaa) = tokio::join!(
        dns.lookup(&host, RecordType::A),
        dns.lookup(&host, RecordType::AAAA)
    );
    for answer in [a, aaaa] {
        match answer {
            Ok(a) => {
                addrs.extend(a.addrs);
                cnames.extend(a.cnames);
            }
            Err(e) => {
                findings.push(Finding::new(
                    Severity::Unknown,
                    Check::PolicyHost,
                    format!("could not resolve {host}: {e}"),
                    "check the resolver ([drift] resolver) and the zone's nameservers",
                ));
                return None;
            }
        }
    }
    if let Some(target) = &d.dns.target {
        let want = target.fqdn();
        if cnames.first().is_some_and(|c| *c != want) {
            findings.push(Finding::new(
                Severity::Warning,
                Check::PolicyHost,
                format!("{host} is a CNAME to {}, the config says {want}", cnames[0]),
                "publish the CNAME `mta-stsd records` prints, or change [dns] target",
            ));
        }
    }
    if addrs.is_empty() {
        findings.push(Finding::new(
            Severity::Critical,
            Check::PolicyHost,
            format!("{host} has no address: senders cannot fetch the policy"),
            "point mta-sts.<domain> at this server (the CNAME `mta-stsd records` prints)",
        ));
        return None;
    }
    addrs.dedup();
    let shown: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let via = cnames
        .first()
        .map(|c| format!(" (CNAME to {c})"))
        .unwrap_or_default();
    findings.push(Finding::passed(
        Check::PolicyHost,
        format!("{host}{via} resolves to {}", shown.join(", ")),
    ));
    Some(addrs)
}
