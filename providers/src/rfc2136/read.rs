//! Reading the records at our names from the primary: the zone's SOA serial first, and
//! nothing more when it is the serial of the last read or of our own last write (see
//! `cache`); else by one zone transfer (RFC 5936) where the key may transfer and the zone is
//! not much larger than what we ask, else by queries pipelined on one connection.

use std::collections::{BTreeSet, HashSet};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData as HRData, Record as HRecord, RecordType};

use super::cache::{Cached, TransferSize};
use super::wire::{Transfer, Wire};
use super::{fqdn_lower, from_hickory, name, query, Rfc2136};
use crate::record::{RData, Record};
use crate::ProviderError;

/// Below this many names a read is by queries, as long as the zone's size is unknown: they
/// fit in one pipelined round trip.
pub const TRANSFER_MIN_NAMES: usize = 256;
/// A transfer is worth it while the zone holds at most this many records per name we ask:
/// measured with `bench/apply-bind.sh` (10k domains, zones given), one AXFR of a zone of our
/// 30k records read 1.8–3.8x faster than the 30k pipelined queries, so a transferred record
/// costs about a quarter of a query. An unknown zone is transferred up to that many records,
/// then abandoned for queries, and its size remembered.
pub const TRANSFER_MAX_PER_NAME: usize = 4;

impl Rfc2136 {
    /// Reads: unsigned first — the records are public, TSIG costs both sides more than the
    /// query (measured: 2.2x the time for 40k reads on BIND), and a forged answer cannot do
    /// harm since every UPDATE asserts what was read in its prerequisites. A server that
    /// refuses unsigned queries (`allow-query { key …; }`) is asked again, signed.
    pub(super) async fn read(&self, queries: Vec<Message>) -> Result<Vec<Message>, ProviderError> {
        let unsigned = Wire {
            server: &self.server,
            signer: None,
        };
        let answers = unsigned.exchange(queries.clone()).await?;
        let refused = answers.iter().any(|a| {
            matches!(
                a.response_code,
                ResponseCode::Refused | ResponseCode::NotAuth
            )
        });
        if refused {
            return self.wire().exchange(queries).await;
        }
        Ok(answers)
    }

    /// The zone of each name: remembered ones from the cache, the others by SOA queries.
    pub(super) async fn zones_cached(
        &self,
        names: &[String],
    ) -> Vec<Result<String, ProviderError>> {
        let known: Vec<Option<String>> = names.iter().map(|n| self.cache.zone_of(n)).collect();
        let unknown: Vec<String> = names
            .iter()
            .zip(&known)
            .filter(|(_, k)| k.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        let asked = if unknown.is_empty() {
            Vec::new()
        } else {
            self.ask_zones(&unknown).await
        };
        for (n, z) in unknown.iter().zip(&asked) {
            if let Ok(z) = z {
                self.cache.found_zone(n, z);
            }
        }
        let mut asked = asked.into_iter();
        known
            .into_iter()
            .map(|k| match k {
                Some(z) => Ok(z),
                None => asked.next().expect("one answer per unknown name"),
            })
            .collect()
    }

    async fn ask_zones(&self, names: &[String]) -> Vec<Result<String, ProviderError>> {
        let queries: Result<Vec<Message>, ProviderError> = names
            .iter()
            .map(|n| Ok(query(name(n)?, RecordType::SOA)))
            .collect();
        let answers = match queries {
            Ok(q) => self.read(q).await,
            Err(e) => Err(e),
        };
        let answers = match answers {
            Ok(a) => a,
            Err(e) => return names.iter().map(|_| Err(e.clone())).collect(),
        };
        names
            .iter()
            .zip(answers)
            .map(|(fqdn, answer)| {
                match answer.response_code {
                    ResponseCode::NoError | ResponseCode::NXDomain => {}
                    rcode => return Err(self.refused(&format!("SOA query for {fqdn}"), rcode)),
                }
                answer
                    .answers
                    .iter()
                    .chain(&answer.authorities)
                    .find(|r| r.record_type() == RecordType::SOA)
                    .map(|r| fqdn_lower(&r.name))
                    .ok_or_else(|| ProviderError::Refused {
                        code: "no SOA".into(),
                        message: format!(
                            "{}: is not authoritative for {fqdn} (no SOA in its answer; delegated elsewhere?)",
                            self.server
                        ),
                    })
            })
            .collect()
    }

    /// The records at `names` of `zone`, from the cache while the zone's serial has not moved.
    pub(super) async fn records_cached(
        &self,
        zone: &str,
        names: &[String],
    ) -> Result<Vec<Record>, ProviderError> {
        let zone = zone.to_ascii_lowercase();
        let names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        // Without a serial (not the zone's apex here, or no answer) nothing is remembered, and
        // the read says what is wrong.
        let serial = match self.cache.take_serial(&zone) {
            Some(serial) => Ok(serial),
            None => self.serial(&zone).await,
        };
        let Ok(serial) = serial else {
            self.cache.forget(&zone);
            return self.read_names(&zone, &names).await;
        };
        let missing = match self.cache.lookup(&zone, serial, &names) {
            Cached::All(records) => return Ok(records),
            Cached::Missing(m) => m,
        };
        let found = self.read_names(&zone, &missing).await?;
        // Asked before the read: a change during it moves the serial past the one kept, so
        // the next read asks again.
        self.cache.store(&zone, serial, &missing, &found);
        match self.cache.lookup(&zone, serial, &names) {
            Cached::All(records) => Ok(records),
            // The view was dropped meanwhile (a concurrent write): read it all once more.
            Cached::Missing(_) => self.read_names(&zone, &names).await,
        }
    }

    /// The zone's SOA serial, asked of the server itself.
    pub(super) async fn serial(&self, zone: &str) -> Result<u32, ProviderError> {
        let answer = self
            .read(vec![query(name(zone)?, RecordType::SOA)])
            .await?
            .remove(0);
        self.serial_in(zone, &answer)
    }

    /// Asks the serials of many zones (lowercase) in one pipelined exchange, ahead of their
    /// reads (`records_cached` takes them): a reconcile of a million unchanged one-domain zones
    /// is a million SOA questions on a few connections, not a million exchanges. A zone whose
    /// serial does not come back asks again at its read, which reports what is wrong.
    pub(super) async fn ask_serials(&self, zones: &[String]) {
        let mut asked = Vec::with_capacity(zones.len());
        let mut queries = Vec::with_capacity(zones.len());
        for z in zones {
            if let Ok(n) = name(z) {
                asked.push(z);
                queries.push(query(n, RecordType::SOA));
            }
        }
        let Ok(answers) = self.read(queries).await else {
            return;
        };
        for (zone, answer) in asked.into_iter().zip(&answers) {
            if let Ok(serial) = self.serial_in(zone, answer) {
                self.cache.asked_serial(zone, serial);
            }
        }
    }

    /// The serial in an answer to the SOA query for `zone`.
    fn serial_in(&self, zone: &str, answer: &Message) -> Result<u32, ProviderError> {
        if answer.response_code != ResponseCode::NoError {
            return Err(self.refused(&format!("SOA query for {zone}"), answer.response_code));
        }
        answer
            .answers
            .iter()
            .find_map(|r| match &r.data {
                HRData::SOA(soa) if fqdn_lower(&r.name) == zone => Some(soa.serial),
                _ => None,
            })
            .ok_or_else(|| ProviderError::Refused {
                code: "no SOA".into(),
                message: format!("{}: no SOA for the zone {zone}", self.server),
            })
    }

    /// Everything at `names` of `zone`: by one transfer when the zone is not much larger than
    /// what is asked and the key may, else by queries.
    async fn read_names(&self, zone: &str, names: &[String]) -> Result<Vec<Record>, ProviderError> {
        let limit = names.len() * TRANSFER_MAX_PER_NAME;
        let worth = match self.cache.transfer_size(zone) {
            TransferSize::Declined => false,
            TransferSize::Known(size) => size <= limit,
            TransferSize::LargerThan(seen) => names.len() >= TRANSFER_MIN_NAMES && seen < limit,
            TransferSize::Unknown => names.len() >= TRANSFER_MIN_NAMES,
        };
        if worth {
            let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
            let keep = |r: &HRecord| seen_by_queries(r, &wanted);
            match self.wire().transfer(&name(zone)?, limit, keep).await? {
                Transfer::Records { kept, size } => {
                    self.cache.transferred(zone, TransferSize::Known(size));
                    let mut out: Vec<Record> = kept.iter().map(from_hickory).collect();
                    out.sort();
                    out.dedup();
                    return Ok(out);
                }
                Transfer::TooLarge { seen } => {
                    self.cache.transferred(zone, TransferSize::LargerThan(seen));
                }
                Transfer::Declined => self.cache.transferred(zone, TransferSize::Declined),
            }
        }
        self.query_names(names).await
    }

    /// By queries: TXT at the TXT names; A and AAAA at `mta-sts.` names, which reveal a CNAME
    /// as well as the address records that would conflict with one.
    async fn query_names(&self, names: &[String]) -> Result<Vec<Record>, ProviderError> {
        // First TXT at every name and A at `mta-sts.` names (which shows a CNAME too); then,
        // only where no CNAME answered, AAAA and TXT there: a CNAME excludes other data, so
        // the steady state costs one query a name.
        let first: Vec<(String, RecordType)> = names
            .iter()
            .map(|n| {
                let t = if n.starts_with("mta-sts.") {
                    RecordType::A
                } else if is_tlsa_name(n) {
                    // A TLSA query shows a CNAME there too.
                    RecordType::TLSA
                } else {
                    RecordType::TXT
                };
                (n.to_ascii_lowercase(), t)
            })
            .collect();
        let mut out = BTreeSet::new();
        self.ask(&first, &mut out).await?;
        let cnamed: HashSet<&str> = out
            .iter()
            .filter(|r| matches!(r.data, RData::Cname(_)))
            .map(|r| r.name.as_str())
            .collect();
        let second: Vec<(String, RecordType)> = first
            .iter()
            .filter(|(n, t)| *t == RecordType::A && !cnamed.contains(n.as_str()))
            .flat_map(|(n, _)| [(n.clone(), RecordType::AAAA), (n.clone(), RecordType::TXT)])
            .collect();
        self.ask(&second, &mut out).await?;
        Ok(out.into_iter().collect())
    }

    /// Asks every (name, type), keeping the answer records owned by the name asked (not a
    /// CNAME's target chased in-zone).
    async fn ask(
        &self,
        asked: &[(String, RecordType)],
        out: &mut BTreeSet<Record>,
    ) -> Result<(), ProviderError> {
        if asked.is_empty() {
            return Ok(());
        }
        let queries = asked
            .iter()
            .map(|(n, t)| Ok(query(name(n)?, *t)))
            .collect::<Result<Vec<_>, ProviderError>>()?;
        let answers = self.read(queries).await?;
        for (answer, (qname, _)) in answers.iter().zip(asked) {
            match answer.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => {}
                rcode => return Err(self.refused(&format!("query for {qname}"), rcode)),
            }
            out.extend(
                answer
                    .answers
                    .iter()
                    .map(from_hickory)
                    .filter(|r| &r.name == qname),
            );
        }
        Ok(())
    }
}

/// Whether queries would have shown the record: at a wanted name, TXT or CNAME, and at a
/// `mta-sts.` name A and AAAA too; so a plan is the same whichever way the zone was read.
fn seen_by_queries(r: &HRecord, wanted: &HashSet<&str>) -> bool {
    let owner = fqdn_lower(&r.name);
    if !wanted.contains(owner.as_str()) {
        return false;
    }
    match r.record_type() {
        RecordType::TXT | RecordType::CNAME => true,
        RecordType::A | RecordType::AAAA => owner.starts_with("mta-sts."),
        RecordType::TLSA => is_tlsa_name(&owner),
        _ => false,
    }
}

/// RFC 7672 §2.2: DANE for SMTP looks up `_25._tcp.<mx host>`.
fn is_tlsa_name(name: &str) -> bool {
    name.starts_with("_25._tcp.")
}
