//! `plan` and `apply`: the selected domains' zones, one change set each, as `+`/`-` lines or
//! JSON; domains without a provider listed with the records to set by hand.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use mta_stsd_providers::ProviderError;
use serde::Serialize;

use super::progress::Progress;
use super::{load_valid, plural, select, Format};
use crate::config::Domain;
use crate::desired;

mod text;

/// `apply` waits this long beyond `[state] lease` for a zone another process publishes.
const LEASE_SLACK: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a zone was not read or written.
#[derive(Debug, thiserror::Error)]
enum ZoneError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Its lease stayed with another process, or could not be asked for.
    #[error("{0}")]
    Held(String),
}

impl ZoneError {
    fn code(&self) -> &str {
        match self {
            ZoneError::Provider(e) => e.code(),
            ZoneError::Held(_) => "lease",
        }
    }
}

#[derive(Serialize, Default)]
struct Report {
    command: &'static str,
    zones: Vec<ZoneReport>,
    errors: Vec<ErrorReport>,
    /// Domains with no provider: their records, to set by hand.
    manual: Vec<Manual>,
    /// Removed domains in their retirement, one note each.
    retiring: Vec<String>,
    /// `[[dane]]`: files or providers that failed, and unannounced rollovers.
    dane_errors: Vec<String>,
    dane_findings: Vec<String>,
    counts: Counts,
    exit_code: u8,
}

#[derive(Serialize)]
struct ZoneReport {
    zone: String,
    provider: String,
    delete: Vec<String>,
    add: Vec<String>,
    conflicts: Vec<Conflict>,
}

#[derive(Serialize)]
struct Conflict {
    domain: String,
    message: String,
}

#[derive(Serialize)]
struct ErrorReport {
    provider: String,
    /// `None` while the zone itself was being looked for.
    zone: Option<String>,
    domains: Vec<String>,
    code: String,
    error: String,
}

#[derive(Serialize)]
struct Manual {
    domain: String,
    /// No `target`: `mta-sts.<domain>` must be pointed at this server some other way.
    host_unmanaged: bool,
    records: Vec<String>,
}

#[derive(Serialize, Default)]
struct Counts {
    records: usize,
    zones_changed: usize,
    zones_read: usize,
    errors: usize,
    conflicts: usize,
    manual: usize,
}

/// `plan` (`apply == false`) and `apply` for the domains `asked` (all when empty).
pub(super) fn run(path: &Path, apply: bool, asked: &[String], format: Format) -> Result<u8> {
    let config = match load_valid(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let (domains, retiring) = match domains(&config, asked) {
        Ok(d) => d,
        Err(code) => return Ok(code),
    };
    let (managed, manual): (Vec<&Domain>, Vec<&Domain>) =
        domains.iter().partition(|d| d.dns.provider.is_some());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let providers = crate::dns::providers::all(&config);
    let mut report = Report {
        command: if apply { "apply" } else { "plan" },
        retiring: if asked.is_empty() {
            retiring
        } else {
            Vec::new()
        },
        ..Report::default()
    };

    let progress = (!managed.is_empty()).then(|| Progress::start("zones"));
    if let Some(p) = &progress {
        p.set(
            0,
            0,
            format!("finding the zones of {}", plural(managed.len(), "domain")),
        );
    }
    let (targets, unplaced) = runtime.block_on(crate::dns::sync::targets(
        managed.iter().copied(),
        &providers,
    ));
    report.unplaced(&unplaced);

    // `apply` writes a zone under the same lease as `serve`'s publisher: one writer at a time.
    let store = if apply {
        let target = crate::lifecycle::store_target(&config.state);
        match runtime.block_on(crate::state::store::Store::open(&target)) {
            Ok(s) => Some(s),
            Err(e) => {
                drop(progress);
                eprintln!("error: cannot take the zones' leases: {e}");
                return Ok(1);
            }
        }
    } else {
        None
    };
    // A holder finishes, or its lease expires, within this.
    let lease_wait = config.state.lease + LEASE_SLACK;
    let verb = if apply { "applying" } else { "reading" };
    let mut access: std::collections::HashMap<&str, Result<(), ProviderError>> =
        std::collections::HashMap::new();
    for (i, t) in targets.iter().enumerate() {
        if let Some(p) = &progress {
            p.set(
                i as u64,
                targets.len() as u64,
                format!("{verb} zone {} at provider {}", t.zone, t.provider_name),
            );
        }
        let result = runtime.block_on(zone(
            t,
            store.as_ref().map(|s| (s, config.state.lease, lease_wait)),
            &mut access,
        ));
        report.counts.zones_read += 1;
        let plans = match result {
            Ok(p) => p,
            Err(e) => {
                report.errors.push(ErrorReport {
                    provider: t.provider_name.clone(),
                    zone: Some(t.zone.clone()),
                    domains: t.domains.iter().map(|d| d.name.to_string()).collect(),
                    code: e.code().to_owned(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        report.zone(t, plans);
    }
    drop(progress);
    // A removed entry's records are withdrawn from the memory's list too.
    if asked.is_empty() {
        dane(
            &runtime,
            &config,
            &providers,
            store.as_ref().map(|s| (s, lease_wait)),
            &mut report,
        );
    }

    report.finish(&manual, apply);

    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Text => text::write(&mut out, &report, apply)?,
    }
    out.flush()?;
    Ok(report.exit_code)
}

/// The configured domains and the removed ones in retirement as the id history has them
/// (RFC 8461 §8.3, and the guard), with the notes on the retiring; with --domain, only the
/// configured domains asked for. `Err` is the exit code, the reason printed.
fn domains(
    config: &crate::config::Config,
    asked: &[String],
) -> Result<(Vec<Domain>, Vec<String>), u8> {
    let selected = select(config, asked)?;
    let (domains, retiring) = crate::lifecycle::for_commands(config).map_err(|e| {
        eprintln!("error: {e}");
        1
    })?;
    let domains: Vec<Domain> = if asked.is_empty() {
        domains
    } else {
        domains
            .into_iter()
            .filter(|d| selected.iter().any(|s| s.name == d.name))
            .collect()
    };
    Ok((domains, retiring))
}

/// Reads one zone (`plan`), or writes it under its lease (`apply`: `store` with the lease's
/// length and how long to wait for it).
async fn zone<'t>(
    t: &'t crate::dns::sync::Target<'_>,
    store: Option<(
        &crate::state::store::Store,
        std::time::Duration,
        std::time::Duration,
    )>,
    access: &mut std::collections::HashMap<&'t str, Result<(), ProviderError>>,
) -> Result<Vec<crate::dns::plan::DomainPlan>, ZoneError> {
    if let Some((store, lease, lease_wait)) = store {
        let job = crate::state::store::zone_job(&t.zone);
        let held = match store.hold_waiting(&job, lease, lease_wait).await {
            Ok(Ok(h)) => h,
            Ok(Err(holder)) => {
                return Err(ZoneError::Held(holder.map_or_else(
                    || format!("zone {} is being published by another process after {lease_wait:?}; nothing written, run apply again", t.zone),
                    |(h, until)| format!(
                        "zone {} is being published by {h} (its lease runs until {}) after {lease_wait:?}; nothing written, run apply again",
                        t.zone,
                        crate::clock::rfc3339(u64::try_from(until).unwrap_or(0))
                    ),
                )))
            }
            Err(e) => return Err(ZoneError::Held(format!("cannot take the lease of zone {}: {e}", t.zone))),
        };
        let applied = crate::dns::sync::apply_zone(t).await;
        held.release().await;
        Ok(applied?)
    } else {
        // `apply` would be refused for a key the reads never used: say so now. A key
        // is accepted or not whatever the zone, so that answer is kept per provider;
        // anything else (a zone the server does not serve) is the zone's alone.
        match access.get(t.provider_name.as_str()) {
            Some(known) => known.clone()?,
            None => {
                let checked = t.provider.check_access(&t.zone).await;
                if matches!(checked, Ok(()) | Err(ProviderError::Auth { .. })) {
                    access.insert(t.provider_name.as_str(), checked.clone());
                }
                checked?
            }
        }
        Ok(crate::dns::sync::plan_zone(t).await?)
    }
}

impl Report {
    /// Domains whose zone was not found: one entry per provider and error, not one per
    /// domain, as a dead server fails them all alike.
    fn unplaced(&mut self, unplaced: &[crate::dns::sync::Unplaced<'_>]) {
        let mut grouped: BTreeMap<(&str, String), (String, Vec<String>)> = BTreeMap::new();
        for u in unplaced {
            grouped
                .entry((u.provider.as_str(), u.error.to_string()))
                .or_insert_with(|| (u.error.code().to_owned(), Vec::new()))
                .1
                .push(u.domain.name.to_string());
        }
        for ((provider, error), (code, domains)) in grouped {
            self.errors.push(ErrorReport {
                provider: provider.to_owned(),
                zone: None,
                domains,
                code,
                error,
            });
        }
    }

    /// One zone's changes and conflicts, counted; listed when there are any.
    fn zone(&mut self, t: &crate::dns::sync::Target<'_>, plans: Vec<crate::dns::plan::DomainPlan>) {
        let mut z = ZoneReport {
            zone: t.zone.clone(),
            provider: t.provider_name.clone(),
            delete: Vec::new(),
            add: Vec::new(),
            conflicts: Vec::new(),
        };
        for p in plans {
            z.delete
                .extend(p.change.delete.iter().map(|r| r.to_string()));
            z.add.extend(p.change.add.iter().map(|r| r.to_string()));
            z.conflicts
                .extend(p.conflicts.into_iter().map(|message| Conflict {
                    domain: p.change.domain.clone(),
                    message,
                }));
        }
        let n = z.delete.len() + z.add.len();
        self.counts.records += n;
        self.counts.zones_changed += usize::from(n > 0);
        self.counts.conflicts += z.conflicts.len();
        if n > 0 || !z.conflicts.is_empty() {
            self.zones.push(z);
        }
    }

    /// The manual domains' records, the counts and the exit code.
    fn finish(&mut self, manual: &[&Domain], apply: bool) {
        self.manual.extend(manual.iter().map(|d| Manual {
            domain: d.name.to_string(),
            host_unmanaged: d.dns.target.is_none(),
            records: desired::records(d).iter().map(|r| r.to_string()).collect(),
        }));
        self.counts.manual = self.manual.len();
        self.counts.errors = self.errors.len() + self.dane_errors.len();
        self.exit_code = match (self.counts.errors, self.counts.records, apply) {
            (e, _, _) if e > 0 => 1,
            (_, c, false) if c > 0 => 2,
            _ => 0,
        };
    }
}

/// The `[[dane]]` round on the store's memory: with `apply` (the store, and how long to
/// wait for another holder) under the "dane" lease, as `serve` runs it, and kept. `None`:
/// nothing configured and nothing left to withdraw.
async fn dane_round(
    config: &crate::config::Config,
    providers: &crate::dns::providers::Providers,
    apply: Option<(&crate::state::store::Store, std::time::Duration)>,
) -> Option<crate::dane::sync::Round> {
    use crate::dane::{memory, sync};
    let now = crate::clock::unix_now();
    let mut out = sync::Round::default();
    let Some((store, within)) = apply else {
        let mut mem = match memory::read(&config.state).await {
            Ok(m) => m,
            Err(e) => {
                sync::state_error(&mut out, e);
                return Some(out);
            }
        };
        if config.dane.is_empty() && mem.hosts.is_empty() {
            return None;
        }
        return Some(sync::round(config, providers, &mut mem, false, now).await);
    };
    match sync::wanted(config, store).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            sync::state_error(&mut out, e);
            return Some(out);
        }
    }
    let job = crate::state::store::DANE_JOB;
    let held = match store.hold_waiting(job, config.state.lease, within).await {
        Ok(Ok(h)) => h,
        Ok(Err(holder)) => {
            let by = holder.map_or_else(|| "another process".to_owned(), |(h, _)| h);
            sync::state_error(
                &mut out,
                format!("the DANE round is being run by {by} after {within:?}; nothing written, run apply again"),
            );
            return Some(out);
        }
        Err(e) => {
            sync::state_error(&mut out, format!("taking the DANE lease: {e}"));
            return Some(out);
        }
    };
    Some(sync::held_round(config, providers, store, held, now).await)
}

/// The `[[dane]]` round (SPEC "DANE for the MX hosts"): its zones join the report.
fn dane(
    runtime: &tokio::runtime::Runtime,
    config: &crate::config::Config,
    providers: &crate::dns::providers::Providers,
    apply: Option<(&crate::state::store::Store, std::time::Duration)>,
    report: &mut Report,
) {
    let Some(round) = runtime.block_on(dane_round(config, providers, apply)) else {
        return;
    };
    for z in round.zones {
        let n = z.add.len() + z.delete.len();
        report.counts.records += n;
        report.counts.zones_changed += usize::from(n > 0);
        report.counts.conflicts += z.conflicts.len();
        report.zones.push(ZoneReport {
            zone: z.zone,
            provider: z.provider,
            delete: z.delete.iter().map(ToString::to_string).collect(),
            add: z.add.iter().map(ToString::to_string).collect(),
            conflicts: z
                .conflicts
                .into_iter()
                .map(|message| Conflict {
                    domain: "dane".into(),
                    message,
                })
                .collect(),
        });
    }
    report.dane_errors = round
        .errors
        .into_iter()
        .map(|(host, e)| format!("[[dane]] {host}: {e}"))
        .collect();
    report.dane_findings = round.findings;
    if !round.manual.is_empty() {
        report.manual.push(Manual {
            domain: "[[dane]] hosts".into(),
            host_unmanaged: false,
            records: round.manual.iter().map(ToString::to_string).collect(),
        });
    }
}
