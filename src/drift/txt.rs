//! The `_mta-sts` TXT record as every authoritative nameserver of the zone serves it
//! (RFC 8461 §3.1), and whether they agree.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hickory_proto::rr::RecordType;

use super::dns::Dns;
use super::report::{Check, Finding, Severity};
use super::zones::NsSet;
use crate::dns::plan::{is_ours, STS_VERSION};

/// RFC 8461 §3.1 `sts-text-record`; returns the id.
pub fn parse_sts_record(text: &str) -> Result<&str, String> {
    let mut fields = text.split(';').map(|f| f.trim_matches([' ', '\t']));
    if fields.next() != Some(STS_VERSION) {
        return Err(format!("{text:?} does not begin with `v=STSv1;`"));
    }
    let mut id = None;
    let mut rest: Vec<&str> = fields.collect();
    // A trailing delimiter leaves one empty field.
    if rest.last() == Some(&"") {
        rest.pop();
    }
    if rest.is_empty() {
        return Err(format!("{text:?} has no `id` field"));
    }
    for f in rest {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: field {f:?} is not key=value"))?;
        if k == "id" {
            if id.is_some() {
                return Err(format!("{text:?} has two `id` fields"));
            }
            if v.is_empty() || v.len() > 32 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("{text:?}: id {v:?} is not 1-32 letters and digits"));
            }
            id = Some(v);
        } else {
            let name_ok = !k.is_empty()
                && k.len() <= 32
                && k.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            let value_ok = !v.is_empty()
                && v.bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b';' && b != b'=');
            if !name_ok || !value_ok {
                return Err(format!("{text:?}: extension field {f:?} is malformed"));
            }
        }
    }
    id.ok_or_else(|| format!("{text:?} has no `id` field"))
}

/// What one nameserver says: its `v=STSv1` records, or why it could not be asked.
type View = Result<Vec<String>, String>;

pub async fn check(dns: &Dns, domain: &str, ns: &NsSet, want_id: &str) -> Vec<Finding> {
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
        [one] => match parse_sts_record(one) {
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
        .filter(|t| is_ours(t, STS_VERSION))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_syntax() {
        assert_eq!(
            parse_sts_record("v=STSv1; id=20160831085700Z;"),
            Ok("20160831085700Z")
        );
        assert_eq!(parse_sts_record("v=STSv1;id=abc"), Ok("abc"));
        assert_eq!(parse_sts_record("v=STSv1; id=abc; ext_1=x"), Ok("abc"));
        for bad in [
            "v=STSv1;",
            "v=STSv1; id=;",
            "v=STSv1; id=a-b;",
            &format!("v=STSv1; id={};", "a".repeat(33)),
            "id=abc; v=STSv1;",
            "v=STSv1; id=a; id=b;",
            "v=STSv1; id=a; =x;",
        ] {
            assert!(parse_sts_record(bad).is_err(), "{bad}");
        }
    }

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
