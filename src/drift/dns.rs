//! DNS as a sending MTA sees it: a recursive resolver for lookups, and direct questions to
//! each authoritative nameserver. Over UDP with TCP fallback ([`super::transport`]), every
//! exchange bounded in time.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::sync::Arc;

use super::transport::{Transport, UDP_PAYLOAD};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub(crate) struct Dns {
    /// The recursive resolver: `[drift] resolver`, else the first of /etc/resolv.conf.
    pub resolver: SocketAddr,
    /// The port authoritative nameservers are asked on (53 but in tests).
    pub auth_port: u16,
    /// The sockets, shared by every question of the run.
    transport: Arc<Transport>,
}

/// An answer's records owned by the name asked (or along its CNAME chain), as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    pub rcode: String,
    /// TXT strings concatenated; names lowercase with their trailing dot; addresses as text.
    pub txt: Vec<String>,
    pub cnames: Vec<String>,
    pub addrs: Vec<IpAddr>,
    pub names: Vec<String>,
    pub mx: Vec<String>,
    /// The zone's SOA owner, from the answer or the authority section.
    pub soa_owner: Option<String>,
    /// TLSA records: usage, selector, matching type, data.
    pub tlsa: Vec<(u8, u8, u8, Vec<u8>)>,
    /// The resolver's AD bit: it validated the answer with DNSSEC (RFC 4035 §3.2.3).
    pub authentic: bool,
}

impl Dns {
    pub(crate) fn new(resolver: Option<SocketAddr>, auth_port: u16) -> Result<Self, String> {
        let resolver = match resolver {
            Some(r) => r,
            None => system_resolver()?,
        };
        Ok(Dns {
            resolver,
            auth_port,
            transport: Arc::default(),
        })
    }

    /// Asks the resolver (recursion desired).
    pub(crate) async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Answer, String> {
        ask(&self.transport, self.resolver, name, rtype, true, false).await
    }

    /// Asks the resolver with DNSSEC OK and AD set (RFC 6840 §5.7), so its answer says whether
    /// it validated.
    pub(crate) async fn lookup_dnssec(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> Result<Answer, String> {
        ask(&self.transport, self.resolver, name, rtype, true, true).await
    }

    /// Asks an authoritative nameserver directly.
    pub(crate) async fn ask_authority(
        &self,
        ip: IpAddr,
        name: &str,
        rtype: RecordType,
    ) -> Result<Answer, String> {
        ask(
            &self.transport,
            SocketAddr::new(ip, self.auth_port),
            name,
            rtype,
            false,
            false,
        )
        .await
    }
}

fn system_resolver() -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("cannot read /etc/resolv.conf: {e}; set [drift] resolver"))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .ok_or_else(|| "no nameserver in /etc/resolv.conf; set [drift] resolver".to_owned())
}

async fn ask(
    transport: &Transport,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    rd: bool,
    dnssec: bool,
) -> Result<Answer, String> {
    let qname = Name::from_ascii(name).map_err(|e| format!("{name}: {e}"))?;
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = rd;
    m.add_query(Query::query(qname, rtype));
    // EDNS on every question, so that long TXT and TLSA answers fit UDP (RFC 6891).
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD).set_dnssec_ok(dnssec);
    m.set_edns(edns);
    if dnssec {
        m.metadata.authentic_data = true;
    }
    let bytes = m.to_vec().map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(TIMEOUT, transport.exchange(server, &bytes))
        .await
        .map_err(|_| format!("{server}: no answer within {TIMEOUT:?} for {name} {rtype}"))?
        .map_err(|e| format!("{e} (asking {name} {rtype})"))?;
    let rcode = answer.response_code;
    if !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        return Err(format!("{server}: {rcode} for {name} {rtype}"));
    }
    Ok(parse(&answer, name))
}

fn lower(n: &Name) -> String {
    let mut s = n.to_ascii().to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// An answer as it comes off the wire, read as [`Dns`] reads one (the fuzz targets' way in).
#[doc(hidden)]
pub(crate) fn parse_wire(buf: &[u8], name: &str) -> Option<Answer> {
    Message::from_vec(buf).ok().map(|m| parse(&m, name))
}

/// Keeps the records of `name` and of the CNAME chain starting there.
fn parse(answer: &Message, name: &str) -> Answer {
    let mut out = Answer {
        rcode: answer.response_code.to_string(),
        authentic: answer.authentic_data,
        ..Answer::default()
    };
    let mut owners = vec![name.to_ascii_lowercase()];
    for r in &answer.answers {
        let owner = lower(&r.name);
        if !owners.contains(&owner) {
            continue;
        }
        match &r.data {
            RData::CNAME(c) => {
                let target = lower(&c.0);
                out.cnames.push(target.clone());
                owners.push(target);
            }
            RData::TXT(t) => {
                let bytes: Vec<u8> = t.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
                out.txt.push(String::from_utf8_lossy(&bytes).into_owned());
            }
            RData::A(a) => out.addrs.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => out.addrs.push(IpAddr::V6(a.0)),
            RData::NS(ns) => out.names.push(lower(&ns.0)),
            RData::MX(mx) => out.mx.push(lower(&mx.exchange)),
            RData::SOA(_) => out.soa_owner = Some(owner),
            RData::TLSA(t) => out.tlsa.push((
                t.cert_usage.into(),
                t.selector.into(),
                t.matching.into(),
                t.cert_data.clone(),
            )),
            _ => {}
        }
    }
    if out.soa_owner.is_none() {
        out.soa_owner = answer
            .authorities
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
            .map(|r| lower(&r.name));
    }
    out
}
