//! Cloudflare through its API v4: one record per call, ordered so that DNS never shows a state
//! worse than before or after.
//!
//! Cloudflare has no multi-record transaction and no prerequisites. So [`Cloudflare::apply`]
//! reads every name it touches afresh and checks each domain's [`Expect`] against that read
//! (a difference is a [`ProviderError::Conflict`]), then changes records in this order, per
//! name and type:
//!
//! 1. **update in place**: a record being replaced (a delete paired with an add of the same name
//!    and type) is rewritten by id, so the name goes from the old value to the new one with no
//!    moment of zero or two `v=STSv1` records (RFC 8461 §3.1: "If the number of resulting
//!    records is not one, or if the resulting record is syntactically invalid, senders MUST
//!    assume the recipient domain does not have an available MTA-STS Policy"); the same for
//!    the TLSRPT TXT and the `mta-sts` CNAME;
//! 2. **create** what has nothing to replace;
//! 3. **delete** what is left: stale extra records, a TLSRPT record no longer configured.
//!
//! A failure midway leaves the changes made so far; the next run reads and plans again.

mod client;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::record::{absolute, parse_txt_presentation, RData, Record};
use crate::{Changes, Provider, ProviderError, Secret};
use client::{Client, DnsRecord, RecordBody};

/// Up to this many names are listed with one filtered request each; more, with one listing of
/// the whole zone.
const PER_NAME_READS: usize = 16;
/// Cloudflare's "automatic" TTL, and what it means in seconds.
const TTL_AUTO: u32 = 1;
const TTL_AUTO_SECONDS: u32 = 300;

pub struct Cloudflare {
    name: String,
    client: Client,
    /// Zone name (absolute, lowercase) to Cloudflare's zone id.
    zone_ids: Mutex<HashMap<String, String>>,
}

impl Cloudflare {
    /// `base_url` is the API's root, `https://api.cloudflare.com/client/v4` in production.
    pub fn new(name: &str, base_url: &str, api_token: Secret) -> Result<Self, ProviderError> {
        Ok(Cloudflare {
            name: name.to_owned(),
            client: Client::new(base_url, api_token)?,
            zone_ids: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, zone: &str) -> Option<String> {
        self.zone_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(zone)
            .cloned()
    }

    /// The longest suffix of `name` (absolute) among the remembered zones, of two labels or
    /// more: `a.b.example.org`, then `b.example.org`, then `example.org`.
    fn longest_zone(&self, name: &str) -> Option<String> {
        let ids = self.zone_ids.lock().unwrap_or_else(|e| e.into_inner());
        let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
        (0..labels.len().saturating_sub(1))
            .map(|start| format!("{}.", labels[start..].join(".")))
            .find(|candidate| ids.contains_key(candidate))
    }

    /// Every zone of the account, remembered with its id.
    async fn list_zones(&self) -> Result<(), ProviderError> {
        let zones = self.client.all_zones().await?;
        let mut ids = self.zone_ids.lock().unwrap_or_else(|e| e.into_inner());
        for z in zones {
            ids.insert(absolute(&z.name), z.id);
        }
        Ok(())
    }

    /// The zone's id, from an earlier lookup or a new one.
    async fn zone_id(&self, zone: &str) -> Result<String, ProviderError> {
        let zone = absolute(zone);
        if let Some(id) = self.cached(&zone) {
            return Ok(id);
        }
        self.lookup(&zone)
            .await?
            .ok_or_else(|| ProviderError::Refused {
                code: "no zone".into(),
                message: format!(
                    "Cloudflare: no zone {zone} in this account (GET /zones?name= found none)"
                ),
            })
    }

    /// `GET /zones?name=`; the id is remembered.
    async fn lookup(&self, zone: &str) -> Result<Option<String>, ProviderError> {
        let found = self.client.zones(zone.trim_end_matches('.')).await?;
        let id = found
            .into_iter()
            .find(|z| absolute(&z.name) == zone)
            .map(|z| z.id);
        if let Some(id) = &id {
            self.zone_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(zone.to_owned(), id.clone());
        }
        Ok(id)
    }

    /// The records at `names` (absolute, lowercase), with their ids.
    async fn read(
        &self,
        zone_id: &str,
        names: &BTreeSet<String>,
    ) -> Result<Vec<DnsRecord>, ProviderError> {
        let mut records = Vec::new();
        if names.len() <= PER_NAME_READS {
            for n in names {
                records.extend(
                    self.client
                        .records(zone_id, Some(n.trim_end_matches('.')))
                        .await?,
                );
            }
        } else {
            records = self.client.records(zone_id, None).await?;
        }
        records.retain(|r| names.contains(&absolute(&r.name)));
        Ok(records)
    }
}

/// `name` lowercase with its trailing dot.
/// Our model of a Cloudflare record. TXT `content` is the raw text, or (as the API shows it
/// lately) the quoted character-strings: both are read.
fn to_record(r: &DnsRecord) -> Record {
    let data = match r.rtype.as_str() {
        "TXT" if r.content.starts_with('"') => {
            RData::Txt(parse_txt_presentation(&r.content).unwrap_or_else(|| r.content.clone()))
        }
        "TXT" => RData::Txt(r.content.clone()),
        "CNAME" => RData::Cname(absolute(&r.content)),
        other => RData::Other {
            rtype: other.to_owned(),
            text: r.content.clone(),
        },
    };
    Record {
        name: absolute(&r.name),
        ttl: if r.ttl == TTL_AUTO {
            TTL_AUTO_SECONDS
        } else {
            r.ttl
        },
        data,
    }
}

/// The create/update body for one of our records.
fn body(r: &Record, create: bool) -> Result<RecordBody, ProviderError> {
    let (content, proxied) = match &r.data {
        RData::Txt(text) => (text.clone(), None),
        RData::Cname(target) => (
            target.trim_end_matches('.').to_owned(),
            create.then_some(false),
        ),
        RData::Tlsa(_) => return Err(ProviderError::cannot_publish("cloudflare", "TLSA")),
        RData::Other { rtype, .. } => {
            return Err(ProviderError::config(format!(
                "{}: a {rtype} record is never written by mta-stsd",
                r.name
            )))
        }
    };
    Ok(RecordBody {
        rtype: r.data.type_name().to_owned(),
        name: r.name.trim_end_matches('.').to_owned(),
        content,
        ttl: r.ttl,
        proxied,
    })
}

/// One call of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Update { id: String, record: Record },
    Create(Record),
    Delete { id: String, record: Record },
}

/// The calls that carry out `changes`, in the order of the module docs: per name and type,
/// updates in place, then creates, then deletes; the `_mta-sts` TXT after the rest of its domain.
/// Each delete is matched to a listed record by
/// its data; one that has vanished since the read is a conflict.
fn steps(listed: &[DnsRecord], changes: &Changes) -> Result<Vec<Step>, String> {
    let mut used = vec![false; listed.len()];
    let mut out = Vec::new();
    for d in &changes.domains {
        let mut groups: Vec<(&str, &str)> = Vec::new();
        for r in d.delete.iter().chain(&d.add) {
            let key = (r.name.as_str(), r.data.type_name());
            if !groups.contains(&key) {
                groups.push(key);
            }
        }
        // The `_mta-sts` TXT last: a sender that sees its (new) id fetches the policy, so the
        // `mta-sts` host must be in place first (as one atomic update would have it).
        groups.sort_by_key(|(name, rtype)| *rtype == "TXT" && name.starts_with("_mta-sts."));
        for (name, rtype) in groups {
            let of = |r: &&Record| r.name == name && r.data.type_name() == rtype;
            let mut deletes = Vec::new();
            for del in d.delete.iter().filter(of) {
                let found = listed
                    .iter()
                    .enumerate()
                    .position(|(i, l)| !used[i] && to_record(l).same_data(del));
                let i =
                    found.ok_or_else(|| format!("{} {rtype} {:?} is gone", del.name, del.data))?;
                used[i] = true;
                deletes.push((listed[i].id.clone(), del.clone()));
            }
            let mut deletes = deletes.into_iter();
            let mut creates = Vec::new();
            for add in d.add.iter().filter(of) {
                match deletes.next() {
                    Some((id, _)) => out.push(Step::Update {
                        id,
                        record: add.clone(),
                    }),
                    None => creates.push(Step::Create(add.clone())),
                }
            }
            out.extend(creates);
            out.extend(deletes.map(|(id, record)| Step::Delete { id, record }));
        }
    }
    Ok(out)
}

#[async_trait]
impl Provider for Cloudflare {
    fn name(&self) -> &str {
        &self.name
    }

    fn consistency(&self) -> crate::Consistency {
        crate::Consistency::ReadVerifyWrite
    }

    /// Each name's zone is the longest of its suffixes that the account has, from one listing
    /// of the account's zones (`GET /zones`, paged), remembered: a later call lists again only
    /// for a name none of the remembered zones holds. A failed listing fails every name.
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
                self.longest_zone(n).ok_or_else(|| ProviderError::Config {
                    code: "no zone".into(),
                    message: format!("Cloudflare: no zone in this account holds {n}"),
                })
            })
            .collect()
    }

    async fn records(&self, zone: &str, names: &[String]) -> Result<Vec<Record>, ProviderError> {
        let zone_id = self.zone_id(zone).await?;
        let names: BTreeSet<String> = names.iter().map(|n| absolute(n)).collect();
        Ok(self
            .read(&zone_id, &names)
            .await?
            .iter()
            .map(to_record)
            .collect())
    }

    async fn apply(&self, zone: &str, changes: &Changes) -> Result<(), ProviderError> {
        if changes.is_empty() {
            return Ok(());
        }
        if changes.touches("TLSA") {
            return Err(ProviderError::cannot_publish(&self.name, "TLSA"));
        }
        let zone_id = self.zone_id(zone).await?;
        let names = changes.names();
        let listed = self.read(&zone_id, &names).await?;
        let seen: Vec<Record> = listed.iter().map(to_record).collect();
        let conflict = |what: String| ProviderError::Conflict {
            code: "changed".into(),
            message: format!("Cloudflare: zone {zone}: {what} since it was read"),
        };
        for d in &changes.domains {
            if let Some(e) = d.expect.iter().find(|e| !e.holds(&seen)) {
                return Err(conflict(format!("the records at {} changed", e.name())));
            }
        }
        let steps = steps(&listed, changes).map_err(conflict)?;
        let total = steps.len();
        for (done, step) in steps.into_iter().enumerate() {
            let result = match &step {
                Step::Update { id, record } => self
                    .client
                    .update(&zone_id, id, &body(record, false)?)
                    .await
                    .map(drop),
                Step::Create(record) => self
                    .client
                    .create(&zone_id, &body(record, true)?)
                    .await
                    .map(drop),
                Step::Delete { id, .. } => self.client.delete(&zone_id, id).await,
            };
            if let Err(e) = result {
                return Err(midway(e, done, total));
            }
        }
        Ok(())
    }
}

/// `e`, saying how far the zone got: Cloudflare keeps the calls that succeeded.
fn midway(e: ProviderError, done: usize, total: usize) -> ProviderError {
    if done == 0 {
        return e;
    }
    let note = |m: String| format!("{m} (after {done} of {total} changes were made)");
    match e {
        ProviderError::Transient { code, message } => ProviderError::Transient {
            code,
            message: note(message),
        },
        ProviderError::Refused { code, message } => ProviderError::Refused {
            code,
            message: note(message),
        },
        ProviderError::Auth { code, message } => ProviderError::Auth {
            code,
            message: note(message),
        },
        ProviderError::Conflict { code, message } => ProviderError::Conflict {
            code,
            message: note(message),
        },
        ProviderError::Config { code, message } => ProviderError::Config {
            code,
            message: note(message),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DomainChange;

    fn listed(id: &str, name: &str, rtype: &str, content: &str) -> DnsRecord {
        DnsRecord {
            id: id.into(),
            name: name.into(),
            rtype: rtype.into(),
            content: content.into(),
            ttl: 1,
            proxied: false,
        }
    }

    #[test]
    fn txt_raw_or_quoted() {
        for content in [
            "v=STSv1; id=1;",
            r#""v=STSv1; id=1;""#,
            r#""v=STSv1; " "id=1;""#,
        ] {
            let r = to_record(&listed("x", "_mta-sts.Example.org", "TXT", content));
            assert_eq!(
                r,
                Record::txt("_mta-sts.example.org.", 300, "v=STSv1; id=1;"),
                "{content}"
            );
        }
    }

    #[test]
    fn replacement_updates_in_place_then_creates_then_deletes() {
        let sts = "_mta-sts.example.org.";
        let listing = vec![
            listed("1", "_mta-sts.example.org", "TXT", "v=STSv1; id=old;"),
            listed("2", "_mta-sts.example.org", "TXT", "v=STSv1; id=stale;"),
            listed("3", "_mta-sts.example.org", "TXT", "foreign"),
            listed(
                "4",
                "_smtp._tls.example.org",
                "TXT",
                "v=TLSRPTv1; rua=mailto:a@b;",
            ),
        ];
        let new = Record::txt(sts, 300, "v=STSv1; id=new;");
        let cname = Record::cname("mta-sts.example.org.", 300, "mail.example.org.");
        let changes = Changes {
            domains: vec![DomainChange {
                domain: "example.org".into(),
                expect: vec![],
                delete: vec![
                    Record::txt(sts, 300, "v=STSv1; id=old;"),
                    Record::txt(sts, 300, "v=STSv1; id=stale;"),
                    Record::txt(
                        "_smtp._tls.example.org.",
                        300,
                        "v=TLSRPTv1; rua=mailto:a@b;",
                    ),
                ],
                add: vec![new.clone(), cname.clone()],
            }],
        };
        let got = steps(&listing, &changes).unwrap();
        assert_eq!(
            got,
            vec![
                Step::Delete {
                    id: "4".into(),
                    record: Record::txt(
                        "_smtp._tls.example.org.",
                        300,
                        "v=TLSRPTv1; rua=mailto:a@b;"
                    )
                },
                Step::Create(cname),
                Step::Update {
                    id: "1".into(),
                    record: new
                },
                Step::Delete {
                    id: "2".into(),
                    record: Record::txt(sts, 300, "v=STSv1; id=stale;")
                },
            ]
        );
        // A record deleted meanwhile: a conflict, not a blind call.
        let err = steps(&listing[2..], &changes).unwrap_err();
        assert!(err.contains("is gone"), "{err}");
    }
}
