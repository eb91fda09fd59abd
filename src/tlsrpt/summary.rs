//! What `mta-stsd reports` shows: the stored reports per domain and day, and for a domain in
//! `testing` whether the reports say it is ready for `enforce`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;

use super::report::is_sts_failure;
use super::store::{DayRow, FailureRow};
use super::Untrusted;

/// Days with reports under the policy in force, before `testing` may become `enforce`.
pub(crate) const READY_DAYS: usize = 7;

/// How a reporter's reports were authenticated, as the store says it.
pub(crate) const DKIM: &str = "dkim";

/// One domain, from the config (mode, id in force) and the store.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DomainReports {
    pub domain: String,
    /// `None`: not (or no longer) in the config.
    pub mode: Option<String>,
    pub policy_id: Option<String>,
    pub days: Vec<Day>,
    /// Only for a domain in `testing`.
    pub readiness: Option<Readiness>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Day {
    pub day: String,
    pub successful: i64,
    pub failed: i64,
    pub reporters: Vec<Reporter>,
    pub failures: Vec<Failure>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Reporter {
    pub organization: String,
    /// `dkim` (mail, signature verified) or `none` (HTTPS: the organization is only a claim).
    pub auth: String,
    /// The id the reports were matched to; `None`: a body we never served, or unknown.
    pub policy_id: Option<String>,
    /// Whether that is the id the config serves now.
    pub in_force: bool,
    pub successful: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Failure {
    pub result_type: String,
    pub receiving_mx: Option<String>,
    pub policy_id: Option<String>,
    pub count: i64,
    /// RFC 8460 §4.3: an MTA-STS failure (would block delivery in `enforce`).
    pub sts: bool,
}

/// RFC 8461 §5: `testing` first, `enforce` once the reports show senders succeed.
///
/// Only DKIM-signed (mail) reports count as evidence: anyone can POST a report claiming any
/// organization (RFC 8460 §5.3 has no authentication), so HTTPS reports are shown but never
/// make a domain ready; neither do days after today (a report dated in the future).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Readiness {
    pub ready: bool,
    /// Distinct days, up to today, with DKIM-signed reports matched to the id in force.
    pub days_covered: usize,
    /// Days with only unauthenticated (HTTPS) reports on the id in force: not counted.
    pub days_unauthenticated: usize,
    pub days_needed: usize,
    /// Failed sessions of MTA-STS result types under the id in force (any reporter: a
    /// failure is worth a look whoever reports it).
    pub sts_failures: i64,
    /// Organizations that reported on the id in force with DKIM-signed reports.
    pub reporters: Vec<String>,
}

/// One domain's rows on one day.
type Rows<'a> = (Vec<&'a DayRow>, Vec<&'a FailureRow>);

/// Groups the store's rows (sorted by domain, then day) per domain and day. `config` gives
/// each configured domain's mode and id in force; `today` (YYYY-MM-DD, UTC) bounds the days
/// that count for readiness.
pub(crate) fn build(
    days: &[DayRow],
    failures: &[FailureRow],
    config: impl Fn(&str) -> Option<(String, String)>,
    wanted: &[String],
    today: &str,
) -> Vec<DomainReports> {
    let mut by: BTreeMap<&str, BTreeMap<&str, Rows<'_>>> = BTreeMap::new();
    for w in wanted {
        by.entry(w.as_str()).or_default();
    }
    for d in days {
        by.entry(&d.domain)
            .or_default()
            .entry(&d.day)
            .or_default()
            .0
            .push(d);
    }
    for f in failures {
        by.entry(&f.domain)
            .or_default()
            .entry(&f.day)
            .or_default()
            .1
            .push(f);
    }
    by.into_iter()
        .map(|(domain, per_day)| {
            let (mode, id) = config(domain).unzip();
            let in_force = |p: &Option<String>| p.is_some() && *p == id;
            let days: Vec<Day> = per_day
                .into_iter()
                .map(|(day, (rows, fails))| Day {
                    day: day.to_owned(),
                    successful: saturating_sum(rows.iter().map(|r| r.successful)),
                    failed: saturating_sum(rows.iter().map(|r| r.failed)),
                    reporters: rows
                        .iter()
                        .map(|r| Reporter {
                            organization: r.organization.clone(),
                            auth: r.auth.clone(),
                            policy_id: r.policy_id.clone(),
                            in_force: in_force(&r.policy_id),
                            successful: r.successful,
                            failed: r.failed,
                        })
                        .collect(),
                    failures: fails
                        .iter()
                        .map(|f| Failure {
                            result_type: f.result_type.clone(),
                            receiving_mx: f.receiving_mx.clone(),
                            policy_id: f.policy_id.clone(),
                            count: f.count,
                            sts: is_sts_failure(&f.result_type),
                        })
                        .collect(),
                })
                .collect();
            let readiness = (mode.as_deref() == Some("testing")).then(|| {
                let mut covered = BTreeSet::new();
                let mut unauthenticated = BTreeSet::new();
                let mut reporters = BTreeSet::new();
                let mut sts_failures: i64 = 0;
                for d in &days {
                    let future = d.day.as_str() > today;
                    for r in d.reporters.iter().filter(|r| r.in_force && !future) {
                        if r.auth == DKIM {
                            covered.insert(d.day.as_str());
                            reporters.insert(r.organization.clone());
                        } else {
                            unauthenticated.insert(d.day.as_str());
                        }
                    }
                    sts_failures = sts_failures.saturating_add(saturating_sum(
                        d.failures
                            .iter()
                            .filter(|f| f.sts && in_force(&f.policy_id))
                            .map(|f| f.count),
                    ));
                }
                let days_unauthenticated = unauthenticated.difference(&covered).count();
                Readiness {
                    ready: covered.len() >= READY_DAYS && sts_failures == 0,
                    days_covered: covered.len(),
                    days_unauthenticated,
                    days_needed: READY_DAYS,
                    sts_failures,
                    reporters: reporters.into_iter().collect(),
                }
            });
            DomainReports {
                domain: domain.to_owned(),
                mode,
                policy_id: id,
                days,
                readiness,
            }
        })
        .collect()
}

/// Counts summed without wrapping (each is at most the store's cap, but there may be many).
fn saturating_sum(counts: impl Iterator<Item = i64>) -> i64 {
    counts.fold(0i64, i64::saturating_add)
}

/// The text form: one block per domain, one line per day and reporter, failures indented.
pub(crate) fn text(domains: &[DomainReports], since: &str) -> String {
    let mut s = String::new();
    for (i, d) in domains.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        let _ = match (&d.mode, &d.policy_id) {
            (Some(m), Some(id)) => writeln!(s, "{} ({m}, policy id {id})", d.domain),
            _ => writeln!(s, "{} (not in the config)", d.domain),
        };
        if d.days.is_empty() {
            let _ = writeln!(s, "  no reports since {since}");
        }
        for day in &d.days {
            let _ = writeln!(
                s,
                "  {}  {} successful, {} failed",
                day.day, day.successful, day.failed
            );
            for r in &day.reporters {
                let id = match (&r.policy_id, r.in_force) {
                    (Some(id), true) => format!("id {id} (in force)"),
                    (Some(id), false) => format!("id {id} (not in force)"),
                    (None, _) => "id unknown".to_owned(),
                };
                let auth = if r.auth == DKIM {
                    "DKIM-signed"
                } else {
                    "unauthenticated"
                };
                let _ = writeln!(
                    s,
                    "    {} ({auth}): {} successful, {} failed, {id}",
                    Untrusted(&r.organization),
                    r.successful,
                    r.failed
                );
            }
            for f in &day.failures {
                let _ = writeln!(
                    s,
                    "      {} {} at {}",
                    f.count,
                    Untrusted(&f.result_type),
                    Untrusted(f.receiving_mx.as_deref().unwrap_or("unknown MX"))
                );
            }
        }
        if let Some(r) = &d.readiness {
            let verdict = if r.ready { "ready" } else { "not ready" };
            let _ = writeln!(
                s,
                "  enforce: {verdict}: {} of {} days covered, {} MTA-STS failures, reporters: {}",
                r.days_covered,
                r.days_needed,
                r.sts_failures,
                if r.reporters.is_empty() {
                    "none".to_owned()
                } else {
                    r.reporters
                        .iter()
                        .map(|o| Untrusted(o).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
            if r.days_unauthenticated > 0 {
                let _ = writeln!(
                    s,
                    "  ({} more days have only unauthenticated HTTPS reports: shown, not counted)",
                    r.days_unauthenticated
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(day: &str, org: &str, id: Option<&str>, ok: i64, failed: i64) -> DayRow {
        DayRow {
            domain: "example.org".into(),
            day: day.into(),
            organization: org.into(),
            auth: DKIM.into(),
            policy_id: id.map(Into::into),
            successful: ok,
            failed,
        }
    }

    fn fail(day: &str, t: &str, id: Option<&str>, n: i64) -> FailureRow {
        FailureRow {
            domain: "example.org".into(),
            day: day.into(),
            result_type: t.into(),
            receiving_mx: Some("mx.example.org".into()),
            policy_id: id.map(Into::into),
            count: n,
        }
    }

    fn readiness(days: &[DayRow], fails: &[FailureRow]) -> Readiness {
        let cfg = |d: &str| (d == "example.org").then(|| ("testing".into(), "NOW".into()));
        build(days, fails, cfg, &[], "2024-01-09")[0]
            .readiness
            .clone()
            .unwrap()
    }

    #[test]
    fn ready_after_seven_clean_days_under_the_id_in_force() {
        let week: Vec<DayRow> = (1..=7)
            .map(|i| day(&format!("2024-01-0{i}"), "Google", Some("NOW"), 10, 0))
            .collect();
        let r = readiness(&week, &[]);
        assert!(r.ready, "{r:?}");
        assert_eq!((r.days_covered, r.reporters.len()), (7, 1));
        // Six days: not yet.
        assert!(!readiness(&week[1..], &[]).ready);
        // Days under an older id, or unmatched, do not count.
        let mut old = week.clone();
        old[0].policy_id = Some("OLD".into());
        old[1].policy_id = None;
        assert_eq!(readiness(&old, &[]).days_covered, 5);
        // An MTA-STS failure under the id in force blocks; one under an old id, or a
        // non-STS type, does not.
        let r = readiness(
            &week,
            &[fail("2024-01-03", "sts-webpki-invalid", Some("NOW"), 2)],
        );
        assert_eq!((r.ready, r.sts_failures), (false, 2));
        assert!(
            readiness(
                &week,
                &[fail("2024-01-03", "sts-webpki-invalid", Some("OLD"), 2)]
            )
            .ready
        );
        assert!(
            readiness(
                &week,
                &[fail("2024-01-03", "dane-required", Some("NOW"), 2)]
            )
            .ready
        );
    }

    #[test]
    fn text_and_domains_without_reports() {
        let rows = [day("2024-01-01", "Google", Some("NOW"), 10, 1)];
        let fails = [fail("2024-01-01", "certificate-expired", Some("NOW"), 1)];
        let cfg = |d: &str| (d == "example.org").then(|| ("enforce".into(), "NOW".into()));
        let out = build(
            &rows,
            &fails,
            cfg,
            &["example.org".into(), "quiet.example".into()],
            "2024-01-01",
        );
        assert_eq!(out.len(), 2);
        assert!(
            out[0].readiness.is_none(),
            "only testing domains get a verdict"
        );
        let t = text(&out, "2024-01-01");
        assert!(
            t.contains("Google (DKIM-signed): 10 successful, 1 failed, id NOW (in force)"),
            "{t}"
        );
        assert!(t.contains("1 certificate-expired at mx.example.org"), "{t}");
        assert!(
            t.contains("quiet.example (not in the config)\n  no reports since 2024-01-01"),
            "{t}"
        );
    }

    /// Issue 23: seven POSTs dated 2099 claiming "Google Inc." made `reports` say ready.
    #[test]
    fn unauthenticated_or_future_days_never_make_ready() {
        let week = |auth: &str, year: u32| -> Vec<DayRow> {
            (1..=7)
                .map(|i| DayRow {
                    auth: auth.into(),
                    ..day(
                        &format!("{year}-01-0{i}"),
                        "Google Inc.",
                        Some("NOW"),
                        10,
                        0,
                    )
                })
                .collect()
        };
        let r = readiness(&week("none", 2024), &[]);
        assert_eq!(
            (r.ready, r.days_covered, r.days_unauthenticated),
            (false, 0, 7)
        );
        assert!(r.reporters.is_empty());
        let r = readiness(&week(DKIM, 2099), &[]);
        assert_eq!(
            (r.ready, r.days_covered),
            (false, 0),
            "future days do not count"
        );
        let out = build(
            &week("none", 2024),
            &[],
            |_| Some(("testing".into(), "NOW".into())),
            &[],
            "2024-01-09",
        );
        let t = text(&out, "2024-01-01");
        assert!(
            t.contains("Google Inc. (unauthenticated): 10 successful"),
            "{t}"
        );
        assert!(t.contains("enforce: not ready: 0 of 7 days covered"), "{t}");
        assert!(
            t.contains("7 more days have only unauthenticated HTTPS reports"),
            "{t}"
        );
    }

    #[test]
    fn sums_saturate() {
        let rows = [
            day("2024-01-01", "A", Some("NOW"), i64::MAX, i64::MAX),
            day("2024-01-01", "B", Some("NOW"), i64::MAX, 1),
        ];
        let fails = [
            fail("2024-01-01", "sts-webpki-invalid", Some("NOW"), i64::MAX),
            fail("2024-01-02", "sts-webpki-invalid", Some("NOW"), i64::MAX),
        ];
        let cfg = |_: &str| Some(("testing".into(), "NOW".into()));
        let out = build(&rows, &fails, cfg, &[], "2024-01-09");
        assert_eq!(
            (out[0].days[0].successful, out[0].days[0].failed),
            (i64::MAX, i64::MAX)
        );
        assert_eq!(out[0].readiness.as_ref().unwrap().sts_failures, i64::MAX);
    }
}
