//! Which of our policy ids a report's policy was about: the `policy-string` equal to a body
//! we served, else the id in force for the domain over the report's whole date range.

use super::report::{PolicyResult, PolicyType, Report};

/// What we served, as far as the caller knows it (the live config; the id history later).
pub(crate) trait Served {
    /// The id of the body `lines` (line endings ignored) served for `domain`, if any.
    fn id_for_body(&self, domain: &str, lines: &[String]) -> Option<String>;
    /// The id served for `domain` throughout `[start, end]` (unix seconds), if one was.
    fn id_in_force(&self, domain: &str, start: i64, end: i64) -> Option<String>;
}

/// One entry per `report.policies`: the matched id, `None` for a policy not about MTA-STS,
/// without a domain, or about a body we never served.
pub(crate) fn match_ids(served: &impl Served, report: &Report) -> Vec<Option<String>> {
    report
        .policies
        .iter()
        .map(|p| match_one(served, report, p))
        .collect()
}

fn match_one(served: &impl Served, report: &Report, p: &PolicyResult) -> Option<String> {
    if p.policy_type != PolicyType::Sts {
        return None;
    }
    let domain = p.domain.as_deref()?;
    match &p.policy_string {
        // RFC 8460 §4.4: "policy-string" is the policy as the sender fetched it: the body
        // decides, even when the id in force since changed.
        Some(lines) => served.id_for_body(domain, lines),
        None => served.id_in_force(domain, report.start, report.end),
    }
}

/// Whether a served body (CRLF lines) is the one a reporter quoted line by line.
pub fn same_body(body: &[u8], lines: &[String]) -> bool {
    let Ok(body) = std::str::from_utf8(body) else {
        return false;
    };
    let ours = body.lines().map(str::trim).filter(|l| !l.is_empty());
    let theirs = lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty());
    ours.eq(theirs)
}

/// The id history of `[state] dir` (`state::history`): every body a domain served, and when.
impl Served for crate::state::history::History {
    fn id_for_body(&self, domain: &str, lines: &[String]) -> Option<String> {
        let h = self.domain(domain)?;
        h.served().iter().rev().find_map(|e| {
            let body = self.body(&e.id)?;
            same_body(body.as_bytes(), lines).then(|| e.id.to_string())
        })
    }

    fn id_in_force(&self, domain: &str, start: i64, end: i64) -> Option<String> {
        let h = self.domain(domain)?;
        h.served()
            .iter()
            .find(|e| e.first as i64 <= start && e.last.is_none_or(|l| l as i64 >= end))
            .map(|e| e.id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One {
        body: &'static str,
        since: i64,
    }

    impl Served for One {
        fn id_for_body(&self, domain: &str, lines: &[String]) -> Option<String> {
            (domain == "example.org" && same_body(self.body.as_bytes(), lines)).then(|| "A".into())
        }
        fn id_in_force(&self, domain: &str, start: i64, _end: i64) -> Option<String> {
            (domain == "example.org" && self.since <= start).then(|| "A".into())
        }
    }

    fn report(json: &str) -> Report {
        Report::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn by_body_then_by_date() {
        let served = One {
            body: "version: STSv1\r\nmode: testing\r\nmx: *.mail.example.org\r\nmax_age: 86400\r\n",
            since: 0,
        };
        let path = format!(
            "{}/tests/fixtures/tlsrpt/rfc8460.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let r = report(&std::fs::read_to_string(path).unwrap());
        assert_eq!(match_ids(&served, &r), [Some("A".to_owned())]);
        // Another body quoted: not ours, whatever is in force.
        let other = One {
            body: "version: STSv1\r\nmode: enforce\r\n",
            since: 0,
        };
        assert_eq!(match_ids(&other, &r), [None]);
        // No policy-string: the id in force over the range, if it was in force at its start.
        let no_string = r#"{"report-id":"x","date-range":{"start-datetime":"2024-01-01T00:00:00Z","end-datetime":"2024-01-01T23:59:59Z"},"policies":[{"policy":{"policy-type":"sts","policy-domain":"example.org"}},{"policy":{"policy-type":"tlsa","policy-domain":"example.org"}},{"policy":{"policy-type":"sts"}}]}"#;
        let r = report(no_string);
        assert_eq!(match_ids(&served, &r), [Some("A".to_owned()), None, None]);
        let later = One {
            since: r.start + 3600,
            ..served
        };
        assert_eq!(match_ids(&later, &r), [None, None, None]);
    }
}
