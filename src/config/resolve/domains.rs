//! Each `[domains.*]` table resolved against what every domain inherits: its policy (shared
//! with the others that resolve to the same one), its DNS settings, zone and certificate.

use std::sync::Arc;

use rayon::prelude::*;

use super::{
    cert_for, check_delegated, check_provider, delegated, empty_mx, provider_of, short_max_age,
    Globals, DEFAULT_TTL, SHORT_MAX_AGE, TESTING_REMINDER,
};
use crate::config::cache::{GlobalsKey, Resolution};
use crate::config::diag::{At, Loc, Problems, Sources};
use crate::config::raw::{Inherit, RawDomain};
use crate::config::{DnsSettings, Domain, Resolved};
use crate::policy::{Mode, MxPattern, Policy};

/// One file's domains, with their last resolution when it still holds.
pub(in crate::config) struct Unit<'a> {
    pub domains: &'a [RawDomain],
    pub reuse: Option<&'a Arc<Resolution>>,
}

/// Every file's domains resolved against the globals (a file whose last resolution still
/// holds is not resolved again: its domains are shared with the config that resolved them),
/// sorted by name; the same name twice is an error naming both places. With them each file's
/// resolution, in the order of `units`, for the next load.
pub(super) fn resolve(
    globals: &Globals<'_>,
    key: GlobalsKey,
    units: &[Unit<'_>],
    sources: &Sources,
    main_start: Loc,
    problems: &mut Problems,
) -> (Vec<Domain>, Vec<Option<Arc<Resolution>>>) {
    // Each domain with its place: file (unit) and index in it.
    let total = units.iter().map(|u| u.domains.len()).sum();
    let mut order: Vec<(&RawDomain, u32, u32)> = Vec::with_capacity(total);
    for (u, unit) in units.iter().enumerate() {
        let at = unit.domains.iter().enumerate();
        order.extend(at.map(|(i, d)| (d, u as u32, i as u32)));
    }
    order.par_sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut twice = false;
    for pair in order.windows(2) {
        let (a, b) = (pair[0].0, pair[1].0);
        if a.name == b.name {
            twice = true;
            problems.error(
                b.at,
                format!(
                    "domain `{}` is defined twice; also at {}",
                    b.name,
                    sources.place(a.at)
                ),
            );
        }
    }
    if order.is_empty() {
        problems.warn(main_start, "no [domains.*] configured: nothing to serve");
    }
    let inherited = Inherited::default();
    if twice {
        // The config fails: the first of each name is resolved for its problems, as ever;
        // nothing is kept for the next load.
        order.dedup_by(|b, a| a.0.name == b.0.name);
        let first: Vec<&RawDomain> = order.iter().map(|o| o.0).collect();
        let mut probs = Problems::default();
        let slots = resolve_slots(globals, &first, &inherited, &mut probs);
        problems.0.extend(probs.0);
        #[allow(clippy::filter_map_identity)]
        let domains = slots.into_iter().filter_map(|d| d).collect();
        return (domains, units.iter().map(|_| None).collect());
    }
    let fresh: Vec<Option<Resolution>> = units
        .par_iter()
        .map(|u| match u.reuse {
            Some(_) => None,
            None => {
                let all: Vec<&RawDomain> = u.domains.iter().collect();
                let mut probs = Problems::default();
                let domains = resolve_slots(globals, &all, &inherited, &mut probs);
                Some(Resolution {
                    key,
                    domains,
                    problems: probs.0,
                })
            }
        })
        .collect();
    let all: Vec<Arc<Resolution>> = units
        .iter()
        .zip(fresh)
        .map(|(u, f)| match (f, u.reuse) {
            (Some(r), _) => Arc::new(r),
            (None, Some(r)) => r.clone(),
            (None, None) => unreachable!("a unit is either resolved or reused"),
        })
        .collect();
    for r in &all {
        problems.0.extend(r.problems.iter().cloned());
    }
    let domains = order
        .iter()
        .filter_map(|&(_, u, i)| all[u as usize].domains[i as usize].clone())
        .collect();
    (domains, all.into_iter().map(Some).collect())
}

/// `domains` resolved in parallel chunks, one slot each (`None`: see the problems).
fn resolve_slots(
    globals: &Globals<'_>,
    domains: &[&RawDomain],
    inherited: &Inherited,
    problems: &mut Problems,
) -> Vec<Option<Domain>> {
    let mut slots: Vec<Option<Domain>> = Vec::new();
    slots.resize_with(domains.len(), || None);
    let chunk_problems: Vec<Problems> = slots
        .par_chunks_mut(CHUNK)
        .zip(domains.par_chunks(CHUNK))
        .map(|(out, chunk)| {
            let mut probs = Problems::default();
            for (slot, d) in out.iter_mut().zip(chunk) {
                *slot = resolve_domain(globals, d, inherited, &mut probs);
            }
            probs
        })
        .collect();
    for probs in chunk_problems {
        problems.0.extend(probs.0);
    }
    slots
}

/// Domains resolved by one task.
const CHUNK: usize = 4096;

/// Policies of domains that override only `mode` or `max_age` and inherit `[policy] mx`: one
/// per distinct pair, not one per domain (50,000 `testing` domains share one).
type Inherited = std::sync::Mutex<std::collections::HashMap<(Mode, u32), Arc<Policy>>>;

fn resolve_domain(
    g: &Globals<'_>,
    d: &RawDomain,
    inherited: &Inherited,
    problems: &mut Problems,
) -> Option<Domain> {
    let none = Inherit::default();
    let keys = d.keys.as_deref().unwrap_or(&none);

    let policy = if !keys.has_policy_keys() {
        match &g.policy {
            Some(p) => Some(p.clone()),
            // An `mx` that is invalid (here or in [policy]) or empty (in [policy]) is reported
            // where it is written, not again per domain.
            None if keys.mx_rejected || g.policy_keys.mx.is_some() || g.policy_keys.mx_rejected => {
                None
            }
            None => {
                problems.error(d.at, format!(
                    "domain `{}` has no `mx`: set `mx` in [policy] or in its own table (RFC 8461 §3.2)", d.name
                ));
                None
            }
        }
    } else {
        domain_policy(g, d, keys, inherited, problems)
    };

    let dns = if !keys.has_dns_keys() {
        g.dns.clone()
    } else {
        if let Some(p) = &keys.provider {
            check_provider(g.provider_names, p, problems);
        }
        check_delegated(keys, g.delegation, problems);
        if let (Some(r), Some(rua)) = (&g.receiver, &keys.tlsrpt) {
            r.check(rua, problems);
        }
        let pick = |k: fn(&Inherit) -> bool| if k(keys) { keys } else { g.dns_keys };
        Arc::new(DnsSettings {
            target: pick(|k| k.target.is_some())
                .target
                .as_ref()
                .and_then(|t| t.value.clone()),
            ttl: pick(|k| k.ttl.is_some())
                .ttl
                .as_ref()
                .map_or(DEFAULT_TTL, |t| t.value),
            tlsrpt: pick(|k| k.tlsrpt.is_some())
                .tlsrpt
                .as_ref()
                .map_or_else(Vec::new, |t| t.value.to_vec()),
            provider: pick(|k| k.provider.is_some())
                .provider
                .as_ref()
                .and_then(provider_of),
            delegated: delegated(pick(|k| k.delegated.is_some()), g.delegation),
        })
    };

    check_fits_dns(d, &dns, problems);
    let zone = match (&dns.delegated, &d.zone) {
        (Some(_), Some(zone)) => {
            problems.error(zone.at, format!(
                "`zone` does not apply to the delegated domain `{}`: its TXT record lives in [delegation] zone, and its own zone is the customer's (RFC 8461 §8.2)", d.name
            ));
            None
        }
        // A delegated domain's records are all in the delegation zone.
        (Some(delegation), None) => Some(delegation.clone()),
        (None, zone) => zone.as_ref().map(|z| z.value.clone()),
    };
    if let (None, Some(zone)) = (&dns.delegated, &d.zone) {
        let (name, z) = (d.name.as_str(), zone.value.as_str());
        if name != z && !name.ends_with(&format!(".{z}")) {
            problems.error(
                zone.at,
                format!("zone `{z}` does not contain the domain `{name}`"),
            );
        }
    }

    let cert = cert_for(g, &d.name.policy_host(), d.at, problems);

    Some(Domain::new(Resolved {
        name: d.name.clone(),
        policy: policy?,
        dns,
        zone,
        cert: cert?,
        retiring: None,
    }))
}

/// Every name we publish must fit in a DNS message, or `apply` fails for the whole zone.
/// `_smtp._tls.<domain>.` (under the delegation zone when delegated) is the longest; labels
/// are checked when names are parsed. Measured first, formatted only when too long.
fn check_fits_dns(d: &RawDomain, dns: &DnsSettings, problems: &mut Problems) {
    const PREFIX: usize = "_smtp._tls.".len();
    let suffix = dns.delegated.as_ref().map_or(0, |z| z.as_str().len() + 1);
    // Text without the trailing dot, plus the first length octet and the root's.
    if PREFIX + d.name.as_str().len() + suffix + 2 <= 255 {
        return;
    }
    if let Some(why) = crate::name::wire_problem(&dns.tlsrpt_name(&d.name)) {
        let by = match &dns.delegated {
            Some(zone) => format!("`_smtp._tls.` and the [delegation] zone `{zone}`"),
            None => "`_smtp._tls.`".to_owned(),
        };
        problems.error(
            d.at,
            format!(
                "domain too long to publish: {why}; with {by} a domain has at most {} characters",
                253 - PREFIX - suffix
            ),
        );
    }
}

/// A domain that overrides some `[policy]` key gets a policy of its own.
fn domain_policy(
    g: &Globals<'_>,
    d: &RawDomain,
    keys: &Inherit,
    inherited: &Inherited,
    problems: &mut Problems,
) -> Option<Arc<Policy>> {
    let mode = keys.mode.as_ref().map_or(g.mode, |m| m.value);
    let max_age = keys.max_age.as_ref().map_or(g.max_age, |m| m.value);
    if let Some(At {
        value: Mode::Testing,
        at,
    }) = &keys.mode
    {
        problems.warn(*at, TESTING_REMINDER);
    }
    if mode == Mode::Enforce && max_age < SHORT_MAX_AGE {
        let at = keys
            .max_age
            .as_ref()
            .map(|m| m.at)
            .or(keys.mode.as_ref().map(|m| m.at))
            .unwrap_or(d.at);
        problems.warn(at, short_max_age(max_age));
    }
    let mx: Option<&At<Arc<[MxPattern]>>> = keys.mx.as_ref().or(g.policy_keys.mx.as_ref());
    let patterns: Vec<MxPattern> = match mx {
        Some(mx) if mx.value.is_empty() && mode != Mode::None => {
            problems.error(keys.mx.as_ref().map_or(d.at, |m| m.at), empty_mx(mode));
            return None;
        }
        Some(mx) => mx.value.to_vec(),
        None if mode == Mode::None => Vec::new(),
        // The rejected `mx` (the domain's own or the inherited one) is already reported.
        None if keys.mx_rejected || g.policy_keys.mx_rejected => return None,
        None => {
            problems.error(d.at, format!(
                "domain `{}` has no `mx`: set `mx` in [policy] or in its own table (RFC 8461 §3.2)", d.name
            ));
            return None;
        }
    };
    if let Some(global) = &g.policy {
        if global.mode == mode && global.max_age == max_age && global.mx == patterns {
            return Some(global.clone());
        }
    }
    if keys.mx.is_none() {
        let mut inherited = inherited.lock().unwrap_or_else(|e| e.into_inner());
        let p = inherited
            .entry((mode, max_age))
            .or_insert_with(|| Arc::new(Policy::new(mode, patterns, max_age)));
        return Some(p.clone());
    }
    Some(Arc::new(Policy::new(mode, patterns, max_age)))
}
