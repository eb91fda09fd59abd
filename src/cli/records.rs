//! `records`: the DNS records the config wants, to set by hand or to copy into a zone kept
//! elsewhere.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use super::{dane, load_valid, select};
use crate::config::Domain;
use crate::desired;

mod formats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordsFormat {
    Text,
    Bind,
    Json,
    Octodns,
    Dnscontrol,
}

pub(super) fn records(path: &Path, asked: &[String], format: RecordsFormat) -> Result<u8> {
    let config = match load_valid(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let selected = match select(&config, asked) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // `[[dane]]` TLSA records come with the whole config, not with domains asked by name.
    let mut code = 0;
    if format == RecordsFormat::Text {
        text(&mut out, &selected)?;
        if asked.is_empty() {
            code = dane::records(&mut out, &config, !selected.is_empty())?;
        }
    } else {
        let (tlsa, c) = if asked.is_empty() {
            dane::tlsa_records(&config)
        } else {
            (Vec::new(), 0)
        };
        code = c;
        match format {
            RecordsFormat::Bind => formats::bind(&mut out, &selected, &tlsa)?,
            RecordsFormat::Json => formats::json(&mut out, &selected, &tlsa)?,
            RecordsFormat::Octodns => formats::octodns(&mut out, &selected, &tlsa)?,
            RecordsFormat::Dnscontrol => formats::dnscontrol(&mut out, &selected, &tlsa)?,
            RecordsFormat::Text => {}
        }
    }
    out.flush()?;
    Ok(code)
}

/// Zone-file lines, each domain under a note on its policy id and provider.
fn text(out: &mut impl Write, selected: &[&Domain]) -> Result<()> {
    for (i, d) in selected.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let provider = d
            .dns
            .provider
            .as_deref()
            .unwrap_or("none: set these by hand");
        writeln!(
            out,
            "; {} (policy id {}, provider {provider})",
            d.name,
            d.policy.id()
        )?;
        if d.dns.target.is_none() {
            writeln!(
                out,
                "; mta-sts.{} must point at this server: no [dns] target is set, so no CNAME is managed",
                d.name
            )?;
        }
        if let Some(zone) = &d.dns.delegated {
            // RFC 8461 §8.2: the customer's records first, set once by them; then ours.
            writeln!(
                out,
                "; delegated: the owner of {} sets these once in their zone",
                d.name
            )?;
            for r in desired::customer_records(d) {
                writeln!(out, "{r}")?;
            }
            writeln!(out, "; ours, in {zone}.")?;
        }
        for r in desired::records(d) {
            writeln!(out, "{r}")?;
        }
    }
    Ok(())
}
