//! A domain page's TLS-RPT part, from what `mta-stsd reports` computes
//! ([`crate::tlsrpt::summary`]): the same per-day sums and the same readiness verdict, laid
//! out as a chart, tables and sentences.

use std::collections::BTreeMap;

use super::chart::{Chart, DayCount};
use super::pages::{Reports, Verdict};
use crate::tlsrpt::store::utc_day;
use crate::tlsrpt::summary::{DomainReports, Readiness};

/// The days a domain page shows, today (UTC) included.
pub(crate) const DAYS: i64 = 30;

/// The UTC days of the window ending `now` (unix seconds), oldest first.
pub(crate) fn window(now: i64) -> Vec<String> {
    (0..DAYS)
        .rev()
        .map(|back| utc_day(now - back * 86_400))
        .collect()
}

/// The chart, tables and breakdowns of one domain's reports over `window`.
pub(crate) fn reports(d: &DomainReports, window: &[String]) -> Reports {
    let per_day: BTreeMap<&str, (i64, i64)> = d
        .days
        .iter()
        .map(|day| (day.day.as_str(), (day.successful, day.failed)))
        .collect();
    let days: Vec<DayCount> = window
        .iter()
        .map(|day| {
            let (successful, failed) = per_day.get(day.as_str()).copied().unwrap_or((0, 0));
            DayCount {
                day: day.clone(),
                successful,
                failed,
            }
        })
        .collect();
    let chart = Chart::new(&days);
    let mut by_type: BTreeMap<(&str, bool), i64> = BTreeMap::new();
    let mut by_mx: BTreeMap<&str, i64> = BTreeMap::new();
    let mut by_org: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for day in d
        .days
        .iter()
        .filter(|day| per_day.contains_key(day.day.as_str()))
    {
        for f in &day.failures {
            *by_type.entry((&f.result_type, f.sts)).or_default() += f.count;
            *by_mx
                .entry(f.receiving_mx.as_deref().unwrap_or("(not reported)"))
                .or_default() += f.count;
        }
        for r in &day.reporters {
            let e = by_org.entry(&r.organization).or_default();
            e.0 += r.successful;
            e.1 += r.failed;
        }
    }
    let mut by_type: Vec<(String, bool, i64)> = by_type
        .into_iter()
        .map(|((t, sts), n)| (t.to_owned(), sts, n))
        .collect();
    by_type.sort_by_key(|t| std::cmp::Reverse(t.2));
    let mut by_mx: Vec<(String, i64)> = by_mx.into_iter().map(|(m, n)| (m.to_owned(), n)).collect();
    by_mx.sort_by_key(|m| std::cmp::Reverse(m.1));
    let mut by_org: Vec<(String, i64, i64)> = by_org
        .into_iter()
        .map(|(o, (ok, failed))| (o.to_owned(), ok, failed))
        .collect();
    by_org.sort_by_key(|o| std::cmp::Reverse(o.1 + o.2));
    let (since, until) = (
        window.first().cloned().unwrap_or_default(),
        window.last().cloned().unwrap_or_default(),
    );
    let summary = summary_text(&chart, &days, &since, &until);
    Reports {
        since,
        until,
        chart,
        summary,
        days,
        by_type,
        by_mx,
        by_org,
    }
}

/// The chart in one or two sentences, for a screen reader and the figure's caption.
fn summary_text(chart: &Chart, days: &[DayCount], since: &str, until: &str) -> String {
    let total = chart.total_successful + chart.total_failed;
    if total == 0 {
        return format!("No sessions reported from {since} to {until}.");
    }
    let with = days.iter().filter(|d| d.successful + d.failed > 0).count();
    let worst = days
        .iter()
        .filter(|d| d.failed > 0)
        .max_by_key(|d| d.failed)
        .map(|d| format!(" Most failures on {}: {}.", d.day, d.failed))
        .unwrap_or_default();
    format!(
        "From {since} to {until}: {total} sessions on {with} days, {} successful and {} failed ({}).{worst}",
        chart.total_successful,
        chart.total_failed,
        rate(chart.total_successful, chart.total_failed)
    )
}

/// "99.5% successful", or "no sessions".
pub(crate) fn rate(successful: i64, failed: i64) -> String {
    let total = successful + failed;
    if total <= 0 {
        return "no sessions".to_owned();
    }
    // Rounded down, so that 99.99% is never shown as 100% while a session failed.
    let permille = successful * 1000 / total;
    format!("{}.{}% successful", permille / 10, permille % 10)
}

/// The sessions reported under `id` in the window, in words.
pub(crate) fn under_id(d: &DomainReports, id: &str) -> String {
    let mut ok = 0;
    let mut failed = 0;
    let mut orgs = std::collections::BTreeSet::new();
    for day in &d.days {
        for r in day
            .reporters
            .iter()
            .filter(|r| r.policy_id.as_deref() == Some(id))
        {
            ok += r.successful;
            failed += r.failed;
            orgs.insert(r.organization.as_str());
        }
    }
    if orgs.is_empty() {
        return format!("no reports under this id in the last {DAYS} days");
    }
    format!(
        "{ok} successful, {failed} failed sessions reported by {}",
        orgs.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// The verdict `reports` gives, with its reasons in words.
pub(crate) fn verdict(r: &Readiness) -> Verdict {
    let mut reasons = vec![format!(
        "{} days with DKIM-signed reports under the policy id in force ({} needed)",
        r.days_covered, r.days_needed
    )];
    if r.days_unauthenticated > 0 {
        // Reports over HTTPS carry no signature: anyone can claim to be any organisation.
        reasons.push(format!(
            "{} more days with only unauthenticated (HTTPS) reports, not counted",
            r.days_unauthenticated
        ));
    }
    reasons.push(match r.sts_failures {
        0 => "no MTA-STS failures reported under the policy id in force".to_owned(),
        n => format!("{n} MTA-STS failures reported under the policy id in force: they would be refused in enforce"),
    });
    reasons.push(if r.reporters.is_empty() {
        "no organisation has reported on the policy id in force".to_owned()
    } else {
        format!("reported by {}", r.reporters.join(", "))
    });
    Verdict {
        ready: r.ready,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::summary::{Day, Failure, Reporter};

    fn reports() -> DomainReports {
        let reporter = |org: &str, id: &str, ok, failed| Reporter {
            organization: org.into(),
            auth: "dkim".into(),
            policy_id: Some(id.into()),
            in_force: id == "NEW",
            successful: ok,
            failed,
        };
        DomainReports {
            domain: "example.org".into(),
            mode: Some("testing".into()),
            policy_id: Some("NEW".into()),
            days: vec![
                Day {
                    day: "2026-12-01".into(),
                    successful: 90,
                    failed: 4,
                    reporters: vec![reporter("A", "OLD", 90, 4)],
                    failures: vec![Failure {
                        result_type: "certificate-expired".into(),
                        receiving_mx: Some("mx1.example.org".into()),
                        policy_id: Some("OLD".into()),
                        count: 4,
                        sts: true,
                    }],
                },
                Day {
                    day: "2026-12-03".into(),
                    successful: 10,
                    failed: 0,
                    reporters: vec![reporter("B", "NEW", 10, 0)],
                    failures: Vec::new(),
                },
            ],
            readiness: None,
        }
    }

    #[test]
    fn the_window_fills_days_without_reports_with_zeros() {
        let days: Vec<String> = (1..=4).map(|d| format!("2026-12-0{d}")).collect();
        let r = super::reports(&reports(), &days);
        let days: Vec<(i64, i64)> = r.days.iter().map(|d| (d.successful, d.failed)).collect();
        assert_eq!(days, [(90, 4), (0, 0), (10, 0), (0, 0)]);
        assert_eq!(r.by_type, [("certificate-expired".to_owned(), true, 4)]);
        assert_eq!(r.by_mx, [("mx1.example.org".to_owned(), 4)]);
        assert_eq!(r.by_org, [("A".to_owned(), 90, 4), ("B".to_owned(), 10, 0)]);
        assert_eq!(
            r.summary,
            "From 2026-12-01 to 2026-12-04: 104 sessions on 2 days, 100 successful and 4 failed \
             (96.1% successful). Most failures on 2026-12-01: 4."
        );
        assert_eq!(window(86_400 * 30).len() as i64, DAYS);
        assert_eq!(window(86_400 * 30).last().unwrap(), "1970-01-31");
    }

    #[test]
    fn sessions_per_id_and_rates() {
        let r = reports();
        assert_eq!(
            under_id(&r, "OLD"),
            "90 successful, 4 failed sessions reported by A"
        );
        assert!(under_id(&r, "OTHER").starts_with("no reports under this id"));
        // Rounded down: one failure in 10,000 is not 100%.
        assert_eq!(rate(9999, 1), "99.9% successful");
        assert_eq!(rate(0, 0), "no sessions");
    }

    #[test]
    fn the_verdict_says_why() {
        let v = verdict(&Readiness {
            ready: false,
            days_covered: 3,
            days_unauthenticated: 0,
            days_needed: 7,
            sts_failures: 2,
            reporters: vec!["A".into(), "B".into()],
        });
        assert!(!v.ready);
        assert_eq!(
            v.reasons,
            [
                "3 days with DKIM-signed reports under the policy id in force (7 needed)",
                "2 MTA-STS failures reported under the policy id in force: they would be refused in enforce",
                "reported by A, B",
            ]
        );
    }
}
