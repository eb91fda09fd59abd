//! Drift: the world as a sending MTA sees it, against what the config wants. Per domain: the
//! `_mta-sts` TXT on every authoritative nameserver, the `mta-sts` host, the TLSRPT record,
//! the policy fetched over HTTPS with its certificate, the MX hosts against the policy, and
//! each MX as a sender connects to it (STARTTLS, its certificate, DANE).
//! A DNS or HTTPS error is "could not check" for that item, never a crash.

pub(crate) mod changes;
pub(crate) mod dane;
pub(crate) mod delegation;
pub(crate) mod dns;
pub(crate) mod fetch;
pub(crate) mod host;
pub(crate) mod mx;
pub(crate) mod report;
pub(crate) mod smtp;
pub(crate) mod starttls;
pub(crate) mod tlsrpt;
pub(crate) mod transport;
pub(crate) mod txt;
pub(crate) mod zones;

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use rustls::ClientConfig;
use tokio::sync::Semaphore;

use crate::config::{Config, Domain};
use crate::state::store::Store;
use dns::Dns;
use report::{Check, DomainReport, Finding, Report, Severity};
use starttls::MxTls;
use zones::Zones;

/// Domains checked at once: enough to hide the round trips of each (a hoster's domains share
/// one resolver and policy host), few enough to bound sockets and memory (a million domains'
/// tasks never exist at once).
pub(crate) const CONCURRENCY: usize = 128;
/// Policy fetches in flight: below the server's default `max_connections_per_ip` (64), which
/// a hoster's own daemon applies to the drift checks too.
const FETCHES: usize = 32;

/// How a round takes the "drift" lease, which makes it the only one across replicas and
/// hand-run commands.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Take {
    /// Wait for a round under way to end, up to this long (a command).
    Wait(std::time::Duration),
    /// Skip the round when another holds it (a replica: the holder's round is this one).
    IfFree,
}

/// Why a round did not run.
#[derive(Debug)]
pub(crate) enum NotRun {
    /// Another replica or command holds the lease.
    Held,
    Store(crate::state::store::StoreError),
}

/// Runs every check for the domains of `only` (all without), under the "drift" lease,
/// against the previous round's findings kept in the store (whoever ran it): `since` carried
/// over, each appearance, change and clearing logged (with `log`) and sent to `[alerts]`
/// once the findings are kept (never when the lease was lost meanwhile). The report returned
/// covers the domains of `only`; with `verbose`, it keeps what each check that passed
/// looked at.
pub(crate) async fn run_tracked(
    config: &Config,
    only: Option<&BTreeSet<String>>,
    store: &Store,
    take: Take,
    stats: &crate::alerts::Stats,
    log: bool,
    verbose: bool,
) -> Result<Report, NotRun> {
    let lease = take_lease(store, take, config.state.lease).await?;
    // Renewed while the checks run (a million domains take a while); dropped at the end.
    let renewing = {
        let (store, lease) = (store.clone(), lease.clone());
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease.ttl() / 3).await;
                if let Ok(false) = store.renew(&lease).await {
                    warn!("lost the drift lease during the round (the store stalled?); its alerts are left to the next holder");
                    return;
                }
            }
        }))
    };
    let previous = previous_findings(config, store).await;
    let mut checked = run(config, only, verbose).await;
    // Events and `since` from this run's domains alone.
    let events = changes::compare(previous.as_ref(), &mut checked, only);
    if log {
        for e in &events {
            let check = e.check.name();
            match e.event {
                changes::Kind::Cleared => {
                    info!(domain = %e.domain, check, "finding cleared: {}", e.message)
                }
                _ => info!(
                    domain = %e.domain,
                    check,
                    severity = e.severity.as_str(),
                    "finding {}: {}",
                    if e.event == changes::Kind::Appeared { "appeared" } else { "changed" },
                    e.message
                ),
            }
        }
    }
    // Kept for the next round: the other domains' findings as they were, no passed checks.
    let kept = match (only, verbose) {
        (None, false) => checked.json(),
        (None, true) => checked.clone().without_passed().json(),
        (Some(only), _) => {
            changes::keep_unchecked(previous.as_ref(), checked.clone().without_passed(), only)
                .json()
        }
    };
    drop(renewing);
    let send = match store
        .save_drift(&lease, &kept, checked.checked_at as i64)
        .await
    {
        Ok(true) => true,
        Ok(false) => {
            warn!("lost the drift lease before keeping the findings: another round took over, and alerts are its to send");
            false
        }
        Err(e) => {
            warn!(error = %e, "cannot keep the drift findings; the next round alerts again");
            true
        }
    };
    if send {
        if let Some(alerts) = &config.alerts {
            match fetch::client_config(config.drift.ca.as_deref()) {
                Ok(tls) => crate::alerts::send(alerts, tls, &events, stats).await,
                Err(e) => warn!(error = %e, "no TLS for the alert webhook"),
            }
        }
    }
    if let Err(e) = store.release(&lease).await {
        warn!(error = %e, "cannot release the drift lease; it expires by itself");
    }
    Ok(checked)
}

async fn take_lease(
    store: &Store,
    take: Take,
    ttl: std::time::Duration,
) -> Result<crate::state::store::Lease, NotRun> {
    let deadline = match take {
        Take::Wait(d) => Some(tokio::time::Instant::now() + d),
        Take::IfFree => None,
    };
    loop {
        match store.acquire("drift", ttl).await {
            Ok(Some(l)) => return Ok(l),
            Ok(None) if deadline.is_some_and(|d| tokio::time::Instant::now() < d) => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Ok(None) => return Err(NotRun::Held),
            Err(e) => return Err(NotRun::Store(e)),
        }
    }
}

/// The findings of the last round: from the store, else from an earlier version's
/// `drift.json` (read, not moved: the store keeps them from now on).
pub(crate) async fn previous_findings(config: &Config, store: &Store) -> Option<Report> {
    match store.drift_findings().await {
        Ok(Some((json, _))) => match serde_json::from_str(&json) {
            Ok(r) => return Some(r),
            Err(e) => {
                warn!(error = %e, "the store's drift findings are unreadable; all count as new")
            }
        },
        Ok(None) => {}
        Err(e) => {
            warn!(error = %e, "cannot read the previous drift findings; all count as new");
            return None;
        }
    }
    match changes::load(&changes::state_path(config)) {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "cannot read the previous drift findings; all count as new");
            None
        }
    }
}

/// Runs every check for the domains of `only` (every domain without); with `verbose`, each
/// domain's report keeps what its passed checks looked at (else dropped as each domain ends:
/// a million domains' would weigh gigabytes).
pub(crate) async fn run(config: &Config, only: Option<&BTreeSet<String>>, verbose: bool) -> Report {
    let now = crate::clock::unix_now();
    let drift = &config.drift;
    let setup = Dns::new(drift.resolver, drift.dns_port).and_then(|dns| {
        // Read once for both (the system's roots take a while to parse).
        let roots = fetch::roots(drift.ca.as_deref())?;
        let mx = match drift.smtp {
            true => Some(MxTls::new(
                smtp::Trust::new(roots.clone())?,
                drift.smtp_port,
                drift.smtp_timeout,
            )),
            false => None,
        };
        Ok((dns, fetch::client_config_with(roots)?, mx))
    });
    let (dns, tls, mx) = match setup {
        Ok(s) => s,
        Err(e) => {
            let domains = config
                .domains
                .iter()
                .map(|d| {
                    DomainReport::new(
                        d.name.to_string(),
                        vec![Finding::new(
                            Severity::Unknown,
                            Check::StsTxt,
                            e.clone(),
                            "fix [drift] in the config",
                        )],
                    )
                })
                .collect();
            return Report::new(now, domains);
        }
    };
    // Older policies senders may still cache, from the id history (read, never written).
    let target = crate::state::store::Target {
        dir: config.state.dir.clone(),
        url: config.state.url.clone(),
        replica: config.state.replica.clone(),
        key: None,
    };
    let history = crate::state::store::read_history(&target)
        .await
        .unwrap_or_else(|_| crate::state::history::History::in_memory());
    let shared = Arc::new(Shared {
        dns,
        tls,
        fetches: Semaphore::new(FETCHES),
        zones: Zones::default(),
        mx,
        https_port: drift.https_port,
        now: now as i64,
    });
    // Each domain a task of its own, so that the runtime's workers share the checks' CPU work
    // (TLS handshakes, parsing) instead of one thread polling every domain's future; at most
    // CONCURRENCY at once (a finished one makes room for the next, no chunk waits for its
    // slowest domain). Aborted when the run is dropped.
    let spawn = |d: &Domain| {
        let (shared, d) = (shared.clone(), d.clone());
        let cached = mx::cached(&history, &d, now);
        AbortOnDropHandle::new(tokio::spawn(async move {
            let mut report = check_domain(&shared, &d, &cached).await;
            if !verbose {
                report.passed = Vec::new();
            }
            report
        }))
    };
    // A loop, not stream adapters over closures: those trip `Send` inference for the spawn of
    // the daemon's drift task.
    let mut running = futures_util::stream::FuturesUnordered::new();
    let mut reports = Vec::new();
    for d in &config.domains {
        if only.is_some_and(|o| !o.contains(d.name.as_str())) {
            continue;
        }
        if running.len() >= CONCURRENCY {
            if let Some(done) = running.next().await {
                reports.push(joined(done));
            }
        }
        running.push(spawn(d));
    }
    while let Some(done) = running.next().await {
        reports.push(joined(done));
    }
    // Sorted by domain here, in whatever order the checks ended.
    Report::new(now, reports)
}

/// A domain task's report; its panic goes on here, as it did before the checks were tasks.
fn joined(done: Result<DomainReport, tokio::task::JoinError>) -> DomainReport {
    match done {
        Ok(report) => report,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only while the runtime shuts down, which drops this run as well.
        Err(e) => DomainReport::new(
            String::new(),
            vec![Finding::new(
                Severity::Unknown,
                Check::StsTxt,
                format!("the checks were stopped: {e}"),
                "run drift again",
            )],
        ),
    }
}

/// The checkers of one run, shared by every domain's task.
struct Shared {
    dns: Dns,
    tls: Arc<ClientConfig>,
    fetches: Semaphore,
    zones: Zones,
    mx: Option<MxTls>,
    https_port: u16,
    now: i64,
}

#[allow(clippy::expect_used, reason = "never closed")]
async fn check_domain(shared: &Shared, d: &Domain, cached: &[mx::Cached]) -> DomainReport {
    let Shared {
        dns,
        tls,
        fetches,
        zones,
        mx,
        https_port,
        now,
    } = shared;
    let (https_port, now, mx) = (*https_port, *now, mx.as_ref());
    // The checks are independent: run together, a domain takes its slowest check's time.
    let sts = async {
        let sts_name = format!("_mta-sts.{}.", d.name);
        // A delegated domain's `_mta-sts` is a CNAME in its owner's zone: the SOA asked at it may
        // come from our zone (or nowhere); the domain's own name is in the owner's zone.
        let zone_of = match d.dns.delegated {
            Some(_) => format!("{}.", d.name),
            None => sts_name.clone(),
        };
        match zones.ns_for(dns, &zone_of).await {
            Ok(ns) => txt::check(dns, d.name.as_str(), &ns, d.policy.id().as_str()).await,
            Err(e) => vec![Finding::new(
                Severity::Unknown,
                Check::StsTxt,
                format!("could not find the nameservers for {sts_name}: {e}"),
                "check the resolver ([drift] resolver) and the zone's delegation",
            )],
        }
    };
    let policy = async {
        let mut findings = Vec::new();
        if let Some(addrs) = host::check(dns, d, &mut findings).await {
            let _p = fetches.acquire().await.expect("never closed");
            findings.extend(fetch::check(tls, d, &addrs, https_port, now).await);
        }
        findings
    };
    let delegated = async {
        match d.dns.delegated {
            Some(_) => delegation::check(dns, d).await,
            None => Vec::new(),
        }
    };
    let mx_hosts = mx::Lookup::default();
    let mx_tls = async {
        match mx {
            Some(mx) => starttls::check(mx, dns, d, &mx_hosts, now).await,
            None => Vec::new(),
        }
    };
    let (sts, policy, tlsrpt, delegated, mx, mx_tls) = tokio::join!(
        sts,
        policy,
        tlsrpt::check(dns, d),
        delegated,
        mx::check(dns, d, cached, &mx_hosts),
        mx_tls
    );
    let findings = [sts, policy, tlsrpt, delegated, mx, mx_tls].concat();
    DomainReport::new(d.name.to_string(), findings)
}
