//! DANE publication in `serve`: a round after start, after every reload (a renewed `cert` or
//! `next_key` is a watched file, so it reloads), when a withdrawal or a finding's end is due,
//! and at each `[dns] reconcile`; idle otherwise. Findings go to the log (ERROR) and `/status`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::AbortOnDropHandle;
use tracing::{error, info, warn};

use super::state::Daemon;
use crate::clock::unix_now;
use crate::dane::sync::{round, Round};
use crate::dns::providers;
use crate::live::Reloads;

/// After a round that failed in a way that may pass, the next try.
const RETRY: Duration = Duration::from_secs(30);

pub struct DaneTask {
    _task: AbortOnDropHandle<()>,
}

impl DaneTask {
    pub fn start(shared: Arc<Daemon>) -> DaneTask {
        DaneTask {
            _task: AbortOnDropHandle::new(tokio::spawn(run(shared.clone(), shared.reloads()))),
        }
    }
}

async fn run(shared: Arc<Daemon>, mut reloads: Reloads) {
    loop {
        let live = shared.live.load_full();
        let config = &live.config;
        let mut sleep = config.reconcile;
        let has_memory = crate::dane::memory::path(&config.state.dir).exists();
        if !config.dane.is_empty() || has_memory {
            let providers = providers::all(config);
            let now = unix_now();
            let r = round(config, &providers, true, now).await;
            report(&r);
            if let Some(due) = r.next_due {
                sleep = sleep.min(Duration::from_secs(due.saturating_sub(unix_now()).max(1)));
            }
            if r.retry {
                sleep = sleep.min(RETRY);
            }
            shared.set_dane_round(r);
        }
        tokio::select! {
            _ = reloads.next() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

fn report(r: &Round) {
    for z in &r.zones {
        for d in &z.delete {
            info!(zone = %z.zone, provider = %z.provider, "DANE: withdrew {d}");
        }
        for a in &z.add {
            info!(zone = %z.zone, provider = %z.provider, "DANE: published {a}");
        }
        for c in &z.conflicts {
            warn!(zone = %z.zone, provider = %z.provider, "DANE: {c}");
        }
    }
    for (host, e) in &r.errors {
        warn!(host = %host, "DANE: {e}");
    }
    for f in &r.new_findings {
        error!("DANE: {f}");
    }
}

/// `/status`'s `dane` object.
pub fn status(r: &Round) -> serde_json::Value {
    serde_json::json!({
        "findings": r.findings,
        "errors": r.errors.iter().map(|(h, e)| format!("{h}: {e}")).collect::<Vec<_>>(),
        "next_due": r.next_due.map(crate::clock::rfc3339),
    })
}
