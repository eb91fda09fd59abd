//! The ACME account (RFC 8555 §7.3): created once per directory URL (by one replica, under the
//! lease `acme:account`), its key and URL kept in the store and reused by every later start
//! and by every replica; and
//! the HTTPS client that speaks to the ACME server, trusting the platform's roots plus
//! `[acme] ca`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, BodyWrapper, BytesResponse, HttpClient, NewAccount,
};
use tracing::info;

use super::{throttle, AcmeError};
use crate::certs::{self, provider};
use crate::config;
use crate::state::store::Store;

/// How long a connection to the ACME server may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The lease under which one replica registers the account.
const ACCOUNT_JOB: &str = "account";

/// An HTTPS-only client, HTTP/1.1 and HTTP/2, for the ACME server.
#[allow(clippy::expect_used, reason = "ring supports the default versions")]
pub(super) fn http_client(cfg: &config::Acme) -> Result<Box<dyn HttpClient>, AcmeError> {
    let mut extra = Vec::new();
    if let Some(ca) = &cfg.ca {
        extra = certs::chain_file(ca).map_err(
            |(certs::ReadError::Open(e) | certs::ReadError::Content(e))| {
                AcmeError::Local(format!("[acme] ca {}: {e}", ca.display()))
            },
        )?;
    }
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider())
        .map_err(|e| AcmeError::Local(format!("trust anchors for the ACME server: {e}")))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    // RFC 8555 §6.1: "Each ACME function is accomplished by the client sending a sequence of
    // HTTPS requests to the server".
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client: Client<_, BodyWrapper<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(Noting(client)))
}

/// Notes each response's status and `Retry-After` for the attempt it belongs to, which
/// instant-acme would drop with the headers of an error response.
struct Noting<C>(C);

impl<C: HttpClient> HttpClient for Noting<C> {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.0.request(req);
        Box::pin(async move {
            let response = response.await?;
            throttle::note(&response.parts);
            Ok(response)
        })
    }
}

/// The account for `cfg.directory`: restored from the store, or registered and stored.
#[allow(clippy::expect_used, reason = "credentials serialize")]
pub(super) async fn load_or_create(
    cfg: &config::Acme,
    store: &Store,
    lease: Duration,
) -> Result<Account, AcmeError> {
    if let Some(account) = restore(cfg, store).await? {
        return Ok(account);
    }
    // One replica registers; the others find its credentials on their next attempt.
    let Some(_held) = store
        .hold_acme(ACCOUNT_JOB, lease)
        .await
        .map_err(|e| AcmeError::Unreachable(format!("the account's lease: {e}")))?
    else {
        return Err(AcmeError::Busy(
            "another replica is creating the ACME account".into(),
        ));
    };
    if let Some(account) = restore(cfg, store).await? {
        return Ok(account);
    }
    let contact: Vec<&str> = cfg.contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(http_client(cfg)?)
        .create(
            &NewAccount {
                contact: &contact,
                // RFC 8555 §7.3: the client agrees to the server's terms of service.
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            cfg.directory.clone(),
            None,
        )
        .await
        .map_err(|e| AcmeError::from_acme("creating the ACME account", e))?;
    let json = serde_json::to_string(&credentials).expect("credentials serialize");
    store
        .put_acme_account(&cfg.directory, &json, true)
        .await
        .map_err(|e| AcmeError::Unreachable(format!("storing the ACME account: {e}")))?;
    info!(account = account.id(), directory = %cfg.directory, "ACME account created");
    Ok(account)
}

async fn restore(cfg: &config::Acme, store: &Store) -> Result<Option<Account>, AcmeError> {
    let Some(json) = store
        .acme_account(&cfg.directory)
        .await
        .map_err(|e| AcmeError::Unreachable(format!("reading the ACME account: {e}")))?
    else {
        return Ok(None);
    };
    let credentials: AccountCredentials = serde_json::from_str(&json)
        .map_err(|e| AcmeError::Local(format!("the stored ACME account is unreadable: {e}")))?;
    let account = Account::builder_with_http(http_client(cfg)?)
        .from_credentials(credentials)
        .await
        .map_err(|e| AcmeError::from_acme("reaching the ACME directory", e))?;
    Ok(Some(account))
}
