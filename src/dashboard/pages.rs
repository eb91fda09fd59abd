//! What each page shows, as the templates read it: filled by the daemon from its live state.

use askama::Template;

use super::chart::{Chart, DayCount};

/// The summary line on top of `/`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    pub domains: usize,
    /// Domains by mode (`enforce`, `testing`, `none`).
    pub modes: Vec<(&'static str, usize)>,
    /// Domains by DNS publication state (`published`, `pending`, `failed`, `manual`).
    pub publication: Vec<(&'static str, usize)>,
    /// The last drift run, e.g. "2 critical, 1 warning" or "not run yet".
    pub drift: String,
    pub reload_ok: bool,
    pub reload_at: String,
    /// The TLS-RPT store: "open", "not configured" or why it cannot be read.
    pub store: String,
    /// The state store: its engine, and when it fails, why and how many events wait.
    pub state: String,
    pub state_ok: bool,
}

/// One row of `/`.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub name: String,
    pub mode: &'static str,
    pub id: String,
    pub publication: String,
    /// A CSS class: `ok`, `warn`, `bad` or `muted`.
    pub publication_class: &'static str,
    pub certificate: String,
    pub drift: String,
    pub drift_class: &'static str,
    /// e.g. "99.2% of 1200", or "no reports".
    pub tlsrpt: String,
}

#[derive(Template)]
#[template(path = "index.html")]
pub(crate) struct IndexPage {
    pub css: &'static str,
    pub summary: Summary,
    /// The search text as asked (shown back in the search box).
    pub query: String,
    pub prefix: bool,
    pub rows: Vec<Row>,
    pub matches: usize,
    pub page: usize,
    pub pages: usize,
    pub prev: Option<String>,
    pub next: Option<String>,
    /// The days the TLS-RPT column sums over.
    pub days: i64,
}

/// One id in the timeline, newest first.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub id: String,
    pub from: String,
    pub until: String,
    pub current: bool,
    /// The reports matched to this id in the window, in words.
    pub reports: String,
}

#[derive(Debug, Clone)]
pub(crate) struct DriftFinding {
    pub severity: &'static str,
    pub class: &'static str,
    pub check: String,
    pub message: String,
    pub hint: String,
}

#[derive(Debug, Clone)]
pub(crate) struct DriftView {
    pub status: &'static str,
    pub class: &'static str,
    pub checked_at: String,
    pub findings: Vec<DriftFinding>,
}

/// The TLS-RPT part of a domain page.
#[derive(Debug, Clone)]
pub(crate) enum ReportsView {
    /// No `[tlsrpt]`.
    Off,
    Unavailable(String),
    Shown(Box<Reports>),
}

/// The reports of the window, as chart, table and breakdowns.
#[derive(Debug, Clone)]
pub(crate) struct Reports {
    pub since: String,
    pub until: String,
    pub chart: Chart,
    /// The chart in words (its text alternative).
    pub summary: String,
    pub days: Vec<DayCount>,
    /// Failed sessions by result type: (type, an MTA-STS type, count), most first.
    pub by_type: Vec<(String, bool, i64)>,
    /// Failed sessions by receiving MX, most first.
    pub by_mx: Vec<(String, i64)>,
    /// Sessions by reporting organisation: (organisation, successful, failed).
    pub by_org: Vec<(String, i64, i64)>,
}

/// The enforce-readiness verdict of a domain in `testing`.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub ready: bool,
    pub reasons: Vec<String>,
}

#[derive(Template)]
#[template(path = "domain.html")]
pub(crate) struct DomainPage {
    pub css: &'static str,
    pub name: String,
    pub mode: &'static str,
    pub id: String,
    pub served_since: String,
    pub lifecycle: String,
    pub certificate: String,
    /// DNS publication, as label and value.
    pub publication: Vec<(&'static str, String)>,
    pub records: Vec<String>,
    pub timeline: Vec<Served>,
    pub drift: Option<DriftView>,
    pub days: i64,
    pub reports: ReportsView,
    pub readiness: Option<Verdict>,
    /// Why there is no verdict.
    pub readiness_note: String,
}
