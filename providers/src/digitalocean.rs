//! DigitalOcean through its API v2 (api.digitalocean.com/v2, "Domains" and "Domain Records"):
//! read-verify-write ([`crate::rrsets`]), as the API has no conditional write.
//!
//! Domains and a domain's records are listed page by page (`links.pages.next`, 200 a page);
//! records are written one by one, by id: a value being replaced is rewritten in place
//! (`PUT /domains/{d}/records/{id}`, never a moment with two `v=STSv1` records or none), new
//! ones are created (`POST`), what is left deleted (`DELETE`). Foreign records are never in a
//! request. Errors are `{"id": "…", "message": "…"}`; 429 `too_many_requests` is waited out.

use std::collections::BTreeSet;

use async_trait::async_trait;
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::Reply;
use crate::record::{parse_txt_presentation, RData, Record};
use crate::rest::{self, join, relative, Rest, MAX_PAGES};
use crate::rrsets::{absolute, Listed, ReadVerifyWrite, RrsetApi, RrsetChange};
use crate::{ProviderError, Secret};

/// The most items a page may hold.
const PER_PAGE: &str = "200";

#[derive(Debug, Deserialize)]
struct DomainRecord {
    id: u64,
    #[serde(rename = "type")]
    rtype: String,
    /// Relative to the domain, `@` for the apex.
    name: String,
    data: String,
    ttl: u32,
}

pub struct DigitalOceanApi {
    rest: Rest,
    token: Secret,
}

/// The DigitalOcean provider.
pub type DigitalOcean = ReadVerifyWrite<DigitalOceanApi>;

/// `base_url` is `https://api.digitalocean.com/v2` in production.
pub fn digitalocean(
    name: &str,
    base_url: &str,
    token: Secret,
) -> Result<DigitalOcean, ProviderError> {
    Ok(ReadVerifyWrite::new(
        name,
        DigitalOceanApi {
            rest: Rest::new("DigitalOcean", base_url)?,
            token,
        },
    ))
}

impl DigitalOceanApi {
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, ProviderError> {
        let (reply, tries) = self
            .rest
            .send(&method, &url, |r| {
                let r = r.bearer_auth(self.token.expose());
                match body {
                    Some(b) => r.json(b),
                    None => r,
                }
            })
            .await?;
        let what = self.rest.what(&method, &url);
        if !reply.status.is_success() {
            return Err(error(&what, &reply, tries));
        }
        if reply.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&reply.body).map_err(|e| rest::bad_response(&what, &reply, &e))
    }

    /// A listing whose items are under `key`, page by page until `links.pages.next` is absent.
    async fn paged<T: serde::de::DeserializeOwned>(
        &self,
        path: &[&str],
        key: &str,
    ) -> Result<Vec<T>, ProviderError> {
        let mut out = Vec::new();
        let mut page = 1u32;
        for _ in 0..MAX_PAGES {
            let page_text = page.to_string();
            let url = self
                .rest
                .url(path, &[("page", &page_text), ("per_page", PER_PAGE)]);
            let mut v = self.call(Method::GET, url.clone(), None).await?;
            let items: Vec<T> =
                serde_json::from_value(v[key].take()).map_err(|e| ProviderError::Refused {
                    code: "bad-response".into(),
                    message: format!(
                        "{}: no valid `{key}` ({e})",
                        self.rest.what(&Method::GET, &url)
                    ),
                })?;
            out.extend(items);
            // The next page's number, from its URL: the URL itself is not followed, so
            // credentials never go where the config did not say.
            let next = v["links"]["pages"]["next"]
                .as_str()
                .and_then(|n| Url::parse(n).ok())
                .and_then(|n| {
                    n.query_pairs()
                        .find(|(k, _)| k == "page")
                        .and_then(|(_, p)| p.parse::<u32>().ok())
                });
            match next {
                Some(n) if n > page => page = n,
                _ => return Ok(out),
            }
        }
        Err(ProviderError::Refused {
            code: "paging".into(),
            message: format!(
                "{}: /{} did not end after {MAX_PAGES} pages",
                self.rest.label(),
                path.join("/")
            ),
        })
    }

    fn body(&self, r: &Record, zone: &str) -> Result<Value, ProviderError> {
        let data = match &r.data {
            RData::Txt(text) => text.clone(),
            RData::Cname(target) => absolute(target),
            // DigitalOcean DNS has no TLSA type (A, AAAA, CAA, CNAME, MX, NS, PTR, SRV, TXT).
            RData::Tlsa(_) => return Err(ProviderError::cannot_publish("digitalocean", "TLSA")),
            RData::Other { rtype, .. } => {
                return Err(ProviderError::config(format!(
                    "{}: a {rtype} record is never written by mta-stsd",
                    r.name
                )))
            }
        };
        let name = relative(&r.name, zone)
            .ok_or_else(|| ProviderError::config(format!("{} is not in zone {zone}", r.name)))?;
        Ok(json!({ "type": r.data.type_name(), "name": name, "data": data, "ttl": r.ttl }))
    }
}

/// `{"id": "not_found", "message": "…"}`.
fn error(what: &str, reply: &Reply, tries: u32) -> ProviderError {
    let v: Option<Value> = serde_json::from_slice(&reply.body).ok();
    let id = v.as_ref().and_then(|v| v["id"].as_str()).map(str::to_owned);
    let said = v
        .as_ref()
        .and_then(|v| v["message"].as_str())
        .map(|m| match &id {
            Some(id) => format!("{id} {m}"),
            None => m.to_owned(),
        });
    rest::error(what, reply, id, said, tries)
}

fn to_record(zone: &str, r: &DomainRecord) -> Record {
    let data = match r.rtype.as_str() {
        // Shown as given; quoted character-strings are read too.
        "TXT" if r.data.starts_with('"') => {
            RData::Txt(parse_txt_presentation(&r.data).unwrap_or_else(|| r.data.clone()))
        }
        "TXT" => RData::Txt(r.data.clone()),
        "CNAME" if r.data == "@" => RData::Cname(zone.to_owned()),
        "CNAME" => RData::Cname(absolute(&r.data)),
        other => RData::Other {
            rtype: other.to_owned(),
            text: r.data.clone(),
        },
    };
    Record {
        name: join(&r.name, zone),
        ttl: r.ttl,
        data,
    }
}

#[async_trait]
impl RrsetApi for DigitalOceanApi {
    fn writes_tlsa(&self) -> bool {
        false
    }

    fn label(&self) -> String {
        self.rest.label().to_owned()
    }

    async fn zones(&self) -> Result<Vec<String>, ProviderError> {
        #[derive(Deserialize)]
        struct Domain {
            name: String,
        }
        let domains: Vec<Domain> = self.paged(&["domains"], "domains").await?;
        Ok(domains.iter().map(|d| absolute(&d.name)).collect())
    }

    async fn read(
        &self,
        zone: &str,
        names: &BTreeSet<String>,
    ) -> Result<Vec<Listed>, ProviderError> {
        let domain = zone.trim_end_matches('.');
        let records: Vec<DomainRecord> = self
            .paged(&["domains", domain, "records"], "domain_records")
            .await?;
        Ok(records
            .iter()
            .map(|r| Listed {
                record: to_record(zone, r),
                id: Some(r.id.to_string()),
            })
            .filter(|l| names.contains(&l.record.name))
            .collect())
    }

    async fn write(&self, zone: &str, changes: &[RrsetChange]) -> Result<(), ProviderError> {
        let domain = zone.trim_end_matches('.');
        let id_of = |l: &Listed| {
            l.id.clone().ok_or_else(|| {
                ProviderError::config(format!("{}: a record without an id", l.record.name))
            })
        };
        for c in changes {
            let mut removed = c.removed();
            for add in c.added() {
                let body = self.body(add, zone)?;
                match removed.next() {
                    Some(old) => {
                        let id = id_of(old)?;
                        let url = self.rest.url(&["domains", domain, "records", &id], &[]);
                        self.call(Method::PUT, url, Some(&body)).await?;
                    }
                    None => {
                        let url = self.rest.url(&["domains", domain, "records"], &[]);
                        self.call(Method::POST, url, Some(&body)).await?;
                    }
                }
            }
            for old in removed {
                let id = id_of(old)?;
                let url = self.rest.url(&["domains", domain, "records", &id], &[]);
                self.call(Method::DELETE, url, None).await?;
            }
        }
        Ok(())
    }
}
