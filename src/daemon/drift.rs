//! Drift checks in `serve`: once shortly after start, then every `[drift] interval`; the report
//! is kept for `/status` and metrics and written atomically to `[drift] report`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::state::Shared;
use crate::drift::report::{Report, Severity};

/// The first run waits this long, so the listeners answer before we ask them.
const FIRST_RUN_DELAY: Duration = Duration::from_secs(1);

pub struct DriftTask {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DriftTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DriftTask {
    pub fn start(shared: Arc<Shared>) -> DriftTask {
        DriftTask {
            task: tokio::spawn(run(shared)),
        }
    }
}

async fn run(shared: Arc<Shared>) {
    tokio::time::sleep(FIRST_RUN_DELAY).await;
    loop {
        let live = shared.live.load_full();
        let report = crate::drift::run(&live.config).await;
        info!(
            status = report.status.as_str(),
            critical = report.counts.critical,
            warning = report.counts.warning,
            unknown = report.counts.unknown,
            "drift checked"
        );
        if let Some(path) = &live.config.drift.report {
            if let Err(e) = write_atomically(path, report.json().as_bytes()) {
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
        *shared.drift.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(report));
        tokio::time::sleep(live.config.drift.interval).await;
    }
}

/// Temp file in the same directory, then rename: readers never see half a report.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map_or("drift".into(), |n| n.to_string_lossy())
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
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
