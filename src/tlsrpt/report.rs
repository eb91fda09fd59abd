//! The TLS-RPT report (RFC 8460 §4) as reporters really send it: parsed leniently into
//! [`Report`], the JSON itself kept by the caller verbatim.
//!
//! Lenient where real reporters differ from the RFC (timestamps without a zone, `mx-host` as a
//! string or an array, missing `policy-string`/`sending-mta-ip`/`policy-domain`, counts that
//! do not add up, unknown result types); strict where we could not store the report at all
//! (no `report-id`, no date range, wrong JSON types).

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

mod de;

/// One report: what the store indexes; the JSON as received is kept beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub organization: String,
    pub contact: Option<String>,
    pub report_id: String,
    /// Unix seconds, UTC.
    pub start: i64,
    pub end: i64,
    pub policies: Vec<PolicyResult>,
}

/// RFC 8460 §4.4 "policies": one evaluated policy and its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyResult {
    pub policy_type: PolicyType,
    /// RFC 8460 §4.4: the policy as the sender saw it, one string per line.
    pub policy_string: Option<Vec<String>>,
    /// Lowercased, trailing dot removed; `None` when the reporter left it out.
    pub domain: Option<String>,
    pub mx_hosts: Vec<String>,
    pub successful: u64,
    pub failed: u64,
    pub failures: Vec<FailureDetail>,
}

/// RFC 8460 §4.4 "policy-type", in RFC order; anything else kept as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyType {
    Tlsa,
    Sts,
    NoPolicyFound,
    Other(String),
}

impl PolicyType {
    fn parse(s: &str) -> PolicyType {
        match s {
            "tlsa" => PolicyType::Tlsa,
            "sts" => PolicyType::Sts,
            "no-policy-found" => PolicyType::NoPolicyFound,
            other => PolicyType::Other(other.to_owned()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            PolicyType::Tlsa => "tlsa",
            PolicyType::Sts => "sts",
            PolicyType::NoPolicyFound => "no-policy-found",
            PolicyType::Other(s) => s,
        }
    }
}

/// RFC 8460 §4.4 "failure-details": one kind of failure and how often it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureDetail {
    /// RFC 8460 §4.3 result type, kept as given (unknown ones too).
    pub result_type: String,
    pub sending_mta_ip: Option<String>,
    pub receiving_mx_hostname: Option<String>,
    pub receiving_mx_helo: Option<String>,
    pub receiving_ip: Option<String>,
    pub count: u64,
    pub additional_information: Option<String>,
    pub failure_reason_code: Option<String>,
}

/// RFC 8460 §4.3: result types that concern MTA-STS itself (what blocks `enforce`).
pub fn is_sts_failure(result_type: &str) -> bool {
    result_type.starts_with("sts-")
        || matches!(
            result_type,
            "starttls-not-supported"
                | "certificate-host-mismatch"
                | "certificate-expired"
                | "certificate-not-trusted"
                | "validation-failure"
        )
}

/// Why a report could not be read; the message names the JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// The most policies one report may carry: real ones carry a handful (one per policy domain
/// and type); beyond this the report is refused (issue 23: 1.4M `{}` in a 4.3 KB gzip).
pub(super) const MAX_POLICIES: usize = 100;
/// The most failure-details one policy may carry (real ones: one per result type and MX).
pub(super) const MAX_FAILURES: usize = 1_000;
/// The most lines of a `policy-string`, or entries of `mx-host`.
pub(super) const MAX_LINES: usize = 1_000;
/// The longest `report-id` kept (RFC 8460 §4.4 sets none; real ones are under 100 bytes).
pub(super) const MAX_REPORT_ID: usize = 256;

impl Report {
    /// Reads the report straight into its fields (no JSON tree), refusing it at the first
    /// list element past its cap.
    pub fn parse(json: &[u8]) -> Result<Report, Malformed> {
        use serde::de::DeserializeSeed;
        let mut d = serde_json::Deserializer::from_slice(json);
        let r = de::TopSeed
            .deserialize(&mut d)
            .and_then(|r| d.end().map(|()| r))
            .map_err(|e| {
                if e.is_syntax() || e.is_eof() {
                    Malformed(format!("not JSON: {e}"))
                } else {
                    Malformed(e.to_string())
                }
            })?;
        Ok(r)
    }
}

/// How far in the future a report's dates may be: clocks differ, a day's report may be sent
/// before its day ends, but a report about next year is not evidence.
pub(super) const FUTURE_SLACK: i64 = 86_400;

impl Report {
    /// Refuses a report whose range starts or ends more than [`FUTURE_SLACK`] after `now`
    /// (unix seconds): issue 23's reports dated 2099 escaped retention and counted as days.
    pub(crate) fn check_dates(&self, now: i64) -> Result<(), Malformed> {
        let latest = now.saturating_add(FUTURE_SLACK);
        if self.start > latest || self.end > latest {
            return Err(Malformed(format!(
                "date-range ends more than {FUTURE_SLACK} seconds in the future"
            )));
        }
        Ok(())
    }
}

/// A report's text as we keep it: NUL (legal in JSON as `\u0000`) becomes U+FFFD, since
/// PostgreSQL's text cannot hold it and would refuse the report at every resend. The JSON
/// stored beside keeps the exact original.
fn text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// RFC 8460 §4.4: RFC 3339 date-time; real reporters also omit the zone (taken as UTC) or
/// write a space for the `T`.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    let t = s.replacen(' ', "T", 1);
    if let Ok(t) = OffsetDateTime::parse(&t, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let zoneless = format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(&t, &zoneless)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        for (s, want) in [
            ("2024-02-22T00:00:00Z", 1_708_560_000),
            ("2024-02-22T00:00:00+01:00", 1_708_556_400),
            ("2024-02-22T00:00:00", 1_708_560_000),
            ("2024-02-22 00:00:00", 1_708_560_000),
            ("2024-02-22T00:00:00.123Z", 1_708_560_000),
            ("2024-02-22T00:00:00.5", 1_708_560_000),
        ] {
            assert_eq!(parse_time(s), Some(want), "{s}");
        }
        for s in ["", "yesterday", "2024-02-22", "2024-13-01T00:00:00Z"] {
            assert_eq!(parse_time(s), None, "{s}");
        }
    }

    #[test]
    fn malformed() {
        let range = r#""date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-02T00:00:00Z"}"#;
        for (json, says) in [
            ("{\"report-id\": \"x\", \"date-range\": {".to_owned(), "EOF while parsing"),
            ("{ x".to_owned(), "not JSON"),
            ("[]".into(), "expected the report as a JSON object"),
            ("{\"report-id\":\"x\"}".into(), "no date-range"),
            (
                r#"{"report-id":"x","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":7}}"#.into(),
                "date-range: end-datetime: invalid type: integer `7`, expected a string",
            ),
            (
                r#"{"report-id":"x","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"soon"}}"#.into(),
                "end-datetime \"soon\" is not a date-time",
            ),
            (format!("{{{range}}}"), "no report-id"),
            (
                format!(r#"{{"report-id":"x",{range},"policies":[{{"summary":{{"total-successful-session-count":"3"}}}}]}}"#),
                "policies[0]: summary: total-successful-session-count: invalid type: string \"3\", expected a non-negative integer at line 1",
            ),
            (
                format!(r#"{{"report-id":"x",{range},"policies":[{{"failure-details":[{{"failed-session-count":-1}}]}}]}}"#),
                "policies[0]: failure-details[0]: failed-session-count: invalid type: integer `-1`, expected a non-negative integer",
            ),
            (
                format!(r#"{{"report-id":"x",{range},"policies":[{{"policy":{{"mx-host":["a",null]}}}}]}}"#),
                "policies[0]: policy: mx-host[1]: an element is not a string",
            ),
            (
                format!(r#"{{"report-id":"{}",{range}}}"#, "x".repeat(257)),
                "report-id is longer than 256 bytes",
            ),
            (format!(r#"{{"report-id":"x",{range}}} {{}}"#), "trailing characters"),
        ] {
            let e = Report::parse(json.as_bytes()).unwrap_err();
            assert!(e.0.contains(says), "{e} should say {says}");
        }
        let id = "x".repeat(256);
        let ok = format!(r#"{{"report-id":"{id}",{range},"policies":null}}"#);
        assert_eq!(Report::parse(ok.as_bytes()).unwrap().report_id, id);
    }

    /// Issue 23: one policy then 1.4M `{}` (4.3 KB gzipped) cost 530 MB; refused at the
    /// 101st policy, as are too many failure-details or policy-string lines.
    #[test]
    fn lists_are_capped_while_read() {
        let head = r#"{"report-id":"x","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-02T00:00:00Z"},"#;
        let bomb = format!(
            "{head}\"policies\":[{{\"policy\":{{\"policy-domain\":\"example.org\"}}}}{}]}}",
            ",{}".repeat(1_400_000)
        );
        let t = std::time::Instant::now();
        let e = Report::parse(bomb.as_bytes()).unwrap_err();
        assert!(e.0.contains("policies: more than 100 elements"), "{e}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            t.elapsed()
        );
        let policies = |n: usize| format!("{head}\"policies\":[{}]}}", vec!["{}"; n].join(","));
        assert_eq!(
            Report::parse(policies(100).as_bytes())
                .unwrap()
                .policies
                .len(),
            100
        );
        assert!(Report::parse(policies(101).as_bytes()).is_err());
        let failures = |n: usize| {
            format!(
                "{head}\"policies\":[{{\"failure-details\":[{}]}}]}}",
                vec!["{}"; n].join(",")
            )
        };
        assert_eq!(
            Report::parse(failures(1000).as_bytes()).unwrap().policies[0]
                .failures
                .len(),
            1000
        );
        let e = Report::parse(failures(1001).as_bytes()).unwrap_err();
        assert!(
            e.0.contains("policies[0]: failure-details: more than 1000"),
            "{e}"
        );
        let lines = format!(
            "{head}\"policies\":[{{\"policy\":{{\"policy-string\":[{}]}}}}]}}",
            vec!["\"\""; 1001].join(",")
        );
        assert!(Report::parse(lines.as_bytes())
            .unwrap_err()
            .0
            .contains("policy-string: more than 1000"));
    }

    fn fixture(name: &str) -> Report {
        let path = format!(
            "{}/tests/fixtures/tlsrpt/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        Report::parse(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn rfc8460_example() {
        let r = fixture("rfc8460.json");
        assert_eq!(r.organization, "Company-X");
        assert_eq!(r.report_id, "5065427c-23d3-47ca-b6e0-946ea0e8c4be");
        assert_eq!(r.end - r.start, 86_399);
        let p = &r.policies[0];
        assert_eq!(p.policy_type, PolicyType::Sts);
        assert_eq!(p.mx_hosts, ["*.mail.example.org"]);
        assert_eq!(p.policy_string.as_ref().unwrap()[1], "mode: testing");
        assert_eq!((p.successful, p.failed), (5326, 303));
        let counts: Vec<_> = p
            .failures
            .iter()
            .map(|f| (f.result_type.as_str(), f.count))
            .collect();
        assert_eq!(
            counts,
            [
                ("certificate-expired", 100),
                ("starttls-not-supported", 200),
                ("validation-failure", 3)
            ]
        );
        assert_eq!(p.failures[1].receiving_ip.as_deref(), Some("203.0.113.56"));
        assert_eq!(
            p.failures[2].failure_reason_code.as_deref(),
            Some("X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED")
        );
    }

    #[test]
    fn google() {
        let r = fixture("google.json");
        assert_eq!(r.organization, "Google Inc.");
        let p = &r.policies[0];
        assert_eq!(p.domain.as_deref(), Some("example.net"));
        assert!(p.mx_hosts.is_empty());
        assert_eq!(
            p.failures[0].receiving_mx_hostname.as_deref(),
            Some("mail.example.net")
        );
    }

    #[test]
    fn microsoft_several_policies_mx_array_no_policy_found() {
        let r = fixture("microsoft.json");
        assert_eq!(r.policies.len(), 2);
        assert_eq!(r.policies[0].mx_hosts, ["mail.example.org"]);
        assert!(r.policies[0].failures.is_empty());
        assert_eq!(r.policies[1].policy_type, PolicyType::NoPolicyFound);
        assert_eq!(r.policies[1].domain.as_deref(), Some("lists.example.org"));
        assert_eq!(r.policies[1].policy_string, None);
    }

    #[test]
    fn mailru_counts_that_do_not_add_up() {
        let r = fixture("mailru.json");
        let p = &r.policies[0];
        assert_eq!(p.policy_string, None);
        assert_eq!(p.failed, 1);
        assert_eq!(p.failures.iter().map(|f| f.count).sum::<u64>(), 2);
        assert!(p.failures.iter().all(|f| f.sending_mta_ip.is_none()));
        assert_eq!(r.start, 1_708_560_000);
    }

    #[test]
    fn zoneless_empty_fields_tlsa_unknown_type() {
        let r = fixture("zoneless.json");
        assert_eq!(r.start, 1_717_200_000);
        let sts = &r.policies[0];
        assert_eq!(sts.domain.as_deref(), Some("example.com"));
        let f = &sts.failures[0];
        assert_eq!(
            (f.sending_mta_ip.as_ref(), f.receiving_mx_hostname.as_ref()),
            (None, None)
        );
        assert_eq!(f.failure_reason_code.as_deref(), Some("no-policy-served"));
        let tlsa = &r.policies[1];
        assert_eq!(tlsa.policy_type, PolicyType::Tlsa);
        assert_eq!(tlsa.failures[0].result_type, "tls-version-too-old");
        assert_eq!(
            tlsa.failures[0].receiving_mx_hostname.as_deref(),
            Some("mail.example.com")
        );
        assert!(!is_sts_failure("tls-version-too-old"));
        assert!(is_sts_failure("sts-policy-fetch-error"));
    }

    #[test]
    fn future_dates_refused() {
        let r = fixture("google.json");
        assert!(r.check_dates(r.end).is_ok());
        assert!(r.check_dates(r.end - FUTURE_SLACK).is_ok());
        let e = r.check_dates(r.end - FUTURE_SLACK - 1).unwrap_err();
        assert!(e.0.contains("in the future"), "{e}");
    }

    #[test]
    fn one_hundred_policies() {
        let one = r#"{"policy":{"policy-type":"sts","policy-domain":"example.org"},"summary":{"total-successful-session-count":1,"total-failure-session-count":0}}"#;
        let json = format!(
            r#"{{"report-id":"big","date-range":{{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-01T23:59:59Z"}},"policies":[{}]}}"#,
            vec![one; 100].join(",")
        );
        let r = Report::parse(json.as_bytes()).unwrap();
        assert_eq!(r.policies.len(), 100);
        assert_eq!(r.organization, "");
    }
}
