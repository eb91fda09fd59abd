//! The Cloudflare API v4 calls mta-stsd makes: find a zone by name, list DNS records (every
//! page), create, update and delete one record; the response envelope
//! (`success`, `errors[{code,message}]`, `result`, `result_info`) and rate limiting (HTTP 429
//! with `Retry-After`).

use std::time::Duration;

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::http::{self, Reply};
use crate::{redact_url, ProviderError, Secret};

/// Records asked for per page; the server may send fewer (it clamps `per_page`).
const PER_PAGE: u32 = 500;
/// Zones per page: the most `GET /zones` allows (documented range 5–50).
const ZONES_PER_PAGE: u32 = 50;
/// Tries of one request answered 429, the last one's 429 becoming a transient error.
const RATE_LIMIT_TRIES: u32 = 4;
/// The wait when a 429 has no usable `Retry-After`, and the longest wait honoured.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(30);
/// A bound on pages followed, against a server whose `result_info` never ends.
const MAX_PAGES: u32 = 10_000;

#[derive(Debug, Clone, Deserialize)]
pub struct Zone {
    pub id: String,
    /// Without the trailing dot.
    pub name: String,
}

/// A DNS record as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DnsRecord {
    pub id: String,
    /// Without the trailing dot.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub content: String,
    /// 1 is "automatic".
    pub ttl: u32,
    #[serde(default)]
    pub proxied: bool,
}

/// The body of a create or update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordBody {
    #[serde(rename = "type")]
    pub rtype: String,
    pub name: String,
    pub content: String,
    pub ttl: u32,
    /// Sent on create only: a CNAME we publish must answer as a CNAME, not through the proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxied: Option<bool>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<T>,
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct ApiMessage {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct ResultInfo {
    page: Option<u32>,
    per_page: Option<u32>,
    total_pages: Option<u32>,
    count: Option<u32>,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    /// `base` for messages: no credentials (see [`redact_url`]).
    shown: String,
    token: Secret,
}

impl Client {
    pub fn new(base: &str, token: Secret) -> Result<Self, ProviderError> {
        Url::parse(base).map_err(|e| {
            ProviderError::config(format!("Cloudflare URL `{}`: {e}", redact_url(base)))
        })?;
        Ok(Client {
            http: http::client()?,
            base: base.trim_end_matches('/').to_owned(),
            shown: redact_url(base.trim_end_matches('/')),
            token,
        })
    }

    /// `GET /zones?name=` (an exact name, without the trailing dot).
    pub async fn zones(&self, name: &str) -> Result<Vec<Zone>, ProviderError> {
        let (zones, _) = self
            .call(Method::GET, &["zones"], &[("name", name)], None)
            .await?;
        Ok(zones)
    }

    /// `GET /zones`: every zone of the account, page by page.
    pub async fn all_zones(&self) -> Result<Vec<Zone>, ProviderError> {
        self.paged(&["zones"], &[], ZONES_PER_PAGE, "the zone list")
            .await
    }

    /// `GET /zones/{id}/dns_records`, at `name` only when given, following `result_info` from
    /// page to page until the last.
    pub async fn records(
        &self,
        zone_id: &str,
        name: Option<&str>,
    ) -> Result<Vec<DnsRecord>, ProviderError> {
        let filter: Vec<(&str, &str)> = name.map(|n| ("name", n)).into_iter().collect();
        let what = format!("the records of zone {zone_id}");
        self.paged(&["zones", zone_id, "dns_records"], &filter, PER_PAGE, &what)
            .await
    }

    /// A listing at `path`, `per_page` at a time, until `result_info` says it was the last.
    async fn paged<T: DeserializeOwned>(
        &self,
        path: &[&str],
        filter: &[(&str, &str)],
        per_page: u32,
        what: &str,
    ) -> Result<Vec<T>, ProviderError> {
        let mut out = Vec::new();
        let per_page_text = per_page.to_string();
        for page in 1..=MAX_PAGES {
            let page_text = page.to_string();
            let mut query = filter.to_vec();
            query.extend([("per_page", per_page_text.as_str()), ("page", &page_text)]);
            let (items, info): (Vec<T>, _) = self.call(Method::GET, path, &query, None).await?;
            let got = items.len() as u32;
            out.extend(items);
            if got == 0 || is_last_page(page, got, per_page, info) {
                return Ok(out);
            }
        }
        Err(ProviderError::Refused {
            code: "paging".into(),
            message: format!(
                "Cloudflare {}: {what} did not end after {MAX_PAGES} pages",
                self.shown
            ),
        })
    }

    /// `POST /zones/{id}/dns_records`.
    pub async fn create(
        &self,
        zone_id: &str,
        body: &RecordBody,
    ) -> Result<DnsRecord, ProviderError> {
        let (r, _) = self
            .call(
                Method::POST,
                &["zones", zone_id, "dns_records"],
                &[],
                Some(body),
            )
            .await?;
        Ok(r)
    }

    /// `PATCH /zones/{id}/dns_records/{record}`: in place, the record keeps its id (and its
    /// comment and tags, which a `PUT` would clear).
    pub async fn update(
        &self,
        zone_id: &str,
        record_id: &str,
        body: &RecordBody,
    ) -> Result<DnsRecord, ProviderError> {
        let (r, _) = self
            .call(
                Method::PATCH,
                &["zones", zone_id, "dns_records", record_id],
                &[],
                Some(body),
            )
            .await?;
        Ok(r)
    }

    /// `DELETE /zones/{id}/dns_records/{record}`.
    pub async fn delete(&self, zone_id: &str, record_id: &str) -> Result<(), ProviderError> {
        let _: (serde_json::Value, _) = self
            .call(
                Method::DELETE,
                &["zones", zone_id, "dns_records", record_id],
                &[],
                None,
            )
            .await?;
        Ok(())
    }

    /// One call, retried after the wait a 429 asks for (a bounded number of times), its
    /// envelope unwrapped.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<&RecordBody>,
    ) -> Result<(T, Option<ResultInfo>), ProviderError> {
        let mut url = Url::parse(&self.base)
            .map_err(|e| ProviderError::config(format!("Cloudflare URL `{}`: {e}", self.shown)))?;
        url.path_segments_mut()
            .map_err(|()| ProviderError::config(format!("Cloudflare URL `{}`", self.shown)))?
            .pop_if_empty()
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        // `GET /zones/…/dns_records?name=…`, for messages: the base URL once is enough.
        let what = format!(
            "Cloudflare {}: {method} /{}{}",
            self.shown,
            path.join("/"),
            url.query().map(|q| format!("?{q}")).unwrap_or_default()
        );
        let mut tries = 0;
        let reply = loop {
            tries += 1;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(self.token.expose());
            if let Some(b) = body {
                request = request.json(b);
            }
            let reply = http::send(request, &what).await?;
            if reply.status.as_u16() == 429 && tries < RATE_LIMIT_TRIES {
                tokio::time::sleep(retry_after(&reply)).await;
                continue;
            }
            break reply;
        };
        let envelope = serde_json::from_slice::<Envelope<T>>(&reply.body);
        match envelope {
            Ok(Envelope {
                success: true,
                result: Some(result),
                result_info,
                ..
            }) if reply.status.is_success() => Ok((result, result_info)),
            Ok(e) => Err(error(&what, &reply, &e.errors, tries)),
            Err(parse) if reply.status.is_success() => Err(ProviderError::Refused {
                code: "bad-response".into(),
                message: format!(
                    "{what}: HTTP {}, but not the envelope expected ({parse}): {}",
                    reply.status_line(),
                    reply.body_text()
                ),
            }),
            // An error page without an envelope (a proxy's 502, say): its status and text.
            Err(_) => {
                let errors = serde_json::from_slice::<Envelope<serde_json::Value>>(&reply.body)
                    .map(|e| e.errors)
                    .unwrap_or_default();
                Err(error(&what, &reply, &errors, tries))
            }
        }
    }
}

/// Whether `page` was the last: by `total_pages` when given, else by a short page.
fn is_last_page(page: u32, got: u32, asked: u32, info: Option<ResultInfo>) -> bool {
    let Some(info) = info else { return true };
    if let Some(total) = info.total_pages {
        return info.page.unwrap_or(page) >= total;
    }
    let per_page = info.per_page.unwrap_or(asked);
    info.count.unwrap_or(got) < per_page
}

/// `Retry-After` in seconds (the form Cloudflare sends), capped; [`DEFAULT_WAIT`] otherwise.
fn retry_after(reply: &Reply) -> Duration {
    reply
        .headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_WAIT, Duration::from_secs)
        .min(MAX_WAIT)
}

/// The failure, with every `errors[].code` and `message` Cloudflare gave: 401/403 are the
/// token's (Auth), 429 and 5xx transient, any other status a refusal.
fn error(what: &str, reply: &Reply, errors: &[ApiMessage], tries: u32) -> ProviderError {
    let said = if errors.is_empty() {
        reply.body_text()
    } else {
        errors
            .iter()
            .map(|e| match e.code {
                Some(c) => format!("{c} {}", e.message),
                None => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let code = errors
        .iter()
        .find_map(|e| e.code)
        .map_or_else(|| reply.status.as_u16().to_string(), |c| c.to_string());
    let status = reply.status.as_u16();
    let after = if status == 429 {
        format!(" (after {tries} tries)")
    } else {
        String::new()
    };
    let message = format!("{what}: HTTP {}{after}: {said}", reply.status_line());
    match status {
        401 | 403 => ProviderError::Auth { code, message },
        429 | 500..=599 => ProviderError::Transient { code, message },
        _ => ProviderError::Refused { code, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_page() {
        let info = |page, per_page, total_pages, count| {
            Some(ResultInfo {
                page: Some(page),
                per_page: Some(per_page),
                total_pages,
                count: Some(count),
            })
        };
        assert!(!is_last_page(1, 2, 2, info(1, 2, Some(3), 2)));
        assert!(is_last_page(3, 1, 2, info(3, 2, Some(3), 1)));
        // Without total_pages: a full page may have a successor, a short one does not.
        assert!(!is_last_page(1, 2, 2, info(1, 2, None, 2)));
        assert!(is_last_page(2, 1, 2, info(2, 2, None, 1)));
        assert!(is_last_page(1, 5, 500, None));
    }
}
