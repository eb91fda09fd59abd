//! Findings across runs. A finding's identity is (domain, check, subject or message); against
//! the previous run's report (kept in the store, so restarts and other replicas see it) each
//! one carries its `since`, and what appeared, changed severity or cleared becomes an [`Event`].

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::report::{Check, Report, Severity};
use crate::config::Config;

/// The previous report is ours, but a file: refuse one absurdly large.
const MAX_STATE: u64 = 1 << 30;

/// One alert, as webhooks and commands receive it (SPEC "Drift: the sender's whole path").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Event {
    pub event: Kind,
    pub domain: String,
    pub check: Check,
    /// The finding's severity now; `ok` when cleared.
    pub severity: Severity,
    pub message: String,
    /// When the finding was first seen (for `cleared`: until now).
    pub since: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Appeared,
    Changed,
    Cleared,
}

/// Where an earlier version kept the findings of the last run (the store keeps them now).
pub(crate) fn state_path(config: &Config) -> PathBuf {
    config.state.dir.join("drift.json")
}

/// The last run's report, if there is a readable one.
pub(crate) fn load(path: &Path) -> Result<Option<Report>, String> {
    let text = match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_STATE => {
            return Err(format!("{} is over {MAX_STATE} bytes", path.display()))
        }
        Ok(_) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A run over some domains only: the previous findings of the others are kept as they were.
pub(crate) fn keep_unchecked(
    previous: Option<&Report>,
    current: Report,
    checked: &BTreeSet<String>,
) -> Report {
    let Some(previous) = previous else {
        return current;
    };
    let mut domains = current.domains;
    domains.extend(
        previous
            .domains
            .iter()
            .filter(|d| !checked.contains(&d.domain))
            .cloned(),
    );
    Report::new(current.checked_at, domains)
}

/// Sets each finding's `since` from `previous` and returns what changed, in report order
/// (cleared findings after the domain's current ones). With `checked`, `current` covers those
/// domains only: the others' findings did not clear.
pub(crate) fn compare(
    previous: Option<&Report>,
    current: &mut Report,
    checked: Option<&BTreeSet<String>>,
) -> Vec<Event> {
    let now = current.checked_at;
    let mut before: HashMap<(&str, Check, &str), (Severity, u64, &str)> = HashMap::new();
    if let Some(p) = previous {
        for d in &p.domains {
            for f in &d.findings {
                before.insert(
                    (d.domain.as_str(), f.check, f.key()),
                    (f.severity, f.since, f.message.as_str()),
                );
            }
        }
    }
    let mut events = Vec::new();
    let mut seen = BTreeSet::new();
    for d in &mut current.domains {
        for f in &mut d.findings {
            let found = before
                .get(&(d.domain.as_str(), f.check, f.key()))
                .map(|(severity, since, _)| (*severity, *since));
            let kind = match found {
                Some((severity, since)) => {
                    f.since = since;
                    (severity != f.severity).then_some(Kind::Changed)
                }
                None => {
                    f.since = now;
                    Some(Kind::Appeared)
                }
            };
            seen.insert((d.domain.clone(), f.check, f.key().to_owned()));
            if let Some(event) = kind {
                events.push(Event {
                    event,
                    domain: d.domain.clone(),
                    check: f.check,
                    severity: f.severity,
                    message: f.message.clone(),
                    since: f.since,
                });
            }
        }
    }
    if let Some(p) = previous {
        for d in &p.domains {
            if checked.is_some_and(|c| !c.contains(&d.domain)) {
                continue;
            }
            for f in &d.findings {
                if !seen.contains(&(d.domain.clone(), f.check, f.key().to_owned())) {
                    events.push(Event {
                        event: Kind::Cleared,
                        domain: d.domain.clone(),
                        check: f.check,
                        severity: Severity::Ok,
                        message: f.message.clone(),
                        since: f.since,
                    });
                }
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::report::{DomainReport, Finding};

    fn report(at: u64, findings: Vec<Finding>) -> Report {
        Report::new(at, vec![DomainReport::new("a.example".into(), findings)])
    }

    #[test]
    fn appear_stay_change_clear() {
        let mx = |s, m: &str| Finding::new(s, Check::MxTls, m, "h").about("mx1 127.0.0.1:25");
        let mut r1 = report(100, vec![mx(Severity::Warning, "expires in 13 days")]);
        let e = compare(None, &mut r1, None);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].event, e[0].since), (Kind::Appeared, 100));
        // The message changes (a day passed), the identity does not: nothing fires.
        let mut r2 = report(200, vec![mx(Severity::Warning, "expires in 12 days")]);
        assert_eq!(compare(Some(&r1), &mut r2, None), vec![]);
        assert_eq!(r2.domains[0].findings[0].since, 100);
        let mut r3 = report(300, vec![mx(Severity::Critical, "expires in 2 days")]);
        let e = compare(Some(&r2), &mut r3, None);
        assert_eq!((e.len(), e[0].event, e[0].since), (1, Kind::Changed, 100));
        let mut r4 = report(400, vec![]);
        let e = compare(Some(&r3), &mut r4, None);
        assert_eq!(
            (e.len(), e[0].event, e[0].severity),
            (1, Kind::Cleared, Severity::Ok)
        );
        // The report round-trips through its JSON, as it does through the state file.
        let back: Report = serde_json::from_str(&r3.json()).unwrap();
        let mut r5 = report(500, vec![mx(Severity::Critical, "expires in 1 days")]);
        assert_eq!(compare(Some(&back), &mut r5, None), vec![]);
    }

    #[test]
    fn a_subset_run_clears_only_its_own_domains() {
        let f = || Finding::new(Severity::Critical, Check::StsTxt, "stale id", "h");
        let previous = Report::new(
            100,
            vec![
                DomainReport::new("a.example".into(), vec![f()]),
                DomainReport::new("b.example".into(), vec![f()]),
            ],
        );
        let only: BTreeSet<String> = ["b.example".to_owned()].into();
        let mut now = Report::new(200, vec![DomainReport::new("b.example".into(), vec![])]);
        let e = compare(Some(&previous), &mut now, Some(&only));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            (e[0].event, e[0].domain.as_str()),
            (Kind::Cleared, "b.example")
        );
        let kept = keep_unchecked(Some(&previous), now, &only);
        assert_eq!(kept.domains[0].findings.len(), 1, "a kept as it was");
        assert!(kept.domains[1].findings.is_empty());
    }
}
