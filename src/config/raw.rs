//! One config file as written: walks the spanned TOML tree, reports every unknown key and
//! wrong type with its place, and parses each value into its checked type.
//!
//! Hand-walked rather than serde-derived so that one pass reports *all* problems, not the first.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

use super::diag::{At, Loc, Problems};
use super::{Acme, Drift, ProviderConfig, Server, State};
use crate::certs::CertFiles;
use crate::name::{Converted, DomainName};
use crate::policy::{Mode, MxPattern};
use crate::rua::Rua;
pub(crate) use dane::RawDane;
use keys::keys;

mod acme;
mod alerts;
mod dane;
mod delegation;
mod drift;
mod inherit;
mod keys;
mod providers;
mod server;
mod state;
mod tlsrpt;
mod values;

type Item<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<DeString<'i>>;

keys! {
    /// The top-level keys of the main file.
    enum Top {
        Include = "include",
        Server = "server",
        Tls = "tls",
        Policy = "policy",
        Dns = "dns",
        Providers = "providers",
        Domains = "domains",
        Acme = "acme",
        Drift = "drift",
        Tlsrpt = "tlsrpt",
        State = "state",
        Alerts = "alerts",
        Delegation = "delegation",
        Dane = "dane",
    }
}

/// The top-level keys of an included file.
const INCLUDED_KEYS: &[&str] = &[Top::Providers.name(), Top::Domains.name()];

keys! {
    /// The keys a domain inherits: from `[policy]` ([`POLICY_KEYS`]), then from `[dns]`.
    enum Inherited {
        Mode = "mode",
        Mx = "mx",
        MaxAge = "max_age",
        Target = "target",
        Ttl = "ttl",
        Tlsrpt = "tlsrpt",
        Provider = "provider",
        Delegated = "delegated",
    }
}

const POLICY_KEYS: &[&str] = Inherited::ALL.split_at(3).0;
const DNS_KEYS: &[&str] = Inherited::ALL.split_at(3).1;
/// The `[dns]` key that is global, not inherited per domain.
const RECONCILE: &str = "reconcile";
/// A domain's own key, beside the inherited ones.
const ZONE: &str = "zone";

/// The keys a domain inherits from `[policy]` and `[dns]`; `None` where not written.
#[derive(Debug, Default, Clone)]
pub(crate) struct Inherit {
    pub mode: Option<At<Mode>>,
    pub mx: Option<At<Arc<[MxPattern]>>>,
    pub max_age: Option<At<u32>>,
    /// `target = false` is `Some(None)`: no CNAME managed, whatever `[dns]` says.
    pub target: Option<At<Option<DomainName>>>,
    pub ttl: Option<At<u32>>,
    pub tlsrpt: Option<At<Arc<[Rua]>>>,
    pub provider: Option<At<Arc<str>>>,
    /// `delegated = true`: the STS TXT lives in `[delegation] zone` (RFC 8461 §8.2).
    pub delegated: Option<At<bool>>,
    /// `mode` / `mx` was written but its value was rejected (and reported): no follow-on
    /// "no `mode`" or "no `mx`" diagnostics for a key the admin did write.
    pub mode_rejected: bool,
    pub mx_rejected: bool,
}

impl Inherit {
    pub(crate) fn has_policy_keys(&self) -> bool {
        self.mode.is_some() || self.mx.is_some() || self.max_age.is_some()
    }

    pub(crate) fn has_dns_keys(&self) -> bool {
        self.target.is_some()
            || self.ttl.is_some()
            || self.tlsrpt.is_some()
            || self.provider.is_some()
            || self.delegated.is_some()
    }
}

#[derive(Debug)]
pub(crate) struct RawDomain {
    pub name: DomainName,
    pub at: Loc,
    /// Boxed and absent for the common domain that only inherits: 1M domains stay small.
    pub keys: Option<Box<Inherit>>,
    pub zone: Option<At<DomainName>>,
}

/// What one file contributes; sections other than providers and domains only in the main file.
#[derive(Debug, Default)]
pub(crate) struct RawFile {
    pub include: Vec<At<String>>,
    pub server: Option<At<Server>>,
    pub certs: Vec<CertFiles>,
    pub self_signed: bool,
    pub policy: Inherit,
    pub dns: Inherit,
    /// Present when `[policy]` was written, for warnings about the defaults.
    pub policy_at: Option<Loc>,
    pub providers: Vec<(At<String>, Option<ProviderConfig>)>,
    pub domains: Vec<RawDomain>,
    pub acme: Option<At<Acme>>,
    pub drift: Option<Drift>,
    /// With the place of each host, for certificate problems.
    pub tlsrpt: Option<(super::Tlsrpt, Vec<Loc>)>,
    pub state: Option<State>,
    pub alerts: Option<super::Alerts>,
    pub reconcile: Option<Duration>,
    /// `[delegation] zone`.
    pub delegation: Option<At<DomainName>>,
    /// `[[dane]]` entries.
    pub dane: Vec<RawDane>,
}

/// Reads one parsed file. `dir` anchors relative paths; `main` allows the global sections.
pub(crate) struct Reader<'p> {
    pub file: u32,
    pub dir: &'p Path,
    pub main: bool,
    pub problems: Problems,
    /// Read the DNS providers' and `[alerts]` secrets and the TLS private keys; `false` for
    /// `tlsrpt ingest`, which publishes and serves nothing and runs as a user that may not
    /// read them (placeholders instead). `[tlsrpt]`'s database URL is read either way.
    pub secrets: bool,
}

impl Reader<'_> {
    #[allow(clippy::expect_used, reason = "checked against the allowed keys")]
    pub(super) fn read(&mut self, root: &DeTable<'_>) -> RawFile {
        let mut raw = RawFile::default();
        let allowed = if self.main { Top::ALL } else { INCLUDED_KEYS };
        for (key, item) in root.iter() {
            let name = key.get_ref().as_ref();
            if !allowed.contains(&name) {
                if Top::of(name).is_some() {
                    self.problems.error(
                        self.at(key.span()),
                        format!("`{name}` may appear only in the main config file; included files hold [providers.*] and [domains.*]"),
                    );
                } else {
                    self.unknown("the top level", key, allowed);
                }
                continue;
            }
            match Top::of(name).expect("checked against the allowed keys") {
                Top::Include => {
                    raw.include = self
                        .strings(name, item)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|s| At {
                            value: s.value.to_owned(),
                            at: s.at,
                        })
                        .collect()
                }
                Top::Server => raw.server = self.table(name, item).map(|t| self.server(t, item)),
                Top::Tls => {
                    if let Some(t) = self.table(name, item) {
                        self.tls(t, &mut raw);
                    }
                }
                Top::Policy => {
                    if let Some(t) = self.table(name, item) {
                        raw.policy_at = Some(self.at(key.span()));
                        raw.policy = self.inherit("[policy]", t, POLICY_KEYS);
                    }
                }
                Top::Dns => {
                    if let Some(t) = self.table(name, item) {
                        if let Some(v) = t.get(RECONCILE) {
                            raw.reconcile = self.duration(RECONCILE, v);
                        }
                        raw.dns = self.inherit_except("[dns]", t, DNS_KEYS, &[RECONCILE]);
                    }
                }
                Top::Providers => {
                    for (pkey, pitem) in self.table(name, item).into_iter().flatten() {
                        let pname = pkey.get_ref().as_ref();
                        let at = At {
                            value: pname.to_owned(),
                            at: self.at(pkey.span()),
                        };
                        let config = self
                            .table(&format!("providers.{pname}"), pitem)
                            .and_then(|t| self.provider(pname, t, pitem));
                        raw.providers.push((at, config));
                    }
                }
                Top::Domains => {
                    let Some(t) = self.table(name, item) else {
                        continue;
                    };
                    raw.domains.reserve(t.len());
                    for (dkey, ditem) in t.iter() {
                        if let Some(d) = self.domain(dkey, ditem) {
                            raw.domains.push(d);
                        }
                    }
                }
                Top::Acme => raw.acme = self.table(name, item).and_then(|t| self.acme(t, item)),
                Top::Drift => raw.drift = self.table(name, item).map(|t| self.drift(t)),
                Top::Tlsrpt => {
                    raw.tlsrpt = self
                        .table("tlsrpt", item)
                        .and_then(|t| self.tlsrpt(t, item))
                }
                Top::State => raw.state = self.table(name, item).map(|t| self.state(t, item)),
                Top::Delegation => {
                    raw.delegation = self
                        .table("delegation", item)
                        .and_then(|t| self.delegation(t, item))
                }
                Top::Dane => raw.dane = self.dane(item),
                Top::Alerts => {
                    raw.alerts = self
                        .table("alerts", item)
                        .and_then(|t| self.alerts(t, item))
                }
            }
        }
        raw
    }

    fn domain(&mut self, key: &Key<'_>, item: &Item<'_>) -> Option<RawDomain> {
        let written = key.get_ref().as_ref();
        let at = self.at(key.span());
        let table = self.table(&format!("domains.\"{written}\""), item)?;
        let name = match DomainName::parse(written) {
            Ok((name, conv)) => {
                if conv == Converted::Idna {
                    self.problems.warn(
                        at,
                        format!("domain `{written}` converted to its A-label `{name}` (IDNA)"),
                    );
                }
                Some(name)
            }
            Err(e) => {
                self.problems.error(at, format!("domain {e}"));
                None
            }
        };
        let section = format!("[domains.\"{written}\"]");
        let mut keys = Inherit::default();
        let mut zone = None;
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            if kname == ZONE {
                zone = self.string(ZONE, v).and_then(|s| self.name_fqdn(ZONE, s));
            } else if !self.inherit_key(&mut keys, kname, v) {
                let expected: Vec<&str> = Inherited::ALL.iter().copied().chain([ZONE]).collect();
                self.unknown(&section, k, &expected);
            }
        }
        let keys = (keys.has_policy_keys()
            || keys.has_dns_keys()
            || keys.mode_rejected
            || keys.mx_rejected)
            .then(|| Box::new(keys));
        Some(RawDomain {
            name: name?,
            at,
            keys,
            zone,
        })
    }
}
