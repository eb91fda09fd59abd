//! `mta-stsd history DOMAIN`: the id history of one domain for people and scripts.

use super::history::{DomainHistory, History};
use crate::clock::rfc3339;

/// `history DOMAIN` as text: newest first.
pub(crate) fn text(name: &str, d: &DomainHistory, h: &History) -> String {
    use std::fmt::Write;
    let mut out = format!("{name}\n");
    if let Some(at) = d.withdrawn() {
        let _ = writeln!(out, "  retired: withdrawn at {}", rfc3339(at));
    } else if let Some((at, withdraw_at)) = d.retired() {
        let _ = writeln!(
            out,
            "  retiring since {}: `mode: none`, records withdrawn at {}",
            rfc3339(at),
            rfc3339(withdraw_at)
        );
    } else if let Some((at, _)) = d.missing() {
        let _ = writeln!(out, "  missing from the config since {}", rfc3339(*at));
    }
    for e in d.served().iter().rev() {
        let last = e.last.map_or_else(|| "now (served)".to_owned(), rfc3339);
        let _ = writeln!(out, "  id {}  {} .. {}", e.id, rfc3339(e.first), last);
        if let Some(body) = h.body(&e.id) {
            for line in body.split_terminator("\r\n") {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    out
}

/// `history DOMAIN --format json`.
pub(crate) fn json(name: &str, d: &DomainHistory, h: &History) -> serde_json::Value {
    serde_json::json!({
        "domain": name,
        "missing_since": d.missing().map(|m| m.0),
        "retiring_since": d.retired().map(|r| r.0),
        "withdraw_at": d.retired().map(|r| r.1),
        "withdrawn_at": d.withdrawn(),
        "policies": d.served().iter().map(|e| serde_json::json!({
            "id": &*e.id,
            "body": h.body(&e.id),
            "first_served": e.first,
            "last_served": e.last,
        })).collect::<Vec<_>>(),
    })
}
