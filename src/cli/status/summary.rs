//! `status`'s text: a summary of `/status` in which every counted warning and error has a
//! line of its own, and removed domains (retiring, withdrawing) are shown.

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
    pub(super) fn exit_code(&self) -> u8 {
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

    /// Every counted problem has a line of its own: the totals match what is listed.
    fn problem(&mut self, level: Level, indent: &str, s: impl AsRef<str>) {
        let tag = match level {
            Level::Warning => {
                self.warnings += 1;
                "warning"
            }
            Level::Error => {
                self.errors += 1;
                "ERROR"
            }
        };
        self.line(format!("{indent}{tag}: {}", s.as_ref()));
    }

    pub(super) fn of(s: &Value, now: i64) -> Summary {
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
            let problems = reload["problems"].as_array().cloned().unwrap_or_default();
            m.problem(
                Level::Error,
                "",
                format!(
                    "reload at {} failed ({}): still serving the config loaded {}",
                    reload["at"].as_str().unwrap_or("?"),
                    plural(problems.len(), "problem"),
                    config["loaded_at"].as_str().unwrap_or("?"),
                ),
            );
            for p in problems.iter().filter_map(Value::as_str) {
                m.line(format!("  {p}"));
            }
        }
        if let Some(e) = s["state"]["error"].as_str() {
            m.problem(Level::Error, "", format!("state directory: {e}"));
        }
        match s["state"]["leases"].as_array() {
            Some(leases) => {
                let held: Vec<String> = leases
                    .iter()
                    .filter_map(|l| {
                        Some(format!(
                            "  {}: {}{} until {}",
                            l["job"].as_str()?,
                            l["holder"].as_str()?,
                            if l["this_process"] == true {
                                " (this process)"
                            } else {
                                ""
                            },
                            l["expires_at"].as_str().unwrap_or("?"),
                        ))
                    })
                    .collect();
                if held.is_empty() {
                    m.line("leases: none held");
                } else {
                    m.line(format!("leases: {} held", held.len()));
                    for l in held {
                        m.line(l);
                    }
                }
            }
            None if s["state"].get("leases").is_some() => {
                m.line("leases: unknown (the store did not answer)")
            }
            None => {}
        }
        if s["tlsrpt"]["store"] == "unavailable" {
            m.problem(
                Level::Warning,
                "",
                format!(
                    "TLS-RPT report store unavailable: {}",
                    s["tlsrpt"]["error"].as_str().unwrap_or("?")
                ),
            );
        }
        let listed = s["domains_listed"] != Value::Bool(false);
        match s["drift"].as_object() {
            None => m.line("drift: not run"),
            Some(d) => {
                let status = d["status"].as_str().unwrap_or("?");
                let text = format!(
                    "drift: {status} at {} ({} critical, {} warning, {} could not check)",
                    d["checked_at"].as_str().unwrap_or("?"),
                    d["counts"]["critical"],
                    d["counts"]["warning"],
                    d["counts"]["unknown"],
                );
                // Listed domains count their own findings; the total is counted only when
                // they are not listed.
                match (status, listed) {
                    ("ok", _) | (_, true) => m.line(text),
                    ("critical", false) => m.problem(Level::Error, "", text),
                    (_, false) => m.problem(Level::Warning, "", text),
                }
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
                m.problem(Level::Warning, "  ", why);
            }
        }
        let domains = s["domains"].as_array().cloned().unwrap_or_default();
        if !listed {
            m.line(format!(
                "{} domains: too many to list; ask for one with --domain",
                s["domains_total"]
            ));
        }
        for d in &domains {
            m.domain(d, now);
        }
        // Removed domains past their last max_age, no longer served: their records go.
        for w in s["withdrawing"].as_array().into_iter().flatten() {
            m.withdrawing(w);
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
        let mode = d["mode"].as_str().unwrap_or("?");
        let mut problems: Vec<(Level, String)> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        let dns = &d["dns"];
        let publication = match dns["state"].as_str().unwrap_or("?") {
            "manual" => "set by hand".to_owned(),
            "failed" => {
                problems.push((
                    Level::Error,
                    format!(
                        "DNS: {} (attempt {}, next {})",
                        dns["last_error"].as_str().unwrap_or("?"),
                        dns["attempts"],
                        dns["next_retry"].as_str().unwrap_or("?")
                    ),
                ));
                format!("FAILED via {}", dns["provider"].as_str().unwrap_or("?"))
            }
            state => format!("{state} via {}", dns["provider"].as_str().unwrap_or("?")),
        };
        for c in dns["conflicts"].as_array().into_iter().flatten() {
            problems.push((
                Level::Warning,
                format!("conflict: {}", c.as_str().unwrap_or("?")),
            ));
        }
        let source = d["certificate"].as_str().unwrap_or("?");
        let cert = match epoch(&d["certificate_expires"]) {
            Some(t) => {
                let left = t - now;
                let when = d["certificate_expires"].as_str().unwrap_or("?");
                if left < URGENT {
                    problems.push((Level::Error, format!("certificate expires {when}")));
                } else if left < SOON {
                    problems.push((Level::Warning, format!("certificate expires {when}")));
                }
                if left <= 0 {
                    format!("{source}, EXPIRED {when}")
                } else {
                    format!("{source}, expires in {} days", left / 86_400)
                }
            }
            None if source == "acme" => {
                let state = d["acme"]["state"].as_str().unwrap_or("?");
                problems.push((Level::Warning, format!("no ACME certificate yet ({state})")));
                format!("acme, none yet ({state})")
            }
            None => source.to_owned(),
        };
        if let Some(e) = d["acme"]["last_error"].as_str() {
            problems.push((Level::Warning, format!("ACME: {e}")));
        }
        let drift = match d["drift"]["status"].as_str() {
            None => "drift not run".to_owned(),
            Some(s) => {
                let findings = d["drift"]["findings"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for f in &findings {
                    let level = match f["severity"].as_str() {
                        Some("critical") => Level::Error,
                        _ => Level::Warning,
                    };
                    problems.push((
                        level,
                        format!(
                            "drift {} [{}]: {}",
                            f["severity"].as_str().unwrap_or("?"),
                            f["check"].as_str().unwrap_or("?"),
                            f["message"].as_str().unwrap_or("?")
                        ),
                    ));
                }
                match s {
                    "ok" | "not checked" => {}
                    _ if !findings.is_empty() => {}
                    "critical" => problems.push((Level::Error, "drift critical".into())),
                    other => problems.push((Level::Warning, format!("drift {other}"))),
                }
                format!("drift {s}")
            }
        };
        if let Some(failed) = d["tlsrpt"]["failed"].as_u64().filter(|&n| n > 0) {
            let sessions = failed + d["tlsrpt"]["successful"].as_u64().unwrap_or(0);
            let days = d["tlsrpt"]["days"].as_u64().unwrap_or(7);
            let text =
                format!("TLS-RPT: {failed} of {sessions} sessions failed in the last {days} days");
            // RFC 8461 §5: in `enforce` a sender that cannot validate does not deliver.
            match mode {
                "enforce" => problems.push((
                    Level::Error,
                    format!("{text}; in enforce mode those senders do not deliver"),
                )),
                "testing" => problems.push((
                    Level::Warning,
                    format!("{text}; `enforce` would refuse that mail"),
                )),
                _ => notes.push(text),
            }
        }
        match d["lifecycle"]["state"].as_str() {
            None | Some("configured") => {}
            Some("missing") => notes.push(format!(
                "removed from the config: served unchanged until {}, then retired",
                d["lifecycle"]["retire_at"].as_str().unwrap_or("?")
            )),
            Some("retiring") => notes.push(format!(
                "retiring (RFC 8461 §8.3): served `mode: none`; records withdrawn at {}",
                d["lifecycle"]["withdraw_at"].as_str().unwrap_or("?")
            )),
            Some("held") => problems.push((
                Level::Warning,
                "removed from the config but held: [state] max_retire refused to retire this many domains at once".into(),
            )),
            Some(other) => notes.push(format!("lifecycle: {other}")),
        }
        self.line(format!(
            "{name}: id {} {mode}; DNS {publication}; certificate {cert}; {drift}",
            d["policy_id"].as_str().unwrap_or("?"),
        ));
        for n in notes {
            self.line(format!("  {n}"));
        }
        for (level, text) in problems {
            self.problem(level, "  ", text);
        }
    }

    /// A removed domain no longer served, whose records are being withdrawn.
    fn withdrawing(&mut self, w: &Value) {
        let dns = &w["dns"];
        self.line(format!(
            "{}: withdrawn at {} (RFC 8461 §8.3): removing its records; DNS {}",
            w["domain"].as_str().unwrap_or("?"),
            w["lifecycle"]["withdraw_at"].as_str().unwrap_or("?"),
            dns["state"].as_str().unwrap_or("?"),
        ));
        if dns["state"] == "failed" {
            self.problem(
                Level::Error,
                "  ",
                format!("DNS: {}", dns["last_error"].as_str().unwrap_or("?")),
            );
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Level {
    Warning,
    Error,
}

#[cfg(test)]
mod tests;
