//! One look at a name: the store first (a fresh certificate there, whoever wrote it, means
//! no order), then under `<name>.lock` an order, its result stored; and the account the
//! orders share.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::challenge::Challenges;
use super::manager::backoff;
use super::store::{Store, StoredCert};
use super::{account, order, throttle, AcmeError};
use crate::clock::unix_now;
use crate::config;

/// One order may take this long, validation and download included.
const ORDER_TIMEOUT: Duration = Duration::from_secs(180);
/// A lock older than this is a crashed replica's: well past [`ORDER_TIMEOUT`].
const LOCK_STALE: Duration = Duration::from_secs(600);

/// The account, shared by the orders; after a failure to get it, orders fail at once until
/// `retry_at`, so that a dead ACME server costs one connection per backoff, not one per name.
#[derive(Default)]
pub struct AccountCell {
    pub account: Option<instant_acme::Account>,
    failures: u32,
    retry_at: Option<(Instant, AcmeError)>,
}

/// What one look at a name came to.
pub enum Outcome {
    /// A fresh certificate found in the store (an earlier run's, or another replica's).
    Loaded(StoredCert),
    /// Nothing in the store, and the name is in backoff: no order yet.
    Waiting,
    Issued(StoredCert),
    Failed(AcmeError),
}

/// Reads the store for `names`; an unusable pair is logged and counts as none.
pub fn load_all(state: &Path, names: Vec<String>) -> Vec<(String, Option<StoredCert>)> {
    let store = match Store::open(state) {
        Ok(s) => s,
        Err(e) => {
            warn!(dir = %state.display(), error = %e, "cannot open the ACME state directory");
            return names.into_iter().map(|n| (n, None)).collect();
        }
    };
    names
        .into_iter()
        .map(|n| {
            let cert = store.load(&n).unwrap_or_else(|e| {
                warn!(name = %n, "ignoring the stored certificate: {e}");
                None
            });
            (n, cert)
        })
        .collect()
}

/// One look at a name: the store first, then (under the lock, unless `may_order` is false)
/// an order.
pub async fn attempt(
    cfg: &config::Acme,
    account: &tokio::sync::Mutex<AccountCell>,
    challenges: &Arc<Challenges>,
    name: &str,
    may_order: bool,
) -> Outcome {
    let attempt = throttle::scope(try_attempt(cfg, account, challenges, name, may_order));
    match tokio::time::timeout(ORDER_TIMEOUT, attempt).await {
        Ok(Ok(o)) => o,
        Ok(Err(AcmeError::Throttled(t))) => Outcome::Failed(AcmeError::Throttled(t.for_name(name))),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::Failed(AcmeError::Unreachable(format!(
            "the order took longer than {ORDER_TIMEOUT:?}"
        ))),
    }
}

async fn try_attempt(
    cfg: &config::Acme,
    account: &tokio::sync::Mutex<AccountCell>,
    challenges: &Arc<Challenges>,
    name: &str,
    may_order: bool,
) -> Result<Outcome, AcmeError> {
    let store = Store::open(&cfg.state).map_err(|e| {
        AcmeError::Local(format!("the state directory {}: {e}", cfg.state.display()))
    })?;
    let fresh = |store: &Store| match store.load(name) {
        Ok(Some(c)) if c.fresh(unix_now() as i64) => Some(c),
        Ok(_) => None,
        Err(e) => {
            warn!("ignoring the stored certificate: {e}");
            None
        }
    };
    if let Some(c) = fresh(&store) {
        return Ok(Outcome::Loaded(c));
    }
    if !may_order {
        return Ok(Outcome::Waiting);
    }
    let Some(_lock) = store
        .try_lock(name, LOCK_STALE)
        .map_err(|e| AcmeError::Local(format!("locking {name}: {e}")))?
    else {
        return Err(AcmeError::Busy(format!(
            "another replica holds {name}.lock in {}",
            store.dir().display()
        )));
    };
    // The lock's last holder may have just written a certificate.
    if let Some(c) = fresh(&store) {
        return Ok(Outcome::Loaded(c));
    }
    let acct = account_for(cfg, account, &store).await?;
    info!(challenge = ?cfg.challenge, "ordering a certificate");
    let issued = match order::obtain(&acct, name, cfg.challenge, challenges).await {
        // RFC 8555 §6.7: the server forgot the account (a test CA restarted, say): register
        // anew on the next attempt rather than fail forever.
        Err(e) if e.to_string().contains("accountDoesNotExist") => {
            account.lock().await.account = None;
            let _ = store.forget_account(&cfg.directory);
            return Err(e);
        }
        r => r?,
    };
    store
        .save(name, &issued.chain_pem, &issued.key_pem)
        .map_err(|e| AcmeError::Local(format!("storing the certificate: {e}")))?;
    match store.load(name) {
        Ok(Some(c)) => Ok(Outcome::Issued(c)),
        Ok(None) => Err(AcmeError::Local("the stored certificate vanished".into())),
        Err(e) => Err(AcmeError::Refused(format!("the issued certificate: {e}"))),
    }
}

async fn account_for(
    cfg: &config::Acme,
    cell: &tokio::sync::Mutex<AccountCell>,
    store: &Store,
) -> Result<instant_acme::Account, AcmeError> {
    let mut cell = cell.lock().await;
    if let Some(a) = &cell.account {
        return Ok(a.clone());
    }
    if let Some((at, e)) = &cell.retry_at {
        if Instant::now() < *at {
            return Err(e.clone());
        }
    }
    match account::load_or_create(cfg, store).await {
        Ok(a) => {
            *cell = AccountCell {
                account: Some(a.clone()),
                ..AccountCell::default()
            };
            Ok(a)
        }
        Err(e) => {
            let delay = match &e {
                // The server said how long; a throttle is no failure of ours.
                AcmeError::Throttled(t) => t.until.map_or(Duration::from_secs(60), |u| {
                    Duration::from_secs(u.saturating_sub(unix_now()))
                }),
                _ => {
                    cell.failures += 1;
                    backoff(&e, cell.failures)
                }
            };
            cell.retry_at = Some((Instant::now() + delay, e.clone()));
            Err(e)
        }
    }
}
