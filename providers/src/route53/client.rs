//! The Route 53 API (2013-04-01, REST with XML bodies) calls mta-stsd makes —
//! ListHostedZones, ListResourceRecordSets, ChangeResourceRecordSets — signed with SigV4, with
//! Route 53's throttling waited out and its errors as [`ProviderError`]s.

use std::time::{Duration, SystemTime};

use reqwest::{Method, Url};

use super::sigv4::{self, Credentials};
use super::xml::{self, Element};
use crate::http::{self, Reply};
pub use crate::record::absolute;
use crate::ProviderError;

const API: &str = "/2013-04-01";
/// Route 53 is global: requests are signed for us-east-1 (AWS General Reference, "Amazon
/// Route 53 endpoints and quotas").
const REGION: &str = "us-east-1";
const SERVICE: &str = "route53";
/// ListHostedZones returns at most 100 zones a page, ListResourceRecordSets 300 RRsets.
const ZONES_PER_PAGE: &str = "100";
pub const RRSETS_PER_PAGE: usize = 300;
/// Tries of one request that is throttled, the last throttle becoming a transient error.
const RATE_LIMIT_TRIES: u32 = 4;
const DEFAULT_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(30);
/// A bound on pages followed, against a server whose `IsTruncated` never ends.
const MAX_PAGES: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedZone {
    /// Without the `/hostedzone/` prefix.
    pub id: String,
    /// Absolute and lowercase.
    pub name: String,
    pub private: bool,
}

/// A resource record set as listed: one TTL for its values (presentation form, TXT quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RRset {
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    pub values: Vec<String>,
    /// An alias, weighted, latency… record: never changed by us, only seen.
    pub special: bool,
}

/// A page of ListResourceRecordSets, and where the next begins.
pub struct Page {
    pub rrsets: Vec<RRset>,
    pub next: Option<Next>,
}

/// `NextRecordName`, `NextRecordType` and, within a name and type of weighted or latency
/// records, `NextRecordIdentifier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub name: String,
    pub rtype: String,
    pub identifier: Option<String>,
}

pub struct Client {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
}

impl Client {
    pub fn new(endpoint: &str, credentials: Credentials) -> Result<Self, ProviderError> {
        let base = Url::parse(endpoint)
            .map_err(|e| ProviderError::config(format!("Route 53 endpoint `{endpoint}`: {e}")))?;
        Ok(Client {
            http: http::client()?,
            base,
            credentials,
        })
    }

    /// `GET /2013-04-01/hostedzone`, every page (`marker` to `NextMarker`).
    pub async fn hosted_zones(&self) -> Result<Vec<HostedZone>, ProviderError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("maxitems", ZONES_PER_PAGE.to_owned())];
            if let Some(m) = marker.take() {
                query.push(("marker", m));
            }
            let root = self
                .call(Method::GET, &format!("{API}/hostedzone"), &query, None)
                .await?;
            for z in root
                .child("HostedZones")
                .into_iter()
                .flat_map(|z| z.all("HostedZone"))
            {
                let id = z.text_at(&["Id"]).unwrap_or_default();
                out.push(HostedZone {
                    id: id.trim_start_matches("/hostedzone/").to_owned(),
                    name: absolute(z.text_at(&["Name"]).unwrap_or_default()),
                    private: z.text_at(&["Config", "PrivateZone"]) == Some("true"),
                });
            }
            if root.text_at(&["IsTruncated"]) != Some("true") {
                return Ok(out);
            }
            marker = root.text_at(&["NextMarker"]).map(str::to_owned);
            if marker.is_none() {
                return Ok(out);
            }
        }
        Err(self.endless("the hosted zone list"))
    }

    /// `GET /2013-04-01/hostedzone/{id}/rrset?name=`: one page from `name` on (or from where
    /// an earlier page ended, `resume`), in Route 53's order (names with their labels
    /// reversed, then type).
    pub async fn rrsets(
        &self,
        zone_id: &str,
        name: &str,
        resume: Option<&Next>,
        max: usize,
    ) -> Result<Page, ProviderError> {
        let mut query = vec![("name", name.to_owned()), ("maxitems", max.to_string())];
        if let Some(r) = resume {
            query.push(("type", r.rtype.clone()));
            if let Some(id) = &r.identifier {
                query.push(("identifier", id.clone()));
            }
        }
        let root = self
            .call(
                Method::GET,
                &format!("{API}/hostedzone/{zone_id}/rrset"),
                &query,
                None,
            )
            .await?;
        let rrsets = root
            .child("ResourceRecordSets")
            .into_iter()
            .flat_map(|s| s.all("ResourceRecordSet"))
            .map(|s| RRset {
                name: absolute(&unescape_name(s.text_at(&["Name"]).unwrap_or_default())),
                rtype: s.text_at(&["Type"]).unwrap_or_default().to_owned(),
                ttl: s
                    .text_at(&["TTL"])
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0),
                values: s
                    .child("ResourceRecords")
                    .into_iter()
                    .flat_map(|r| r.all("ResourceRecord"))
                    .filter_map(|r| r.text_at(&["Value"]).map(str::to_owned))
                    .collect(),
                special: s.child("AliasTarget").is_some() || s.child("SetIdentifier").is_some(),
            })
            .collect();
        let next = match (
            root.text_at(&["IsTruncated"]),
            root.text_at(&["NextRecordName"]),
            root.text_at(&["NextRecordType"]),
        ) {
            (Some("true"), Some(n), Some(t)) => Some(Next {
                name: absolute(&unescape_name(n)),
                rtype: t.to_owned(),
                identifier: root.text_at(&["NextRecordIdentifier"]).map(str::to_owned),
            }),
            _ => None,
        };
        Ok(Page { rrsets, next })
    }

    /// `POST /2013-04-01/hostedzone/{id}/rrset/`: one change batch, applied whole or not at all.
    pub async fn change(
        &self,
        zone_id: &str,
        changes: &[(&str, &RRset)],
    ) -> Result<(), ProviderError> {
        let mut body = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeBatch><Comment>mta-stsd</Comment><Changes>"#,
        );
        for (action, set) in changes {
            body.push_str(&format!(
                "<Change><Action>{action}</Action><ResourceRecordSet><Name>{}</Name><Type>{}</Type><TTL>{}</TTL><ResourceRecords>",
                xml::escape(&set.name),
                xml::escape(&set.rtype),
                set.ttl
            ));
            for v in &set.values {
                body.push_str(&format!(
                    "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                    xml::escape(v)
                ));
            }
            body.push_str("</ResourceRecords></ResourceRecordSet></Change>");
        }
        body.push_str("</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>");
        self.call(
            Method::POST,
            &format!("{API}/hostedzone/{zone_id}/rrset/"),
            &[],
            Some(body),
        )
        .await
        .map(drop)
    }

    fn endless(&self, what: &str) -> ProviderError {
        ProviderError::Refused {
            code: "paging".into(),
            message: format!(
                "Route 53 {}: {what} did not end after {MAX_PAGES} pages",
                self.base
            ),
        }
    }

    /// One signed call, retried while Route 53 throttles it, its XML answer parsed.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<String>,
    ) -> Result<Element, ProviderError> {
        let mut url = self.base.clone();
        url.set_path(path);
        // Encoded as SigV4 canonicalises it, so what is sent is what was signed.
        let query_text = query
            .iter()
            .map(|(k, v)| format!("{}={}", sigv4::encode(k), sigv4::encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        url.set_query((!query_text.is_empty()).then_some(query_text.as_str()));
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => {
                return Err(ProviderError::config(format!(
                    "Route 53 endpoint {} has no host",
                    self.base
                )))
            }
        };
        let what = format!(
            "Route 53 {}: {method} {path}{}",
            self.base.as_str().trim_end_matches('/'),
            url.query().map(|q| format!("?{q}")).unwrap_or_default()
        );
        let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let payload = body.as_deref().unwrap_or_default().as_bytes();
        let mut tries = 0;
        loop {
            tries += 1;
            let signed = sigv4::sign(
                &self.credentials,
                REGION,
                SERVICE,
                &sigv4::amz_date(SystemTime::now()),
                &sigv4::Request {
                    method: method.as_str(),
                    host: &host,
                    path,
                    query: &pairs,
                    headers: &[],
                    payload,
                },
            );
            let mut request = self.http.request(method.clone(), url.clone());
            for (k, v) in signed {
                request = request.header(k, v);
            }
            if let Some(b) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/xml")
                    .body(b.clone());
            }
            let reply = http::send(request, &what).await?;
            let parsed = xml::parse(&String::from_utf8_lossy(&reply.body));
            if reply.status.is_success() {
                return parsed.map_err(|e| ProviderError::Refused {
                    code: "bad-response".into(),
                    message: format!(
                        "{what}: HTTP {}, but not XML ({e}): {}",
                        reply.status_line(),
                        reply.body_text()
                    ),
                });
            }
            let code = parsed.as_ref().ok().and_then(error_code);
            let throttled = reply.status.as_u16() == 429
                || matches!(
                    code.as_deref(),
                    Some("Throttling" | "PriorRequestNotComplete")
                );
            if throttled && tries < RATE_LIMIT_TRIES {
                tokio::time::sleep(wait(&reply, tries)).await;
                continue;
            }
            return Err(error(&what, &reply, parsed.ok().as_ref(), tries));
        }
    }
}

/// Route 53 lists `*` and other special characters of a name as `\ooo` octal escapes.
fn unescape_name(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push(
                    d.iter()
                        .fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Error/Code` of an `ErrorResponse`, or the root's name (`InvalidChangeBatch` answers
/// `<InvalidChangeBatch><Messages>…`).
fn error_code(root: &Element) -> Option<String> {
    root.text_at(&["Error", "Code"])
        .map(str::to_owned)
        .or_else(|| (root.name != "ErrorResponse").then(|| root.name.clone()))
}

/// `Retry-After` when given (seconds), else 1, 2, 4… seconds; capped.
fn wait(reply: &Reply, tries: u32) -> Duration {
    reply
        .headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(
            DEFAULT_WAIT * 2u32.pow(tries.saturating_sub(1)),
            Duration::from_secs,
        )
        .min(MAX_WAIT)
}

/// The failure with Route 53's code and every message it gave. A refused change batch is a
/// [`ProviderError::Conflict`]: the records were not what we read (Route 53 API Reference,
/// ChangeResourceRecordSets, Errors: "InvalidChangeBatch: This exception contains a list of
/// messages that might contain one or more error messages. Each error message indicates one
/// error in the change batch."), so the caller reads again.
fn error(what: &str, reply: &Reply, root: Option<&Element>, tries: u32) -> ProviderError {
    let code = root
        .and_then(error_code)
        .unwrap_or_else(|| reply.status.as_u16().to_string());
    let mut messages = Vec::new();
    if let Some(r) = root {
        r.find_all("Message", &mut messages);
    }
    let said = if messages.is_empty() {
        reply.body_text()
    } else {
        messages
            .iter()
            .map(|m| m.text.trim())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let status = reply.status.as_u16();
    let after = if tries > 1 {
        format!(" (after {tries} tries)")
    } else {
        String::new()
    };
    let message = format!(
        "{what}: HTTP {}{after}: {code}: {said}",
        reply.status_line()
    );
    // moto refuses a DELETE whose values were never written with InvalidInput naming the
    // change ("… in Change with [Action=DELETE, …]"); AWS says InvalidChangeBatch.
    let stale_delete = code == "InvalidInput" && said.contains("Action=DELETE");
    match (status, code.as_str()) {
        (_, "InvalidChangeBatch") => ProviderError::Conflict { code, message },
        _ if stale_delete => ProviderError::Conflict { code, message },
        (401 | 403, _)
        | (
            _,
            "SignatureDoesNotMatch"
            | "InvalidClientTokenId"
            | "AccessDenied"
            | "IncompleteSignature"
            | "ExpiredToken",
        ) => ProviderError::Auth { code, message },
        (429 | 500..=599, _) | (_, "Throttling" | "PriorRequestNotComplete") => {
            ProviderError::Transient { code, message }
        }
        _ => ProviderError::Refused { code, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unescaped() {
        assert_eq!(unescape_name("\\052.example.org."), "*.example.org.");
        assert_eq!(absolute("_MTA-sts.Example.org"), "_mta-sts.example.org.");
    }

    #[test]
    fn error_codes() {
        let doc = xml::parse(
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>",
        )
        .unwrap();
        assert_eq!(error_code(&doc).as_deref(), Some("Throttling"));
        let doc = xml::parse(
            "<InvalidChangeBatch><Messages><Message>Tried to delete resource record set [name='a.', type='TXT'] but the values provided do not match the current values</Message></Messages></InvalidChangeBatch>",
        )
        .unwrap();
        assert_eq!(error_code(&doc).as_deref(), Some("InvalidChangeBatch"));
    }
}
