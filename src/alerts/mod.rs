//! `[alerts]`: drift's events (a finding appeared, changed severity, cleared) delivered to a
//! webhook (HTTPS POST of the JSON event, retried with backoff) and/or a command (the JSON on
//! stdin). The webhook URL is a secret: it is never logged, only "the webhook".

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use crate::config::Alerts;

/// Events sent per run at most: a first run over a million domains must not send a million.
pub(crate) const MAX_EVENTS: usize = 100;
/// Webhook attempts per event, the first after no wait, then doubling from this.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(10);

/// Deliveries and failures, for `/metrics` and `/status`; shared by the daemon's runs.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    /// The last failure, worded without the URL.
    pub last_error: Mutex<Option<String>>,
}

impl Stats {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "delivered": self.delivered.load(Ordering::Relaxed),
            "retried": self.retried.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "last_error": *self.last_error.lock().unwrap_or_else(|e| e.into_inner()),
        })
    }
}

/// Sends `events` (at most [`MAX_EVENTS`]) in order to every configured channel, each as its
/// JSON. Drift owns the event type (`drift::changes::Event`); alerts only delivers it.
#[allow(clippy::expect_used, reason = "an event serializes")]
pub(crate) async fn send<E: Serialize>(
    alerts: &Alerts,
    tls: Arc<rustls::ClientConfig>,
    events: &[E],
    stats: &Stats,
) {
    if events.len() > MAX_EVENTS {
        let dropped = events.len() - MAX_EVENTS;
        stats.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        warn!(
            sent = MAX_EVENTS,
            dropped, "more drift events than one run sends; the report has them all"
        );
    }
    let client = alerts.webhook.as_ref().map(|_| {
        let mut tls = (*tls).clone();
        // hyper-rustls sets ALPN itself (and refuses a config that has some).
        tls.alpn_protocols.clear();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https)
    });
    for event in events.iter().take(MAX_EVENTS) {
        let json = serde_json::to_vec(event).expect("an event serializes");
        if let (Some(url), Some(client)) = (&alerts.webhook, &client) {
            webhook(client, url.expose(), &json, stats).await;
        }
        if let Some(cmd) = &alerts.command {
            match command(cmd, &json).await {
                Ok(()) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    warn!(command = %cmd.display(), error = %e, "alert command failed");
                    stats.fail(format!("command {}: {e}", cmd.display()));
                }
            }
        }
    }
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

async fn webhook(client: &HttpsClient, url: &str, json: &[u8], stats: &Stats) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("mta-stsd/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::copy_from_slice(json)));
        let request = match request {
            Ok(r) => r,
            Err(_) => {
                stats.fail("the webhook URL is not a valid request target".into());
                return;
            }
        };
        let outcome = match tokio::time::timeout(TIMEOUT, client.request(request)).await {
            Ok(Ok(r)) if r.status().is_success() => Ok(()),
            Ok(Ok(r)) => Err(format!("answered {}", r.status())),
            // hyper's error chain names neither the URL nor its path.
            Ok(Err(e)) => Err(crate::errors::chain(&e)),
            Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
        };
        match outcome {
            Ok(()) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) if attempt < ATTEMPTS => {
                info!(attempt, error = %e, "alert webhook failed; retrying");
                stats.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => {
                warn!(attempts = ATTEMPTS, error = %e, "alert webhook failed; event not delivered");
                stats.fail(format!("webhook: {e} (after {ATTEMPTS} attempts)"));
            }
        }
    }
}

/// Runs `cmd` with the event on stdin, within [`TIMEOUT`] (then killed).
#[allow(clippy::expect_used, reason = "piped")]
async fn command(cmd: &std::path::Path, json: &[u8]) -> Result<(), String> {
    let mut child = tokio::process::Command::new(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().expect("piped");
    let run = async {
        stdin.write_all(json).await.map_err(|e| e.to_string())?;
        stdin.write_all(b"\n").await.map_err(|e| e.to_string())?;
        drop(stdin);
        child.wait().await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(TIMEOUT, run).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("exited with {status}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("still running after {TIMEOUT:?}; killed")),
    }
}
