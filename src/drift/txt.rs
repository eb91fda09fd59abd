//! The `_mta-sts` TXT record as every authoritative nameserver of the zone serves it
//! (RFC 8461 §3.1), and whether they agree.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hickory_proto::rr::RecordType;

use super::dns::Dns;
use super::report::{Check, Finding, Severity};
use super::zones::NsSet;
use crate::policy::StsRecord;

/// What one nameserver says: its `v=STSv1` records, or why it could not be asked.
type View = Result<Vec<String>, String>;

pub(crate) async fn check(dns: &Dns, domain: &str, ns: &NsSet, want_id: &str) -> Vec<Finding> {
    let name = format!("_mta-sts.{domain}.");
    let mut findings = Vec::new();
    let mut views: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for (host, ip) in &ns.servers {
        match ask(dns, *ip, &name).await {
            Ok(mut records) => {
                records.sort();
                views
                    .entry(records)
                    .or_default()
                    .push(format!("{host} ({ip})"));
            }
            Err(e) => findings.push(Finding::new(
                Severity::Unknown,
                Check::StsTxt,
                format!("could not ask nameserver {host} ({ip}) for {name}: {e}"),
                "check that every nameserver of the zone is up and answers over TCP",
            )),
        }
    }
    if views.len() > 1 {
        let said: Vec<String> = views
            .iter()
            .map(|(records, servers)| format!("{} say {:?}", servers.join(", "), records))
            .collect();
        findings.push(Finding::new(
            Severity::Warning,
            Check::NsAgreement,
            format!("nameservers disagree on {name}: {}", said.join("; ")),
            "wait for zone transfers to complete, or fix the secondary that is behind",
        ));
    }
    let several = views.len() > 1;
    if let (false, Some(servers)) = (several, views.values().next()) {
        findings.push(Finding::passed(
            Check::NsAgreement,
            format!(
                "{} nameserver(s) of {} agree on {name}",
                servers.len(),
                ns.zone
            ),
        ));
    }
    for (records, servers) in &views {
        let who = if several {
            format!(" (at {})", servers.join(", "))
        } else {
            String::new()
        };
        findings.extend(judge(&name, records, want_id, &who).or_else(|| {
            // Sorted: the answers come in any order.
            let mut at = servers.clone();
            at.sort();
            Some(Finding::passed(
                Check::StsTxt,
                format!(
                    "{name} TXT at {}: id {want_id}, the served policy's",
                    at.join(", ")
                ),
            ))
        }));
    }
    findings
}

fn judge(name: &str, records: &[String], want_id: &str, who: &str) -> Option<Finding> {
    match records {
        [] => Some(Finding::new(
            Severity::Critical,
            Check::StsTxt,
            format!("no v=STSv1 TXT record at {name}{who}: senders do not know there is a policy"),
            "publish the record `mta-stsd records` prints (or run `mta-stsd apply`)",
        )),
        [one] => match StsRecord::parse(one).map(|r| r.id()) {
            Err(e) => Some(Finding::new(
                Severity::Critical,
                Check::StsTxt,
                format!("invalid record at {name}{who}: {e}"),
                "replace it with the record `mta-stsd records` prints",
            )),
            Ok(id) if id != want_id => Some(Finding::new(
                Severity::Critical,
                Check::StsTxt,
                format!("stale id at {name}{who}: {id}, the served policy's is {want_id}; senders keep their cached policy"),
                "publish the current id (`mta-stsd apply`)",
            )),
            Ok(_) => None,
        },
        many => Some(Finding::new(
            Severity::Critical,
            Check::StsTxt,
            format!(
                "{} v=STSv1 TXT records at {name}{who}: RFC 8461 §3.1 says senders then assume no policy",
                many.len()
            ),
            "keep exactly one (`mta-stsd apply` removes the others)",
        )),
    }
}

/// The `v=STSv1` records one nameserver serves at `name`, a CNAME there followed.
#[allow(clippy::expect_used, reason = "non-empty")]
async fn ask(dns: &Dns, ip: IpAddr, name: &str) -> View {
    let answer = dns.ask_authority(ip, name, RecordType::TXT).await?;
    let texts = if answer.txt.is_empty() && !answer.cnames.is_empty() {
        // RFC 8461 §3.1 allows the name to be a CNAME (delegation): follow it as senders do.
        let target = answer.cnames.last().expect("non-empty");
        dns.lookup(target, RecordType::TXT).await?.txt
    } else {
        answer.txt
    };
    Ok(texts
        .into_iter()
        .filter(|t| StsRecord::is_ours(t))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judging() {
        let n = "_mta-sts.example.org.";
        assert!(judge(n, &["v=STSv1; id=abc;".into()], "abc", "").is_none());
        assert!(judge(n, &["v=STSv1; id=old;".into()], "abc", "")
            .unwrap()
            .message
            .contains("stale id"));
        assert!(judge(n, &[], "abc", "")
            .unwrap()
            .message
            .contains("no v=STSv1"));
        let two = ["v=STSv1; id=abc;".to_owned(), "v=STSv1; id=old;".to_owned()];
        assert!(judge(n, &two, "abc", "")
            .unwrap()
            .message
            .starts_with("2 v=STSv1"));
    }
}
