//! The TLS-RPT report (RFC 8460 §4) as reporters really send it: parsed leniently into
//! [`Report`], the JSON itself kept by the caller verbatim.
//!
//! Lenient where real reporters differ from the RFC (timestamps without a zone, `mx-host` as a
//! string or an array, missing `policy-string`/`sending-mta-ip`/`policy-domain`, counts that
//! do not add up, unknown result types); strict where we could not store the report at all
//! (no `report-id`, no date range, wrong JSON types).

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

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

    pub fn as_str(&self) -> &str {
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

fn bad(msg: impl Into<String>) -> Malformed {
    Malformed(msg.into())
}

impl Report {
    pub fn parse(json: &[u8]) -> Result<Report, Malformed> {
        let v: Value = serde_json::from_slice(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let top = v
            .as_object()
            .ok_or_else(|| bad("the report is not a JSON object"))?;
        let range = top
            .get("date-range")
            .ok_or_else(|| bad("no `date-range`"))?
            .as_object()
            .ok_or_else(|| bad("`date-range` is not an object"))?;
        let start = timestamp(range, "start-datetime")?;
        let end = timestamp(range, "end-datetime")?;
        let report_id = opt_str(top, "report-id")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("no `report-id`"))?;
        let policies = match top.get("policies") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, p)| policy(p).map_err(|e| bad(format!("policies[{i}]: {}", e.0))))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("`policies` is not an array")),
        };
        Ok(Report {
            organization: opt_str(top, "organization-name")?.unwrap_or_default(),
            contact: opt_str(top, "contact-info")?,
            report_id,
            start,
            end,
            policies,
        })
    }
}

fn policy(v: &Value) -> Result<PolicyResult, Malformed> {
    let o = v.as_object().ok_or_else(|| bad("not an object"))?;
    let empty = Map::new();
    let p = match o.get("policy") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => &empty,
        Some(_) => return Err(bad("`policy` is not an object")),
    };
    let summary = match o.get("summary") {
        Some(Value::Object(s)) => s,
        None | Some(Value::Null) => &empty,
        Some(_) => return Err(bad("`summary` is not an object")),
    };
    let failures = match o.get("failure-details") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, f)| failure(f).map_err(|e| bad(format!("failure-details[{i}]: {}", e.0))))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("`failure-details` is not an array")),
    };
    Ok(PolicyResult {
        policy_type: PolicyType::parse(&opt_str(p, "policy-type")?.unwrap_or_default()),
        policy_string: match p.get("policy-string") {
            None | Some(Value::Null) => None,
            Some(v) => Some(strings(v).map_err(|e| bad(format!("policy-string: {}", e.0)))?),
        },
        domain: opt_str(p, "policy-domain")?
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty()),
        mx_hosts: match p.get("mx-host") {
            None | Some(Value::Null) => Vec::new(),
            // RFC 8460 §4.4's example has a string; the schema and most reporters an array.
            Some(v) => strings(v).map_err(|e| bad(format!("mx-host: {}", e.0)))?,
        },
        successful: count(summary, "total-successful-session-count")?,
        failed: count(summary, "total-failure-session-count")?,
        failures,
    })
}

fn failure(v: &Value) -> Result<FailureDetail, Malformed> {
    let o = v.as_object().ok_or_else(|| bad("not an object"))?;
    // Some reporters send "" for what they do not know: the same as absent.
    let text = |k: &str| Ok::<_, Malformed>(opt_str(o, k)?.filter(|s| !s.is_empty()));
    Ok(FailureDetail {
        result_type: opt_str(o, "result-type")?.unwrap_or_default(),
        sending_mta_ip: text("sending-mta-ip")?,
        receiving_mx_hostname: text("receiving-mx-hostname")?
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase()),
        receiving_mx_helo: text("receiving-mx-helo")?,
        receiving_ip: text("receiving-ip")?,
        count: count(o, "failed-session-count")?,
        additional_information: text("additional-information")?,
        failure_reason_code: text("failure-reason-code")?,
    })
}

/// A report's text as we keep it: NUL (legal in JSON as `\u0000`) becomes U+FFFD, since
/// PostgreSQL's text cannot hold it and would refuse the report at every resend. The JSON
/// stored beside keeps the exact original.
fn text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn opt_str(o: &Map<String, Value>, key: &str) -> Result<Option<String>, Malformed> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(text(s))),
        Some(_) => Err(bad(format!("`{key}` is not a string"))),
    }
}

/// A string or an array of strings.
fn strings(v: &Value) -> Result<Vec<String>, Malformed> {
    match v {
        Value::String(s) => Ok(vec![text(s)]),
        Value::Array(a) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(text)
                    .ok_or_else(|| bad("an element is not a string"))
            })
            .collect(),
        _ => Err(bad("neither a string nor an array of strings")),
    }
}

/// A session count: absent is 0 (some reporters leave out zero counts).
fn count(o: &Map<String, Value>, key: &str) -> Result<u64, Malformed> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| bad(format!("`{key}` is not a non-negative integer"))),
        Some(_) => Err(bad(format!("`{key}` is not a number"))),
    }
}

/// RFC 8460 §4.4: RFC 3339 date-time; real reporters also omit the zone (taken as UTC) or
/// write a space for the `T`.
fn timestamp(o: &Map<String, Value>, key: &str) -> Result<i64, Malformed> {
    let s = opt_str(o, key)?.ok_or_else(|| bad(format!("date-range: no `{key}`")))?;
    parse_time(s.trim()).ok_or_else(|| bad(format!("date-range: `{key}` {s:?} is not a date-time")))
}

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
        for (json, says) in [
            (&b"{\"report-id\": \"x\", \"date-range\": {"[..], "not JSON"),
            (b"[]", "not a JSON object"),
            (b"{\"report-id\":\"x\"}", "date-range"),
            (
                br#"{"report-id":"x","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":7}}"#,
                "end-datetime",
            ),
            (
                br#"{"date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-02T00:00:00Z"}}"#,
                "report-id",
            ),
            (
                br#"{"report-id":"x","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-02T00:00:00Z"},"policies":[{"summary":{"total-successful-session-count":"3"}}]}"#,
                "policies[0]: `total-successful-session-count` is not a number",
            ),
            (
                br#"{"report-id":"x","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-02T00:00:00Z"},"policies":[{"failure-details":[{"failed-session-count":-1}]}]}"#,
                "failure-details[0]: `failed-session-count` is not a non-negative integer",
            ),
        ] {
            let e = Report::parse(json).unwrap_err();
            assert!(e.0.contains(says), "{e} should say {says}");
        }
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
    fn many_policies() {
        let one = r#"{"policy":{"policy-type":"sts","policy-domain":"example.org"},"summary":{"total-successful-session-count":1,"total-failure-session-count":0}}"#;
        let json = format!(
            r#"{{"report-id":"big","date-range":{{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-01T23:59:59Z"}},"policies":[{}]}}"#,
            vec![one; 10_000].join(",")
        );
        let r = Report::parse(json.as_bytes()).unwrap();
        assert_eq!(r.policies.len(), 10_000);
        assert_eq!(r.organization, "");
    }
}
