//! PowerDNS Authoritative through its HTTP API: each zone's changes in one RRset `PATCH`.
//!
//! PowerDNS keeps one TTL per RRset and replaces RRsets whole, so deleting one record means
//! sending the RRset without it: the RRsets we touch are read again right before the `PATCH`,
//! foreign records (and disabled ones) carried over, ours removed or added. The API has no
//! prerequisites; that fresh read is checked against each domain's [`Expect`] instead, and a
//! difference is a [`ProviderError::Conflict`] (see [`PowerDns::apply`] for what remains racy).

mod client;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::record::{absolute, parse_txt_presentation, txt_presentation, RData, Record, Tlsa};
use crate::{Changes, Provider, ProviderError, Secret};
use client::{Client, RRset, RRsetChange, Rr};

/// Up to this many names are read with one filtered request each; more, with one read of the
/// whole zone (a hosting provider's zone may hold a million names, but then most are asked).
const PER_NAME_READS: usize = 16;

pub struct PowerDns {
    name: String,
    client: Client,
    /// Zone name (absolute, lowercase) to the server's zone id, from the last zone list.
    zone_ids: Mutex<HashMap<String, String>>,
}

impl PowerDns {
    /// `url` is the API server's base URL without `/api/v1`; `server_id` is usually
    /// `localhost`.
    pub fn new(
        name: &str,
        url: &str,
        server_id: &str,
        api_key: Secret,
    ) -> Result<Self, ProviderError> {
        Ok(PowerDns {
            name: name.to_owned(),
            client: Client::new(url, server_id, api_key)?,
            zone_ids: Mutex::new(HashMap::new()),
        })
    }

    /// The id the zone list gave for `zone`, else the name itself (PowerDNS's ids are the names
    /// for all but names with `/`): an unknown zone then gets the server's own 404.
    fn zone_id(&self, zone: &str) -> String {
        let zone = absolute(zone);
        self.zone_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&zone)
            .cloned()
            .unwrap_or(zone)
    }

    /// The RRsets at `names` (absolute, lowercase), disabled records included.
    async fn read(
        &self,
        zone_id: &str,
        names: &BTreeSet<String>,
    ) -> Result<Vec<RRset>, ProviderError> {
        let mut rrsets = Vec::new();
        if names.len() <= PER_NAME_READS {
            for n in names {
                rrsets.extend(self.client.rrsets(zone_id, Some(n)).await?);
            }
        } else {
            rrsets = self.client.rrsets(zone_id, None).await?;
        }
        for r in &mut rrsets {
            r.name = absolute(&r.name);
        }
        rrsets.retain(|r| names.contains(&r.name));
        Ok(rrsets)
    }
}

/// `name` lowercase with its trailing dot.
/// Our model of one PowerDNS record: TXT content unquoted and its strings concatenated, CNAME
/// targets lowercase and absolute, anything else as PowerDNS wrote it.
fn to_record(set: &RRset, rr: &Rr) -> Record {
    let data = match set.rtype.as_str() {
        // Content PowerDNS would not have accepted is kept verbatim rather than dropped.
        "TXT" => {
            RData::Txt(parse_txt_presentation(&rr.content).unwrap_or_else(|| rr.content.clone()))
        }
        "CNAME" => RData::Cname(absolute(&rr.content)),
        "TLSA" => Tlsa::parse(&rr.content).map_or_else(
            || RData::Other {
                rtype: "TLSA".to_owned(),
                text: rr.content.clone(),
            },
            RData::Tlsa,
        ),
        other => RData::Other {
            rtype: other.to_owned(),
            text: rr.content.clone(),
        },
    };
    Record {
        name: set.name.clone(),
        ttl: set.ttl,
        data,
    }
}

/// What PowerDNS takes as `content` for one of our records.
fn content(r: &Record) -> Result<String, ProviderError> {
    match &r.data {
        RData::Txt(text) => Ok(txt_presentation(text)),
        RData::Cname(target) => Ok(absolute(target)),
        // RFC 6698 §2.2 presentation form, as PowerDNS's API takes it.
        RData::Tlsa(t) => Ok(t.to_string()),
        RData::Other { rtype, .. } => Err(ProviderError::config(format!(
            "{}: a {rtype} record is never written by mta-stsd",
            r.name
        ))),
    }
}

/// The served (enabled) records of `rrsets`.
fn served(rrsets: &[RRset]) -> Vec<Record> {
    rrsets
        .iter()
        .flat_map(|s| {
            s.records
                .iter()
                .filter(|rr| !rr.disabled)
                .map(move |rr| to_record(s, rr))
        })
        .collect()
}

/// The `PATCH` that turns `current` into `current - deletes + adds`, one entry per RRset
/// touched: `REPLACE` with the records left (foreign and disabled ones included), `DELETE`
/// when none are. An RRset takes the TTL of the records added to it, else keeps its own.
fn rrset_changes(current: &[RRset], changes: &Changes) -> Result<Vec<RRsetChange>, ProviderError> {
    let mut sets: BTreeMap<(String, String), (u32, Vec<Rr>)> = BTreeMap::new();
    let touched = changes
        .domains
        .iter()
        .flat_map(|d| d.delete.iter().chain(&d.add));
    for r in touched {
        let key = (absolute(&r.name), r.data.type_name().to_owned());
        sets.entry(key.clone()).or_insert_with(|| {
            current
                .iter()
                .find(|s| (s.name.as_str(), s.rtype.as_str()) == (key.0.as_str(), key.1.as_str()))
                .map_or((r.ttl, Vec::new()), |s| (s.ttl, s.records.clone()))
        });
    }
    for d in &changes.domains {
        for del in &d.delete {
            let key = (absolute(&del.name), del.data.type_name().to_owned());
            let (_, records) = sets
                .get_mut(&key)
                .expect("every touched RRset has an entry");
            let probe = RRset {
                name: key.0.clone(),
                rtype: key.1.clone(),
                ttl: 0,
                records: Vec::new(),
            };
            records.retain(|rr| rr.disabled || to_record(&probe, rr).data != del.data);
        }
        for add in &d.add {
            let key = (absolute(&add.name), add.data.type_name().to_owned());
            let (ttl, records) = sets
                .get_mut(&key)
                .expect("every touched RRset has an entry");
            let rr = Rr {
                content: content(add)?,
                disabled: false,
            };
            *ttl = add.ttl;
            if !records.contains(&rr) {
                records.push(rr);
            }
        }
    }
    Ok(sets
        .into_iter()
        .map(|((name, rtype), (ttl, records))| {
            if records.is_empty() {
                RRsetChange {
                    name,
                    rtype,
                    ttl: None,
                    changetype: "DELETE",
                    records,
                }
            } else {
                RRsetChange {
                    name,
                    rtype,
                    ttl: Some(ttl),
                    changetype: "REPLACE",
                    records,
                }
            }
        })
        .collect())
}

#[async_trait]
impl Provider for PowerDns {
    fn name(&self) -> &str {
        &self.name
    }

    fn consistency(&self) -> crate::Consistency {
        crate::Consistency::ReadVerifyWrite
    }

    fn writes_tlsa(&self) -> bool {
        true
    }

    /// One zone list for all names; each gets the longest zone that is a suffix of it.
    async fn zones_of(&self, names: &[String]) -> Vec<Result<String, ProviderError>> {
        let zones = match self.client.zones().await {
            Ok(z) => z,
            Err(e) => return names.iter().map(|_| Err(e.clone())).collect(),
        };
        let zones: Vec<(String, String)> = zones
            .into_iter()
            .map(|z| (absolute(&z.name), z.id))
            .collect();
        self.zone_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(zones.iter().cloned());
        names
            .iter()
            .map(|n| {
                let n = absolute(n);
                zones
                    .iter()
                    .map(|(zone, _)| zone)
                    .filter(|zone| n == **zone || n.ends_with(&format!(".{zone}")))
                    .max_by_key(|zone| zone.len())
                    .cloned()
                    .ok_or_else(|| ProviderError::Config {
                        code: "no zone".into(),
                        message: format!(
                            "{}: none of its {} zones holds {n}",
                            self.client.describe(),
                            zones.len()
                        ),
                    })
            })
            .collect()
    }

    async fn records(&self, zone: &str, names: &[String]) -> Result<Vec<Record>, ProviderError> {
        let names: BTreeSet<String> = names.iter().map(|n| absolute(n)).collect();
        let rrsets = self.read(&self.zone_id(zone), &names).await?;
        Ok(served(&rrsets))
    }

    /// Re-reads every name the changes touch, checks each [`Expect`] against that read, and
    /// sends one `PATCH` for the zone.
    ///
    /// The race that remains: a change made by someone else between this read and the `PATCH`
    /// (milliseconds apart) is not detected, and a `REPLACE` of an RRset it touched overwrites
    /// it. PowerDNS offers nothing to close that window (no prerequisites, no RRset versions or
    /// ETags); RFC 2136 against the same server would (PowerDNS supports it with `dnsupdate`).
    async fn apply(&self, zone: &str, changes: &Changes) -> Result<(), ProviderError> {
        if changes.is_empty() {
            return Ok(());
        }
        let zone_id = self.zone_id(zone);
        let names = changes.names();
        let current = self.read(&zone_id, &names).await?;
        let seen = served(&current);
        for d in &changes.domains {
            if let Some(e) = d.expect.iter().find(|e| !e.holds(&seen)) {
                return Err(ProviderError::Conflict {
                    code: "changed".into(),
                    message: format!(
                        "{}: zone {zone}: the records at {} changed since they were read",
                        self.client.describe(),
                        e.name()
                    ),
                });
            }
        }
        let patch = rrset_changes(&current, changes)?;
        if patch.is_empty() {
            return Ok(());
        }
        self.client.patch(&zone_id, &patch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DomainChange;

    fn set(name: &str, rtype: &str, ttl: u32, contents: &[(&str, bool)]) -> RRset {
        RRset {
            name: name.into(),
            rtype: rtype.into(),
            ttl,
            records: contents
                .iter()
                .map(|(c, disabled)| Rr {
                    content: (*c).into(),
                    disabled: *disabled,
                })
                .collect(),
        }
    }

    #[test]
    fn reads_txt_quoted_and_split() {
        let s = set(
            "_mta-sts.example.org.",
            "TXT",
            300,
            &[(r#""v=STSv1; " "id=1;""#, false)],
        );
        assert_eq!(
            to_record(&s, &s.records[0]),
            Record::txt("_mta-sts.example.org.", 300, "v=STSv1; id=1;")
        );
        let c = set(
            "mta-sts.example.org.",
            "CNAME",
            60,
            &[("Mail.Example.org.", false)],
        );
        assert_eq!(
            to_record(&c, &c.records[0]).data,
            RData::Cname("mail.example.org.".into())
        );
    }

    #[test]
    fn replace_keeps_foreign_and_disabled_records_delete_when_empty() {
        let name = "_mta-sts.example.org.";
        let current = vec![
            set(
                name,
                "TXT",
                300,
                &[
                    (r#""v=STSv1; id=old;""#, false),
                    (r#""site-verification=x""#, false),
                    (r#""v=STSv1; id=parked;""#, true),
                ],
            ),
            set(
                "_smtp._tls.example.org.",
                "TXT",
                300,
                &[(r#""v=TLSRPTv1; rua=mailto:a@b;""#, false)],
            ),
        ];
        let changes = Changes {
            domains: vec![DomainChange {
                domain: "example.org".into(),
                expect: vec![],
                delete: vec![
                    Record::txt(name, 300, "v=STSv1; id=old;"),
                    Record::txt(
                        "_smtp._tls.example.org.",
                        300,
                        "v=TLSRPTv1; rua=mailto:a@b;",
                    ),
                ],
                add: vec![
                    Record::txt(name, 3600, "v=STSv1; id=new;"),
                    Record::cname("mta-sts.example.org.", 3600, "mail.example.org."),
                ],
            }],
        };
        let patch = rrset_changes(&current, &changes).unwrap();
        let rr = |c: &str, disabled| Rr {
            content: c.into(),
            disabled,
        };
        assert_eq!(
            patch,
            vec![
                RRsetChange {
                    name: name.into(),
                    rtype: "TXT".into(),
                    ttl: Some(3600),
                    changetype: "REPLACE",
                    records: vec![
                        rr(r#""site-verification=x""#, false),
                        rr(r#""v=STSv1; id=parked;""#, true),
                        rr(r#""v=STSv1; id=new;""#, false),
                    ],
                },
                RRsetChange {
                    name: "_smtp._tls.example.org.".into(),
                    rtype: "TXT".into(),
                    ttl: None,
                    changetype: "DELETE",
                    records: vec![],
                },
                RRsetChange {
                    name: "mta-sts.example.org.".into(),
                    rtype: "CNAME".into(),
                    ttl: Some(3600),
                    changetype: "REPLACE",
                    records: vec![rr("mail.example.org.", false)],
                },
            ]
        );
    }
}
