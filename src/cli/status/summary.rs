//! `status`'s text: a summary of `/status` with an exit code for scripts.

use serde_json::Value;

use super::super::plural;

/// A certificate expiring sooner than this is an error, sooner than `SOON` a warning
/// (the drift check's thresholds).
const URGENT: i64 = 3 * 86_400;
const SOON: i64 = 14 * 86_400;

fn epoch(v: &Value) -> Option<i64> {
    time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[derive(Debug, Default)]
pub(super) struct Summary {
    pub text: String,
    warnings: usize,
    errors: usize,
}

impl Summary {
    pub fn exit_code(&self) -> u8 {
        match (self.errors, self.warnings) {
            (0, 0) => 0,
            (0, _) => 1,
            _ => 2,
        }
    }

    fn line(&mut self, s: impl AsRef<str>) {
        self.text.push_str(s.as_ref());
        self.text.push('\n');
    }

    pub fn of(s: &Value, now: i64) -> Summary {
        let mut m = Summary::default();
        let config = &s["config"];
        m.line(format!(
            "mta-stsd {} running since {}; config {} loaded {}",
            s["version"].as_str().unwrap_or("?"),
            s["started_at"].as_str().unwrap_or("?"),
            config["path"].as_str().unwrap_or("?"),
            config["loaded_at"].as_str().unwrap_or("?"),
        ));
        let reload = &config["last_reload"];
        if reload["ok"] == Value::Bool(false) {
            m.errors += 1;
            let problems = reload["problems"].as_array().cloned().unwrap_or_default();
            m.line(format!(
                "ERROR reload at {} failed ({}): still serving the config loaded {}",
                reload["at"].as_str().unwrap_or("?"),
                plural(problems.len(), "problem"),
                config["loaded_at"].as_str().unwrap_or("?"),
            ));
            for p in problems.iter().filter_map(Value::as_str) {
                m.line(format!("  {p}"));
            }
        }
        match s["drift"].as_object() {
            None => m.line("drift: not run"),
            Some(d) => {
                let status = d["status"].as_str().unwrap_or("?");
                match status {
                    "ok" => {}
                    "critical" => m.errors += 1,
                    _ => m.warnings += 1,
                }
                m.line(format!(
                    "drift: {status} at {} ({} critical, {} warning, {} could not check)",
                    d["checked_at"].as_str().unwrap_or("?"),
                    d["counts"]["critical"],
                    d["counts"]["warning"],
                    d["counts"]["unknown"],
                ));
            }
        }
        if let Some(acme) = s["acme"].as_object() {
            let mut counts: Vec<String> = acme["names"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(state, n)| format!("{n} {state}"))
                .collect();
            counts.sort();
            m.line(format!(
                "acme: {}; next attempt {}",
                if counts.is_empty() {
                    "no names".to_owned()
                } else {
                    counts.join(", ")
                },
                acme["next_attempt"].as_str().unwrap_or("none"),
            ));
            if let Some(why) = acme["paused_why"].as_str() {
                m.warnings += 1;
                m.line(format!("  {why}"));
            }
        }
        let domains = s["domains"].as_array().cloned().unwrap_or_default();
        if s["domains_listed"] == Value::Bool(false) {
            m.line(format!(
                "{} domains: too many to list; ask for one with --domain",
                s["domains_total"]
            ));
        }
        for d in &domains {
            m.domain(d, now);
        }
        let total = s["domains_total"].as_u64().unwrap_or(domains.len() as u64) as usize;
        m.line(format!(
            "{}: {}, {}",
            plural(total, "domain"),
            plural(m.errors, "error"),
            plural(m.warnings, "warning")
        ));
        m
    }

    fn domain(&mut self, d: &Value, now: i64) {
        let name = d["domain"].as_str().unwrap_or("?");
        let mut notes: Vec<String> = Vec::new();
        let dns = &d["dns"];
        let publication = match dns["state"].as_str().unwrap_or("?") {
            "manual" => "set by hand".to_owned(),
            "failed" => {
                self.errors += 1;
                notes.push(format!(
                    "DNS error: {} (attempt {}, next {})",
                    dns["last_error"].as_str().unwrap_or("?"),
                    dns["attempts"],
                    dns["next_retry"].as_str().unwrap_or("?")
                ));
                format!("FAILED via {}", dns["provider"].as_str().unwrap_or("?"))
            }
            state => format!("{state} via {}", dns["provider"].as_str().unwrap_or("?")),
        };
        for c in dns["conflicts"].as_array().into_iter().flatten() {
            self.warnings += 1;
            notes.push(format!("conflict: {}", c.as_str().unwrap_or("?")));
        }
        let source = d["certificate"].as_str().unwrap_or("?");
        let cert = match epoch(&d["certificate_expires"]) {
            Some(t) => {
                let left = t - now;
                if left < URGENT {
                    self.errors += 1;
                } else if left < SOON {
                    self.warnings += 1;
                }
                if left <= 0 {
                    format!(
                        "{source}, EXPIRED {}",
                        d["certificate_expires"].as_str().unwrap_or("?")
                    )
                } else {
                    format!("{source}, expires in {} days", left / 86_400)
                }
            }
            None if source == "acme" => {
                self.warnings += 1;
                format!(
                    "acme, none yet ({})",
                    d["acme"]["state"].as_str().unwrap_or("?")
                )
            }
            None => source.to_owned(),
        };
        if let Some(e) = d["acme"]["last_error"].as_str() {
            self.warnings += 1;
            notes.push(format!("ACME: {e}"));
        }
        let drift = match d["drift"]["status"].as_str() {
            None => "drift not run".to_owned(),
            Some(s) => {
                match s {
                    "ok" | "not checked" => {}
                    "critical" => self.errors += 1,
                    _ => self.warnings += 1,
                }
                for f in d["drift"]["findings"].as_array().into_iter().flatten() {
                    notes.push(format!(
                        "drift {} [{}]: {}",
                        f["severity"].as_str().unwrap_or("?"),
                        f["check"].as_str().unwrap_or("?"),
                        f["message"].as_str().unwrap_or("?")
                    ));
                }
                format!("drift {s}")
            }
        };
        self.line(format!(
            "{name}: id {} {}; DNS {publication}; certificate {cert}; {drift}",
            d["policy_id"].as_str().unwrap_or("?"),
            d["mode"].as_str().unwrap_or("?"),
        ));
        for n in notes {
            self.line(format!("  {n}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base(domains: Value) -> Value {
        json!({
            "version": "0.1.0", "started_at": "2026-12-01T00:00:00Z",
            "config": { "path": "/etc/mta-stsd/mta-stsd.toml", "loaded_at": "2026-12-01T00:00:00Z",
                        "last_reload": { "at": "2026-12-01T00:00:00Z", "ok": true, "problems": [] } },
            "drift": null, "domains_total": 1, "domains_listed": true, "domains": domains,
        })
    }

    const NOW: i64 = 1_795_000_000;

    fn domain(cert_expires: Value, dns_state: &str) -> Value {
        json!([{ "domain": "example.org", "policy_id": "abc", "mode": "enforce",
                 "certificate": "configured", "certificate_expires": cert_expires,
                 "dns": { "state": dns_state, "provider": "p", "conflicts": [] }, "drift": null }])
    }

    fn at(secs: i64) -> Value {
        Value::String(crate::clock::rfc3339(secs))
    }

    #[test]
    fn severity_follows_what_needs_doing() {
        let fine = Summary::of(&base(domain(at(NOW + 60 * 86_400), "published")), NOW);
        assert_eq!(fine.exit_code(), 0, "{}", fine.text);
        assert!(fine.text.contains("expires in 60 days"), "{}", fine.text);
        let soon = Summary::of(&base(domain(at(NOW + 10 * 86_400), "published")), NOW);
        assert_eq!(soon.exit_code(), 1, "{}", soon.text);
        let expired = Summary::of(&base(domain(at(NOW - 1), "published")), NOW);
        assert_eq!(expired.exit_code(), 2, "{}", expired.text);
        assert!(expired.text.contains("EXPIRED"), "{}", expired.text);
        let failed = Summary::of(&base(domain(Value::Null, "failed")), NOW);
        assert_eq!(failed.exit_code(), 2, "{}", failed.text);
        let mut bad_reload = base(domain(Value::Null, "manual"));
        bad_reload["config"]["last_reload"] =
            json!({ "at": "x", "ok": false, "problems": ["a.toml:1:1: error: boom"] });
        let s = Summary::of(&bad_reload, NOW);
        assert_eq!(s.exit_code(), 2);
        assert!(s.text.contains("  a.toml:1:1: error: boom\n"), "{}", s.text);
        assert!(
            s.text.ends_with("1 domain: 1 error, 0 warnings\n"),
            "{}",
            s.text
        );
    }
}
