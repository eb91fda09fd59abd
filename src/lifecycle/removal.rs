//! One removed domain on its way out (RFC 8461 §8.3): served unchanged through the grace of
//! `[state] retire_after`, then `mode: none` under a new id until the longest `max_age` it
//! published has passed, then withdrawn.

use std::sync::Arc;

use super::{NewBodies, Outcome};
use crate::certs::Coverage;
use crate::config::{CertSource, Config, DnsSettings, Domain, Resolved, Retiring};
use crate::name::DomainName;
use crate::policy::{Mode, Policy};
use crate::rua::Rua;
use crate::state::history::{DomainHistory, Event, History, SavedDns};

/// What one evaluation knows, for each removed domain.
pub(super) struct Removal<'a> {
    pub(super) config: &'a Config,
    pub(super) history: &'a History,
    pub(super) previous: Option<&'a [Domain]>,
    pub(super) coverage: &'a Coverage,
    pub(super) now: u64,
    pub(super) hold: bool,
}

impl Removal<'_> {
    /// One removed domain on its way out: the domain to serve while it is, or `None` (its
    /// records due to be withdrawn are in `out`).
    pub(super) fn removed(
        &self,
        name: &str,
        h: &DomainHistory,
        out: &mut Outcome,
        bodies: &mut NewBodies<'_>,
    ) -> Option<Domain> {
        let Removal {
            config,
            history,
            previous,
            coverage,
            now,
            hold,
        } = *self;
        let last = h.served().last()?;
        let policy = Policy::parse(history.body(&last.id)?.as_bytes()).ok()?;
        let Ok((dname, _)) = DomainName::parse(name) else {
            return None;
        };
        let before = previous.and_then(|p| {
            p.binary_search_by(|d| d.name.as_str().cmp(name))
                .ok()
                .map(|i| &p[i])
        });
        let (since, saved) = match h.missing() {
            Some((since, saved)) => (*since, saved.clone()),
            None if hold => {
                // Served unchanged; its retirement waits for a config that passes the guard.
                return Some(domain(
                    config,
                    coverage,
                    dname,
                    policy,
                    &saved_of(before, config),
                    Retiring::Held,
                ));
            }
            None => {
                let saved = saved_of(before, config);
                out.newly_missing.push(name.to_owned());
                out.events.push(Event::Missing {
                    domain: name.into(),
                    at: now,
                    dns: Box::new(saved.clone()),
                });
                (now, saved)
            }
        };
        // A removal recorded ahead of the clock (it ran ahead, and was corrected): when it
        // really happened is unknown but past, so the grace of `retire_after` is over.
        let since = if since > now {
            now.saturating_sub(config.state.retire_after.as_secs())
        } else {
            since
        };
        let (retired_at, withdraw_at) = match self.schedule(name, h, since, out) {
            Some(s) => s,
            None => {
                let retire_at = since.saturating_add(config.state.retire_after.as_secs());
                let state = Retiring::Missing { since, retire_at };
                deadline(out, retire_at);
                return Some(domain(config, coverage, dname, policy, &saved, state));
            }
        };
        let none = if policy.mode == Mode::None {
            policy
        } else {
            Policy::new(Mode::None, policy.mx.clone(), policy.max_age)
        };
        if h.current().map(|c| &*c.id) != Some(none.id().as_str()) && now < withdraw_at {
            bodies.event(out, &none);
            out.events.push(Event::Served {
                domain: name.into(),
                id: none.id().shared(),
                at: now,
            });
        }
        let state = Retiring::Retiring {
            since: retired_at,
            withdraw_at,
        };
        if now < withdraw_at {
            deadline(out, withdraw_at);
            return Some(domain(config, coverage, dname, none, &saved, state));
        }
        let d = domain(
            config,
            coverage,
            dname,
            none,
            &saved,
            Retiring::Withdrawing { withdraw_at },
        );
        if d.dns.provider.is_none() {
            // Nothing of ours to remove: the admin set the records by hand.
            out.events.push(Event::Withdrawn {
                domain: name.into(),
                at: now,
            });
        } else {
            out.withdraw.push(d);
        }
        None
    }

    /// When a removed domain was retired and when its records go: `None` while it is still
    /// in the grace of `retire_after` (from `since`). A retirement due now, or rescheduled,
    /// is recorded in `out`.
    fn schedule(
        &self,
        name: &str,
        h: &DomainHistory,
        since: u64,
        out: &mut Outcome,
    ) -> Option<(u64, u64)> {
        let retire_at = since.saturating_add(self.config.state.retire_after.as_secs());
        let now = self.now;
        Some(match h.retired() {
            // Retired ahead of the clock: RFC 8461 §8.3's wait is measured again from now,
            // once (recorded), rather than held until the clock catches up.
            Some((at, withdraw_at)) if at > now => {
                let withdraw_at = now.saturating_add(withdraw_at.saturating_sub(at));
                out.events.push(Event::Rescheduled {
                    domain: name.into(),
                    at: now,
                    withdraw_at,
                });
                (now, withdraw_at)
            }
            // Retired by a clock running behind (dated before times the history already
            // held), and the clock is right again: the wait it scheduled would be over before
            // RFC 8461 §8.3's max_age has really passed, so it counts again from now, once.
            Some((at, withdraw_at)) if h.retired_behind().is_some_and(|mark| now >= mark) => {
                let withdraw_at = now.saturating_add(withdraw_at.saturating_sub(at));
                out.events.push(Event::Rescheduled {
                    domain: name.into(),
                    at: now,
                    withdraw_at,
                });
                (now, withdraw_at)
            }
            Some(r) => r,
            None if now < retire_at => return None,
            None => {
                // RFC 8461 §8.3: "publish a new policy with 'mode: none' and a new id", then
                // wait for the longest max_age senders may have cached.
                let withdraw_at = now.saturating_add(u64::from(longest_max_age(self.history, h)));
                out.events.push(Event::Retired {
                    domain: name.into(),
                    at: now,
                    withdraw_at,
                });
                (now, withdraw_at)
            }
        })
    }
}

fn deadline(out: &mut Outcome, at: u64) {
    out.next_deadline = Some(out.next_deadline.map_or(at, |d| d.min(at)));
}

/// The longest `max_age` of every policy the domain served.
fn longest_max_age(history: &History, h: &DomainHistory) -> u32 {
    h.served()
        .iter()
        .filter_map(|e| {
            history
                .body(&e.id)
                .and_then(|b| Policy::parse(b.as_bytes()).ok())
        })
        .map(|p| p.max_age)
        .max()
        .unwrap_or(0)
}

/// How a removed domain was published: its settings as last served, else today's `[dns]`.
fn saved_of(before: Option<&Domain>, config: &Config) -> SavedDns {
    match before {
        Some(d) => SavedDns {
            provider: d.dns.provider.as_deref().map(str::to_owned),
            zone: d.zone.as_ref().map(|z| z.as_str().to_owned()),
            target: d.dns.target.as_ref().map(|t| t.as_str().to_owned()),
            ttl: d.dns.ttl,
            tlsrpt: d.dns.tlsrpt.iter().map(|r| r.as_str().to_owned()).collect(),
            delegated: d.dns.delegated.as_ref().map(|z| z.as_str().to_owned()),
        },
        None => {
            let defaults = &config.dns_defaults;
            SavedDns {
                provider: defaults.provider.as_deref().map(str::to_owned),
                zone: None,
                target: defaults.target.as_ref().map(|t| t.as_str().to_owned()),
                ttl: defaults.ttl,
                tlsrpt: defaults
                    .tlsrpt
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect(),
                delegated: defaults.delegated.as_ref().map(|z| z.as_str().to_owned()),
            }
        }
    }
}

fn domain(
    config: &Config,
    coverage: &Coverage,
    name: DomainName,
    policy: Policy,
    saved: &SavedDns,
    retiring: Retiring,
) -> Domain {
    // A provider removed from the config can no longer be asked: nothing is pushed.
    let provider = saved
        .provider
        .as_deref()
        .filter(|p| config.providers.contains_key(*p));
    let dns = DnsSettings {
        target: saved
            .target
            .as_deref()
            .and_then(|t| DomainName::parse(t).ok().map(|n| n.0)),
        ttl: saved.ttl,
        tlsrpt: saved
            .tlsrpt
            .iter()
            .filter_map(|r| Rua::parse(r).ok())
            .collect(),
        provider: provider.map(Arc::from),
        delegated: saved
            .delegated
            .as_deref()
            .and_then(|z| DomainName::parse(z).ok().map(|n| n.0)),
    };
    let cert = match coverage.find(&name.policy_host()) {
        Some(i) => CertSource::Configured(i),
        None if config.acme.is_some() => CertSource::Acme,
        // The last resort: without any certificate source senders cannot validate either way.
        None => CertSource::SelfSigned,
    };
    Domain::new(Resolved {
        zone: saved
            .zone
            .as_deref()
            .and_then(|z| DomainName::parse(z).ok().map(|n| n.0)),
        name,
        policy: Arc::new(policy),
        dns: Arc::new(dns),
        cert,
        retiring: Some(retiring),
    })
}
