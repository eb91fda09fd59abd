//! A delegated domain's customer side (RFC 8461 §8.2): the CNAMEs its owner sets once in
//! their zone, as a sender's resolver sees them. A missing or wrong one is a finding naming
//! the record to set.

use hickory_proto::rr::RecordType;

use super::dns::Dns;
use super::report::{Check, Finding, Severity};
use crate::config::Domain;
use crate::desired::customer_records;
use crate::dns::record::RData;

pub(crate) async fn check(dns: &Dns, d: &Domain) -> Vec<Finding> {
    let mut findings = Vec::new();
    for want in customer_records(d) {
        let RData::Cname(target) = &want.data else {
            continue;
        };
        // Without `_mta-sts` senders find no policy at all; the others degrade less.
        let severity = if want.name.starts_with("_mta-sts.") {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let found = match dns.lookup(&want.name, RecordType::CNAME).await {
            Ok(a) => a.cnames.first().cloned(),
            Err(e) => {
                findings.push(
                    Finding::new(
                        Severity::Unknown,
                        Check::Delegation,
                        format!("could not look up {}: {e}", want.name),
                        "check the resolver ([drift] resolver)",
                    )
                    .about(want.name.clone()),
                );
                continue;
            }
        };
        let message = match found {
            Some(t) if t.eq_ignore_ascii_case(target) => {
                findings.push(Finding::passed(
                    Check::Delegation,
                    format!("{} is a CNAME to {target}", want.name),
                ));
                continue;
            }
            Some(t) => format!("{} is a CNAME to {t}, not to {target}", want.name),
            None => format!("{} is not a CNAME to {target}", want.name),
        };
        findings.push(
            Finding::new(
                severity,
                Check::Delegation,
                format!("{message}: the delegation to us is not in place"),
                format!("the owner of {} sets `{want}` in their zone", d.name),
            )
            .about(want.name.clone()),
        );
    }
    findings
}
