//! deSEC through its REST API: read-verify-write ([`crate::rrsets`]), as the API has no
//! conditional write.
//!
//! A domain is read in one listing of its RRsets. deSEC replaces whole RRsets, so each RRset we
//! touch is sent whole: the values read, less ours being removed, plus ours being added —
//! foreign values are sent back, never dropped. Every RRset of one apply goes in one bulk
//! `PATCH`, which deSEC applies all or nothing: one write per zone and apply, well within its
//! per-domain write limits (which the client keeps to anyway).

mod client;

use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::record::{txt_presentation, RData, Record};
use crate::rest::{join, relative};
use crate::rrsets::{absolute, Listed, ReadVerifyWrite, RrsetApi, RrsetChange};
use crate::{ProviderError, Secret};
use client::{Client, Rrset};

pub struct DesecApi {
    client: Client,
}

/// The deSEC provider.
pub type Desec = ReadVerifyWrite<DesecApi>;

/// `base_url` is `https://desec.io/api/v1` in production.
pub fn desec(name: &str, base_url: &str, token: Secret) -> Result<Desec, ProviderError> {
    Ok(ReadVerifyWrite::new(
        name,
        DesecApi {
            client: Client::new(base_url, token)?,
        },
    ))
}

fn value(r: &Record) -> Result<String, ProviderError> {
    match &r.data {
        RData::Txt(text) => Ok(txt_presentation(text)),
        RData::Cname(target) => Ok(absolute(target)),
        // RFC 6698 §2.2 presentation form, as deSEC's rrsets take it.
        RData::Tlsa(t) => Ok(t.to_string()),
        // A foreign value carried over: as it was read.
        RData::Other { text, .. } => Ok(text.clone()),
    }
}

fn domain(zone: &str) -> &str {
    zone.trim_end_matches('.')
}

#[async_trait]
impl RrsetApi for DesecApi {
    fn label(&self) -> String {
        self.client.label()
    }

    fn writes_tlsa(&self) -> bool {
        true
    }

    async fn zones(&self) -> Result<Vec<String>, ProviderError> {
        Ok(self
            .client
            .domains()
            .await?
            .iter()
            .map(|d| absolute(&d.name))
            .collect())
    }

    async fn read(
        &self,
        zone: &str,
        names: &BTreeSet<String>,
    ) -> Result<Vec<Listed>, ProviderError> {
        let mut out = Vec::new();
        for set in self.client.rrsets(domain(zone)).await? {
            let name = join(&set.subname, zone);
            if !names.contains(&name) {
                continue;
            }
            out.extend(set.records.iter().map(|v| Listed {
                record: crate::rrsets::from_presentation(&name, &set.rtype, set.ttl, v),
                id: None,
            }));
        }
        Ok(out)
    }

    async fn write(&self, zone: &str, changes: &[RrsetChange]) -> Result<(), ProviderError> {
        let mut rrsets = Vec::with_capacity(changes.len());
        for c in changes {
            let sub = relative(&c.name, zone).ok_or_else(|| {
                ProviderError::config(format!("{} is not in zone {zone}", c.name))
            })?;
            rrsets.push(Rrset {
                subname: if sub == "@" { String::new() } else { sub },
                rtype: c.rtype.clone(),
                ttl: c.ttl(),
                records: c.new.iter().map(value).collect::<Result<_, _>>()?,
            });
        }
        if rrsets.is_empty() {
            return Ok(());
        }
        self.client.patch(domain(zone), &rrsets).await
    }
}
