//! One DANE round: read each `[[dane]]` entry's files, move the memory on (rollover rules),
//! read `_25._tcp.<host>.` at the providers, and apply one change per zone. `plan` runs the
//! same round without writing DNS or the memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use mta_stsd_providers::{Changes, Provider, ProviderError, Record};

use super::memory::{self, Memory};
use super::{keys, rollover};
use crate::config::Config;
use crate::dns::providers::Providers;
use crate::state::store::{Held, Store};

/// Attempts per zone when the records changed between our read and our write.
const CONFLICT_ATTEMPTS: usize = 3;

/// What one round did (or, for `plan`, would do).
#[derive(Debug, Default, Clone)]
pub(crate) struct Round {
    pub zones: Vec<ZoneOutcome>,
    /// Per host: a file that could not be read, a zone not found, a provider failure.
    pub errors: Vec<(String, String)>,
    /// Unannounced rollovers found this round (also kept in the memory until settled).
    pub new_findings: Vec<String>,
    /// Every standing finding, this round's included.
    pub findings: Vec<String>,
    /// Entries without a provider: their records, to set by hand.
    pub manual: Vec<Record>,
    /// The earliest time a withdrawal or a finding's end is due.
    pub next_due: Option<u64>,
    /// An error that may pass by itself (a timeout, SERVFAIL, a lost race, the store):
    /// worth another round soon. A bad file or setting waits for the next reload.
    pub retry: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ZoneOutcome {
    pub provider: String,
    pub zone: String,
    pub add: Vec<Record>,
    pub delete: Vec<Record>,
    pub conflicts: Vec<String>,
}

/// The `_25._tcp.` name of an MX host (RFC 7672 §2.2).
pub(crate) fn tlsa_name(host: &str) -> String {
    format!("_25._tcp.{host}.")
}

/// One round at `now` on `mem` (read from the store by the caller, under the "dane" lease
/// when it will write); with `apply`, DNS is written and `mem` moved on, for the caller to
/// store.
pub(crate) async fn round(
    config: &Config,
    providers: &Providers,
    mem: &mut Memory,
    apply: bool,
    now: u64,
) -> Round {
    let mut out = Round::default();
    let mut skipped = Vec::new();
    for entry in &config.dane {
        let host = entry.host.to_string();
        let keys = match keys::read(entry) {
            Ok(k) => k,
            Err(e) => {
                // Unreadable files change nothing in DNS: a broken renewal must not withdraw.
                out.errors.push((host.clone(), e));
                skipped.push(host);
                continue;
            }
        };
        let Some(provider) = &entry.provider else {
            let name = tlsa_name(&host);
            out.manual.extend(
                keys.values()
                    .map(|t| Record::tlsa(&name, entry.ttl, t.clone())),
            );
            continue;
        };
        let h = mem.hosts.entry(host.clone()).or_default();
        h.provider = provider.to_string();
        h.zone = entry.zone.as_ref().map(|z| z.fqdn());
        h.ttl = entry.ttl;
        if let Some(f) = rollover::advance(&host, h, Some(&keys), now) {
            out.new_findings.push(f);
        }
        skipped.push(host);
    }
    // Hosts no longer configured: every value goes, one TTL after.
    for (host, h) in mem.hosts.iter_mut() {
        if !skipped.contains(host) && !config.dane.iter().any(|d| d.host.as_str() == host) {
            rollover::advance(host, h, None, now);
        }
    }
    publish(mem, config, providers, apply, now, &mut out).await;
    mem.hosts.retain(|host, h| {
        !h.values.is_empty() || config.dane.iter().any(|d| d.host.as_str() == host)
    });
    out.findings = mem
        .hosts
        .values()
        .filter_map(|h| h.finding.as_ref().map(|f| f.message.clone()))
        .collect();
    out.next_due = next_due(mem, now);
    out
}

/// Whether a round that writes has anything to do: `[[dane]]` entries, or a memory that still
/// holds values to withdraw. An earlier version's `dane.json` is imported first (once per
/// store; a damaged one is this error at every round until it is mended or moved away).
pub(crate) async fn wanted(config: &Config, store: &Store) -> Result<bool, String> {
    memory::import(store, &config.state.dir).await?;
    if !config.dane.is_empty() {
        return Ok(true);
    }
    store
        .dane_rows()
        .await
        .map(|rows| !rows.is_empty())
        .map_err(|e| format!("reading the DANE memory: {e}"))
}

/// A round that writes, under `held` (the "dane" lease, released at the end): on the memory
/// the store holds (the last holder's decisions, whichever replica it was), kept in the store
/// with the lease's token.
pub(crate) async fn held_round(
    config: &Config,
    providers: &Providers,
    store: &Store,
    held: Held,
    now: u64,
) -> Round {
    let mut mem = match memory::load_store(store).await {
        Ok(m) => m,
        Err(e) => {
            held.release().await;
            let mut out = Round::default();
            state_error(&mut out, e);
            return out;
        }
    };
    let before = mem.clone();
    let mut out = round(config, providers, &mut mem, true, now).await;
    if mem != before {
        match memory::save_store(store, held.lease(), &mem).await {
            Ok(true) => {}
            Ok(false) => state_error(
                &mut out,
                "lost the DANE lease during the round: its memory is the next holder's to write"
                    .into(),
            ),
            Err(e) => state_error(&mut out, format!("keeping the DANE memory: {e}")),
        }
    }
    held.release().await;
    out
}

/// A round that could not start or whose memory could not be kept: the store's error, to be
/// tried again soon.
pub(crate) fn state_error(out: &mut Round, error: String) {
    out.errors.push(("(state)".into(), error));
    out.retry = true;
}

/// Groups the hosts by provider and zone and brings each zone in line.
async fn publish(
    mem: &mut Memory,
    config: &Config,
    providers: &Providers,
    apply: bool,
    now: u64,
    out: &mut Round,
) {
    let mut zones: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (host, h) in &mem.hosts {
        let provider = match providers.get(&h.provider) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                out.retry |= e.is_retryable();
                out.errors.push((host.clone(), e.to_string()));
                continue;
            }
            None if config.providers.contains_key(&h.provider) => continue,
            None => {
                out.errors.push((
                    host.clone(),
                    format!(
                        "provider `{}` is no longer configured: its TLSA records stay",
                        h.provider
                    ),
                ));
                continue;
            }
        };
        let zone = match &h.zone {
            Some(z) => Ok(z.clone()),
            None => provider.zone_of(&tlsa_name(host)).await,
        };
        match zone {
            Ok(z) => zones
                .entry((h.provider.clone(), z))
                .or_default()
                .push(host.clone()),
            Err(e) => {
                out.retry |= e.is_retryable();
                out.errors.push((host.clone(), e.to_string()));
            }
        }
    }
    for ((pname, zone), hosts) in zones {
        let Some(Ok(provider)) = providers.get(&pname) else {
            continue;
        };
        match zone_round(mem, provider, &zone, &hosts, apply, now).await {
            Ok(z) => {
                if !z.add.is_empty() || !z.delete.is_empty() || !z.conflicts.is_empty() {
                    out.zones.push(ZoneOutcome {
                        provider: pname,
                        ..z
                    });
                }
            }
            Err(e) => {
                out.retry |= e.is_retryable();
                let msg = if !provider.writes_tlsa() {
                    ProviderError::cannot_publish(&pname, "TLSA").to_string()
                } else {
                    format!("zone {zone} (provider {pname}): {e}")
                };
                out.errors
                    .extend(hosts.into_iter().map(|h| (h, msg.clone())));
            }
        }
    }
}

/// Reads, plans and (with `apply`) writes one zone, re-reading after a lost race.
async fn zone_round(
    mem: &mut Memory,
    provider: &Arc<dyn Provider>,
    zone: &str,
    hosts: &[String],
    apply: bool,
    now: u64,
) -> Result<ZoneOutcome, ProviderError> {
    let names: Vec<String> = hosts.iter().map(|h| tlsa_name(h)).collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let observed = provider.records(zone, &names).await?;
        let mut outcome = ZoneOutcome {
            provider: String::new(),
            zone: zone.to_owned(),
            add: Vec::new(),
            delete: Vec::new(),
            conflicts: Vec::new(),
        };
        let mut changes = Changes::default();
        let mut planned = Vec::new();
        for (host, name) in hosts.iter().zip(&names) {
            let h = &mem.hosts[host];
            match rollover::plan(name, h, now, &observed) {
                Ok(c) => {
                    outcome.add.extend(c.add.iter().cloned());
                    outcome.delete.extend(c.delete.iter().cloned());
                    if !c.is_empty() {
                        changes.domains.push(c.clone());
                    }
                    planned.push((host, name, c));
                }
                Err(conflict) => outcome.conflicts.push(conflict),
            }
        }
        // Said by `plan` as by `apply`, before anything is written.
        if !changes.is_empty() && !provider.writes_tlsa() {
            return Err(ProviderError::cannot_publish(provider.name(), "TLSA"));
        }
        if !apply {
            return Ok(outcome);
        }
        match provider.apply(zone, &changes).await {
            Ok(()) => {}
            Err(ProviderError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
        for (host, name, c) in planned {
            let at: Vec<Record> = observed
                .iter()
                .filter(|r| &r.name == name)
                .cloned()
                .collect();
            if let Some(h) = mem.hosts.get_mut(host) {
                rollover::settle(h, now, &at, &c);
            }
        }
        return Ok(outcome);
    }
}

fn next_due(mem: &Memory, now: u64) -> Option<u64> {
    mem.hosts
        .values()
        .flat_map(|h| {
            let ttl = u64::from(h.ttl);
            let withdrawals = h.values.values().filter_map(|v| v.withdraw_at);
            let settles = h
                .finding
                .as_ref()
                .and(h.presented.as_ref())
                .and_then(|p| h.values.get(p)?.published_at)
                .map(|t| t + ttl);
            withdrawals.chain(settles)
        })
        .map(|t| t.max(now))
        .min()
}
