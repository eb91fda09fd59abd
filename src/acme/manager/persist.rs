//! The task's side of [`crate::acme::limits`]: what it writes (its orders of the hour, the
//! server's pause, each name's wait, the on-demand names) and when, and what it takes back
//! at start or when `[acme]` points elsewhere.
//!
//! An order's start is written before the order is sent, and the server's request to wait as
//! soon as it comes (a crash right after either is the case that matters); everything else
//! at most once per [`SAVE_EVERY`], so that a storm of fast failures is not a storm of writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::Run;
use crate::acme::limits::{self, Limits, NameWait, Stored, HOUR};
use crate::acme::CertState;
use crate::clock::{rfc3339, unix_now};
use crate::config;

/// Changes other than order starts and the server's waits are written at most this often.
pub(super) const SAVE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(super) struct Persist {
    /// The ACME directory URL whose limits these are (the store's row).
    directory: Option<String>,
    /// Ours in the document; new for every process.
    owner: u64,
    dirty: bool,
    urgent: bool,
    last_write: Option<Instant>,
    /// What the store held after our last write or read: the other writers' orders count in
    /// our hour.
    last: Limits,
    /// The last write failed (logged once until one succeeds again).
    failing: bool,
}

impl Default for Persist {
    fn default() -> Self {
        Persist {
            directory: None,
            owner: limits::owner(),
            dirty: false,
            urgent: false,
            last_write: None,
            last: Limits::default(),
            failing: false,
        }
    }
}

impl Persist {
    /// Something worth keeping changed; `urgent`: write before anything else is sent.
    pub(super) fn mark(&mut self, urgent: bool) {
        self.dirty = true;
        self.urgent |= urgent;
    }

    /// When the task must wake up to write what changed.
    pub(super) fn due_in(&self) -> Option<Duration> {
        if !self.dirty || self.directory.is_none() {
            return None;
        }
        Some(
            self.last_write
                .map_or(Duration::ZERO, |t| SAVE_EVERY.saturating_sub(t.elapsed())),
        )
    }

    /// The other writers' orders (an earlier run's included) in the hour before `now`.
    pub(super) fn others(&self, now: u64) -> impl Iterator<Item = u64> + '_ {
        self.last
            .orders
            .iter()
            .filter(move |o| o.owner != self.owner && o.at + HOUR > now)
            .map(|o| o.at)
    }
}

impl Run {
    /// Writes what changed, if it is time (see the module's doc).
    pub(super) async fn save(&mut self) {
        let Some(directory) = self.persist.directory.clone() else {
            return;
        };
        let due = self.persist.due_in().is_some_and(|d| d.is_zero());
        if !(due || self.persist.dirty && self.persist.urgent) {
            return;
        }
        let ours = self.snapshot();
        let (me, last, wanted) = (
            self.persist.owner,
            self.persist.last.clone(),
            self.wanted.clone(),
        );
        let now = unix_now();
        let written = self
            .keep
            .store
            .merge_acme_limits(&directory, |stored| {
                limits::merge_stored(stored, me, ours, &last, &wanted, now)
            })
            .await;
        let p = &mut self.persist;
        p.dirty = false;
        p.urgent = false;
        p.last_write = Some(Instant::now());
        match written {
            Ok(merged) => {
                p.failing = false;
                let theirs = merged.pause.clone();
                p.last = merged;
                // Another writer's pause (the same account): ours too, if it is later.
                if let Some(t) = theirs {
                    if self.paused.as_ref().is_none_or(|(u, _)| *u < t.until) {
                        self.pause(Some((t.until, t.why)));
                    }
                }
            }
            Err(e) => {
                if !p.failing {
                    warn!("cannot write the ACME limits to the store: {e}");
                }
                p.failing = true;
                p.dirty = true;
            }
        }
    }

    /// All this process knows, as the store keeps it; at most [`limits::MAX_NAMES`] names,
    /// those waiting longest.
    fn snapshot(&self) -> Limits {
        let me = self.persist.owner;
        let mut waits: Vec<(&Arc<str>, u64)> =
            self.order_after.iter().map(|(n, t)| (n, *t)).collect();
        if waits.len() > limits::MAX_NAMES {
            waits.select_nth_unstable_by(limits::MAX_NAMES, |a, b| b.1.cmp(&a.1));
            waits.truncate(limits::MAX_NAMES);
        }
        let status = self.shared.acme.status_map();
        let names = waits
            .into_iter()
            .map(|(name, until)| {
                let s = status.get(&**name);
                NameWait {
                    name: name.to_string(),
                    owner: me,
                    until,
                    attempts: s.map_or(0, |s| s.attempts),
                    throttled: self.throttled.get(name).copied().unwrap_or(0),
                    error: s.and_then(|s| s.last_error.clone()),
                    detail: s.and_then(|s| s.detail.clone()),
                }
            })
            .collect();
        Limits {
            orders: self
                .orders
                .iter()
                .map(|(at, name)| limits::Order {
                    at: *at,
                    name: name.to_string(),
                    owner: me,
                })
                .collect(),
            pause: self
                .paused
                .clone()
                .map(|(until, why)| limits::Pause { until, why }),
            names,
            demands: self
                .urgent
                .iter()
                .map(|n| limits::Demand {
                    name: n.to_string(),
                    owner: me,
                })
                .collect(),
            ..Limits::default()
        }
    }

    /// Reads back the limits of `cfg`'s account from the store: the hour's orders and the
    /// pause take effect at once; the names' waits are returned, for [`Run::restore_wait`] as
    /// each name is added. A damaged document is logged (a copy kept beside it, under
    /// `<directory>#damaged`) and taken as a full hour (`orders_per_hour` orders as of now):
    /// we cannot know how many there were, and the CA punishes more than we lose by waiting.
    pub(super) async fn restore(&mut self, cfg: &config::Acme) -> HashMap<String, NameWait> {
        // The same owner: what this process wrote there before is its own, not another's.
        self.persist = Persist {
            directory: Some(cfg.directory.clone()),
            owner: self.persist.owner,
            ..Persist::default()
        };
        let now = unix_now();
        let read = match self.keep.store.acme_limits(&cfg.directory).await {
            Ok(None) => Stored::Missing,
            Ok(Some(text)) => match limits::parse(text.as_bytes()) {
                Ok(l) => Stored::Found(l),
                Err(why) => {
                    let aside = format!("{}#damaged", cfg.directory);
                    let _ = self
                        .keep
                        .store
                        .merge_acme_limits(&aside, |_| (text.clone(), ()))
                        .await;
                    Stored::Damaged { why, written: now }
                }
            },
            // No order goes out without the store either (the lease is in it).
            Err(e) => {
                warn!("ACME: cannot read the limits from the store: {e}");
                Stored::Missing
            }
        };
        let mut waits: HashMap<String, NameWait> = HashMap::new();
        match read {
            Stored::Missing => {}
            Stored::Found(l) => {
                for n in l.names.iter().filter(|n| self.wanted.contains(&n.name)) {
                    match waits.get(&n.name) {
                        Some(have) if have.until >= n.until => {}
                        _ => {
                            waits.insert(n.name.clone(), n.clone());
                        }
                    }
                }
                for d in l.demands.iter().filter(|d| self.wanted.contains(&d.name)) {
                    self.urgent.insert(d.name.as_str().into());
                }
                if let Some(p) = l.pause.clone().filter(|p| p.until > now) {
                    self.pause(Some((p.until, p.why)));
                }
                self.persist.last = l;
                let orders = self.persist.others(now).count();
                info!(directory = %cfg.directory, orders, waiting = waits.len(),
                    paused_until = ?self.paused.as_ref().map(|(t, _)| rfc3339(*t)),
                    "ACME: the CA's limits as the last run left them");
            }
            Stored::Damaged { why, written } => {
                error!(directory = %cfg.directory,
                    "ACME: the limits in the store are unreadable ({why}), a copy kept as \
                     `<directory>#damaged`; taking the hour up to {} as used up",
                    rfc3339(written));
                let unknown: Arc<str> = Arc::from("");
                for _ in 0..cfg.orders_per_hour.unwrap_or(0) {
                    self.orders.push_back((written, unknown.clone()));
                }
                self.persist.mark(true);
            }
        }
        waits
    }

    /// A name's wait as the last run left it, for a name without a fresh certificate.
    pub(super) fn restore_wait(&mut self, name: &Arc<str>, w: NameWait) {
        // Kept even when over: the failures in a row still escalate the next backoff.
        self.order_after.insert(name.clone(), w.until);
        if w.throttled > 0 {
            self.throttled.insert(name.clone(), w.throttled);
        }
        let has_cert = self.has_cert(name);
        let waiting = w.until > unix_now();
        self.update(name, |s| {
            if !has_cert && waiting {
                s.state = if w.detail.is_some() {
                    CertState::Queued
                } else {
                    CertState::Failed
                };
            }
            s.attempts = w.attempts;
            s.last_error = w.error;
            s.detail = w.detail.filter(|_| waiting);
        });
    }
}
