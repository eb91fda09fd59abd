//! Every MX host of a domain, each of its addresses, as an MTA-STS sender connects to it
//! (RFC 8461 §4.1, §4.2): STARTTLS offered, a certificate valid under WebPKI for the MX name,
//! TLS 1.2 or later, not about to expire. A failure loses mail in `enforce` (critical) and is
//! reported in `testing` (warning). Probes are shared by every domain naming the same MX host
//! in one run, and few are in flight at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use hickory_proto::rr::RecordType;
use tokio::sync::{OnceCell, Semaphore};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::dane::{self, Dane};
use super::dns::Dns;
use super::fetch::describe;
use super::report::{Check, Finding, Severity};
use super::smtp::{self, Failure, Probe, Trust};
use crate::config::Domain;
use crate::policy::Mode;

/// SMTP connections in flight in one run, over all domains.
const CONNECTIONS: usize = 8;
/// MX hosts of one domain probed at once.
const HOSTS_PER_DOMAIN: usize = 3;
const EXPIRY_WARNING_DAYS: i64 = 14;
const EXPIRY_CRITICAL_DAYS: i64 = 3;

/// The per-run state: trust, settings, and the probes done so far by MX host.
pub(crate) struct MxTls {
    trust: Trust,
    port: u16,
    timeout: Duration,
    permits: Semaphore,
    hosts: Mutex<HashMap<String, Arc<OnceCell<Arc<Host>>>>>,
}

/// What one MX host showed, whichever domain asked first.
#[derive(Debug)]
pub(crate) struct Host {
    /// Without the trailing dot.
    pub name: String,
    /// The address lookup failed: nothing probed.
    pub lookup_error: Option<String>,
    pub addrs: Vec<(SocketAddr, Probe)>,
    pub dane: Dane,
}

impl MxTls {
    pub(crate) fn new(trust: Trust, port: u16, timeout: Duration) -> Self {
        MxTls {
            trust,
            port,
            timeout,
            permits: Semaphore::new(CONNECTIONS),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The probe of MX `name` (absolute, lowercase), done once per run.
    async fn host(&self, dns: &Dns, name: &str) -> Arc<Host> {
        let cell = self
            .hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone();
        cell.get_or_init(|| self.probe_host(dns, name))
            .await
            .clone()
    }

    #[allow(clippy::expect_used, reason = "never closed")]
    async fn probe_host(&self, dns: &Dns, fqdn: &str) -> Arc<Host> {
        let name = fqdn.trim_end_matches('.').to_owned();
        let mut ips = Vec::new();
        let mut lookup_error = None;
        let (a, aaaa) = tokio::join!(
            dns.lookup(fqdn, RecordType::A),
            dns.lookup(fqdn, RecordType::AAAA)
        );
        for answer in [a, aaaa] {
            match answer {
                Ok(a) => ips.extend(a.addrs),
                Err(e) => lookup_error = Some(e),
            }
        }
        ips.dedup();
        let probes = futures_util::future::join_all(ips.iter().map(|ip| async {
            let addr = SocketAddr::new(*ip, self.port);
            let _p = self.permits.acquire().await.expect("never closed");
            (
                addr,
                smtp::probe(&self.trust, addr, &name, self.timeout).await,
            )
        }))
        .await;
        let dane = dane::check(dns, fqdn, &probes).await;
        Arc::new(Host {
            name,
            lookup_error: if ips.is_empty() { lookup_error } else { None },
            addrs: probes,
            dane,
        })
    }
}

/// The findings for domain `d`: its MX hosts looked up, each probed (or taken from the run's
/// cache) and judged under the domain's mode.
pub(crate) async fn check(
    mx: &MxTls,
    dns: &Dns,
    d: &Domain,
    lookup: &super::mx::Lookup,
    now: i64,
) -> Vec<Finding> {
    let hosts = match lookup.hosts(dns, d).await {
        Ok(h) => h,
        // The `mx` check reports a failed lookup already.
        Err(_) => return Vec::new(),
    };
    // RFC 7505 null MX: no mail, nothing to connect to.
    if hosts.iter().any(|h| h == ".") {
        return Vec::new();
    }
    // Futures made first: a closure inside the stream trips `Send` inference for spawn.
    let probes: Vec<_> = hosts.iter().map(|h| mx.host(dns, h)).collect();
    let probed: Vec<Arc<Host>> = futures_util::stream::iter(probes)
        .buffered(HOSTS_PER_DOMAIN)
        .collect()
        .await;
    let mut findings = Vec::new();
    for host in &probed {
        if d.policy.mode != Mode::None {
            judge(host, d.policy.mode, now, &mut findings);
        }
        findings.extend(host.dane.findings(&host.name));
    }
    findings
}

/// MTA-STS's view of one host under `mode`.
fn judge(host: &Host, mode: Mode, now: i64, out: &mut Vec<Finding>) {
    let failing = if mode == Mode::Enforce {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let consequence = if mode == Mode::Enforce {
        "senders with MTA-STS defer mail to it"
    } else {
        "senders report failures for it (mode testing)"
    };
    let mx = &host.name;
    if let Some(e) = &host.lookup_error {
        out.push(
            Finding::new(
                Severity::Unknown,
                Check::MxTls,
                format!("could not resolve MX {mx}: {e}"),
                "check the resolver ([drift] resolver)",
            )
            .about(mx),
        );
        return;
    }
    if host.addrs.is_empty() {
        out.push(
            Finding::new(
                failing,
                Check::MxTls,
                format!("MX {mx} has no address; {consequence}"),
                "publish A/AAAA records for the MX host, or remove the MX",
            )
            .about(mx),
        );
    }
    for (addr, probe) in &host.addrs {
        let at = format!("MX {mx} ({addr})");
        let f = |severity, message: String, hint: &str| {
            Finding::new(severity, Check::MxTls, message, hint).about(format!("{mx} {addr}"))
        };
        match probe {
            Probe::Unreachable(e) => out.push(f(
                Severity::Unknown,
                format!("could not connect to {at}: {e}"),
                "check that the MX is up; outbound port 25 may be blocked here ([drift] smtp = false)",
            )),
            Probe::Failed(Failure::Timeout, e) => out.push(f(
                failing,
                format!("{at} accepts connections but does not answer: {e}; {consequence}"),
                "check the MTA (a hung smtpd, a firewall dropping replies)",
            )),
            Probe::Failed(Failure::Refused, e) => out.push(f(
                failing,
                format!("{at} did not get as far as STARTTLS: {e}; {consequence}"),
                "check the MTA's banner and EHLO replies",
            )),
            Probe::Failed(Failure::NoStarttls, _) => out.push(f(
                failing,
                format!("{at} does not offer STARTTLS (RFC 8461 §4.2 requires TLS); {consequence}"),
                "enable STARTTLS on the MTA (Postfix: smtpd_tls_security_level = may)",
            )),
            Probe::Failed(Failure::Handshake, e) => out.push(f(
                failing,
                format!("TLS with {at} failed: {e} (RFC 8461 §4: TLS 1.2 or later); {consequence}"),
                "offer TLS 1.2 or 1.3 with current ciphers",
            )),
            Probe::Tls(s) => {
                if let Some(why) = &s.invalid {
                    out.push(f(
                        failing,
                        format!(
                            "the certificate of {at} is not valid for {mx}: {} (RFC 8461 §4.2); {consequence}",
                            describe(why)
                        ),
                        "install a certificate for the MX name from a public CA (chain included)",
                    ));
                } else if let Some(days) = days_left(s.chain.first(), now) {
                    let severity = if days < EXPIRY_CRITICAL_DAYS {
                        Some(failing)
                    } else if days < EXPIRY_WARNING_DAYS {
                        Some(Severity::Warning)
                    } else {
                        None
                    };
                    match severity {
                        Some(severity) => out.push(f(
                            severity,
                            format!("the certificate of {at} expires in {days} days"),
                            "renew the MX certificate",
                        )),
                        None => out.push(Finding::passed(
                            Check::MxTls,
                            format!("{at}: STARTTLS, {}, certificate valid for {mx}, {days} days left", super::fetch::version_name(s.version)),
                        )),
                    }
                }
            }
        }
    }
}

fn days_left(leaf: Option<&rustls::pki_types::CertificateDer<'_>>, now: i64) -> Option<i64> {
    let (_, x509) = X509Certificate::from_der(leaf?).ok()?;
    Some((x509.validity().not_after.timestamp() - now) / 86400)
}
