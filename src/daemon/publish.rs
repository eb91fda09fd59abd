//! Publishing in `serve`: after start and every reload, push the records of the domains whose
//! desired records changed, one change set per zone, zones in parallel; failures are retried
//! per domain with exponential backoff and jitter, and shown in `/status` and metrics.
//!
//! RFC 8461 §8.1 wants the new policy served before the TXT carrying its id is published:
//! the reload swaps the served state first, then wakes this task.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use mta_stsd_providers::ProviderError;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn, Instrument};

use super::context::Daemon;
use super::publication::{DomainPublication, PubState};
use crate::clock::unix_now;
use crate::config::{Domain, Retiring};
use crate::desired;
use crate::dns::providers::{self, Providers};
use crate::dns::sync;
use crate::live::{Live, Reloads};
use crate::state::store::{zone_job, Held};

mod outcome;

use outcome::outcome;

/// The lease of reconcile rounds.
const RECONCILE: &str = "reconcile";
/// A zone whose lease another replica holds is looked at again after this (its holder
/// publishes meanwhile; this one then reads and finds nothing left to do).
const ZONE_HELD_RETRY: u64 = 2;
/// A zone whose lease cannot be asked for (the store does not answer) waits this long.
const STORE_DOWN_RETRY: u64 = 5;
/// How long the store may take the withdrawals' events before the zone leases go.
const FLUSH_WITHDRAWN: Duration = Duration::from_secs(5);

/// Zones worked on at once.
const ZONES_IN_PARALLEL: usize = 8;
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What decides whether a domain must be pushed again.
fn desired_key(d: &Domain) -> u64 {
    let mut h = DefaultHasher::new();
    d.dns.provider.hash(&mut h);
    d.zone.hash(&mut h);
    desired::records(d).hash(&mut h);
    h.finish()
}

/// Exponential backoff with jitter, so that many domains do not retry in step.
fn backoff(attempts: u32) -> Duration {
    crate::clock::backoff(BACKOFF_BASE, BACKOFF_MAX, attempts)
}

/// Dropping it stops the task.
pub(crate) struct Publisher {
    _task: AbortOnDropHandle<()>,
}

impl Publisher {
    pub(crate) fn start(shared: Arc<Daemon>) -> Publisher {
        Publisher {
            _task: AbortOnDropHandle::new(tokio::spawn(run(shared.clone(), shared.reloads()))),
        }
    }
}

#[allow(clippy::expect_used, reason = "just built")]
async fn run(shared: Arc<Daemon>, mut reloads: Reloads) {
    let mut built: Option<(Arc<Live>, Providers)> = None;
    // The first round after start reads everything anyway; reconcile one period later. The
    // period is the live config's, so a reload that changes it applies at once.
    let mut last_reconcile = tokio::time::Instant::now();
    let mut period = shared.live.load().config.reconcile;
    loop {
        let live = shared.live.load_full();
        if built.as_ref().is_none_or(|(l, _)| !Arc::ptr_eq(l, &live)) {
            let before = built.as_ref().map(|(l, p)| (&l.config, p));
            let next = providers::rebuild(&live.config, before);
            built = Some((live.clone(), next));
        }
        let providers = &built.as_ref().expect("just built").1;
        let now = unix_now();
        // Reconcile: read back every record we own and repair what changed behind our back.
        if live.config.reconcile != period {
            period = live.config.reconcile;
            info!(every = ?period, "reconcile interval changed by the reload: applied now");
        }
        let mut next_reconcile = last_reconcile + period;
        let mut round = None;
        if tokio::time::Instant::now() >= next_reconcile {
            last_reconcile = tokio::time::Instant::now();
            match reconcile_lease(&shared, period).await {
                Reconcile::Ours(held) => round = Some(held),
                // Done by another replica `ago` seconds ago: the next is one period after it.
                Reconcile::DoneAgo(ago) => {
                    last_reconcile = last_reconcile
                        .checked_sub(Duration::from_secs(ago))
                        .unwrap_or(last_reconcile);
                }
                Reconcile::Elsewhere => {}
            }
            next_reconcile = last_reconcile + period;
        }
        let due = refresh(&shared, &live, now, round.is_some());
        if !due.is_empty() {
            publish(&shared, providers, &due).await;
        }
        if let Some(held) = round {
            let store = shared.writer.store();
            match store.job_done(held.lease()).await {
                Ok(true) => {}
                Ok(false) => warn!("lost the reconcile lease during the round; another replica may reconcile again"),
                Err(e) => warn!(error = %e, "cannot record the reconcile round; another replica may reconcile again"),
            }
            held.release().await;
        }
        let next = shared
            .publication()
            .domains
            .values()
            .filter_map(|p| p.next_retry)
            .min();
        let until_reconcile = next_reconcile.saturating_duration_since(tokio::time::Instant::now());
        let sleep = next
            .map_or(until_reconcile, |t| {
                Duration::from_secs(t.saturating_sub(unix_now()).max(1))
            })
            .min(until_reconcile);
        tokio::select! {
            _ = reloads.next() => {}
            _ = shared.publisher_woken() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Whether this replica reconciles now.
enum Reconcile {
    /// Under the "reconcile" lease.
    Ours(Held),
    /// Another replica did within the period, this many seconds ago.
    DoneAgo(u64),
    /// Another replica's round is under way, or the store does not answer (the job waits).
    Elsewhere,
}

/// A reconcile round is one replica's job per period: whoever takes the "reconcile" lease
/// when its period is up, unless the store says another did within the period.
async fn reconcile_lease(shared: &Daemon, period: Duration) -> Reconcile {
    let store = shared.writer.store();
    let ttl = shared.live.load().config.state.lease;
    let held = match store.hold(RECONCILE, ttl).await {
        Ok(Some(h)) => h,
        Ok(None) => {
            info!("reconcile round under way elsewhere (another replica holds its lease)");
            return Reconcile::Elsewhere;
        }
        Err(e) => {
            warn!(error = %e, "reconcile round skipped: the store does not answer");
            return Reconcile::Elsewhere;
        }
    };
    match store.since_done(RECONCILE).await {
        // A second of slack (the store's clock counts whole seconds): replicas' timers fire
        // at nearly the same time.
        Ok(Some(ago)) if ago < period.as_secs().saturating_sub(1).max(1) => {
            info!(
                ago_secs = ago,
                "reconcile round done by another replica within the period"
            );
            held.release().await;
            Reconcile::DoneAgo(ago)
        }
        Ok(_) => {
            info!("reconcile round: reading back every record we own");
            Reconcile::Ours(held)
        }
        Err(e) => {
            warn!(error = %e, "reconcile round skipped: the store does not answer");
            held.release().await;
            Reconcile::Elsewhere
        }
    }
}

/// Brings the table in line with the live config; returns the domains to push now.
fn refresh<'l>(shared: &Daemon, live: &'l Live, now: u64, reconcile: bool) -> Vec<&'l Domain> {
    let mut table = shared.publication();
    let mut due = Vec::new();
    let mut present = std::collections::HashSet::new();
    for d in live.config.domains.iter().chain(&live.withdraw) {
        let Some(provider) = d.dns.provider.as_deref() else {
            continue;
        };
        present.insert(d.name.as_str());
        let key = desired_key(d);
        let entry = table
            .domains
            .entry(d.name.as_str().to_owned())
            .or_insert_with(|| DomainPublication {
                provider: provider.to_owned(),
                zone: d.zone.as_ref().map(|z| z.fqdn()),
                state: PubState::Pending,
                published_id: None,
                last_published: None,
                last_error: None,
                conflicts: Vec::new(),
                attempts: 0,
                next_retry: None,
                last_read: None,
                desired: key,
                published: None,
            });
        if entry.desired != key {
            // A new desired state: push at once, whatever the backoff said.
            entry.desired = key;
            entry.provider = provider.to_owned();
            entry.state = PubState::Pending;
            entry.next_retry = None;
            entry.attempts = 0;
        }
        if (reconcile || entry.published != Some(key)) && entry.next_retry.is_none_or(|t| t <= now)
        {
            due.push(d);
        }
    }
    table
        .domains
        .retain(|name, _| present.contains(name.as_str()));
    due
}

#[allow(clippy::expect_used, reason = "never closed")]
async fn publish(shared: &Daemon, providers: &Providers, due: &[&Domain]) {
    let (targets, unplaced) = sync::targets(due.iter().copied(), providers).await;
    let mut failing = std::collections::BTreeSet::new();
    for u in &unplaced {
        failed(shared, u.domain, None, &u.provider, &u.error);
        if failing.insert((u.provider.as_str(), u.error.code())) {
            warn!(provider = %u.provider, code = u.error.code(), "finding zones failed: {}", u.error);
        }
    }
    // One failed round per provider and error, as for a failed zone update.
    for (provider, code) in failing {
        shared.metrics.dns_update(provider, code);
    }
    let permits = tokio::sync::Semaphore::new(ZONES_IN_PARALLEL);
    let results = futures_util::future::join_all(targets.iter().map(|t| {
        let span = tracing::info_span!("apply", zone = %t.zone, provider = %t.provider_name);
        let permits = &permits;
        async move {
            let _permit = permits.acquire().await.expect("never closed");
            let (held, t) = match zone_lease(shared, t).await {
                Some(taken) => taken,
                None => return None,
            };
            let result = if t.domains.is_empty() {
                Ok(Vec::new())
            } else {
                sync::apply_zone(&t).await
            };
            Some((t, result, held))
        }
        .instrument(span)
    }))
    .await;
    let mut withdrawn = Vec::new();
    let mut leases = Vec::new();
    for (t, result, held) in results.into_iter().flatten() {
        leases.push(held);
        match result {
            Ok(plans) => {
                let changed: usize = plans
                    .iter()
                    .map(|p| p.change.add.len() + p.change.delete.len())
                    .sum();
                if changed > 0 {
                    shared.metrics.dns_update(&t.provider_name, "ok");
                }
                for (d, plan) in t.domains.iter().zip(&plans) {
                    let n = plan.change.add.len() + plan.change.delete.len();
                    if n == 0 {
                        continue;
                    }
                    info!(domain = %d.name, zone = %t.zone, provider = %t.provider_name,
                        changed = n, "{}", outcome(d, &plan.change));
                }
                let now = unix_now();
                let mut table = shared.publication();
                for (d, plan) in t.domains.iter().zip(plans) {
                    if let Some(Retiring::Withdrawing { .. }) = d.retiring {
                        withdrawn.push(crate::state::history::Event::Withdrawn {
                            domain: d.name.shared(),
                            at: now,
                        });
                    }
                    if let Some(p) = table.domains.get_mut(d.name.as_str()) {
                        let key = desired_key(d);
                        if p.published == Some(key) && !plan.change.is_empty() {
                            // Published before, and the read found it changed: a repair.
                            info!(
                                domain = %d.name,
                                zone = %t.zone,
                                removed = plan.change.delete.len(),
                                added = plan.change.add.len(),
                                "repaired records changed behind our back"
                            );
                            shared.metrics.dns_repairs.inc();
                        }
                        p.last_read = Some(now);
                        for c in &plan.conflicts {
                            warn!(domain = %d.name, "{c}");
                        }
                        p.zone = Some(t.zone.clone());
                        p.state = PubState::Published;
                        p.published = Some(desired_key(d));
                        p.published_id = Some(d.policy.id().to_string());
                        p.last_published = Some(now);
                        p.last_error = None;
                        p.conflicts = plan.conflicts;
                        p.attempts = 0;
                        p.next_retry = None;
                    }
                }
            }
            Err(e) => {
                warn!(zone = %t.zone, provider = %t.provider_name, code = e.code(), "publishing failed: {e}");
                shared.metrics.dns_update(&t.provider_name, e.code());
                for d in &t.domains {
                    failed(shared, d, Some(&t.zone), &t.provider_name, &e);
                }
            }
        }
    }
    let flush = !withdrawn.is_empty();
    finish_withdrawals(shared, withdrawn);
    // The next holder of these zones reads the withdrawals from the store, not again from
    // DNS: they are written before the leases go.
    if flush && !shared.writer.flush(FLUSH_WITHDRAWN).await {
        warn!("the store has not taken the withdrawals yet; another replica may record them again");
    }
    for held in leases {
        held.release().await;
    }
}

/// Takes the zone's lease ("zone:<zone>"), so that one replica (or `apply`) writes a zone at
/// a time and the others find nothing left to do. `None`: the zone waits (held elsewhere,
/// or the store does not answer), its domains retried soon. The target returned leaves out
/// retired domains whose withdrawal another replica already recorded.
async fn zone_lease<'c>(shared: &Daemon, t: &sync::Target<'c>) -> Option<(Held, sync::Target<'c>)> {
    let store = shared.writer.store();
    let job = zone_job(&t.zone);
    let ttl = shared.live.load().config.state.lease;
    let held = match store.hold(&job, ttl).await {
        Ok(Some(h)) => h,
        Ok(None) => {
            let holder = store.holder_of(&job).await.ok().flatten();
            let by = holder.map_or_else(|| "another replica".to_owned(), |(h, _)| h);
            info!(zone = %t.zone, holder = %by, "zone being published by {by}; looking again in {ZONE_HELD_RETRY} s");
            wait(shared, &t.domains, ZONE_HELD_RETRY, None);
            return None;
        }
        Err(e) => {
            warn!(zone = %t.zone, error = %e, "zone not published: its lease cannot be taken while the store does not answer");
            wait(
                shared,
                &t.domains,
                STORE_DOWN_RETRY,
                Some(format!("store: {e}")),
            );
            return None;
        }
    };
    let mut domains = t.domains.clone();
    if domains
        .iter()
        .any(|d| matches!(d.retiring, Some(Retiring::Withdrawing { .. })))
    {
        if let Err(e) = store.catch_up(&shared.history).await {
            warn!(zone = %t.zone, error = %e, "zone not published: the store does not answer");
            wait(
                shared,
                &t.domains,
                STORE_DOWN_RETRY,
                Some(format!("store: {e}")),
            );
            held.release().await;
            return None;
        }
        let h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
        let (done, rest): (Vec<&Domain>, Vec<&Domain>) = domains.into_iter().partition(|d| {
            matches!(d.retiring, Some(Retiring::Withdrawing { .. }))
                && h.domain(d.name.as_str())
                    .is_some_and(|dh| dh.withdrawn().is_some())
        });
        drop(h);
        // Its retirement step (woken by the store's follow) drops them from the live state.
        wait(shared, &done, ZONE_HELD_RETRY, None);
        domains = rest;
    }
    Some((
        held,
        sync::Target {
            provider_name: t.provider_name.clone(),
            provider: t.provider.clone(),
            zone: t.zone.clone(),
            domains,
        },
    ))
}

/// Puts `domains` off for `secs` without counting a failed attempt. One published as
/// desired (read again by a reconcile round) is left alone: the round is another's now.
fn wait(shared: &Daemon, domains: &[&Domain], secs: u64, error: Option<String>) {
    let mut table = shared.publication();
    let at = unix_now() + secs;
    for d in domains {
        if let Some(p) = table.domains.get_mut(d.name.as_str()) {
            if p.published == Some(p.desired) {
                continue;
            }
            p.next_retry = Some(at);
            if error.is_some() {
                p.last_error.clone_from(&error);
            }
        }
    }
}

/// Withdrawn records: the domain's retirement is complete.
fn finish_withdrawals(shared: &Daemon, withdrawn: Vec<crate::state::history::Event>) {
    if withdrawn.is_empty() {
        return;
    }
    super::serving::commit(shared, &withdrawn);
    shared.ask_lifecycle_step();
}

fn failed(shared: &Daemon, d: &Domain, zone: Option<&str>, provider: &str, e: &ProviderError) {
    let mut table = shared.publication();
    if let Some(p) = table.domains.get_mut(d.name.as_str()) {
        p.state = PubState::Failed;
        p.provider = provider.to_owned();
        if let Some(z) = zone {
            p.zone = Some(z.to_owned());
        }
        p.attempts += 1;
        p.last_error = Some(format!("{} ({})", e, e.code()));
        p.next_retry = Some(unix_now() + backoff(p.attempts).as_secs().max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_bounded_jitter() {
        for (attempts, base) in [(1u32, 1u64), (2, 2), (3, 4), (9, 256), (10, 300), (40, 300)] {
            let b = backoff(attempts).as_secs_f64();
            assert!(
                b >= base as f64 && b <= base as f64 * 1.2 + 0.001,
                "{attempts}: {b}"
            );
        }
    }
}
