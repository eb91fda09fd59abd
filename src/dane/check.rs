//! What `check` says about the `[[dane]]` entries beyond the config: a provider that cannot
//! publish TLSA, a zone that is not DNSSEC-signed, an unannounced rollover still standing.

use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::memory;
use super::sync::tlsa_name;
use crate::config::{Config, ProviderKind};
use crate::dns::providers::Providers;

/// Bounds the connect and the exchange of one DNSKEY question.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What `check` prints: errors make it fail, warnings do not.
#[derive(Debug, Default)]
pub(crate) struct Said {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// One line per problem. A provider that cannot publish TLSA is an error: every round of
/// `serve` and `apply` would fail on it.
pub(crate) async fn check(config: &Config, providers: &Providers) -> Said {
    let mut said = Said::default();
    let out = &mut said.warnings;
    for entry in &config.dane {
        let host = entry.host.as_str();
        let Some(pname) = entry.provider.as_deref() else {
            continue;
        };
        let Some(Ok(provider)) = providers.get(pname) else {
            continue;
        };
        if !provider.writes_tlsa() {
            said.errors.push(format!(
                "[[dane]] {host}: provider {pname} cannot publish TLSA; set the records `mta-stsd records` prints by hand (no `provider`), or use a provider that can (rfc2136, powerdns, route53, hetzner, desec, gandi, ovh, exec)"
            ));
            continue;
        }
        let zone = match &entry.zone {
            Some(z) => z.fqdn(),
            None => match provider.zone_of(&tlsa_name(host)).await {
                Ok(z) => z,
                Err(e) => {
                    out.push(format!("[[dane]] {host}: finding its zone: {e}"));
                    continue;
                }
            },
        };
        // The provider's own server where we know it (RFC 2136), else the drift resolver.
        let server = match &config.providers.get(pname).map(|p| &p.kind) {
            Some(ProviderKind::Rfc2136 { server, .. }) => Some(server.clone()),
            _ => config.drift.resolver.map(|a| a.to_string()),
        };
        let Some(server) = server else {
            out.push(format!(
                "[[dane]] {host}: cannot tell whether zone {zone} is DNSSEC-signed: set [drift] resolver to ask one"
            ));
            continue;
        };
        match has_dnskey(&server, &zone).await {
            Ok(true) => {}
            // RFC 7672 §2.2: TLSA records that are not DNSSEC-validated are "unusable".
            Ok(false) => out.push(format!(
                "[[dane]] {host}: zone {zone} is not DNSSEC-signed (no DNSKEY at its apex, asked {server}): DANE senders ignore its TLSA records (RFC 7672 §2.2)"
            )),
            Err(e) => out.push(format!(
                "[[dane]] {host}: asking {server} for the DNSKEY of {zone}: {e}"
            )),
        }
    }
    match memory::read(&config.state).await {
        Ok(m) => out.extend(
            m.hosts
                .values()
                .filter_map(|h| h.finding.as_ref())
                .map(|f| format!("DANE: {}", f.message)),
        ),
        Err(e) => out.push(format!("DANE state: {e}")),
    }
    said
}

/// Whether `server` answers DNSKEY records at `zone`'s apex (over TCP).
async fn has_dnskey(server: &str, zone: &str) -> Result<bool, String> {
    let name = Name::from_ascii(zone).map_err(|e| e.to_string())?;
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, RecordType::DNSKEY));
    let bytes = m.to_vec().map_err(|e| e.to_string())?;
    let len = u16::try_from(bytes.len()).map_err(|e| e.to_string())?;
    let exchange = async {
        let mut s = TcpStream::connect(server).await?;
        s.write_all(&len.to_be_bytes()).await?;
        s.write_all(&bytes).await?;
        let mut l = [0u8; 2];
        s.read_exact(&mut l).await?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(l))];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let answer = Message::from_vec(&buf).map_err(|e| e.to_string())?;
    Ok(answer
        .answers
        .iter()
        .any(|r| r.record_type() == RecordType::DNSKEY))
}
