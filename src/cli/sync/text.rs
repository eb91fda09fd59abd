//! The text form of `plan` and `apply`'s report.

use std::io::Write;

use anyhow::Result;

use super::Report;
use crate::cli::plural;

/// Text output shows this many manual domains' records, then a count (`records` has them all).
const MANUAL_SHOWN: usize = 20;

/// `plan` and `apply` as text: the changes as `+`/`-` lines, problems on stderr, a summary.
pub(super) fn write(out: &mut impl Write, r: &Report, apply: bool) -> Result<()> {
    for line in &r.retiring {
        writeln!(out, "{line}")?;
    }
    for e in &r.dane_errors {
        eprintln!("error: {e}");
    }
    for f in &r.dane_findings {
        eprintln!("error: DANE: {f}");
    }
    for e in &r.errors {
        let shown: Vec<&str> = e.domains.iter().take(3).map(String::as_str).collect();
        let more = if e.domains.len() > 3 {
            format!(" and {} more", e.domains.len() - 3)
        } else {
            String::new()
        };
        match &e.zone {
            None => eprintln!(
                "error: provider {}: finding the zone of {}{more}: {}",
                e.provider,
                shown.join(", "),
                e.error
            ),
            Some(zone) => eprintln!("error: zone {zone} (provider {}): {}", e.provider, e.error),
        }
    }
    for z in &r.zones {
        writeln!(out, "; zone {} (provider {})", z.zone, z.provider)?;
        for d in &z.delete {
            writeln!(out, "- {d}")?;
        }
        for a in &z.add {
            writeln!(out, "+ {a}")?;
        }
        for c in &z.conflicts {
            writeln!(out, "! conflict: {}", c.message)?;
        }
    }
    for m in r.manual.iter().take(MANUAL_SHOWN) {
        writeln!(
            out,
            "; {}: no provider, set these by hand (`records` prints them too)",
            m.domain
        )?;
        if m.host_unmanaged {
            writeln!(
                out,
                "; mta-sts.{} must point at this server: no [dns] target is set, so no CNAME is managed",
                m.domain
            )?;
        }
        for rec in &m.records {
            writeln!(out, "{rec}")?;
        }
    }
    if r.manual.len() > MANUAL_SHOWN {
        writeln!(
            out,
            "; and {} more set by hand: `mta-stsd records` prints them all",
            plural(r.manual.len() - MANUAL_SHOWN, "domain")
        )?;
    }
    let c = &r.counts;
    let verb = if apply { "changed" } else { "to change" };
    let mut summary = format!(
        "; {} {verb} in {} ({} read), {}",
        plural(c.records, "record"),
        plural(c.zones_changed, "zone"),
        plural(c.zones_read, "zone"),
        plural(c.errors, "error"),
    );
    if c.conflicts > 0 {
        summary += &format!(", {}", plural(c.conflicts, "conflict"));
    }
    if c.manual > 0 {
        summary += &format!(", {} set by hand", plural(c.manual, "domain"));
    }
    writeln!(out, "{summary}")?;
    Ok(())
}
