//! The TLS-RPT part of `/status`: per listed domain the last report received and the sessions
//! of the last 7 days, read from the store when `/status` is asked (bounded in time).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::store::{utc_day, Store, Sums};

/// The days `/status` sums over, today (UTC) included.
pub(crate) const DAYS: i64 = 7;

/// `/status` answers even when the database is slow: past this it shows no sums.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/status` knows of the store for the domains it lists.
pub(crate) enum Reports {
    /// No `[tlsrpt]`: nothing about reports is shown.
    Off,
    /// Configured, but the store is not open or did not answer in time.
    Unavailable(String),
    Sums(HashMap<String, Sums>),
}

/// The sums for `domains` from `store` (`None`: not open yet).
pub(crate) async fn fetch(store: Option<&Store>, domains: &[String], now: i64) -> Reports {
    let Some(store) = store else {
        return Reports::Unavailable("the report store is not open".into());
    };
    let since = utc_day(now - (DAYS - 1) * 86_400);
    match tokio::time::timeout(QUERY_TIMEOUT, store.sums(domains, &since)).await {
        Ok(Ok(s)) => Reports::Sums(s),
        Ok(Err(e)) => Reports::Unavailable(e.to_string()),
        Err(_) => Reports::Unavailable(format!(
            "the report store did not answer in {QUERY_TIMEOUT:?}"
        )),
    }
}

impl Reports {
    /// A domain's `tlsrpt` entry: `null` without `[tlsrpt]` or while the store is unavailable.
    pub(crate) fn domain(&self, name: &str) -> Value {
        match self {
            Reports::Off | Reports::Unavailable(_) => Value::Null,
            Reports::Sums(s) => {
                let s = s.get(name).copied().unwrap_or_default();
                json!({
                    "last_report": s.last_received.map(crate::clock::rfc3339),
                    "days": DAYS,
                    "successful": s.successful,
                    "failed": s.failed,
                })
            }
        }
    }

    /// The top-level `tlsrpt` entry: whether the sums could be read.
    pub(crate) fn summary(&self) -> Value {
        match self {
            Reports::Off => Value::Null,
            Reports::Unavailable(e) => json!({ "store": "unavailable", "error": e }),
            Reports::Sums(_) => json!({ "store": "open" }),
        }
    }
}
