//! One look at a name: the store first (a fresh certificate there, whoever wrote it, means
//! no order), then under the lease `acme:<name>` an order, its result stored with the lease's
//! token; and the account the orders share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::challenge::Challenges;
use super::store::StoredCert;
use super::{account, order, throttle, AcmeError};
use crate::clock::unix_now;
use crate::config;
use crate::state::store::{NewCert, Store};

/// One order may take this long, validation and download included.
const ORDER_TIMEOUT: Duration = Duration::from_secs(180);

/// The account, shared by the orders; after a failure to get it, orders fail at once until
/// `retry_at`, so that a dead ACME server costs one connection per backoff, not one per name.
#[derive(Default)]
pub(super) struct AccountCell {
    pub account: Option<instant_acme::Account>,
    failures: u32,
    retry_at: Option<(Instant, AcmeError)>,
}

/// What one look at a name came to.
pub(super) enum Outcome {
    /// A fresh certificate found in the store (an earlier run's, or another replica's).
    Loaded(StoredCert),
    /// Nothing in the store, and the name is in backoff: no order yet.
    Waiting,
    Issued(StoredCert),
    Failed(AcmeError),
}

/// Where the orders keep what they get, and how long a lease on a name lasts.
#[derive(Debug, Clone)]
pub(super) struct Keep {
    pub store: Store,
    pub lease: Duration,
}

/// The certificate stored for `name`; an unusable one is logged and counts as none.
pub(super) async fn load(store: &Store, name: &str) -> Result<Option<StoredCert>, AcmeError> {
    let row = store
        .acme_cert(name)
        .await
        .map_err(|e| AcmeError::Unreachable(format!("reading the store: {e}")))?;
    Ok(row.and_then(|r| match StoredCert::from_row(&r) {
        Ok(c) => Some(c),
        Err(e) => {
            warn!(name, "ignoring the stored certificate: {e}");
            None
        }
    }))
}

/// One look at a name: the store first, then (under the lease, unless `may_order` is false)
/// an order.
pub(super) async fn attempt(
    cfg: &config::Acme,
    keep: &Keep,
    account: &tokio::sync::Mutex<AccountCell>,
    challenges: &Arc<Challenges>,
    name: &str,
    may_order: bool,
) -> Outcome {
    let attempt = throttle::scope(try_attempt(cfg, keep, account, challenges, name, may_order));
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
    keep: &Keep,
    account: &tokio::sync::Mutex<AccountCell>,
    challenges: &Arc<Challenges>,
    name: &str,
    may_order: bool,
) -> Result<Outcome, AcmeError> {
    let store = &keep.store;
    let mut stored = load(store, name)
        .await?
        .filter(|c| (unix_now() as i64) < c.not_after);
    // RFC 9773: where the CA offers renewal information, its window decides, not our point.
    if let Some(c) = stored.as_mut().filter(|c| may_order && c.ari_id.is_some()) {
        // Without the account there is no asking; the order below reports why.
        if let Ok(acct) = account_for(cfg, keep, account).await {
            follow_ari(&acct, name, c).await;
        }
    }
    let had = stored.as_ref().map(|c| c.not_after);
    if let Some(c) = stored.filter(|c| c.fresh(unix_now() as i64)) {
        return Ok(Outcome::Loaded(c));
    }
    if !may_order {
        return Ok(Outcome::Waiting);
    }
    let job = crate::state::store::acme_job(name);
    let Some(held) = store
        .hold_acme(name, keep.lease)
        .await
        .map_err(|e| AcmeError::Unreachable(format!("the lease {job}: {e}")))?
    else {
        let holder = store.holder_of(&job).await.ok().flatten();
        return Err(AcmeError::Busy(match holder {
            Some((h, _)) => format!("another replica holds the lease {job} ({h})"),
            None => format!("another replica holds the lease {job}"),
        }));
    };
    // The lease's last holder may have just written a certificate (a newer one than the CA's
    // window just told us to renew).
    if let Some(c) = load(store, name)
        .await?
        .filter(|c| c.fresh(unix_now() as i64) && had.is_none_or(|t| c.not_after > t))
    {
        held.release().await;
        return Ok(Outcome::Loaded(c));
    }
    let acct = account_for(cfg, keep, account).await?;
    info!(challenge = ?cfg.challenge, "ordering a certificate");
    let issued = match order::obtain(&acct, name, cfg.challenge, challenges).await {
        // RFC 8555 §6.7: the server forgot the account (a test CA restarted, say): register
        // anew on the next attempt rather than fail forever.
        Err(e) if e.to_string().contains("accountDoesNotExist") => {
            account.lock().await.account = None;
            let _ = store.forget_acme_account(&cfg.directory).await;
            return Err(e);
        }
        r => r?,
    };
    let mut c = StoredCert::from_pem(name, &issued.chain_pem, &issued.key_pem)
        .map_err(|e| AcmeError::Refused(format!("the issued certificate: {e}")))?;
    follow_ari(&acct, name, &mut c).await;
    let row = NewCert {
        name,
        chain_pem: &issued.chain_pem,
        key_pem: &issued.key_pem,
        not_before: c.not_before,
        not_after: c.not_after,
        renew_at: c.renew_at(),
    };
    // Fenced: a replica that lost the lease meanwhile (stalled past it) writes nothing, and
    // the next holder's certificate stands.
    let saved = store
        .save_acme_cert(held.lease(), row)
        .await
        .map_err(|e| AcmeError::Unreachable(format!("storing the certificate: {e}")))?;
    held.release().await;
    if !saved {
        return Err(AcmeError::Busy(format!(
            "lost the lease {job} during the order; the certificate was not stored"
        )));
    }
    Ok(Outcome::Issued(c))
}

/// Asks the CA for `c`'s renewal window (RFC 9773 §4.2) and follows it; a CA without
/// renewal information, or one that fails to answer, leaves our own point.
async fn follow_ari(acct: &instant_acme::Account, name: &str, c: &mut StoredCert) {
    let Some((aki, serial)) = &c.ari_id else {
        return;
    };
    let id = instant_acme::CertificateIdentifier::new(
        rustls_pki_types::Der::from_slice(aki),
        rustls_pki_types::Der::from_slice(serial),
    );
    match acct.renewal_info(&id).await {
        Ok((info, _)) => {
            let w = info.suggested_window;
            c.follow_window(name, w.start.unix_timestamp(), w.end.unix_timestamp());
            debug!(renew_at = c.renew_at(), "following the CA's renewal window");
        }
        Err(instant_acme::Error::Unsupported(_)) => {}
        Err(e) => debug!("no renewal information: {e}"),
    }
}

async fn account_for(
    cfg: &config::Acme,
    keep: &Keep,
    cell: &tokio::sync::Mutex<AccountCell>,
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
    match account::load_or_create(cfg, &keep.store, keep.lease).await {
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
                    e.backoff(cell.failures)
                }
            };
            cell.retry_at = Some((Instant::now() + delay, e.clone()));
            Err(e)
        }
    }
}
