//! Gandi LiveDNS through its API v5 (api.gandi.net/v5/livedns), with a personal access token:
//! read-verify-write ([`crate::rrsets`]), as the API has no conditional write.
//!
//! Domains and a domain's records are listed page by page (`page`, `per_page`, `Total-Count`).
//! LiveDNS replaces whole RRsets (`PUT /domains/{fqdn}/records/{name}/{type}` with
//! `rrset_values`), so each RRset we touch is sent whole: the values read, less ours removed,
//! plus ours added — foreign values are sent back, never dropped; an RRset left empty is
//! deleted (`DELETE`). Errors are `{"code", "message", "object", "cause", "errors"}`.

use std::collections::BTreeSet;

use async_trait::async_trait;
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::Reply;
use crate::record::{txt_presentation, RData, Record};
use crate::rest::{self, join, relative, Rest, MAX_PAGES};
use crate::rrsets::{absolute, Listed, ReadVerifyWrite, RrsetApi, RrsetChange};
use crate::{ProviderError, Secret};

/// Items asked for per page.
const PER_PAGE: u32 = 100;

#[derive(Debug, Deserialize)]
struct RecordSet {
    /// Relative to the domain, `@` for the apex.
    rrset_name: String,
    rrset_type: String,
    rrset_ttl: u32,
    /// Presentation form: TXT as quoted strings.
    rrset_values: Vec<String>,
}

pub struct GandiApi {
    rest: Rest,
    token: Secret,
}

/// The Gandi provider.
pub type Gandi = ReadVerifyWrite<GandiApi>;

/// `base_url` is `https://api.gandi.net/v5/livedns` in production.
pub fn gandi(name: &str, base_url: &str, token: Secret) -> Result<Gandi, ProviderError> {
    Ok(ReadVerifyWrite::new(
        name,
        GandiApi {
            rest: Rest::new("Gandi", base_url)?,
            token,
        },
    ))
}

impl GandiApi {
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<(Value, Reply), ProviderError> {
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
        if reply.body.is_empty() || method != Method::GET {
            return Ok((Value::Null, reply));
        }
        let v = serde_json::from_slice(&reply.body)
            .map_err(|e| rest::bad_response(&what, &reply, &e))?;
        Ok((v, reply))
    }

    /// A listing, page by page until `Total-Count` items came (or a page fell short).
    async fn paged<T: serde::de::DeserializeOwned>(
        &self,
        path: &[&str],
    ) -> Result<Vec<T>, ProviderError> {
        let mut out = Vec::new();
        let per_page = PER_PAGE.to_string();
        for page in 1..=MAX_PAGES {
            let page_text = page.to_string();
            let url = self
                .rest
                .url(path, &[("page", &page_text), ("per_page", &per_page)]);
            let (v, reply) = self.call(Method::GET, url.clone(), None).await?;
            let items: Vec<T> = serde_json::from_value(v).map_err(|e| ProviderError::Refused {
                code: "bad-response".into(),
                message: format!(
                    "{}: not the list expected ({e})",
                    self.rest.what(&Method::GET, &url)
                ),
            })?;
            let got = items.len();
            out.extend(items);
            let total = reply
                .headers
                .get("total-count")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            let done = match total {
                Some(total) => out.len() >= total,
                None => got < PER_PAGE as usize,
            };
            if done || got == 0 {
                return Ok(out);
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
}

/// `{"code": 401, "message": "…", "object": "HTTPUnauthorized", "cause": "…", "errors":
/// [{"location", "name", "description"}]}`.
fn error(what: &str, reply: &Reply, tries: u32) -> ProviderError {
    let v: Option<Value> = serde_json::from_slice(&reply.body).ok();
    let said = v.as_ref().and_then(|v| {
        let mut parts: Vec<String> = ["object", "cause", "message"]
            .iter()
            .filter_map(|k| v[*k].as_str().map(str::to_owned))
            .collect();
        for e in v["errors"].as_array().into_iter().flatten() {
            parts.push(format!(
                "{}: {}",
                e["name"].as_str().unwrap_or_default(),
                e["description"].as_str().unwrap_or_default()
            ));
        }
        (!parts.is_empty()).then(|| parts.join(": "))
    });
    let code = v
        .as_ref()
        .and_then(|v| v["object"].as_str())
        .map(str::to_owned);
    rest::error(what, reply, code, said, tries)
}

fn value(r: &Record) -> String {
    match &r.data {
        RData::Txt(text) => txt_presentation(text),
        RData::Cname(target) => absolute(target),
        // RFC 6698 §2.2 presentation form, as LiveDNS's rrset_values take it.
        RData::Tlsa(t) => t.to_string(),
        // A foreign value carried over: as it was read.
        RData::Other { text, .. } => text.clone(),
    }
}

#[async_trait]
impl RrsetApi for GandiApi {
    fn label(&self) -> String {
        self.rest.label().to_owned()
    }

    fn writes_tlsa(&self) -> bool {
        true
    }

    async fn zones(&self) -> Result<Vec<String>, ProviderError> {
        #[derive(Deserialize)]
        struct Domain {
            fqdn: String,
        }
        let domains: Vec<Domain> = self.paged(&["domains"]).await?;
        Ok(domains.iter().map(|d| absolute(&d.fqdn)).collect())
    }

    async fn read(
        &self,
        zone: &str,
        names: &BTreeSet<String>,
    ) -> Result<Vec<Listed>, ProviderError> {
        let fqdn = zone.trim_end_matches('.');
        let sets: Vec<RecordSet> = self.paged(&["domains", fqdn, "records"]).await?;
        let mut out = Vec::new();
        for set in sets {
            let name = join(&set.rrset_name, zone);
            if !names.contains(&name) {
                continue;
            }
            out.extend(set.rrset_values.iter().map(|v| Listed {
                record: crate::rrsets::from_presentation(&name, &set.rrset_type, set.rrset_ttl, v),
                id: None,
            }));
        }
        Ok(out)
    }

    async fn write(&self, zone: &str, changes: &[RrsetChange]) -> Result<(), ProviderError> {
        let fqdn = zone.trim_end_matches('.');
        for c in changes {
            let sub = relative(&c.name, zone).ok_or_else(|| {
                ProviderError::config(format!("{} is not in zone {zone}", c.name))
            })?;
            let url = self
                .rest
                .url(&["domains", fqdn, "records", &sub, &c.rtype], &[]);
            if c.new.is_empty() {
                self.call(Method::DELETE, url, None).await?;
            } else {
                let values: Vec<String> = c.new.iter().map(value).collect();
                let body = json!({ "rrset_values": values, "rrset_ttl": c.ttl() });
                self.call(Method::PUT, url, Some(&body)).await?;
            }
        }
        Ok(())
    }
}
