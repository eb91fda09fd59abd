//! The PowerDNS Authoritative HTTP API (v1, as in 4.7): the three calls mta-stsd makes — list
//! the zones, read RRsets, `PATCH` RRsets — and the server's errors as [`ProviderError`]s.
//!
//! Every error message names the server, the call, the HTTP status and the server's own text:
//! PowerDNS answers 4xx/5xx with `{"error": "…"}` JSON, or plain text (`Unauthorized`,
//! `Not Found`) from its web server.

use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};

use crate::http::{self, Reply};
use crate::{redact_url, ProviderError, Secret};

/// An entry of `GET /servers/{server_id}/zones`.
#[derive(Debug, Clone, Deserialize)]
pub struct ZoneInfo {
    /// Opaque, "guaranteed to be safe for embedding in URLs" (usually the name itself).
    pub id: String,
    /// Absolute, with the trailing dot.
    pub name: String,
}

/// An RRset as the API shows it: one TTL for all its records.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RRset {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub records: Vec<Rr>,
}

/// One record: its data in presentation form (TXT quoted, names absolute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rr {
    pub content: String,
    #[serde(default)]
    pub disabled: bool,
}

/// One element of a `PATCH` body's `rrsets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RRsetChange {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// `REPLACE` (the RRset becomes exactly `records`) or `DELETE`.
    pub changetype: &'static str,
    pub records: Vec<Rr>,
}

#[derive(Deserialize)]
struct Zone {
    #[serde(default)]
    rrsets: Vec<RRset>,
}

#[derive(Serialize)]
struct Patch<'a> {
    rrsets: &'a [RRsetChange],
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

pub struct Client {
    http: reqwest::Client,
    /// The configured base URL, without `/api/v1`.
    base: String,
    /// `base` for messages: no credentials (see [`redact_url`]).
    shown: String,
    server_id: String,
    key: Secret,
}

impl Client {
    pub fn new(base: &str, server_id: &str, key: Secret) -> Result<Self, ProviderError> {
        Url::parse(base).map_err(|e| {
            ProviderError::config(format!("PowerDNS URL `{}`: {e}", redact_url(base)))
        })?;
        Ok(Client {
            http: http::client()?,
            base: base.trim_end_matches('/').to_owned(),
            shown: redact_url(base.trim_end_matches('/')),
            server_id: server_id.to_owned(),
            key,
        })
    }

    /// The server, for messages: `PowerDNS http://127.0.0.1:8081 (server localhost)`.
    pub fn describe(&self) -> String {
        format!("PowerDNS {} (server {})", self.shown, self.server_id)
    }

    /// `GET /api/v1/servers/{server_id}/zones`.
    pub async fn zones(&self) -> Result<Vec<ZoneInfo>, ProviderError> {
        let reply = self
            .call(Method::GET, &[], &[], None::<&()>, "listing zones")
            .await?;
        self.json(&reply, "listing zones")
    }

    /// `GET /api/v1/servers/{server_id}/zones/{zone_id}`, narrowed to the RRsets at `name`
    /// when given (`rrset_name`, PowerDNS 4.7+; an older server sends the whole zone and the
    /// caller filters anyway).
    pub async fn rrsets(
        &self,
        zone_id: &str,
        name: Option<&str>,
    ) -> Result<Vec<RRset>, ProviderError> {
        let what = match name {
            Some(n) => format!("reading {n} in zone {zone_id}"),
            None => format!("reading zone {zone_id}"),
        };
        let query: Vec<(&str, &str)> = name.map(|n| ("rrset_name", n)).into_iter().collect();
        let reply = self
            .call(Method::GET, &[zone_id], &query, None::<&()>, &what)
            .await?;
        Ok(self.json::<Zone>(&reply, &what)?.rrsets)
    }

    /// `PATCH /api/v1/servers/{server_id}/zones/{zone_id}`: every change in one request, which
    /// PowerDNS applies in one backend transaction.
    pub async fn patch(&self, zone_id: &str, changes: &[RRsetChange]) -> Result<(), ProviderError> {
        let what = format!("updating zone {zone_id}");
        self.call(
            Method::PATCH,
            &[zone_id],
            &[],
            Some(&Patch { rrsets: changes }),
            &what,
        )
        .await
        .map(drop)
    }

    async fn call<B: Serialize>(
        &self,
        method: Method,
        zone: &[&str],
        query: &[(&str, &str)],
        body: Option<&B>,
        what: &str,
    ) -> Result<Reply, ProviderError> {
        let mut url = Url::parse(&self.base)
            .map_err(|e| ProviderError::config(format!("PowerDNS URL `{}`: {e}", self.shown)))?;
        url.path_segments_mut()
            .map_err(|()| ProviderError::config(format!("PowerDNS URL `{}`", self.shown)))?
            .pop_if_empty()
            .extend(["api", "v1", "servers", &self.server_id, "zones"])
            .extend(zone);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .http
            .request(method, url)
            .header("X-API-Key", self.key.expose());
        if let Some(b) = body {
            request = request.json(b);
        }
        let reply = http::send(request, &format!("{}: {what}", self.describe())).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(self.error(what, &reply))
        }
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        reply: &Reply,
        what: &str,
    ) -> Result<T, ProviderError> {
        serde_json::from_slice(&reply.body).map_err(|e| ProviderError::Refused {
            code: "bad-response".into(),
            message: format!(
                "{}: {what}: HTTP {}, but not the JSON expected ({e}): {}",
                self.describe(),
                reply.status_line(),
                reply.body_text()
            ),
        })
    }

    /// The server's refusal, by status: 401/403 are credentials, 5xx the server's trouble,
    /// any other (404 unknown zone, 422 invalid data) a refusal quoting PowerDNS's `error`.
    fn error(&self, what: &str, reply: &Reply) -> ProviderError {
        let said = serde_json::from_slice::<ErrorBody>(&reply.body)
            .map(|b| b.error)
            .unwrap_or_else(|_| reply.body_text());
        let code = reply.status.as_u16().to_string();
        let message = format!(
            "{}: {what}: HTTP {}: {said}",
            self.describe(),
            reply.status_line()
        );
        match reply.status.as_u16() {
            401 | 403 => ProviderError::Auth { code, message },
            429 | 500..=599 => ProviderError::Transient { code, message },
            _ => ProviderError::Refused { code, message },
        }
    }
}
