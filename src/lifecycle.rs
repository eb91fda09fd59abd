//! How the served set changes over time (RFC 8461 §8.3): the config's domains, plus removed
//! domains on their way out — served unchanged for `[state] retire_after`, then `mode: none`
//! under a new id until the longest `max_age` they published has passed, then withdrawn.
//!
//! Pure: the config, the history and the time in, the domains to serve and the events to
//! record out, so every step is tested without a clock.

use crate::certs::Coverage;
use crate::config::{Config, Domain, Retiring};
use crate::policy::Policy;
use crate::state::history::{DomainHistory, Event, History};

mod removal;

use removal::Removal;

/// What to serve and publish now: the config's domains (see [`served`]) and these.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Sorted by name: the removed domains still served.
    pub removed: Vec<Domain>,
    /// Removed domains whose records are due to be withdrawn.
    pub withdraw: Vec<Domain>,
    /// To be recorded once `domains` is served.
    pub events: Vec<Event>,
    /// Domains that this evaluation found missing for the first time.
    pub newly_missing: Vec<String>,
    /// When the next step of a retirement is due (Unix seconds).
    pub next_deadline: Option<u64>,
}

/// `previous` holds the domains served so far (sorted), for the settings of a domain that
/// was just removed. With `hold`, newly missing domains are served unchanged without starting
/// their retirement (a refused guard at start).
pub(crate) fn evaluate(
    config: &Config,
    history: &History,
    previous: Option<&[Domain]>,
    now: u64,
    hold: bool,
) -> Outcome {
    let mut out = Outcome::default();
    let mut bodies = NewBodies {
        history,
        new: std::collections::HashSet::new(),
    };
    let known = present(config, history, now, &mut out, &mut bodies);
    let coverage = Coverage::new(&config.tls.certs);
    let at = Removal {
        config,
        history,
        previous,
        coverage: &coverage,
        now,
        hold,
    };
    let mut removed: Vec<Domain> = gone(config, history, known)
        .into_iter()
        .filter_map(|(name, h)| at.removed(name, h, &mut out, &mut bodies))
        .collect();
    removed.sort_by(|a, b| a.name.cmp(&b.name));
    out.withdraw.sort_by(|a, b| a.name.cmp(&b.name));
    out.newly_missing.sort();
    out.removed = removed;
    out
}

/// The policy bodies the history does not hold yet: each recorded once.
struct NewBodies<'h> {
    history: &'h History,
    new: std::collections::HashSet<String>,
}

impl NewBodies<'_> {
    fn event(&mut self, out: &mut Outcome, p: &Policy) {
        let id = p.id().as_str();
        if !self.history.has_body(id) && self.new.insert(id.to_owned()) {
            out.events.push(Event::Policy {
                id: p.id().shared(),
                body: String::from_utf8_lossy(p.body()).into_owned(),
            });
        }
    }
}

/// The config's domains: present again, or served under a new id. Returns how many of them
/// the history knows.
fn present(
    config: &Config,
    history: &History,
    now: u64,
    out: &mut Outcome,
    bodies: &mut NewBodies<'_>,
) -> usize {
    let mut known = 0;
    for d in &config.domains {
        let name = d.name.as_str();
        let h = history.domain(name);
        known += usize::from(h.is_some());
        if h.is_some_and(|h| h.missing().is_some()) {
            out.events.push(Event::Present {
                domain: d.name.shared(),
                at: now,
            });
        }
        let current = h.and_then(|h| h.current()).map(|c| &*c.id);
        if current != Some(d.policy.id().as_str()) || h.is_some_and(|h| h.withdrawn().is_some()) {
            bodies.event(out, &d.policy);
            out.events.push(Event::Served {
                domain: d.name.shared(),
                id: d.policy.id().shared(),
                at: now,
            });
        }
    }
    known
}

/// The domains the history has and the config does not (not withdrawn yet).
fn gone<'h>(
    config: &Config,
    history: &'h History,
    known: usize,
) -> Vec<(&'h str, &'h DomainHistory)> {
    // The config's names are unique: when the history knows as many of them as it holds, no
    // domain is missing, and a million names need not be looked up (the common reload).
    if known == history.len() {
        return Vec::new();
    }
    let present: std::collections::HashSet<&str> =
        config.domains.iter().map(|d| d.name.as_str()).collect();
    history
        .domains()
        .filter(|(name, h)| !present.contains(name) && h.withdrawn().is_none())
        .collect()
}

/// The domains to serve, sorted: the config's (moved, not copied: a million of them) and the
/// removed ones [`evaluate`] still serves.
pub(crate) fn served(mut config: Vec<Domain>, removed: Vec<Domain>) -> Vec<Domain> {
    if !removed.is_empty() {
        config.extend(removed);
        config.sort_by(|a, b| a.name.cmp(&b.name));
    }
    config
}

/// At start: the domains the store has in service (served, not removed) when `config` serves
/// none of them — a second, unrelated config on a shared store, which would retire them all
/// (S3 of the hardening issue). Empty when the store serves nothing yet or shares a domain
/// with `config`: replicas of one config, a rolling update among them included, always do.
pub(crate) fn foreign_domains(config: &Config, history: &History) -> Vec<String> {
    let ours: std::collections::HashSet<&str> =
        config.domains.iter().map(|d| d.name.as_str()).collect();
    let mut theirs = Vec::new();
    for (name, h) in history.domains() {
        if h.current().is_none() || h.missing().is_some() || h.withdrawn().is_some() {
            continue;
        }
        if ours.contains(name) {
            return Vec::new();
        }
        theirs.push(name.to_owned());
    }
    theirs.sort();
    theirs
}

/// The store `[state]` names, for this replica.
pub(crate) fn store_target(s: &crate::config::State) -> crate::state::store::Target {
    crate::state::store::Target {
        dir: s.dir.clone(),
        url: s.url.clone(),
        replica: s.replica.clone(),
        key: s.key.clone(),
    }
}

/// For `plan` and `apply`: the domains to publish, with the removed ones where the id history
/// says they are, and a line for each of those; an error when the guard refuses. Reads the
/// state directory, never writes it (`serve` drives retirements).
pub(crate) fn for_commands(config: &Config) -> Result<(Vec<Domain>, Vec<String>), String> {
    let history = crate::state::store::read_history_blocking(&store_target(&config.state))
        .map_err(|e| {
            format!(
                "reading the id history in {}: {e}",
                config.state.dir.display()
            )
        })?;
    let serving = history
        .domains()
        .filter(|(_, d)| d.current().is_some())
        .count();
    let out = evaluate(config, &history, None, crate::clock::unix_now(), false);
    let limit = config.state.max_retire.of(serving);
    if out.newly_missing.len() as u64 > limit {
        return Err(format!(
            "{} served domains are missing from the config, more than [state] max_retire = {}: {}; raise `max_retire` if this is intended",
            out.newly_missing.len(),
            config.state.max_retire,
            out.newly_missing.join(", ")
        ));
    }
    let mut notes = Vec::new();
    for d in out.removed.iter().chain(&out.withdraw) {
        let note = match d.retiring {
            None => continue,
            Some(Retiring::Missing { retire_at, .. }) => format!(
                "; {} is not in the config: served unchanged, retiring from {} (serve does this)",
                d.name,
                crate::clock::rfc3339(retire_at)
            ),
            Some(Retiring::Retiring { withdraw_at, .. }) => format!(
                "; {} is retiring: served `mode: none` (id {}), records withdrawn from {}",
                d.name,
                d.policy.id(),
                crate::clock::rfc3339(withdraw_at)
            ),
            Some(Retiring::Withdrawing { .. }) => {
                format!("; {} is retired: its records are withdrawn", d.name)
            }
            Some(Retiring::Held) => continue,
        };
        notes.push(note);
    }
    let mut domains = served(config.domains.clone(), out.removed);
    domains.extend(out.withdraw);
    Ok((domains, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetireLimit;
    use crate::policy::Mode;
    use std::time::Duration;

    /// A config of `names`, each with the same policy; `max_age` 600.
    fn config(names: &[&str]) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from(
            "[server]\nhttps = []\nadmin = \"127.0.0.1:0\"\n[tls]\nself_signed = true\n[policy]\nmode = \"enforce\"\nmx = [\"mx.example.net\"]\nmax_age = 600\n[state]\ndir = \"s\"\nretire_after = \"60s\"\n",
        );
        for n in names {
            text.push_str(&format!("[domains.\"{n}\"]\n"));
        }
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        crate::config::load(&p)
            .unwrap_or_else(|_| panic!("invalid test config"))
            .config
    }

    /// An evaluation, recorded; `domains`: what is served after it.
    struct Ran {
        out: Outcome,
        domains: Vec<Domain>,
    }

    impl std::ops::Deref for Ran {
        type Target = Outcome;
        fn deref(&self) -> &Outcome {
            &self.out
        }
    }

    fn run(c: &Config, h: &mut History, prev: Option<&[Domain]>, now: u64) -> Ran {
        let out = evaluate(c, h, prev, now, false);
        h.record(&out.events);
        let domains = served(c.domains.clone(), out.removed.clone());
        Ran { out, domains }
    }

    fn state_of<'o>(out: &'o Ran, name: &str) -> Option<(&'o Domain, Option<Retiring>)> {
        out.domains
            .iter()
            .chain(&out.withdraw)
            .find(|d| d.name.as_str() == name)
            .map(|d| (d, d.retiring))
    }

    #[test]
    fn an_unrelated_config_is_told_apart_from_a_rolling_update() {
        let mut h = History::in_memory();
        assert!(foreign_domains(&config(&["x.example"]), &h).is_empty());
        let first = run(&config(&["a.example", "b.example"]), &mut h, None, 1000);
        // A replica of the same group, one version on: shares a.example.
        assert!(foreign_domains(&config(&["a.example", "c.example"]), &h).is_empty());
        // Another config: shares nothing.
        assert_eq!(
            foreign_domains(&config(&["x.example"]), &h),
            ["a.example", "b.example"]
        );
        // Domains on their way out are not in service: a config that keeps the rest is ours.
        let only_a = config(&["a.example"]);
        run(&only_a, &mut h, Some(&first.domains), 1010);
        assert_eq!(foreign_domains(&config(&["x.example"]), &h), ["a.example"]);
    }

    #[test]
    fn a_removed_domain_is_served_then_retired_then_withdrawn() {
        let mut h = History::in_memory();
        let both = config(&["a.example", "b.example"]);
        let first = run(&both, &mut h, None, 1000);
        assert_eq!(first.events.len(), 3, "one body, two served");
        // An idle re-evaluation records nothing.
        assert!(run(&both, &mut h, Some(&first.domains), 1001)
            .events
            .is_empty());

        let only_a = config(&["a.example"]);
        let out = run(&only_a, &mut h, Some(&first.domains), 1010);
        assert_eq!(out.newly_missing, vec!["b.example"]);
        let (b, st) = state_of(&out, "b.example").unwrap();
        assert_eq!(
            st,
            Some(Retiring::Missing {
                since: 1010,
                retire_at: 1070
            })
        );
        assert_eq!(
            b.policy.id(),
            both.domains[1].policy.id(),
            "unchanged while missing"
        );
        assert_eq!(out.next_deadline, Some(1070));

        let out = run(&only_a, &mut h, Some(&out.domains), 1070);
        let (b, st) = state_of(&out, "b.example").unwrap();
        assert_eq!(
            st,
            Some(Retiring::Retiring {
                since: 1070,
                withdraw_at: 1670
            })
        );
        assert_eq!(b.policy.mode, Mode::None);
        assert_ne!(b.policy.id(), both.domains[1].policy.id());
        assert!(out.newly_missing.is_empty());

        // Without a provider there is nothing of ours to remove: withdrawn at once.
        let out = run(&only_a, &mut h, Some(&out.domains), 1670);
        assert!(state_of(&out, "b.example").is_none(), "no longer served");
        assert_eq!(h.domain("b.example").unwrap().withdrawn(), Some(1670));
        assert!(run(&only_a, &mut h, Some(&out.domains), 1700)
            .events
            .is_empty());
        // The config's own domain was never touched.
        assert!(out
            .events
            .iter()
            .all(|e| !format!("{e:?}").contains("a.example")));
    }

    /// S5 of the hardening issue: a clock 400 days ahead while a domain retires, then
    /// corrected, does not hold the retirement 400 days: §8.3's wait (600 s here) counts
    /// again from the corrected clock, once.
    #[test]
    fn a_retirement_recorded_ahead_of_the_clock_waits_its_max_age_not_the_jump() {
        const JUMP: u64 = 400 * 86_400;
        let mut h = History::in_memory();
        let both = config(&["a.example", "b.example"]);
        let first = run(&both, &mut h, None, 1000);
        let only_a = config(&["a.example"]);
        // The clock ran ahead: the removal and the retirement are dated 400 days late.
        let out = run(&only_a, &mut h, Some(&first.domains), 1000 + JUMP);
        let out = run(&only_a, &mut h, Some(&out.domains), 1060 + JUMP);
        assert!(matches!(
            state_of(&out, "b.example").unwrap().1,
            Some(Retiring::Retiring { .. })
        ));
        // Corrected: the wait counts from now, and is recorded once.
        let out = run(&only_a, &mut h, Some(&out.domains), 1100);
        assert_eq!(
            state_of(&out, "b.example").unwrap().1,
            Some(Retiring::Retiring {
                since: 1100,
                withdraw_at: 1700
            })
        );
        assert_eq!(h.domain("b.example").unwrap().retired(), Some((1100, 1700)));
        assert!(run(&only_a, &mut h, Some(&out.domains), 1200)
            .events
            .is_empty());
        assert!(state_of(&run(&only_a, &mut h, Some(&out.domains), 1700), "b.example").is_none());
    }

    /// S5 of the hardening issue: a clock 400 days behind while a domain is removed and
    /// retired, corrected before the next start. The retirement, read back from the store
    /// (SQLite) as a start reads it, is dated 400 days early; its §8.3 wait (600 s here)
    /// counts again from the corrected clock, once, instead of being over at once.
    #[tokio::test]
    async fn a_retirement_recorded_behind_the_clock_waits_its_max_age_after_a_restart() {
        use crate::state::store::{Store, Target, Writer};
        const BEHIND: u64 = 400 * 86_400;
        const T0: u64 = 1_000_000_000;
        let mut h = History::in_memory();
        let both = config(&["a.example", "b.example"]);
        let first = run(&both, &mut h, None, T0);
        let only_a = config(&["a.example"]);
        let missing = run(&only_a, &mut h, Some(&first.domains), T0 - BEHIND);
        let retired = run(&only_a, &mut h, Some(&missing.domains), T0 - BEHIND + 60);
        assert_eq!(
            state_of(&retired, "b.example").unwrap().1,
            Some(Retiring::Retiring {
                since: T0 - BEHIND + 60,
                withdraw_at: T0 - BEHIND + 660
            })
        );
        let dir = tempfile::tempdir().unwrap();
        let target = Target {
            dir: dir.path().to_owned(),
            url: None,
            replica: "r".into(),
            key: None,
        };
        let writer = Writer::start(Store::open(&target).await.unwrap());
        for ran in [&first, &missing, &retired] {
            writer.record(&ran.events);
        }
        assert!(writer.flush(Duration::from_secs(10)).await);

        // The next start, the clock right again.
        let store = Store::open(&target).await.unwrap();
        let mut h = store.load_history().await.unwrap().history;
        let start = run(&only_a, &mut h, None, T0 + 10);
        assert!(start.withdraw.is_empty());
        assert_eq!(
            state_of(&start, "b.example").unwrap().1,
            Some(Retiring::Retiring {
                since: T0 + 10,
                withdraw_at: T0 + 610
            })
        );
        assert!(run(&only_a, &mut h, Some(&start.domains), T0 + 20)
            .events
            .is_empty());
        let later = run(&only_a, &mut h, Some(&start.domains), T0 + 609);
        assert!(state_of(&later, "b.example").is_some());
        assert!(state_of(
            &run(&only_a, &mut h, Some(&later.domains), T0 + 610),
            "b.example"
        )
        .is_none());
    }

    /// Replicas' clocks a few seconds apart never reschedule each other's retirements.
    #[test]
    fn a_retirement_a_little_behind_another_replicas_events_stands() {
        let mut h = History::in_memory();
        let both = config(&["a.example", "b.example"]);
        let first = run(&both, &mut h, None, 1000);
        let only_a = config(&["a.example"]);
        // Another replica, its clock minutes ahead, recorded something at 1500.
        h.record(&[Event::Present {
            domain: "c.example".into(),
            at: 1500,
        }]);
        let out = run(&only_a, &mut h, Some(&first.domains), 1070);
        let out = run(&only_a, &mut h, Some(&out.domains), 1130);
        assert!(out
            .events
            .iter()
            .any(|e| matches!(e, Event::Retired { .. })));
        for now in [1140, 1500, 1600, 1729] {
            assert!(run(&only_a, &mut h, Some(&out.domains), now)
                .events
                .is_empty());
        }
    }

    /// A removal dated ahead of the clock is past: the grace of `retire_after` is over.
    #[test]
    fn a_removal_recorded_ahead_of_the_clock_retires_now() {
        let mut h = History::in_memory();
        let both = config(&["a.example", "b.example"]);
        let first = run(&both, &mut h, None, 1000);
        let only_a = config(&["a.example"]);
        let out = run(&only_a, &mut h, Some(&first.domains), 1000 + 400 * 86_400);
        let out = run(&only_a, &mut h, Some(&out.domains), 1010);
        assert_eq!(
            state_of(&out, "b.example").unwrap().1,
            Some(Retiring::Retiring {
                since: 1010,
                withdraw_at: 1610
            })
        );
    }

    #[test]
    fn putting_a_domain_back_cancels_its_retirement() {
        let mut h = History::in_memory();
        let both = config(&["a.example", "b.example"]);
        let first = run(&both, &mut h, None, 1000);
        let only_a = config(&["a.example"]);
        let out = run(&only_a, &mut h, Some(&first.domains), 1010);
        let out = run(&only_a, &mut h, Some(&out.domains), 1100);
        assert!(matches!(
            state_of(&out, "b.example").unwrap().1,
            Some(Retiring::Retiring { .. })
        ));
        let back = run(&both, &mut h, Some(&out.domains), 1200);
        let (b, st) = state_of(&back, "b.example").unwrap();
        assert_eq!((st, b.policy.id()), (None, both.domains[1].policy.id()));
        assert!(h.domain("b.example").unwrap().missing().is_none());
        assert_eq!(back.next_deadline, None);
    }

    #[test]
    fn the_limit_counts_or_takes_a_share() {
        assert_eq!(RetireLimit::Count(10).of(5), 10);
        assert_eq!(RetireLimit::Percent(10.0).of(1000), 100);
        assert_eq!(RetireLimit::Percent(10.0).of(5), 0);
        let _ = Duration::ZERO;
    }
}
