//! What the read-verify-write vendors' clients share (`hetzner/`, `desec/`, `gandi/`,
//! `digitalocean/`, `ovh/`): URLs from a base and path segments, one request retried after the
//! wait a 429 asks for (`Retry-After` in seconds, a bounded number of times), and HTTP statuses
//! sorted into [`ProviderError`] kinds.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Url};

use crate::http::{self, Reply};
use crate::ProviderError;

/// Tries of one request answered 429, the last one's 429 becoming a transient error.
pub const RATE_LIMIT_TRIES: u32 = 4;
/// The wait when a 429 has no usable `Retry-After`, and the longest wait honoured.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(30);
/// A bound on pages followed, against a server whose paging never ends.
pub const MAX_PAGES: u32 = 1_000;

pub struct Rest {
    http: reqwest::Client,
    base: Url,
    /// `Hetzner https://api.hetzner.cloud/v1`, for messages.
    label: String,
}

impl Rest {
    pub fn new(vendor: &str, base: &str) -> Result<Self, ProviderError> {
        let trimmed = base.trim_end_matches('/');
        let url = Url::parse(trimmed)
            .map_err(|e| ProviderError::config(format!("{vendor} URL `{base}`: {e}")))?;
        if url.cannot_be_a_base() {
            return Err(ProviderError::config(format!("{vendor} URL `{base}`")));
        }
        Ok(Rest {
            http: http::client()?,
            base: url,
            label: format!("{vendor} {trimmed}"),
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The base URL with `path` segments (each percent-encoded) and `query` appended.
    pub fn url(&self, path: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// `Hetzner https://…: GET /zones?page=1`, for messages: the base URL once is enough.
    pub fn what(&self, method: &Method, url: &Url) -> String {
        let base_path = self.base.path().trim_end_matches('/');
        let path = url.path().strip_prefix(base_path).unwrap_or(url.path());
        let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
        format!("{}: {method} {path}{query}", self.label)
    }

    /// Sends the request `build` makes (called again for each try, so a signature can be
    /// fresh), waiting out 429s; returns the last reply and the number of tries.
    pub async fn send(
        &self,
        method: &Method,
        url: &Url,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<(Reply, u32), ProviderError> {
        let what = self.what(method, url);
        let mut tries = 0;
        loop {
            tries += 1;
            let request = build(self.http.request(method.clone(), url.clone()));
            let reply = http::send(request, &what).await?;
            if reply.status.as_u16() == 429 && tries < RATE_LIMIT_TRIES {
                tokio::time::sleep(retry_after(&reply)).await;
                continue;
            }
            return Ok((reply, tries));
        }
    }
}

/// `Retry-After` in seconds, capped; [`DEFAULT_WAIT`] otherwise.
pub fn retry_after(reply: &Reply) -> Duration {
    reply
        .headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_WAIT, Duration::from_secs)
        .min(MAX_WAIT)
}

/// A failed reply as an error: `code` and `said` are what the vendor's error body gave (else
/// the status and the body's text); 401/403 are the credentials' (Auth), 429 and 5xx (and
/// `transient` ones the vendor names, such as Hetzner's 423 `locked`) transient, any other
/// status a refusal.
pub fn error(
    what: &str,
    reply: &Reply,
    code: Option<String>,
    said: Option<String>,
    tries: u32,
) -> ProviderError {
    let status = reply.status.as_u16();
    let code = code.unwrap_or_else(|| status.to_string());
    let said = said.unwrap_or_else(|| reply.body_text());
    let after = if status == 429 {
        format!(" (after {tries} tries)")
    } else {
        String::new()
    };
    let message = format!("{what}: HTTP {}{after}: {said}", reply.status_line());
    match status {
        401 | 403 => ProviderError::Auth { code, message },
        423 | 429 | 500..=599 => ProviderError::Transient { code, message },
        _ => ProviderError::Refused { code, message },
    }
}

/// A 2xx reply whose body is not what the API documents.
pub fn bad_response(what: &str, reply: &Reply, parse: &serde_json::Error) -> ProviderError {
    ProviderError::Refused {
        code: "bad-response".into(),
        message: format!(
            "{what}: HTTP {}, but not the JSON expected ({parse}): {}",
            reply.status_line(),
            reply.body_text()
        ),
    }
}

/// The name relative to `zone` (both absolute): `_mta-sts.a` in `example.org.`, `@` for the
/// apex. `None` when the name is not in the zone.
pub fn relative(name: &str, zone: &str) -> Option<String> {
    if name == zone {
        return Some("@".to_owned());
    }
    name.strip_suffix(&format!(".{zone}")).map(str::to_owned)
}

/// The absolute name of `sub` (relative, `@` or empty for the apex) in `zone` (absolute).
pub fn join(sub: &str, zone: &str) -> String {
    match sub.trim_end_matches('.') {
        "" | "@" => zone.to_owned(),
        s => format!("{}.{zone}", s.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            relative("_mta-sts.a.example.org.", "example.org.").as_deref(),
            Some("_mta-sts.a")
        );
        assert_eq!(
            relative("example.org.", "example.org.").as_deref(),
            Some("@")
        );
        assert_eq!(relative("xexample.org.", "example.org."), None);
        assert_eq!(
            join("_MTA-sts.a", "example.org."),
            "_mta-sts.a.example.org."
        );
        assert_eq!(join("@", "example.org."), "example.org.");
        assert_eq!(join("", "example.org."), "example.org.");
    }

    #[test]
    fn urls() {
        let r = Rest::new("X", "http://127.0.0.1:1/v1/").unwrap();
        let u = r.url(
            &["zones", "example.org", "rrsets", "_mta-sts.a", "TXT"],
            &[("page", "2")],
        );
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:1/v1/zones/example.org/rrsets/_mta-sts.a/TXT?page=2"
        );
        assert_eq!(
            r.what(&Method::GET, &u),
            "X http://127.0.0.1:1/v1: GET /zones/example.org/rrsets/_mta-sts.a/TXT?page=2"
        );
    }
}
