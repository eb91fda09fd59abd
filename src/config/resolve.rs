//! Combining the files into one [`Config`]: providers and domains merged, `[policy]` and
//! `[dns]` inherited per domain, references and certificate sources checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::cache::{GlobalsKey, Resolution};
use super::diag::{At, Loc, Problems, Sources};
use super::raw::{Inherit, RawDomain, RawFile};
use super::receiver::Receiver;
use super::{CertSource, Challenge, Config, DnsSettings, ProviderConfig, Server, Tls};
use crate::certs::Coverage;
use crate::name::DomainName;
use crate::policy::{Mode, Policy};

mod domains;

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

/// The included files (those that parsed), each with its last resolution if any.
pub(super) struct Included<'a> {
    pub files: &'a [&'a RawFile],
    pub reuse: &'a [Option<&'a Arc<Resolution>>],
}

/// The config, if it has no errors; and each included file's resolution (in the order of
/// `included.files`) for the next load, `None` where there is none to keep.
pub(super) fn resolve(
    sources: &Sources,
    mut main: RawFile,
    included: Included<'_>,
    problems: &mut Problems,
    files: Vec<PathBuf>,
    include_patterns: Vec<String>,
) -> (Option<Config>, Vec<Option<Arc<Resolution>>>) {
    let main_start = Loc { file: 0, offset: 0 };
    let main_providers = std::mem::take(&mut main.providers);
    let main_domains = std::mem::take(&mut main.domains);
    let Merged {
        provider_names,
        providers,
    } = merge(
        sources,
        (&main_providers, &main_domains),
        included.files,
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

    let key = globals_key(sources, &provider_names, &tls);
    let mut units = Vec::with_capacity(included.files.len() + 1);
    units.push(domains::Unit {
        domains: &main_domains,
        reuse: None,
    });
    units.extend(
        included
            .files
            .iter()
            .zip(included.reuse)
            .map(|(f, r)| domains::Unit {
                domains: &f.domains,
                reuse: r.filter(|r| r.key == key),
            }),
    );
    let (resolved, mut resolutions) =
        domains::resolve(&globals, key, &units, sources, main_start, problems);
    // The main file's domains are resolved on every load (any change to it changes the key).
    if !resolutions.is_empty() {
        resolutions.remove(0);
    }
    let dane = dane(std::mem::take(&mut main.dane), &globals, sources, problems);

    if problems.has_errors() {
        return (None, resolutions);
    }
    let state = main.state.unwrap_or_default();
    let config = Config {
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
        dane,
        reconcile: main.reconcile.unwrap_or(DEFAULT_RECONCILE),
        files,
        include_patterns,
    };
    (Some(config), resolutions)
}

/// What resolving a domain depends on besides its own table: the main file (its path and
/// text: `[policy]`, `[dns]`, `[tls]`, `[acme]`, `[server]`, `[tlsrpt]`, `[delegation]`), the
/// certificates its `[tls]` names as read now, and the provider names of every file. An
/// included file whose parse and key are those of its last resolution resolves the same.
fn globals_key(sources: &Sources, provider_names: &BTreeMap<String, Loc>, tls: &Tls) -> GlobalsKey {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let field = |h: &mut Sha256, bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    if let Some(main) = sources.files.first() {
        field(&mut h, main.path.as_os_str().as_encoded_bytes());
        field(&mut h, main.text.as_bytes());
    }
    for name in provider_names.keys() {
        field(&mut h, name.as_bytes());
    }
    field(&mut h, format!("{:?}", tls.certs).as_bytes());
    h.finalize().into()
}

/// Providers from every file, each name once.
struct Merged {
    provider_names: BTreeMap<String, Loc>,
    providers: BTreeMap<String, Arc<ProviderConfig>>,
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
) -> Merged {
    let mut provider_names: BTreeMap<String, Loc> = BTreeMap::new();
    let mut providers: BTreeMap<String, Arc<ProviderConfig>> = BTreeMap::new();
    let parts = std::iter::once(main).chain(included.iter().map(|f| (&f.providers, &f.domains)));
    for (file_providers, _) in parts {
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
    }
    Merged {
        provider_names,
        providers,
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
