//! Which nameservers are authoritative for a domain's zone, found once per zone per run.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::rr::RecordType;

use super::dns::Dns;

/// A zone and the addresses of its nameservers.
#[derive(Debug)]
pub(crate) struct NsSet {
    pub zone: String,
    pub servers: Vec<(String, IpAddr)>,
}

#[derive(Debug, Default)]
pub(crate) struct Zones {
    cache: Mutex<HashMap<String, Arc<NsSet>>>,
}

impl Zones {
    /// The zone holding `name` (by the SOA the resolver returns) and its NS addresses.
    pub(crate) async fn ns_for(&self, dns: &Dns, name: &str) -> Result<Arc<NsSet>, String> {
        let zone = dns
            .lookup(name, RecordType::SOA)
            .await?
            .soa_owner
            .ok_or_else(|| format!("no SOA found for {name}"))?;
        if let Some(set) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&zone)
        {
            return Ok(set.clone());
        }
        let hosts = dns.lookup(&zone, RecordType::NS).await?.names;
        if hosts.is_empty() {
            return Err(format!("no NS records for {zone}"));
        }
        let mut servers = Vec::new();
        for host in hosts {
            for t in [RecordType::A, RecordType::AAAA] {
                if let Ok(a) = dns.lookup(&host, t).await {
                    servers.extend(a.addrs.into_iter().map(|ip| (host.clone(), ip)));
                }
            }
        }
        if servers.is_empty() {
            return Err(format!("no address for any nameserver of {zone}"));
        }
        let set = Arc::new(NsSet {
            zone: zone.clone(),
            servers,
        });
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(zone, set.clone());
        Ok(set)
    }
}
