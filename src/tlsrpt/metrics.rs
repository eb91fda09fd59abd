//! TLS-RPT counters for `/metrics`: reports by outcome, sessions by result type. No domain
//! labels: a million domains would be a million series.

use std::sync::atomic::Ordering;

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
pub(crate) struct TlsrptMetrics {
    reports: Family<ResultLabel, Counter>,
    sessions: Family<ResultLabel, Counter>,
}

impl TlsrptMetrics {
    pub(crate) fn register(&self, r: &mut Registry) {
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
    pub(crate) fn report(&self, result: &'static str) {
        self.reports.get_or_create(&ResultLabel { result }).inc();
    }

    /// The sessions of a stored report.
    pub(crate) fn sessions(&self, r: &Report) {
        for p in &r.policies {
            add(
                &self
                    .sessions
                    .get_or_create(&ResultLabel { result: "success" }),
                p.successful,
            );
            for f in &p.failures {
                let result = RESULT_TYPES
                    .iter()
                    .find(|t| **t == f.result_type)
                    .copied()
                    .unwrap_or("other");
                add(
                    &self.sessions.get_or_create(&ResultLabel { result }),
                    f.count,
                );
            }
        }
    }
}

/// Adds a reporter's count, saturating: a counter never runs backwards (`inc_by` wraps, and
/// two reports of 2^64 − 1 sessions took it to 2^64 − 2).
fn add(c: &Counter, n: u64) {
    let _ = c
        .inner()
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_add(n))
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_saturate() {
        let m = TlsrptMetrics::default();
        let json = br#"{"report-id":"x","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-02T00:00:00Z"},"policies":[{"summary":{"total-successful-session-count":18446744073709551615},"failure-details":[{"result-type":"sts-webpki-invalid","failed-session-count":18446744073709551615}]}]}"#;
        let r = Report::parse(json).unwrap();
        m.sessions(&r);
        m.sessions(&r);
        let get = |result| m.sessions.get_or_create(&ResultLabel { result }).get();
        assert_eq!(get("success"), u64::MAX);
        assert_eq!(get("sts-webpki-invalid"), u64::MAX);
    }
}
