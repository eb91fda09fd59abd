//! Applies [`crate::lifecycle`] in `serve`: every load (start, reload) and every due step of a
//! retirement builds the served state from the config and the id history, guarded against
//! retiring many domains at once, and records what is served once it is.

use std::sync::Arc;

use tracing::{error, info, warn};

use super::context::Daemon;
use crate::clock::unix_now;
use crate::config::Config;
use crate::lifecycle;
use crate::live::Live;
use crate::state::history::Event;

/// A state ready to swap in, and what to record once it is served.
pub(crate) struct Prepared {
    pub live: Live,
    pub events: Vec<Event>,
    /// At start, the guard's refusal: the removed domains are held, not retired.
    pub held: Option<String>,
    /// Milliseconds spent waiting for the history, evaluating it, building the state.
    pub spent: [u128; 3],
}

/// Builds the served state for `config`. A reload that would retire more than
/// `[state] max_retire` domains, or leave none at all, is refused with the reason.
pub(crate) fn prepare(
    history: &std::sync::Mutex<crate::state::history::History>,
    mut config: Config,
    previous: Option<&Live>,
) -> Result<Prepared, String> {
    let now = unix_now();
    let started = std::time::Instant::now();
    // No I/O under this lock: the store is read and written by tasks of their own.
    let h = history.lock().unwrap_or_else(|e| e.into_inner());
    let locked = started.elapsed().as_millis();
    let before = previous.map(|p| p.config.domains.as_slice());
    let served_before = before.map_or_else(
        || h.domains().filter(|(_, d)| d.current().is_some()).count(),
        |b| b.len(),
    );
    if previous.is_some() && config.domains.is_empty() && served_before > 0 {
        return Err(format!(
            "the config has no domains left (it served {served_before}); refusing it, as a half-written or emptied file would otherwise retire every domain"
        ));
    }
    let mut outcome = lifecycle::evaluate(&config, &h, before, now, false);
    let limit = config.state.max_retire.of(served_before);
    let mut held = None;
    let n = outcome.newly_missing.len() as u64;
    if n > limit {
        let shown: Vec<&str> = outcome
            .newly_missing
            .iter()
            .take(5)
            .map(String::as_str)
            .collect();
        let more = if n > 5 {
            format!(" and {} more", n - 5)
        } else {
            String::new()
        };
        let why = format!(
            "the config would start retiring {n} domains at once ({}{more}), more than [state] max_retire = {}; if this is intended, raise `max_retire` in [state] for this change (or remove the domains in smaller steps)",
            shown.join(", "),
            config.state.max_retire
        );
        if previous.is_some() {
            return Err(why);
        }
        // At start there is no last good config to keep: serve them unchanged, retire none.
        outcome = lifecycle::evaluate(&config, &h, before, now, true);
        held = Some(why);
    }
    drop(h);
    let evaluated = started.elapsed().as_millis();
    config.domains = lifecycle::served(config.domains, std::mem::take(&mut outcome.removed));
    let mut live = Live::build(config, previous)?;
    live.withdraw = outcome.withdraw;
    live.next_deadline = outcome.next_deadline;
    let built = started.elapsed().as_millis();
    Ok(Prepared {
        live,
        events: outcome.events,
        held,
        spent: [locked, evaluated - locked, built - evaluated],
    })
}

/// Records what is now served; logs the retirement steps it contains.
pub(crate) fn commit(shared: &Daemon, events: &[Event]) {
    if note(shared, events) {
        shared.writer.record(events);
    }
}

/// [`commit`] of events the caller no longer needs (the start's: one per domain). The
/// `Served` of the domains now served go to the store's writer as those domains, 8 bytes
/// each, made into events as they are written (the start's million take half a minute);
/// the other events are moved.
pub(crate) fn commit_owned(shared: &Daemon, events: Vec<Event>) {
    if !note(shared, &events) {
        return;
    }
    let live = shared.live.load();
    let domains = &live.config.domains;
    let mut served = ServedFrom {
        domains: Vec::new(),
        at: 0,
    };
    let mut rest = Vec::new();
    // The events name the domains in the config's order (sorted): found by a walk along it.
    let mut walk = 0;
    for e in events {
        if let Event::Served { domain, id, at } = &e {
            while walk < domains.len() && domains[walk].name.as_str() < &**domain {
                walk += 1;
            }
            let same = domains.get(walk).filter(|d| {
                d.name.as_str() == &**domain
                    && d.policy.id().as_str() == &**id
                    && (served.domains.is_empty() || served.at == *at)
            });
            if let Some(d) = same {
                served.at = *at;
                served.domains.push(d.clone());
                continue;
            }
        }
        rest.push(e);
    }
    shared.writer.record_owned(rest);
    shared.writer.record_many(Box::new(served));
}

/// `Served` events of domains since `at`, made from the domains when written.
#[derive(Debug)]
struct ServedFrom {
    domains: Vec<crate::config::Domain>,
    at: u64,
}

impl crate::state::store::Events for ServedFrom {
    fn len(&self) -> usize {
        self.domains.len()
    }

    fn event(&self, i: usize) -> Event {
        let d = &self.domains[i];
        Event::Served {
            domain: d.name.shared(),
            id: d.policy.id().shared(),
            at: self.at,
        }
    }
}

/// Logs the retirement steps in `events` and applies them to the history in memory; false
/// when there are none to write.
fn note(shared: &Daemon, events: &[Event]) -> bool {
    for e in events {
        match e {
            Event::Missing { domain, .. } => info!(
                domain = %domain,
                retire_after = ?shared.live.load().config.state.retire_after,
                "domain removed from the config: served unchanged until its retirement starts"
            ),
            Event::Retired {
                domain,
                withdraw_at,
                ..
            } => {
                // RFC 3339, as /status and `history` give times.
                let withdraw_at = crate::clock::rfc3339(*withdraw_at);
                info!(domain = %domain, %withdraw_at, "retiring: served `mode: none` under a new id (RFC 8461 §8.3)")
            }
            Event::Present { domain, .. } => {
                info!(domain = %domain, "domain back in the config: retirement cancelled")
            }
            Event::Rescheduled {
                domain,
                withdraw_at,
                ..
            } => {
                let withdraw_at = crate::clock::rfc3339(*withdraw_at);
                warn!(domain = %domain, %withdraw_at, "retirement was dated by a clock that jumped (ahead, or behind and since corrected): RFC 8461 §8.3's wait counts again from now")
            }
            Event::Withdrawn { domain, .. } => {
                info!(domain = %domain, "retired domain withdrawn: no longer served")
            }
            _ => {}
        }
    }
    if events.is_empty() {
        return false;
    }
    // In memory at once; the store's writer retries until it has them.
    shared
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .record(events);
    true
}

/// Wakes when a retirement step is due (or when told), and rebuilds the served state from
/// the config already loaded: no file is read.
pub(crate) struct LifecycleTask {
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

impl LifecycleTask {
    pub(crate) fn start(shared: Arc<Daemon>) -> LifecycleTask {
        let mut reloads = shared.reloads();
        let task = tokio::spawn(async move {
            let mut deferred = false;
            loop {
                let due = shared.live.load().next_deadline;
                let mut sleep = due.map_or(std::time::Duration::from_secs(86_400), |t| {
                    std::time::Duration::from_secs(t.saturating_sub(unix_now()))
                });
                if deferred {
                    // Not sooner, even when the deadline has passed: the holder steps now.
                    sleep = STEP_HELD_RETRY;
                }
                // A wake-up means a new state (its deadline is read again above) or a
                // finished withdrawal (a step is asked for).
                tokio::select! {
                    _ = tokio::time::sleep(sleep) => {}
                    _ = reloads.next() => {}
                    _ = shared.lifecycle_woken() => {}
                }
                let asked = shared.take_lifecycle_step();
                let due = shared.live.load().next_deadline;
                if asked || deferred || due.is_some_and(|t| t <= unix_now()) {
                    deferred = step(&shared).await == Step::Deferred;
                }
            }
        });
        LifecycleTask {
            _task: tokio_util::task::AbortOnDropHandle::new(task),
        }
    }
}

/// The lease of retirement steps: one replica records a step, the others read it from the
/// store (its follow wakes their step, which then finds nothing left to record).
const RETIRE: &str = "retire";
/// A step another replica holds (or the store cannot be asked about) is tried again after
/// this: the store's follow has brought the holder's events by then.
const STEP_HELD_RETRY: std::time::Duration = std::time::Duration::from_secs(2);
/// How long the store may take a step's events before its lease goes.
const FLUSH_STEP: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Done,
    /// Another replica holds the step's lease, or the store does not answer: tried again.
    Deferred,
}

/// Re-evaluates the live config's own domains against the history now. A step that records
/// something (a retirement started, rescheduled) is taken under the "retire" lease.
async fn step(shared: &Arc<Daemon>) -> Step {
    // Taken once a step has something to record, without the swap lock (the store may be
    // slow: reloads must not wait on it); then the state is built again on the history the
    // catch-up read made.
    let mut held: Option<crate::state::store::Held> = None;
    loop {
        let swap = shared.hold_swap().await;
        let p = match build_step(shared).await {
            Some(p) => p,
            None => return Step::Done,
        };
        if p.events.is_empty() {
            shared.live.store(Arc::new(p.live));
            shared.wake_publisher();
            drop(swap);
            if let Some(h) = held {
                h.release().await;
            }
            return Step::Done;
        }
        if let Some(h) = held.take() {
            if h.lost() {
                drop(swap);
                return Step::Deferred;
            }
            shared.live.store(Arc::new(p.live));
            shared.wake_publisher();
            commit(shared, &p.events);
            drop(swap);
            // The next holder reads these from the store: written before the lease goes.
            if !shared.writer.flush(FLUSH_STEP).await {
                warn!("the store has not taken the retirement step yet; another replica may step again");
            }
            h.release().await;
            return Step::Done;
        }
        drop(swap);
        let store = shared.writer.store();
        let ttl = p.live.config.state.lease;
        drop(p);
        let h = match store.hold(RETIRE, ttl).await {
            Ok(Some(h)) => h,
            Ok(None) => {
                info!("retirement step taken by another replica; following it through the store");
                return Step::Deferred;
            }
            Err(e) => {
                warn!(error = %e, "retirement step waits: the store does not answer");
                return Step::Deferred;
            }
        };
        // The previous holder's events may have reached the store after this replica's
        // last read: they are read before stepping again.
        if let Err(e) = store.catch_up(&shared.history).await {
            warn!(error = %e, "retirement step waits: the store does not answer");
            h.release().await;
            return Step::Deferred;
        }
        held = Some(h);
    }
}

/// The live config's own domains evaluated against the history now, with the events a step
/// records; `None`: it could not be built (logged).
async fn build_step(shared: &Arc<Daemon>) -> Option<Prepared> {
    let s = shared.clone();
    let built = tokio::task::spawn_blocking(move || {
        let previous = s.live.load_full();
        let mut config = previous.config.clone();
        config.domains.retain(|d| d.retiring.is_none());
        prepare(&s.history, config, Some(&previous))
    })
    .await;
    let mut p = match built {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            warn!("retirement step: {e}");
            return None;
        }
        Err(e) => {
            error!("retirement step: {e}");
            return None;
        }
    };
    // A step moves retirements on; what the config's own domains are was recorded by the
    // load that brought the config. Another replica's events wake this step too: a replica
    // whose config is older (a rollout under way) must not answer them with its own view
    // (`present`, its ids), or the two would undo each other.
    p.events.retain(|e| match e {
        Event::Policy { .. }
        | Event::Retired { .. }
        | Event::Rescheduled { .. }
        | Event::Withdrawn { .. } => true,
        Event::Served { domain, .. } => p
            .live
            .served(domain)
            .is_none_or(|(d, _)| d.retiring.is_some()),
        Event::Missing { .. } | Event::Present { .. } | Event::Entry(_) => false,
    });
    Some(p)
}
