//! TLS-RPT counters for `/metrics`: reports by outcome, sessions by result type. No domain
//! labels: a million domains would be a million series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::report::Report;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// RFC 8460 §4.3 result types, in RFC order; a reporter's other ones count as `other`.
const RESULT_TYPES: &[&str] = &[
    "starttls-not-supported",
    "certificate-host-mismatch",
    "certificate-expired",
    "certificate-not-trusted",
    "validation-failure",
    "tlsa-invalid",
    "dnssec-invalid",
    "dane-required",
    "sts-policy-fetch-error",
    "sts-policy-invalid",
    "sts-webpki-invalid",
];

/// A clone counts into the same series (each family is shared behind an `Arc`).
#[derive(Debug, Default, Clone)]
pub struct TlsrptMetrics {
    reports: Family<ResultLabel, Counter>,
    sessions: Family<ResultLabel, Counter>,
}

impl TlsrptMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "tlsrpt_reports",
            "TLS reports received, by result (stored, duplicate, or why rejected)",
            self.reports.clone(),
        );
        r.register(
            "tlsrpt_sessions",
            "Sessions in stored TLS reports, by result type (success, RFC 8460 §4.3 types, other)",
            self.sessions.clone(),
        );
    }

    /// One report's outcome: `stored`, `duplicate`, or the rejection reason.
    pub fn report(&self, result: &'static str) {
        self.reports.get_or_create(&ResultLabel { result }).inc();
    }

    /// The sessions of a stored report.
    pub fn sessions(&self, r: &Report) {
        for p in &r.policies {
            self.sessions
                .get_or_create(&ResultLabel { result: "success" })
                .inc_by(p.successful);
            for f in &p.failures {
                let result = RESULT_TYPES
                    .iter()
                    .find(|t| **t == f.result_type)
                    .copied()
                    .unwrap_or("other");
                self.sessions
                    .get_or_create(&ResultLabel { result })
                    .inc_by(f.count);
            }
        }
    }
}
