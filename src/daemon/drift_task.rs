//! Drift checks in `serve`: once shortly after start, then every `[drift] interval`; the report
//! is kept for `/status` and metrics and written atomically to `[drift] report`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use super::context::Daemon;
use crate::drift::report::{Report, Severity};
use crate::drift::{NotRun, Take};
use crate::live::Reloads;

/// The first run waits this long, so the listeners answer before we ask them.
const FIRST_RUN_DELAY: Duration = Duration::from_secs(1);

/// Aborts the checks when dropped (at shutdown).
pub(crate) struct DriftTask {
    _task: AbortOnDropHandle<()>,
}

impl DriftTask {
    pub(crate) fn start(shared: Arc<Daemon>) -> DriftTask {
        DriftTask {
            _task: AbortOnDropHandle::new(tokio::spawn(run(shared.clone(), shared.reloads()))),
        }
    }
}

/// Follows the live config: a `[drift]` section added by a reload starts the checks, a
/// changed interval reschedules them, a removed section stops them.
async fn run(shared: Arc<Daemon>, mut reloads: Reloads) {
    let mut last_run: Option<tokio::time::Instant> = None;
    loop {
        let live = shared.live.load_full();
        let drift = &live.config.drift;
        if !drift.enabled {
            reloads.next().await;
            continue;
        }
        let wait = match last_run {
            None => FIRST_RUN_DELAY,
            Some(at) => drift.interval.saturating_sub(at.elapsed()),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // A reload: look at the (maybe changed) section again.
            _ = reloads.next() => continue,
        }
        last_run = Some(tokio::time::Instant::now());
        check_once(&shared, &live).await;
    }
}

async fn check_once(shared: &Daemon, live: &crate::live::Live) {
    let store = shared.writer.store();
    // Another replica (or a command) ran this round lately: its findings are this one's.
    if let Some(report) = fresh_elsewhere(store, live).await {
        shared.set_drift_report(report);
        return;
    }
    let before = alert_counts(&shared.alerts);
    let report = match crate::drift::run_tracked(
        &live.config,
        None,
        store,
        Take::IfFree,
        &shared.alerts,
        true,
        false,
    )
    .await
    {
        Ok(r) => r,
        Err(NotRun::Held) => {
            info!("drift round under way elsewhere (another replica or a command holds its lease)");
            return;
        }
        Err(NotRun::Store(e)) => {
            warn!(error = %e, "drift round skipped: the store does not answer, and without it two replicas would alert twice");
            return;
        }
    };
    let after = alert_counts(&shared.alerts);
    for (i, result) in ["delivered", "retried", "failed", "dropped"]
        .into_iter()
        .enumerate()
    {
        shared.metrics.alerts(result, after[i] - before[i]);
    }
    info!(
        status = report.status.as_str(),
        critical = report.counts.critical,
        warning = report.counts.warning,
        unknown = report.counts.unknown,
        "drift checked"
    );
    if let Some(path) = &live.config.drift.report {
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| crate::state::write_atomic(path, report.json().as_bytes()));
        if let Err(e) = written {
            warn!(path = %path.display(), error = %e, "cannot write the drift report");
        }
    }
    let m = &shared.metrics;
    for (severity, n) in [
        (Severity::Critical, report.counts.critical),
        (Severity::Warning, report.counts.warning),
        (Severity::Unknown, report.counts.unknown),
    ] {
        m.drift_findings(severity.as_str(), n);
    }
    let mut by_state = [0usize; 4];
    for d in &report.domains {
        by_state[d.dns_state() as usize] += 1;
    }
    for s in [
        Severity::Ok,
        Severity::Warning,
        Severity::Unknown,
        Severity::Critical,
    ] {
        m.domains_by_dns_state(s.as_str(), by_state[s as usize]);
    }
    // Last: a scrape that sees this run's time sees its findings too (a rule or a test that
    // waits for the time reads the gauges next).
    m.drift_last_run.set(report.checked_at as i64);
    shared.set_drift_report(report);
}

/// The stored findings when they were checked less than half an interval ago (by the
/// store's clock): a round run meanwhile by another replica or a command.
async fn fresh_elsewhere(
    store: &crate::state::store::Store,
    live: &crate::live::Live,
) -> Option<Report> {
    let (json, checked_at) = store.drift_findings().await.ok()??;
    let now = store.now().await.ok()?;
    let half = live.config.drift.interval.as_secs() / 2;
    (u64::try_from(checked_at).ok()?.saturating_add(half) > now)
        .then(|| serde_json::from_str(&json).ok())
        .flatten()
}

fn alert_counts(s: &crate::alerts::Stats) -> [u64; 4] {
    use std::sync::atomic::Ordering::Relaxed;
    [
        s.delivered.load(Relaxed),
        s.retried.load(Relaxed),
        s.failed.load(Relaxed),
        s.dropped.load(Relaxed),
    ]
}

/// The last report's entry for one domain.
pub(crate) fn for_domain<'r>(
    report: &'r Report,
    domain: &str,
) -> Option<&'r crate::drift::report::DomainReport> {
    report
        .domains
        .binary_search_by(|d| d.domain.as_str().cmp(domain))
        .ok()
        .map(|i| &report.domains[i])
}
