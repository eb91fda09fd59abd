//! The configuration: loaded from TOML (plus included files), checked in full, and resolved
//! into a [`Config`] in which every domain carries its effective settings.
//!
//! A `Config` that exists is valid: every problem is found at load and reported as
//! `file:line:col: severity: message`.

mod diag;
mod load;
mod raw;
mod resolve;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mta_stsd_providers::tsig::TsigKey;
use mta_stsd_providers::Secret;

pub use diag::{Diagnostic, Severity};
pub use load::{load, Failed, Loaded};

use crate::certs::CertFiles;
use crate::name::DomainName;
use crate::policy::Policy;
use crate::tlsrpt::Rua;

/// Where the config is read from when neither `--config` nor `$MTA_STSD_CONFIG` says.
pub const DEFAULT_PATH: &str = "/etc/mta-stsd/mta-stsd.toml";

#[derive(Debug)]
pub struct Config {
    pub server: Server,
    pub tls: Tls,
    pub providers: BTreeMap<String, Arc<ProviderConfig>>,
    /// Sorted by name, so lookups are a binary search and output is stable.
    pub domains: Vec<Domain>,
    pub acme: Option<Acme>,
    pub drift: Drift,
    /// `[tlsrpt]`: receiving TLS reports; `None` without the section.
    pub tlsrpt: Option<Tlsrpt>,
    /// Every file read (the main one first), for the watcher.
    pub files: Vec<PathBuf>,
    /// Include patterns as absolute globs, so the watcher sees files that appear later.
    pub include_patterns: Vec<String>,
}

impl Config {
    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains
            .binary_search_by(|d| d.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.domains[i])
    }
}

#[derive(Debug, Clone)]
pub struct Server {
    pub https: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    /// `/metrics`, `/healthz`, `/status`: never one of the public listeners.
    pub admin: Option<SocketAddr>,
    pub limits: Limits,
}

impl Default for Server {
    /// SPEC defaults: HTTPS on every address at 443, admin on loopback.
    fn default() -> Self {
        Server {
            https: vec![SocketAddr::from(([0u16; 8], 443))],
            http: Vec::new(),
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            limits: Limits::default(),
        }
    }
}

/// Bounds on what a client may cost us (SPEC "Limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
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
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Tls {
    pub certs: Vec<CertFiles>,
    pub self_signed: bool,
}

/// One mail domain with everything it inherited resolved.
#[derive(Debug, Clone)]
pub struct Domain {
    pub name: DomainName,
    /// Shared between domains that inherit the same policy.
    pub policy: Arc<Policy>,
    pub dns: Arc<DnsSettings>,
    /// The zone holding the domain's names, when the config says; else the provider finds it.
    pub zone: Option<DomainName>,
    pub cert: CertSource,
}

/// The `[dns]` keys, after inheritance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// `mta-sts.<domain>` CNAME target; without it no CNAME is managed.
    pub target: Option<DomainName>,
    pub ttl: u32,
    pub tlsrpt: Vec<Rua>,
    pub provider: Option<Arc<str>>,
}

/// Where the certificate for `mta-sts.<domain>` comes from (SPEC "Certificates").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSource {
    /// Index into [`Tls::certs`].
    Configured(usize),
    Acme,
    SelfSigned,
}

#[derive(Debug)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
}

#[derive(Debug)]
pub enum ProviderKind {
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    TlsAlpn01,
    Http01,
}

#[derive(Debug, Clone)]
pub struct Acme {
    pub directory: String,
    pub contact: Vec<String>,
    pub challenge: Challenge,
    pub state: PathBuf,
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Drift {
    /// `[drift]` is in the config: `serve` runs the checks periodically. (They ask outside
    /// resolvers and hosts, so a config without the section stays quiet.)
    pub enabled: bool,
    pub interval: Duration,
    pub report: Option<PathBuf>,
    pub resolver: Option<SocketAddr>,
    pub ca: Option<PathBuf>,
    /// The port authoritative nameservers are asked on: 53, but in tests.
    pub dns_port: u16,
    /// The port the policy is fetched from: 443, but in tests.
    pub https_port: u16,
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
        }
    }
}

/// `[tlsrpt]` (SPEC "TLS-RPT receiver").
#[derive(Debug, Clone)]
pub struct Tlsrpt {
    /// HTTPS names that take reports (and serve nothing else).
    pub hosts: Vec<DomainName>,
    pub path: String,
    pub store: StoreKind,
    pub retention: Duration,
    /// After decompression (and so before it too).
    pub max_report_bytes: usize,
    /// For DKIM key lookups; `None`: the system's resolver.
    pub resolver: Option<SocketAddr>,
}

impl Default for Tlsrpt {
    fn default() -> Self {
        Tlsrpt {
            hosts: Vec::new(),
            path: "/v1/tlsrpt".into(),
            store: StoreKind::Sqlite,
            retention: Duration::from_secs(400 * 86400),
            max_report_bytes: 4 * 1024 * 1024,
            resolver: None,
        }
    }
}

#[derive(Debug, Clone)]
pub enum StoreKind {
    /// A file in `[state] dir`.
    Sqlite,
    /// The URL, from `url_env` or `url_file`.
    Postgres(Secret),
}
