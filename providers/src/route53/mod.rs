//! AWS Route 53: zones found in one ListHostedZones listing, our names read with
//! ListResourceRecordSets from each name on, and changes as one change batch per zone whose
//! DELETEs name the exact values read: a real compare-and-swap.
//!
//! Route 53 keeps one RRset per name and type and a DELETE must name it whole ("To delete a
//! resource record set, you must specify all the same values that you specified when you
//! created it", Route 53 API Reference, Change). So a change to a name is a DELETE of the RRset
//! as read followed by a CREATE of what it becomes — foreign values carried over, ours swapped
//! — in one batch, which Route 53 applies whole or not at all. A writer who got in between our
//! read and our batch makes the DELETE fail (InvalidChangeBatch): a
//! [`ProviderError::Conflict`], and the caller reads again.

mod client;
mod form;
pub mod sigv4;
mod xml;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::record::{RData, Record};
use crate::{Changes, Consistency, Provider, ProviderError};
use client::{absolute, Client, HostedZone, Next, RRset, RRSETS_PER_PAGE};
use form::{aws_key, before, txt_text, txt_value};
pub use sigv4::Credentials;

/// A change batch holds at most 1,000 ResourceRecord elements (Route 53 quotas); a zone's
/// changes are split between domains into batches of at most this many.
const RECORDS_PER_BATCH: usize = 500;
/// A bound on the pages one read follows, against a listing that never moves on.
const MAX_READ_PAGES: usize = 100_000;

pub struct Route53 {
    name: String,
    client: Client,
    /// The account's hosted zones from the last listing.
    zones: Mutex<Vec<HostedZone>>,
}

impl Route53 {
    /// `endpoint` is `https://route53.amazonaws.com` in production.
    pub fn new(
        name: &str,
        endpoint: &str,
        credentials: Credentials,
    ) -> Result<Self, ProviderError> {
        Ok(Route53 {
            name: name.to_owned(),
            client: Client::new(endpoint, credentials)?,
            zones: Mutex::new(Vec::new()),
        })
    }

    /// The longest listed zone holding `name`; a public zone before a private one of the
    /// same name (split-horizon: senders see the public one).
    fn longest_zone(&self, name: &str) -> Option<HostedZone> {
        let zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
        (0..labels.len()).find_map(|start| {
            let candidate = format!("{}.", labels[start..].join("."));
            let mut matching: Vec<&HostedZone> =
                zones.iter().filter(|z| z.name == candidate).collect();
            matching.sort_by_key(|z| z.private);
            matching.first().map(|z| (*z).clone())
        })
    }

    async fn list_zones(&self) -> Result<(), ProviderError> {
        let listed = self.client.hosted_zones().await?;
        *self.zones.lock().unwrap_or_else(|e| e.into_inner()) = listed;
        Ok(())
    }

    /// The hosted zone id of `zone`, listing the zones when it is not known yet.
    async fn zone_id(&self, zone: &str) -> Result<String, ProviderError> {
        let zone = absolute(zone);
        let known = |z: Option<HostedZone>| z.filter(|z| z.name == zone).map(|z| z.id);
        if let Some(id) = known(self.longest_zone(&zone)) {
            return Ok(id);
        }
        self.list_zones().await?;
        known(self.longest_zone(&zone)).ok_or_else(|| ProviderError::Refused {
            code: "NoSuchHostedZone".into(),
            message: format!("Route 53: no hosted zone {zone} in this account"),
        })
    }

    /// Every RRset at `names`, by (name, type). A page is asked for from the first name not
    /// yet covered; the names a page's range covers (in the listing's order) are not asked
    /// for again, so a small zone is read in one request.
    async fn read(
        &self,
        zone_id: &str,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<(String, String), RRset>, ProviderError> {
        let mut pending: Vec<&String> = names.iter().collect();
        pending.sort_by_key(|n| aws_key(n));
        let mut covered = vec![false; pending.len()];
        let mut found = BTreeMap::new();
        let mut resume: Option<Next> = None;
        let mut pages = 0;
        while let Some(i) = covered.iter().position(|c| !c) {
            pages += 1;
            if pages > MAX_READ_PAGES {
                return Err(ProviderError::Refused {
                    code: "paging".into(),
                    message: format!(
                        "Route 53: reading {} names took more than {MAX_READ_PAGES} pages",
                        names.len()
                    ),
                });
            }
            let start = pending[i];
            let from = resume.take().filter(|r| r.name == *start);
            let page = self
                .client
                .rrsets(zone_id, start, from.as_ref(), RRSETS_PER_PAGE)
                .await?;
            if page.next.is_some() && page.next == from {
                return Err(ProviderError::Refused {
                    code: "paging".into(),
                    message: format!("Route 53: the listing at {start} does not move on"),
                });
            }
            for set in page.rrsets {
                if names.contains(&set.name) {
                    found.insert((set.name.clone(), set.rtype.clone()), set);
                }
            }
            for (j, name) in pending.iter().enumerate() {
                let in_range = *name == start || before(start, name);
                let ended = match &page.next {
                    None => true,
                    Some(next) => before(name, &next.name),
                };
                if in_range && ended {
                    covered[j] = true;
                }
            }
            if let Some(next) = page.next {
                if next.name == *start {
                    resume = Some(next);
                } else {
                    covered[i] = true;
                }
            }
        }
        Ok(found)
    }
}

/// Our model of one listed value.
fn to_record(set: &RRset, value: &str) -> Record {
    let data = match set.rtype.as_str() {
        _ if set.special => RData::Other {
            rtype: set.rtype.clone(),
            text: format!("(alias or routing policy) {value}"),
        },
        "TXT" => RData::Txt(txt_text(value)),
        "CNAME" => RData::Cname(absolute(value)),
        "TLSA" => RData::tlsa_text(value),
        other => RData::Other {
            rtype: other.to_owned(),
            text: value.to_owned(),
        },
    };
    Record {
        name: set.name.clone(),
        ttl: set.ttl,
        data,
    }
}

fn records_of(set: &RRset) -> Vec<Record> {
    if set.special && set.values.is_empty() {
        return vec![to_record(set, "")];
    }
    set.values.iter().map(|v| to_record(set, v)).collect()
}

/// The DELETE and CREATE of one name and type: the RRset as listed goes, what it becomes
/// (foreign values as listed, ours removed and added) comes. Nothing when it stays the same.
fn swap(
    name: &str,
    rtype: &str,
    current: Option<&RRset>,
    delete: &[&Record],
    add: &[&Record],
) -> Result<Vec<(&'static str, RRset)>, String> {
    if current.is_some_and(|c| c.special) {
        return Err(format!(
            "{name} {rtype} is an alias or routing-policy record"
        ));
    }
    let mut values: Vec<(String, Record)> = current
        .map(|c| {
            c.values
                .iter()
                .map(|v| (v.clone(), to_record(c, v)))
                .collect()
        })
        .unwrap_or_default();
    for d in delete {
        let at = values
            .iter()
            .position(|(_, r)| r.same_data(d))
            .ok_or_else(|| format!("{name} {rtype} {:?} is gone", d.data))?;
        values.remove(at);
    }
    for a in add {
        if !values.iter().any(|(_, r)| r.same_data(a)) {
            let value = match &a.data {
                RData::Txt(t) => txt_value(t),
                RData::Cname(t) => t.clone(),
                // RFC 6698 §2.2 presentation form, as Route 53 takes TLSA values.
                RData::Tlsa(t) => t.to_string(),
                RData::Other { rtype, .. } => {
                    return Err(format!(
                        "{name}: a {rtype} record is never written by mta-stsd"
                    ))
                }
            };
            values.push((value, (*a).clone()));
        }
    }
    let ttl = add
        .first()
        .map(|a| a.ttl)
        .or(current.map(|c| c.ttl))
        .unwrap_or(300);
    let next = RRset {
        name: name.to_owned(),
        rtype: rtype.to_owned(),
        ttl,
        values: values.into_iter().map(|(v, _)| v).collect(),
        special: false,
    };
    let mut out = Vec::new();
    match current {
        Some(c) if c.values == next.values && c.ttl == next.ttl => return Ok(out),
        Some(c) => out.push(("DELETE", c.clone())),
        None => {}
    }
    if !next.values.is_empty() {
        out.push(("CREATE", next));
    }
    Ok(out)
}

#[async_trait]
impl Provider for Route53 {
    fn name(&self) -> &str {
        &self.name
    }

    fn consistency(&self) -> Consistency {
        Consistency::CompareAndSwap
    }

    fn writes_tlsa(&self) -> bool {
        true
    }

    /// From one ListHostedZones listing (every page), remembered: a later call lists again
    /// only for a name none of the remembered zones holds.
    async fn zones_of(&self, names: &[String]) -> Vec<Result<String, ProviderError>> {
        let names: Vec<String> = names.iter().map(|n| absolute(n)).collect();
        if names.iter().any(|n| self.longest_zone(n).is_none()) {
            if let Err(e) = self.list_zones().await {
                return names.iter().map(|_| Err(e.clone())).collect();
            }
        }
        names
            .iter()
            .map(|n| {
                self.longest_zone(n)
                    .map(|z| z.name)
                    .ok_or_else(|| ProviderError::Config {
                        code: "no zone".into(),
                        message: format!("Route 53: no hosted zone in this account holds {n}"),
                    })
            })
            .collect()
    }

    async fn records(&self, zone: &str, names: &[String]) -> Result<Vec<Record>, ProviderError> {
        let zone_id = self.zone_id(zone).await?;
        let names: BTreeSet<String> = names.iter().map(|n| absolute(n)).collect();
        let sets = self.read(&zone_id, &names).await?;
        Ok(sets.values().flat_map(records_of).collect())
    }

    async fn apply(&self, zone: &str, changes: &Changes) -> Result<(), ProviderError> {
        if changes.is_empty() {
            return Ok(());
        }
        let zone_id = self.zone_id(zone).await?;
        let names = changes.names();
        let sets = self.read(&zone_id, &names).await?;
        let seen: Vec<Record> = sets.values().flat_map(records_of).collect();
        let conflict = |what: String| ProviderError::Conflict {
            code: "changed".into(),
            message: format!("Route 53: zone {zone}: {what} since it was read"),
        };
        let mut batches: Vec<Vec<(&'static str, RRset)>> = vec![Vec::new()];
        for d in &changes.domains {
            if let Some(e) = d.expect.iter().find(|e| !e.holds(&seen)) {
                return Err(conflict(format!("the records at {} changed", e.name())));
            }
            let mut groups: BTreeSet<(&str, &str)> = BTreeSet::new();
            for r in d.delete.iter().chain(&d.add) {
                groups.insert((r.name.as_str(), r.data.type_name()));
            }
            let mut domain = Vec::new();
            for (name, rtype) in groups {
                let of = |r: &&Record| r.name == name && r.data.type_name() == rtype;
                let delete: Vec<&Record> = d.delete.iter().filter(of).collect();
                let add: Vec<&Record> = d.add.iter().filter(of).collect();
                let current = sets.get(&(name.to_owned(), rtype.to_owned()));
                domain.extend(swap(name, rtype, current, &delete, &add).map_err(conflict)?);
            }
            let size = |b: &[(&str, RRset)]| b.iter().map(|(_, s)| s.values.len()).sum::<usize>();
            let last = batches.last_mut().expect("one batch at least");
            if !last.is_empty() && size(last) + size(&domain) > RECORDS_PER_BATCH {
                batches.push(domain);
            } else {
                last.extend(domain);
            }
        }
        for batch in batches.iter().filter(|b| !b.is_empty()) {
            let refs: Vec<(&str, &RRset)> = batch.iter().map(|(a, s)| (*a, s)).collect();
            self.client.change(&zone_id, &refs).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, ttl: u32, values: &[&str]) -> RRset {
        RRset {
            name: name.into(),
            rtype: "TXT".into(),
            ttl,
            values: values.iter().map(|v| v.to_string()).collect(),
            special: false,
        }
    }

    #[test]
    fn swap_carries_foreign_values_and_deletes_exactly_what_was_read() {
        let n = "_mta-sts.a.example.org.";
        let current = set(n, 600, &["\"foreign\"", "\"v=STSv1; id=old;\""]);
        let old = Record::txt(n, 3600, "v=STSv1; id=old;");
        let new = Record::txt(n, 3600, "v=STSv1; id=new;");
        let got = swap(n, "TXT", Some(&current), &[&old], &[&new]).unwrap();
        assert_eq!(
            got,
            vec![
                ("DELETE", current.clone()),
                (
                    "CREATE",
                    set(n, 3600, &["\"foreign\"", "\"v=STSv1; id=new;\""])
                ),
            ]
        );
        // Only ours removed, no add: the foreign value stays, with its TTL.
        let got = swap(n, "TXT", Some(&current), &[&old], &[]).unwrap();
        assert_eq!(got[1], ("CREATE", set(n, 600, &["\"foreign\""])));
        // Nothing left: a DELETE alone. Nothing there: a CREATE alone.
        let only = set(n, 600, &["\"v=STSv1; id=old;\""]);
        assert_eq!(
            swap(n, "TXT", Some(&only), &[&old], &[]).unwrap(),
            vec![("DELETE", only)]
        );
        assert_eq!(
            swap(n, "TXT", None, &[], &[&new]).unwrap(),
            vec![("CREATE", set(n, 3600, &["\"v=STSv1; id=new;\""]))]
        );
        // A value to remove that is not there any more: a conflict, not a blind batch.
        assert!(swap(n, "TXT", None, &[&old], &[&new])
            .unwrap_err()
            .contains("is gone"));
    }
}
