//! ACME (RFC 8555) certificates for every `mta-sts.<domain>` that no `[tls]` certificate
//! covers: what the listeners serve ([`AcmeState`]: certificates, challenge answers, status),
//! and the [`Manager`] task that loads them from the store, orders the missing ones and
//! renews them. Account, certificates, challenge answers and limits are in the store
//! (`crate::state::store`), so replicas share no disk; an earlier version's `[acme] state`
//! directory is imported once ([`import`]).
//!
//! - At start, and before every order, the store is read: a certificate that is valid and not
//!   due for renewal (a point in 60–75 % of its lifetime, by a hash of the name, or in the
//!   CA's window where it offers RFC 9773 renewal information) is served with no order,
//!   whoever wrote it.
//! - At most [`MAX_IN_FLIGHT`] orders run at once; each name has its own schedule and backoff,
//!   so a name that fails never holds up another; the server's `rateLimited` or `Retry-After`
//!   ([`throttle`]) makes the name, or for an account-wide limit every name, wait that long.
//! - What the CA's limits left us (the hour's orders, its `Retry-After` waits, backoffs, the
//!   on-demand names) is kept in the store across restarts ([`limits`]).
//! - An order holds the lease `acme:<name>`, so replicas never order the same name at once;
//!   its certificate is written with the lease's token (a replica that lost the lease writes
//!   nothing); a replica that finds the lease taken looks at the store again shortly, and
//!   every replica serves what another wrote within [`manager::FOLLOW`].

mod account;
mod attempt;
pub(crate) mod challenge;
mod import;
mod limits;
mod manager;
mod order;
mod store;
mod throttle;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::clock::rfc3339;
use crate::errors::chain;
use crate::metrics::{CertLabel, Metrics};
use challenge::Challenges;
pub(crate) use challenge::ACME_TLS_ALPN;
pub(crate) use manager::{Manager, ManagerContext};

/// Orders running at once, across all names.
pub(crate) const MAX_IN_FLIGHT: usize = 4;

/// Names asked for on demand and not yet taken by the manager, at most: a flood of
/// handshakes grows nothing beyond this.
pub(crate) const MAX_DEMANDS: usize = 1024;

/// Why an attempt at a name failed; the kind decides how soon it is tried again.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum AcmeError {
    /// The ACME server could not be reached, timed out or answered 5xx: cheap to retry.
    #[error("{0}")]
    Unreachable(String),
    /// The server refused (a problem document) or validation failed: retried slowly, as CAs
    /// limit failed validations.
    #[error("{0}")]
    Refused(String),
    /// Another replica holds the lease.
    #[error("{0}")]
    Busy(String),
    /// Our side: key generation, `[acme] ca`.
    #[error("{0}")]
    Local(String),
    /// The server asks us to wait (RFC 8555 §6.6 `rateLimited`, or a 429 or 503 with
    /// `Retry-After`): not a failure of ours, so it does not escalate the backoff.
    #[error("{}", .0.why)]
    Throttled(Throttle),
}

/// Backoff after failures: (first delay, cap), doubled per failure in a row.
const BACKOFF_UNREACHABLE: (Duration, Duration) =
    (Duration::from_secs(2), Duration::from_secs(600));
const BACKOFF_REFUSED: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(6 * 3600));
/// A rate limit without a `Retry-After` we could read: CAs count over hours.
const BACKOFF_THROTTLED: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(3 * 3600));

impl AcmeError {
    /// How long to wait after `failures` failures in a row ending in this one.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let (first, cap) = match self {
            AcmeError::Unreachable(_) | AcmeError::Busy(_) => BACKOFF_UNREACHABLE,
            AcmeError::Refused(_) | AcmeError::Local(_) => BACKOFF_REFUSED,
            AcmeError::Throttled(_) => BACKOFF_THROTTLED,
        };
        crate::clock::backoff(first, cap, failures)
    }
}

/// The server's request to wait.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    pub why: String,
    /// Unix seconds, from `Retry-After`; `None` when it gave none we could read.
    pub until: Option<u64>,
    /// Holds for every name (an account or server limit), or for this name only.
    pub account_wide: bool,
    /// The texts of a rate-limit problem, to tell the two apart once the name is known;
    /// `None` once decided.
    names: Option<Vec<String>>,
}

impl Throttle {
    /// A limit that names neither `name` nor a parent domain of it holds for the account.
    pub(super) fn for_name(mut self, name: &str) -> Self {
        if let Some(texts) = self.names.take() {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            self.account_wide = !throttle::names(&texts, name);
        }
        self
    }
}

impl AcmeError {
    /// Maps instant-acme's error, with the status and `Retry-After` of the response it came
    /// from (noted by our HTTP client, see [`throttle`]).
    fn from_acme(what: &str, e: instant_acme::Error) -> Self {
        use instant_acme::Error as E;
        let answer = throttle::last();
        let status = answer.map(|a| a.status);
        let retry_after = answer.and_then(|a| a.retry_after);
        let throttled = |why: String, account_wide: bool, names: Option<Vec<String>>| {
            AcmeError::Throttled(Throttle {
                why,
                until: retry_after,
                account_wide,
                names,
            })
        };
        let rate_limited = |p: &instant_acme::Problem| {
            p.r#type.as_deref() == Some(throttle::RATE_LIMITED) || status == Some(429)
        };
        match e {
            // RFC 8555 §6.6: "the server MAY additionally include a Retry-After header".
            E::Api(p) if rate_limited(&p) => {
                let mut names: Vec<String> = p.detail.iter().cloned().collect();
                for sub in &p.subproblems {
                    names.extend(sub.detail.iter().cloned());
                    if let Some(instant_acme::Identifier::Dns(n)) = &sub.identifier {
                        names.push(n.clone());
                    }
                }
                throttled(format!("{what}: {p}"), false, Some(names))
            }
            // A 429 that is not ACME JSON names nothing: the account waits.
            E::Json(_) if status == Some(429) => throttled(format!("{what}: HTTP 429"), true, None),
            // The server as a whole is unavailable and says for how long.
            E::Api(_) | E::Json(_) if status == Some(503) && retry_after.is_some() => {
                throttled(format!("{what}: HTTP 503: {}", chain(&e)), true, None)
            }
            E::Api(p) if p.status.is_some_and(|s| s >= 500) || status.is_some_and(|s| s >= 500) => {
                AcmeError::Unreachable(format!("{what}: {p}"))
            }
            E::Api(p) => AcmeError::Refused(format!("{what}: {p}")),
            E::Crypto | E::KeyRejected => AcmeError::Local(format!("{what}: {e}")),
            E::Json(_) if status.is_some_and(|s| s >= 500) => {
                AcmeError::Unreachable(format!("{what}: HTTP {}", status.unwrap_or_default()))
            }
            // Not ACME JSON: something else answers at the directory URL.
            E::Json(_) => AcmeError::Refused(format!("{what}: {}", chain(&e))),
            // The server's Retry-After while the order is processed is past our deadline.
            E::Timeout(Some(at)) => {
                let wait = at.saturating_duration_since(std::time::Instant::now());
                AcmeError::Throttled(Throttle {
                    why: format!("{what}: the ACME server asks to come back in {wait:?}"),
                    until: Some(crate::clock::unix_now() + wait.as_secs() + 1),
                    account_wide: false,
                    names: None,
                })
            }
            other => AcmeError::Unreachable(format!("{what}: {}", chain(&other))),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            AcmeError::Unreachable(_) => "unreachable",
            AcmeError::Refused(_) => "refused",
            AcmeError::Busy(_) => "busy",
            AcmeError::Local(_) => "local",
            AcmeError::Throttled(_) => "throttled",
        }
    }
}

/// Where a name's certificate stands, as `/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertState {
    /// No certificate yet, and none being ordered.
    Pending,
    /// Due, waiting for an order slot (`[acme] orders_per_hour`).
    Queued,
    /// An order is running.
    Ordering,
    Valid,
    /// The last attempt failed; a certificate may still be served (see `not_after`).
    Failed,
}

impl CertState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CertState::Pending => "pending",
            CertState::Queued => "queued",
            CertState::Ordering => "ordering",
            CertState::Valid => "valid",
            CertState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct NameStatus {
    pub state: CertState,
    /// Unix seconds, of the certificate served.
    pub not_after: Option<i64>,
    pub renew_at: Option<i64>,
    /// When this replica last obtained a certificate by an order.
    pub last_issued: Option<u64>,
    pub last_error: Option<String>,
    /// Failed attempts in a row.
    pub attempts: u32,
    pub next_attempt: Option<u64>,
    /// Why nothing happens now (another replica holds the lease).
    pub detail: Option<String>,
}

impl Default for NameStatus {
    fn default() -> Self {
        NameStatus {
            state: CertState::Pending,
            not_after: None,
            renew_at: None,
            last_issued: None,
            last_error: None,
            attempts: 0,
            next_attempt: None,
            detail: None,
        }
    }
}

/// What the listeners and the admin endpoint read, and the manager writes.
#[derive(Debug, Default)]
pub(crate) struct AcmeState {
    /// By `mta-sts.<domain>`: read on every handshake of an ACME domain.
    certs: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    challenges: Arc<Challenges>,
    validation: OnceLock<Arc<ServerConfig>>,
    status: Mutex<HashMap<String, NameStatus>>,
    /// The server's account-wide wait: until when (Unix seconds), and why.
    pause: Mutex<Option<(u64, String)>>,
    /// `[acme] on_demand`: names whose handshake found no certificate, for the manager to
    /// order first (see [`AcmeState::demand`]).
    demands: Mutex<HashSet<String>>,
    /// Wakes the manager: a name demanded (a reload wakes it through its `Reloads`).
    pub wake: Notify,
}

impl AcmeState {
    /// The certificate to serve for `host` (`mta-sts.<domain>`), once there is one.
    pub(crate) fn cert(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        self.certs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
    }

    /// `[acme] on_demand`: a handshake for `host`, a configured ACME name (the caller's
    /// allow list), found no certificate: the manager orders it first. One-way and bounded:
    /// a name already asked for costs a lookup, and beyond [`MAX_DEMANDS`] nothing is kept.
    pub(crate) fn demand(&self, host: &str) {
        let mut demands = self.demands.lock().unwrap_or_else(|e| e.into_inner());
        if demands.len() >= MAX_DEMANDS || demands.contains(host) {
            return;
        }
        demands.insert(host.to_owned());
        drop(demands);
        self.wake.notify_one();
    }

    /// The names asked for since the last call.
    fn take_demands(&self) -> HashSet<String> {
        std::mem::take(&mut *self.demands.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The TLS config for a handshake that offers ALPN `acme-tls/1` (RFC 8737).
    pub(crate) fn validation_config(&self) -> Arc<ServerConfig> {
        self.validation
            .get_or_init(|| challenge::validation_config(self.challenges.clone()))
            .clone()
    }

    /// The body of the answer to an HTTP-01 validation request on a plain listener, if it is
    /// one.
    pub(crate) fn http01_body(&self, method: &str, path: &str) -> Option<Bytes> {
        self.challenges.http01_body(method, path)
    }

    /// An HTTP-01 token asked for that this replica does not know: another replica's order
    /// may have put it in the store ([`AcmeState::fetch_http01`]).
    pub(crate) fn http01_unknown<'p>(&self, method: &str, path: &'p str) -> Option<&'p str> {
        self.challenges.http01_unknown(method, path)
    }

    /// Looks another replica's HTTP-01 answer up in the store (bounded).
    pub(crate) async fn fetch_http01(&self, token: &str) {
        self.challenges.fetch_http01(token).await
    }

    /// Before a validation handshake for `host`, a name we serve: another replica's
    /// TLS-ALPN-01 answer is looked up in the store (bounded) unless one is known here.
    pub(crate) async fn fetch_tls_alpn01(&self, host: &str) {
        self.challenges.fetch_tls_alpn01(host).await
    }

    pub(crate) fn status(&self, host: &str) -> NameStatus {
        self.status_map().get(host).cloned().unwrap_or_default()
    }

    /// `/status`'s `acme` object for one domain.
    pub(crate) fn status_json(&self, host: &str) -> Value {
        let s = self.status(host);
        json!({
            "name": host,
            "state": s.state.as_str(),
            "not_after": s.not_after.map(rfc3339),
            "renew_at": s.renew_at.map(rfc3339),
            "last_issued": s.last_issued.map(rfc3339),
            "last_error": s.last_error,
            "attempts": s.attempts,
            "next_attempt": s.next_attempt.map(rfc3339),
            "detail": s.detail,
        })
    }

    /// `/status`'s `acme` object: how many names stand where, and the server's account-wide
    /// wait, if any.
    pub(crate) fn summary_json(&self) -> Value {
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        let mut next: Option<u64> = None;
        for s in self.status_map().values() {
            *counts.entry(s.state.as_str()).or_default() += 1;
            if let Some(t) = s.next_attempt {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let pause = self.pause.lock().unwrap_or_else(|e| e.into_inner()).clone();
        json!({
            "names": counts,
            "next_attempt": next.map(rfc3339),
            "paused_until": pause.as_ref().map(|(t, _)| rfc3339(*t)),
            "paused_why": pause.map(|(_, why)| why),
        })
    }

    /// Sets the expiry gauge of every ACME certificate served (after the family was cleared).
    pub(crate) fn publish_cert_metrics(&self, metrics: &Metrics) {
        for (name, s) in self.status_map().iter() {
            if let Some(t) = s.not_after {
                metrics.cert_expiry.get_or_create(&cert_label(name)).set(t);
            }
        }
    }

    fn status_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, NameStatus>> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_cert(&self, host: &str, key: Option<Arc<CertifiedKey>>) {
        let mut certs = self.certs.write().unwrap_or_else(|e| e.into_inner());
        match key {
            Some(k) => certs.insert(host.to_owned(), k),
            None => certs.remove(host),
        };
    }
}

/// Whether `host` is one of the config's ACME names (an `mta-sts.` host, or a `[tlsrpt]`
/// host, whose certificate comes from ACME): only for those is another replica's challenge
/// answer looked up in the store.
pub(crate) fn is_acme_name(live: &crate::live::Live, host: &str) -> bool {
    if live.config.acme.is_none() {
        return false;
    }
    if let Some(d) = live.domain_for_sni(host) {
        return d.cert == crate::config::CertSource::Acme;
    }
    let certs = live.config.tlsrpt.as_ref().map(|t| &t.certs);
    live.tlsrpt_host(host)
        .and_then(|i| certs?.get(i))
        .is_some_and(|c| *c == crate::config::CertSource::Acme)
}

fn cert_label(name: &str) -> CertLabel {
    CertLabel {
        name: name.to_owned(),
        source: "acme",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_per_kind() {
        let down = AcmeError::Unreachable(String::new());
        let refused = AcmeError::Refused(String::new());
        let within = |d: Duration, base: u64| {
            d >= Duration::from_secs(base) && d <= Duration::from_secs(base).mul_f64(1.2)
        };
        assert!(within(down.backoff(1), 2));
        assert!(within(down.backoff(2), 4));
        assert!(within(down.backoff(30), 600));
        assert!(within(refused.backoff(1), 60));
        assert!(within(refused.backoff(40), 6 * 3600));
    }

    #[test]
    fn demands_are_a_bounded_set() {
        let s = AcmeState::default();
        for _ in 0..10 {
            s.demand("mta-sts.a.example");
        }
        assert_eq!(s.take_demands().len(), 1);
        for i in 0..5 * MAX_DEMANDS {
            s.demand(&format!("mta-sts.d{i}.example"));
        }
        assert_eq!(s.take_demands().len(), MAX_DEMANDS);
        assert!(s.take_demands().is_empty());
    }
}
