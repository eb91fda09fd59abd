//! The dashboard's pages filled from the daemon's state: the live snapshot, the publication
//! and drift state, the id history (through `state::show`, as `mta-stsd history` reads it) and
//! the TLS-RPT store (through its read API, summed as `mta-stsd reports` sums it).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::clock::{rfc3339, unix_now};
use crate::config::{CertSource, Config, Domain};
use crate::daemon::context::Daemon;
use crate::daemon::drift_task::for_domain;
use crate::daemon::view::{certificate, lifecycle_status};
use crate::dashboard::reports::{self, DAYS};
use crate::dashboard::search::{self, Match, Query};
use crate::dashboard::{
    DomainPage, DriftFinding, DriftView, IndexPage, ReportsView, Row, Served, Summary, CSS,
};
use crate::drift::report::Severity;
use crate::live::Live;
use crate::tlsrpt::status::{Reports, DAYS as INDEX_DAYS};
use crate::tlsrpt::store::utc_day;
use crate::tlsrpt::summary;

/// A domain page answers even when the database is slow: past this it shows the error.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// `/`: one page of the domains `query` matches, with the summary line.
pub(crate) async fn index(shared: &Daemon, query: Option<&str>) -> IndexPage {
    let q = Query::parse(query);
    let live = shared.live.load_full();
    let sel = search::select(&live.config.domains, |d| d.name.as_str(), &q);
    let names: Vec<String> = sel
        .rows
        .iter()
        .map(|d| d.name.as_str().to_owned())
        .collect();
    let sums = match live.config.tlsrpt {
        None => Reports::Off,
        Some(_) => {
            let now = unix_now() as i64;
            crate::tlsrpt::status::fetch(shared.reports.get(), &names, now).await
        }
    };
    let publication = shared.publication();
    let drift = shared.drift_report();
    let rows = sel
        .rows
        .iter()
        .map(|d| {
            let p = publication.domains.get(d.name.as_str());
            let (publication, publication_class) = match p {
                None => ("manual".to_owned(), "muted"),
                Some(p) => (p.state.as_str().to_owned(), state_class(p.state.as_str())),
            };
            let (drift, drift_class) = match drift
                .as_deref()
                .and_then(|r| for_domain(r, d.name.as_str()))
            {
                None => ("not checked".to_owned(), "muted"),
                Some(dr) if dr.findings.is_empty() => ("ok".to_owned(), "ok"),
                Some(dr) => (
                    format!("{} ({} open)", dr.status.as_str(), dr.findings.len()),
                    severity_class(dr.status),
                ),
            };
            Row {
                name: d.name.as_str().to_owned(),
                mode: d.policy.mode.as_str(),
                id: d.policy.id().to_string(),
                publication,
                publication_class,
                certificate: certificate_text(d, &live.config, shared),
                drift,
                drift_class,
                tlsrpt: match &sums {
                    Reports::Off => "not configured".to_owned(),
                    Reports::Unavailable(_) => "unavailable".to_owned(),
                    Reports::Sums(s) => match s.get(d.name.as_str()) {
                        Some(s) if s.successful + s.failed > 0 => format!(
                            "{} of {}",
                            reports::rate(s.successful, s.failed),
                            s.successful + s.failed
                        ),
                        _ => "no reports".to_owned(),
                    },
                },
            }
        })
        .collect();
    let summary = summary(shared, &live, &publication, drift.as_deref(), &sums);
    let link = |page: usize| {
        let mut s = form_urlencoded::Serializer::new(String::from("/?"));
        if !q.text.is_empty() {
            s.append_pair("q", &q.text);
        }
        if q.how == Match::Prefix {
            s.append_pair("match", "prefix");
        }
        s.append_pair("page", &page.to_string());
        s.finish()
    };
    IndexPage {
        css: CSS,
        summary,
        query: q.text.clone(),
        prefix: q.how == Match::Prefix,
        rows,
        matches: sel.matches,
        page: sel.page,
        pages: sel.pages,
        prev: (sel.page > 1).then(|| link(sel.page - 1)),
        next: (sel.page < sel.pages).then(|| link(sel.page + 1)),
        days: INDEX_DAYS,
    }
}

/// The summary line: counts by mode and publication state, drift, reload and store.
fn summary(
    shared: &Daemon,
    live: &Arc<Live>,
    publication: &crate::daemon::publication::Publication,
    drift: Option<&crate::drift::report::Report>,
    sums: &Reports,
) -> Summary {
    let modes = mode_counts(live);
    let mut states = [
        ("published", 0),
        ("pending", 0),
        ("failed", 0),
        ("manual", 0),
    ];
    for p in publication.domains.values() {
        if let Some(s) = states.iter_mut().find(|(s, _)| *s == p.state.as_str()) {
            s.1 += 1;
        }
    }
    let config = &live.config;
    states[3].1 = config
        .domains
        .len()
        .saturating_sub(publication.domains.len());
    let reload = shared.last_reload();
    Summary {
        domains: config.domains.len(),
        modes: modes.into_iter().filter(|(_, n)| *n > 0).collect(),
        publication: states.into_iter().filter(|(_, n)| *n > 0).collect(),
        drift: match drift {
            None => "not run yet".to_owned(),
            Some(r) => format!(
                "{} critical, {} warning, {} unknown",
                r.counts.critical, r.counts.warning, r.counts.unknown
            ),
        },
        reload_ok: reload.ok,
        reload_at: rfc3339(reload.at),
        state: state_line(shared),
        state_ok: shared.writer.store().health().error.is_none(),
        store: match (sums, shared.reports.get()) {
            (Reports::Off, _) => "not configured".to_owned(),
            (Reports::Unavailable(e), _) => format!("unavailable ({e})"),
            (_, Some(_)) => "open".to_owned(),
            (_, None) => "not open".to_owned(),
        },
    }
}

/// The state store as the summary line says it: "sqlite, up" or "postgresql, error: …, 3
/// events waiting".
fn state_line(shared: &Daemon) -> String {
    let store = shared.writer.store();
    let h = store.health();
    let mut line = format!("{}, ", store.engine());
    match &h.error {
        None => line.push_str("up"),
        Some(e) => line.push_str(&format!("error: {e}")),
    }
    if h.pending > 0 {
        line.push_str(&format!(", {} events waiting", h.pending));
    }
    if h.damaged > 0 {
        line.push_str(&format!(", {} damaged rows", h.damaged));
    }
    line
}

/// Domains by mode, counted once per snapshot (a million domains take a while to count, and
/// the mode changes only with a reload, which swaps in a new snapshot).
fn mode_counts(live: &Arc<Live>) -> [(&'static str, usize); 3] {
    type Counted = Option<(Weak<Live>, [(&'static str, usize); 3])>;
    static LAST: Mutex<Counted> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    // The Weak keeps the old snapshot's allocation: a new one can never have its address.
    if let Some((of, counts)) = last.as_ref() {
        if std::ptr::eq(of.as_ptr(), Arc::as_ptr(live)) {
            return *counts;
        }
    }
    let mut n = [0usize; 3];
    for d in &live.config.domains {
        n[match d.policy.mode.as_str() {
            "enforce" => 0,
            "testing" => 1,
            _ => 2,
        }] += 1;
    }
    let counts = [("enforce", n[0]), ("testing", n[1]), ("none", n[2])];
    *last = Some((Arc::downgrade(live), counts));
    counts
}

/// `/domains/<name>`; `None` when the name is not served.
pub(crate) async fn domain(shared: &Daemon, name: &str) -> Option<DomainPage> {
    let live = shared.live.load_full();
    let (d, since) = live.served(name)?;
    let now = unix_now() as i64;
    let window = reports::window(now);
    let found = match live.config.tlsrpt {
        None => Err(ReportsView::Off),
        Some(_) => domain_reports(shared, d).await,
    };
    let timeline = timeline(shared, name, found.as_ref().ok());
    let (reports_view, readiness) = match &found {
        Err(v) => (v.clone(), None),
        Ok(r) => (
            ReportsView::Shown(Box::new(reports::reports(r, &window))),
            r.readiness.as_ref().map(reports::verdict),
        ),
    };
    let readiness_note = match (&live.config.tlsrpt, d.policy.mode.as_str()) {
        (None, _) => "No [tlsrpt]: the verdict needs the reports.".to_owned(),
        (_, "testing") => "The report store could not be read.".to_owned(),
        (_, mode) => format!("Only a domain in testing gets a verdict; this one is in {mode}."),
    };
    let publication = publication_rows(shared, d);
    Some(DomainPage {
        css: CSS,
        name: name.to_owned(),
        mode: d.policy.mode.as_str(),
        id: d.policy.id().to_string(),
        served_since: rfc3339(since),
        lifecycle: lifecycle_status(d)["state"]
            .as_str()
            .unwrap_or("configured")
            .to_owned(),
        certificate: certificate_text(d, &live.config, shared),
        publication,
        records: crate::desired::records(d)
            .iter()
            .chain(crate::desired::customer_records(d).iter())
            .map(|r| r.to_string())
            .collect(),
        timeline,
        drift: drift_view(shared, name),
        days: DAYS,
        reports: reports_view,
        readiness,
        readiness_note,
    })
}

/// The domain's reports of the window, summed by [`summary::build`] as `reports` does.
async fn domain_reports(
    shared: &Daemon,
    d: &Domain,
) -> Result<summary::DomainReports, ReportsView> {
    let Some(store) = shared.reports.get() else {
        return Err(ReportsView::Unavailable(
            "the report store is not open".into(),
        ));
    };
    let names = [d.name.as_str().to_owned()];
    let since = utc_day(unix_now() as i64 - (DAYS - 1) * 86_400);
    let read = async {
        Ok::<_, crate::tlsrpt::store::StoreError>((
            store.days(&names, &since).await?,
            store.failures(&names, &since).await?,
        ))
    };
    let (days, failures) = match tokio::time::timeout(QUERY_TIMEOUT, read).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => return Err(ReportsView::Unavailable(e.to_string())),
        Err(_) => {
            return Err(ReportsView::Unavailable(format!(
                "the report store did not answer in {QUERY_TIMEOUT:?}"
            )))
        }
    };
    let in_config = |_: &str| Some((d.policy.mode.as_str().to_owned(), d.policy.id().to_string()));
    let today = crate::tlsrpt::store::utc_day(crate::clock::unix_now() as i64);
    summary::build(&days, &failures, in_config, &names, &today)
        .into_iter()
        .next()
        .ok_or_else(|| ReportsView::Unavailable("no summary".into()))
}

/// The id history, newest first, read as `mta-stsd history --format json` reads it.
fn timeline(shared: &Daemon, name: &str, reports: Option<&summary::DomainReports>) -> Vec<Served> {
    let json = {
        let h = shared.history.lock().unwrap_or_else(|e| e.into_inner());
        match h.domain(name) {
            Some(d) => crate::state::show::json(name, d, &h),
            None => return Vec::new(),
        }
    };
    let empty = Vec::new();
    let policies = json["policies"].as_array().unwrap_or(&empty);
    policies
        .iter()
        .rev()
        .map(|p| {
            let id = p["id"].as_str().unwrap_or_default().to_owned();
            let last = p["last_served"].as_u64();
            Served {
                from: p["first_served"].as_u64().map(rfc3339).unwrap_or_default(),
                until: last.map_or_else(|| "now".to_owned(), rfc3339),
                current: last.is_none(),
                reports: match reports {
                    Some(r) => reports::under_id(r, &id),
                    None => "reports not available".to_owned(),
                },
                id,
            }
        })
        .collect()
}

fn drift_view(shared: &Daemon, name: &str) -> Option<DriftView> {
    let report = shared.drift_report()?;
    let dr = for_domain(&report, name)?;
    Some(DriftView {
        status: dr.status.as_str(),
        class: severity_class(dr.status),
        checked_at: rfc3339(report.checked_at),
        findings: dr
            .findings
            .iter()
            .map(|f| DriftFinding {
                severity: f.severity.as_str(),
                class: severity_class(f.severity),
                check: f.check.name(),
                message: f.message.clone(),
                hint: f.hint.clone(),
            })
            .collect(),
    })
}

fn publication_rows(shared: &Daemon, d: &Domain) -> Vec<(&'static str, String)> {
    let publication = shared.publication();
    let Some(p) = publication.domains.get(d.name.as_str()) else {
        return vec![(
            "DNS",
            "manual (no provider: publish the records below yourself)".into(),
        )];
    };
    let mut rows = vec![
        ("DNS", format!("{} via {}", p.state.as_str(), p.provider)),
        (
            "Zone",
            p.zone
                .clone()
                .unwrap_or_else(|| "(found by the provider)".into()),
        ),
    ];
    if let Some(id) = &p.published_id {
        rows.push(("Published id", id.clone()));
    }
    if let Some(at) = p.last_published {
        rows.push(("Last published", rfc3339(at)));
    }
    if let Some(e) = &p.last_error {
        rows.push(("Last DNS error", e.clone()));
    }
    rows
}

/// "acme, expires 2027-01-01" (the day is what a list needs), "self-signed", "none".
fn certificate_text(d: &Domain, config: &Config, shared: &Daemon) -> String {
    let source = match d.cert {
        CertSource::Configured(_) => "configured",
        CertSource::Acme => "acme",
        CertSource::SelfSigned => "self-signed",
        CertSource::NotNeeded => "none",
    };
    match certificate(d, config, &shared.acme) {
        Some(at) => format!("{source}, expires {}", at.get(..10).unwrap_or(&at)),
        None if d.cert == CertSource::Acme => format!("{source}, not issued yet"),
        None => source.to_owned(),
    }
}

fn severity_class(s: Severity) -> &'static str {
    match s.as_str() {
        "critical" => "bad",
        "warning" => "warn",
        "ok" => "ok",
        _ => "muted",
    }
}

fn state_class(s: &str) -> &'static str {
    match s {
        "published" => "ok",
        "failed" => "bad",
        _ => "warn",
    }
}
