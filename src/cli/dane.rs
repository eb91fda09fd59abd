//! `[[dane]]` in `records` and `check` (SPEC "DANE for the MX hosts"); `plan`/`apply` run the
//! DANE round in `sync`.

use std::io::Write;

use anyhow::{Context, Result};
use mta_stsd_providers::Record;

use crate::config::{Config, Dane};

/// Each entry's TLSA records as its files give them now; 1 when a file cannot be read.
pub(super) fn records(out: &mut impl Write, config: &Config, after_domains: bool) -> Result<u8> {
    let mut code = 0;
    for (i, entry) in config.dane.iter().enumerate() {
        if after_domains || i > 0 {
            writeln!(out)?;
        }
        let provider = entry
            .provider
            .as_deref()
            .unwrap_or("none: set these by hand");
        writeln!(out, "; [[dane]] {} (provider {provider})", entry.host)?;
        match crate::dane::keys::read(entry) {
            Ok(keys) => {
                let name = crate::dane::sync::tlsa_name(entry.host.as_str());
                for t in keys.values() {
                    writeln!(out, "{}", Record::tlsa(&name, entry.ttl, t.clone()))?;
                }
            }
            Err(e) => {
                eprintln!("error: [[dane]] {}: {e}", entry.host);
                code = 1;
            }
        }
    }
    Ok(code)
}

/// Each entry with the TLSA records its files give now, for `records --format`; an entry
/// whose files cannot be read is said on stderr and left out (the second value is then 1).
pub(super) fn tlsa_records(config: &Config) -> (Vec<(&Dane, Vec<Record>)>, u8) {
    let mut code = 0;
    let mut out = Vec::new();
    for entry in &config.dane {
        match crate::dane::keys::read(entry) {
            Ok(keys) => {
                let name = crate::dane::sync::tlsa_name(entry.host.as_str());
                let records = keys
                    .values()
                    .map(|t| Record::tlsa(&name, entry.ttl, t.clone()))
                    .collect();
                out.push((entry, records));
            }
            Err(e) => {
                eprintln!("error: [[dane]] {}: {e}", entry.host);
                code = 1;
            }
        }
    }
    (out, code)
}

/// What only asking the providers and DNS can tell (an unsigned zone, a provider that cannot
/// publish TLSA, an unannounced rollover), for `check`.
pub(super) fn check(config: &Config) -> Result<crate::dane::check::Said> {
    if config.dane.is_empty() {
        return Ok(Default::default());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let providers = crate::dns::providers::all(config);
    Ok(runtime.block_on(crate::dane::check::check(config, &providers)))
}
