//! Read-verify-write: publishing through an API that has no conditional write (Hetzner, deSEC,
//! Gandi, DigitalOcean, OVH). Each API is a small [`RrsetApi`]; [`ReadVerifyWrite`] is the
//! provider over it, the same for all:
//!
//! 1. our writes to one name are serialised within the process (a lock per name, taken in
//!    name order so two applies cannot deadlock);
//! 2. the names are read afresh and each domain's [`Expect`] checked against that read (a
//!    difference is a [`ProviderError::Conflict`]: the caller reads again and re-plans);
//! 3. each RRset we touch becomes what was read, less our deletes, plus our adds: a value that
//!    is not ours is carried over, whatever the API's shape (an API that replaces whole RRsets
//!    is sent the foreign values back);
//! 4. after writing, the names are read back: an add missing or a delete still there is a
//!    conflict, so a write the API lost (or another writer undid) is retried, not assumed.
//!
//! What no client can close: at an API that replaces whole RRsets, a foreign value written
//! between our fresh read and our write is overwritten. The window is one request long.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

pub use crate::record::absolute;
use crate::record::Record;
use crate::{Changes, Consistency, Provider, ProviderError};

/// A record as an API listed it, with the API's id for it where records have ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub record: Record,
    pub id: Option<String>,
}

/// One RRset (a name and a type) to take from `old` to `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrsetChange {
    /// Absolute, lowercase.
    pub name: String,
    pub rtype: String,
    /// Every value read at the name and type, ours and foreign, with ids.
    pub old: Vec<Listed>,
    /// What the RRset must hold after the write (foreign values carried over).
    pub new: Vec<Record>,
}

impl RrsetChange {
    /// Values of `old` not in `new`: what an API with per-value calls removes.
    pub fn removed(&self) -> impl Iterator<Item = &Listed> {
        self.old
            .iter()
            .filter(|l| !self.new.iter().any(|n| n.same_data(&l.record)))
    }

    /// Values of `new` not in `old`: what an API with per-value calls adds.
    pub fn added(&self) -> impl Iterator<Item = &Record> {
        self.new
            .iter()
            .filter(|n| !self.old.iter().any(|l| l.record.same_data(n)))
    }

    /// The TTL the RRset is written with: that of our new values (DNS gives an RRset one TTL,
    /// RFC 2181 §5.2), else what it had.
    pub fn ttl(&self) -> u32 {
        self.added()
            .next()
            .or(self.new.first())
            .map(|r| r.ttl)
            .or(self.old.first().map(|l| l.record.ttl))
            .unwrap_or(3600)
    }
}

/// What one vendor's API must offer.
#[async_trait]
pub trait RrsetApi: Send + Sync {
    /// The vendor and base URL, for messages: `deSEC https://desec.io/api/v1`.
    fn label(&self) -> String;
    /// Whether the API takes TLSA records (DANE, RFC 7672).
    fn writes_tlsa(&self) -> bool;
    /// Every zone of the account (absolute, lowercase), from one listing (paged).
    async fn zones(&self) -> Result<Vec<String>, ProviderError>;
    /// Every record at `names` (absolute, lowercase) in `zone`, with ids where the API has them.
    async fn read(
        &self,
        zone: &str,
        names: &BTreeSet<String>,
    ) -> Result<Vec<Listed>, ProviderError>;
    /// Carries out `changes` in `zone`, in the order given, as atomically as the API allows.
    async fn write(&self, zone: &str, changes: &[RrsetChange]) -> Result<(), ProviderError>;
}

/// A provider over an [`RrsetApi`].
pub struct ReadVerifyWrite<A> {
    name: String,
    api: A,
    /// Zones of the account, from the last listing.
    zones: Mutex<Option<Vec<String>>>,
    /// One lock per name we write to.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl<A: RrsetApi> ReadVerifyWrite<A> {
    pub fn new(name: &str, api: A) -> Self {
        ReadVerifyWrite {
            name: name.to_owned(),
            api,
            zones: Mutex::new(None),
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn api(&self) -> &A {
        &self.api
    }

    /// The longest suffix of `name` among the listed zones.
    fn longest_zone(&self, name: &str) -> Option<String> {
        let zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let zones = zones.as_ref()?;
        let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
        (0..labels.len())
            .map(|start| format!("{}.", labels[start..].join(".")))
            .find(|candidate| zones.contains(candidate))
    }

    fn lock_of(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    fn conflict(&self, zone: &str, what: String) -> ProviderError {
        ProviderError::Conflict {
            code: "changed".into(),
            message: format!("{}: zone {zone}: {what}", self.api.label()),
        }
    }
}

/// One value as an RRset API lists it in presentation form (`TXT` quoted or bare, `CNAME`,
/// `TLSA`, anything else kept as text), as our record.
pub(crate) fn from_presentation(name: &str, rtype: &str, ttl: u32, value: &str) -> Record {
    use crate::record::{parse_txt_presentation, RData};
    let data = match rtype {
        "TXT" => RData::Txt(parse_txt_presentation(value).unwrap_or_else(|| value.to_owned())),
        "CNAME" => RData::Cname(absolute(value)),
        "TLSA" => RData::tlsa_text(value),
        other => RData::Other {
            rtype: other.to_owned(),
            text: value.to_owned(),
        },
    };
    Record {
        name: name.to_owned(),
        ttl,
        data,
    }
}

/// The RRset changes that carry out `changes` against `listed` (a fresh read): per domain and
/// per name and type, what was read less our deletes plus our adds; the `_mta-sts` TXT after
/// the rest of its domain (a sender seeing the new id fetches the policy from the new host).
/// A delete that is no longer there is an error (the caller's conflict).
pub fn plan(listed: &[Listed], changes: &Changes) -> Result<Vec<RrsetChange>, String> {
    let mut out: Vec<RrsetChange> = Vec::new();
    for d in &changes.domains {
        let mut groups: Vec<(String, String)> = Vec::new();
        for r in d.delete.iter().chain(&d.add) {
            let key = (absolute(&r.name), r.data.type_name().to_owned());
            if !groups.contains(&key) {
                groups.push(key);
            }
        }
        groups.sort_by_key(|(name, rtype)| rtype == "TXT" && name.starts_with("_mta-sts."));
        for (name, rtype) in groups {
            let old: Vec<Listed> = listed
                .iter()
                .filter(|l| l.record.name == name && l.record.data.type_name() == rtype)
                .cloned()
                .collect();
            let of = |r: &&Record| absolute(&r.name) == name && r.data.type_name() == rtype;
            let mut new: Vec<Record> = old.iter().map(|l| l.record.clone()).collect();
            for del in d.delete.iter().filter(of) {
                let before = new.len();
                new.retain(|r| r.data != del.data);
                if new.len() == before {
                    return Err(format!("{name} {rtype} {:?} is gone", del.data));
                }
            }
            for add in d.add.iter().filter(of) {
                if !new.iter().any(|r| r.data == add.data) {
                    new.push(Record {
                        name: name.clone(),
                        ..add.clone()
                    });
                }
            }
            out.push(RrsetChange {
                name,
                rtype,
                old,
                new,
            });
        }
    }
    Ok(out)
}

#[async_trait]
impl<A: RrsetApi> Provider for ReadVerifyWrite<A> {
    fn name(&self) -> &str {
        &self.name
    }

    fn consistency(&self) -> Consistency {
        Consistency::ReadVerifyWrite
    }

    fn writes_tlsa(&self) -> bool {
        self.api.writes_tlsa()
    }

    /// From one listing of the account's zones, remembered; listed again only for a name none
    /// of the remembered zones holds.
    async fn zones_of(&self, names: &[String]) -> Vec<Result<String, ProviderError>> {
        let names: Vec<String> = names.iter().map(|n| absolute(n)).collect();
        if names.iter().any(|n| self.longest_zone(n).is_none()) {
            match self.api.zones().await {
                Ok(zones) => {
                    let zones = zones.iter().map(|z| absolute(z)).collect();
                    *self.zones.lock().unwrap_or_else(|e| e.into_inner()) = Some(zones);
                }
                Err(e) => return names.iter().map(|_| Err(e.clone())).collect(),
            }
        }
        names
            .iter()
            .map(|n| {
                self.longest_zone(n).ok_or_else(|| ProviderError::Config {
                    code: "no zone".into(),
                    message: format!("{}: no zone in this account holds {n}", self.api.label()),
                })
            })
            .collect()
    }

    async fn records(&self, zone: &str, names: &[String]) -> Result<Vec<Record>, ProviderError> {
        let names: BTreeSet<String> = names.iter().map(|n| absolute(n)).collect();
        let listed = self.api.read(&absolute(zone), &names).await?;
        Ok(listed.into_iter().map(|l| l.record).collect())
    }

    async fn apply(&self, zone: &str, changes: &Changes) -> Result<(), ProviderError> {
        if changes.is_empty() {
            return Ok(());
        }
        // Refused before anything is written, so no zone is left half changed.
        if changes.touches("TLSA") && !self.api.writes_tlsa() {
            return Err(ProviderError::cannot_publish(&self.name, "TLSA"));
        }
        let zone = absolute(zone);
        let names = changes.names();
        // In name order (a BTreeSet's), so two applies never wait on each other in a circle.
        let mut guards = Vec::with_capacity(names.len());
        for n in &names {
            guards.push(self.lock_of(n).lock_owned().await);
        }
        let listed = self.api.read(&zone, &names).await?;
        let seen: Vec<Record> = listed.iter().map(|l| l.record.clone()).collect();
        for d in &changes.domains {
            if let Some(e) = d.expect.iter().find(|e| !e.holds(&seen)) {
                return Err(self.conflict(
                    &zone,
                    format!("the records at {} changed since they were read", e.name()),
                ));
            }
        }
        let rrsets = plan(&listed, changes)
            .map_err(|what| self.conflict(&zone, format!("{what} since it was read")))?;
        self.api.write(&zone, &rrsets).await?;
        let after = self.api.read(&zone, &names).await?;
        let has = |r: &Record| after.iter().any(|l| l.record.same_data(r));
        for d in &changes.domains {
            if let Some(r) = d.add.iter().find(|r| !has(r)) {
                return Err(self.conflict(
                    &zone,
                    format!(
                        "read back after writing, {} {} is missing",
                        r.name,
                        r.data.type_name()
                    ),
                ));
            }
            if let Some(r) = d.delete.iter().find(|r| has(r)) {
                return Err(self.conflict(
                    &zone,
                    format!(
                        "read back after writing, {} {} is still there",
                        r.name,
                        r.data.type_name()
                    ),
                ));
            }
        }
        drop(guards);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DomainChange;

    fn l(record: Record) -> Listed {
        Listed { record, id: None }
    }

    #[test]
    fn foreign_values_carried_over_and_sts_last() {
        let sts = "_mta-sts.example.org.";
        let listed = vec![
            l(Record::txt(sts, 300, "v=STSv1; id=old;")),
            l(Record::txt(sts, 300, "site-verification=x")),
            l(Record::txt("_smtp._tls.example.org.", 300, "note")),
        ];
        let changes = Changes {
            domains: vec![DomainChange {
                domain: "example.org".into(),
                expect: vec![],
                delete: vec![Record::txt(sts, 3600, "v=STSv1; id=old;")],
                add: vec![
                    Record::txt(sts, 3600, "v=STSv1; id=new;"),
                    Record::cname("mta-sts.example.org.", 3600, "mail.example.org."),
                ],
            }],
        };
        let got = plan(&listed, &changes).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "mta-sts.example.org.");
        assert_eq!(got[1].name, sts);
        assert_eq!(
            got[1].new,
            vec![
                Record::txt(sts, 300, "site-verification=x"),
                Record::txt(sts, 3600, "v=STSv1; id=new;"),
            ]
        );
        assert_eq!(got[1].removed().count(), 1);
        assert_eq!(got[1].added().count(), 1);
        assert_eq!(got[1].ttl(), 3600);
        // A delete no longer there: refused, for the caller to read again.
        let err = plan(&listed[1..], &changes).unwrap_err();
        assert!(err.contains("is gone"), "{err}");
    }
}
