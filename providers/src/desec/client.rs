//! The deSEC API calls mta-stsd makes (desec.io/api/v1, "Domain Management" and "Retrieving and
//! Manipulating DNS Information"): list the account's domains, list a domain's RRsets (past
//! 500, the `cursor` pages its `Link` header names), and one bulk `PATCH` of RRsets, which
//! deSEC applies all or nothing. `Authorization: Token …`. Errors are `{"detail": "…"}` or, for
//! a refused RRset, its fields' messages. deSEC's documented limits are respected here rather
//! than learnt from 429s: RRset writes at most 2 a second and 15 a minute per domain
//! (`dns_api_per_domain_expensive`); a 429 that comes anyway is waited out per `Retry-After`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use reqwest::header::LINK;
use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::http::Reply;
use crate::rest::{self, Rest, MAX_PAGES};
use crate::{ProviderError, Secret};

/// `dns_api_per_domain_expensive`: (writes, per this long), every one of them held.
const WRITE_LIMITS: &[(usize, Duration)] =
    &[(2, Duration::from_secs(1)), (15, Duration::from_secs(60))];

#[derive(Debug, Clone, Deserialize)]
pub struct Domain {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Rrset {
    /// Relative to the domain, empty for the apex.
    pub subname: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    /// Presentation form: TXT as quoted strings of at most 255 octets.
    pub records: Vec<String>,
}

pub struct Client {
    rest: Rest,
    token: Secret,
    /// Each domain's recent writes, oldest first.
    writes: tokio::sync::Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Client {
    /// `base` is `https://desec.io/api/v1` in production.
    pub fn new(base: &str, token: Secret) -> Result<Self, ProviderError> {
        Ok(Client {
            rest: Rest::new("deSEC", base)?,
            token,
            writes: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn label(&self) -> String {
        self.rest.label().to_owned()
    }

    /// `GET /domains/`.
    pub async fn domains(&self) -> Result<Vec<Domain>, ProviderError> {
        let url = self.rest.url(&["domains", ""], &[]);
        let v = self.call(Method::GET, url, None).await?;
        self.parse(v, "/domains/")
    }

    /// `GET /domains/{domain}/rrsets/`: one request up to 500 RRsets; past that deSEC answers
    /// 400 with a `Link` to the first page (`cursor=`), and each page links the next.
    pub async fn rrsets(&self, domain: &str) -> Result<Vec<Rrset>, ProviderError> {
        let mut url = self.rest.url(&["domains", domain, "rrsets", ""], &[]);
        let mut out = Vec::new();
        let mut paging = false;
        for _ in 0..MAX_PAGES {
            let (reply, tries) = self.send(Method::GET, &url, None).await?;
            let what = self.rest.what(&Method::GET, &url);
            let mut links = links(&reply);
            match links.remove("first") {
                Some(first) if !paging && reply.status.as_u16() == 400 => {
                    paging = true;
                    url = first;
                    continue;
                }
                _ if !reply.status.is_success() => return Err(error(&what, &reply, tries)),
                _ => {}
            }
            let page: Vec<Rrset> = serde_json::from_slice(&reply.body)
                .map_err(|e| rest::bad_response(&what, &reply, &e))?;
            out.extend(page);
            match links.remove("next") {
                Some(next) if paging => url = next,
                _ => return Ok(out),
            }
        }
        Err(ProviderError::Refused {
            code: "paging".into(),
            message: format!(
                "{}: the RRsets of {domain} did not end after {MAX_PAGES} pages",
                self.label()
            ),
        })
    }

    /// `PATCH /domains/{domain}/rrsets/` with every RRset given (an empty `records` deletes
    /// one): all applied, or none.
    pub async fn patch(&self, domain: &str, rrsets: &[Rrset]) -> Result<(), ProviderError> {
        let url = self.rest.url(&["domains", domain, "rrsets", ""], &[]);
        let body = serde_json::to_value(rrsets)
            .map_err(|e| ProviderError::config(format!("deSEC: RRsets as JSON: {e}")))?;
        let reserved = self.pace(domain).await;
        let result = self.call(Method::PATCH, url, Some(&body)).await.map(drop);
        // deSEC counts the write when it handles it, which is after we sent it: counted from
        // the answer, the next write cannot reach it early.
        let mut all = self.writes.lock().await;
        if let Some(t) = all
            .get_mut(domain)
            .and_then(|recent| recent.iter_mut().find(|t| **t == reserved))
        {
            *t = Instant::now();
        }
        result
    }

    /// Waits until one more write to `domain` keeps within [`WRITE_LIMITS`], and counts it (at
    /// the instant returned).
    async fn pace(&self, domain: &str) -> Instant {
        let mut all = self.writes.lock().await;
        let recent = all.entry(domain.to_owned()).or_default();
        loop {
            let now = Instant::now();
            let longest = WRITE_LIMITS
                .iter()
                .map(|(_, per)| *per)
                .max()
                .unwrap_or_default();
            while recent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= longest)
            {
                recent.pop_front();
            }
            let wait = WRITE_LIMITS
                .iter()
                .filter_map(|(most, per)| {
                    let within: Vec<&Instant> = recent
                        .iter()
                        .filter(|t| now.duration_since(**t) < *per)
                        .collect();
                    (within.len() >= *most).then(|| *within[within.len() - most] + *per - now)
                })
                .max();
            match wait {
                Some(w) => tokio::time::sleep(w).await,
                None => break,
            }
        }
        let now = Instant::now();
        recent.push_back(now);
        now
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        v: Value,
        path: &str,
    ) -> Result<T, ProviderError> {
        serde_json::from_value(v).map_err(|e| ProviderError::Refused {
            code: "bad-response".into(),
            message: format!("{}: {path}: not the JSON expected ({e})", self.label()),
        })
    }

    async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<(Reply, u32), ProviderError> {
        let auth = format!("Token {}", self.token.expose());
        self.rest
            .send(&method, url, |r| {
                let r = r.header(reqwest::header::AUTHORIZATION, &auth);
                match body {
                    Some(b) => r.json(b),
                    None => r,
                }
            })
            .await
    }

    /// One call; the reply's JSON (null when empty).
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, ProviderError> {
        let (reply, tries) = self.send(method.clone(), &url, body).await?;
        let what = self.rest.what(&method, &url);
        if !reply.status.is_success() {
            return Err(error(&what, &reply, tries));
        }
        if reply.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&reply.body).map_err(|e| rest::bad_response(&what, &reply, &e))
    }
}

/// `Link: <url>; rel="next", <url>; rel="first"` as rel → URL.
fn links(reply: &Reply) -> HashMap<String, Url> {
    let mut out = HashMap::new();
    for v in reply.headers.get_all(LINK) {
        let Ok(text) = v.to_str() else { continue };
        for part in text.split(',') {
            let mut pieces = part.split(';');
            let url = pieces.next().unwrap_or_default().trim();
            let url = url.trim_start_matches('<').trim_end_matches('>');
            let rel = pieces
                .filter_map(|p| p.trim().strip_prefix("rel="))
                .map(|r| r.trim_matches('"').to_owned())
                .next();
            if let (Some(rel), Ok(url)) = (rel, Url::parse(url)) {
                out.insert(rel, url);
            }
        }
    }
    out
}

/// deSEC's errors: `{"detail": "…"}`, or per field (`{"ttl": ["…"]}`), or for a bulk request a
/// list with one such object per RRset (empty for those that were fine).
fn error(what: &str, reply: &Reply, tries: u32) -> ProviderError {
    let said = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .map(|v| flatten(&v))
        .filter(|s| !s.is_empty());
    rest::error(what, reply, None, said, tries)
}

/// The messages of a deSEC error body, `field: message` each, `; `-separated.
fn flatten(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(flatten)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match k.as_str() {
                "detail" | "non_field_errors" => flatten(v),
                _ => format!("{k}: {}", flatten(v)),
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_errors_are_flattened() {
        let v: Value = serde_json::from_str(
            r#"[{}, {"ttl": ["Ensure this value is greater than or equal to 3600."]}]"#,
        )
        .unwrap();
        assert_eq!(
            flatten(&v),
            "ttl: Ensure this value is greater than or equal to 3600."
        );
        let v: Value = serde_json::from_str(r#"{"detail": "Invalid token."}"#).unwrap();
        assert_eq!(flatten(&v), "Invalid token.");
    }

    #[tokio::test(start_paused = true)]
    async fn writes_are_paced_per_domain() {
        let c = Client::new("http://127.0.0.1:1", Secret::new("t".into())).unwrap();
        let start = Instant::now();
        for _ in 0..2 {
            c.pace("a.test").await;
        }
        c.pace("b.test").await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        c.pace("a.test").await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        for _ in 0..12 {
            c.pace("a.test").await;
        }
        // The 16th write in a minute waits for the first to be a minute old.
        let before = start.elapsed();
        c.pace("a.test").await;
        assert_eq!(start.elapsed(), Duration::from_secs(60));
        assert!(before < Duration::from_secs(60));
    }
}
