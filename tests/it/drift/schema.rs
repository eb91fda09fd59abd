//! The report checked against README "Drift checks": the JSON schema, the text lines, and
//! the `drift` run they come from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::harness::{run_with_config, Output};

pub const SEVERITIES: [&str; 4] = ["ok", "warning", "unknown", "critical"];
pub const CHECKS: [&str; 9] = [
    "sts-txt",
    "ns-agreement",
    "policy-host",
    "tlsrpt",
    "policy-fetch",
    "certificate",
    "mx",
    "mx-tls",
    "dane",
];

/// How much attention a severity needs: unknown ("could not check") outranks warning.
pub fn rank(severity: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|s| *s == severity)
        .unwrap_or_else(|| panic!("{severity:?} is not a severity"))
}

/// The monitoring-plugin exit code of a status.
pub fn plugin_code(status: &str) -> u64 {
    match status {
        "ok" => 0,
        "warning" => 1,
        "critical" => 2,
        "unknown" => 3,
        other => panic!("{other:?} is not a status"),
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[track_caller]
pub fn keys(v: &Value, what: &str) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

#[track_caller]
pub fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[track_caller]
pub fn uint(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what} is not a non-negative integer: {v}"))
}

#[track_caller]
pub fn string<'v>(v: &'v Value, what: &str) -> &'v str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

/// The report against README "Drift checks", schema 1: every field present (and no other) with
/// its type and allowed values, and the derived ones (status, exit code, counts, order)
/// consistent with the findings.
#[track_caller]
pub fn validate_schema(r: &Value) {
    assert_eq!(
        keys(r, "the report"),
        set(&[
            "schema",
            "checked_at",
            "status",
            "exit_code",
            "counts",
            "domains"
        ])
    );
    assert_eq!(uint(&r["schema"], "schema"), 1);
    let checked_at = uint(&r["checked_at"], "checked_at");
    let now = unix_now();
    assert!(
        checked_at + 600 >= now && checked_at <= now + 60,
        "checked_at {checked_at} is not about now ({now})"
    );
    let status = string(&r["status"], "status");
    assert!(SEVERITIES.contains(&status), "status {status:?}");
    assert_eq!(uint(&r["exit_code"], "exit_code"), plugin_code(status));
    let counts = &r["counts"];
    assert_eq!(
        keys(counts, "counts"),
        set(&["domains", "critical", "warning", "unknown"])
    );
    let domains = r["domains"]
        .as_array()
        .unwrap_or_else(|| panic!("domains is not an array"));
    assert_eq!(
        uint(&counts["domains"], "counts.domains"),
        domains.len() as u64
    );
    let mut tally: BTreeMap<&str, u64> = BTreeMap::new();
    let mut worst = "ok";
    let mut previous: Option<&str> = None;
    for d in domains {
        assert_eq!(keys(d, "a domain"), set(&["domain", "status", "findings"]));
        let name = string(&d["domain"], "domain");
        assert!(
            previous.is_none_or(|p| p < name),
            "domains not sorted by name: {previous:?} before {name:?}"
        );
        previous = Some(name);
        let dstatus = string(&d["status"], "domain status");
        assert!(SEVERITIES.contains(&dstatus), "{name}: status {dstatus:?}");
        let findings = d["findings"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: findings is not an array"));
        let mut dworst = "ok";
        let mut last_rank = usize::MAX;
        for f in findings {
            let mut fields = keys(f, "a finding");
            // `subject` is optional: what the finding is about where a check finds several.
            if fields.remove("subject") {
                assert!(!string(&f["subject"], "subject").is_empty());
            }
            assert_eq!(
                fields,
                set(&["severity", "check", "message", "hint", "since"])
            );
            assert!(
                uint(&f["since"], "since") <= checked_at,
                "{name}: since after checked_at"
            );
            let severity = string(&f["severity"], "severity");
            assert!(
                SEVERITIES.contains(&severity),
                "{name}: severity {severity:?}"
            );
            let check = string(&f["check"], "check");
            assert!(CHECKS.contains(&check), "{name}: check {check:?}");
            for field in ["message", "hint"] {
                let text = string(&f[field], field);
                assert!(
                    !text.is_empty() && !text.contains('\n'),
                    "{name}: {field} must be one non-empty line: {text:?}"
                );
            }
            assert!(
                rank(severity) <= last_rank,
                "{name}: findings not worst first: {findings:?}"
            );
            last_rank = rank(severity);
            if rank(severity) > rank(dworst) {
                dworst = severity;
            }
            *tally.entry(severity).or_default() += 1;
        }
        assert_eq!(dstatus, dworst, "{name}: status is not its worst finding");
        if rank(dstatus) > rank(worst) {
            worst = dstatus;
        }
    }
    assert_eq!(status, worst, "the status is not the worst domain's");
    for s in ["critical", "warning", "unknown"] {
        assert_eq!(
            uint(&counts[s], s),
            tally.get(s).copied().unwrap_or(0),
            "counts.{s}"
        );
    }
}

/// The text output README documents, rendered from a JSON report: the plugin summary line,
/// then one line per finding, grouped by domain, worst first.
pub fn text_of(r: &Value) -> String {
    let label = |s: &str| s.to_ascii_uppercase();
    let c = &r["counts"];
    let mut out = format!(
        "MTA-STS {}: {} critical, {} warning, {} could not check, in {} domains\n",
        label(r["status"].as_str().unwrap()),
        c["critical"],
        c["warning"],
        c["unknown"],
        c["domains"]
    );
    for d in r["domains"].as_array().unwrap() {
        for f in d["findings"].as_array().unwrap() {
            out.push_str(&format!(
                "{} {} [{}] {} (fix: {})\n",
                label(f["severity"].as_str().unwrap()),
                d["domain"].as_str().unwrap(),
                f["check"].as_str().unwrap(),
                f["message"].as_str().unwrap(),
                f["hint"].as_str().unwrap()
            ));
        }
    }
    out
}

/// `text` with every run of digits replaced by `#`.
pub fn digits_blurred(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match (c.is_ascii_digit(), out.ends_with('#')) {
            (true, true) => {}
            (true, false) => out.push('#'),
            (false, _) => out.push(c),
        }
    }
    out
}

/// One `drift` run in each format.
pub struct Drift {
    pub text: Output,
    pub json: Output,
    pub report: Value,
}

/// Runs `drift --format text` and `--format json` on `config`; the JSON validated against the
/// schema, both exit codes equal to its `exit_code`, and the text exactly what README says
/// for it.
#[track_caller]
pub fn drift(config: &Path) -> Drift {
    let text = run_with_config(config, &["drift", "--format", "text"]);
    let json = run_with_config(config, &["drift", "--format", "json"]);
    let report: Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("the JSON report does not parse: {e}\n{}", json.dump()));
    validate_schema(&report);
    let code = report["exit_code"].as_u64().unwrap() as i32;
    json.assert_status(code);
    text.assert_status(code);
    // Two runs: times in messages (a certificate's `time: UnixTime(…)`) may differ by a second.
    assert_eq!(
        digits_blurred(&text.stdout),
        digits_blurred(&text_of(&report)),
        "the text output does not match the JSON report\n{}\n{}",
        text.dump(),
        json.dump()
    );
    Drift { text, json, report }
}

impl Drift {
    /// Everything both runs printed, for failure messages.
    pub fn dump(&self) -> String {
        format!("{}\n{}", self.text.dump(), self.json.dump())
    }

    #[track_caller]
    pub fn assert_exit(&self, code: i32) -> &Self {
        self.text.assert_status(code);
        assert_eq!(
            self.report["status"],
            ["ok", "warning", "critical", "unknown"][code as usize]
        );
        self
    }

    /// The findings of `domain` (as in `a.example.org`): (severity, check, message).
    #[track_caller]
    pub fn findings(&self, domain: &str) -> Vec<(String, String, String)> {
        let d = self.report["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["domain"] == domain)
            .unwrap_or_else(|| panic!("no domain {domain} in the report\n{}", self.dump()));
        d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap().to_owned();
                (s("severity"), s("check"), s("message"))
            })
            .collect()
    }

    /// `domain` has exactly these findings, in this order: severity, check, and a part of the
    /// message.
    #[track_caller]
    pub fn assert_findings(&self, domain: &str, want: &[(&str, &str, &str)]) -> &Self {
        let got = self.findings(domain);
        let matches = got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|((s, c, m), (ws, wc, wm))| s == ws && c == wc && m.contains(wm));
        assert!(
            matches,
            "{domain}: wanted findings {want:#?}\ngot {got:#?}\n{}",
            self.dump()
        );
        self
    }

    #[track_caller]
    pub fn assert_clean(&self, domain: &str) -> &Self {
        self.assert_findings(domain, &[])
    }
}
