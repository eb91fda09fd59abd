//! What the ACME task does with each attempt's outcome: the certificate installed and shown,
//! a failure backed off, the CA's `Retry-After` waited out (one name, or every name), and a
//! name that left the config forgotten.

use std::sync::Arc;

use tracing::{info, warn};

use super::{Run, LEASE_RECHECK, STORE_RECHECK};
use crate::acme::attempt::Outcome;
use crate::acme::store::StoredCert;
use crate::acme::{cert_label, throttle, AcmeError, CertState, NameStatus, Throttle};
use crate::clock::{rfc3339, unix_now};
use crate::state::store::CertRow;

impl Run {
    pub(super) fn finish(&mut self, name: Arc<str>, outcome: Outcome) {
        if !self.names.contains_key(&name) {
            return; // left the config meanwhile
        }
        // The server's request to wait is written at once (a restart must not forget it).
        let throttled = matches!(outcome, Outcome::Failed(AcmeError::Throttled(_)));
        self.persist.mark(throttled);
        let now = unix_now();
        if matches!(outcome, Outcome::Loaded(_) | Outcome::Issued(_)) {
            self.order_after.remove(&name);
            self.throttled.remove(&name);
            self.urgent.remove(&name);
        }
        if matches!(
            outcome,
            Outcome::Loaded(_)
                | Outcome::Waiting
                | Outcome::Failed(AcmeError::Busy(_) | AcmeError::Throttled(_))
        ) {
            // No order was placed: its slot is free again.
            if let Some(i) = self.orders.iter().rposition(|(_, n)| *n == name) {
                self.orders.remove(i);
            }
        }
        match outcome {
            Outcome::Waiting => {
                let after = self.order_after.get(&name).copied().unwrap_or(now);
                self.schedule(&name, after.min(now + STORE_RECHECK.as_secs()));
            }
            Outcome::Loaded(c) => {
                self.install(&name, &c, None);
                self.schedule(&name, (c.renew_at() as u64).max(now + 1));
            }
            Outcome::Issued(c) => {
                self.shared.metrics.acme_order("ok");
                info!(name = %name, not_after = c.not_after, "ACME certificate installed");
                self.install(&name, &c, Some(now));
                if c.fresh(now as i64) {
                    self.schedule(&name, c.renew_at() as u64);
                } else {
                    // Ordering again at once would only repeat this, into the CA's limits.
                    let e = AcmeError::Refused(
                        "the CA issued a certificate already due for renewal".into(),
                    );
                    self.back_off(name, e);
                }
            }
            Outcome::Failed(AcmeError::Busy(why)) => {
                let due = now + LEASE_RECHECK.as_secs();
                self.update(&name, |s| {
                    s.state = if s.not_after.is_some() {
                        CertState::Valid
                    } else {
                        CertState::Pending
                    };
                    s.detail = Some(why);
                    s.next_attempt = Some(due);
                });
                self.schedule(&name, due);
            }
            Outcome::Failed(AcmeError::Throttled(t)) => self.throttle(name, t),
            Outcome::Failed(e) => {
                self.shared.metrics.acme_order("error");
                self.back_off(name, e);
            }
        }
    }

    /// The server asked us to wait: not counted as a failure (no escalating backoff, no
    /// `attempts`); the name orders again once `Retry-After` has passed — every name, for an
    /// account-wide limit — and `/status` says until when and why.
    pub(super) fn throttle(&mut self, name: Arc<str>, t: Throttle) {
        let now = unix_now();
        let in_row = self.throttled.entry(name.clone()).or_default();
        *in_row += 1;
        let until = match t.until {
            Some(u) => u.clamp(now + 1, now + throttle::MAX_WAIT.as_secs()),
            // No Retry-After we could read: our own backoff.
            None => now + AcmeError::Throttled(t.clone()).backoff(*in_row).as_secs(),
        };
        self.shared.metrics.acme_order("throttled");
        warn!(name = %name, account_wide = t.account_wide, until = %rfc3339(until),
            "ACME server asks to wait: {}", t.why);
        let whom = if t.account_wide {
            "every name"
        } else {
            "this name"
        };
        let detail = format!(
            "the ACME server asks to wait until {} ({whom}): {}",
            rfc3339(until),
            t.why
        );
        self.order_after.insert(name.clone(), until);
        if t.account_wide {
            let until = self.paused.as_ref().map_or(until, |(p, _)| (*p).max(until));
            self.show_paused(until, &detail);
            self.pause(Some((until, detail.clone())));
        }
        self.schedule(&name, until.min(now + STORE_RECHECK.as_secs()));
        self.show_wait(&name, until, &detail);
    }

    /// An account-wide pause until `until`: every name due before then waits as well;
    /// later ones are not affected.
    pub(super) fn show_paused(&self, until: u64, detail: &str) {
        let waiting: Vec<Arc<str>> = self
            .queue
            .iter()
            .take_while(|(due, _)| *due < until)
            .map(|(_, n)| n.clone())
            .collect();
        for n in waiting {
            self.show_wait(&n, until, detail);
        }
    }

    pub(super) fn show_wait(&self, name: &str, until: u64, detail: &str) {
        self.update(name, |s| {
            if s.state != CertState::Valid {
                s.state = CertState::Queued;
            }
            s.detail = Some(detail.to_owned());
            s.next_attempt = Some(s.next_attempt.map_or(until, |t| t.max(until)));
        });
    }

    pub(super) fn pause(&mut self, pause: Option<(u64, String)>) {
        *self
            .shared
            .acme
            .pause
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = pause.clone();
        self.paused = pause;
    }

    /// Records a failure and schedules the next order after the backoff; the store is still
    /// read every [`STORE_RECHECK`] meanwhile.
    pub(super) fn back_off(&mut self, name: Arc<str>, e: AcmeError) {
        let now = unix_now();
        let failures = self.status_attempts(&name) + 1;
        let delay = e.backoff(failures);
        let after = now + delay.as_secs().max(1);
        self.order_after.insert(name.clone(), after);
        warn!(name = %name, kind = e.kind(), failures, retry_in = ?delay, "ACME: {e}");
        self.update(&name, |s| {
            s.state = CertState::Failed;
            s.attempts = failures;
            s.last_error = Some(e.to_string());
            s.detail = None;
        });
        self.schedule(&name, after.min(now + STORE_RECHECK.as_secs()));
    }

    pub(super) fn schedule(&mut self, name: &Arc<str>, due: u64) {
        self.names.insert(name.clone(), Some(due));
        self.queue.insert((due, name.clone()));
        // What `/status` calls the next attempt is the next order, not a look at the store.
        let next = self.order_after.get(name).map_or(due, |t| due.max(*t));
        self.update(name, |s| s.next_attempt = Some(next));
    }

    /// Serves `c` for `name` and records it; `issued` when this replica just ordered it.
    pub(super) fn install(&self, name: &str, c: &StoredCert, issued: Option<u64>) {
        let acme = &self.shared.acme;
        acme.set_cert(name, Some(c.key.clone()));
        self.shared
            .metrics
            .cert_expiry
            .get_or_create(&cert_label(name))
            .set(c.not_after);
        let fresh = c.fresh(unix_now() as i64);
        self.update(name, |s| {
            s.state = CertState::Valid;
            s.not_after = Some(c.not_after);
            s.renew_at = Some(c.renew_at());
            if issued.is_some() {
                s.last_issued = issued;
            }
            if fresh {
                s.attempts = 0;
                s.last_error = None;
            }
            s.detail = None;
        });
    }

    pub(super) fn forget(&self, name: &str) {
        let acme = &self.shared.acme;
        acme.set_cert(name, None);
        acme.status_map().remove(name);
        self.shared.metrics.cert_expiry.remove(&cert_label(name));
    }

    pub(super) fn update(&self, name: &str, f: impl FnOnce(&mut NameStatus)) {
        let mut map = self.shared.acme.status_map();
        f(map.entry(name.to_owned()).or_default());
    }

    pub(super) fn status_attempts(&self, name: &str) -> u32 {
        self.shared
            .acme
            .status_map()
            .get(name)
            .map_or(0, |s| s.attempts)
    }
}

impl Run {
    /// A certificate written to the store (by another replica, or by this one): served here
    /// at once if it is for one of our names and newer than what is served; the name's next
    /// look moves to its renewal point.
    pub(super) fn followed(&mut self, row: CertRow) {
        let Some((name, due)) = self
            .names
            .get_key_value(row.name.as_str())
            .map(|(n, d)| (n.clone(), *d))
        else {
            return;
        };
        let served = self.shared.acme.status(&name).not_after;
        if served.is_some_and(|t| t >= row.not_after) {
            return;
        }
        let c = match StoredCert::from_row(&row) {
            Ok(c) => c,
            Err(e) => {
                warn!(name = %name, "ignoring the stored certificate: {e}");
                return;
            }
        };
        let now = unix_now();
        info!(name = %name, replica = %row.replica, not_after = c.not_after, "ACME certificate from the store installed");
        self.install(&name, &c, None);
        if !c.fresh(now as i64) {
            return;
        }
        self.order_after.remove(&name);
        self.throttled.remove(&name);
        self.urgent.remove(&name);
        self.persist.mark(false);
        // A name being looked at now keeps its attempt, which finds this in the store.
        if let Some(due) = due {
            self.queue.remove(&(due, name.clone()));
            self.schedule(&name, c.renew_at() as u64);
        }
    }
}
