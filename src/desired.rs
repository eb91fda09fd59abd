//! What the config wants the world to see, per domain: pure functions of a [`Domain`].

use mta_stsd_providers::Record;

use crate::config::{Domain, Retiring};
use crate::policy::StsRecord;
use crate::rua;

/// The names mta-stsd manages for a domain, fully qualified.
pub(crate) struct Names {
    /// The STS TXT: `_mta-sts.<domain>.`, or `<domain>.<delegation zone>.` when delegated.
    pub sts: String,
    /// `mta-sts.<domain>.`; `None` when delegated: that CNAME is in the customer's zone.
    pub host: Option<String>,
    /// The TLSRPT TXT: `_smtp._tls.<domain>.`, or under the delegation zone when delegated.
    pub tlsrpt: String,
}

pub(crate) fn names(domain: &Domain) -> Names {
    let dns = &domain.dns;
    Names {
        sts: dns.sts_name(&domain.name),
        host: dns
            .delegated
            .is_none()
            .then(|| format!("mta-sts.{}.", domain.name)),
        tlsrpt: dns.tlsrpt_name(&domain.name),
    }
}

/// SPEC "Records per domain": `_mta-sts` TXT with the policy id, `mta-sts` CNAME to the
/// target when one is set, `_smtp._tls` TXT when TLSRPT is configured. For a delegated domain
/// the TXT records at their delegated names, and no CNAME (that one is the customer's).
pub(crate) fn records(domain: &Domain) -> Vec<Record> {
    if let Some(Retiring::Withdrawing { .. }) = domain.retiring {
        // RFC 8461 §8.3: after the last max_age, nothing of ours stays.
        return Vec::new();
    }
    let n = names(domain);
    let ttl = domain.dns.ttl;
    let mut out = Vec::with_capacity(3);
    out.push(Record::txt(
        n.sts,
        ttl,
        StsRecord::render(domain.policy.id()),
    ));
    if let (Some(host), Some(target)) = (n.host, &domain.dns.target) {
        out.push(Record::cname(host, ttl, target.fqdn()));
    }
    if !domain.dns.tlsrpt.is_empty() {
        out.push(Record::txt(
            n.tlsrpt,
            ttl,
            rua::record_text(&domain.dns.tlsrpt),
        ));
    }
    out
}

/// RFC 8461 §8.2: the records a delegated domain's owner sets once in their own zone — the
/// `_mta-sts` CNAME to our TXT, `mta-sts` CNAME to the target, and (with TLSRPT) the
/// `_smtp._tls` CNAME to ours. Empty for a domain that is not delegated.
pub(crate) fn customer_records(domain: &Domain) -> Vec<Record> {
    if domain.dns.delegated.is_none() {
        return Vec::new();
    }
    let d = domain.name.as_str();
    let n = names(domain);
    let ttl = domain.dns.ttl;
    let mut out = vec![Record::cname(format!("_mta-sts.{d}."), ttl, n.sts)];
    if let Some(target) = &domain.dns.target {
        out.push(Record::cname(format!("mta-sts.{d}."), ttl, target.fqdn()));
    }
    if !domain.dns.tlsrpt.is_empty() {
        out.push(Record::cname(format!("_smtp._tls.{d}."), ttl, n.tlsrpt));
    }
    out
}
