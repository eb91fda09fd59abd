//! DANE publication in `serve`: a round after start, after every reload (a renewed `cert` or
//! `next_key` is a watched file, so it reloads), when a withdrawal or a finding's end is due,
//! and at each `[dns] reconcile`; idle otherwise. Findings go to the log (ERROR) and `/status`.
//! Each round runs under the "dane" lease: one replica at a time writes TLSA records and the
//! memory in the store, and the next holder starts from it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, error, info, warn};

use super::context::Daemon;
use crate::clock::unix_now;
use crate::dane::sync::{held_round, state_error, wanted, Round};
use crate::dns::providers;
use crate::live::Reloads;
use crate::state::store::DANE_JOB;

/// After a round that failed in a way that may pass, the next try.
const RETRY: Duration = Duration::from_secs(30);
/// Another replica holds the "dane" lease: this one's round is tried again after this.
const HELD_RETRY: Duration = Duration::from_secs(5);

pub(crate) struct DaneTask {
    _task: AbortOnDropHandle<()>,
}

impl DaneTask {
    pub(crate) fn start(shared: Arc<Daemon>) -> DaneTask {
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
        if let Some(r) = leased_round(&shared, config).await {
            report(&r);
            if let Some(due) = r.next_due {
                sleep = sleep.min(Duration::from_secs(due.saturating_sub(unix_now()).max(1)));
            }
            if r.retry {
                sleep = sleep.min(RETRY);
            }
            shared.set_dane_round(r);
        } else if !config.dane.is_empty() {
            // Another replica's round: this one's (after its own reload) comes soon after.
            sleep = sleep.min(HELD_RETRY);
        }
        tokio::select! {
            _ = reloads.next() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// A round under the "dane" lease, on the memory the store holds (the last holder's
/// decisions, whichever replica it was), kept in the store with the lease's token. `None`:
/// nothing to do (no `[[dane]]` and nothing left to withdraw), or another replica's round is
/// under way.
async fn leased_round(shared: &Daemon, config: &crate::config::Config) -> Option<Round> {
    let store = shared.writer.store();
    let mut out = Round::default();
    match wanted(config, store).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            state_error(&mut out, e);
            return Some(out);
        }
    }
    let held = match store.hold(DANE_JOB, config.state.lease).await {
        Ok(Some(h)) => h,
        Ok(None) => {
            debug!("DANE round under way elsewhere (another replica holds its lease)");
            return None;
        }
        Err(e) => {
            state_error(&mut out, format!("taking the DANE lease: {e}"));
            return Some(out);
        }
    };
    let providers = providers::all(config);
    Some(held_round(config, &providers, store, held, unix_now()).await)
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
pub(crate) fn status(r: &Round) -> serde_json::Value {
    serde_json::json!({
        "findings": r.findings,
        "errors": r.errors.iter().map(|(h, e)| format!("{h}: {e}")).collect::<Vec<_>>(),
        "next_due": r.next_due.map(crate::clock::rfc3339),
    })
}
