//! What the config wants the world to see, per domain: pure functions of a [`Domain`].

use mta_stsd_providers::Record;

use crate::config::{Domain, Retiring};
use crate::tlsrpt;

/// The three names mta-stsd manages under a domain, fully qualified.
pub struct Names {
    pub sts: String,
    pub host: String,
    pub tlsrpt: String,
}

pub fn names(domain: &Domain) -> Names {
    let d = domain.name.as_str();
    Names {
        sts: format!("_mta-sts.{d}."),
        host: format!("mta-sts.{d}."),
        tlsrpt: format!("_smtp._tls.{d}."),
    }
}

/// SPEC "Records per domain": `_mta-sts` TXT with the policy id, `mta-sts` CNAME to the
/// target when one is set, `_smtp._tls` TXT when TLSRPT is configured.
pub fn records(domain: &Domain) -> Vec<Record> {
    if let Some(Retiring::Withdrawing { .. }) = domain.retiring {
        // RFC 8461 §8.3: after the last max_age, nothing of ours stays.
        return Vec::new();
    }
    let n = names(domain);
    let ttl = domain.dns.ttl;
    let mut out = Vec::with_capacity(3);
    // RFC 8461 §3.1: "v=STSv1; id=<id>;"
    out.push(Record::txt(
        n.sts,
        ttl,
        format!("v=STSv1; id={};", domain.policy.id()),
    ));
    if let Some(target) = &domain.dns.target {
        out.push(Record::cname(n.host, ttl, target.fqdn()));
    }
    if !domain.dns.tlsrpt.is_empty() {
        out.push(Record::txt(
            n.tlsrpt,
            ttl,
            tlsrpt::record_text(&domain.dns.tlsrpt),
        ));
    }
    out
}
