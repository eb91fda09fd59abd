//! Combining the files into one [`Config`]: providers and domains merged, `[policy]` and
//! `[dns]` inherited per domain, references and certificate sources checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rayon::prelude::*;

use super::diag::{At, Loc, Problems, Sources};
use super::raw::{Inherit, RawDomain, RawFile};
use super::receiver::Receiver;
use super::{CertSource, Challenge, Config, DnsSettings, Domain, ProviderConfig, Server, Tls};
use crate::certs::Coverage;
use crate::name::DomainName;
use crate::policy::{Mode, MxPattern, Policy};

const DEFAULT_MODE: Mode = Mode::Testing;
const DEFAULT_MAX_AGE: u32 = 604_800;
const DEFAULT_TTL: u32 = 3600;
const DEFAULT_RECONCILE: std::time::Duration = std::time::Duration::from_secs(3600);
/// Below a day, an `enforce` policy lapses between a sender's visits and protects little.
const SHORT_MAX_AGE: u32 = 86_400;

/// What every domain inherits, resolved once.
struct Globals<'a> {
    delegation: Option<&'a DomainName>,
    policy_keys: &'a Inherit,
    dns_keys: &'a Inherit,
    mode: Mode,
    max_age: u32,
    policy: Option<Arc<Policy>>,
    dns: Arc<DnsSettings>,
    provider_names: &'a BTreeMap<String, Loc>,
    coverage: Coverage,
    acme: bool,
    self_signed: bool,
    /// Any `[server] https` listener: without one, TLS is terminated in front of us.
    https: bool,
    /// `[tlsrpt]`, to check the `https` rua against.
    receiver: Option<Receiver>,
}

pub(super) fn resolve(
    sources: &Sources,
    mut main: RawFile,
    included: &[&RawFile],
    problems: &mut Problems,
    files: Vec<PathBuf>,
    include_patterns: Vec<String>,
) -> Option<Config> {
    let main_start = Loc { file: 0, offset: 0 };
    let main_providers = std::mem::take(&mut main.providers);
    let main_domains = std::mem::take(&mut main.domains);
    let Merged {
        provider_names,
        providers,
        domains,
    } = merge(
        sources,
        (&main_providers, &main_domains),
        included,
        problems,
    );

    let server = main.server.map_or_else(Server::default, |s| s.value);
    if let Some(acme) = &main.acme {
        if acme.value.challenge == Challenge::Http01 && server.http.is_empty() {
            problems.error(acme.at, "challenge `http-01` needs a plain-HTTP listener in [server] http (port 80 as the world sees it)");
        }
    }
    let tls = Tls {
        certs: main.certs,
        self_signed: main.self_signed,
    };

    let (mode, max_age, policy) =
        default_policy(&main.policy, main.policy_at, main_start, problems);

    // [dns]
    if let Some(p) = &main.dns.provider {
        check_provider(&provider_names, p, problems);
    }
    let delegation = main.delegation.as_ref().map(|z| z.value.clone());
    let dns = Arc::new(default_dns(&main.dns, delegation.as_ref(), problems));

    let globals_dns = dns.clone();
    let globals = Globals {
        delegation: delegation.as_ref(),
        policy_keys: &main.policy,
        dns_keys: &main.dns,
        mode,
        max_age,
        policy,
        dns,
        provider_names: &provider_names,
        coverage: Coverage::new(&tls.certs),
        acme: main.acme.is_some(),
        self_signed: tls.self_signed,
        https: !server.https.is_empty(),
        receiver: Receiver::of(main.tlsrpt.as_ref().map(|(t, _)| t)),
    };
    if let (Some(r), Some(rua)) = (&globals.receiver, &main.dns.tlsrpt) {
        r.check(rua, problems);
    }
    // [tlsrpt] hosts get their certificates like mta-sts names.
    let tlsrpt = main.tlsrpt.map(|(mut t, locs)| {
        t.certs = t
            .hosts
            .iter()
            .zip(locs)
            .filter_map(|(h, at)| cert_for(&globals, h.as_str(), at, problems))
            .collect();
        t
    });

    let resolved = resolve_domains(&globals, domains, sources, main_start, problems);
    let dane = dane(std::mem::take(&mut main.dane), &globals, sources, problems);

    if problems.has_errors() {
        return None;
    }
    let state = main.state.unwrap_or_default();
    Some(Config {
        server,
        tls,
        providers,
        domains: resolved,
        acme: main.acme.map(|a| {
            let mut acme = a.value;
            if acme.state.as_os_str().is_empty() {
                acme.state = state.dir.join("acme");
            }
            acme
        }),
        drift: main.drift.unwrap_or_default(),
        alerts: main.alerts,
        tlsrpt,
        state,
        dns_defaults: globals_dns,
        delegation,
        dane,
        reconcile: main.reconcile.unwrap_or(DEFAULT_RECONCILE),
        files,
        include_patterns,
    })
}

/// Providers and domains from every file, each provider name once. Included files are
/// borrowed: the reload cache keeps them for the next load.
struct Merged<'a> {
    provider_names: BTreeMap<String, Loc>,
    providers: BTreeMap<String, Arc<ProviderConfig>>,
    domains: Vec<&'a RawDomain>,
}

type FileParts<'a> = (
    &'a Vec<(At<String>, Option<ProviderConfig>)>,
    &'a Vec<RawDomain>,
);

fn merge<'a>(
    sources: &Sources,
    main: FileParts<'a>,
    included: &[&'a RawFile],
    problems: &mut Problems,
) -> Merged<'a> {
    let mut provider_names: BTreeMap<String, Loc> = BTreeMap::new();
    let mut providers: BTreeMap<String, Arc<ProviderConfig>> = BTreeMap::new();
    let mut domains: Vec<&RawDomain> =
        Vec::with_capacity(main.1.len() + included.iter().map(|f| f.domains.len()).sum::<usize>());
    let parts = std::iter::once(main).chain(included.iter().map(|f| (&f.providers, &f.domains)));
    for (file_providers, file_domains) in parts {
        for (name, config) in file_providers {
            if name.value == NO_PROVIDER {
                problems.error(
                    name.at,
                    "`none` is reserved: `provider = \"none\"` means the records are set by hand; give this provider another name",
                );
                continue;
            }
            if let Some(prev) = provider_names.get(&name.value) {
                problems.error(
                    name.at,
                    format!(
                        "provider `{}` is defined twice; also at {}",
                        name.value,
                        sources.place(*prev)
                    ),
                );
                continue;
            }
            provider_names.insert(name.value.clone(), name.at);
            if let Some(c) = config {
                providers.insert(name.value.clone(), Arc::new(c.clone()));
            }
        }
        domains.extend(file_domains);
    }
    Merged {
        provider_names,
        providers,
        domains,
    }
}

/// `[policy]`: the default mode and max_age, and the default policy, built once and shared
/// by every domain that inherits it.
fn default_policy(
    keys: &Inherit,
    policy_at: Option<Loc>,
    main_start: Loc,
    problems: &mut Problems,
) -> (Mode, u32, Option<Arc<Policy>>) {
    let mode = keys.mode.as_ref().map_or(DEFAULT_MODE, |m| m.value);
    let max_age = keys.max_age.as_ref().map_or(DEFAULT_MAX_AGE, |m| m.value);
    match &keys.mode {
        Some(At {
            value: Mode::Testing,
            at,
        }) => problems.warn(*at, TESTING_REMINDER),
        None if !keys.mode_rejected => problems.warn(
            policy_at.unwrap_or(main_start),
            "no `mode` in [policy]: domains without their own mode use `testing`",
        ),
        _ => {}
    }
    if mode == Mode::Enforce && max_age < SHORT_MAX_AGE {
        let at = keys
            .max_age
            .as_ref()
            .map(|m| m.at)
            .or(policy_at)
            .unwrap_or(main_start);
        problems.warn(at, short_max_age(max_age));
    }
    let policy = match &keys.mx {
        Some(mx) if mx.value.is_empty() && mode != Mode::None => {
            problems.error(mx.at, empty_mx(mode));
            None
        }
        Some(mx) => Some(Arc::new(Policy::new(mode, mx.value.to_vec(), max_age))),
        None if mode == Mode::None => Some(Arc::new(Policy::new(mode, Vec::new(), max_age))),
        None => None,
    };
    (mode, max_age, policy)
}

/// `[dns]`: what every domain inherits.
fn default_dns(
    dns: &Inherit,
    delegation: Option<&DomainName>,
    problems: &mut Problems,
) -> DnsSettings {
    check_delegated(dns, delegation, problems);
    DnsSettings {
        target: dns.target.as_ref().and_then(|t| t.value.clone()),
        ttl: dns.ttl.as_ref().map_or(DEFAULT_TTL, |t| t.value),
        tlsrpt: dns
            .tlsrpt
            .as_ref()
            .map_or_else(Vec::new, |t| t.value.to_vec()),
        provider: dns.provider.as_ref().and_then(provider_of),
        delegated: delegated(dns, delegation),
    }
}

/// The domains sorted by name (the same name twice is an error naming both places), each
/// resolved against the globals, in parallel chunks.
fn resolve_domains(
    globals: &Globals<'_>,
    mut domains: Vec<&RawDomain>,
    sources: &Sources,
    main_start: Loc,
    problems: &mut Problems,
) -> Vec<Domain> {
    domains.par_sort_by(|a, b| a.name.cmp(&b.name));
    for pair in domains.windows(2) {
        if pair[0].name == pair[1].name {
            problems.error(
                pair[1].at,
                format!(
                    "domain `{}` is defined twice; also at {}",
                    pair[1].name,
                    sources.place(pair[0].at)
                ),
            );
        }
    }
    domains.dedup_by(|b, a| a.name == b.name);
    if domains.is_empty() {
        problems.warn(main_start, "no [domains.*] configured: nothing to serve");
    }
    let inherited = Inherited::default();
    let chunks: Vec<(Vec<Domain>, Problems)> = domains
        .par_chunks(4096)
        .map(|chunk| {
            let mut probs = Problems::default();
            let out = chunk
                .iter()
                .filter_map(|d| resolve_domain(globals, d, &inherited, &mut probs))
                .collect();
            (out, probs)
        })
        .collect();
    drop(domains);
    let mut resolved = Vec::with_capacity(chunks.iter().map(|c| c.0.len()).sum());
    for (out, probs) in chunks {
        resolved.extend(out);
        problems.0.extend(probs.0);
    }
    resolved
}

/// `[[dane]]` entries with `[dns]` inherited; a host twice is an error naming both places.
fn dane(
    mut raw: Vec<super::raw::RawDane>,
    g: &Globals<'_>,
    sources: &Sources,
    problems: &mut Problems,
) -> Vec<super::Dane> {
    raw.sort_by(|a, b| a.host.value.cmp(&b.host.value));
    for pair in raw.windows(2) {
        if pair[0].host.value == pair[1].host.value {
            problems.error(
                pair[1].at,
                format!(
                    "[[dane]] host `{}` is listed twice; also at {}",
                    pair[1].host.value,
                    sources.place(pair[0].at)
                ),
            );
        }
    }
    raw.into_iter()
        .map(|d| {
            if let Some(p) = &d.provider {
                check_provider(g.provider_names, p, problems);
            }
            super::Dane {
                host: d.host.value,
                cert: d.cert,
                next_key: d.next_key,
                issuer: d.issuer,
                zone: d.zone.map(|z| z.value),
                provider: match &d.provider {
                    Some(p) => provider_of(p),
                    None => g.dns.provider.clone(),
                },
                ttl: d.ttl.map_or(g.dns.ttl, |t| t.value),
            }
        })
        .collect()
}

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

    Some(Domain {
        name: d.name.clone(),
        policy: policy?,
        dns,
        zone,
        cert: cert?,
        retiring: None,
    })
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

/// The delegation zone, for settings that say `delegated = true`.
fn delegated(keys: &Inherit, zone: Option<&DomainName>) -> Option<DomainName> {
    keys.delegated
        .as_ref()
        .filter(|d| d.value)
        .and(zone.cloned())
}

fn check_delegated(keys: &Inherit, zone: Option<&DomainName>, problems: &mut Problems) {
    if let (Some(At { value: true, at }), None) = (&keys.delegated, zone) {
        problems.error(
            *at,
            "`delegated = true` needs a [delegation] section with the `zone` that holds the delegated TXT records (RFC 8461 §8.2)",
        );
    }
}

/// `provider = "none"`: this domain's records are set by hand, whatever `[dns]` says.
const NO_PROVIDER: &str = "none";

fn provider_of(p: &At<Arc<str>>) -> Option<Arc<str>> {
    (&*p.value != NO_PROVIDER).then(|| p.value.clone())
}

fn check_provider(names: &BTreeMap<String, Loc>, p: &At<Arc<str>>, problems: &mut Problems) {
    if &*p.value != NO_PROVIDER && !names.contains_key(&*p.value) {
        let known: Vec<&str> = names.keys().map(String::as_str).collect();
        let hint = if known.is_empty() {
            "no [providers.*] is defined".to_owned()
        } else {
            format!("defined: {}", known.join(", "))
        };
        problems.error(
            p.at,
            format!(
                "provider `{}` is not defined ({hint}); `provider = \"none\"` means records set by hand",
                p.value
            ),
        );
    }
}

const TESTING_REMINDER: &str =
    "mode `testing`: senders report failures (TLS-RPT) but still deliver without TLS; switch to `enforce` once reports are clean";

fn short_max_age(max_age: u32) -> String {
    format!("max_age {max_age} is below one day in `enforce` mode: senders forget the policy between visits (RFC 8461 §3.2 suggests weeks)")
}

fn empty_mx(mode: Mode) -> String {
    format!("`mx` is empty but mode is `{mode}`: list the MX host patterns, or use mode `none` (RFC 8461 §3.2)")
}

/// SPEC "Certificates": a covering `[tls]` certificate, else ACME, else self-signed.
fn cert_for(g: &Globals<'_>, host: &str, at: Loc, problems: &mut Problems) -> Option<CertSource> {
    if let Some(i) = g.coverage.find(host) {
        Some(CertSource::Configured(i))
    } else if g.acme {
        Some(CertSource::Acme)
    } else if g.self_signed {
        Some(CertSource::SelfSigned)
    } else if !g.https {
        Some(CertSource::NotNeeded)
    } else {
        problems.error(at, format!(
            "no certificate for {host}: no [tls] certificate covers it; add one, set up [acme], set `self_signed = true` in [tls] for development, or set `https = []` in [server] when a reverse proxy terminates TLS in front of a plain `http` listener"
        ));
        None
    }
}
