//! `kind = "exec"`: any DNS provider through a program that speaks the exec protocol (SPEC
//! "DNS providers"): run once per request, one JSON object on stdin, one on stdout; a non-zero
//! exit is a failure whose message is stderr.
//!
//! The protocol has no compare-and-swap, so this is read-verify-write: [`Exec::apply`] reads
//! the names afresh and checks each domain's expectations, sends the change, and reads back
//! what it wrote. A program that refuses a change (exit 1: a value to remove is gone) makes a
//! [`ProviderError::Conflict`], and the caller reads again.

mod run;

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::record::{absolute, RData, Record};
use crate::{Changes, Consistency, Provider, ProviderError};

pub struct Exec {
    name: String,
    command: Vec<String>,
}

/// A record as the protocol writes it: TXT unquoted (chunks joined), names absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub value: String,
}

#[derive(Deserialize)]
struct ReadAnswer {
    records: Vec<WireRecord>,
}

#[derive(Deserialize)]
struct ZonesAnswer {
    zones: Vec<String>,
}

impl Exec {
    pub fn new(name: &str, command: Vec<String>) -> Result<Self, ProviderError> {
        if command.is_empty() {
            return Err(ProviderError::config("exec: `command` is empty"));
        }
        Ok(Exec {
            name: name.to_owned(),
            command,
        })
    }

    async fn read(
        &self,
        zone: &str,
        names: &BTreeSet<String>,
    ) -> Result<Vec<Record>, ProviderError> {
        let answer = run::request(
            &self.command,
            &json!({"op": "read", "zone": zone, "names": names}),
            false,
        )
        .await?;
        let answer: ReadAnswer = run::decode(&self.command, "read", answer)?;
        Ok(answer
            .records
            .into_iter()
            .map(from_wire)
            .filter(|r| names.contains(&r.name))
            .collect())
    }
}

fn from_wire(r: WireRecord) -> Record {
    let rtype = r.rtype.to_ascii_uppercase();
    let data = match rtype.as_str() {
        "TXT" => RData::Txt(r.value),
        "CNAME" => RData::Cname(absolute(&r.value)),
        "TLSA" => RData::tlsa_text(&r.value),
        _ => RData::Other {
            rtype,
            text: r.value,
        },
    };
    Record {
        name: absolute(&r.name),
        ttl: r.ttl,
        data,
    }
}

fn to_wire(r: &Record) -> WireRecord {
    let value = match &r.data {
        RData::Txt(t) => t.clone(),
        RData::Cname(t) => t.clone(),
        // RFC 6698 §2.2 presentation form; a program whose DNS cannot hold TLSA refuses it.
        RData::Tlsa(t) => t.to_string(),
        RData::Other { text, .. } => text.clone(),
    };
    WireRecord {
        name: r.name.clone(),
        rtype: r.data.type_name().to_owned(),
        ttl: r.ttl,
        value,
    }
}

#[async_trait]
impl Provider for Exec {
    fn name(&self) -> &str {
        &self.name
    }

    fn consistency(&self) -> Consistency {
        Consistency::ReadVerifyWrite
    }

    fn writes_tlsa(&self) -> bool {
        true
    }

    /// `{"op": "zones"}` → `{"zones": [...]}` (an addition to SPEC's two operations: a program
    /// that does not know it fails, and the domains need `zone` set); each name's zone is the
    /// longest listed suffix.
    async fn zones_of(&self, names: &[String]) -> Vec<Result<String, ProviderError>> {
        let listed = match run::request(&self.command, &json!({"op": "zones"}), false).await {
            Ok(v) => run::decode::<ZonesAnswer>(&self.command, "zones", v),
            Err(e) => Err(e),
        };
        let zones: Vec<String> = match listed {
            Ok(z) => z.zones.iter().map(|z| absolute(z)).collect(),
            Err(e) => {
                let e = ProviderError::Config {
                    code: e.code().to_owned(),
                    message: format!("{e} (set `zone` for these domains, or answer op \"zones\")"),
                };
                return names.iter().map(|_| Err(e.clone())).collect();
            }
        };
        names
            .iter()
            .map(|n| {
                let n = absolute(n);
                let labels: Vec<&str> = n.trim_end_matches('.').split('.').collect();
                (0..labels.len())
                    .map(|s| format!("{}.", labels[s..].join(".")))
                    .find(|c| zones.contains(c))
                    .ok_or_else(|| ProviderError::Config {
                        code: "no zone".into(),
                        message: format!("exec {}: no zone listed holds {n}", self.command[0]),
                    })
            })
            .collect()
    }

    async fn records(&self, zone: &str, names: &[String]) -> Result<Vec<Record>, ProviderError> {
        let names: BTreeSet<String> = names.iter().map(|n| absolute(n)).collect();
        self.read(&absolute(zone), &names).await
    }

    async fn apply(&self, zone: &str, changes: &Changes) -> Result<(), ProviderError> {
        if changes.is_empty() {
            return Ok(());
        }
        let zone = absolute(zone);
        let names = changes.names();
        let seen = self.read(&zone, &names).await?;
        let conflict = |what: String| ProviderError::Conflict {
            code: "changed".into(),
            message: format!("exec {}: zone {zone}: {what}", self.command[0]),
        };
        for d in &changes.domains {
            if let Some(e) = d.expect.iter().find(|e| !e.holds(&seen)) {
                return Err(conflict(format!(
                    "the records at {} changed since they were read",
                    e.name()
                )));
            }
        }
        let remove: Vec<WireRecord> = changes
            .domains
            .iter()
            .flat_map(|d| &d.delete)
            .map(to_wire)
            .collect();
        let add: Vec<WireRecord> = changes
            .domains
            .iter()
            .flat_map(|d| &d.add)
            .map(to_wire)
            .collect();
        run::request(
            &self.command,
            &json!({"op": "change", "zone": zone, "remove": remove, "add": add}),
            true,
        )
        .await?;
        // Read back: the program said yes, the provider must show it.
        let after = self.read(&zone, &names).await?;
        let has = |r: &Record| after.iter().any(|a| a.same_data(r));
        for d in &changes.domains {
            if let Some(missing) = d.add.iter().find(|r| !has(r)) {
                return Err(conflict(format!(
                    "{} {:?} is not there after the change",
                    missing.name, missing.data
                )));
            }
            let kept = d
                .delete
                .iter()
                .find(|r| has(r) && !d.add.iter().any(|a| a.same_data(r)));
            if let Some(kept) = kept {
                return Err(conflict(format!(
                    "{} {:?} is still there after the change",
                    kept.name, kept.data
                )));
            }
        }
        Ok(())
    }
}
