//! What the config wants the world to see, per domain: pure functions of a [`Domain`].

use crate::config::Domain;
use crate::dns::record::{RData, Record};
use crate::tlsrpt;

/// SPEC "Records per domain": `_mta-sts` TXT with the policy id, `mta-sts` CNAME to the
/// target when one is set, `_smtp._tls` TXT when TLSRPT is configured.
pub fn records(domain: &Domain) -> Vec<Record> {
    let name = domain.name.as_str();
    let ttl = domain.dns.ttl;
    let mut out = Vec::with_capacity(3);
    // RFC 8461 §3.1: "v=STSv1; id=<id>;"
    out.push(Record {
        name: format!("_mta-sts.{name}."),
        ttl,
        data: RData::Txt(format!("v=STSv1; id={};", domain.policy.id())),
    });
    if let Some(target) = &domain.dns.target {
        out.push(Record {
            name: format!("mta-sts.{name}."),
            ttl,
            data: RData::Cname(target.clone()),
        });
    }
    if !domain.dns.tlsrpt.is_empty() {
        out.push(Record {
            name: format!("_smtp._tls.{name}."),
            ttl,
            data: RData::Txt(tlsrpt::record_text(&domain.dns.tlsrpt)),
        });
    }
    out
}
