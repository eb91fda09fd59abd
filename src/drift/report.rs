//! Drift findings, their severities, and the report in text and JSON, with the
//! monitoring-plugin exit codes (0 OK, 1 warning, 2 critical, 3 could not check).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Ordered by how much attention a finding needs; `Unknown` means "could not check".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    Ok,
    Warning,
    Unknown,
    Critical,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Unknown => "unknown",
            Severity::Critical => "critical",
        }
    }

    /// Nagios/Icinga plugin convention.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Severity::Ok => "OK",
            Severity::Warning => "WARNING",
            Severity::Unknown => "UNKNOWN",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl Check {
    /// The stable name, as in the JSON.
    pub(crate) fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

impl Check {
    /// The checks of DNS records alone (no HTTPS, no SMTP): a domain's "DNS state".
    pub(crate) fn is_dns(self) -> bool {
        matches!(
            self,
            Check::StsTxt
                | Check::NsAgreement
                | Check::PolicyHost
                | Check::Tlsrpt
                | Check::Mx
                | Check::Delegation
        )
    }
}

/// The checks, each a stable name in the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Check {
    StsTxt,
    NsAgreement,
    PolicyHost,
    Tlsrpt,
    PolicyFetch,
    Certificate,
    Mx,
    MxTls,
    Dane,
    /// A delegated domain's CNAMEs in its owner's zone (RFC 8461 §8.2).
    Delegation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Finding {
    pub severity: Severity,
    pub check: Check,
    /// What the finding is about where one check finds several (an MX address); with the
    /// domain and check, the finding's identity across runs. Empty: the message is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// What was found, in one line.
    pub message: String,
    /// How to fix it, in one line.
    pub hint: String,
    /// When this finding (by identity) was first seen, Unix seconds.
    #[serde(default)]
    pub since: u64,
}

impl Finding {
    pub(crate) fn new(
        severity: Severity,
        check: Check,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Finding {
            severity,
            check,
            subject: String::new(),
            message: message.into(),
            hint: hint.into(),
            since: 0,
        }
    }

    /// A check that passed, and what it looked at (for `drift --verbose`).
    pub(crate) fn passed(check: Check, looked_at: impl Into<String>) -> Self {
        Finding::new(Severity::Ok, check, looked_at, "")
    }

    /// Names what the finding is about, so that its identity survives a changed message.
    pub(crate) fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// Subject, or the message where there is none.
    pub(crate) fn key(&self) -> &str {
        if self.subject.is_empty() {
            &self.message
        } else {
            &self.subject
        }
    }
}

/// A check that found nothing wrong, and what it looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Passed {
    pub check: Check,
    pub looked_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DomainReport {
    pub domain: String,
    pub status: Severity,
    pub findings: Vec<Finding>,
    /// Only with `drift --verbose`; never kept in the state directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed: Vec<Passed>,
}

impl DomainReport {
    /// The worst finding of the DNS checks ([`Check::is_dns`]).
    pub(crate) fn dns_state(&self) -> Severity {
        self.findings
            .iter()
            .filter(|f| f.check.is_dns())
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }

    /// Findings of severity `ok` are checks that passed: kept apart, in check order.
    pub(crate) fn new(domain: String, findings: Vec<Finding>) -> Self {
        let (ok, mut findings): (Vec<Finding>, Vec<Finding>) = findings
            .into_iter()
            .partition(|f| f.severity == Severity::Ok);
        let mut passed: Vec<Passed> = ok
            .into_iter()
            .map(|f| Passed {
                check: f.check,
                looked_at: f.message,
            })
            .collect();
        passed.sort_by_key(|p| p.check);
        findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.check.cmp(&b.check)));
        let status = findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok);
        DomainReport {
            domain,
            status,
            findings,
            passed,
        }
    }
}

/// The JSON schema is versioned; see README "Drift report".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Report {
    pub schema: u32,
    pub checked_at: u64,
    pub status: Severity,
    pub exit_code: u8,
    pub counts: Counts,
    pub domains: Vec<DomainReport>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Counts {
    pub domains: usize,
    pub critical: usize,
    pub warning: usize,
    pub unknown: usize,
}

impl Report {
    pub(crate) fn new(checked_at: u64, mut domains: Vec<DomainReport>) -> Self {
        domains.sort_by(|a, b| a.domain.cmp(&b.domain));
        let mut counts = Counts {
            domains: domains.len(),
            ..Counts::default()
        };
        for f in domains.iter().flat_map(|d| &d.findings) {
            match f.severity {
                Severity::Critical => counts.critical += 1,
                Severity::Warning => counts.warning += 1,
                Severity::Unknown => counts.unknown += 1,
                Severity::Ok => {}
            }
        }
        let status = domains
            .iter()
            .map(|d| d.status)
            .max()
            .unwrap_or(Severity::Ok);
        Report {
            schema: 1,
            checked_at,
            status,
            exit_code: status.exit_code(),
            counts,
            domains,
        }
    }

    /// Drops what the checks that passed looked at (kept only for `drift --verbose`).
    pub(crate) fn without_passed(mut self) -> Self {
        for d in &mut self.domains {
            d.passed = Vec::new();
        }
        self
    }

    /// First line: the plugin summary; then one line per finding, grouped by domain, worst
    /// first, each domain's passed checks (if kept) after its findings.
    pub(crate) fn text(&self) -> String {
        let c = &self.counts;
        let mut out = format!(
            "MTA-STS {}: {} critical, {} warning, {} could not check, in {} domains\n",
            self.status.label(),
            c.critical,
            c.warning,
            c.unknown,
            c.domains
        );
        for d in &self.domains {
            for f in &d.findings {
                let _ = writeln!(
                    out,
                    "{} {} [{}] {} (fix: {})",
                    f.severity.label(),
                    d.domain,
                    serde_json::to_value(f.check)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    f.message,
                    f.hint
                );
            }
            for p in &d.passed {
                let _ = writeln!(out, "OK {} [{}] {}", d.domain, p.check.name(), p.looked_at);
            }
        }
        out
    }

    #[allow(clippy::expect_used, reason = "the report serializes")]
    pub(crate) fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_wins_and_unknown_outranks_warning() {
        let f = |s| Finding::new(s, Check::Mx, "m", "h");
        let r = Report::new(
            0,
            vec![
                DomainReport::new(
                    "b.example".into(),
                    vec![f(Severity::Warning), f(Severity::Unknown)],
                ),
                DomainReport::new("a.example".into(), vec![]),
            ],
        );
        assert_eq!(r.status, Severity::Unknown);
        assert_eq!(r.exit_code, 3);
        assert_eq!(r.domains[0].domain, "a.example");
        assert_eq!(r.domains[1].findings[0].severity, Severity::Unknown);
        let r = Report::new(
            0,
            vec![DomainReport::new(
                "c".into(),
                vec![f(Severity::Unknown), f(Severity::Critical)],
            )],
        );
        assert_eq!(r.exit_code, 2);
        assert!(r.text().starts_with(
            "MTA-STS CRITICAL: 1 critical, 0 warning, 1 could not check, in 1 domains\n"
        ));
        assert!(r.text().contains("CRITICAL c [mx] m (fix: h)"));
    }
}
