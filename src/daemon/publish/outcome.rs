//! The log line of an applied change: what it did to a domain's records, in words.

use mta_stsd_providers::{DomainChange, RData, Record};

use crate::config::{Domain, Retiring};
use crate::policy::StsRecord;

/// The log line's text for a domain whose change was applied: a withdrawal says so; the id
/// moves only when the STS record was written; otherwise which records were put back.
pub(super) fn outcome(d: &Domain, change: &DomainChange) -> String {
    let name = &d.name;
    if let Some(Retiring::Withdrawing { .. }) = d.retiring {
        let id = sts_id(&change.delete).map_or_else(String::new, |id| format!(" (id {id})"));
        return format!(
            "withdrew {name}: {} removed{id} (RFC 8461 §8.3)",
            records(change.delete.len())
        );
    }
    let new = d.policy.id().as_str();
    match (sts_id(&change.add), sts_id(&change.delete)) {
        (Some(_), Some(old)) if old != new => format!("published {name}: id {old} → {new}"),
        (Some(_), None) => format!("published {name}: id (none) → {new}"),
        _ => {
            let mut names: Vec<String> = change
                .add
                .iter()
                .chain(&change.delete)
                .map(|r| format!("{} {}", r.name, r.data.type_name()))
                .collect();
            names.sort();
            names.dedup();
            format!(
                "published {name}: id {new} unchanged; records put right at {}",
                names.join(", ")
            )
        }
    }
}

fn records(n: usize) -> String {
    match n {
        1 => "1 record".to_owned(),
        n => format!("{n} records"),
    }
}

/// The id in the first `v=STSv1` TXT record among `records`.
fn sts_id(records: &[Record]) -> Option<&str> {
    records.iter().find_map(|r| match &r.data {
        RData::Txt(t) => StsRecord::loose_id(t),
        _ => None,
    })
}
