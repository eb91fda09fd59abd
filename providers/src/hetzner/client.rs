//! The Hetzner Cloud API calls mta-stsd makes (api.hetzner.cloud/v1, "Zones" and "Zone
//! RRSets"; the older dns.hetzner.com API is deprecated): list zones and a zone's RRsets
//! (paged by `meta.pagination.next_page`), add and remove records by value and set a CNAME's
//! records through RRset actions, each action polled until it succeeds or fails.
//! Errors are `{"error": {"code", "message"}}`; 429 `rate_limit_exceeded` is waited out.

use std::time::{Duration, Instant};

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::Reply;
use crate::rest::{self, Rest, MAX_PAGES};
use crate::{ProviderError, Secret};

/// The most items a page holds (the API's maximum `per_page`).
const PER_PAGE: &str = "50";
/// How often, and how long, a running action is polled.
const POLL_EVERY: Duration = Duration::from_millis(250);
const POLL_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Deserialize)]
pub struct Zone {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Rrset {
    /// Relative to the zone, `@` for the apex.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: Option<u32>,
    pub records: Vec<RrValue>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RrValue {
    /// Presentation form: TXT as quoted strings of at most 255 characters.
    pub value: String,
}

#[derive(Debug, Deserialize)]
struct Action {
    id: u64,
    status: String,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct Pagination {
    next_page: Option<u32>,
}

pub struct Client {
    rest: Rest,
    token: Secret,
}

impl Client {
    /// `base` is `https://api.hetzner.cloud/v1` in production.
    pub fn new(base: &str, token: Secret) -> Result<Self, ProviderError> {
        Ok(Client {
            rest: Rest::new("Hetzner", base)?,
            token,
        })
    }

    pub fn label(&self) -> String {
        self.rest.label().to_owned()
    }

    /// `GET /zones`, every page.
    pub async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
        self.paged(&["zones"], "zones").await
    }

    /// `GET /zones/{zone}/rrsets`, every page: the zone's RRsets in one listing.
    pub async fn rrsets(&self, zone: &str) -> Result<Vec<Rrset>, ProviderError> {
        self.paged(&["zones", zone, "rrsets"], "rrsets").await
    }

    /// A listing at `path` whose items are under `key`, until `next_page` is null.
    async fn paged<T: DeserializeOwned>(
        &self,
        path: &[&str],
        key: &str,
    ) -> Result<Vec<T>, ProviderError> {
        let mut out = Vec::new();
        let mut page = 1;
        for _ in 0..MAX_PAGES {
            let page_text = page.to_string();
            let query = [("page", page_text.as_str()), ("per_page", PER_PAGE)];
            let mut v: Value = self.call(Method::GET, path, &query, None).await?;
            let next: Option<Pagination> =
                serde_json::from_value(v["meta"]["pagination"].take()).ok();
            let items: Vec<T> = self.field(v, key, path)?;
            out.extend(items);
            match next.and_then(|p| p.next_page) {
                Some(n) if n > page => page = n,
                _ => return Ok(out),
            }
        }
        Err(ProviderError::Refused {
            code: "paging".into(),
            message: format!(
                "{}: {} did not end after {MAX_PAGES} pages",
                self.label(),
                path.join("/")
            ),
        })
    }

    /// `POST /zones/{zone}/rrsets/{name}/{type}/actions/{action}` with `body`, then the action
    /// polled until done. `add_records` creates a missing RRset; `remove_records` deletes one
    /// left empty ("Zone RRSet Actions").
    pub async fn action(
        &self,
        zone: &str,
        name: &str,
        rtype: &str,
        action: &str,
        body: Value,
    ) -> Result<(), ProviderError> {
        let path = ["zones", zone, "rrsets", name, rtype, "actions", action];
        let v: Value = self.call(Method::POST, &path, &[], Some(&body)).await?;
        let mut act: Action = self.field(v, "action", &path)?;
        let started = Instant::now();
        loop {
            match act.status.as_str() {
                "success" => return Ok(()),
                "error" => {
                    let (code, message) = act
                        .error
                        .map(|e| (e.code, e.message))
                        .unwrap_or_else(|| ("action_failed".into(), "no reason given".into()));
                    return Err(ProviderError::Refused {
                        code: code.clone(),
                        message: format!(
                            "{}: action {} ({action} at {name} {rtype}) failed: {code} {message}",
                            self.label(),
                            act.id
                        ),
                    });
                }
                _ if started.elapsed() > POLL_FOR => {
                    return Err(ProviderError::transient(
                        "timeout",
                        format!(
                        "{}: action {} ({action} at {name} {rtype}) still {} after {POLL_FOR:?}",
                        self.label(),
                        act.id,
                        act.status
                    ),
                    ))
                }
                _ => {}
            }
            tokio::time::sleep(POLL_EVERY).await;
            let id = act.id.to_string();
            let apath = ["zones", "actions", id.as_str()];
            let v: Value = self.call(Method::GET, &apath, &[], None).await?;
            act = self.field(v, "action", &apath)?;
        }
    }

    fn field<T: DeserializeOwned>(
        &self,
        mut v: Value,
        key: &str,
        path: &[&str],
    ) -> Result<T, ProviderError> {
        serde_json::from_value(v[key].take()).map_err(|e| ProviderError::Refused {
            code: "bad-response".into(),
            message: format!(
                "{}: /{}: no valid `{key}` ({e})",
                self.label(),
                path.join("/")
            ),
        })
    }

    /// One call with the token; errors quote the API's `error.code` and `message`.
    async fn call(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ProviderError> {
        let url: Url = self.rest.url(path, query);
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
        serde_json::from_slice(&reply.body).map_err(|e| rest::bad_response(&what, &reply, &e))
    }
}

/// `{"error": {"code": "not_found", "message": "…"}}`, the API's error shape.
fn error(what: &str, reply: &Reply, tries: u32) -> ProviderError {
    let parsed: Option<ApiError> = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|mut v| serde_json::from_value(v["error"].take()).ok());
    let (code, said) = match parsed {
        Some(e) => (
            Some(e.code.clone()),
            Some(format!("{} {}", e.code, e.message)),
        ),
        None => (None, None),
    };
    rest::error(what, reply, code, said, tries)
}

/// The body of `add_records`/`set_records`.
pub fn records_body(ttl: Option<u32>, values: &[String]) -> Value {
    let records: Vec<Value> = values.iter().map(|v| json!({ "value": v })).collect();
    match ttl {
        Some(ttl) => json!({ "ttl": ttl, "records": records }),
        None => json!({ "records": records }),
    }
}
