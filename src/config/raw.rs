//! One config file as written: walks the spanned TOML tree, reports every unknown key and
//! wrong type with its place, and parses each value into its checked type.
//!
//! Hand-walked rather than serde-derived so that one pass reports *all* problems, not the first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

use super::diag::{At, Loc, Problems, Sources};
use super::{Acme, Challenge, Drift, ProviderConfig, Server, State};
use crate::certs::CertFiles;
use crate::name::{Converted, DomainName};
use crate::policy::{Mode, MxPattern, MAX_AGE_LIMIT};
use crate::rua::Rua;

mod alerts;
mod delegation;
mod providers;
mod state;
mod tlsrpt;

type Item<'i> = Spanned<DeValue<'i>>;
type Key<'i> = Spanned<DeString<'i>>;

const TOP_KEYS: &[&str] = &[
    "include",
    "server",
    "tls",
    "policy",
    "dns",
    "providers",
    "domains",
    "acme",
    "drift",
    "tlsrpt",
    "state",
    "alerts",
    "delegation",
];
const INCLUDED_KEYS: &[&str] = &["providers", "domains"];
const POLICY_KEYS: &[&str] = &["mode", "mx", "max_age"];
const DNS_KEYS: &[&str] = &["target", "ttl", "tlsrpt", "provider", "delegated"];
/// `[dns]` keys that are global, not inherited per domain.
const DNS_GLOBAL_KEYS: &[&str] = &["reconcile"];
const DOMAIN_KEYS: &[&str] = &[
    "mode",
    "mx",
    "max_age",
    "target",
    "ttl",
    "tlsrpt",
    "provider",
    "delegated",
    "zone",
];

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
    pub fn has_policy_keys(&self) -> bool {
        self.mode.is_some() || self.mx.is_some() || self.max_age.is_some()
    }

    pub fn has_dns_keys(&self) -> bool {
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
}

/// Reads one parsed file. `dir` anchors relative paths; `main` allows the global sections.
pub(crate) struct Reader<'p> {
    pub file: u32,
    pub dir: &'p Path,
    pub main: bool,
    pub problems: Problems,
}

impl Reader<'_> {
    pub fn read(&mut self, root: &DeTable<'_>) -> RawFile {
        let mut raw = RawFile::default();
        let allowed = if self.main { TOP_KEYS } else { INCLUDED_KEYS };
        for (key, item) in root.iter() {
            let name = key.get_ref().as_ref();
            if !allowed.contains(&name) {
                if TOP_KEYS.contains(&name) {
                    self.problems.error(
                        self.at(key.span()),
                        format!("`{name}` may appear only in the main config file; included files hold [providers.*] and [domains.*]"),
                    );
                } else {
                    self.unknown("the top level", key, allowed);
                }
                continue;
            }
            match name {
                "include" => {
                    raw.include = self
                        .strings("include", item)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|s| At {
                            value: s.value.to_owned(),
                            at: s.at,
                        })
                        .collect()
                }
                "server" => raw.server = self.table("server", item).map(|t| self.server(t, item)),
                "tls" => {
                    if let Some(t) = self.table("tls", item) {
                        self.tls(t, &mut raw);
                    }
                }
                "policy" => {
                    if let Some(t) = self.table("policy", item) {
                        raw.policy_at = Some(self.at(key.span()));
                        raw.policy = self.inherit("[policy]", t, POLICY_KEYS);
                    }
                }
                "dns" => {
                    if let Some(t) = self.table("dns", item) {
                        if let Some(v) = t.get("reconcile") {
                            raw.reconcile = self.duration("reconcile", v);
                        }
                        raw.dns = self.inherit_except("[dns]", t, DNS_KEYS, DNS_GLOBAL_KEYS);
                    }
                }
                "providers" => {
                    for (pkey, pitem) in self.table("providers", item).into_iter().flatten() {
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
                "domains" => {
                    let Some(t) = self.table("domains", item) else {
                        continue;
                    };
                    raw.domains.reserve(t.len());
                    for (dkey, ditem) in t.iter() {
                        if let Some(d) = self.domain(dkey, ditem) {
                            raw.domains.push(d);
                        }
                    }
                }
                "acme" => raw.acme = self.table("acme", item).and_then(|t| self.acme(t, item)),
                "drift" => raw.drift = self.table("drift", item).map(|t| self.drift(t)),
                "tlsrpt" => {
                    raw.tlsrpt = self
                        .table("tlsrpt", item)
                        .and_then(|t| self.tlsrpt(t, item))
                }
                "state" => raw.state = self.table("state", item).map(|t| self.state(t)),
                "delegation" => {
                    raw.delegation = self
                        .table("delegation", item)
                        .and_then(|t| self.delegation(t, item))
                }
                "alerts" => {
                    raw.alerts = self
                        .table("alerts", item)
                        .and_then(|t| self.alerts(t, item))
                }
                _ => unreachable!("checked against the allowed keys"),
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
            if kname == "zone" {
                zone = self
                    .string("zone", v)
                    .and_then(|s| self.name_fqdn("zone", s));
            } else if !self.inherit_key(&mut keys, kname, v) {
                self.unknown(&section, k, DOMAIN_KEYS);
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

    fn inherit(&mut self, section: &str, table: &DeTable<'_>, allowed: &[&str]) -> Inherit {
        self.inherit_except(section, table, allowed, &[])
    }

    /// Like [`Self::inherit`], skipping the section's own keys `others` (read by the caller).
    fn inherit_except(
        &mut self,
        section: &str,
        table: &DeTable<'_>,
        allowed: &[&str],
        others: &[&str],
    ) -> Inherit {
        let mut keys = Inherit::default();
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            if others.contains(&kname) {
                continue;
            }
            if !allowed.contains(&kname) || !self.inherit_key(&mut keys, kname, v) {
                let expected: Vec<&str> = allowed.iter().chain(others).copied().collect();
                self.unknown(section, k, &expected);
            }
        }
        keys
    }

    /// Reads one inheritable key; false when `key` is not one.
    fn inherit_key(&mut self, keys: &mut Inherit, key: &str, v: &Item<'_>) -> bool {
        match key {
            "mode" => {
                keys.mode = self
                    .string(key, v)
                    .and_then(|s| match s.value.parse::<Mode>() {
                        Ok(mode) => Some(At {
                            value: mode,
                            at: s.at,
                        }),
                        Err(e) => {
                            self.problems.error(s.at, e);
                            None
                        }
                    });
                keys.mode_rejected = keys.mode.is_none();
            }
            "mx" => {
                let entries = self.strings(key, v);
                let mut ok = entries.is_some();
                let mut patterns = Vec::new();
                for s in entries.unwrap_or_default() {
                    match MxPattern::parse(s.value) {
                        Ok((p, conv)) => {
                            if conv == Converted::Idna {
                                self.problems.warn(
                                    s.at,
                                    format!("mx `{}` converted to its A-label `{p}` (IDNA); the policy lists the A-label", s.value),
                                );
                            }
                            patterns.push(p);
                        }
                        Err(e) => {
                            self.problems.error(s.at, e.0);
                            ok = false;
                        }
                    }
                }
                keys.mx = ok.then(|| At {
                    value: patterns.into(),
                    at: self.at(v.span()),
                });
                keys.mx_rejected = !ok;
            }
            "max_age" => {
                keys.max_age = self.integer(key, v).and_then(|n| {
                    match u32::try_from(n.value).ok().filter(|&s| s <= MAX_AGE_LIMIT) {
                        Some(s) => Some(At { value: s, at: n.at }),
                        None => {
                            self.problems.error(
                                n.at,
                                format!(
                                    "max_age {} is outside 0..=31557600 seconds (RFC 8461 §3.2)",
                                    n.value
                                ),
                            );
                            None
                        }
                    }
                })
            }
            "target" => {
                keys.target = match v.get_ref() {
                    // A deliberate A record at mta-sts.<domain>: no CNAME for it.
                    DeValue::Boolean(false) => Some(At {
                        value: None,
                        at: self.at(v.span()),
                    }),
                    DeValue::String(_) => self
                        .string(key, v)
                        .and_then(|s| self.name_fqdn("target", s))
                        .map(|t| At {
                            value: Some(t.value),
                            at: t.at,
                        }),
                    _ => {
                        self.wrong_type(key, v, "a host name, or false for no CNAME");
                        None
                    }
                }
            }
            "ttl" => {
                keys.ttl = self.integer(key, v).and_then(|n| {
                    // RFC 2181 §8: a TTL is at most 2^31 - 1.
                    match u32::try_from(n.value).ok().filter(|&t| (1..=0x7fff_ffff).contains(&t)) {
                        Some(t) => {
                            if !(60..=86400).contains(&t) {
                                self.problems.warn(n.at, format!(
                                    "ttl {t} is outside 60..=86400 seconds: changes are either slow to reach senders or cost resolvers a query each time"
                                ));
                            }
                            Some(At { value: t, at: n.at })
                        }
                        None => {
                            self.problems.error(n.at, format!(
                                "ttl {} is outside 1..=2147483647 seconds (RFC 2181 §8)", n.value
                            ));
                            None
                        }
                    }
                })
            }
            "tlsrpt" => {
                let entries = self.strings(key, v);
                let mut ok = entries.is_some();
                let mut rua = Vec::new();
                for s in entries.unwrap_or_default() {
                    match Rua::parse(s.value) {
                        Ok(r) => rua.push(r),
                        Err(e) => {
                            self.problems.error(s.at, e);
                            ok = false;
                        }
                    }
                }
                keys.tlsrpt = ok.then(|| At {
                    value: rua.into(),
                    at: self.at(v.span()),
                });
            }
            "provider" => {
                keys.provider = self.string(key, v).map(|s| At {
                    value: s.value.into(),
                    at: s.at,
                })
            }
            "delegated" => {
                keys.delegated = self.boolean(key, v).map(|b| At {
                    value: b,
                    at: self.at(v.span()),
                })
            }
            _ => return false,
        }
        true
    }

    fn server(&mut self, table: &DeTable<'_>, item: &Item<'_>) -> At<Server> {
        let mut server = Server::default();
        let mut seen: HashMap<SocketAddr, &str> = HashMap::new();
        let mut check_dup = |r: &mut Self, addr: SocketAddr, at: Loc, what: &'static str| {
            // Port 0 asks the kernel for a free port: never a clash.
            if addr.port() == 0 {
                return;
            }
            if let Some(prev) = seen.insert(addr, what) {
                r.problems
                    .error(at, format!("{addr} is already the {prev} listener"));
            }
        };
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match kname {
                "https" | "http" => {
                    let mut addrs = Vec::new();
                    for s in self.strings(kname, v).unwrap_or_default() {
                        if let Some(a) = self.socket_addr(s.value, s.at) {
                            check_dup(self, a, s.at, if kname == "https" { "https" } else { "http" });
                            addrs.push(a);
                        }
                    }
                    if kname == "https" { server.https = addrs } else { server.http = addrs }
                }
                "admin" => {
                    server.admin = self.string(kname, v).and_then(|s| {
                        let a = self.socket_addr(s.value, s.at)?;
                        check_dup(self, a, s.at, "admin");
                        if !a.ip().is_loopback() {
                            self.problems.warn(s.at, format!(
                                "admin listener {a} is not on loopback: /status and /metrics will be reachable from the network"
                            ));
                        }
                        Some(a)
                    })
                }
                "trusted_proxies" => {
                    for s in self.strings(kname, v).unwrap_or_default() {
                        match proxy_net(s.value) {
                            Some(net) => server.trusted_proxies.push(net),
                            None => self.problems.error(
                                s.at,
                                format!("`{}` is not an IP address or network (e.g. \"127.0.0.1\", \"10.0.0.0/8\")", s.value),
                            ),
                        }
                    }
                }
                "handshake_timeout" | "header_timeout" | "idle_timeout" | "shutdown_timeout" => {
                    if let Some(d) = self.duration(kname, v) {
                        let l = &mut server.limits;
                        *match kname {
                            "handshake_timeout" => &mut l.handshake_timeout,
                            "header_timeout" => &mut l.header_timeout,
                            "idle_timeout" => &mut l.idle_timeout,
                            _ => &mut l.shutdown_timeout,
                        } = d;
                    }
                }
                "max_header_bytes" | "max_connections" | "max_connections_per_ip" => {
                    if let Some(n) = self.integer(kname, v) {
                        let l = &mut server.limits;
                        match usize::try_from(n.value).ok().filter(|&n| n > 0) {
                            Some(n) if kname == "max_header_bytes" => l.max_header_bytes = n,
                            Some(n) if kname == "max_connections" => l.max_connections = n,
                            Some(n) => l.max_connections_per_ip = n,
                            None => self.problems.error(n.at, format!("`{kname}` must be a positive number")),
                        }
                    }
                }
                _ => self.unknown(
                    "[server]",
                    k,
                    &["https", "http", "admin", "trusted_proxies", "handshake_timeout", "header_timeout", "idle_timeout", "shutdown_timeout", "max_header_bytes", "max_connections", "max_connections_per_ip"],
                ),
            }
        }
        At {
            value: server,
            at: self.at(item.span()),
        }
    }

    fn tls(&mut self, table: &DeTable<'_>, raw: &mut RawFile) {
        for (k, v) in table.iter() {
            match k.get_ref().as_ref() {
                "self_signed" => raw.self_signed = self.boolean("self_signed", v).unwrap_or(false),
                "certs" => {
                    let Some(list) = self.array("certs", v) else {
                        continue;
                    };
                    for entry in list {
                        let Some(t) = self.table("certs entry", entry) else {
                            continue;
                        };
                        let at = self.at(entry.span());
                        let (mut cert, mut key) = (None, None);
                        for (ck, cv) in t.iter() {
                            match ck.get_ref().as_ref() {
                                "cert" => {
                                    cert = self.string("cert", cv).map(|s| self.path(s.value))
                                }
                                "key" => key = self.string("key", cv).map(|s| self.path(s.value)),
                                _ => self.unknown("a [tls] certs entry", ck, &["cert", "key"]),
                            }
                        }
                        match (cert, key) {
                            (Some(cert), Some(key)) => match CertFiles::load(&cert, &key) {
                                Ok(files) => {
                                    self.expiry_warning(&files, at);
                                    raw.certs.push(files);
                                }
                                Err(e) => self.problems.error(at, e),
                            },
                            _ => self
                                .problems
                                .error(at, "a certs entry needs both `cert` and `key`"),
                        }
                    }
                }
                _ => self.unknown("[tls]", k, &["certs", "self_signed"]),
            }
        }
    }

    fn expiry_warning(&mut self, files: &CertFiles, at: Loc) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if files.not_after < now {
            self.problems.warn(
                at,
                format!("certificate {} has expired", files.cert.display()),
            );
        } else if files.not_after < now + 14 * 86400 {
            self.problems.warn(
                at,
                format!(
                    "certificate {} expires within 14 days",
                    files.cert.display()
                ),
            );
        }
    }

    fn acme(&mut self, table: &DeTable<'_>, item: &Item<'_>) -> Option<At<Acme>> {
        let at = self.at(item.span());
        let mut acme = Acme {
            directory: String::new(),
            contact: Vec::new(),
            challenge: Challenge::TlsAlpn01,
            // Empty: `<[state] dir>/acme`, filled in when the files are combined.
            state: PathBuf::new(),
            ca: None,
            orders_per_hour: None,
        };
        let mut ok = true;
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match kname {
                "directory" => match self.string(kname, v) {
                    Some(s) => match self.base_url(s.value, s.at, None) {
                        Some(u) => acme.directory = u,
                        None => ok = false,
                    },
                    None => ok = false,
                },
                "contact" => {
                    for s in self.strings(kname, v).unwrap_or_default() {
                        if s.value.starts_with("mailto:") && s.value.contains('@') {
                            acme.contact.push(s.value.to_owned());
                        } else {
                            self.problems.error(
                                s.at,
                                format!(
                                    "contact `{}` must be a mailto: URI (RFC 8555 §7.3)",
                                    s.value
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                "challenge" => match self.string(kname, v).map(|s| (s.value, s.at)) {
                    Some(("tls-alpn-01", _)) => acme.challenge = Challenge::TlsAlpn01,
                    Some(("http-01", _)) => acme.challenge = Challenge::Http01,
                    Some((other, at)) => {
                        self.problems.error(
                            at,
                            format!("challenge `{other}` is not `tls-alpn-01` or `http-01`"),
                        );
                        ok = false;
                    }
                    None => ok = false,
                },
                "state" => match self.string(kname, v) {
                    Some(s) => acme.state = self.path(s.value),
                    None => ok = false,
                },
                "ca" => {
                    acme.ca = self
                        .string(kname, v)
                        .and_then(|s| self.readable(s.value, s.at))
                }
                "orders_per_hour" => match self.integer(kname, v) {
                    Some(n) if (1..=100_000).contains(&n.value) => {
                        acme.orders_per_hour = Some(n.value as u32);
                    }
                    // Reported; the rest of [acme] stays, so no domain loses its certificate
                    // source over it.
                    Some(n) => {
                        self.problems
                            .error(n.at, "`orders_per_hour` must be 1 to 100000");
                    }
                    None => {}
                },
                _ => self.unknown(
                    "[acme]",
                    k,
                    &[
                        "directory",
                        "contact",
                        "challenge",
                        "state",
                        "ca",
                        "orders_per_hour",
                    ],
                ),
            }
        }
        if acme.directory.is_empty() {
            self.problems.error(
                at,
                "[acme] needs `directory`, the ACME server's directory URL",
            );
            ok = false;
        }
        ok.then_some(At { value: acme, at })
    }

    fn drift(&mut self, table: &DeTable<'_>) -> Drift {
        // Writing the section turns the periodic checks in `serve` on.
        let mut drift = Drift {
            enabled: true,
            ..Drift::default()
        };
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match kname {
                "interval" => {
                    if let Some(d) = self.duration(kname, v) {
                        drift.interval = d;
                    }
                }
                "report" => drift.report = self.string(kname, v).map(|s| self.path(s.value)),
                "resolver" => {
                    drift.resolver = self.string(kname, v).and_then(|s| {
                        let with_port = if s.value.parse::<std::net::IpAddr>().is_ok() {
                            format!("{}:53", s.value)
                        } else {
                            s.value.to_owned()
                        };
                        self.socket_addr(&with_port, s.at)
                    })
                }
                "ca" => {
                    drift.ca = self
                        .string(kname, v)
                        .and_then(|s| self.readable(s.value, s.at))
                }
                "smtp" => {
                    if let Some(b) = self.boolean(kname, v) {
                        drift.smtp = b;
                    }
                }
                "smtp_timeout" => {
                    if let Some(d) = self.duration(kname, v) {
                        drift.smtp_timeout = d;
                    }
                }
                "dns_port" | "https_port" | "smtp_port" => {
                    if let Some(n) = self.integer(kname, v) {
                        match u16::try_from(n.value).ok().filter(|&p| p > 0) {
                            Some(p) if kname == "dns_port" => drift.dns_port = p,
                            Some(p) if kname == "smtp_port" => drift.smtp_port = p,
                            Some(p) => drift.https_port = p,
                            None => self
                                .problems
                                .error(n.at, format!("`{kname}` must be a port, 1..=65535")),
                        }
                    }
                }
                _ => self.unknown(
                    "[drift]",
                    k,
                    &[
                        "interval",
                        "report",
                        "resolver",
                        "ca",
                        "dns_port",
                        "https_port",
                        "smtp",
                        "smtp_port",
                        "smtp_timeout",
                    ],
                ),
            }
        }
        drift
    }

    // --- values -------------------------------------------------------------------------

    fn at(&self, span: Range<usize>) -> Loc {
        Sources::loc(self.file, &span)
    }

    fn path(&self, written: &str) -> PathBuf {
        self.dir.join(written)
    }

    fn readable(&mut self, written: &str, at: Loc) -> Option<PathBuf> {
        let path = self.path(written);
        match std::fs::metadata(&path) {
            Ok(_) => Some(path),
            Err(e) => {
                self.problems
                    .error(at, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    fn unknown(&mut self, section: &str, key: &Key<'_>, expected: &[&str]) {
        self.problems.error(
            self.at(key.span()),
            format!(
                "unknown key `{}` in {section}; expected one of: {}",
                key.get_ref(),
                expected.join(", ")
            ),
        );
    }

    fn wrong_type(&mut self, key: &str, v: &Item<'_>, want: &str) {
        self.problems.error(
            self.at(v.span()),
            format!("`{key}` must be {want}, not {}", v.get_ref().type_str()),
        );
    }

    fn string<'a>(&mut self, key: &str, v: &'a Item<'_>) -> Option<At<&'a str>> {
        match v.get_ref() {
            DeValue::String(s) => Some(At {
                value: s.as_ref(),
                at: self.at(v.span()),
            }),
            _ => {
                self.wrong_type(key, v, "a string");
                None
            }
        }
    }

    fn integer(&mut self, key: &str, v: &Item<'_>) -> Option<At<i64>> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                let digits = digits
                    .trim_start_matches("0x")
                    .trim_start_matches("0o")
                    .trim_start_matches("0b");
                i64::from_str_radix(digits, i.radix()).ok()
            }
            _ => {
                self.wrong_type(key, v, "an integer");
                return None;
            }
        };
        if parsed.is_none() {
            self.problems
                .error(self.at(v.span()), format!("`{key}` is out of range"));
        }
        parsed.map(|value| At {
            value,
            at: self.at(v.span()),
        })
    }

    fn boolean(&mut self, key: &str, v: &Item<'_>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(key, v, "true or false");
                None
            }
        }
    }

    fn array<'a, 'i>(&mut self, key: &str, v: &'a Item<'i>) -> Option<&'a [Item<'i>]> {
        match v.get_ref() {
            DeValue::Array(a) => Some(a),
            _ => {
                self.wrong_type(key, v, "an array");
                None
            }
        }
    }

    fn strings<'a>(&mut self, key: &str, v: &'a Item<'_>) -> Option<Vec<At<&'a str>>> {
        let items = match v.get_ref() {
            DeValue::Array(a) => a,
            _ => {
                self.wrong_type(key, v, "an array of strings");
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items.iter() {
            match self.string(&format!("{key}` entry `"), item) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn table<'a, 'i>(&mut self, key: &str, v: &'a Item<'i>) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(key, v, "a table");
                None
            }
        }
    }

    fn duration(&mut self, key: &str, v: &Item<'_>) -> Option<Duration> {
        if let DeValue::Integer(_) = v.get_ref() {
            let n = self.integer(key, v)?;
            return match u64::try_from(n.value) {
                Ok(secs) if secs > 0 => Some(Duration::from_secs(secs)),
                _ => {
                    self.problems.error(
                        n.at,
                        format!("`{key}` must be a positive number of seconds"),
                    );
                    None
                }
            };
        }
        let s = self.string(key, v)?;
        match parse_duration(s.value) {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                self.problems.error(s.at, format!(
                    "`{key}`: `{}` is not a duration such as \"90s\", \"10m\", \"6h\" or \"1h30m\"", s.value
                ));
                None
            }
        }
    }

    fn name_fqdn(&mut self, key: &str, s: At<&str>) -> Option<At<DomainName>> {
        match DomainName::parse_fqdn(s.value) {
            Ok((name, conv)) => {
                if conv == Converted::Idna {
                    self.problems.warn(
                        s.at,
                        format!(
                            "{key} `{}` converted to its A-label `{name}` (IDNA)",
                            s.value
                        ),
                    );
                }
                Some(At {
                    value: name,
                    at: s.at,
                })
            }
            Err(e) => {
                self.problems.error(s.at, format!("{key} {e}"));
                None
            }
        }
    }

    fn socket_addr(&mut self, s: &str, at: Loc) -> Option<SocketAddr> {
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problems.error(at, format!(
                    "`{s}` is not an address with a port, such as \"127.0.0.1:8443\" or \"[::]:443\""
                ));
                None
            }
        }
    }
}

/// `90s`, `10m`, `6h`, `1d`, `1h30m`, `500ms`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            "d" => Duration::from_secs(n.checked_mul(86400)?),
            _ => return None,
        };
        total = total.checked_add(unit)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// A `trusted_proxies` entry: one address, or a network in CIDR notation.
fn proxy_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .ok()
        .map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("6h"), Some(Duration::from_secs(21600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        for bad in ["", "h", "6", "6x", "1.5h", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn proxy_nets() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let one = proxy_net("127.0.0.1").unwrap();
        assert!(one.contains(&ip("127.0.0.1")) && !one.contains(&ip("127.0.0.2")));
        let net = proxy_net("10.1.2.3/8").unwrap();
        assert!(net.contains(&ip("10.200.0.1")) && !net.contains(&ip("11.0.0.1")));
        assert!(proxy_net("fd00::/8").unwrap().contains(&ip("fd12::1")));
        for bad in ["", "localhost", "10.0.0.0/33", "1.2.3"] {
            assert_eq!(proxy_net(bad), None, "{bad}");
        }
    }
}
