//! OVHcloud DNS through its signed API: read-verify-write ([`crate::rrsets`]), as the API has no
//! conditional write.
//!
//! The API lists record ids per name (`?subDomain=`) and a record per id, so a name costs one
//! listing and one request per record there. Records are written by id: a value being
//! replaced is rewritten in place (`PUT`), then new ones created, leftovers deleted; foreign
//! records are never in a request. Changes go live only after `POST …/refresh`, sent once
//! per apply that changed anything.

mod client;

use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::record::{parse_txt_presentation, txt_presentation, RData, Record};
use crate::rest::{join, relative};
use crate::rrsets::{absolute, Listed, ReadVerifyWrite, RrsetApi, RrsetChange};
use crate::ProviderError;
pub use client::Keys;
use client::{Client, NewRecord, ZoneRecord};

pub struct OvhApi {
    client: Client,
}

/// The OVH provider.
pub type Ovh = ReadVerifyWrite<OvhApi>;

/// The API's base URL of a region: `ovh-eu`, `ovh-ca` or `ovh-us`.
pub fn region_url(region: &str) -> Option<&'static str> {
    match region {
        "ovh-eu" => Some("https://eu.api.ovh.com/1.0"),
        "ovh-ca" => Some("https://ca.api.ovh.com/1.0"),
        "ovh-us" => Some("https://api.us.ovhcloud.com/1.0"),
        _ => None,
    }
}

pub fn ovh(name: &str, base_url: &str, keys: Keys) -> Result<Ovh, ProviderError> {
    Ok(ReadVerifyWrite::new(
        name,
        OvhApi {
            client: Client::new(base_url, keys)?,
        },
    ))
}

fn to_record(zone: &str, r: &ZoneRecord) -> Record {
    let data = match r.field_type.as_str() {
        "TXT" if r.target.starts_with('"') => {
            RData::Txt(parse_txt_presentation(&r.target).unwrap_or_else(|| r.target.clone()))
        }
        "TXT" => RData::Txt(r.target.clone()),
        "CNAME" => RData::Cname(absolute(&r.target)),
        "TLSA" => RData::tlsa_text(&r.target),
        other => RData::Other {
            rtype: other.to_owned(),
            text: r.target.clone(),
        },
    };
    Record {
        name: join(&r.sub_domain, zone),
        ttl: r.ttl,
        data,
    }
}

fn new_record(r: &Record, zone: &str, with_type: bool) -> Result<NewRecord, ProviderError> {
    let target = match &r.data {
        RData::Txt(text) => txt_presentation(text),
        RData::Cname(target) => absolute(target),
        // RFC 6698 §2.2 presentation form, as OVH's `target` takes it.
        RData::Tlsa(t) => t.to_string(),
        RData::Other { rtype, .. } => {
            return Err(ProviderError::config(format!(
                "{}: a {rtype} record is never written by mta-stsd",
                r.name
            )))
        }
    };
    let sub = relative(&r.name, zone)
        .ok_or_else(|| ProviderError::config(format!("{} is not in zone {zone}", r.name)))?;
    Ok(NewRecord {
        field_type: with_type.then(|| r.data.type_name().to_owned()),
        sub_domain: if sub == "@" { String::new() } else { sub },
        target,
        ttl: r.ttl,
    })
}

fn id_of(l: &Listed) -> Result<u64, ProviderError> {
    l.id.as_deref()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ProviderError::config(format!("{}: a record without an id", l.record.name)))
}

#[async_trait]
impl RrsetApi for OvhApi {
    fn label(&self) -> String {
        self.client.label()
    }

    fn writes_tlsa(&self) -> bool {
        true
    }

    async fn zones(&self) -> Result<Vec<String>, ProviderError> {
        Ok(self
            .client
            .zones()
            .await?
            .iter()
            .map(|z| absolute(z))
            .collect())
    }

    async fn read(
        &self,
        zone: &str,
        names: &BTreeSet<String>,
    ) -> Result<Vec<Listed>, ProviderError> {
        let z = zone.trim_end_matches('.');
        let mut out = Vec::new();
        for name in names {
            let Some(sub) = relative(name, zone) else {
                continue;
            };
            let sub = if sub == "@" { String::new() } else { sub };
            for id in self.client.record_ids(z, &sub).await? {
                let r = self.client.record(z, id).await?;
                out.push(Listed {
                    record: to_record(zone, &r),
                    id: Some(r.id.to_string()),
                });
            }
        }
        Ok(out)
    }

    async fn write(&self, zone: &str, changes: &[RrsetChange]) -> Result<(), ProviderError> {
        let z = zone.trim_end_matches('.');
        let mut changed = false;
        let result = self.calls(zone, changes, &mut changed).await;
        // What was changed before a failure is refreshed too: staged records that the next
        // read shows as done would otherwise never go live.
        if changed {
            self.client.refresh(z).await?;
        }
        result
    }
}

impl OvhApi {
    async fn calls(
        &self,
        zone: &str,
        changes: &[RrsetChange],
        changed: &mut bool,
    ) -> Result<(), ProviderError> {
        let z = zone.trim_end_matches('.');
        for c in changes {
            let mut removed = c.removed();
            for add in c.added() {
                match removed.next() {
                    Some(old) => {
                        let body = new_record(add, zone, false)?;
                        self.client.update(z, id_of(old)?, &body).await?;
                    }
                    None => self.client.create(z, &new_record(add, zone, true)?).await?,
                }
                *changed = true;
            }
            for old in removed {
                self.client.delete(z, id_of(old)?).await?;
                *changed = true;
            }
        }
        Ok(())
    }
}
