//! The OVHcloud API calls mta-stsd makes (eu.api.ovh.com/1.0 and its regions, `/domain/zone`):
//! list zones, list record ids at a name, get, create, update and delete a record by id, and
//! `refresh` a zone so its changes go live. Every call is signed ("First steps with the
//! OVHcloud APIs"): `X-Ovh-Application`, `X-Ovh-Consumer`, `X-Ovh-Timestamp` (the server's
//! clock, from `GET /auth/time`, so a skewed local clock does not matter) and
//! `X-Ovh-Signature` = `$1$` + hex SHA-1 of `secret+consumer+METHOD+URL+body+timestamp`.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::Reply;
use crate::rest::{self, Rest};
use crate::{ProviderError, Secret};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneRecord {
    pub id: u64,
    pub field_type: String,
    /// Relative to the zone, empty for the apex.
    pub sub_domain: String,
    pub target: String,
    #[serde(default)]
    pub ttl: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_type: Option<String>,
    pub sub_domain: String,
    pub target: String,
    pub ttl: u32,
}

pub struct Keys {
    pub application_key: Secret,
    pub application_secret: Secret,
    pub consumer_key: Secret,
}

pub struct Client {
    rest: Rest,
    keys: Keys,
    /// The server's clock less ours, in seconds, once asked.
    delta: Mutex<Option<i64>>,
}

impl Client {
    pub fn new(base: &str, keys: Keys) -> Result<Self, ProviderError> {
        Ok(Client {
            rest: Rest::new("OVH", base)?,
            keys,
            delta: Mutex::new(None),
        })
    }

    pub fn label(&self) -> String {
        self.rest.label().to_owned()
    }

    /// `GET /domain/zone`: the account's zones.
    pub async fn zones(&self) -> Result<Vec<String>, ProviderError> {
        self.get(&["domain", "zone"], &[]).await
    }

    /// `GET /domain/zone/{zone}/record?subDomain=`: the ids at one name.
    pub async fn record_ids(&self, zone: &str, sub: &str) -> Result<Vec<u64>, ProviderError> {
        self.get(&["domain", "zone", zone, "record"], &[("subDomain", sub)])
            .await
    }

    /// `GET /domain/zone/{zone}/record/{id}`.
    pub async fn record(&self, zone: &str, id: u64) -> Result<ZoneRecord, ProviderError> {
        let id = id.to_string();
        self.get(&["domain", "zone", zone, "record", &id], &[])
            .await
    }

    /// `POST /domain/zone/{zone}/record`.
    pub async fn create(&self, zone: &str, r: &NewRecord) -> Result<(), ProviderError> {
        let url = self.rest.url(&["domain", "zone", zone, "record"], &[]);
        self.signed(Method::POST, url, Some(r)).await.map(drop)
    }

    /// `PUT /domain/zone/{zone}/record/{id}`: in place, the record keeps its id.
    pub async fn update(&self, zone: &str, id: u64, r: &NewRecord) -> Result<(), ProviderError> {
        let id = id.to_string();
        let url = self.rest.url(&["domain", "zone", zone, "record", &id], &[]);
        self.signed(Method::PUT, url, Some(r)).await.map(drop)
    }

    /// `DELETE /domain/zone/{zone}/record/{id}`.
    pub async fn delete(&self, zone: &str, id: u64) -> Result<(), ProviderError> {
        let id = id.to_string();
        let url = self.rest.url(&["domain", "zone", zone, "record", &id], &[]);
        self.signed(Method::DELETE, url, None::<&()>)
            .await
            .map(drop)
    }

    /// `POST /domain/zone/{zone}/refresh`: "Apply zone modification on DNS servers".
    pub async fn refresh(&self, zone: &str) -> Result<(), ProviderError> {
        let url = self.rest.url(&["domain", "zone", zone, "refresh"], &[]);
        self.signed(Method::POST, url, None::<&()>).await.map(drop)
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, ProviderError> {
        let url = self.rest.url(path, query);
        let v = self.signed(Method::GET, url.clone(), None::<&()>).await?;
        serde_json::from_value(v).map_err(|e| ProviderError::Refused {
            code: "bad-response".into(),
            message: format!(
                "{}: not the JSON expected ({e})",
                self.rest.what(&Method::GET, &url)
            ),
        })
    }

    /// The server's time less ours, from `GET /auth/time` (unsigned), asked once.
    async fn delta(&self) -> Result<i64, ProviderError> {
        if let Some(d) = *self.delta.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(d);
        }
        let url = self.rest.url(&["auth", "time"], &[]);
        let (reply, tries) = self.rest.send(&Method::GET, &url, |r| r).await?;
        let what = self.rest.what(&Method::GET, &url);
        if !reply.status.is_success() {
            return Err(error(&what, &reply, tries));
        }
        let server: i64 = serde_json::from_slice(&reply.body)
            .map_err(|e| rest::bad_response(&what, &reply, &e))?;
        let d = server - now();
        *self.delta.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
        Ok(d)
    }

    /// One signed call (signed afresh for each try); its JSON, null when empty.
    async fn signed<B: Serialize>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<Value, ProviderError> {
        let body = match body {
            Some(b) => serde_json::to_string(b)
                .map_err(|e| ProviderError::config(format!("OVH: a body as JSON: {e}")))?,
            None => String::new(),
        };
        let delta = self.delta().await?;
        let (reply, tries) = self
            .rest
            .send(&method, &url, |r| {
                let ts = (now() + delta).to_string();
                let sig = signature(
                    self.keys.application_secret.expose(),
                    self.keys.consumer_key.expose(),
                    method.as_str(),
                    url.as_str(),
                    &body,
                    &ts,
                );
                let r = r
                    .header("X-Ovh-Application", self.keys.application_key.expose())
                    .header("X-Ovh-Consumer", self.keys.consumer_key.expose())
                    .header("X-Ovh-Timestamp", ts)
                    .header("X-Ovh-Signature", sig)
                    .header(reqwest::header::CONTENT_TYPE, "application/json");
                if body.is_empty() {
                    r
                } else {
                    r.body(body.clone())
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
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `$1$` + hex SHA-1 of the six parts joined with `+`.
pub fn signature(
    secret: &str,
    consumer: &str,
    method: &str,
    url: &str,
    body: &str,
    ts: &str,
) -> String {
    let text = format!("{secret}+{consumer}+{method}+{url}+{body}+{ts}");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("$1${hex}")
}

/// `{"errorCode": "INVALID_SIGNATURE", "httpCode": "400 Bad Request", "message": "…"}` or
/// `{"class": "Client::NotFound", "message": "…"}`.
fn error(what: &str, reply: &Reply, tries: u32) -> ProviderError {
    let v: Option<Value> = serde_json::from_slice(&reply.body).ok();
    let code = v
        .as_ref()
        .and_then(|v| v["errorCode"].as_str().or(v["class"].as_str()))
        .map(str::to_owned);
    let said = v
        .as_ref()
        .and_then(|v| v["message"].as_str())
        .map(|m| match &code {
            Some(c) => format!("{c} {m}"),
            None => m.to_owned(),
        });
    let status = reply.status.as_u16();
    // OVH answers a bad signature or key with 400 or 403: the credentials' fault either way.
    let credentials = code.as_deref().is_some_and(|c| {
        matches!(
            c,
            "INVALID_SIGNATURE" | "INVALID_CREDENTIAL" | "NOT_CREDENTIAL" | "NOT_GRANTED_CALL"
        )
    });
    match rest::error(what, reply, code, said, tries) {
        ProviderError::Refused { code, message } if credentials || status == 401 => {
            ProviderError::Auth { code, message }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of "First steps with the OVHcloud APIs", recomputed: the signature is the
    /// SHA-1 of the `+`-joined parts.
    #[test]
    fn signature_is_sha1_of_the_joined_parts() {
        let s = signature(
            "AS",
            "CK",
            "GET",
            "https://eu.api.ovh.com/1.0/domain/zone",
            "",
            "1366560945",
        );
        let d = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            b"AS+CK+GET+https://eu.api.ovh.com/1.0/domain/zone++1366560945",
        );
        let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(s, format!("$1${hex}"));
        assert_eq!(s.len(), 3 + 40);
    }
}
