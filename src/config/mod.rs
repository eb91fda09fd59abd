//! The configuration: loaded from TOML (plus included files), checked in full, and resolved
//! into a [`Config`] in which every domain carries its effective settings.
//!
//! A `Config` that exists is valid: every problem is found at load and reported as
//! `file:line:col: severity: message`.

mod cache;
mod diag;
mod load;
mod raw;
mod receiver;
mod resolve;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mta_stsd_providers::route53::Credentials;
use mta_stsd_providers::tsig::TsigKey;
use mta_stsd_providers::Secret;

pub(crate) use cache::{Cache, Counts};
pub(crate) use diag::{Diagnostic, Severity};
pub use load::load;
pub(crate) use load::{load_cached, load_without_secrets, Loaded};

use crate::certs::CertFiles;
use crate::name::DomainName;
use crate::policy::Policy;
use crate::rua::Rua;

/// Where the config is read from when neither `--config` nor `$MTA_STSD_CONFIG` says.
pub(crate) const DEFAULT_PATH: &str = "/etc/mta-stsd/mta-stsd.toml";

#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) server: Server,
    pub(crate) tls: Tls,
    pub providers: BTreeMap<String, Arc<ProviderConfig>>,
    /// Sorted by name, so lookups are a binary search and output is stable.
    pub domains: Vec<Domain>,
    pub(crate) acme: Option<Acme>,
    pub(crate) drift: Drift,
    pub(crate) alerts: Option<Alerts>,
    /// `[tlsrpt]`: receiving TLS reports; `None` without the section.
    pub(crate) tlsrpt: Option<Tlsrpt>,
    pub(crate) state: State,
    /// The `[dns]` settings a domain inherits.
    pub(crate) dns_defaults: Arc<DnsSettings>,
    /// `[[dane]]`: MX hosts whose TLSA records we publish, sorted by host.
    pub(crate) dane: Vec<Dane>,
    /// `[dns] reconcile`: how often `serve` re-reads the records it owns and repairs them.
    pub(crate) reconcile: Duration,
    /// Every file read (the main one first), for the watcher.
    pub(crate) files: Vec<PathBuf>,
    /// Include patterns as absolute globs, so the watcher sees files that appear later.
    pub(crate) include_patterns: Vec<String>,
}

impl Config {
    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains
            .binary_search_by(|d| d.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.domains[i])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Server {
    pub(crate) https: Vec<SocketAddr>,
    pub(crate) http: Vec<SocketAddr>,
    /// `/metrics`, `/healthz`, `/status`: never one of the public listeners.
    pub(crate) admin: Option<SocketAddr>,
    /// `admin_token_file`: every admin request needs `Authorization: Bearer <token>`.
    pub(crate) admin_token: Option<mta_stsd_providers::Secret>,
    pub(crate) limits: Limits,
    /// Peers whose `X-Forwarded-Host` names the host (a reverse proxy that cannot forward
    /// `Host`); empty by default, so no client can choose the domain by a header.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for Server {
    /// SPEC defaults: HTTPS on every address at 443, admin on loopback.
    fn default() -> Self {
        Server {
            https: vec![SocketAddr::from(([0u16; 8], 443))],
            http: Vec::new(),
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            admin_token: None,
            limits: Limits::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Bounds on what a client may cost us (SPEC "Limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) handshake_timeout: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_connections: usize,
    /// One client address (IPv6: one /64) holds at most this many connections.
    pub(crate) max_connections_per_ip: usize,
    /// A request body must arrive at this many bytes a second (after `body_grace`); else 408.
    pub(crate) min_body_rate: u64,
    /// The time a request body has before `min_body_rate` applies.
    pub(crate) body_grace: Duration,
    /// A connection is closed gracefully this long after it opened (HTTP/2: GOAWAY).
    pub(crate) max_connection_lifetime: Duration,
    /// A connection is closed gracefully after answering this many requests.
    pub(crate) max_requests_per_connection: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            max_header_bytes: 8 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 64,
            min_body_rate: 1024,
            body_grace: Duration::from_secs(10),
            max_connection_lifetime: Duration::from_secs(3600),
            max_requests_per_connection: 1000,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Tls {
    pub(crate) certs: Vec<CertFiles>,
    pub(crate) self_signed: bool,
}

/// One mail domain with everything it inherited resolved: a shared handle (a pointer). A
/// reload shares the domains of the included files that did not change with the config
/// served before, rather than holding a million of them twice.
#[derive(Clone)]
pub struct Domain(Arc<Resolved>);

impl Domain {
    pub(crate) fn new(resolved: Resolved) -> Domain {
        Domain(Arc::new(resolved))
    }

    /// Whether both are the same resolution (not only equal).
    pub(crate) fn ptr_eq(a: &Domain, b: &Domain) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl std::ops::Deref for Domain {
    type Target = Resolved;

    fn deref(&self) -> &Resolved {
        &self.0
    }
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a [`Domain`] holds.
#[derive(Debug)]
pub struct Resolved {
    pub(crate) name: DomainName,
    /// Shared between domains that inherit the same policy.
    pub policy: Arc<Policy>,
    pub(crate) dns: Arc<DnsSettings>,
    /// The zone holding the domain's names, when the config says; else the provider finds it.
    pub(crate) zone: Option<DomainName>,
    pub(crate) cert: CertSource,
    /// Set for a domain no longer in the config that is still served (RFC 8461 §8.3).
    pub(crate) retiring: Option<Retiring>,
}

/// One `[[dane]]` entry (SPEC "DANE for the MX hosts"), `[dns]` inherited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dane {
    pub(crate) host: DomainName,
    /// The chain the MX presents: the leaf first, then its issuer.
    pub(crate) cert: PathBuf,
    /// The next key (private or public key PEM), published ahead of a rollover.
    pub(crate) next_key: Option<PathBuf>,
    /// Also publish `2 1 1` of the issuing CA (the second certificate in `cert`).
    pub(crate) issuer: bool,
    pub(crate) zone: Option<DomainName>,
    pub(crate) provider: Option<Arc<str>>,
    pub(crate) ttl: u32,
}

/// Where a removed domain is on its way out.
// `Retiring::Retiring` names the stage as README does; clippy checks variant names only once
// the enum is crate-private.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retiring {
    /// Missing since `since`; served unchanged until `retire_at` (a short mistake changes
    /// nothing).
    Missing { since: u64, retire_at: u64 },
    /// Served `mode: none` since `since`; records withdrawn at `withdraw_at`.
    Retiring { since: u64, withdraw_at: u64 },
    /// Past `withdraw_at`: no longer served; its records (only ours) are being removed.
    Withdrawing { withdraw_at: u64 },
    /// Missing, but served unchanged without starting its retirement: the guard
    /// (`[state] max_retire`) refused to retire this many domains at once.
    Held,
}

/// `[state]`: the directory for what must survive restarts, and the retirement limits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct State {
    pub(crate) dir: PathBuf,
    pub(crate) max_retire: RetireLimit,
    pub(crate) retire_after: Duration,
    /// `url_env` / `url_file`: the store is this PostgreSQL database, shared by every
    /// replica; `None`: SQLite in `dir`.
    pub(crate) url: Option<Secret>,
    /// This replica's name in leases, logs and `/status`.
    pub(crate) replica: String,
    /// A dead replica's jobs are taken over after this.
    pub(crate) lease: Duration,
    /// `key_file` / `key_env`: 32 bytes (hex or base64) sealing the private keys in the
    /// store; `None`: they are stored as PEM.
    pub(crate) key: Option<Secret>,
    /// `listen`: a PostgreSQL LISTEN session on a direct connection wakes the follows at
    /// once; the poll runs all the same.
    pub(crate) listen: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            dir: default_state_dir(),
            max_retire: RetireLimit::Count(10),
            retire_after: Duration::from_secs(60),
            url: None,
            replica: default_replica(),
            lease: Duration::from_secs(30),
            key: None,
            listen: false,
        }
    }
}

/// The host's name (a pod's name on Kubernetes), or "local".
fn default_replica() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into())
}

/// systemd's `StateDirectory=` sets `$STATE_DIRECTORY` (a `:`-separated list; the first is
/// ours); otherwise the FHS place.
fn default_state_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .and_then(|v| {
            let first = v.to_string_lossy().split(':').next()?.to_owned();
            (!first.is_empty()).then(|| PathBuf::from(first))
        })
        .unwrap_or_else(|| PathBuf::from("/var/lib/mta-stsd"))
}

/// How many domains one reload may start retiring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RetireLimit {
    Count(u64),
    /// A share of the domains that were served before the reload.
    Percent(f64),
}

impl RetireLimit {
    /// The limit for a daemon that served `served` domains.
    pub(crate) fn of(self, served: usize) -> u64 {
        match self {
            RetireLimit::Count(n) => n,
            RetireLimit::Percent(p) => (served as f64 * p / 100.0).floor() as u64,
        }
    }
}

impl std::fmt::Display for RetireLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetireLimit::Count(n) => write!(f, "{n}"),
            RetireLimit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The `[dns]` keys, after inheritance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DnsSettings {
    /// `mta-sts.<domain>` CNAME target; without it no CNAME is managed.
    pub(crate) target: Option<DomainName>,
    pub(crate) ttl: u32,
    pub(crate) tlsrpt: Vec<Rua>,
    pub(crate) provider: Option<Arc<str>>,
    /// `delegated = true`: the `[delegation] zone` the STS TXT is published in, at
    /// `<domain>.<zone>.`, which the customer's `_mta-sts` CNAME points at (RFC 8461 §8.2).
    pub(crate) delegated: Option<DomainName>,
}

impl DnsSettings {
    /// The name our STS TXT record is published at for `domain`.
    pub(crate) fn sts_name(&self, domain: &DomainName) -> String {
        match &self.delegated {
            Some(zone) => format!("{domain}.{zone}."),
            None => format!("_mta-sts.{domain}."),
        }
    }

    /// The name our TLSRPT TXT record is published at: `_smtp._tls.<domain>.`, under the
    /// delegation zone when delegated. The longest name we own for `domain`.
    pub(crate) fn tlsrpt_name(&self, domain: &DomainName) -> String {
        match &self.delegated {
            Some(zone) => format!("_smtp._tls.{domain}.{zone}."),
            None => format!("_smtp._tls.{domain}."),
        }
    }
}

/// Where the certificate for `mta-sts.<domain>` comes from (SPEC "Certificates").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertSource {
    /// Index into [`Tls::certs`].
    Configured(usize),
    Acme,
    SelfSigned,
    /// No `[server] https` listener: a reverse proxy terminates TLS and holds the certificate.
    NotNeeded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub(crate) name: String,
    pub(crate) kind: ProviderKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProviderKind {
    Rfc2136 {
        /// `host:port`, port 53 when the config gives none.
        server: String,
        key: TsigKey,
    },
    PowerDns {
        /// Base URL without `/api/v1`.
        url: String,
        server_id: String,
        api_key: Secret,
    },
    Cloudflare {
        base_url: String,
        api_token: Secret,
    },
    Route53 {
        endpoint: String,
        credentials: Credentials,
    },
    /// A program speaking the exec protocol (SPEC "DNS providers"), and its arguments.
    Exec {
        command: Vec<String>,
    },
    /// OVHcloud: signed requests with three secrets.
    Ovh {
        base_url: String,
        application_key: Secret,
        application_secret: Secret,
        consumer_key: Secret,
    },
    /// An API reached with a base URL and a bearer-like token (read-verify-write).
    Token {
        vendor: TokenVendor,
        base_url: String,
        api_token: Secret,
    },
}

impl ProviderKind {
    /// The config's `kind`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ProviderKind::Rfc2136 { .. } => "rfc2136",
            ProviderKind::PowerDns { .. } => "powerdns",
            ProviderKind::Cloudflare { .. } => "cloudflare",
            ProviderKind::Token { vendor, .. } => vendor.kind(),
            ProviderKind::Ovh { .. } => "ovh",
            ProviderKind::Route53 { .. } => "route53",
            ProviderKind::Exec { .. } => "exec",
        }
    }
}

/// The APIs of [`ProviderKind::Token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenVendor {
    Hetzner,
    Desec,
    DigitalOcean,
    Gandi,
}

impl TokenVendor {
    /// Every one, for the config's `kind`.
    pub(crate) const ALL: &[TokenVendor] = &[
        TokenVendor::Hetzner,
        TokenVendor::Desec,
        TokenVendor::DigitalOcean,
        TokenVendor::Gandi,
    ];

    /// Its `kind`.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            TokenVendor::Hetzner => "hetzner",
            TokenVendor::Desec => "desec",
            TokenVendor::DigitalOcean => "digitalocean",
            TokenVendor::Gandi => "gandi",
        }
    }

    /// The production API's base URL.
    pub(crate) fn default_url(self) -> &'static str {
        match self {
            TokenVendor::Hetzner => "https://api.hetzner.cloud/v1",
            TokenVendor::Desec => "https://desec.io/api/v1",
            TokenVendor::DigitalOcean => "https://api.digitalocean.com/v2",
            TokenVendor::Gandi => "https://api.gandi.net/v5/livedns",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Challenge {
    TlsAlpn01,
    Http01,
}

#[derive(Debug, Clone)]
pub(crate) struct Acme {
    pub(crate) directory: String,
    pub(crate) contact: Vec<String>,
    pub(crate) challenge: Challenge,
    /// `[acme] state`, else `<[state] dir>/acme`: an earlier version's ACME files, imported
    /// into the store once.
    pub(crate) state: PathBuf,
    pub(crate) ca: Option<PathBuf>,
    /// `[acme] orders_per_hour`: new orders started in any hour at most (renewals and first
    /// certificates together, first certificates first).
    pub(crate) orders_per_hour: Option<u32>,
    /// `[acme] on_demand`: a handshake for a configured name without a certificate yet moves
    /// it to the front of the queue.
    pub(crate) on_demand: bool,
}

/// `[alerts]`: where drift's events go (at least one of the two).
#[derive(Debug, Clone, Default)]
pub(crate) struct Alerts {
    /// An https:// URL; a `Secret`, as it often carries a token.
    pub(crate) webhook: Option<Secret>,
    pub(crate) command: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub(crate) struct Drift {
    /// `[drift]` is in the config: `serve` runs the checks periodically. (They ask outside
    /// resolvers and hosts, so a config without the section stays quiet.)
    pub(crate) enabled: bool,
    pub(crate) interval: Duration,
    pub(crate) report: Option<PathBuf>,
    pub(crate) resolver: Option<SocketAddr>,
    pub(crate) ca: Option<PathBuf>,
    /// The port authoritative nameservers are asked on: 53, but in tests.
    pub(crate) dns_port: u16,
    /// The port the policy is fetched from: 443, but in tests.
    pub(crate) https_port: u16,
    /// Connect to each MX (STARTTLS, certificate, DANE); off where outbound port 25 is blocked.
    pub(crate) smtp: bool,
    /// The port MX hosts are connected on: 25, but in tests.
    pub(crate) smtp_port: u16,
    /// Bounds the connect and each SMTP reply and the TLS handshake.
    pub(crate) smtp_timeout: Duration,
}

impl Default for Drift {
    fn default() -> Self {
        Drift {
            enabled: false,
            interval: Duration::from_secs(6 * 3600),
            report: None,
            resolver: None,
            ca: None,
            dns_port: 53,
            https_port: 443,
            smtp: true,
            smtp_port: 25,
            smtp_timeout: Duration::from_secs(10),
        }
    }
}

/// `[tlsrpt]` (SPEC "TLS-RPT receiver").
#[derive(Debug, Clone)]
pub(crate) struct Tlsrpt {
    /// HTTPS names that take reports (and serve nothing else).
    pub(crate) hosts: Vec<DomainName>,
    /// Per host (same order), chosen like an `mta-sts.` name's.
    pub(crate) certs: Vec<CertSource>,
    pub(crate) path: String,
    pub(crate) store: StoreKind,
    pub(crate) retention: Duration,
    /// After decompression (and so before it too).
    pub(crate) max_report_bytes: usize,
    /// Report JSON being parsed and stored at once (HTTPS); at least `max_report_bytes`.
    pub(crate) parse_budget_bytes: usize,
    /// Quotas of the store: the JSON bytes kept, and the reports kept. A report past either
    /// is refused for now (503/75) until retention makes room.
    pub(crate) max_store_bytes: u64,
    pub(crate) max_reports: u64,
    /// Reports one sender (DKIM signer by mail, organization by HTTPS) may have stored per
    /// policy domain and UTC day of receipt: real reporters send one a day; past it the
    /// report is refused until the next day (429 by HTTPS, dropped and logged by mail).
    pub(crate) max_reports_per_sender_day: u64,
    /// Per client address (IPv6: per /64), HTTPS POSTs at once, then one more per
    /// `rate_refill` (a token bucket); past it 429.
    pub(crate) rate_burst: u32,
    pub(crate) rate_refill: Duration,
    /// For DKIM key lookups; `None`: the system's resolver.
    pub(crate) resolver: Option<SocketAddr>,
}

impl Default for Tlsrpt {
    fn default() -> Self {
        Tlsrpt {
            hosts: Vec::new(),
            certs: Vec::new(),
            path: "/v1/tlsrpt".into(),
            store: StoreKind::State,
            retention: Duration::from_secs(400 * 86400),
            max_report_bytes: 4 * 1024 * 1024,
            parse_budget_bytes: 32 * 1024 * 1024,
            max_store_bytes: 1 << 30,
            max_reports: 100_000,
            max_reports_per_sender_day: 10,
            rate_burst: 100,
            rate_refill: Duration::from_secs(1),
            resolver: None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum StoreKind {
    /// No `store` named: `[state]`'s PostgreSQL when it has a URL (the same database, and in
    /// `serve` the same pool), else [`StoreKind::Sqlite`] (SPEC: "`[tlsrpt]` uses the same
    /// store unless it names its own"; on SQLite its own file, which a purge keeps).
    State,
    /// A file in `[state] dir` (`tlsrpt.sqlite`).
    Sqlite,
    /// The URL, from `url_env` or `url_file`.
    Postgres(Secret),
}
