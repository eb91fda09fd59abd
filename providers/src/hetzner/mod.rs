//! Hetzner Cloud DNS through the Cloud API's zones and RRsets: read-verify-write
//! ([`crate::rrsets`]), as the API has no conditional write.
//!
//! A zone is read in one listing of its RRsets (paged). TXT values are written and read as
//! quoted character-strings of at most 255 octets (the API's TXT format). Writes go by value:
//! `add_records` for our new values, then `remove_records` for our old ones, so a foreign value
//! at the name is never in a request, let alone removed. A CNAME RRset holds one value, so a
//! CNAME being replaced is rewritten with `set_records` (one action, never a moment without).

mod client;

use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::record::{txt_presentation, RData, Record};
use crate::rest::{join, relative};
use crate::rrsets::{absolute, Listed, ReadVerifyWrite, RrsetApi, RrsetChange};
use crate::{ProviderError, Secret};
use client::{records_body, Client};

/// An RRset whose `ttl` is null has the zone's default, 3600 unless changed.
const DEFAULT_TTL: u32 = 3600;

pub struct HetznerApi {
    client: Client,
}

/// The Hetzner provider.
pub type Hetzner = ReadVerifyWrite<HetznerApi>;

/// `base_url` is `https://api.hetzner.cloud/v1` in production.
pub fn hetzner(name: &str, base_url: &str, token: Secret) -> Result<Hetzner, ProviderError> {
    Ok(ReadVerifyWrite::new(
        name,
        HetznerApi {
            client: Client::new(base_url, token)?,
        },
    ))
}

/// A record's value as the API takes it.
fn value(r: &Record) -> Result<String, ProviderError> {
    match &r.data {
        RData::Txt(text) => Ok(txt_presentation(text)),
        RData::Cname(target) => Ok(absolute(target)),
        // RFC 6698 §2.2 presentation form, as Hetzner's rrsets take it.
        RData::Tlsa(t) => Ok(t.to_string()),
        RData::Other { rtype, .. } => Err(ProviderError::config(format!(
            "{}: a {rtype} record is never written by mta-stsd",
            r.name
        ))),
    }
}

fn zone_path(zone: &str) -> &str {
    zone.trim_end_matches('.')
}

#[async_trait]
impl RrsetApi for HetznerApi {
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
            .map(|z| absolute(&z.name))
            .collect())
    }

    async fn read(
        &self,
        zone: &str,
        names: &BTreeSet<String>,
    ) -> Result<Vec<Listed>, ProviderError> {
        let mut out = Vec::new();
        for set in self.client.rrsets(zone_path(zone)).await? {
            let name = join(&set.name, zone);
            if !names.contains(&name) {
                continue;
            }
            let ttl = set.ttl.unwrap_or(DEFAULT_TTL);
            out.extend(set.records.iter().map(|v| Listed {
                record: crate::rrsets::from_presentation(&name, &set.rtype, ttl, &v.value),
                id: None,
            }));
        }
        Ok(out)
    }

    async fn write(&self, zone: &str, changes: &[RrsetChange]) -> Result<(), ProviderError> {
        for c in changes {
            let sub = relative(&c.name, zone).ok_or_else(|| {
                ProviderError::config(format!("{} is not in zone {zone}", c.name))
            })?;
            let added = c.added().map(value).collect::<Result<Vec<_>, _>>()?;
            let removed = c
                .removed()
                .map(|l| value(&l.record))
                .collect::<Result<Vec<_>, _>>()?;
            let z = zone_path(zone);
            if c.rtype == "CNAME" && !added.is_empty() && !removed.is_empty() {
                let body = records_body(None, &added);
                self.client
                    .action(z, &sub, &c.rtype, "set_records", body)
                    .await?;
                continue;
            }
            if !added.is_empty() {
                let body = records_body(Some(c.ttl()), &added);
                self.client
                    .action(z, &sub, &c.rtype, "add_records", body)
                    .await?;
            }
            if !removed.is_empty() {
                let body = records_body(None, &removed);
                self.client
                    .action(z, &sub, &c.rtype, "remove_records", body)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_txt_is_chunked_and_joined() {
        let text = format!("v=TLSRPTv1; rua=mailto:{}@example.org;", "r".repeat(300));
        let r = Record::txt("_smtp._tls.a.example.org.", 3600, text.clone());
        let v = value(&r).unwrap();
        assert!(v.starts_with('"') && v.contains("\" \""), "{v}");
        assert_eq!(
            crate::rrsets::from_presentation("_smtp._tls.a.example.org.", "TXT", 3600, &v),
            r
        );
    }
}
