//! `status`: asks the running daemon's admin listener for `/status` and prints a short summary
//! (or the JSON as it came), with an exit code for scripts: 0 fine, 1 warnings, 2 errors,
//! 3 daemon not reachable.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use mta_stsd_providers::Secret;
use serde_json::Value;

use super::{plural, Format};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `/status` lists at most 1,000 domains; this bounds a misbehaving listener.
const MAX_RESPONSE: u64 = 64 << 20;
/// A certificate expiring sooner than this is an error, sooner than `SOON` a warning
/// (the drift check's thresholds).
const URGENT: i64 = 3 * 86_400;
const SOON: i64 = 14 * 86_400;

pub const UNREACHABLE: u8 = 3;

pub fn run(path: &Path, admin: Option<SocketAddr>, domain: Option<&str>, format: Format) -> u8 {
    // The config also gives `admin_token_file`'s token, sent when set.
    let loaded = crate::config::load(path);
    let token = loaded
        .as_ref()
        .ok()
        .and_then(|l| l.config.server.admin_token.clone());
    let addr = match admin {
        Some(a) => a,
        None => match loaded {
            Ok(l) => match l.config.server.admin {
                Some(a) => a,
                None => {
                    eprintln!(
                        "mta-stsd: {} has no [server] admin listener to ask",
                        path.display()
                    );
                    return UNREACHABLE;
                }
            },
            Err(_) => {
                eprintln!(
                    "mta-stsd: {} is invalid (`mta-stsd check` says why); give the daemon's admin address with --admin",
                    path.display()
                );
                return UNREACHABLE;
            }
        },
    };
    let addr = reachable(addr);
    let query = domain.map_or(String::new(), |d| format!("?domain={d}"));
    let body = match fetch(addr, &format!("/status{query}"), token.as_ref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("mta-stsd: no daemon answering at {addr}: {e}");
            return UNREACHABLE;
        }
    };
    let status: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("mta-stsd: {addr}/status is not JSON: {e}");
            return UNREACHABLE;
        }
    };
    let now = unix_now();
    let summary = Summary::of(&status, now);
    let mut out = std::io::stdout().lock();
    let written = match format {
        Format::Json => out.write_all(&body),
        Format::Text => out.write_all(summary.text.as_bytes()),
    };
    if written.and_then(|()| out.flush()).is_err() {
        return UNREACHABLE;
    }
    summary.exit_code()
}

/// A listener on every address is asked on loopback.
fn reachable(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
        _ => a,
    }
}

/// One HTTP/1.1 GET with `Connection: close`; the body of a 200.
fn fetch(addr: SocketAddr, target: &str, token: Option<&Secret>) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(READ_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(READ_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let auth = token.map_or(String::new(), |t| {
        format!("Authorization: Bearer {}\r\n", t.expose().trim())
    });
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n{auth}Connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    s.take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.starts_with("http/1.1 200") {
        return Err(format!("answered `{status_line}`"));
    }
    if head.contains("transfer-encoding: chunked") {
        return Err("chunked response: not the admin listener".into());
    }
    Ok(response[split + 4..].to_vec())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn epoch(v: &Value) -> Option<i64> {
    time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[derive(Debug, Default)]
struct Summary {
    text: String,
    warnings: usize,
    errors: usize,
}

impl Summary {
    fn exit_code(&self) -> u8 {
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

    fn of(s: &Value, now: i64) -> Summary {
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
