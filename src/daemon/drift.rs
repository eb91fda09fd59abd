//! Drift checks in `serve`: once shortly after start, then every `[drift] interval`; the report
//! is kept for `/status` and metrics and written atomically to `[drift] report`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use super::state::Shared;
use crate::drift::report::{Report, Severity};

/// The first run waits this long, so the listeners answer before we ask them.
const FIRST_RUN_DELAY: Duration = Duration::from_secs(1);

/// Aborts the checks when dropped (at shutdown).
pub struct DriftTask {
    _task: AbortOnDropHandle<()>,
}

impl DriftTask {
    pub fn start(shared: Arc<Shared>) -> DriftTask {
        DriftTask {
            _task: AbortOnDropHandle::new(tokio::spawn(run(shared))),
        }
    }
}

/// Follows the live config: a `[drift]` section added by a reload starts the checks, a
/// changed interval reschedules them, a removed section stops them.
async fn run(shared: Arc<Shared>) {
    let mut last_run: Option<tokio::time::Instant> = None;
    loop {
        let live = shared.live.load_full();
        let drift = &live.config.drift;
        if !drift.enabled {
            shared.drift_wake.notified().await;
            continue;
        }
        let wait = match last_run {
            None => FIRST_RUN_DELAY,
            Some(at) => drift.interval.saturating_sub(at.elapsed()),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // A reload: look at the (maybe changed) section again.
            _ = shared.drift_wake.notified() => continue,
        }
        last_run = Some(tokio::time::Instant::now());
        check_once(&shared, &live).await;
    }
}

async fn check_once(shared: &Shared, live: &crate::live::Live) {
    let previous = shared
        .drift
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let before = alert_counts(&shared.alerts);
    let report =
        crate::drift::run_tracked(&live.config, None, previous, &shared.alerts, true, false).await;
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
    m.drift_last_run.set(report.checked_at as i64);
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
    *shared.drift.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(report));
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
pub fn for_domain<'r>(
    report: &'r Report,
    domain: &str,
) -> Option<&'r crate::drift::report::DomainReport> {
    report
        .domains
        .binary_search_by(|d| d.domain.as_str().cmp(domain))
        .ok()
        .map(|i| &report.domains[i])
}
