//! DANE for SMTP (RFC 7672): where `_25._tcp.<mx>` has TLSA records, the chain each address
//! presents must match one usable record, or DANE senders defer mail. TLSA the resolver did
//! not validate (no AD bit) is ignored by senders: published, but not in effect.

use std::net::SocketAddr;

use hickory_proto::rr::RecordType;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256, Sha512};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::dns::Dns;
use super::report::{Check, Finding, Severity};
use super::smtp::{Failure, Probe};

/// What DANE says about one MX host.
#[derive(Debug)]
pub(crate) enum Dane {
    /// No TLSA records: DANE does not apply.
    Absent,
    /// The lookup failed.
    Unknown(String),
    Published {
        /// The resolver validated the answer (AD bit).
        authentic: bool,
        total: usize,
        /// Usages 2/3, selectors 0/1, matching 0/1/2 (RFC 7672 §3.1).
        usable: Vec<Tlsa>,
        verdicts: Vec<(SocketAddr, Verdict)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Match,
    Mismatch,
    /// No TLS session to match (no STARTTLS, handshake failed): DANE senders defer.
    NoTls(String),
}

/// Looks up the TLSA RRset of MX `fqdn` and matches each probed address's chain.
pub(crate) async fn check(dns: &Dns, fqdn: &str, probes: &[(SocketAddr, Probe)]) -> Dane {
    let name = format!("_25._tcp.{fqdn}");
    let answer = match dns.lookup_dnssec(&name, RecordType::TLSA).await {
        Ok(a) => a,
        Err(e) => return Dane::Unknown(e),
    };
    if answer.tlsa.is_empty() {
        return Dane::Absent;
    }
    let total = answer.tlsa.len();
    let usable: Vec<Tlsa> = answer
        .tlsa
        .into_iter()
        .filter(|(u, s, m, _)| matches!(u, 2 | 3) && matches!(s, 0 | 1) && matches!(m, 0..=2))
        .map(|(usage, selector, matching, data)| Tlsa {
            usage,
            selector,
            matching,
            data,
        })
        .collect();
    let host = fqdn.trim_end_matches('.');
    let verdicts = probes
        .iter()
        .filter_map(|(addr, probe)| {
            let v = match probe {
                Probe::Tls(s) => {
                    if matches_any(&usable, &s.chain, host) {
                        Verdict::Match
                    } else {
                        Verdict::Mismatch
                    }
                }
                Probe::Failed(Failure::NoStarttls | Failure::Handshake, e) => {
                    Verdict::NoTls(e.clone())
                }
                // Unreachable or timed out: the MX-TLS check says so; nothing to match.
                _ => return None,
            };
            Some((*addr, v))
        })
        .collect();
    Dane::Published {
        authentic: answer.authentic,
        total,
        usable,
        verdicts,
    }
}

impl Dane {
    pub(crate) fn findings(&self, mx: &str) -> Vec<Finding> {
        let name = format!("_25._tcp.{mx}");
        let mut out = self.judge(mx, &name);
        for f in &mut out {
            f.subject = name.clone();
        }
        out
    }

    fn judge(&self, mx: &str, name: &str) -> Vec<Finding> {
        let (authentic, total, usable, verdicts) = match self {
            Dane::Absent => {
                return vec![Finding::passed(
                    Check::Dane,
                    format!("no TLSA at {name}: DANE not in use for MX {mx}"),
                )]
            }
            Dane::Unknown(e) => {
                return vec![Finding::new(
                    Severity::Unknown,
                    Check::Dane,
                    format!("could not look up TLSA at {name}: {e}"),
                    "check the resolver ([drift] resolver)",
                )]
            }
            Dane::Published {
                authentic,
                total,
                usable,
                verdicts,
            } => (*authentic, *total, usable, verdicts),
        };
        let mismatched: Vec<String> = verdicts
            .iter()
            .filter(|(_, v)| *v != Verdict::Match)
            .map(|(a, v)| match v {
                Verdict::NoTls(e) => format!("{a} (no TLS: {e})"),
                _ => a.to_string(),
            })
            .collect();
        if !authentic {
            // RFC 7672 §2.2: senders use TLSA records only from a validated (secure) answer.
            let would = if mismatched.is_empty() {
                "the presented certificates would match".to_owned()
            } else {
                format!("it would not match at {}", mismatched.join(", "))
            };
            return vec![Finding::new(
                Severity::Warning,
                Check::Dane,
                format!(
                    "{total} TLSA record(s) at {name} without DNSSEC (the resolver set no AD bit): not in effect, DANE senders ignore them; {would}"
                ),
                "sign the zone with DNSSEC (and check the resolver validates), or remove the TLSA records",
            )];
        }
        if usable.is_empty() {
            return vec![Finding::new(
                Severity::Warning,
                Check::Dane,
                format!("none of the {total} TLSA record(s) at {name} is usable for SMTP (RFC 7672 §3.1: usage 2 or 3, selector 0/1, matching 0/1/2)"),
                "publish `3 1 1 <SHA-256 of the MX key>` records",
            )];
        }
        if mismatched.is_empty() {
            let at: Vec<String> = verdicts.iter().map(|(a, _)| a.to_string()).collect();
            return vec![Finding::passed(
                Check::Dane,
                format!(
                    "{} usable TLSA record(s) at {name}, DNSSEC-validated, match at {}",
                    usable.len(),
                    at.join(", ")
                ),
            )];
        }
        vec![Finding::new(
            Severity::Critical,
            Check::Dane,
            format!(
                "the certificate of MX {mx} at {} matches none of the {} usable TLSA record(s) at {name}: DANE senders defer mail (RFC 7672 §2.2)",
                mismatched.join(", "),
                usable.len()
            ),
            "publish TLSA for the current certificate (before a key rollover, both)",
        )]
    }
}

/// RFC 7672 §3.1.1 (DANE-EE): the leaf matches, names and dates not checked. §3.1.2 (DANE-TA):
/// a certificate of the chain above the leaf matches, and the leaf chains to it for `host`.
fn matches_any(records: &[Tlsa], chain: &[CertificateDer<'static>], host: &str) -> bool {
    let Some(leaf) = chain.first() else {
        return false;
    };
    records.iter().any(|r| match r.usage {
        3 => matches(r, leaf),
        2 => chain[1..]
            .iter()
            .any(|ta| matches(r, ta) && chains_to(leaf, &chain[1..], ta, host)),
        _ => false,
    })
}

fn matches(r: &Tlsa, cert: &CertificateDer<'_>) -> bool {
    let selected: &[u8] = match r.selector {
        0 => cert.as_ref(),
        _ => match X509Certificate::from_der(cert) {
            Ok((_, x)) => x.tbs_certificate.subject_pki.raw,
            Err(_) => return false,
        },
    };
    match r.matching {
        0 => selected == r.data.as_slice(),
        1 => Sha256::digest(selected).as_slice() == r.data.as_slice(),
        _ => Sha512::digest(selected).as_slice() == r.data.as_slice(),
    }
}

/// WebPKI path building with `ta` as the only root.
fn chains_to(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'static>],
    ta: &CertificateDer<'static>,
    host: &str,
) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    if roots.add(ta.clone()).is_err() {
        return false;
    }
    let Ok(verifier) =
        WebPkiServerVerifier::builder_with_provider(roots.into(), crate::certs::provider()).build()
    else {
        return false;
    };
    let Ok(name) = ServerName::try_from(host.to_owned()) else {
        return false;
    };
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_matching_types() {
        let ck = rcgen::generate_simple_self_signed(vec!["mx.example".to_owned()]).unwrap();
        let der = ck.cert.der().clone();
        let (_, x) = X509Certificate::from_der(&der).unwrap();
        let spki = x.tbs_certificate.subject_pki.raw.to_vec();
        let rec = |selector, matching, data: Vec<u8>| Tlsa {
            usage: 3,
            selector,
            matching,
            data,
        };
        for r in [
            rec(0, 0, der.to_vec()),
            rec(0, 1, Sha256::digest(&der).to_vec()),
            rec(1, 1, Sha256::digest(&spki).to_vec()),
            rec(1, 2, Sha512::digest(&spki).to_vec()),
            rec(1, 0, spki.clone()),
        ] {
            let (one, leaf) = (std::slice::from_ref(&r), std::slice::from_ref(&der));
            assert!(matches_any(one, leaf, "mx.example"), "{r:?}");
        }
        assert!(!matches_any(
            &[rec(1, 1, Sha256::digest(b"other").to_vec())],
            std::slice::from_ref(&der),
            "mx.example"
        ));
        // DANE-TA needs a certificate above the leaf.
        let ta = Tlsa {
            usage: 2,
            ..rec(0, 0, der.to_vec())
        };
        assert!(!matches_any(&[ta], &[der], "mx.example"));
    }
}
