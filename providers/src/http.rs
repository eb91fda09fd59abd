//! What the HTTP API providers (`powerdns/`, `cloudflare/`) share: one client per provider
//! instance — rustls on ring (never aws-lc) with the system's trust store, timeouts on every
//! request — and transport failures as [`ProviderError::Transient`].

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};

use crate::ProviderError;

/// Time to establish a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole request, the response body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a server's non-JSON error body is quoted in a message.
const QUOTE_LIMIT: usize = 300;

/// A client for one provider instance.
pub fn client() -> Result<reqwest::Client, ProviderError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| ProviderError::config(format!("TLS trust store: {e}")))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProviderError::config(format!("TLS settings: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        // An API answering with a redirect is misconfigured; following it could send the
        // credentials elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mta-stsd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ProviderError::config(format!("HTTP client: {}", chain(&e))))
}

/// A response read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// `404 Not Found`.
    pub fn status_line(&self) -> String {
        match self.status.canonical_reason() {
            Some(reason) => format!("{} {reason}", self.status.as_u16()),
            None => self.status.as_u16().to_string(),
        }
    }

    /// The body as text for a message: trimmed, cut at [`QUOTE_LIMIT`] characters.
    pub fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(QUOTE_LIMIT) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None if text.is_empty() => "(empty body)".to_owned(),
            None => text.to_owned(),
        }
    }
}

/// Sends `request` and reads the whole response; `what` (e.g. `PowerDNS http://…: GET zones`)
/// prefixes the message of a transport failure.
pub async fn send(request: RequestBuilder, what: &str) -> Result<Reply, ProviderError> {
    let fail = |e: reqwest::Error| {
        // `what` names the server, redacted; reqwest's own text would repeat the whole URL.
        let e = e.without_url();
        if e.is_timeout() {
            ProviderError::transient(
                "timeout",
                format!(
                    "{what}: no answer within {REQUEST_TIMEOUT:?} (connect {CONNECT_TIMEOUT:?}): {}",
                    chain(&e)
                ),
            )
        } else if e.is_connect() {
            ProviderError::transient("connect", format!("{what}: cannot connect: {}", chain(&e)))
        } else {
            ProviderError::transient("connection", format!("{what}: {}", chain(&e)))
        }
    };
    let response = request.send().await.map_err(fail)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(fail)?.to_vec();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// An error with its causes, `: `-separated: reqwest's own text alone ("error sending request")
/// does not say what went wrong.
fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
